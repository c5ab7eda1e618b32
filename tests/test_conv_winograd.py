"""The Winograd route of a 3x3 convolution (``minires/nn/conv_winograd.py``): the same numbers as the
textbook route and PyTorch, forward and every gradient, on awkward shapes.

The route takes 3x3, stride 1, dilation 1, one group, at least ``_MIN_CHANNELS`` channels and
``_MIN_TILE_CHANNELS`` tiles x channels on the CPU. The small shapes here are sent to it by lowering
those minimums (``winograd`` fixture), and run in blocks of one tile row as well as in the usual blocks.
"""
import numpy as np
import pytest
import torch.nn.functional as F

import minires
from minires import nn
from minires.backend import asnumpy
from minires.gradcheck import check_function
from minires.nn import conv_winograd
from minires.nn.conv import _conv_geometry
from minires.nn.functional import conv2d_backward, conv2d_forward
from tests.support.torch_helpers import assert_close, to_torch

# (input shape, Conv2d keyword arguments): 3x3, stride 1, one group; any padding
CASES = {
    "odd_rect_pad1": ((2, 3, 7, 5), dict(in_channels=3, out_channels=4, kernel_size=3, padding=1)),
    "pad0_odd_output": ((2, 2, 6, 9), dict(in_channels=2, out_channels=3, kernel_size=3, bias=False)),
    "pad2": ((2, 3, 5, 6), dict(in_channels=3, out_channels=2, kernel_size=3, padding=2)),
    "pad_rect_2x0": ((1, 4, 4, 7), dict(in_channels=4, out_channels=5, kernel_size=3, padding=(2, 0))),
    "batch_of_one": ((1, 3, 8, 8), dict(in_channels=3, out_channels=3, kernel_size=3, padding=1)),
    "map_1x1": ((3, 2, 1, 1), dict(in_channels=2, out_channels=4, kernel_size=3, padding=1)),
    "map_2x2": ((2, 4, 2, 2), dict(in_channels=4, out_channels=2, kernel_size=3, padding=1)),
    "map_3x3_pad0": ((2, 3, 3, 3), dict(in_channels=3, out_channels=3, kernel_size=3, bias=False)),
    "same": ((2, 3, 5, 4), dict(in_channels=3, out_channels=5, kernel_size=3, padding="same")),
}


