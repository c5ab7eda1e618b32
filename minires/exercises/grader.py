"""Grading the exercise sheet: gradient checks, minires' own layers, and hints for the usual mistakes.

Each exercise is graded in three ways:

1. Numerical gradient checks (``minires.gradcheck``): float64, a random upstream gradient,
   central differences of the student's own forward pass. This needs no reference at all.
2. The same inputs through minires' own layer: the gradients must agree with it.
3. Probes for the classic mistakes. Each wrong answer that students often give is computed
   (a "known-broken variant": the skip path left out, the 1/N of a mean lost, mean and variance
   of a batch norm treated as constants ...) and compared with the student's answer; other
   mistakes show up as a pattern (right without overlapping windows, wrong with them: ``=``
   instead of ``+=``; the same answer for two different upstream gradients: the upstream
   gradient was ignored, which a check with an all-ones upstream gradient would not notice).
   A match prints a hint that names the mistake.

A table per exercise shows every check with its relative error ``|a - b| / (|a| + |b|)``
(Euclidean norms over the whole array; 0 when both are zero).
"""
import importlib
import importlib.util
import textwrap
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import gradcheck, models, nn
from ..gradcheck import relative_error
from . import solutions
from .solutions import ex6_conv2d

GRADCHECK_TOLERANCE = 1e-6   # central differences in float64 agree to ~1e-9
SAME_TOLERANCE = 1e-8        # two exact computations in float64 agree to ~1e-15
MATCH_TOLERANCE = 1e-9       # "the student's answer IS this known-broken variant"

HINTS = {
    "ignores_upstream": (
        "Your backward returns the same gradient for two different upstream gradients: it ignores "
        "dout. The chain rule multiplies by it (dx = J^T dout). A check with an all-ones upstream "
        "gradient would not have noticed -- that is why gradient checks use a random one."),
    "relu_at_zero": (
        "Right everywhere except where x == 0 exactly: there ReLU has no derivative, and PyTorch "
        "(and minires) take 0. Use the mask x > 0, not x >= 0."),
    "linear_db_not_summed": (
        "db has the shape of dout: the bias was broadcast to all N rows in the forward pass, so its "
        "gradient is the SUM of dout over the rows: db = dout.sum(axis=0)."),
    "ce_forgot_mean": (
        "Your dz is N times too large: the loss is the MEAN over the batch, so each row's gradient "
        "p - onehot gets a factor 1/N."),
    "ce_forgot_onehot": (
        "Your dz is softmax * dloss / N: the derivative of -log p[t] also has the term -1 at the "
        "target class: dz = (p - onehot(t)) * dloss / N."),
    "ce_sign": "Your dz has the wrong sign: dz = (p - onehot(t)) * dloss / N.",
    "pool_overlap": (
        "Right for non-overlapping windows (k=2, s=2) but wrong for overlapping ones (k=3, s=2): an "
        "element that belongs to several windows must receive the SUM of their gradients. Use += "
        "on the slices of dx, never =, which overwrites what an earlier offset wrote."),
    "pool_ties": (
        "Right on inputs without ties, wrong with ties: when several elements of a window share "
        "the max, send the gradient to ONE of them, the first in row-major order (as PyTorch does), "
        "not to all of them."),
    "bn_zero_dx": (
        "Your dx is zero everywhere. For an all-ones upstream gradient that is the exact answer "
        "(then L = sum(y) = sum(gamma * x_hat) + const, and x_hat sums to 0 over each channel "
        "whatever x is), so a check with dout = ones would pass it; with a random dout it is wrong."),
    "bn_constant_stats": (
        "You treated the batch mean and variance as constants (dx = gamma * inv_std * dout). In "
        "training mode they depend on every x of the channel; see the derivation in the docstring."),
    "bn_forgot_1_over_M": (
        "The 1/M of the means got lost: dx = inv_std / M * (M * dx_hat - sum(dx_hat) - "
        "x_hat * sum(dx_hat * x_hat))."),
    "bn_mean_only": (
        "You took the mean's dependence on x into account but not the variance's: the term "
        "- x_hat * sum(dx_hat * x_hat) is missing."),
    "bn_var_only": (
        "You took the variance's dependence on x into account but not the mean's: the term "
        "- sum(dx_hat) is missing."),
    "col2im_overlap": (
        "col2im is right where windows do not overlap (k == s) but wrong where they do: every copy "
        "of a pixel adds its gradient back, so accumulate with += over the kernel offsets; = "
        "overwrites the gradients of the earlier offsets."),
    "conv_uses_col2im": (
        "col2im passes but dx does not: dx = col2im(dY @ W_mat, ...) with dY = dout as "
        "(N*H_out*W_out, F) rows (dout.transpose(0, 2, 3, 1).reshape(-1, F)) and W_mat = "
        "w.reshape(F, -1)."),
    "block_forgot_skip": (
        "You forgot the skip path: x is used twice (by conv1 and by the add), so dx is the SUM of "
        "the gradient through the branch and the gradient through the shortcut, which is ds itself."),
    "block_skip_before_relu": (
        "The shortcut's gradient must be ds = relu_backward(dout, ...), not dout: the ReLU comes "
        "after the add, so both paths start from the gradient at the add."),
    "block_forgot_relu": (
        "You skipped the backward of the final ReLU: ds = relu_backward(dout, relu2_cache) is the "
        "gradient at the add, and it feeds both the branch and the shortcut."),
    "unknown": (
        "No known mistake matched. Go back to the derivation in the file's docstring; the rows above "
        "show which gradient is wrong. Try a tiny input by hand."),
}


