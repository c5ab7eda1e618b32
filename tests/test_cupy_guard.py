"""The CPU-side CuPy guard: op code runs on ``StrictArray`` (tests/strict_array.py), which refuses
what CuPy refuses, and gives the same numbers as on NumPy.

First the guard itself is tested (it must refuse mixing and implicit conversion, or it guards
nothing); then every pure function in ``minires.nn.functional``; then a small network with
convolutions, batch norms, poolings, a residual add, a linear layer and the loss, forward and
backward, in training and in evaluation mode.
"""
import copy
import inspect

import numpy as np
import pytest

from minires import backend, nn
from minires.nn import functional

from strict_array import StrictArray, strict_xp, to_strict


@pytest.fixture(scope="session", autouse=True)
def strict_backend():
    """``get_array_module(strict array)`` is ``strict_xp``, as it would be ``cupy`` for a CuPy array."""
    backend.register_array_module(StrictArray, strict_xp)


def host(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# -- the guard guards ---------------------------------------------------------------------------

def test_strict_arrays_refuse_to_mix_with_numpy_arrays():
    x, plain = strict_xp.ones((2, 3)), np.ones((2, 3))
    for mix in (lambda: x + plain, lambda: plain + x, lambda: plain * x, lambda: x @ plain.T,
                lambda: x * np.array(2.0), lambda: strict_xp.matmul(x, plain.T), lambda: strict_xp.add(x, [1, 2, 3]),
                lambda: x.__setitem__((Ellipsis,), plain), lambda: x[np.array([0, 1])], lambda: x == plain,
                lambda: strict_xp.concatenate([x, plain]), lambda: strict_xp.prod(x.shape)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mix()
    with pytest.raises(ValueError, match="arrays from different devices cannot be mixed"):
        backend.get_array_module(x, plain)


def test_strict_arrays_refuse_implicit_conversion_and_numpy_functions():
    x = strict_xp.arange(6.0).reshape(2, 3)
    for convert in (lambda: np.asarray(x), lambda: np.array([x, x]), lambda: np.float32(x[0, 0])):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert()
    with pytest.raises(TypeError, match=r"numpy.pad called on a StrictArray: op code must call xp.pad"):
        np.pad(x, 1)
    with pytest.raises(TypeError, match="does not support ufuncs"):
        np.maximum(x, 0)
    with pytest.raises(TypeError, match="banned in minires"):
        strict_xp.add.at(x, (0, 0), 1.0)
    with pytest.raises(AttributeError, match="no attribute 'errstate'"):
        strict_xp.errstate


def test_strict_arrays_behave_like_arrays_where_cupy_does():
    host_values = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = strict_xp.asarray(host_values)  # the explicit host-to-device copy
    host_values[0, 0] = 100
    assert isinstance(x, StrictArray) and x.dtype == np.float32 and x.shape == (2, 3)
    assert float(x[0, 0]) == 0.0 and int(x.sum()) == 15 and bool(x[1, 1] > 3)
    total = x.sum()
    assert isinstance(total, StrictArray) and total.shape == ()  # CuPy reductions give 0-d arrays
    assert (x * 2.0).dtype == np.float32 and (np.float32(2) * x).dtype == np.float32  # scalars mix
    assert isinstance(strict_xp.zeros((2, 2)), StrictArray) and isinstance(x.T.reshape(-1).astype(np.float64), StrictArray)
    view = strict_xp.lib.stride_tricks.as_strided(x, shape=(2, 2), strides=x.strides)  # a view, as on CuPy
    view += 10
    x[:, 2] = strict_xp.ones(2, dtype=np.float32)
    np.testing.assert_array_equal(x.get(), [[10, 11, 1], [13, 14, 1]])
    out = strict_xp.empty((2, 3), dtype=np.float32)
    assert strict_xp.multiply(x, 2, out=out) is out
    assert backend.get_array_module(x) is strict_xp


def test_the_guard_catches_code_that_would_break_on_cupy():
    def numpy_only_relu(x):  # np.maximum on an activation and a host buffer: fine on NumPy only
        return np.maximum(x, 0) + np.zeros(x.shape, x.dtype)

    np.testing.assert_array_equal(numpy_only_relu(np.array([-1.0, 2.0])), [0, 2])
    with pytest.raises(TypeError):
        numpy_only_relu(strict_xp.asarray(np.array([-1.0, 2.0])))


# -- every pure function of minires.nn.functional -------------------------------------------------

def _inputs(rng, **shapes):
    return {name: host(rng, *shape) for name, shape in shapes.items()}


# name of a *_forward (or stand-alone) function -> arguments, built with an array module xp
RECIPES = {
    "relu_forward": lambda xp, a: [xp.asarray(a["x"])],
    "linear_forward": lambda xp, a: [xp.asarray(a["x"]), xp.asarray(a["w"]), xp.asarray(a["b"])],
    "dropout_forward": lambda xp, a: [xp.asarray(a["x"]), 0.3, True, xp.random.default_rng(0)],
    "cross_entropy_forward": lambda xp, a: [xp.asarray(a["logits"]), xp.asarray(np.array([0, 4, 1, 1])), 0.1],
    "softmax_cross_entropy": lambda xp, a: [xp.asarray(a["logits"]), xp.asarray(np.array([3, 0, 2, 1])), 0.2],
    "flatten_forward": lambda xp, a: [xp.asarray(a["x"]), 1, 2],
}
SHAPES = {
    "relu_forward": dict(x=(2, 3, 4, 5)),
    "linear_forward": dict(x=(2, 3, 5), w=(4, 5), b=(4,)),
    "dropout_forward": dict(x=(3, 4, 5)),
    "cross_entropy_forward": dict(logits=(4, 5)),
    "softmax_cross_entropy": dict(logits=(4, 5)),
    "flatten_forward": dict(x=(2, 3, 2, 2)),
}


def _public_functions():
    return sorted(name for name, value in vars(functional).items()
                  if inspect.isfunction(value) and not name.startswith("_") and not name.endswith("_backward"))


def _run(name, xp, inputs, rng):
    """Forward, then backward with a random upstream gradient: the output and every gradient."""
    result = getattr(functional, name)(*RECIPES[name](xp, inputs))
    if not name.endswith("_forward"):
        return result if isinstance(result, tuple) else (result,)
    y, cache = result
    dy = xp.asarray(rng.standard_normal(y.shape).astype(y.dtype))
    grads = getattr(functional, name.replace("_forward", "_backward"))(dy, cache)
    return (y, *(grads if isinstance(grads, tuple) else (grads,)))


@pytest.mark.parametrize("name", _public_functions())
def test_every_functional_op_runs_on_strict_arrays(name):
    assert name in RECIPES, f"add a recipe for minires.nn.functional.{name} to the CuPy guard"
    inputs = _inputs(np.random.default_rng(0), **SHAPES[name])
    expected = _run(name, np, inputs, np.random.default_rng(1))
    got = _run(name, strict_xp, inputs, np.random.default_rng(1))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            assert isinstance(g, StrictArray), f"{name} returned a {type(g).__name__} for strict input"
            assert g.dtype == e.dtype
            np.testing.assert_allclose(g.get(), e, rtol=1e-6, atol=1e-7, err_msg=name)
