"""The CuPy stand-in (minires.testing.fake_cupy) refuses what CuPy refuses, one test per refusal,
behaves like CuPy where CuPy works, and plays CuPy for minires.backend through the test hook.

A stand-in that let any of these through would guard nothing: code that breaks on a GPU would
pass here.
"""
import copy
import pickle
import warnings

import numpy as np
import pytest

import minires
from minires import backend
from minires.testing import fake_cupy as cp


def on_device(values, device=0):
    with cp.cuda.Device(device):
        return cp.asarray(np.asarray(values, dtype=np.float32))


# -- implicit conversion to NumPy -------------------------------------------------------------

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"


def test_np_asarray_of_a_device_array_is_refused():
    with pytest.raises(TypeError, match=IMPLICIT):
        np.asarray(on_device([1, 2]))


def test_np_array_of_a_list_of_device_arrays_is_refused():
    with pytest.raises(TypeError, match=IMPLICIT):
        np.array([on_device(1), on_device(2)])


def test_a_numpy_scalar_made_from_a_device_array_is_refused():
    with pytest.raises(TypeError, match=IMPLICIT):
        np.float32(on_device([1.0])[0])


@pytest.mark.parametrize("convert", [float, int, complex], ids=lambda f: f.__name__)
def test_float_int_complex_of_a_multi_element_array_are_refused(convert):
    with pytest.raises(TypeError):
        convert(on_device([1.0, 2.0]))


def test_bool_of_a_multi_element_array_is_refused():
    with pytest.raises(ValueError, match="truth value of an array with more than one element is ambiguous"):
        bool(on_device([1.0, 2.0]))


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
@pytest.mark.parametrize("convert", [float, int, bool], ids=lambda f: f.__name__)
def test_python_numbers_from_small_arrays_are_cupys_conversion_of_the_host_copy(convert, shape):
    """CuPy's ``float(x)`` is ``float(x.get())``: a 0-d array converts; for one element of
    higher rank NumPy decides (NumPy 2 refuses float/int, allows bool)."""
    x = on_device(np.full(shape, 3.0))
    try:
        expected = convert(x.get())
    except TypeError as error:
        with pytest.raises(TypeError, match=str(error)):
            convert(x)
    else:
        assert convert(x) == expected and type(convert(x)) is convert
    assert float(on_device(2.5).sum()) == 2.5  # the usual case: a reduction's 0-d result


# -- mixing with NumPy arrays -----------------------------------------------------------------

UNSUPPORTED = r"Unsupported type <class 'numpy.ndarray'>"


@pytest.mark.parametrize("mix", [
    lambda x, host: x + host, lambda x, host: host + x, lambda x, host: host * x, lambda x, host: x @ host,
    lambda x, host: x == host, lambda x, host: x * np.array(2.0),
], ids=["x + host", "host + x", "host * x", "x @ host", "x == host", "x * 0-d host"])
def test_operators_mixing_with_numpy_arrays_are_refused(mix):
    with pytest.raises(TypeError, match=UNSUPPORTED):
        mix(on_device(np.ones((2, 2))), np.ones((2, 2)))


def test_in_place_operators_with_numpy_arrays_are_refused():
    x = on_device(np.ones((2, 2)))
    with pytest.raises(TypeError, match=UNSUPPORTED):
        x += np.ones((2, 2))
    np.testing.assert_array_equal(x.get(), 1)


def test_assigning_a_numpy_array_into_a_device_array_is_refused():
    x = on_device(np.ones((2, 2)))
    with pytest.raises(TypeError, match=UNSUPPORTED):
        x[...] = np.zeros((2, 2))


def test_indexing_with_a_numpy_array_is_refused():
    with pytest.raises(TypeError, match=UNSUPPORTED):
        on_device([1, 2, 3])[np.array([0, 1])]


@pytest.mark.parametrize("call", [
    lambda x, host: cp.matmul(x, host), lambda x, host: cp.add(host, x),
    lambda x, host: cp.concatenate([x, host]), lambda x, host: cp.copyto(x, host),
    lambda x, host: cp.lib.stride_tricks.as_strided(host, shape=(2,), strides=(8,)),
], ids=["matmul", "add", "concatenate", "copyto", "as_strided"])
def test_functions_given_numpy_arrays_are_refused(call):
    with pytest.raises(TypeError, match=UNSUPPORTED):
        call(on_device(np.ones((2, 2))), np.ones((2, 2)))