@dataclass
class Row:
    """One check: its relative error and whether it passed."""
    check: str
    rel_error: float
    tol: float

    @property
    def ok(self):
        return self.rel_error <= self.tol


@dataclass
class Result:
    """The grade of one exercise: ``status`` is "pass", "fail", "not started", "not finished",
    "error" or "missing"."""
    number: int
    title: str
    filename: str
    status: str = "pass"
    rows: list = field(default_factory=list)
    hints: list = field(default_factory=list)
    hint_keys: list = field(default_factory=list)
    message: str = ""

    @property
    def passed(self):
        return self.status == "pass"

    def __str__(self):
        lines = [f"Exercise {self.number} -- {self.title} ({self.filename}): {self.status.upper()}"]
        if self.message:
            lines.append(textwrap.indent(self.message, "  "))
        if self.rows:
            lines.append(f"  {'check':<66}{'rel. error':>11}  ok")
            lines += [f"  {row.check:<66}{row.rel_error:>11.1e}  {'yes' if row.ok else 'NO'}" for row in self.rows]
        for hint in self.hints:
            lines.append(textwrap.fill(hint, width=96, initial_indent="  hint: ", subsequent_indent="        "))
        return "\n".join(lines)


class _Stop(Exception):
    """Grading of this exercise cannot go on (a wrong shape, a missing gradient)."""


