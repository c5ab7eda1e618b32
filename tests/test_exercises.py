"""The gradient-check exercises: the sheet, the grader, and the command line.

The grader must pass the reference solutions and fail the typical broken answers, each with the
hint that names its mistake.
"""
import shutil
import types

import numpy as np
import pytest

from minires import nn
from minires.exercises import (EXERCISES, grade_directory, grade_module, grader, reference_module, sheet_toolbox,
                               strip_solutions, toolbox)
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


def _linear_db_mean(dout, cache):
    x, w = cache
    return dout @ w, dout.T @ x, dout.mean(axis=0)


def _linear_swapped(dout, cache):
    x, w = cache
    return dout.T @ x, dout @ w, dout.sum(axis=0)


def _linear_dw_from_ones(dout, cache):
    x, w = cache
    return dout @ w, np.ones_like(dout).T @ x, dout.sum(axis=0)


def _linear_matmul_shapes(dout, cache):
    x, w = cache
    dx = dout @ w.T
    return dx, dout.T @ x, dout.sum(axis=0)


def _linear_dx_off(dout, cache):
    x, w = cache
    return dout @ w + 1e-3, dout.T @ x, dout.sum(axis=0)


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
        if mistake == "sign":
            return -dz * (dloss / N)
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


def _batch_norm_beta_gamma_swapped(dout, cache):
    dx, dgamma, dbeta = reference_module(BY_NAME["ex5_batch_norm"]).batch_norm_backward(dout, cache)
    return dx, dbeta, dgamma


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
    """basic_block_backward with one of the usual mistakes."""
    solution = reference_module(BY_NAME["ex7_residual_block"])

    def backward(dout, cache):
        branch_cache, relu2_cache = cache
        ds = dout if mistake == "no relu" else solution.layers.relu_backward(dout, relu2_cache)
        dx, *dparameters = solution.branch_backward(ds, branch_cache)
        if mistake == "skip before relu":
            dx = dx + dout
        elif mistake != "no skip":
            dx = dx + ds
        return (dx, *dparameters)
    return backward


def _projection(mistake):
    """projection_block_backward with one of the usual mistakes."""
    solution = reference_module(BY_NAME["ex7_residual_block"])
    layers = solution.layers

    def backward(dout, cache):
        branch_cache, conv_s_cache, bn_s_cache, relu2_cache = cache
        ds = layers.relu_backward(dout, relu2_cache)
        dx, *dparameters = solution.branch_backward(ds, branch_cache)
        dc_s, dgamma_s, dbeta_s = layers.batch_norm_backward(ds, bn_s_cache)
        dx_shortcut, dw_s, _ = layers.conv2d_backward(ds if mistake == "no bn" else dc_s, conv_s_cache)
        if mistake != "no skip":
            dx = dx + dx_shortcut
        return (dx, *dparameters, dw_s, dgamma_s, dbeta_s)
    return backward


BROKEN = [
    ("ex1_relu", {"relu_backward": _relu_mask_only}, "ignores_upstream"),
    ("ex1_relu", {"relu_backward": _relu_ge}, "relu_at_zero"),
    ("ex2_linear", {"linear_backward": _linear_db_unsummed}, "linear_db_not_summed"),
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
    ("ex7_residual_block", {"projection_block_backward": _projection("no skip")}, "block_forgot_skip"),
    ("ex7_residual_block", {"projection_block_backward": _projection("no bn")}, "projection_forgot_bn"),
]

@pytest.mark.parametrize("name,functions,hint", BROKEN, ids=[hint for _, _, hint in BROKEN])
def test_typical_mistakes_fail_with_their_hint(name, functions, hint):
    result = grade_module(BY_NAME[name], with_function(name, **functions))
    assert result.status == "fail", str(result)
    assert hint in result.hint_keys, str(result)
    assert HINTS[hint] in str(result).replace("\n        ", " ")