def test_ufuncs_refuse_lists_and_reductions_refuse_python_sequences():
    x = on_device([1, 2, 3])
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        cp.add(x, [1, 2, 3])
    with pytest.raises(TypeError, match="Unsupported type <class 'tuple'>"):
        cp.prod(x.shape)  # fine on NumPy, an error on CuPy


# -- devices ----------------------------------------------------------------------------------

OFF_DEVICE = r"The device where the array resides \(1\) is different from the current device \(0\)"


def test_arrays_on_two_devices_do_not_mix():
    x0, x1 = on_device([1, 2], device=0), on_device([1, 2], device=1)
    with pytest.raises(ValueError, match=OFF_DEVICE):
        x0 + x1
    with cp.cuda.Device(1), pytest.raises(ValueError, match="resides \\(0\\) is different from the current device \\(1\\)"):
        cp.matmul(x1, x0)


def test_computing_on_an_array_of_another_device_is_refused():
    x1 = on_device([1, 2], device=1)
    for compute in (lambda: x1 * 2, lambda: x1.sum(), lambda: cp.exp(x1), lambda: x1.astype(np.float64),
                    lambda: x1[cp.asarray(np.array([0]))]):
        with pytest.raises(ValueError, match=OFF_DEVICE):
            compute()


def test_writing_into_an_array_of_another_device_is_refused():
    x1 = on_device([1, 2], device=1)
    for write in (lambda: x1.__iadd__(1.0), lambda: x1.__setitem__(0, 5.0), lambda: x1.fill(0.0),
                  lambda: cp.multiply(x1, 2, out=x1)):
        with pytest.raises(ValueError, match=OFF_DEVICE):
            write()
    np.testing.assert_array_equal(x1.get(), [1, 2])  # the refusal came before the write


def test_mixing_two_devices_is_refused_by_minires(fake_gpu):
    with pytest.raises(ValueError, match="arrays from different devices cannot be mixed: got .* on cuda:0, "
                                         ".* on cuda:1"):
        backend.get_array_module(on_device([1], 0), on_device([1], 1))
    with pytest.raises(ValueError, match="arrays from different devices cannot be mixed"):
        backend.get_array_module(on_device([1]), np.ones(1))


def test_views_stay_on_their_device_and_copies_cross_devices():
    x1 = on_device(np.arange(6.0).reshape(2, 3), device=1)
    for view in (x1[0], x1.T, x1.reshape(3, 2), x1.transpose(1, 0), list(x1)[1],
                 cp.lib.stride_tricks.as_strided(x1, shape=(2, 2), strides=x1.strides)):
        assert view.device.id == 1  # no computation: allowed from device 0, as on CuPy
    assert x1.copy().device.id == 0 and cp.asarray(x1).device.id == 0  # copied to the current device
    with cp.cuda.Device(1):
        assert cp.asarray(x1) is x1 and (x1 * 2).device == cp.cuda.Device(1)
    np.testing.assert_array_equal(x1.get(), np.arange(6.0).reshape(2, 3))  # the host door opens anywhere
    assert float(x1[1, 2]) == 5.0


def test_devices_nest_and_restore():
    assert cp.cuda.Device().id == 0
    with cp.cuda.Device(1) as device:
        assert device.id == 1 and cp.zeros(2).device.id == 1
        with cp.cuda.Device(0):
            assert cp.empty(1).device.id == 0
        assert cp.cuda.Device().id == 1 and cp.random.random(3, dtype=np.float32).device.id == 1
    assert cp.cuda.Device().id == 0 and cp.cuda.runtime.getDeviceCount() == 2
    with pytest.raises(ValueError, match="expected a device id in 0..1, got 2"):
        cp.cuda.Device(2)


# -- NumPy's functions, and the NumPy API CuPy lacks ------------------------------------------

def test_numpy_functions_on_device_arrays_are_refused():
    x = on_device([[1.0, -2.0]])
    with pytest.raises(TypeError, match=r"numpy.pad called on a device array: op code must call xp.pad"):
        np.pad(x, 1)
    with pytest.raises(TypeError, match="does not support ufuncs"):
        np.maximum(x, 0)


def test_what_cupy_lacks_is_missing():
    with pytest.raises(TypeError, match="banned in minires"):
        cp.add.at(on_device([1.0, 2.0]), 0, 1.0)
    with pytest.raises(AttributeError, match="has no attribute 'errstate'"):
        cp.errstate
    with pytest.raises(TypeError, match=r"fake_cupy.einsum: CuPy does not support the keyword\(s\) \['out'\]"):
        cp.einsum("ij->i", on_device(np.ones((2, 2))), out=cp.empty(2))
    with pytest.raises(AttributeError, match="no attribute 'tofile'"):
        on_device([1.0]).tofile