@pytest.fixture(params=[None, 1], ids=["usual_blocks", "blocks_of_one_tile_row"])
def winograd(request, monkeypatch):
    """Every 3x3 stride-1 convolution on the Winograd route, in its usual blocks or in one-row blocks."""
    monkeypatch.setattr(conv_winograd, "_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "_MIN_TILE_CHANNELS", 0)
    if request.param is not None:
        monkeypatch.setattr(conv_winograd, "_CHUNK_BYTES", request.param)


def _forward_backward(module, x, dy):
    """``[y, dx, dw(, db)]`` of one forward and backward, and the forward's cache type."""
    module.zero_grad()
    y = module(x)
    route = type(module._cache).__name__
    grads = [module.backward(dy), module.weight.grad]
    return [y] + grads + ([module.bias.grad] if module.bias is not None else []), route


def _on_both_routes(x_shape, kwargs, rng, make_input=None):
    """The Winograd route's results and the textbook route's, on the same float64 data."""
    module = nn.Conv2d(**kwargs).to(dtype=np.float64)
    x = rng.standard_normal(x_shape)
    x_in = make_input(x) if make_input else x
    dy = rng.standard_normal(module(x).shape)
    fast, route = _forward_backward(module, x_in, dy)
    assert route == "WinogradConvCache"
    with nn.reference_kernels():
        textbook, _ = _forward_backward(module, x, dy)
    return fast, textbook


NAMES = ["output", "input gradient", "weight gradient", "bias gradient"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_the_textbook_route_float64(rng, case, winograd):
    fast, textbook = _on_both_routes(*CASES[case], rng)
    for ours, theirs, what in zip(fast, textbook, NAMES):
        assert_close(ours, theirs, rtol=1e-11, atol=1e-12, what=what)


@pytest.mark.parametrize("view", ["nchw_contiguous", "transposed", "sliced", "reversed_channels"])
def test_non_contiguous_input_left_unmodified(rng, view, winograd):
    make = {
        "nchw_contiguous": np.ascontiguousarray,
        "transposed": lambda x: np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "sliced": lambda x: np.repeat(x, 2, axis=3)[:, :, :, ::2],
        "reversed_channels": lambda x: np.ascontiguousarray(x[:, ::-1])[:, ::-1],
    }[view]
    kept = {}

    def make_and_keep(x):
        kept["input"], kept["copy"] = make(x), make(x).copy()
        return kept["input"]

    fast, textbook = _on_both_routes((2, 4, 7, 6), dict(in_channels=4, out_channels=5, kernel_size=3, padding=1),
                                     rng, make_and_keep)
    for ours, theirs, what in zip(fast, textbook, NAMES):
        assert_close(ours, theirs, rtol=1e-11, atol=1e-12, what=what)
    np.testing.assert_array_equal(kept["input"], kept["copy"])


@pytest.mark.parametrize("case", ["odd_rect_pad1", "pad0_odd_output", "pad_rect_2x0", "map_1x1"])
def test_gradcheck(case, winograd):
    """Finite differences against the route's x, w and b gradients, with a random upstream gradient."""
    x_shape, kwargs = CASES[case]
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((kwargs["out_channels"], x_shape[1], 3, 3))
    b = rng.standard_normal(kwargs["out_channels"])
    padding = kwargs.get("padding", 0)
    assert isinstance(conv2d_forward(x, w, b, padding=padding)[1], conv_winograd.WinogradConvCache)
    report = check_function(lambda x, w, b: conv2d_forward(x, w, b, padding=padding), conv2d_backward,
                            [x, w, b], names=["x", "w", "b"])
    assert report.ok and len(report.entries) == 3, str(report)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_float32_matches_torch(rng, bias, padding, winograd):
    """Forward and every gradient against PyTorch's conv2d, at the other float32 tests' tolerance."""
    w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32) / 8
    b = rng.standard_normal(12).astype(np.float32) if bias else None
    x = rng.standard_normal((3, 8, 9, 10)).astype(np.float32).transpose(0, 1, 3, 2)  # a transposed view
    y, cache = conv2d_forward(x, w, b, padding=padding)
    assert isinstance(cache, conv_winograd.WinogradConvCache)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, cache)
    x_ref, w_ref = to_torch(x, True), to_torch(w, True)
    b_ref = None if b is None else to_torch(b, True)
    y_ref = F.conv2d(x_ref, w_ref, b_ref, padding=padding)
    y_ref.backward(to_torch(dy))
    assert y.dtype == dx.dtype == dw.dtype == np.float32
    assert_close(y, y_ref, rtol=1e-4, atol=1e-4, what="output")
    assert_close(dx, x_ref.grad, rtol=1e-4, atol=1e-4, what="input gradient")
    assert_close(dw, w_ref.grad, rtol=1e-4, atol=1e-4, what="weight gradient")
    if bias:
        assert db.dtype == np.float32
        assert_close(db, b_ref.grad, rtol=1e-4, atol=1e-4, what="bias gradient")


# ResNet-18-CIFAR's stride-1 3x3 convolutions (channels, map size), at a small batch.
RESNET18_LAYERS = [(64, 32), (128, 16), (256, 8), (512, 4)]
# measured at batch 2: 1.4e-7 to 5.3e-7, 1.0x to 1.9x the float32 im2col route's 0.9e-7 to 3.7e-7
FLOAT32_RELATIVE_ERROR, TIMES_IM2COL_ERROR = 2e-6, 3


