"""The gradient-check exercises: the sheet, the grader, and the command line.

The grader must pass the reference solutions and fail the typical broken answers, each with the
hint that names its mistake.
"""
import shutil
import types

import numpy as np
import pytest

from minires.exercises import EXERCISES, grade_directory, grade_module, reference_module, strip_solutions
from minires.exercises.__main__ import main
from minires.exercises.grader import HINTS
from minires.exercises.sheet import SOLUTIONS_DIR

BY_NAME = {exercise.name: exercise for exercise in EXERCISES}


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.name for e in EXERCISES])
def test_reference_solutions_pass(exercise):
    result = grade_module(exercise, reference_module(exercise))
    assert result.passed, str(result)
    assert result.rows and all(row.ok for row in result.rows)
    assert not result.hints


def with_function(name, **functions):
    """The reference module of exercise ``name`` with some functions replaced (a student's answer)."""
    return types.SimpleNamespace(**{**vars(reference_module(BY_NAME[name])), **functions})


def _relu_mask_only(dout, x):
    return (x > 0).astype(x.dtype)


def _relu_ge(dout, x):
    return dout * (x >= 0)


def _linear_db_unsummed(dout, cache):
    x, w = cache
    return dout @ w, dout.T @ x, dout


def _linear_dw_transposed(dout, cache):
    x, w = cache
    return dout @ w, x.T @ dout, dout.sum(axis=0)


def _ce(mistake):
    def backward(dloss, cache):
        p, t = cache
        N = p.shape[0]
        dz = p.copy()
        if mistake != "onehot":
            dz[np.arange(N), t] -= 1
        if mistake == "mean":
            return dz * dloss
        if mistake == "dloss":
            return dz / N
        return dz * (dloss / N)
    return backward


def _max_pool(assign=False, all_ties=False):
    from minires.exercises.solutions.ex4_max_pool import window_slice

    def backward(dout, cache):
        x, k, s, out = cache
        H_out, W_out = out.shape[2:]
        dx = np.zeros_like(x)
        routed = np.zeros(out.shape, dtype=bool)
        for i in range(k):
            for j in range(k):
                rows, cols = window_slice(i, s, H_out), window_slice(j, s, W_out)
                hit = x[:, :, rows, cols] == out
                if not all_ties:
                    hit &= ~routed
                if assign:
                    dx[:, :, rows, cols] = dout * hit
                else:
                    dx[:, :, rows, cols] += dout * hit
                routed |= hit
        return dx
    return backward


def _batch_norm(mistake):
    def backward(dout, cache):
        x_hat, gamma, inv_std = cache
        axes = (0, 2, 3)
        dx_hat = dout * gamma.reshape(1, -1, 1, 1)
        if mistake == "constant":
            dx = inv_std * dx_hat
        elif mistake == "zero":
            dx = np.zeros_like(dout)
        else:  # lost the 1/M of the means
            dx = inv_std * (dx_hat - dx_hat.sum(axis=axes, keepdims=True)
                            - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))
        return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
    return backward


