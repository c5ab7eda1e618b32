"""The CuPy guard: op code runs on a GPU's arrays -- the CuPy stand-in ``minires.testing.fake_cupy``
(which refuses what CuPy refuses; its refusals are tested in test_fake_cupy.py), and real CuPy when
a GPU is there -- and gives NumPy's numbers.

Every pure function in ``minires.nn.functional``; then a small network with convolutions, batch
norms, poolings, a residual add, a linear layer and the loss, and three small ResNets from
``minires.models``, forward and backward, in training and in evaluation mode: outputs, gradients
and running statistics must be device arrays equal to NumPy's. In float64, so that "equal" is
tight although the routes differ (the CPU takes the shifted GEMM for small convolutions, a GPU
im2col).
"""
import inspect

import numpy as np
import pytest

import minires
from minires import models, nn
from minires.nn import functional

TIGHT = dict(rtol=1e-10, atol=1e-12)


def host(rng, *shape):
    return rng.standard_normal(shape)


class HostDraws:
    """A dropout ``generator`` whose uniforms come from the host and go to x's device: the same
    mask on every device (``cupy.random`` draws other numbers than NumPy's generator)."""

    def __init__(self, xp, seed):
        self.xp, self.rng = xp, np.random.default_rng(seed)

    def random(self, shape, dtype):
        return self.xp.asarray(self.rng.random(shape, dtype=dtype))


# -- every pure function of minires.nn.functional -------------------------------------------------

class Case:
    """A call of one function of ``minires.nn.functional``: host inputs, and the arguments (and
    keyword arguments) built from them with an array module ``xp`` (NumPy for the reference, a
    GPU's for the guard)."""

    def __init__(self, name, shapes, arguments, label="", keywords=lambda xp, a: {}):
        self.name, self.shapes, self.arguments, self.keywords = name, shapes, arguments, keywords
        self.id = f"{name}[{label}]" if label else name


_BATCH_NORM_SHAPES = dict(x=(2, 3, 4, 5), gamma=(3,), beta=(3,), mean=(3,), var=(3,))


def _batch_norm_arguments(xp, a):
    return [xp.asarray(a["x"]), xp.asarray(a["gamma"]), xp.asarray(a["beta"])]


def _running_statistics(training):
    """The keyword arguments of a batch norm with running statistics, in training or evaluation."""
    return lambda xp, a: dict(running_mean=xp.asarray(a["mean"]), running_var=xp.asarray(np.abs(a["var"]) + 0.5),
                              training=training)


