"""``minires.nn.reference_kernels()``: every op on its textbook route, with the same results.

A whole ResNet forward and backward in float64 inside and outside the switch, then each op with
a fast route on awkward shapes (the fast routes themselves are compared with PyTorch in the op's
own test file).
"""
import threading

import numpy as np
import pytest

import minires
from minires import models, nn
from minires.backend import asnumpy
from minires.models.resnet import Bottleneck, ResNet
from minires.nn.functional import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                                   avg_pool2d_backward, avg_pool2d_forward, batch_norm_backward,
                                   batch_norm_forward, conv2d_backward, conv2d_forward,
                                   max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward)
from minires.testing import assert_close


def _both_routes(run):
    """``run()`` on the fast routes, then inside ``reference_kernels``."""
    fast = run()
    with nn.reference_kernels():
        textbook = run()
    return fast, textbook


def _assert_same(fast, textbook, rtol=1e-11, atol=1e-12):
    for name in fast:
        assert_close(textbook[name], fast[name], rtol=rtol, atol=atol, what=name)


@pytest.mark.parametrize("build, size", [
    (lambda: models.resnet20(), 16),            # shifted GEMM, flipped kernel, col2im, option-A shortcuts
    (lambda: ResNet(Bottleneck, [1, 1, 1, 1], 10, widths=(8, 16, 32, 64)), 40),  # 7x7/2 stem, max pool
], ids=["resnet20", "small_bottleneck_resnet"])
def test_a_whole_resnet_trains_alike_on_both_routes(xp, build, size):
    minires.manual_seed(0)
    model = build().to("cpu" if xp is np else "cuda", dtype=np.float64)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((2, 3, size, size)))
    targets = xp.asarray(np.array([3, 7]))
    start = {name: value.copy() for name, value in model.state_dict().items()}

    def step():
        model.load_state_dict(start)
        model.zero_grad()
        criterion = nn.CrossEntropyLoss()
        loss = criterion(model(x), targets)
        dx = model.backward(criterion.backward())
        grads = {f"grad {name}": p.grad for name, p in model.named_parameters()}
        buffers = {f"buffer {name}": b.copy() for name, b in model.named_buffers()}
        return {"loss": loss, "dx": dx, **grads, **buffers}

    fast, textbook = _both_routes(step)
    _assert_same(fast, textbook)


def test_the_switch_changes_the_route():
    x, w = np.ones((1, 16, 6, 6)), np.ones((16, 16, 3, 3))
    _, fast = conv2d_forward(x, w, padding=1)
    with nn.reference_kernels():
        _, textbook = conv2d_forward(x, w, padding=1)
        with nn.reference_kernels(False):  # blocks nest
            _, inner = conv2d_forward(x, w, padding=1)
    assert type(fast).__name__ == type(inner).__name__ == "ShiftedConvCache"
    assert type(textbook).__name__ == "ConvCache"
    x, w = np.ones((2, 64, 32, 32)), np.ones((64, 64, 3, 3))
    _, fast = conv2d_forward(x, w, padding=1)
    with nn.reference_kernels():
        _, textbook = conv2d_forward(x, w, padding=1)
    assert type(fast).__name__ == "WinogradConvCache" and type(textbook).__name__ == "ConvCache"
    assert not nn.reference.uses_reference_kernels()


def test_the_switch_holds_for_its_own_thread_only():
    seen = []
    with nn.reference_kernels():
        worker = threading.Thread(target=lambda: seen.append(nn.reference.uses_reference_kernels()))
        worker.start()
        worker.join()
        assert nn.reference.uses_reference_kernels()
    assert seen == [False]


CONV_CASES = [  # (x shape, w shape, keywords): every route of the fast side
    ((2, 3, 7, 5), (4, 3, 3, 3), dict(padding=1)),                          # shifted GEMM
    ((2, 64, 33, 31), (64, 64, 3, 3), dict(padding=1)),                     # Winograd (cropped tiles)
    ((2, 32, 6, 5), (32, 32, 3, 3), dict(padding=1)),                       # im2col + flipped kernel
    ((2, 32, 7, 6), (32, 16, 3, 3), dict(stride=2, padding=1, groups=2)),   # im2col + col2im by offset
    ((1, 24, 5, 8), (24, 24, 1, 1), dict(padding=1)),                       # 1x1 beyond the kernel
    ((2, 24, 9, 7), (24, 24, (2, 3)), dict(stride=(2, 1), dilation=(2, 1), padding=(1, 2))),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_CASES)
