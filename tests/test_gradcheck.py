"""The gradient checker itself: it passes right backward passes and catches wrong ones.

(The full ``python -m minires.gradcheck`` run is one of the README's commands: tests/test_readme.py.)
"""
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


def test_command_line_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as stop:
        gradcheck._main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--only NAME" in out and "--demo-failure" in out and "BasicBlock" in out


def test_command_line_only_checks_one_layer_and_prints_the_legend(capsys):
    assert gradcheck._main(["--only", "batchnorm2d"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS (tolerance 1e-06)") == 2 and "BatchNorm2d(3" in out and "Conv2d" not in out
    assert "2 passed, 0 failed" in out
    legend = out[out.index("How to read the tables:"):]
    for words in ("the Euclidean norm", "rel err        ||analytic - numerical|| / (||analytic|| + ||numerical||)",
                  "ok             rel err <= the tolerance, 1e-06", "Why float64", "random upstream gradient"):
        assert words in legend


def test_command_line_refuses_an_unknown_layer(capsys):
    with pytest.raises(SystemExit) as stop:
        gradcheck._main(["--only", "Conv3d"])
    assert stop.value.code == 2
    assert "no layer or block named 'Conv3d'; choose from ReLU, Sigmoid, Linear" in capsys.readouterr().err


def test_demo_failure_shows_three_failing_checks_and_exits_1(capsys):
    assert gradcheck._main(["--demo-failure"]) == 1
    out = capsys.readouterr().out
    assert "0 passed, 3 failed" in out and out.count(": FAIL (tolerance") == 3
    block = out[out.index("BlockForgettingItsSkip: FAIL"):]
    rows = block.split("\n")[2:9]
    assert rows[0].startswith("input") and rows[0].endswith("NO")           # the input gradient is wrong ...
    assert all(row.endswith("yes") for row in rows[1:])                     # ... the parameters' are right