CASES = [
    Case("relu_forward", dict(x=(2, 3, 4, 5)), lambda xp, a: [xp.asarray(a["x"])]),
    Case("sigmoid_forward", dict(x=(2, 3, 4, 5)), lambda xp, a: [xp.asarray(a["x"])]),
    Case("linear_forward", dict(x=(2, 3, 5), w=(4, 5), b=(4,)),
         lambda xp, a: [xp.asarray(a["x"]), xp.asarray(a["w"]), xp.asarray(a["b"])]),
    Case("dropout_forward", dict(x=(3, 4, 5)), lambda xp, a: [xp.asarray(a["x"]), 0.3, True, HostDraws(xp, 0)]),
    Case("cross_entropy_forward", dict(logits=(4, 5)),
         lambda xp, a: [xp.asarray(a["logits"]), xp.asarray(np.array([0, 4, 1, 1])), 0.1]),
    Case("softmax_cross_entropy", dict(logits=(4, 5)),
         lambda xp, a: [xp.asarray(a["logits"]), xp.asarray(np.array([3, 0, 2, 1], np.int32)), 0.2]),
    Case("flatten_forward", dict(x=(2, 3, 2, 2)), lambda xp, a: [xp.asarray(a["x"]), 1, 2]),
    Case("conv2d_forward", dict(x=(2, 4, 7, 8), w=(6, 4, 3, 3), b=(6,)),
         lambda xp, a: [xp.asarray(a["x"]), xp.asarray(a["w"]), xp.asarray(a["b"]), 1, 1], "stride 1, padding 1"),
    Case("conv2d_forward", dict(x=(2, 4, 8, 8), w=(6, 2, 3, 3), b=(6,)),
         lambda xp, a: [xp.asarray(a["x"]), xp.asarray(a["w"]), xp.asarray(a["b"]), 2, 1, 1, 2],
         "stride 2 on even size, groups 2"),
    Case("conv2d_forward", dict(x=(1, 3, 9, 7), w=(4, 3, 3, 3)),
         lambda xp, a: [xp.asarray(a["x"]), xp.asarray(a["w"]), None, 2, 2, 2], "dilation 2, no bias"),
    Case("im2col", dict(x=(2, 4, 5, 6)), lambda xp, a: [xp.asarray(a["x"]), 3, 2, 1]),
    Case("col2im", dict(cols=(1, 18, 36)), lambda xp, a: [xp.asarray(a["cols"]), (2, 4, 5, 6), 3, 2, 1]),
    Case("batch_norm_forward", _BATCH_NORM_SHAPES, _batch_norm_arguments, "training",
         _running_statistics(training=True)),
    Case("batch_norm_forward", _BATCH_NORM_SHAPES, _batch_norm_arguments, "evaluation",
         _running_statistics(training=False)),
    Case("batch_norm_forward", dict(x=(3, 4)), lambda xp, a: [xp.asarray(a["x"]), None, None], "(N, C), no affine"),
    Case("sync_batch_norm_forward", _BATCH_NORM_SHAPES, _batch_norm_arguments, "one process",
         lambda xp, a: dict(running_mean=xp.asarray(a["mean"]), running_var=xp.asarray(np.abs(a["var"]) + 0.5))),
    Case("max_pool2d_forward", dict(x=(2, 3, 7, 8)), lambda xp, a: [xp.asarray(a["x"]), 3, 2, 1]),
    Case("avg_pool2d_forward", dict(x=(2, 3, 7, 8)), lambda xp, a: [xp.asarray(a["x"]), 3, 2, 1]),
    Case("adaptive_avg_pool2d_forward", dict(x=(2, 3, 7, 5)), lambda xp, a: [xp.asarray(a["x"]), (3, 2)]),
]


def _public_functions():
    return sorted(name for name, value in vars(functional).items()
                  if inspect.isfunction(value) and not name.startswith("_") and not name.endswith("_backward"))


def test_every_functional_op_has_a_guard_case():
    covered = {case.name for case in CASES}
    missing = [name for name in _public_functions() if name not in covered]
    assert not missing, f"add a case to the CuPy guard for minires.nn.functional.{', '.join(missing)}"


def _run(case, xp):
    """The function, then (for a ``*_forward``) its backward with a random upstream gradient:
    the output and every gradient."""
    inputs = {name: host(np.random.default_rng(0), *shape) for name, shape in case.shapes.items()}
    result = getattr(functional, case.name)(*case.arguments(xp, inputs), **case.keywords(xp, inputs))
    if not case.name.endswith("_forward"):
        return result if isinstance(result, tuple) else (result,)
    y, cache = result
    dy = xp.asarray(np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype))
    grads = getattr(functional, case.name.replace("_forward", "_backward"))(dy, cache)
    return (y, *(grads if isinstance(grads, tuple) else (grads,)))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_functional_op_runs_on_a_gpu(gpu_xp, case):
    expected = _run(case, np)
    got = _run(case, gpu_xp)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            assert isinstance(g, gpu_xp.ndarray), f"{case.id} returned a {type(g).__name__} for device input"
            assert g.dtype == e.dtype == np.float64
            np.testing.assert_allclose(g.get(), e, err_msg=case.id, **TIGHT)


# -- a small network, forward and backward -------------------------------------------------------

