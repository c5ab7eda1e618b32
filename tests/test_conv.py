"""Conv2d, conv2d_forward/backward, im2col/col2im: gradient checks and equality with PyTorch."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import minires
from minires import nn
from minires.backend import asnumpy
from minires.gradcheck import check_function, check_module
from minires.nn.functional import col2im, conv2d_backward, conv2d_forward, im2col
from tests.support.torch_helpers import assert_close, copy_module_weights, to_torch

# torch warns that its padding="same" with an even kernel copies the input; that is its business
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

# Awkward geometries: (input shape, Conv2d keyword arguments).
CASES = {
    "plain": ((2, 3, 5, 5), dict(in_channels=3, out_channels=4, kernel_size=3)),
    "stride2_even": ((2, 3, 6, 6), dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1)),
    "odd_rect": ((1, 4, 7, 5), dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1),
                                    padding=(1, 0), bias=False)),
    "dilation": ((2, 4, 7, 7), dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2)),
    "groups": ((2, 4, 5, 6), dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2)),
    "depthwise": ((2, 3, 5, 5), dict(in_channels=3, out_channels=6, kernel_size=3, padding=1, groups=3,
                                     bias=False)),
    "downsample_1x1_s2": ((2, 4, 6, 6), dict(in_channels=4, out_channels=8, kernel_size=1, stride=2,
                                             bias=False)),
    "stride_beyond_kernel": ((1, 2, 8, 7), dict(in_channels=2, out_channels=3, kernel_size=2, stride=3,
                                                padding=1)),
    "same_even_kernel": ((2, 3, 6, 5), dict(in_channels=3, out_channels=4, kernel_size=(2, 4),
                                            padding="same", dilation=(1, 2))),
    "valid": ((2, 3, 4, 6), dict(in_channels=3, out_channels=2, kernel_size=3, padding="valid")),
    "mixed_all": ((2, 4, 9, 8), dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 3),
                                     padding=(2, 1), dilation=(2, 1), groups=2)),
}


def _device(xp):
    return "cpu" if xp is np else "cuda"


def _random(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _torch_conv(kwargs, dtype):
    return torch.nn.Conv2d(**kwargs, dtype=dtype)


def _run_both(xp, rng, x_shape, kwargs, dtype, make_input=None):
    """Forward and backward through minires and torch with the same weights, input and dy."""
    module = nn.Conv2d(**kwargs).to(_device(xp), dtype=dtype)
    x = _random(rng, x_shape, dtype)
    x_in = make_input(xp.asarray(x)) if make_input else xp.asarray(x)
    y = module(x_in)
    dy = xp.asarray(_random(rng, y.shape, dtype))
    dx = module.backward(dy)

    ref = _torch_conv(kwargs, torch.float64 if dtype == np.float64 else torch.float32)
    copy_module_weights(module, ref)
    x_ref = to_torch(x, requires_grad=True)
    y_ref = ref(x_ref)
    y_ref.backward(to_torch(dy))
    return (module, y, dx), (ref, y_ref, x_ref.grad)


def _assert_same_as_torch(ours, theirs, rtol, atol):
    (module, y, dx), (ref, y_ref, dx_ref) = ours, theirs
    assert_close(y, y_ref, rtol, atol, "output")
    assert_close(dx, dx_ref, rtol, atol, "input gradient")
    assert_close(module.weight.grad, ref.weight.grad, rtol, atol, "weight gradient")
    if ref.bias is not None:
        assert_close(module.bias.grad, ref.bias.grad, rtol, atol, "bias gradient")


# -- gradient checks (float64, random upstream gradient, tiny shapes) -----------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_module(xp, case):
    x_shape, kwargs = CASES[case]
    module = nn.Conv2d(**kwargs).to(_device(xp))
    report = check_module(module, xp.asarray(np.random.default_rng(0).standard_normal(x_shape)))
    assert report.ok, str(report)


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_pure_functions(xp, rng, bias):
    x = xp.asarray(rng.standard_normal((2, 4, 6, 5)))
    w = xp.asarray(rng.standard_normal((6, 2, 3, 3)))
    b = xp.asarray(rng.standard_normal(6)) if bias else None

    def forward(x, w, b):
        return conv2d_forward(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)

    report = check_function(forward, conv2d_backward, [x, w, b], names=["x", "w", "b"])
    assert report.ok, str(report)
    assert len(report.entries) == (3 if bias else 2)


# -- equality with PyTorch -------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_float64(xp, rng, case):
    x_shape, kwargs = CASES[case]
    ours, theirs = _run_both(xp, rng, x_shape, kwargs, np.float64)
    _assert_same_as_torch(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_float32(xp, rng, case):
    x_shape, kwargs = CASES[case]
    ours, theirs = _run_both(xp, rng, x_shape, kwargs, np.float32)
    _assert_same_as_torch(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, bias=False),           # basic block
    dict(in_channels=16, out_channels=32, kernel_size=3, stride=2, padding=1, bias=False),  # stage entry
    dict(in_channels=16, out_channels=32, kernel_size=1, stride=2, bias=False),             # downsample
    dict(in_channels=3, out_channels=16, kernel_size=3, padding=1),                         # CIFAR stem
], ids=["3x3", "3x3_s2", "1x1_s2", "stem"])
def test_resnet_shapes_float32(xp, rng, kwargs):
    x_shape = (8, kwargs["in_channels"], 16, 16)
    ours, theirs = _run_both(xp, rng, x_shape, kwargs, np.float32)
    _assert_same_as_torch(ours, theirs, rtol=1e-4, atol=1e-4)


def test_batch_of_one(xp, rng):
    ours, theirs = _run_both(xp, rng, (1, 3, 7, 6), dict(in_channels=3, out_channels=5, kernel_size=3,
                                                         stride=2, padding=1), np.float64)
    _assert_same_as_torch(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=1, groups=3)], ids=["shifted", "stride2", "groups"])
def test_an_empty_batch_gives_an_empty_output_and_zero_parameter_gradients(xp, rng, kwargs):
    """PyTorch returns a (0, C_out, H_out, W_out) output; backward gives zero weight and bias gradients."""
    ours, theirs = _run_both(xp, rng, (0, 3, 8, 7), dict(in_channels=3, out_channels=6, **kwargs), np.float64)
    _assert_same_as_torch(ours, theirs, rtol=0, atol=0)
    assert ours[1].shape == tuple(theirs[1].shape) and ours[1].shape[0] == 0


@pytest.mark.parametrize("stride", [1, 2], ids=["stride1_flipped_kernel_route", "stride2_col2im_route"])
@pytest.mark.parametrize("view", ["transposed", "sliced", "channels_last", "reversed"])
def test_non_contiguous_input(xp, rng, view, stride):
    make = {
        "transposed": lambda x: xp.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "sliced": lambda x: xp.repeat(x, 2, axis=3)[:, :, :, ::2],
        "channels_last": lambda x: xp.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        "reversed": lambda x: xp.ascontiguousarray(x[:, ::-1])[:, ::-1],
    }[view]
    kwargs = dict(in_channels=4, out_channels=6, kernel_size=3, stride=stride, padding=1, groups=2)
    ours, theirs = _run_both(xp, rng, (2, 4, 6, 7), kwargs, np.float64, make_input=make)
    _assert_same_as_torch(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride, groups", [(2, 1), (1, 2)], ids=["col2im_route", "flipped_kernel_route"])
def test_non_contiguous_upstream_gradient(xp, rng, stride, groups):
    x = xp.asarray(rng.standard_normal((2, 4, 6, 6)))
    w = xp.asarray(rng.standard_normal((4, 4 // groups, 3, 3)))
    y, cache = conv2d_forward(x, w, None, stride=stride, padding=1, groups=groups)
    dy = xp.asarray(rng.standard_normal((*y.shape[:3], 2 * y.shape[3])))[..., ::2]     # a strided slice
    dy_before = dy.copy()
    dx, dw, _ = conv2d_backward(dy, cache)
    assert bool(xp.array_equal(dy, dy_before))
    x_ref, w_ref = to_torch(x, True), to_torch(w, True)
    F.conv2d(x_ref, w_ref, None, stride=stride, padding=1, groups=groups).backward(to_torch(dy))
    assert_close(dx, x_ref.grad, what="input gradient")
    assert_close(dw, w_ref.grad, what="weight gradient")


def test_inputs_left_unmodified(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 4, 5, 5)))
    w = xp.asarray(rng.standard_normal((4, 2, 3, 3)))
    b = xp.asarray(rng.standard_normal(4))
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    y, cache = conv2d_forward(x, w, b, padding=1, groups=2)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dy0 = dy.copy()
    conv2d_backward(dy, cache)
    for name, now, before in (("x", x, x0), ("w", w, w0), ("b", b, b0), ("dy", dy, dy0)):
        assert bool(xp.array_equal(now, before)), f"{name} was modified"


def test_1x1_input_left_unmodified_by_backward(xp, rng):
    # with a 1x1 stride-1 kernel the windows are x itself: backward must not write into x
    x = xp.asarray(rng.standard_normal((2, 3, 4, 4)))
    x_channels_last = xp.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = xp.asarray(rng.standard_normal((5, 3, 1, 1)))
    y, cache = conv2d_forward(x_channels_last, w, None)
    conv2d_backward(xp.asarray(rng.standard_normal(y.shape)), cache)
    assert bool(xp.array_equal(x_channels_last, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_dtype_preserved(xp, rng, dtype, bias):
    module = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=bias).to(_device(xp), dtype=dtype)
    y = module(xp.asarray(rng.standard_normal((2, 4, 6, 6)), dtype=dtype))
    dx = module.backward(xp.asarray(rng.standard_normal(y.shape), dtype=dtype))
    assert y.dtype == dx.dtype == module.weight.grad.dtype == dtype
    if bias:
        assert module.bias.grad.dtype == dtype


# -- the pure-function API ----------------------------------------------------------------------
def test_pure_functions_keep_no_state(xp, rng):
    """Two forwards, then the backwards in reverse order: each uses only its own cache."""
    w = xp.asarray(rng.standard_normal((3, 2, 3, 3)))
    b = xp.asarray(rng.standard_normal(3))
    xs = [xp.asarray(rng.standard_normal((2, 2, 5, 4))) for _ in range(2)]
    runs = [conv2d_forward(x, w, b, 1, 1) for x in xs]
    for x, (y, cache) in reversed(list(zip(xs, runs))):
        dy = xp.asarray(rng.standard_normal(y.shape))
        dx, dw, db = conv2d_backward(dy, cache)
        x_ref, w_ref, b_ref = to_torch(x, True), to_torch(w, True), to_torch(b, True)
        y_ref = F.conv2d(x_ref, w_ref, b_ref, 1, 1)
        y_ref.backward(to_torch(dy))
        assert_close(y, y_ref, what="output")
        for ours, theirs, what in ((dx, x_ref, "dx"), (dw, w_ref, "dw"), (db, b_ref, "db")):
            assert_close(ours, theirs.grad, what=what)


def test_no_bias_gives_db_none(xp, rng):
    y, cache = conv2d_forward(xp.asarray(rng.standard_normal((1, 2, 4, 4))),
                              xp.asarray(rng.standard_normal((3, 2, 3, 3))), None)
    dx, dw, db = conv2d_backward(xp.asarray(rng.standard_normal(y.shape)), cache)
    assert db is None and dx.shape == (1, 2, 4, 4) and dw.shape == (3, 2, 3, 3)


def test_cache_serves_one_backward(xp, rng):
    y, cache = conv2d_forward(xp.asarray(rng.standard_normal((1, 2, 4, 4))),
                              xp.asarray(rng.standard_normal((3, 2, 3, 3))), None)
    dy = xp.asarray(rng.standard_normal(y.shape))
    conv2d_backward(dy, cache)
    with pytest.raises(RuntimeError, match="conv2d_backward: this cache was already used"):
        conv2d_backward(dy, cache)


def test_functional_exports():
    from minires.nn import functional
    for name in ("conv2d_forward", "conv2d_backward", "im2col", "col2im"):
        assert callable(getattr(functional, name))
    assert nn.Conv2d is minires.nn.conv.Conv2d


# -- the shifted-GEMM path (stride 1, one group, few channels) against PyTorch and im2col ---------
SHIFTED_CASES = {
    "3x3_pad1_odd": ((2, 3, 7, 5), dict(in_channels=3, out_channels=4, kernel_size=3, padding=1)),
    "3x3_pad0": ((2, 2, 6, 7), dict(in_channels=2, out_channels=3, kernel_size=3, bias=False)),
    "3x3_pad2_dilation2": ((2, 3, 7, 6), dict(in_channels=3, out_channels=2, kernel_size=3, padding=2,
                                              dilation=2)),
    "1x1": ((2, 5, 5, 3), dict(in_channels=5, out_channels=4, kernel_size=1)),
    "1x1_pad1": ((1, 2, 3, 4), dict(in_channels=2, out_channels=3, kernel_size=1, padding=1)),
    "rect_2x4_same": ((2, 3, 6, 5), dict(in_channels=3, out_channels=4, kernel_size=(2, 4),
                                         padding="same", dilation=(2, 1))),
    "rect_pad_2x1": ((1, 4, 5, 8), dict(in_channels=4, out_channels=3, kernel_size=(3, 2),
                                        padding=(2, 1))),
    "batch_of_one": ((1, 3, 5, 5), dict(in_channels=3, out_channels=3, kernel_size=3, padding=1)),
}


@pytest.fixture(params=[4096, 7], ids=["one_block", "blocks_of_7_rows"])
def block_rows(request, monkeypatch):
    """The shifted path with its usual blocks (one here) and with many ragged blocks."""
    monkeypatch.setattr(minires.nn.conv_shifted, "_MAX_GEMM_BLOCK_ROWS", request.param)


def test_shifted_path_taken_where_intended(xp):
    """The route per device (see ``conv_shifted.uses_shifted_gemm``): on the CPU the shifted GEMM
    for stride 1, one group and few channels; on a GPU never, one big GEMM (im2col) at every size."""
    def taken(w_shape, **kwargs):
        x = xp.zeros((1, w_shape[1] * kwargs.get("groups", 1), 6, 6), dtype=np.float32)
        _, cache = conv2d_forward(x, xp.zeros(w_shape, dtype=np.float32), None, **kwargs)
        return isinstance(cache, minires.nn.conv_shifted.ShiftedConvCache)

    on_the_cpu = xp is np
    assert taken((16, 16, 3, 3), padding=1) == taken((16, 32, 3, 3)) == taken((64, 3, 3, 3)) == on_the_cpu
    assert not taken((16, 16, 3, 3), stride=2)
    assert not taken((16, 8, 3, 3), groups=2)
    assert not taken((32, 32, 3, 3)) and not taken((64, 64, 3, 3))  # many channels: im2col is faster
    for case in SHIFTED_CASES.values():
        x_shape, kwargs = case
        module = nn.Conv2d(**kwargs).to(_device(xp))
        module(xp.zeros(x_shape, dtype=np.float32))
        assert isinstance(module._saved_for_backward(), minires.nn.conv_shifted.ShiftedConvCache) == on_the_cpu
    with nn.reference_kernels():
        assert not taken((16, 16, 3, 3), padding=1)  # the textbook route: im2col + GEMM


# The shifted GEMM runs on the CPU only (above), so its tests run on NumPy only: on a GPU they
# would test im2col under the shifted route's name.
@pytest.mark.parametrize("case", sorted(SHIFTED_CASES))
def test_shifted_matches_torch_float64(rng, case, block_rows):
    x_shape, kwargs = SHIFTED_CASES[case]
    ours, theirs = _run_both(np, rng, x_shape, kwargs, np.float64)
    _assert_same_as_torch(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(SHIFTED_CASES))
def test_shifted_matches_textbook_route(rng, case, monkeypatch):
    x_shape, kwargs = SHIFTED_CASES[case]
    x = rng.standard_normal(x_shape)
    module = nn.Conv2d(**kwargs).to(dtype=np.float64)
    dy = rng.standard_normal(module(x).shape)

    def run():
        module.zero_grad()
        y = module(x)
        grads = [module.backward(dy), module.weight.grad]
        return [y] + grads + ([module.bias.grad] if module.bias is not None else [])

    fast = run()
    monkeypatch.setattr(minires.nn.conv_shifted, "_MAX_GEMM_BLOCK_ROWS", 5)
    blocked = run()
    with nn.reference_kernels():
        reference = run()
    for ours, blocks, theirs in zip(fast, blocked, reference):
        np.testing.assert_allclose(asnumpy(ours), asnumpy(theirs), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(asnumpy(blocks), asnumpy(theirs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["3x3_pad2_dilation2", "rect_2x4_same", "1x1_pad1"])
def test_shifted_gradcheck(case, block_rows):
    x_shape, kwargs = SHIFTED_CASES[case]
    module = nn.Conv2d(**kwargs)
    report = check_module(module, np.random.default_rng(1).standard_normal(x_shape))
    assert report.ok, str(report)


@pytest.mark.parametrize("bias", [True, False])
def test_shifted_float32(rng, bias, block_rows):
    kwargs = dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, bias=bias)
    ours, theirs = _run_both(np, rng, (3, 16, 9, 8), kwargs, np.float32)
    _assert_same_as_torch(ours, theirs, rtol=1e-4, atol=1e-4)
    module, y, dx = ours
    assert y.dtype == dx.dtype == module.weight.grad.dtype == np.float32
    assert not bias or module.bias.grad.dtype == np.float32


def test_shifted_non_contiguous_input_left_unmodified(rng):
    x = rng.standard_normal((2, 5, 3, 4))[:, ::-1].transpose(0, 1, 3, 2)  # a strided view
    x_copy = x.copy()
    w = rng.standard_normal((4, 3, 3, 3))
    y, cache = conv2d_forward(x[:, 1:4], w, None, padding=1)
    dy = rng.standard_normal((2, 4, 3, 8))[..., ::2].transpose(0, 1, 3, 2)  # strided too
    dx, dw, _ = conv2d_backward(dy, cache)
    x_ref, w_ref = to_torch(x[:, 1:4], True), to_torch(w, True)
    F.conv2d(x_ref, w_ref, None, padding=1).backward(to_torch(dy))
    assert_close(dx, x_ref.grad, what="input gradient")
    assert_close(dw, w_ref.grad, what="weight gradient")
    assert np.array_equal(x, x_copy)


# -- the im2col path's input gradient: the flipped-kernel convolution (stride 1) or col2im ------
@pytest.fixture(params=["fast", "textbook"])
def dx_route(request, monkeypatch):
    """The im2col forward everywhere (no channel count is small enough for the shifted GEMM), and
    its fast backward (flipped kernel at stride 1, col2im by kernel offset else) or the textbook
    one (dcols in one GEMM, col2im), chosen with ``reference_kernels``."""
    monkeypatch.setattr(minires.nn.conv_shifted, "_MAX_CHANNEL_PRODUCT", 0)
    with nn.reference_kernels(request.param == "textbook"):
        yield


ALL_CASES = {**CASES, **SHIFTED_CASES}


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_im2col_routes_match_torch_float64(xp, rng, case, dx_route):
    x_shape, kwargs = ALL_CASES[case]
    ours, theirs = _run_both(xp, rng, x_shape, kwargs, np.float64)
    _assert_same_as_torch(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["groups", "dilation", "same_even_kernel", "1x1_pad1"])
def test_im2col_routes_gradcheck(xp, case, dx_route):
    x_shape, kwargs = ALL_CASES[case]
    module = nn.Conv2d(**kwargs).to(_device(xp))
    report = check_module(module, xp.asarray(np.random.default_rng(2).standard_normal(x_shape)))
    assert report.ok, str(report)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(padding=2, dilation=2), dict(groups=2)])
def test_im2col_routes_float32(xp, rng, kwargs, dx_route):
    kwargs = dict(in_channels=32, out_channels=32, kernel_size=3, bias=False, **kwargs)
    ours, theirs = _run_both(xp, rng, (3, 32, 9, 8), kwargs, np.float32)
    _assert_same_as_torch(ours, theirs, rtol=1e-4, atol=1e-4)


def test_flipped_kernel_route_where_it_applies():
    def flipped_padding(**kwargs):
        geometry = minires.nn.conv._conv_geometry("test", (1, 2, 6, 6), **kwargs)
        flipped = minires.nn.conv_flipped.flipped_geometry(geometry, (1, 3, *geometry.output_size))
        return None if flipped is None else flipped.padding

    assert flipped_padding(kernel_size=3, padding=1) == ((1, 1), (1, 1))
    assert flipped_padding(kernel_size=3) == ((2, 2), (2, 2))                    # "full" padding
    assert flipped_padding(kernel_size=(2, 4), padding="same", dilation=(1, 2)) == ((1, 0), (3, 3))
    assert flipped_padding(kernel_size=3, padding=2, dilation=2) == ((2, 2), (2, 2))
    assert flipped_padding(kernel_size=3, stride=2, padding=1) is None          # strided: col2im
    assert flipped_padding(kernel_size=1, padding=1) is None                    # padding beyond the kernel


# -- im2col and col2im ---------------------------------------------------------------------------
GEOMETRIES = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
    dict(kernel_size=1, stride=2, padding=0),
]


def _torch_unfold_as_cols(x, groups, **geometry):
    """torch's unfold (N, C*kh*kw, L), rearranged to our (G, N*L, kh*kw*C/G) rows."""
    N, C = x.shape[:2]
    kh, kw = geometry["kernel_size"] if isinstance(geometry["kernel_size"], tuple) else (geometry["kernel_size"],) * 2
    unfolded = F.unfold(to_torch(x), **geometry).numpy()
    L = unfolded.shape[-1]
    by_group = unfolded.reshape(N, groups, C // groups, kh, kw, L)
    return by_group.transpose(1, 0, 5, 3, 4, 2).reshape(groups, N * L, kh * kw * C // groups)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("groups", [1, 2])
def test_im2col_matches_torch_unfold(xp, rng, geometry, groups):
    x = rng.standard_normal((2, 4, 6, 7))
    cols = im2col(xp.asarray(x), groups=groups, **geometry)
    np.testing.assert_array_equal(asnumpy(cols), _torch_unfold_as_cols(x, groups, **geometry))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_matches_torch_fold(xp, rng, geometry):
    x_shape = (2, 4, 6, 7)
    cols_shape = im2col(xp.zeros(x_shape), **geometry).shape
    cols = rng.standard_normal(cols_shape)
    ours = col2im(xp.asarray(cols), x_shape, **geometry)
    # back to torch's (N, C*kh*kw, L) layout, then torch's fold sums the windows
    kh, kw = geometry["kernel_size"] if isinstance(geometry["kernel_size"], tuple) else (geometry["kernel_size"],) * 2
    N, C = x_shape[:2]
    L = cols_shape[1] // N
    torch_cols = cols.reshape(N, L, kh, kw, C).transpose(0, 4, 2, 3, 1).reshape(N, C * kh * kw, L)
    expected = F.fold(torch.from_numpy(torch_cols), output_size=x_shape[2:], **geometry)
    assert_close(ours, expected, what="col2im")


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(xp, rng, geometry):
    """<im2col(x), c> = <x, col2im(c)> for all x and c: the definition of the backward pass."""
    x = xp.asarray(rng.standard_normal((2, 4, 6, 6)))
    cols = im2col(x, groups=2, **geometry)
    c = xp.asarray(rng.standard_normal(cols.shape))
    back = col2im(c, x.shape, groups=2, **geometry)
    assert back.shape == x.shape and back.dtype == x.dtype
    assert math.isclose(float(xp.sum(cols * c)), float(xp.sum(x * back)), rel_tol=1e-12)


def test_col2im_rejects_wrong_cols_shape(xp):
    with pytest.raises(ValueError, match=r"col2im: expected cols of shape \(1, 72, 36\), got \(1, 72, 35\)"):
        col2im(xp.zeros((1, 72, 35)), (2, 4, 6, 6), kernel_size=3, padding=1)


# -- the module ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, kwargs", [
    ((3, 64, 3), dict(padding=1, bias=False)),
    ((3, 6, (3, 2)), dict(stride=2, dilation=2, groups=3)),
    ((4, 4, 3), dict(padding="same")),
    ((4, 4, 3), dict(padding="valid")),
    ((8, 16, 1), dict(stride=(2, 1), padding=(0, 1))),
])
def test_repr_matches_torch(args, kwargs):
    assert repr(nn.Conv2d(*args, **kwargs)) == repr(torch.nn.Conv2d(*args, **kwargs))