def _col2im_assign(cols, x_shape, k, s, p):
    from minires.exercises.solutions.ex6_conv2d import conv_output_size, window_slice
    N, C, H, W = x_shape
    H_out, W_out = conv_output_size(H, k, s, p), conv_output_size(W, k, s, p)
    windows = cols.reshape(N, H_out, W_out, C, k, k)
    dx_pad = np.zeros((N, C, H + 2 * p, W + 2 * p))
    for i in range(k):
        for j in range(k):
            dx_pad[:, :, window_slice(i, s, H_out), window_slice(j, s, W_out)] = \
                windows[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx_pad[:, :, p:p + H, p:p + W]


def _conv_without_db(dout, cache):
    dx, dw, _ = reference_module(BY_NAME["ex6_conv2d"]).conv2d_backward(dout, cache)
    return dx, dw, None


def _block(mistake):
    def backward(dout, cache):
        from minires.nn.functional import batch_norm_backward, conv2d_backward, relu_backward
        conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache, relu2_cache = cache
        ds = dout if mistake == "no relu" else relu_backward(dout, relu2_cache)
        dc2, dgamma2, dbeta2 = batch_norm_backward(ds, bn2_cache)
        da, dw2, _ = conv2d_backward(dc2, conv2_cache)
        dc1, dgamma1, dbeta1 = batch_norm_backward(relu_backward(da, relu1_cache), bn1_cache)
        dx, dw1, _ = conv2d_backward(dc1, conv1_cache)
        if mistake == "skip before relu":
            dx = dx + dout
        elif mistake != "no skip":
            dx = dx + ds
        return dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2
    return backward


BROKEN = [
    ("ex1_relu", {"relu_backward": _relu_mask_only}, "ignores_upstream"),
    ("ex1_relu", {"relu_backward": _relu_ge}, "relu_at_zero"),
    ("ex2_linear", {"linear_backward": _linear_db_unsummed}, "linear_db_not_summed"),
    ("ex3_softmax_cross_entropy", {"softmax_cross_entropy_backward": _ce("mean")}, "ce_forgot_mean"),
    ("ex3_softmax_cross_entropy", {"softmax_cross_entropy_backward": _ce("onehot")}, "ce_forgot_onehot"),
    ("ex3_softmax_cross_entropy", {"softmax_cross_entropy_backward": _ce("dloss")}, "ignores_upstream"),
    ("ex4_max_pool", {"max_pool_backward": _max_pool(assign=True)}, "pool_overlap"),
    ("ex4_max_pool", {"max_pool_backward": _max_pool(all_ties=True)}, "pool_ties"),
    ("ex5_batch_norm", {"batch_norm_backward": _batch_norm("constant")}, "bn_constant_stats"),
    ("ex5_batch_norm", {"batch_norm_backward": _batch_norm("1/M")}, "bn_forgot_1_over_M"),
    ("ex5_batch_norm", {"batch_norm_backward": _batch_norm("zero")}, "bn_zero_dx"),
    ("ex6_conv2d", {"col2im": _col2im_assign}, "col2im_overlap"),
    ("ex7_residual_block", {"basic_block_backward": _block("no skip")}, "block_forgot_skip"),
    ("ex7_residual_block", {"basic_block_backward": _block("skip before relu")}, "block_skip_before_relu"),
    ("ex7_residual_block", {"basic_block_backward": _block("no relu")}, "block_forgot_relu"),
]


@pytest.mark.parametrize("name,functions,hint", BROKEN, ids=[hint for _, _, hint in BROKEN])
def test_typical_mistakes_fail_with_their_hint(name, functions, hint):
    result = grade_module(BY_NAME[name], with_function(name, **functions))
    assert result.status == "fail", str(result)
    assert hint in result.hint_keys, str(result)
    assert HINTS[hint] in str(result).replace("\n        ", " ")


def test_wrong_shapes_and_missing_gradients_are_named():
    transposed = grade_module(BY_NAME["ex2_linear"], with_function("ex2_linear", linear_backward=_linear_dw_transposed))
    assert transposed.status == "fail"
    assert "dw from linear_backward: got shape (3, 4), expected (4, 3) (transposed?)" in transposed.message
    no_db = grade_module(BY_NAME["ex6_conv2d"], with_function("ex6_conv2d", conv2d_backward=_conv_without_db))
    assert no_db.status == "fail" and "db from conv2d_backward: got None" in no_db.message


def test_an_exception_in_the_students_code_is_an_error_with_its_place():
    def broken(dout, cache):
        return dout @ cache  # shapes do not fit
    result = grade_module(BY_NAME["ex1_relu"], with_function("ex1_relu", relu_backward=broken))
    assert result.status == "error" and "ValueError" in result.message and "in broken" in result.message


def test_the_sheet_is_the_solutions_without_their_answers(tmp_path):
    assert main(["start", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").exists()
    for exercise in EXERCISES:
        sheet = (tmp_path / f"{exercise.name}.py").read_text()
        solution = (SOLUTIONS_DIR / f"{exercise.name}.py").read_text()
        assert "SOLUTION" not in sheet and "raise NotImplementedError" in sheet
        assert sheet.split("def ")[0] == solution.split("def ")[0]  # the docstring and imports are kept
    assert "dout.T @ x" not in (tmp_path / "ex2_linear.py").read_text()
    results = grade_directory(tmp_path)
    assert [r.status for r in results] == ["not started"] * len(EXERCISES)


def test_strip_solutions_rejects_unbalanced_markers():
    with pytest.raises(ValueError, match="without # END SOLUTION"):
        strip_solutions("def f():\n    # BEGIN SOLUTION\n    return 1\n")
    with pytest.raises(ValueError, match="line 2: # END SOLUTION without"):
        strip_solutions("def f():\n    # END SOLUTION\n")


def test_start_refuses_to_overwrite_a_sheet_without_force(tmp_path, capsys):
    assert main(["start", str(tmp_path)]) == 0
    work = tmp_path / "ex1_relu.py"
    work.write_text("# my work")
    assert main(["start", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert work.read_text() == "# my work"
    assert main(["start", str(tmp_path), "--force"]) == 0
    assert "raise NotImplementedError" in work.read_text()


def test_check_exit_codes(tmp_path, capsys):
    main(["start", str(tmp_path)])
    assert main(["check", str(tmp_path), "1"]) == 1
    assert "NOT STARTED" in capsys.readouterr().out
    for name in ("ex1_relu.py", "ex2_linear.py"):
        shutil.copy(SOLUTIONS_DIR / name, tmp_path / name)
    assert main(["check", str(tmp_path), "1", "ex2_linear"]) == 0
    out = capsys.readouterr().out
    assert "Exercise 1 -- ReLU (ex1_relu.py): PASS" in out and "2 of 2 exercise(s) pass" in out
    assert main(["check", str(tmp_path)]) == 1
    assert main(["check", str(tmp_path), "9"]) == 2
    assert "unknown exercise(s): 9" in capsys.readouterr().err
    (tmp_path / "ex3_softmax_cross_entropy.py").write_text("def broken(:\n")
    main(["check", str(tmp_path), "3"])
    assert "could not import ex3_softmax_cross_entropy.py: SyntaxError" in capsys.readouterr().out