class Grading:
    """Collects the rows and hints of one exercise; the ``grade_*`` functions fill it in."""

    def __init__(self, result, seed=0):
        self.result = result
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape):
        return self.rng.standard_normal(shape)

    def row(self, check, rel_error, tol=SAME_TOLERANCE):
        row = Row(check, float(rel_error), tol)
        self.result.rows.append(row)
        return row.ok

    def same(self, check, got, expected):
        """A row comparing two arrays; a shape mismatch stops the grading with a clear message."""
        self.expect_shape(check, got, np.shape(expected))
        return self.row(check, relative_error(got, expected))

    def gradcheck(self, label, forward, backward, inputs, names):
        """One row per checked input: ``check_function`` with a random upstream gradient."""
        report = gradcheck.check_function(forward, backward, inputs, names=names, tol=GRADCHECK_TOLERANCE,
                                          seed=int(self.rng.integers(2 ** 31)))  # not the inputs' stream
        return all([self.row(f"{label}: d{entry.name}", entry.rel_error, GRADCHECK_TOLERANCE)
                    for entry in report.entries])

    def hint(self, key):
        if key not in self.result.hint_keys:
            self.result.hint_keys.append(key)
            self.result.hints.append(HINTS[key])

    def failed(self):
        return not all(row.ok for row in self.result.rows)

    def expect_shape(self, what, got, shape):
        if got is None:
            self.stop(f"{what}: got None, expected an array of shape {tuple(shape)}")
        if np.shape(got) != tuple(shape):
            reversed_note = " (transposed?)" if np.shape(got) == tuple(shape)[::-1] else ""
            self.stop(f"{what}: got shape {np.shape(got)}, expected {tuple(shape)}{reversed_note}: "
                      "a gradient always has the shape of its variable")

    def expect_gradients(self, function, grads, variables):
        """``grads`` (tuple) has one array per ``(name, array)`` in ``variables``, each of its shape."""
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(variables):
            self.stop(f"{function} returned {len(grads)} value(s), expected {len(variables)}: "
                      + ", ".join(f"d{name}" for name, _ in variables))
        for grad, (name, value) in zip(grads, variables):
            self.expect_shape(f"d{name} from {function}", grad, np.shape(value))
        return grads

    def stop(self, message):
        self.result.message = message
        raise _Stop(message)

    def probe_upstream(self, forward, backward, inputs, upstream_shape):
        """Hint when the backward gives the same (nonzero) answer for two random upstream gradients."""
        answers = []
        for _ in range(2):
            _, cache = forward(*inputs)
            grads = backward(self.rng.standard_normal(upstream_shape) + 0.5, cache)
            answers.append(grads if isinstance(grads, tuple) else (grads,))
        first, second = answers
        same = all(a is None and b is None or (a is not None and b is not None and np.array_equal(a, b))
                   for a, b in zip(first, second))
        nonzero = any(a is not None and np.any(a) for a in first)
        if same and nonzero:
            self.hint("ignores_upstream")


def matches(got, variant):
    """The student's answer is this known-broken variant."""
    return np.shape(got) == np.shape(variant) and relative_error(got, variant) <= MATCH_TOLERANCE


def _double(module):
    return module.to(dtype=np.float64)


# -- 1. ReLU ---------------------------------------------------------------------------------------
def grade_relu(m, g):
    x = g.normal(3, 4, 5)
    dout = g.normal(3, 4, 5)
    g.expect_gradients("relu_backward", m.relu_backward(dout, m.relu_forward(x)[1]), [("x", x)])
    g.gradcheck("gradient check", m.relu_forward, m.relu_backward, [x], ["x"])
    with_zeros = np.where(np.abs(x) < 0.5, 0.0, x)
    expected = nn.functional.relu_backward(dout, nn.functional.relu_forward(with_zeros)[1])
    got = m.relu_backward(dout, m.relu_forward(with_zeros)[1])
    if not g.same("same as minires relu_backward, x with exact zeros", got, expected):
        away_from_zero = with_zeros != 0
        if np.allclose(got[away_from_zero], expected[away_from_zero], rtol=1e-12, atol=0):
            g.hint("relu_at_zero")
    g.probe_upstream(m.relu_forward, m.relu_backward, [x], x.shape)