class Residual(nn.Module):
    """``y = x + branch(x)``: the gradient reaches x unchanged through the skip, and through the branch."""

    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, x):
        self._save_for_backward(None)
        return x + self.branch(x)

    def backward(self, grad_output):
        self._saved_for_backward()
        return grad_output + self.branch.backward(grad_output)


def small_network():
    """Every kind of layer a ResNet has, on odd sizes: 10x10 -> 5x5 (max pool) -> 3x3 (stride 2)."""
    minires.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.Conv2d(8, 8, 3, padding=1))),
        nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
        nn.AvgPool2d(2, stride=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))


def _train_and_eval_step(model, xp, x, targets):
    """A training step then an evaluation step, each forward and backward: (logits, loss, dx) of each."""
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    results = []
    for training in (True, False):
        model.train(training)
        logits = model(xp.asarray(x))
        loss = criterion(logits, xp.asarray(targets))
        dx = model.backward(criterion.backward())
        results.append((logits, loss, dx))
    return results


def _check_device_run_matches(xp, device_model, numpy_model, device_results, numpy_results):
    for device_arrays, numpy_arrays in zip(device_results, numpy_results):
        for name, got, expected in zip(("logits", "loss", "input gradient"), device_arrays, numpy_arrays):
            assert isinstance(got, xp.ndarray), f"{name} is a {type(got).__name__}"
            assert got.dtype == expected.dtype == np.float64
            np.testing.assert_allclose(got.get(), expected, err_msg=name, **TIGHT)
    numpy_state = dict(numpy_model.named_parameters())
    for name, p in device_model.named_parameters():
        assert isinstance(p.data, xp.ndarray) and isinstance(p.grad, xp.ndarray), name
        np.testing.assert_allclose(p.grad.get(), numpy_state[name].grad, err_msg=name, **TIGHT)
    numpy_buffers = dict(numpy_model.named_buffers())
    for name, buffer in device_model.named_buffers():  # running statistics, num_batches_tracked
        assert isinstance(buffer, xp.ndarray), name
        np.testing.assert_allclose(buffer.get(), numpy_buffers[name], err_msg=name, **TIGHT)


def test_small_network_trains_and_evaluates_on_a_gpu(gpu_xp):
    rng = np.random.default_rng(3)
    x, targets = host(rng, 2, 3, 10, 10), np.array([1, 4])
    numpy_model, device_model = small_network().double(), small_network().to("cuda", dtype=np.float64)
    numpy_results = _train_and_eval_step(numpy_model, np, x, targets)
    device_results = _train_and_eval_step(device_model, gpu_xp, x, targets)
    _check_device_run_matches(gpu_xp, device_model, numpy_model, device_results, numpy_results)


@pytest.mark.parametrize("build,size", [
    # a 7x7 stride-2 stem, a max pool, 1x1-conv downsampling
    (lambda: models.ResNet(models.BasicBlock, [1, 1], num_classes=5, widths=(4, 8)), 16),
    (lambda: models.ResNet(models.Bottleneck, [1, 1], num_classes=5, widths=(4, 8), groups=2), 16),
    (lambda: models.cifar_resnet(8, num_classes=5, width=4), 8),  # option-A shortcuts
], ids=["basic block", "grouped bottleneck", "cifar, shortcut A"])
def test_resnets_train_and_evaluate_on_a_gpu(gpu_xp, build, size):
    rng = np.random.default_rng(4)
    x, targets = host(rng, 2, 3, size, size), np.array([0, 3])
    minires.manual_seed(1)
    numpy_model = build().double()
    minires.manual_seed(1)
    device_model = build().to("cuda", dtype=np.float64)
    numpy_results = _train_and_eval_step(numpy_model, np, x, targets)
    device_results = _train_and_eval_step(device_model, gpu_xp, x, targets)
    _check_device_run_matches(gpu_xp, device_model, numpy_model, device_results, numpy_results)