def test_convolution_alike_on_both_routes(xp, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(1)
    if len(w_shape) == 3:
        w_shape = (*w_shape[:2], *w_shape[2])
    x, w = xp.asarray(rng.standard_normal(x_shape)), xp.asarray(rng.standard_normal(w_shape))
    b = xp.asarray(rng.standard_normal(w_shape[0]))

    def run():
        y, cache = conv2d_forward(x, w, b, **kwargs)
        dx, dw, db = conv2d_backward(xp.asarray(np.random.default_rng(2).standard_normal(y.shape)), cache)
        return {"y": y, "dx": dx, "dw": dw, "db": db}

    _assert_same(*_both_routes(run))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, stride=1, padding=1, dilation=2),
])
def test_max_pooling_alike_on_both_routes(xp, kwargs):
    x = xp.asarray(np.random.default_rng(3).standard_normal((2, 3, 9, 8)))
    x[0, 0, :2, :2] = 1.5  # a tie

    def run():
        y, cache = max_pool2d_forward(x, **kwargs)
        return {"y": y, "dx": max_pool2d_backward(xp.ones_like(y) + y, cache)}

    _assert_same(*_both_routes(run), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, divisor_override=3),
])
def test_average_pooling_alike_on_both_routes(xp, kwargs):
    x = xp.asarray(np.random.default_rng(4).standard_normal((3, 9, 8)))

    def run():
        y, cache = avg_pool2d_forward(x, **kwargs)
        return {"y": y, "dx": avg_pool2d_backward(xp.ones_like(y) + y, cache)}

    _assert_same(*_both_routes(run))


@pytest.mark.parametrize("output_size", [1, (3, 2), (4, 3)])   # global, disjoint blocks, overlapping bins
def test_adaptive_pooling_alike_on_both_routes(xp, output_size):
    x = xp.asarray(np.random.default_rng(5).standard_normal((2, 3, 6, 4)))

    def run():
        y, cache = adaptive_avg_pool2d_forward(x, output_size)
        return {"y": y, "dx": adaptive_avg_pool2d_backward(xp.ones_like(y) + y, cache)}

    _assert_same(*_both_routes(run))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_alike_on_both_routes(xp, training):
    rng = np.random.default_rng(6)
    x = xp.asarray(rng.standard_normal((4, 6, 5, 3)) + 3).transpose(0, 3, 1, 2)  # channels-last memory
    gamma, beta = xp.asarray(rng.standard_normal(3)), xp.asarray(rng.standard_normal(3))

    def run():
        running = dict(running_mean=xp.zeros(3), running_var=xp.ones(3))
        y, cache = batch_norm_forward(x, gamma, beta, training=training, **running)
        dx, dgamma, dbeta = batch_norm_backward(xp.asarray(np.random.default_rng(7).standard_normal(y.shape)), cache)
        return {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta, **running}

    _assert_same(*_both_routes(run))


def test_batch_norm_running_statistics_are_keyword_only():
    x, ones = np.ones((2, 3)), np.ones(3)
    with pytest.raises(TypeError):
        batch_norm_forward(x, ones, ones, np.zeros(3), ones)


def test_relu_alike_on_both_routes_bit_for_bit():
    x = np.array([-1.0, 0.0, 2.0, np.nan, -np.inf, np.inf], dtype=np.float32)
    dy = np.array([np.inf, np.nan, 3.0, 4.0, np.nan, -np.inf], dtype=np.float32)

    def run():
        y, cache = relu_forward(x)
        return {"dx": relu_backward(dy, cache)}

    fast, textbook = _both_routes(run)
    np.testing.assert_array_equal(asnumpy(textbook["dx"]).view(np.uint32), asnumpy(fast["dx"]).view(np.uint32))