# -- 2. Linear -------------------------------------------------------------------------------------
def grade_linear(m, g):
    x, w, b = g.normal(2, 3), g.normal(4, 3), g.normal(4)
    dout = g.normal(2, 4)
    grads = m.linear_backward(dout, m.linear_forward(x, w, b)[1])
    if isinstance(grads, tuple) and len(grads) == 3 and np.shape(grads[2]) == dout.shape:
        g.hint("linear_db_not_summed")
    g.expect_gradients("linear_backward", grads, [("x", x), ("w", w), ("b", b)])
    g.gradcheck("gradient check", m.linear_forward, m.linear_backward, [x, w, b], ["x", "w", "b"])
    layer = _double(nn.Linear(3, 4))
    layer.weight.data[...], layer.bias.data[...] = w, b
    layer(x)
    dx = layer.backward(dout)
    for name, got, expected in zip(("dx", "dw", "db"), grads, (dx, layer.weight.grad, layer.bias.grad)):
        g.same(f"same as minires Linear: {name}", got, expected)
    g.probe_upstream(m.linear_forward, m.linear_backward, [x, w, b], dout.shape)


# -- 3. softmax cross-entropy ----------------------------------------------------------------------
def grade_softmax_cross_entropy(m, g):
    z, t = 3 * g.normal(4, 5), np.array([0, 3, 1, 4])
    forward = lambda z: m.softmax_cross_entropy_forward(z, t)  # noqa: E731
    backward = m.softmax_cross_entropy_backward
    g.expect_gradients("softmax_cross_entropy_backward", backward(np.asarray(1.0), forward(z)[1]), [("z", z)])
    loss, cache = nn.functional.cross_entropy_forward(z, t)
    g.row("loss same as minires cross_entropy_forward", relative_error(forward(z)[0], loss))
    for dloss in (1.0, 0.37):
        got = g.expect_gradients("softmax_cross_entropy_backward", backward(np.asarray(dloss), forward(z)[1]),
                                 [("z", z)])[0]
        expected = nn.functional.cross_entropy_backward(np.asarray(dloss), cache)
        if not g.same(f"dz same as minires cross_entropy_backward, dloss = {dloss}", got, expected):
            probs = cache.probs
            for key, variant in (("ce_forgot_mean", expected * len(t)), ("ce_forgot_onehot", probs * dloss / len(t)),
                                 ("ce_sign", -expected)):
                if matches(got, variant):
                    g.hint(key)
    g.gradcheck("gradient check", forward, backward, [z], ["z"])
    g.probe_upstream(forward, backward, [z], ())


# -- 4. max pooling --------------------------------------------------------------------------------
def grade_max_pool(m, g):
    no_overlap = g.normal(2, 2, 6, 6)
    overlap = g.normal(2, 2, 7, 7)
    overlap[:, :, 2, 2] = 10.0  # the max of the four windows that share this pixel
    g.expect_gradients("max_pool_backward", m.max_pool_backward(g.normal(2, 2, 3, 3), m.max_pool_forward(overlap, 3, 2)[1]),
                       [("x", overlap)])
    separate_ok = g.gradcheck("gradient check, k=2 s=2 (no overlap)", m.max_pool_forward, m.max_pool_backward,
                              [no_overlap, 2, 2], ["x", "k", "s"])
    overlap_ok = g.gradcheck("gradient check, k=3 s=2 (overlapping windows)", m.max_pool_forward,
                             m.max_pool_backward, [overlap, 3, 2], ["x", "k", "s"])
    if separate_ok and not overlap_ok:
        g.hint("pool_overlap")
    ties = g.rng.integers(0, 3, size=(2, 2, 7, 7)).astype(np.float64)
    dout = g.normal(2, 2, 3, 3)
    pool = nn.MaxPool2d(3, stride=2)
    pool(ties)
    got = m.max_pool_backward(dout, m.max_pool_forward(ties, 3, 2)[1])
    if not g.same("same as minires MaxPool2d, k=3 s=2, input with ties", got, pool.backward(dout)) and overlap_ok:
        g.hint("pool_ties")
    g.probe_upstream(m.max_pool_forward, m.max_pool_backward, [overlap, 3, 2], dout.shape)