@pytest.mark.parametrize("channels, size", RESNET18_LAYERS, ids=[f"{c}ch_{s}x{s}" for c, s in RESNET18_LAYERS])
def test_float32_error_on_resnet18_layers(channels, size, winograd):
    """Relative error (norm-wise) of the float32 route against float64, for y, dx and dw: within
    ``FLOAT32_RELATIVE_ERROR``, and within ``TIMES_IM2COL_ERROR`` times the float32 im2col route's."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, channels, size, size))
    w = rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(9 * channels)  # PyTorch-sized weights
    dy = rng.standard_normal((2, channels, size, size))

    def results(dtype, reference=False):
        with nn.reference_kernels(reference):
            y, cache = conv2d_forward(x.astype(dtype), w.astype(dtype), None, padding=1)
            assert reference or isinstance(cache, conv_winograd.WinogradConvCache)
            dx, dw, _ = conv2d_backward(dy.astype(dtype), cache)
        return [y.astype(np.float64), dx.astype(np.float64), dw.astype(np.float64)]

    exact = results(np.float64, reference=True)
    for ours, im2col, truth, what in zip(results(np.float32), results(np.float32, reference=True), exact,
                                         ["output", "input gradient", "weight gradient"]):
        error = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
        im2col_error = np.linalg.norm(im2col - truth) / np.linalg.norm(truth)
        assert error <= FLOAT32_RELATIVE_ERROR, f"{what}: {error:.2e}"
        assert error <= TIMES_IM2COL_ERROR * im2col_error, f"{what}: {error:.2e} against im2col's {im2col_error:.2e}"


def test_pure_functions_keep_no_state(rng, winograd):
    """Two forwards, then the backwards in reverse order: nothing returned points into scratch."""
    w, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    xs = [rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 7, 6))]
    runs = [conv2d_forward(x, w, b, 1, 1) for x in xs]
    outputs = [y.copy() for y, _ in runs]
    for x, (y, cache), y_then in reversed(list(zip(xs, runs, outputs))):
        dy = rng.standard_normal(y.shape)
        dx, dw, db = conv2d_backward(dy, cache)
        x_ref, w_ref, b_ref = to_torch(x, True), to_torch(w, True), to_torch(b, True)
        y_ref = F.conv2d(x_ref, w_ref, b_ref, 1, 1)
        y_ref.backward(to_torch(dy))
        np.testing.assert_array_equal(y, y_then)
        assert_close(y, y_ref, what="output")
        for ours, theirs, what in ((dx, x_ref, "dx"), (dw, w_ref, "dw"), (db, b_ref, "db")):
            assert_close(ours, theirs.grad, what=what)


def test_outputs_are_contiguous_channels_last(rng, winograd):
    y, cache = conv2d_forward(rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), None, padding=1)
    dx, _, _ = conv2d_backward(rng.standard_normal(y.shape), cache)
    for array in (y, dx):
        assert array.transpose(0, 2, 3, 1).flags.c_contiguous


def test_route_taken_where_intended(xp):
    """3x3, stride 1, dilation 1, one group, at least 64 channels in and out and 2**15 tiles x input
    channels, on the CPU only, never under ``reference_kernels``."""
    def taken(w_shape, x_shape=(2, 64, 32, 32), **kwargs):
        x = xp.zeros(x_shape, dtype=np.float32)
        _, cache = conv2d_forward(x, xp.zeros(w_shape, dtype=np.float32), None, **kwargs)
        return isinstance(cache, conv_winograd.WinogradConvCache)

    on_the_cpu = xp is np
    assert taken((64, 64, 3, 3), padding=1) == taken((128, 64, 3, 3), padding=1) == on_the_cpu  # 2*16*16 x 64
    assert taken((512, 512, 3, 3), (16, 512, 4, 4), padding=1) == on_the_cpu            # 16*2*2 tiles x 512
    assert not taken((512, 512, 3, 3), (8, 512, 4, 4), padding=1)                        # too few tiles
    assert not taken((64, 64, 3, 3), (1, 64, 32, 32), padding=1)
    assert not taken((32, 64, 3, 3), padding=1)                                          # too few channels
    assert not taken((64, 32, 3, 3), (2, 32, 32, 32), padding=1)
    assert not taken((64, 64, 3, 3), stride=2, padding=1)
    assert not taken((64, 64, 3, 3), dilation=2, padding=2)
    assert not taken((64, 32, 3, 3), groups=2, padding=1)
    assert not taken((64, 64, 1, 1)) and not taken((64, 64, 3, 2))
    with nn.reference_kernels():
        assert not taken((64, 64, 3, 3), padding=1)


@pytest.mark.parametrize("padding", [0, 1, (2, 1)])
def test_route_runs_on_any_array_module(xp, rng, padding):
    """The route's own functions take their array module from the input (the dispatcher sends only
    CPU arrays here): on the CuPy stand-in the same numbers as the textbook route."""
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    geometry = _conv_geometry("test", x.shape, (3, 3), padding=padding)
    y, cache = conv_winograd.winograd_conv_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), geometry)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv_winograd.winograd_conv_backward(xp.asarray(dy), cache)
    with nn.reference_kernels():
        y_ref, cache_ref = conv2d_forward(x, w, b, padding=padding)
        expected = [y_ref, *conv2d_backward(dy, cache_ref)]
    for ours, theirs, what in zip([y, dx, dw, db], expected, NAMES):
        assert type(ours) is type(xp.asarray(x))
        np.testing.assert_allclose(asnumpy(ours), theirs, rtol=1e-11, atol=1e-12, err_msg=what)


def test_the_transforms_are_the_1d_minimal_filter():
    """y = Aᵀ[(G g) ⊙ (Bᵀ d)] is the 3-tap correlation of four inputs: F(2, 3) itself."""
    rng = np.random.default_rng(5)
    d, g = rng.standard_normal(4), rng.standard_normal(3)
    B_T, G, A_T = (np.array(m, dtype=float) for m in (conv_winograd.B_T, conv_winograd.G, conv_winograd.A_T))
    np.testing.assert_allclose(A_T @ ((G @ g) * (B_T @ d)), [d[0:3] @ g, d[1:4] @ g], rtol=1e-14)
    np.testing.assert_array_equal(np.array(conv_winograd.A), A_T.T)


def test_combine_writes_the_matrix_product_into_its_outputs():
    rng = np.random.default_rng(6)
    matrix = [(1, -1, 0), (0, 0, -1), (-1, -1, 1), (0, 1, 0)]
    sources = [rng.standard_normal((3, 4)) for _ in range(3)]
    outs = [np.full((3, 4), np.nan) for _ in matrix]
    conv_winograd._combine(matrix, sources, outs)
    for row, out in zip(matrix, outs):
        np.testing.assert_allclose(out, sum(c * s for c, s in zip(row, sources)), rtol=1e-15)


def test_a_resnet_block_trains_alike_on_both_routes():
    """A BasicBlock of 64 channels on 32x31 maps (the route by default), forward and backward in float64."""
    minires.manual_seed(0)
    block = minires.models.resnet.BasicBlock(64, 64).double()
    x = np.random.default_rng(7).standard_normal((2, 64, 32, 31))
    dy = np.random.default_rng(8).standard_normal((2, 64, 32, 31))

    def run():
        block.zero_grad()
        y = block(x)
        assert type(block.conv1._cache).__name__ == ("ConvCache" if nn.reference.uses_reference_kernels()
                                                     else "WinogradConvCache")
        return [y, block.backward(dy)] + [p.grad.copy() for p in block.parameters()]

    fast = run()
    with nn.reference_kernels():
        textbook = run()
    for ours, theirs in zip(fast, textbook):
        assert_close(ours, theirs, rtol=1e-11, atol=1e-12)


def test_errors_of_the_dispatcher_still_apply(rng, winograd):
    y, cache = conv2d_forward(rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), None, padding=1)
    assert isinstance(cache, conv_winograd.WinogradConvCache)
    with pytest.raises(ValueError, match=r"conv2d_backward: expected upstream gradient of shape \(1, 3, 4, 4\)"):
        conv2d_backward(np.zeros((1, 3, 4, 5)), cache)
    with pytest.raises(TypeError, match="conv2d_backward: upstream gradient of dtype float32"):
        conv2d_backward(np.zeros((1, 3, 4, 4), dtype=np.float32), cache)
    conv2d_backward(rng.standard_normal(y.shape), cache)
    with pytest.raises(RuntimeError, match="conv2d_backward: this cache was already used"):
        conv2d_backward(rng.standard_normal(y.shape), cache)