def test_the_guard_catches_code_that_would_break_on_cupy():
    def numpy_only_relu(x):  # np.maximum on an activation and a host buffer: fine on NumPy only
        return np.maximum(x, 0) + np.zeros(x.shape, x.dtype)

    np.testing.assert_array_equal(numpy_only_relu(np.array([-1.0, 2.0])), [0, 2])
    with pytest.raises(TypeError):
        numpy_only_relu(on_device([-1.0, 2.0]))


# -- where CuPy works, the stand-in works like it ---------------------------------------------

def test_arrays_behave_like_cupy_arrays():
    host = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = cp.asarray(host)  # the explicit host-to-device copy
    host[0, 0] = 100
    assert isinstance(x, cp.ndarray) and x.dtype == np.float32 and x.shape == (2, 3)
    total = x.sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and int(total) == 15  # 0-d, as on CuPy
    assert (x * 2.0).dtype == np.float32 and (np.float32(2) * x).dtype == np.float32  # scalars mix
    assert isinstance(x.T.reshape(-1).astype(np.float64), cp.ndarray)
    view = cp.lib.stride_tricks.as_strided(x, shape=(2, 2), strides=x.strides)  # a view, as on CuPy
    view += 10
    x[:, 2] = cp.ones(2, dtype=np.float32)
    np.testing.assert_array_equal(x.get(), [[10, 11, 1], [13, 14, 1]])
    out = cp.empty((2, 3), dtype=np.float32)
    assert cp.multiply(x, 2, out=out) is out
    assert f"{x[0, 0]:.1f}" == "10.0" and x.max().item() == 14.0
    assert cp.get_array_module(x) is cp and cp.get_array_module(host) is np
    np.testing.assert_array_equal(cp.asnumpy(x), x.get())


def test_pickle_and_deepcopy_keep_values_and_devices():
    x1 = on_device([1.5, 2.5], device=1)
    restored = pickle.loads(pickle.dumps(x1))  # CuPy unpickles onto the current device
    assert restored.device.id == 0 and restored.get().tolist() == [1.5, 2.5]
    duplicate = copy.deepcopy(x1)
    assert duplicate.device.id == 1 and duplicate is not x1 and duplicate.get().tolist() == [1.5, 2.5]


def test_random_draws_are_seeded_per_device():
    cp.random.seed(3)
    first = cp.random.random((2, 3), dtype=np.float32)
    cp.random.seed(3)
    np.testing.assert_array_equal(cp.random.random((2, 3), dtype=np.float32).get(), first.get())
    assert first.dtype == np.float32 and first.device.id == 0
    generator = cp.random.default_rng(0)
    assert generator.random(4, dtype=np.float32).device.id == 0


# -- minires.backend through the hook ---------------------------------------------------------

def test_the_hook_makes_the_stand_in_minires_cupy_for_the_block_only():
    host = np.arange(4.0)
    assert not isinstance(backend.to_device(host, "cpu"), cp.ndarray)
    with backend.substitute_cupy(cp):
        assert backend.cupy_available() and backend.cupy_module() is cp
        x = backend.to_device(host, "cuda")
        assert isinstance(x, cp.ndarray) and backend.device_of(x) == "cuda:0"
        x1 = backend.to_device(host, "cuda:1")
        assert backend.device_of(x1) == "cuda:1" and backend.get_array_module(x1) is cp
        assert backend.to_device(x1, "cuda:1") is x1  # already there: no copy
        back = backend.to_device(x1, "cpu")
        assert type(back) is np.ndarray and back.tolist() == host.tolist()
        np.testing.assert_array_equal(backend.asnumpy(x), host)
    assert backend.cupy_module() is None or backend.cupy_module() is not cp


def test_manual_seed_seeds_every_device(fake_gpu):
    draws = []
    for _ in range(2):
        minires.manual_seed(7)
        with fake_gpu.cuda.Device(1):
            draws.append(fake_gpu.random.random(3, dtype=np.float32).get())
    np.testing.assert_array_equal(draws[0], draws[1])


def test_no_warnings_from_the_stand_in_itself():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = on_device(np.arange(6.0).reshape(2, 3))
        (x.sum(axis=0) / 2).get()