# -- 5. batch norm ---------------------------------------------------------------------------------
def _batch_norm_variants(x_hat, gamma, inv_std, dout):
    """dx as the usual mistakes compute it, per hint key."""
    axes = (0, 2, 3)
    dx_hat = dout * gamma.reshape(1, -1, 1, 1)
    mean = lambda a: a.mean(axis=axes, keepdims=True)  # noqa: E731
    total = lambda a: a.sum(axis=axes, keepdims=True)  # noqa: E731
    return {
        "bn_constant_stats": inv_std * dx_hat,
        "bn_forgot_1_over_M": inv_std * (dx_hat - total(dx_hat) - x_hat * total(dx_hat * x_hat)),
        "bn_mean_only": inv_std * (dx_hat - mean(dx_hat)),
        "bn_var_only": inv_std * (dx_hat - x_hat * mean(dx_hat * x_hat)),
    }


def grade_batch_norm(m, g):
    x, gamma, beta = 2 + 3 * g.normal(4, 3, 2, 3), 1 + g.normal(3), g.normal(3)
    dout = g.normal(*x.shape)
    grads = g.expect_gradients("batch_norm_backward", m.batch_norm_backward(dout, m.batch_norm_forward(x, gamma, beta)[1]),
                               [("x", x), ("gamma", gamma), ("beta", beta)])
    g.gradcheck("gradient check", m.batch_norm_forward, m.batch_norm_backward, [x, gamma, beta],
                ["x", "gamma", "beta"])
    layer = _double(nn.BatchNorm2d(3))
    layer.weight.data[...], layer.bias.data[...] = gamma, beta
    layer(x)
    dx = layer.backward(dout)
    expected = (dx, layer.weight.grad, layer.bias.grad)
    for name, got, reference in zip(("dx", "dgamma", "dbeta"), grads, expected):
        g.same(f"same as minires BatchNorm2d (training mode): {name}", got, reference)
    if not np.any(grads[0]):
        g.hint("bn_zero_dx")
    _, (x_hat, _, inv_std) = m.batch_norm_forward(x, gamma, beta)
    for key, variant in _batch_norm_variants(x_hat, gamma, inv_std, dout).items():
        if matches(grads[0], variant):
            g.hint(key)
    g.probe_upstream(m.batch_norm_forward, m.batch_norm_backward, [x, gamma, beta], x.shape)


# -- 6. col2im and conv2d --------------------------------------------------------------------------
def _minires_col2im(cols, x_shape, k, s, p):
    """minires' col2im on our (N*H_out*W_out, C*k*k) matrix in (c, i, j) order."""
    C = x_shape[1]
    in_minires_order = cols.reshape(-1, C, k, k).transpose(0, 2, 3, 1).reshape(1, cols.shape[0], k * k * C)
    return nn.conv.col2im(np.ascontiguousarray(in_minires_order), x_shape, k, s, p)