def test_parameters_and_state_dict():
    conv = nn.Conv2d(4, 8, (3, 2), groups=2)
    assert conv.weight.shape == (8, 2, 3, 2) and conv.bias.shape == (8,)
    assert conv.weight.dtype == conv.bias.dtype == np.float32
    assert list(conv.state_dict()) == list(torch.nn.Conv2d(4, 8, (3, 2), groups=2).state_dict())
    no_bias = nn.Conv2d(4, 8, 3, bias=False)
    assert no_bias.bias is None
    assert list(no_bias.state_dict()) == ["weight"]
    assert [name for name, _ in no_bias.named_parameters()] == ["weight"]


def test_init_like_pytorch():
    minires.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, groups=2)
    bound = 1 / math.sqrt(32 * 3 * 3)   # kaiming_uniform_(a=sqrt(5)) and the bias rule both give this
    for values in (conv.weight.data, conv.bias.data):
        assert np.abs(values).max() <= bound
    assert np.abs(conv.weight.data.std() / (bound / math.sqrt(3)) - 1) < 0.02  # uniform's std
    minires.manual_seed(0)
    again = nn.Conv2d(64, 64, 3, groups=2)
    np.testing.assert_array_equal(conv.weight.data, again.weight.data)


def test_gradients_accumulate_over_two_backwards(xp, rng):
    conv = nn.Conv2d(2, 3, 3, padding=1).to(_device(xp), dtype=np.float64)
    x = xp.asarray(rng.standard_normal((2, 2, 4, 4)))
    dy = xp.asarray(rng.standard_normal((2, 3, 4, 4)))
    conv(x)
    conv.backward(dy)
    first_w, first_b = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv(x)
    conv.backward(dy)
    assert_close(conv.weight.grad, asnumpy(2 * first_w), what="weight gradient")
    assert_close(conv.bias.grad, asnumpy(2 * first_b), what="bias gradient")


