"""Recognising a student's mistake from its traces, and saying what it is.

The grader (``grader.py``) computes the checks; this file turns what it sees into hints:

- fixed texts for the classic mistakes of each exercise (``HINTS``), each matched by the grader
  against a known-broken variant of the answer;
- mistakes recognised from their shape, whatever the exercise:
    a constant factor    got = c * expected for one number c: with c = 1/N a mean where a sum
                         belongs, c = N the lost 1/N of a mean, c = -1 a sign
                         (c = <got, expected> / <expected, expected>, least squares);
    a wrong order        every gradient equals an expected one, but at another place;
    dout ignored         one gradient is the same for two different upstream gradients while
                         the others change;
    a matmul shape error the product that raised, the shapes of its operands, and the shape
                         the result should have (a gradient has the shape of its variable).
"""
import ast
import linecache
import math
import traceback

import numpy as np

from ..gradcheck import relative_error

MATCH_TOLERANCE = 1e-9   # "the student's answer IS this known-broken variant" (exact float64 maths)

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
    "ce_forgot_onehot": (
        "Your dz is softmax * dloss / N: the derivative of -log p[t] also has the term -1 at the "
        "target class: dz = (p - onehot(t)) * dloss / N."),
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
        "training mode they depend on every x of the channel: d mu / d x_i and d var / d x_i are "
        "not zero."),
    "bn_forgot_1_over_M": (
        "The 1/M of the means got lost: the sums over the channel come from d mu / d x_i = 1/M and "
        "d var / d x_i = 2 (x_i - mu) / M, so each of them keeps its 1/M."),
    "bn_mean_only": (
        "You took the mean's dependence on x into account but not the variance's: the term "
        "with sum(dx_hat * x_hat) is missing."),
    "bn_var_only": (
        "You took the variance's dependence on x into account but not the mean's: the term "
        "with sum(dx_hat) is missing."),
    "bn_derivation": (
        "The derivation, for when you are stuck: d mu / d x_i = 1/M; d var / d x_i = 2 (x_i - mu) / M "
        "(the term through mu vanishes because sum_j (x_j - mu) = 0); d x_hat_j / d x_i = inv_std * "
        "(delta_ij - 1/M - x_hat_i * x_hat_j / M). Contracting with dx_hat = gamma * dout gives "
        "dx = inv_std / M * (M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)), the sums per "
        "channel over the axes (0, 2, 3) with keepdims=True."),
    "col2im_overlap": (
        "col2im is right where windows do not overlap (k == s) but wrong where they do: every copy "
        "of a pixel adds its gradient back, so accumulate with += over the kernel offsets; = "
        "overwrites the gradients of the earlier offsets."),
    "conv_uses_col2im": (
        "col2im passes but dx does not: dx = col2im(dY @ W_mat, ...) with dY = dout as "
        "(N*H_out*W_out, F) rows (dout.transpose(0, 2, 3, 1).reshape(-1, F)) and W_mat = "
        "w.reshape(F, -1)."),
    "block_forgot_skip": (
        "You forgot the skip path: x is used twice (by conv1 and by the shortcut), so dx is the SUM "
        "of the gradient through the branch and the gradient through the shortcut."),
    "block_skip_before_relu": (
        "The shortcut's gradient must start from ds = relu_backward(dout, ...), not from dout: the "
        "ReLU comes after the add, so both paths start from the gradient at the add."),
    "block_forgot_relu": (
        "You skipped the backward of the final ReLU: ds = relu_backward(dout, relu2_cache) is the "
        "gradient at the add, and it feeds both the branch and the shortcut."),
    "projection_forgot_bn": (
        "The projection shortcut is bn_s(conv_s(x)): its gradient goes back through the batch norm "
        "first (batch_norm_backward(ds, bn_s_cache)) and then through the 1x1 convolution; you "
        "passed ds to the convolution directly."),
    "block_derivation": (
        "The derivation, for when you are stuck: the ReLU comes after the add, so the gradient at "
        "the add is ds = relu_backward(dout). The add s = f + S(x) has ds/df = ds/dS = identity: it "
        "copies ds, unchanged, to the branch (df = ds) and to the shortcut. x feeds both, and where "
        "paths meet gradients add: dx = branch_backward(ds)[0] + S'(x)^T ds, where S'(x)^T ds is ds "
        "itself for the identity shortcut and, for the projection, the backward of conv_s applied "
        "to the backward of bn_s applied to ds (which brings it back to x's shape)."),
}


