"""Grading the exercise sheet: gradient checks, minires' own layers, and hints for the usual mistakes.

Each exercise is graded in three ways:

1. Numerical gradient checks (``minires.gradcheck``): float64, a random upstream gradient,
   central differences of the student's own forward pass. This needs no reference at all.
2. The same inputs through minires' own layer: the gradients must agree with it.
3. Probes for the mistakes (``hints.py``). Each wrong answer that students often give is computed
   (a "known-broken variant": the skip path left out, mean and variance of a batch norm treated
   as constants ...) and compared with the student's answer; other mistakes show up as a pattern
   (right without overlapping windows, wrong with them: ``=`` instead of ``+=``; right up to a
   constant factor: a mean where a sum belongs; the right gradients at the wrong places; one
   gradient that stays the same for two different upstream gradients: dout ignored there; a
   matrix product that raised: its operands and their shapes). A match prints a hint that names
   the mistake; an unknown mistake gets a hint that points at the failing checks.

Exercises 5 and 7 ask for a derivation; after a failed attempt the grader also prints its result.
Exercise 7 runs on the student's own ReLU, batch norm and convolution (exercises 1, 5, 6) when
they pass (``sheet_toolbox``), on minires' otherwise, and says which.

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
from . import hints as mistakes, solutions
from .hints import HINTS, MATCH_TOLERANCE
from .layers import MINIRES_FUNCTIONS, toolbox
from .solutions import ex6_conv2d

GRADCHECK_TOLERANCE = 1e-6   # central differences in float64 agree to ~1e-9
SAME_TOLERANCE = 1e-8        # two exact computations in float64 agree to ~1e-15


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
    notes: list = field(default_factory=list)

    @property
    def passed(self):
        return self.status == "pass"

    def __str__(self):
        lines = [f"Exercise {self.number} -- {self.title} ({self.filename}): {self.status.upper()}"]
        lines += [_wrapped("note", note) for note in self.notes]
        if self.message:
            lines.append(textwrap.indent(self.message, "  "))
        if self.rows:
            lines.append(f"  {'check':<66}{'rel. error':>11}  ok")
            lines += [f"  {row.check:<66}{row.rel_error:>11.1e}  {'yes' if row.ok else 'NO'}" for row in self.rows]
        lines += [_wrapped("hint", hint) for hint in self.hints]
        return "\n".join(lines)


def _wrapped(label, text):
    return textwrap.fill(text, width=96, initial_indent=f"  {label}: ", subsequent_indent="        ",
                         break_on_hyphens=False)


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

    def same_gradients(self, against, function, grads, expected, names, sizes=None):
        """One row per gradient, ``grads`` against ``expected`` (minires' ``against``); on a
        failure, hints for gradients at the wrong places or off by a constant factor."""
        oks = [self.same(f"same as minires {against}: d{name}", got, reference)
               for name, got, reference in zip(names, grads, expected)]
        if all(oks):
            return True
        order = mistakes.reordering(grads, expected, SAME_TOLERANCE)
        if order is not None:
            self.hint("wrong_order", mistakes.order_hint(function, names, order))
            return False
        for ok, name, got, reference in zip(oks, names, grads, expected):
            factor = None if ok else mistakes.constant_factor(got, reference)
            if factor is not None:
                self.hint("constant_factor", mistakes.factor_hint(f"d{name}", factor, sizes))
        return False

    def gradcheck(self, label, forward, backward, inputs, names):
        """One row per checked input: ``check_function`` with a random upstream gradient."""
        report = gradcheck.check_function(forward, backward, inputs, names=names, tol=GRADCHECK_TOLERANCE,
                                          seed=int(self.rng.integers(2 ** 31)))  # not the inputs' stream
        return all([self.row(f"{label}: d{entry.name}", entry.rel_error, GRADCHECK_TOLERANCE)
                    for entry in report.entries])

    def hint(self, key, text=None):
        """Adds a hint (once per key): ``HINTS[key]``, or ``text`` for the hints made on the spot."""
        if key not in self.result.hint_keys:
            self.result.hint_keys.append(key)
            self.result.hints.append(HINTS[key] if text is None else text)

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
        names = [name for name, _ in variables]
        if len(grads) != len(variables):
            self.stop(f"{function} returned {len(grads)} value(s), expected {len(variables)}: "
                      + ", ".join(f"d{name}" for name in names))
        if all(grad is not None for grad in grads):
            order = mistakes.shape_order_hint(function, [np.shape(g) for g in grads], names,
                                              [np.shape(value) for _, value in variables])
            if order is not None:
                self.hint("wrong_order", order)
                self.stop(order)
        for grad, (name, value) in zip(grads, variables):
            self.expect_shape(f"d{name} from {function}", grad, np.shape(value))
        return grads

    def stop(self, message):
        self.result.message = message
        raise _Stop(message)

    def probe_upstream(self, forward, backward, inputs, upstream_shape, names):
        """Hints when the backward gives the same (nonzero) gradient for two random upstream
        gradients: for all of its outputs (dout ignored), or for some of them only."""
        answers = []
        for _ in range(2):
            _, cache = forward(*inputs)
            grads = backward(self.rng.standard_normal(upstream_shape) + 0.5, cache)
            answers.append(grads if isinstance(grads, tuple) else (grads,))
        unchanged = [a is not None and b is not None and np.any(a) and np.array_equal(a, b) for a, b in zip(*answers)]
        if all(unchanged):
            self.hint("ignores_upstream")
        elif any(unchanged):
            self.hint("ignores_upstream_in_one", mistakes.upstream_in_one_hint(
                [f"d{n}" for n, same in zip(names, unchanged) if same],
                [f"d{n}" for n, same, a in zip(names, unchanged, answers[0]) if not same and a is not None]))


def matches(got, variant):
    """The student's answer is this known-broken variant."""
    return np.shape(got) == np.shape(variant) and relative_error(got, variant) <= MATCH_TOLERANCE


def _double(module):
    return module.to(dtype=np.float64)


def _minires_gradients(module, x, dout, parameter_names):
    """minires' ``module`` in float64 on ``x``: its input gradient, then the named parameters' gradients."""
    module(x)
    dx = module.backward(dout)
    parameters = dict(module.named_parameters())
    return [dx] + [parameters[name].grad for name in parameter_names]


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
    g.probe_upstream(m.relu_forward, m.relu_backward, [x], x.shape, ["x"])


# -- 2. Linear -------------------------------------------------------------------------------------
def grade_linear(m, g):
    N, D, M = 5, 3, 4   # distinct sizes: a factor of N, or a shape mix-up, shows which size it is
    x, w, b = g.normal(N, D), g.normal(M, D), g.normal(M)
    dout = g.normal(N, M)
    grads = m.linear_backward(dout, m.linear_forward(x, w, b)[1])
    if isinstance(grads, tuple) and len(grads) == 3 and np.shape(grads[2]) == dout.shape:
        g.hint("linear_db_not_summed")
    names = ["x", "w", "b"]
    g.expect_gradients("linear_backward", grads, list(zip(names, (x, w, b))))
    g.gradcheck("gradient check", m.linear_forward, m.linear_backward, [x, w, b], names)
    layer = _double(nn.Linear(D, M))
    layer.weight.data[...], layer.bias.data[...] = w, b
    g.same_gradients("Linear", "linear_backward", grads, _minires_gradients(layer, x, dout, ["weight", "bias"]),
                     names, sizes={"N": (N, "the batch size")})
    g.probe_upstream(m.linear_forward, m.linear_backward, [x, w, b], dout.shape, names)


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
                                 [("z", z)])
        expected = nn.functional.cross_entropy_backward(np.asarray(dloss), cache)
        # a factor at dloss = 0.37 only is dloss ignored: probe_upstream names that
        sizes = {"N": (len(t), "the batch size")} if dloss == 1.0 else None
        if not g.same_gradients(f"cross_entropy_backward, dloss = {dloss}", "softmax_cross_entropy_backward",
                                got, [expected], ["z"], sizes) and sizes:
            if matches(got[0], cache.probs * dloss / len(t)):
                g.hint("ce_forgot_onehot")
    g.gradcheck("gradient check", forward, backward, [z], ["z"])
    g.probe_upstream(forward, backward, [z], (), ["z"])


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
    g.probe_upstream(m.max_pool_forward, m.max_pool_backward, [overlap, 3, 2], dout.shape, ["x"])


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
    names = ["x", "gamma", "beta"]
    grads = g.expect_gradients("batch_norm_backward", m.batch_norm_backward(dout, m.batch_norm_forward(x, gamma, beta)[1]),
                               list(zip(names, (x, gamma, beta))))
    g.gradcheck("gradient check", m.batch_norm_forward, m.batch_norm_backward, [x, gamma, beta], names)
    layer = _double(nn.BatchNorm2d(3))
    layer.weight.data[...], layer.bias.data[...] = gamma, beta
    g.same_gradients("BatchNorm2d (training mode)", "batch_norm_backward", grads,
                     _minires_gradients(layer, x, dout, ["weight", "bias"]), names,
                     sizes={"M": (x.size // 3, "the values per channel, N*H*W"), "N": (len(x), "the batch size")})
    if not np.any(grads[0]):
        g.hint("bn_zero_dx")
    _, (x_hat, _, inv_std) = m.batch_norm_forward(x, gamma, beta)
    for key, variant in _batch_norm_variants(x_hat, gamma, inv_std, dout).items():
        if matches(grads[0], variant):
            g.hint(key)
    g.probe_upstream(m.batch_norm_forward, m.batch_norm_backward, [x, gamma, beta], x.shape, names)


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
    names = ["x", "w", "b"]
    grads = g.expect_gradients("conv2d_backward", m.conv2d_backward(dout, m.conv2d_forward(x, w, b, 2, 1)[1]),
                               list(zip(names, (x, w, b))))
    conv_ok = g.gradcheck("conv2d gradient check, k=3 s=2 p=1", m.conv2d_forward, m.conv2d_backward,
                          [x, w, b, 2, 1], [*names, "stride", "padding"])
    layer = _double(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    layer.weight.data[...], layer.bias.data[...] = w, b
    conv_ok &= g.same_gradients("Conv2d(3, 4, 3, stride=2, padding=1)", "conv2d_backward", grads,
                                _minires_gradients(layer, x, dout, ["weight", "bias"]), names,
                                sizes={"R": (dout[:, 0].size, "the rows of dY, N*H_out*W_out"),
                                       "N": (len(x), "the batch size")})
    if all(adjoint_ok.values()) and not conv_ok:
        g.hint("conv_uses_col2im")
    g.probe_upstream(m.conv2d_forward, m.conv2d_backward, [x, w, b, 2, 1], dout.shape, names)


# -- 7. residual block -----------------------------------------------------------------------------
_BRANCH_PARAMETERS = {"w1": "conv1.weight", "gamma1": "bn1.weight", "beta1": "bn1.bias",
                      "w2": "conv2.weight", "gamma2": "bn2.weight", "beta2": "bn2.bias"}
_PROJECTION_PARAMETERS = {"w_s": "downsample.0.weight", "gamma_s": "downsample.1.weight",
                          "beta_s": "downsample.1.bias"}


def _block_parameters(g, c_in, c_out, projection):
    """Random weights for a block: conv weights (0.5 N(0, 1)), gammas near 1, betas near 0."""
    def conv(c_out, c_in, k):
        return 0.5 * g.normal(c_out, c_in, k, k)

    def bn():
        return [1 + 0.3 * g.normal(c_out), 0.3 * g.normal(c_out)]

    parameters = [conv(c_out, c_in, 3), *bn(), conv(c_out, c_out, 3), *bn()]
    return parameters + ([conv(c_out, c_in, 1), *bn()] if projection else [])


def _block_variants(reference, x, parameters, dout, projection):
    """dx of the block as the usual mistakes compute it, per hint key, from the reference solution.

    Each variant runs the reference forward pass afresh: a backward consumes its forward's cache.
    """
    F = nn.functional

    def pieces():
        if projection:
            branch_cache, conv_s_cache, bn_s_cache, relu2_cache = reference.projection_block_forward(x, *parameters)[1]
        else:
            (branch_cache, relu2_cache), conv_s_cache = reference.basic_block_forward(x, *parameters)[1], None
        return branch_cache, conv_s_cache, F.relu_backward(dout, relu2_cache)

    def through_branch(grad=None):
        branch_cache, _, ds = pieces()
        return reference.branch_backward(ds if grad is None else grad, branch_cache)[0]

    if projection:
        _, conv_s_cache, ds = pieces()
        return {"block_forgot_skip": through_branch(),
                "projection_forgot_bn": through_branch() + F.conv2d_backward(ds, conv_s_cache)[0]}
    return {"block_forgot_skip": through_branch(),
            "block_skip_before_relu": through_branch() + dout,
            "block_forgot_relu": through_branch(dout) + dout}


def _grade_block(m, g, projection):
    kind, c_in, c_out, stride = ("projection", 2, 3, 2) if projection else ("identity", 3, 3, 1)
    forward, backward = ((m.projection_block_forward, m.projection_block_backward) if projection
                         else (m.basic_block_forward, m.basic_block_backward))
    function = backward.__name__
    state_keys = {**_BRANCH_PARAMETERS, **(_PROJECTION_PARAMETERS if projection else {})}
    names = ["x", *state_keys]
    x = g.normal(2, c_in, 4, 4)
    parameters = _block_parameters(g, c_in, c_out, projection)
    dout = g.normal(2, c_out, 4 // stride, 4 // stride)
    grads = g.expect_gradients(function, backward(dout, forward(x, *parameters)[1]),
                               list(zip(names, [x, *parameters])))
    g.gradcheck(f"{kind} block, gradient check", forward, backward, [x, *parameters], names)
    shortcut = models.resnet.make_shortcut("B", c_in, c_out, stride) if projection else None
    block = _double(models.BasicBlock(c_in, c_out, stride, shortcut))
    block.load_state_dict(dict(zip(state_keys.values(), parameters)), strict=False)
    g.same_gradients(f"BasicBlock ({kind} shortcut)", function, grads,
                     _minires_gradients(block, x, dout, list(state_keys.values())), names)
    reference = importlib.import_module(f"{solutions.__name__}.ex7_residual_block")
    for key, variant in _block_variants(reference, x, parameters, dout, projection).items():
        if matches(grads[0], variant):
            g.hint(key)
    g.probe_upstream(forward, backward, [x, *parameters], dout.shape, names)


def grade_residual_block(m, g):
    _grade_block(m, g, projection=False)
    _grade_block(m, g, projection=True)


@dataclass(frozen=True)
class Exercise:
    number: int
    title: str
    name: str                  # the file is name + ".py", the reference solutions.<name>
    grade: object              # grade(module, grading)
    derivation: str = None     # key of the hint with the derivation, shown after a failed attempt


EXERCISES = [
    Exercise(1, "ReLU", "ex1_relu", grade_relu),
    Exercise(2, "linear layer", "ex2_linear", grade_linear),
    Exercise(3, "softmax cross-entropy", "ex3_softmax_cross_entropy", grade_softmax_cross_entropy),
    Exercise(4, "max pooling", "ex4_max_pool", grade_max_pool),
    Exercise(5, "batch norm", "ex5_batch_norm", grade_batch_norm, derivation="bn_derivation"),
    Exercise(6, "col2im and conv2d", "ex6_conv2d", grade_conv2d),
    Exercise(7, "residual block", "ex7_residual_block", grade_residual_block, derivation="block_derivation"),
]
BLOCK_LAYERS = ("ex1_relu", "ex5_batch_norm", "ex6_conv2d")   # exercise 7 runs on these


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
    except NotImplementedError as error:
        result.status = "not finished" if result.rows else "not started"
        result.message = str(error) or "raise NotImplementedError is still there"
        return result
    except Exception as error:  # the student's code raised: show where and what
        result.status = "error"
        result.message = f"{type(error).__name__}: {error}\n  ({_where_it_failed(error)})"
        matmul = mistakes.matmul_hint(error)
        if matmul is not None:
            grading.hint("matmul_shapes", matmul)
    else:
        if grading.failed():
            result.status = "fail"
            if not result.hints:
                grading.hint("unknown", mistakes.unknown_hint([row.check for row in result.rows if not row.ok]))
    if exercise.derivation and result.status in ("fail", "error"):
        grading.hint(exercise.derivation)
    return result


def load_file(path):
    """Import an exercise file as a fresh module (not cached in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(f"minires_exercise_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grade_file(directory, exercise, graded):
    """``(result, module)`` of ``exercise`` in ``directory`` (module None when it did not load),
    graded once: ``graded`` keeps what was graded already, by exercise name."""
    if exercise.name in graded:
        return graded[exercise.name]
    path = Path(directory) / f"{exercise.name}.py"
    result, module = Result(exercise.number, exercise.title, path.name), None
    if not path.exists():
        result.status, result.message = "missing", f"{path} does not exist (python -m minires.exercises start DIR)"
    else:
        try:
            module = load_file(path)
        except Exception as error:
            result.status = "error"
            result.message = f"could not import {path.name}: {type(error).__name__}: {error}"
    if module is not None:
        notes = []
        if exercise.name == "ex7_residual_block":
            module.layers, note = sheet_toolbox(directory, BLOCK_LAYERS, graded)
            notes.append(note)
        result = grade_module(exercise, module)
        result.notes += notes
    graded[exercise.name] = result, module
    return result, module


def sheet_toolbox(directory, names=tuple(MINIRES_FUNCTIONS), graded=None):
    """The layers of the sheet in ``directory`` (``layers.toolbox``): the student's where the exercise
    passes, minires' where it does not; and a note that says which is which.

    ``names``: the layer exercises to take (default: all six); ``graded`` (by exercise name,
    ``(result, module)``) avoids grading an exercise twice.
    """
    graded = {} if graded is None else graded
    yours, instead = {}, []
    for exercise in select(names):
        result, module = _grade_file(directory, exercise, graded)
        if result.passed:
            yours[exercise.name] = module
        else:
            instead.append(f"{exercise.title} ({result.filename}: {result.status})")
    used = [f"{e.title} ({e.name}.py)" for e in select(names) if e.name in yours]
    note = "built from " + (f"your {mistakes.listing(used)}" if used else "minires' layers only")
    if instead:
        note += (f"; minires' in place of your {mistakes.listing(instead)}, which "
                 + ("does" if len(instead) == 1 else "do") + " not pass yet")
    return toolbox(yours), note + "."



def grade_directory(directory, names=None):
    """Grade the sheet in ``directory``: all exercises, or those whose number or name is in ``names``."""
    graded = {}
    return [_grade_file(directory, exercise, graded)[0] for exercise in select(names)]


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