def test_no_grad_forward_keeps_nothing(xp, rng):
    conv = nn.Conv2d(2, 3, 3).to(_device(xp))
    with minires.no_grad():
        y = conv(xp.asarray(rng.standard_normal((1, 2, 5, 5)), dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"Conv2d\(2, 3.*no_grad"):
        conv.backward(xp.ones(y.shape, dtype=np.float32))


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_errors(xp):
    conv = nn.Conv2d(3, 4, 3, padding=1).to(_device(xp))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, kernel_size=\(3, 3\).*3 channels.*\(2, 5, 6, 6\)"):
        conv(xp.zeros((2, 5, 6, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*4-D input \(N, C, H, W\), got shape \(3, 6, 6\)"):
        conv(xp.zeros((3, 6, 6), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Conv2d\(3, 4.*floating-point input.*int64"):
        conv(xp.zeros((2, 3, 6, 6), dtype=np.int64))
    with pytest.raises(TypeError, match=r"Conv2d\(3, 4.*float64 does not match parameter dtype float32"):
        conv(xp.zeros((2, 3, 6, 6), dtype=np.float64))
    with pytest.raises(TypeError, match=r"Conv2d\(3, 4.*NumPy or CuPy array, got builtins.list"):
        conv([[[[0.0]]]])


def test_kernel_larger_than_padded_input(xp):
    conv = nn.Conv2d(3, 4, 5, padding=1).to(_device(xp))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, kernel_size=\(5, 5\).*kernel size \(5, 5\).*"
                                         r"larger than the padded input \(4, 7\)"):
        conv(xp.zeros((1, 3, 2, 5), dtype=np.float32))
    dilated = nn.Conv2d(3, 4, 3, dilation=3).to(_device(xp))
    with pytest.raises(ValueError, match=r"kernel size \(7, 7\) \(after dilation\).*\(6, 9\)"):
        dilated(xp.zeros((1, 3, 6, 9), dtype=np.float32))


def test_backward_before_forward():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 4.*backward called before forward"):
        conv.backward(np.zeros((1, 4, 2, 2), dtype=np.float32))


def test_bad_upstream_gradient(xp, rng):
    y, cache = conv2d_forward(xp.asarray(rng.standard_normal((1, 2, 4, 4))),
                              xp.asarray(rng.standard_normal((3, 2, 3, 3))), None, padding=1)
    with pytest.raises(ValueError, match=r"conv2d_backward: expected upstream gradient of shape "
                                         r"\(1, 3, 4, 4\), got \(1, 3, 4, 5\)"):
        conv2d_backward(xp.zeros((1, 3, 4, 5)), cache)
    with pytest.raises(TypeError, match="conv2d_backward: upstream gradient of dtype float32"):
        conv2d_backward(xp.zeros((1, 3, 4, 4), dtype=np.float32), cache)


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=2), r"Conv2d: in_channels \(3\) must be divisible by groups \(2\)"),
    (dict(in_channels=4, groups=4), r"Conv2d: out_channels \(6\) must be divisible by groups \(4\)"),
    (dict(groups=0), "Conv2d: groups must be a positive integer, got 0"),
    (dict(stride=2, padding="same"), "Conv2d: padding='same' is not supported for strided convolutions"),
    (dict(padding="full"), "Conv2d: invalid padding string 'full', should be one of"),
    (dict(padding=-1), r"Conv2d: padding must be an int or a pair of ints >= 0, got -1"),
    (dict(stride=0), r"Conv2d: stride must be an int or a pair of ints >= 1, got 0"),
    (dict(kernel_size=(3, 3, 3)), r"Conv2d: kernel_size must be an int or a pair of ints >= 1, got \(3, 3, 3\)"),
    (dict(dilation=1.5), r"Conv2d: dilation must be an int or a pair of ints >= 1, got 1.5"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2d(**{**dict(in_channels=3, out_channels=6, kernel_size=3), **kwargs})


def test_pure_function_bad_operands(xp):
    x = xp.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d_forward: expected input with 4 channels.*\(1, 3, 5, 5\)"):
        conv2d_forward(xp.zeros((1, 3, 5, 5)), xp.zeros((6, 2, 3, 3)), None, groups=2)
    with pytest.raises(ValueError, match=r"conv2d_forward: the weight's 5 output channels are not divisible"):
        conv2d_forward(x, xp.zeros((5, 2, 3, 3)), None, groups=2)
    with pytest.raises(ValueError, match=r"conv2d_forward: expected a 4-D weight.*got shape \(6, 4, 3\)"):
        conv2d_forward(x, xp.zeros((6, 4, 3)), None)
    with pytest.raises(ValueError, match=r"conv2d_forward: expected bias of shape \(6,\), got \(5,\)"):
        conv2d_forward(x, xp.zeros((6, 4, 3, 3)), xp.zeros(5))
    with pytest.raises(ValueError, match="conv2d_forward: padding='same' is not supported"):
        conv2d_forward(x, xp.zeros((6, 4, 3, 3)), None, stride=2, padding="same")