# -- a constant factor --------------------------------------------------------------------------
def constant_factor(got, expected):
    """``c`` when ``got`` is ``c * expected`` for one number ``c`` other than 1 (and 0); else None."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape or not np.any(expected):
        return None
    c = float(np.vdot(got, expected) / np.vdot(expected, expected))
    if c == 0 or math.isclose(c, 1.0, rel_tol=1e-6) or relative_error(got, c * expected) > MATCH_TOLERANCE:
        return None
    return c


def factor_hint(name, c, sizes=None):
    """What a factor ``c`` between ``name`` and its expected value suggests.

    ``sizes`` maps a symbol to ``(value, meaning)``, e.g. ``{"N": (5, "the batch size")}``.
    """
    for symbol, (value, meaning) in (sizes or {}).items():
        if math.isclose(c, 1 / value, rel_tol=1e-6):
            return (f"{name} is 1/{symbol} of the expected value ({symbol} = {value}, {meaning}): a mean "
                    "where a sum belongs?")
        if math.isclose(c, value, rel_tol=1e-6):
            return (f"{name} is {symbol} times the expected value ({symbol} = {value}, {meaning}): a sum "
                    f"where a mean belongs, or the 1/{symbol} of a mean lost?")
    if math.isclose(c, -1.0, rel_tol=1e-6):
        return f"{name} has the wrong sign: right up to a factor -1. Check the sign of each term."
    return (f"{name} is {c:.4g} times the expected value: right up to a constant factor. Look for a "
            "constant lost or added (a 2 from a square, a 1/N, a sign).")


# -- a wrong order ------------------------------------------------------------------------------
def reordering(grads, expected, tol):
    """``order[i]`` = the place in ``grads`` of the gradient that belongs at place ``i``, when every
    expected gradient is among ``grads`` but not all at their places; else None."""
    order = []
    for i, reference in enumerate(expected):
        places = [j for j, got in enumerate(grads)
                  if got is not None and np.shape(got) == np.shape(reference) and relative_error(got, reference) <= tol]
        if not places:
            return None
        order.append(i if i in places else places[0])
    if sorted(order) != list(range(len(expected))) or order == sorted(order):
        return None
    return order


def order_hint(function, names, order):
    misplaced = [f"d{names[i]} in the place of d{names[place]}" for i, place in enumerate(order) if place != i]
    return (f"{function} returns the right gradients in the wrong order: " + ", ".join(misplaced)
            + ". Return them in the order of the forward's inputs: " + ", ".join(f"d{n}" for n in names) + ".")


def shape_order_hint(function, got_shapes, names, shapes):
    """When the returned arrays have the right shapes in another order; else None."""
    got_shapes, shapes = [tuple(s) for s in got_shapes], [tuple(s) for s in shapes]
    if got_shapes == shapes or sorted(got_shapes) != sorted(shapes):
        return None
    shapes_text = lambda items: ", ".join(str(s) for s in items)  # noqa: E731
    return (f"{function} returned arrays of shapes {shapes_text(got_shapes)} for "
            f"({', '.join('d' + n for n in names)}), whose shapes are {shapes_text(shapes)}: the right shapes "
            "in another order. Return the gradients in the order of the forward's inputs.")


# -- dout ignored in one output ------------------------------------------------------------------
def upstream_in_one_hint(ignoring, changing):
    names = listing(ignoring)
    return (f"{names} stayed the same for two different random upstream gradients, while "
            f"{listing(changing)} changed: the computation of {names} ignores dout. Every gradient "
            "is linear in dout (the chain rule multiplies by it); look for dout replaced by ones, or "
            "left out, on the way to " + names + ".")


# -- a shape error in a matrix product -----------------------------------------------------------
def matmul_hint(error):
    """For an error raised by a matrix product in the student's code: which product, which shapes,
    and which shape its result should have. None for other errors."""
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return None
    frames = list(traceback.walk_tb(error.__traceback__))
    frame, _ = frames[-1]
    summary = traceback.StackSummary.extract(frames[-1:])[0]
    statement = linecache.getline(summary.filename, summary.lineno).strip()
    operands = _failing_product(summary, statement)
    if operands is None:
        return None
    shapes = [_shape_in(frame, operand) for operand in operands]
    if None in shapes:
        return None
    (left, right), (left_shape, right_shape) = operands, shapes
    inner_right = right_shape[-2] if len(right_shape) > 1 else right_shape[0]
    text = (f"In {summary.name} (line {summary.lineno}), `{left} @ {right}` multiplies {left} {left_shape} by "
            f"{right} {right_shape}: a product (n, k) @ (k, m) needs the inner sizes to agree, and "
            f"{left_shape[-1]} is not {inner_right}.")
    target = _assigned_gradient(statement)
    if target and _shape_in(frame, target[1:]) is not None:
        text += f" {target} must come out with the shape of {target[1:]}, {_shape_in(frame, target[1:])}."
    arrays = [f"{name} {value.shape}" for name, value in frame.f_locals.items() if isinstance(value, np.ndarray)]
    if arrays:
        text += " The arrays at hand: " + ", ".join(arrays) + ". Which product of them has that shape?"
    return text


def _failing_product(summary, statement):
    """``(left, right)`` source texts of the product that raised, or None."""
    segment = statement
    colno, end_colno = getattr(summary, "colno", None), getattr(summary, "end_colno", None)
    if colno is not None and end_colno is not None and summary.lineno == summary.end_lineno:
        segment = linecache.getline(summary.filename, summary.lineno)[colno:end_colno]
    try:
        tree = ast.parse(segment.strip())
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return ast.unparse(node.left), ast.unparse(node.right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("dot", "matmul"):
            arguments = [ast.unparse(a) for a in node.args]
            if len(arguments) == 2:
                return tuple(arguments)                              # np.dot(a, b)
            if len(arguments) == 1:
                return ast.unparse(node.func.value), arguments[0]    # a.dot(b)
    return None


def _shape_in(frame, source):
    """The shape of the expression ``source`` in ``frame`` (None when it is not an array)."""
    try:
        value = eval(source, frame.f_globals, dict(frame.f_locals))  # the student's own operand
    except Exception:
        return None
    return tuple(value.shape) if isinstance(value, np.ndarray) else None


def _assigned_gradient(statement):
    """``"dx"`` for ``dx = ...`` (a name starting with d), else None."""
    try:
        tree = ast.parse(statement)
    except SyntaxError:
        return None
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        name = node.targets[0].id
        return name if name.startswith("d") and len(name) > 1 else None
    return None


def listing(items):
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- no known mistake ----------------------------------------------------------------------------
def unknown_hint(failing_checks):
    listed = "; ".join(failing_checks[:3]) + (f"; and {len(failing_checks) - 3} more" if len(failing_checks) > 3 else "")
    return (f"No known mistake matched. These checks fail (NO above): {listed}. Go back to the derivation "
            "in the file's docstring, and try a tiny input by hand.")