def grade_conv2d(m, g):
    adjoint_ok = {}
    for x_shape, k, s, p, overlapping in (((2, 3, 4, 4), 2, 2, 0, False), ((2, 3, 5, 5), 3, 1, 1, True),
                                          ((1, 2, 6, 5), 3, 2, 1, True)):
        x = g.normal(*x_shape)
        cols = ex6_conv2d.im2col(x, k, s, p)
        c = g.normal(*cols.shape)
        got = m.col2im(c, x_shape, k, s, p)
        g.expect_shape(f"col2im(cols, {x_shape}, k={k}, s={s}, p={p})", got, x_shape)
        setting = f"k={k} s={s} p={p}"
        adjoint = g.row(f"col2im adjoint: sum(im2col(x)*c) = sum(x*col2im(c)), {setting}",
                        relative_error(np.sum(cols * c), np.sum(x * got)))
        same = g.same(f"col2im same as minires col2im, {setting}", got, _minires_col2im(c, x_shape, k, s, p))
        adjoint_ok[overlapping] = adjoint_ok.get(overlapping, True) and adjoint and same
    if adjoint_ok[False] and not adjoint_ok[True]:
        g.hint("col2im_overlap")

    x, w, b = g.normal(2, 3, 5, 5), 0.5 * g.normal(4, 3, 3, 3), g.normal(4)
    dout = g.normal(2, 4, 3, 3)
    grads = g.expect_gradients("conv2d_backward", m.conv2d_backward(dout, m.conv2d_forward(x, w, b, 2, 1)[1]),
                               [("x", x), ("w", w), ("b", b)])
    conv_ok = g.gradcheck("conv2d gradient check, k=3 s=2 p=1", m.conv2d_forward, m.conv2d_backward,
                          [x, w, b, 2, 1], ["x", "w", "b", "stride", "padding"])
    layer = _double(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    layer.weight.data[...], layer.bias.data[...] = w, b
    layer(x)
    expected = (layer.backward(dout), layer.weight.grad, layer.bias.grad)
    for name, got, reference in zip(("dx", "dw", "db"), grads, expected):
        conv_ok &= g.same(f"conv2d same as minires Conv2d(3, 4, 3, stride=2, padding=1): {name}", got, reference)
    if all(adjoint_ok.values()) and not conv_ok:
        g.hint("conv_uses_col2im")
    g.probe_upstream(m.conv2d_forward, m.conv2d_backward, [x, w, b, 2, 1], dout.shape)


# -- 7. residual block -----------------------------------------------------------------------------
_BLOCK_PARAMETERS = ("w1", "gamma1", "beta1", "w2", "gamma2", "beta2")
_BLOCK_STATE_KEYS = ("conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias")


def _block_variants(forward, dout):
    """dx of the block as the usual mistakes compute it, per hint key.

    ``forward()`` runs the reference forward pass and returns its cache: each backward needs a
    fresh one (minires' conv2d_backward reuses the im2col buffer of its cache).
    """
    F = nn.functional

    def through_branch(grad):
        conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache, _ = forward()
        grad = F.conv2d_backward(F.batch_norm_backward(grad, bn2_cache)[0], conv2_cache)[0]
        grad = F.batch_norm_backward(F.relu_backward(grad, relu1_cache), bn1_cache)[0]
        return F.conv2d_backward(grad, conv1_cache)[0]

    ds = F.relu_backward(dout, forward()[-1])
    return {
        "block_forgot_skip": through_branch(ds),
        "block_skip_before_relu": through_branch(ds) + dout,
        "block_forgot_relu": through_branch(dout) + dout,
    }


def grade_residual_block(m, g):
    C = 3
    x = g.normal(2, C, 4, 4)
    parameters = [0.5 * g.normal(C, C, 3, 3), 1 + 0.3 * g.normal(C), 0.3 * g.normal(C),
                  0.5 * g.normal(C, C, 3, 3), 1 + 0.3 * g.normal(C), 0.3 * g.normal(C)]
    dout = g.normal(*x.shape)
    _, cache = m.basic_block_forward(x, *parameters)
    grads = g.expect_gradients("basic_block_backward", m.basic_block_backward(dout, cache),
                               [("x", x), *zip(_BLOCK_PARAMETERS, parameters)])
    g.gradcheck("gradient check", m.basic_block_forward, m.basic_block_backward, [x, *parameters],
                ["x", *_BLOCK_PARAMETERS])
    block = _double(models.BasicBlock(C, C))
    block.load_state_dict(dict(zip(_BLOCK_STATE_KEYS, parameters)), strict=False)
    block(x)
    dx = block.backward(dout)
    state = dict(block.named_parameters())
    expected = [dx] + [state[key].grad for key in _BLOCK_STATE_KEYS]
    for name, got, reference in zip(("x", *_BLOCK_PARAMETERS), grads, expected):
        g.same(f"same as minires BasicBlock: d{name}", got, reference)
    reference = importlib.import_module(f"{solutions.__name__}.ex7_residual_block")
    for key, variant in _block_variants(lambda: reference.basic_block_forward(x, *parameters)[1], dout).items():
        if matches(grads[0], variant):
            g.hint(key)
    g.probe_upstream(m.basic_block_forward, m.basic_block_backward, [x, *parameters], x.shape)


@dataclass(frozen=True)
class Exercise:
    number: int
    title: str
    name: str          # the file is name + ".py", the reference solutions.<name>
    grade: object      # grade(module, grading)


EXERCISES = [
    Exercise(1, "ReLU", "ex1_relu", grade_relu),
    Exercise(2, "linear layer", "ex2_linear", grade_linear),
    Exercise(3, "softmax cross-entropy", "ex3_softmax_cross_entropy", grade_softmax_cross_entropy),
    Exercise(4, "max pooling", "ex4_max_pool", grade_max_pool),
    Exercise(5, "batch norm", "ex5_batch_norm", grade_batch_norm),
    Exercise(6, "col2im and conv2d", "ex6_conv2d", grade_conv2d),
    Exercise(7, "residual block", "ex7_residual_block", grade_residual_block),
]


def _where_it_failed(error):
    """The last frame of the traceback that is in the student's file (or the last one)."""
    frames = traceback.extract_tb(error.__traceback__)
    student = [f for f in frames if Path(f.filename).name.startswith("ex")] or frames
    frame = student[-1]
    return f"{Path(frame.filename).name}, line {frame.lineno}, in {frame.name}"


def grade_module(exercise, module, seed=0):
    """Grade one exercise given as a module (or any object with the exercise's functions)."""
    result = Result(exercise.number, exercise.title, exercise.name + ".py")
    grading = Grading(result, seed)
    try:
        exercise.grade(module, grading)
    except _Stop:
        result.status = "fail"
        return result
    except NotImplementedError as error:
        result.status = "not finished" if result.rows else "not started"
        result.message = str(error) or "raise NotImplementedError is still there"
        return result
    except Exception as error:  # the student's code raised: show where and what
        result.status = "error"
        result.message = f"{type(error).__name__}: {error}\n  ({_where_it_failed(error)})"
        return result
    if grading.failed():
        result.status = "fail"
        if not result.hints:
            grading.hint("unknown")
    return result


def load_file(path):
    """Import an exercise file as a fresh module (not cached in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(f"minires_exercise_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade_directory(directory, names=None):
    """Grade the sheet in ``directory``: all exercises, or those whose number or name is in ``names``."""
    results = []
    for exercise in select(names):
        path = Path(directory) / f"{exercise.name}.py"
        result = Result(exercise.number, exercise.title, path.name)
        if not path.exists():
            result.status, result.message = "missing", f"{path} does not exist (python -m minires.exercises start DIR)"
            results.append(result)
            continue
        try:
            module = load_file(path)
        except Exception as error:
            result.status = "error"
            result.message = f"could not import {path.name}: {type(error).__name__}: {error}"
            results.append(result)
            continue
        results.append(grade_module(exercise, module))
    return results


def select(names=None):
    """The exercises named by number ("4") or name ("ex4_max_pool"); all when ``names`` is empty."""
    if not names:
        return list(EXERCISES)
    chosen = [e for e in EXERCISES if str(e.number) in names or e.name in names]
    unknown = set(names) - {str(e.number) for e in chosen} - {e.name for e in chosen}
    if unknown:
        raise ValueError(f"unknown exercise(s): {', '.join(sorted(unknown))}; choose from "
                         + ", ".join(f"{e.number} ({e.name})" for e in EXERCISES))
    return chosen


def reference_module(exercise):
    """The reference solution of ``exercise`` (imported from ``minires.exercises.solutions``)."""
    return importlib.import_module(f"{solutions.__name__}.{exercise.name}")


def summary(results):
    passed = sum(r.passed for r in results)
    line = f"{passed} of {len(results)} exercise(s) pass"
    others = [f"{r.filename} ({r.status})" for r in results if not r.passed]
    return line + ("; to do: " + ", ".join(others) if others else "")