# (exercise, broken functions, hint key, words the hint must say): hints made on the spot
RECOGNISED = [
    ("ex2_linear", {"linear_backward": _linear_db_mean}, "constant_factor",
     "db is 1/N of the expected value (N = 5, the batch size): a mean where a sum belongs?"),
    ("ex3_softmax_cross_entropy", {"softmax_cross_entropy_backward": _ce("mean")}, "constant_factor",
     "dz is N times the expected value (N = 4, the batch size): a sum where a mean belongs, or the 1/N of a mean lost?"),
    ("ex3_softmax_cross_entropy", {"softmax_cross_entropy_backward": _ce("sign")}, "constant_factor",
     "dz has the wrong sign"),
    ("ex5_batch_norm", {"batch_norm_backward": _batch_norm_beta_gamma_swapped}, "wrong_order",
     "batch_norm_backward returns the right gradients in the wrong order: dgamma in the place of dbeta, "
     "dbeta in the place of dgamma. Return them in the order of the forward's inputs: dx, dgamma, dbeta."),
    ("ex2_linear", {"linear_backward": _linear_swapped}, "wrong_order",
     "linear_backward returned arrays of shapes (4, 3), (5, 3), (4,) for (dx, dw, db), whose shapes are "
     "(5, 3), (4, 3), (4,): the right shapes in another order."),
    ("ex2_linear", {"linear_backward": _linear_dw_from_ones}, "ignores_upstream_in_one",
     "dw stayed the same for two different random upstream gradients, while dx and db changed"),
    ("ex2_linear", {"linear_backward": _linear_matmul_shapes}, "matmul_shapes",
     "In _linear_matmul_shapes (line {line}), `dout @ w.T` multiplies dout (5, 4) by w.T (3, 4): a product "
     "(n, k) @ (k, m) needs the inner sizes to agree, and 4 is not 3. dx must come out with the shape of x, "
     "(5, 3). The arrays at hand: dout (5, 4), x (5, 3), w (4, 3)."),
    ("ex2_linear", {"linear_backward": _linear_dx_off}, "unknown",
     "No known mistake matched. These checks fail (NO above): gradient check: dx; same as minires Linear: dx."),
]


@pytest.mark.parametrize("name,functions,hint,words", RECOGNISED, ids=[r[2] + "-" + r[0] for r in RECOGNISED])
def test_mistakes_recognised_by_their_shape_get_a_hint_that_names_them(name, functions, hint, words):
    line = _linear_matmul_shapes.__code__.co_firstlineno + 2
    result = grade_module(BY_NAME[name], with_function(name, **functions))
    assert result.status in ("fail", "error"), str(result)
    assert result.hint_keys[0] == hint, str(result)
    assert words.format(line=line) in " ".join(str(result).split()), str(result)


def test_a_matmul_error_is_still_an_error_with_its_place():
    result = grade_module(BY_NAME["ex2_linear"], with_function("ex2_linear", linear_backward=_linear_matmul_shapes))
    assert result.status == "error" and "ValueError: matmul" in result.message
    assert "in _linear_matmul_shapes" in result.message


@pytest.mark.parametrize("name,functions,derivation", [
    ("ex5_batch_norm", {"batch_norm_backward": _batch_norm("constant")}, "bn_derivation"),
    ("ex7_residual_block", {"basic_block_backward": _block("no skip")}, "block_derivation"),
])
def test_the_derivation_is_shown_after_a_failed_attempt_only(name, functions, derivation):
    failed = grade_module(BY_NAME[name], with_function(name, **functions))
    assert failed.hint_keys[-1] == derivation and HINTS[derivation] in str(failed).replace("\n        ", " ")
    solution = (SOLUTIONS_DIR / f"{name}.py").read_text()
    formula = {"bn_derivation": "M * dx_hat - sum(dx_hat)", "block_derivation": "branch_backward(ds)[0] + "}[derivation]
    assert formula in HINTS[derivation] and formula not in solution.split('"""')[1]  # not on the sheet
    assert derivation not in grade_module(BY_NAME[name], reference_module(BY_NAME[name])).hint_keys


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


def _sheet_with_solutions(folder, names):
    main(["start", str(folder)])
    for name in names:
        shutil.copy(SOLUTIONS_DIR / f"{name}.py", folder / f"{name}.py")


