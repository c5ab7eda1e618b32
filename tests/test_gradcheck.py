"""The gradient checker itself: it passes right backward passes and catches wrong ones."""
import subprocess
import sys

import numpy as np
import pytest

from minires import gradcheck, nn
from minires.nn.functional import relu_backward, relu_forward
from minires.nn.module import Module, Parameter


class Residual(Module):
    """y = x + w * x: a one-parameter skip connection; ``forget_skip`` drops the shortcut's gradient."""

    def __init__(self, forget_skip=False):
        super().__init__()
        self.weight = Parameter(np.array([0.5, -1.5, 2.0]))
        self.forget_skip = forget_skip

    def forward(self, x):
        self._save_for_backward(x)
        return x + self.weight.data * x

    def backward(self, grad_output):
        x = self._saved_for_backward()
        self.weight.accumulate_grad((grad_output * x).sum(axis=0))
        branch = grad_output * self.weight.data
        return branch if self.forget_skip else grad_output + branch


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 3.0])
    dy = np.array([0.5, 1.0, -1.0])
    grad = gradcheck.numerical_gradient(lambda: x ** 3, x, dy)
    np.testing.assert_allclose(grad, 3 * x ** 2 * dy, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored


def test_numerical_gradient_refuses_non_contiguous_input():
    x = np.zeros((3, 4)).T
    with pytest.raises(ValueError, match="C-contiguous"):
        gradcheck.numerical_gradient(lambda: x, x, np.ones_like(x))


def test_check_module_passes_a_right_backward_and_reports_every_array():
    report = gradcheck.check_module(Residual(), np.random.default_rng(0).standard_normal((4, 3)))
    assert report.ok, str(report)
    assert [e.name for e in report.entries] == ["input", "weight"]
    assert "PASS" in str(report) and "rel err" in str(report)


def test_check_module_catches_a_forgotten_skip_path():
    report = gradcheck.check_module(Residual(forget_skip=True), np.random.default_rng(0).standard_normal((4, 3)))
    assert not report.ok
    assert "FAIL" in str(report) and "NO" in str(report)
    assert [e.ok for e in report.entries] == [False, True]


def test_check_function_on_relu_and_a_broken_relu():
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    assert gradcheck.check_function(relu_forward, relu_backward, [x]).ok
    broken = gradcheck.check_function(relu_forward, lambda dy, cache: dy, [x])
    assert not broken.ok


def test_upstream_gradient_is_random_not_ones():
    """A backward that is right only for dy = 1 (ignores dy) must fail."""
    class IgnoresUpstream(Module):
        def forward(self, x):
            self._save_for_backward(None)
            return 2 * x

        def backward(self, grad_output):
            self._saved_for_backward()
            return 2 * np.ones_like(grad_output)

    assert not gradcheck.check_module(IgnoresUpstream(), np.ones((2, 2))).ok


def test_relu_module_gradcheck():
    assert gradcheck.check_module(nn.ReLU(), np.random.default_rng(2).standard_normal((2, 3, 4, 5))).ok


def test_command_line_checks_every_layer_and_passes():
    result = subprocess.run([sys.executable, "-m", "minires.gradcheck"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout and "PASS" in result.stdout