def test_exercise_7_runs_on_the_students_layers_when_they_pass(tmp_path, monkeypatch):
    _sheet_with_solutions(tmp_path, ["ex1_relu", "ex5_batch_norm", "ex6_conv2d", "ex7_residual_block"])
    graded_modules = {}
    original = grader.grade_module

    def recording(exercise, module, seed=0):
        graded_modules[exercise.name] = module
        return original(exercise, module, seed)

    monkeypatch.setattr(grader, "grade_module", recording)
    (result,) = grade_directory(tmp_path, ["7"])
    assert result.passed, str(result)
    assert result.notes == ["built from your ReLU (ex1_relu.py), batch norm (ex5_batch_norm.py) and col2im and "
                            "conv2d (ex6_conv2d.py)."]
    layers = graded_modules["ex7_residual_block"].layers
    assert layers.conv2d_forward is graded_modules["ex6_conv2d"].conv2d_forward  # the student's own file
    assert layers.batch_norm_backward is graded_modules["ex5_batch_norm"].batch_norm_backward
    assert layers.relu_forward is graded_modules["ex1_relu"].relu_forward
    assert "note: built from your ReLU" in str(result)


def test_exercise_7_falls_back_to_minires_layers_with_a_note(tmp_path):
    _sheet_with_solutions(tmp_path, ["ex1_relu", "ex7_residual_block"])  # 5 and 6 not started
    (result,) = grade_directory(tmp_path, ["ex7_residual_block"])
    assert result.passed, str(result)
    assert result.notes == ["built from your ReLU (ex1_relu.py); minires' in place of your batch norm "
                            "(ex5_batch_norm.py: not started) and col2im and conv2d (ex6_conv2d.py: not "
                            "started), which do not pass yet."]


def test_sheet_toolbox_takes_only_what_passes(tmp_path):
    _sheet_with_solutions(tmp_path, ["ex2_linear", "ex4_max_pool"])
    layers, note = sheet_toolbox(tmp_path)
    assert layers.origin == {"ex1_relu": "minires", "ex2_linear": "yours", "ex3_softmax_cross_entropy": "minires",
                             "ex4_max_pool": "yours", "ex5_batch_norm": "minires", "ex6_conv2d": "minires"}
    assert layers.linear_forward.__module__ == "minires_exercise_ex2_linear"
    assert layers.relu_forward is nn.functional.relu_forward
    assert note.startswith("built from your linear layer (ex2_linear.py) and max pooling (ex4_max_pool.py); ")
    with pytest.raises(ValueError, match="no layer exercise named ex7_residual_block"):
        toolbox({"ex7_residual_block": None})


def test_check_without_a_folder_grades_the_current_folder(tmp_path, monkeypatch, capsys):
    _sheet_with_solutions(tmp_path, ["ex1_relu"])
    monkeypatch.chdir(tmp_path)
    assert main(["check", "1"]) == 0                      # from inside the sheet
    assert "Exercise 1 -- ReLU (ex1_relu.py): PASS" in capsys.readouterr().out
    assert main(["check"]) == 1                           # all of them; 2 to 7 not started
    assert "1 of 7 exercise(s) pass" in capsys.readouterr().out
    assert main(["check", ".", "1"]) == 0
    monkeypatch.chdir(tmp_path.parent)
    assert main(["check", tmp_path.name, "1"]) == 0       # from outside, the folder first
    assert main(["check", "ex1_relux"]) == 2              # neither a folder nor an exercise
    assert "'ex1_relux' is not an existing folder, so it counts as an exercise" in capsys.readouterr().err


def test_an_existing_folder_wins_over_an_exercise_number(tmp_path, monkeypatch, capsys):
    _sheet_with_solutions(tmp_path / "1", ["ex1_relu"])
    monkeypatch.chdir(tmp_path)
    assert main(["check", "1", "1"]) == 0                 # the sheet in ./1, exercise 1
    assert "PASS" in capsys.readouterr().out


def test_check_usage_shows_folder_and_exercises_as_optional(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "usage: python -m minires.exercises check [-h] [FOLDER] [EXERCISE ...]" in capsys.readouterr().out
