"""minires.optim against torch.optim: parameter trajectories, checkpoints, schedules, errors."""
import numpy as np
import pytest
import torch

from minires import nn, optim
from minires.backend import asnumpy
from minires.optim import lr_scheduler

from tests.support.torch_helpers import assert_close

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 10


# -- helpers: identical parameters and gradients fed to both libraries ---------------------------
def make_params(xp, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    ours = [nn.Parameter(xp.asarray(v.copy())) for v in values]
    theirs = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    return ours, theirs


def gradients(dtype=np.float64, steps=STEPS, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]


# Parameters left without a gradient at some steps: parameter 1 gets its first one at step 3.
NO_GRAD_AT = {0: {1}, 1: {1}, 2: {1, 2}, 5: {0}}


def feed(ours, theirs, grads, xp, no_grad=()):
    for index, (p, t, g) in enumerate(zip(ours, theirs, grads)):
        p.grad = None if index in no_grad else xp.asarray(g.copy())
        t.grad = None if index in no_grad else torch.from_numpy(g.copy())


def two_groups(params):
    return [{"params": params[:2], "lr": 0.03, "weight_decay": 0.2}, {"params": params[2:]}]


CASES = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    "sgd-momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd-dampening": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    "sgd-nesterov": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd-weight-decay": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.8, weight_decay=0.05)),
    "sgd-maximize": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam-amsgrad": (optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), amsgrad=True)),
    "adam-weight-decay": (optim.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    "adam-small-beta1": (optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.3, 0.5), maximize=True)),
    "adam-decoupled": (optim.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01)),
    "adamw-amsgrad": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
}


def build(case, ours, theirs, grouped):
    our_cls, torch_cls, kwargs = CASES[case]
    layout = two_groups if grouped else list
    return our_cls(layout(ours), **kwargs), torch_cls(layout(theirs), foreach=False, **kwargs)


def run(opt, params, torch_opt, torch_params, grads, xp, no_grad_at, compare=None):
    for step, step_grads in enumerate(grads):
        feed(params, torch_params, step_grads, xp, no_grad_at.get(step, ()))
        opt.step()
        torch_opt.step()
        if compare:
            compare(step)


# -- optimizers vs torch.optim -------------------------------------------------------------------
@pytest.mark.parametrize("grouped", [False, True], ids=["one-group", "two-groups-and-missing-grads"])
@pytest.mark.parametrize("case", list(CASES))
def test_trajectory_matches_torch(xp, case, grouped):
    ours, theirs = make_params(xp)
    opt, torch_opt = build(case, ours, theirs, grouped)
    no_grad_at = NO_GRAD_AT if grouped else {}

    def compare(step):
        for index, (p, t) in enumerate(zip(ours, theirs)):
            assert_close(p.data, t, rtol=1e-12, atol=1e-14, what=f"{case}: parameter {index} after step {step}")

    run(opt, ours, torch_opt, theirs, gradients(), xp, no_grad_at, compare)


@pytest.mark.parametrize("case", ["sgd-nesterov", "sgd-weight-decay", "adam-amsgrad", "adamw"])
def test_float32_stays_float32_and_matches_torch(xp, case):
    ours, theirs = make_params(xp, np.float32)
    our_cls, torch_cls, kwargs = CASES[case]
    # NumPy float64 scalars as hyper-parameters must not promote the float32 arithmetic.
    numpy_kwargs = {k: np.float64(v) if isinstance(v, float) else v for k, v in kwargs.items()}
    opt, torch_opt = our_cls(ours, **numpy_kwargs), torch_cls(theirs, foreach=False, **kwargs)
    run(opt, ours, torch_opt, theirs, gradients(np.float32), xp, {})
    for p, t in zip(ours, theirs):
        assert p.data.dtype == np.float32
        assert_close(p.data, t, rtol=2e-6, atol=1e-6, what=case)
    for state in opt.state.values():
        assert all(v.dtype == np.float32 for v in state.values() if hasattr(v, "dtype"))


def test_step_updates_in_place_and_leaves_grads_alone(xp):
    ours, _ = make_params(xp)
    arrays = [p.data for p in ours]
    grads = [xp.asarray(g) for g in gradients(steps=1)[0]]
    for p, g in zip(ours, grads):
        p.grad = g.copy()
    opt = optim.SGD(ours, lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    opt.step()
    opt.step()  # the second step uses the momentum buffer, which must not alias p.grad
    for p, array, g in zip(ours, arrays, grads):
        assert p.data is array
        np.testing.assert_array_equal(asnumpy(p.grad), asnumpy(g))


def test_zero_grad():
    ours, _ = make_params(np)
    for p in ours[:2]:
        p.grad = np.ones_like(p.data)
    grad0 = ours[0].grad
    opt = optim.SGD(ours, lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert ours[0].grad is grad0 and not grad0.any() and ours[2].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_closure_is_called_and_its_loss_returned():
    ours, _ = make_params(np)
    calls = []

    def closure():
        calls.append(1)
        for p in ours:
            p.grad = np.ones_like(p.data)
        return 3.5

    assert optim.Adam(ours).step(closure) == 3.5 and calls == [1]


def test_add_param_group_takes_defaults_and_is_stepped(xp):
    ours, theirs = make_params(xp)
    opt = optim.SGD(ours[:1], lr=0.1, momentum=0.9)
    torch_opt = torch.optim.SGD(theirs[:1], lr=0.1, momentum=0.9, foreach=False)
    opt.add_param_group({"params": ours[1:], "lr": 0.01})
    torch_opt.add_param_group({"params": theirs[1:], "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    run(opt, ours, torch_opt, theirs, gradients(steps=3), xp, {})
    for p, t in zip(ours, theirs):
        assert_close(p.data, t, rtol=1e-12)


class _Tiny(nn.Module):
    """A weight matrix, a bias and a child with a 1-D scale: what a conv + BN block has."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.ones((4, 3)))
        self.bias = nn.Parameter(np.zeros(4))
        self.child = nn.Module()
        self.child.scale = nn.Parameter(np.ones(4))
        self.child.kernel = nn.Parameter(np.ones((2, 2, 3, 3)))


def test_weight_decay_groups_exclude_1d_parameters():
    model = _Tiny()
    decay, no_decay = optim.weight_decay_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model.weight), id(model.child.kernel)]
    assert [id(p) for p in no_decay["params"]] == [id(model.bias), id(model.child.scale)]
    opt = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=0.1, momentum=0.9, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    only_biases = nn.Module()
    only_biases.bias = nn.Parameter(np.zeros(3))
    assert [g["weight_decay"] for g in optim.weight_decay_groups(only_biases, 0.1)] == [0.0]


# -- state_dict ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["sgd-momentum", "sgd-nesterov", "adam-amsgrad", "adamw"])
def test_state_dict_round_trip_continues_exactly(xp, case):
    grads = gradients()
    straight, theirs = make_params(xp)
    opt, torch_opt = build(case, straight, theirs, grouped=True)
    run(opt, straight, torch_opt, theirs, grads, xp, NO_GRAD_AT)

    first, theirs = make_params(xp)
    opt, torch_opt = build(case, first, theirs, grouped=True)
    run(opt, first, torch_opt, theirs, grads[:4], xp, NO_GRAD_AT)
    saved, torch_saved = opt.state_dict(), torch_opt.state_dict()
    check_layout_like_torch(saved, torch_saved)

    resumed = [nn.Parameter(p.data.copy()) for p in first]
    fresh_layout = [{"params": resumed[:2], "lr": 5.0}, {"params": resumed[2:]}]
    fresh = CASES[case][0](fresh_layout, lr=7.0)  # the saved hyper-parameters must take over
    fresh.load_state_dict(saved)
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in saved["param_groups"]]
    for values in saved["state"].values():  # loading copies: the saved arrays stay untouched
        for value in values.values():
            if hasattr(value, "shape"):
                value += 1000.0
    run(fresh, resumed, torch_opt, theirs, grads[4:], xp, {k - 4: v for k, v in NO_GRAD_AT.items()})
    for p, q in zip(resumed, straight):
        np.testing.assert_array_equal(asnumpy(p.data), asnumpy(q.data))


def check_layout_like_torch(saved, torch_saved):
    """Same parameter indices and state entries as PyTorch's state_dict, with the same values."""
    assert [g["params"] for g in saved["param_groups"]] == [g["params"] for g in torch_saved["param_groups"]]
    for ours, theirs in zip(saved["param_groups"], torch_saved["param_groups"]):
        assert all(ours[key] == theirs[key] for key in ours)
    assert sorted(saved["state"]) == sorted(torch_saved["state"])
    for index, state in saved["state"].items():
        assert sorted(state) == sorted(torch_saved["state"][index])
        for key, value in state.items():
            expected = torch_saved["state"][index][key]
            if key == "step":
                assert value == int(expected)
            else:
                assert_close(value, expected, rtol=1e-12, what=f"state[{index}][{key!r}]")


def test_load_state_dict_casts_to_the_parameters_dtype():
    ours64, _ = make_params(np)
    ours32, _ = make_params(np, np.float32)
    opt64, opt32 = optim.Adam(ours64), optim.Adam(ours32)
    for p in ours64:
        p.grad = np.ones_like(p.data)
    opt64.step()
    opt32.load_state_dict(opt64.state_dict())
    assert opt32.state[ours32[0]]["exp_avg"].dtype == np.float32
    assert opt32.state[ours32[0]]["step"] == 1


def test_load_state_dict_errors():
    ours, _ = make_params(np)
    for p in ours:
        p.grad = np.ones_like(p.data)
    sgd = optim.SGD(two_groups(ours), lr=0.1, momentum=0.9)
    sgd.step()
    saved = sgd.state_dict()
    with pytest.raises(ValueError, match="2 parameter groups, this optimizer has 1"):
        optim.SGD(ours, lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameter group 1 has 1 parameters in the state_dict, 2 in"):
        optim.SGD([{"params": ours[:2]}, {"params": ours[2:] + [nn.Parameter(np.zeros(2))]}],
                  lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"lacks \['betas', 'eps'"):
        optim.Adam(two_groups(ours)).load_state_dict(saved)
    other = [nn.Parameter(np.zeros(s[::-1] + (1,))) for s in SHAPES]
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(3, 4\), its parameter has shape \(4, 3, 1\)"):
        optim.SGD(two_groups(other), lr=0.1, momentum=0.9).load_state_dict(saved)


# -- errors --------------------------------------------------------------------------------------
def _params():
    return make_params(np)[0]


@pytest.mark.parametrize("make,error,match", [
    (lambda: optim.SGD(_params(), lr=-0.1), ValueError, r"SGD: invalid learning rate lr=-0.1"),
    (lambda: optim.SGD(_params(), lr=float("nan")), ValueError, "learning rate"),
    (lambda: optim.SGD(_params(), lr=None), TypeError, "learning rate lr must be a number, got NoneType"),
    (lambda: optim.SGD(_params(), momentum=-0.9), ValueError, "invalid momentum"),
    (lambda: optim.SGD(_params(), weight_decay=-1), ValueError, "invalid weight decay"),
    (lambda: optim.SGD(_params(), nesterov=True), ValueError, "Nesterov momentum requires a momentum"),
    (lambda: optim.SGD(_params(), momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "zero dampening, got momentum=0.9, dampening=0.1"),
    (lambda: optim.SGD([{"params": _params(), "lr": -1.0}], lr=0.1), ValueError, "invalid learning rate lr=-1.0"),
    (lambda: optim.Adam(_params(), eps=-1e-8), ValueError, "Adam: invalid epsilon"),
    (lambda: optim.Adam(_params(), betas=(1.0, 0.999)), ValueError, "beta parameter at index 0: 1.0"),
    (lambda: optim.AdamW(_params(), betas=(0.9, -0.1)), ValueError, "AdamW: invalid beta parameter at index 1"),
    (lambda: optim.Adam(_params(), betas=(0.9,)), ValueError, "betas must be a pair"),
    (lambda: optim.AdamW(_params(), weight_decay=-0.01), ValueError, "invalid weight decay"),
    (lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: optim.SGD(_params()[0], lr=0.1), TypeError, "iterable of Parameters .* got Parameter"),
    (lambda: optim.SGD(np.zeros(3), lr=0.1), TypeError, "got ndarray"),
    (lambda: optim.SGD([np.zeros(3)], lr=0.1), TypeError, "can only optimize minires.nn.Parameter .* numpy.ndarray"),
    (lambda: optim.SGD(set(_params()), lr=0.1), TypeError, "ordered collection"),
    (lambda: optim.SGD([{"lr": 0.1}]), ValueError, "needs a 'params' entry"),
    (lambda: optim.SGD(_params() * 2, lr=0.1), ValueError, "lists the same parameter twice"),
])
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_parameter_in_two_groups_and_bad_gradients():
    params = _params()
    opt = optim.SGD(params[:2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": params[1:]})
    with pytest.raises(TypeError, match="parameter group must be a dict"):
        opt.add_param_group(params[2:])
    params[0].grad = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"SGD: gradient of shape \(4, 3\) does not match its parameter's shape \(3, 4\)"):
        opt.step()
    params[0].grad = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="SGD: gradient dtype float32 does not match its parameter's dtype float64"):
        opt.step()


# -- learning-rate schedules vs torch.optim.lr_scheduler -----------------------------------------
def two_rates(params):
    return [{"params": params[:2], "lr": 0.1}, {"params": params[2:], "lr": 0.05}]


def sgd_pair():
    """An SGD over two groups with different rates, in both libraries."""
    ours, theirs = make_params(np)
    return (optim.SGD(two_rates(ours), lr=0.1, momentum=0.9),
            torch.optim.SGD(two_rates(theirs), lr=0.1, momentum=0.9, foreach=False))


def adam_pair():
    ours, theirs = make_params(np)
    return optim.Adam(two_rates(ours)), torch.optim.Adam(two_rates(theirs), foreach=False)


def warmup_then_cosine(S, opt):
    return S.SequentialLR(opt, [S.LinearLR(opt, start_factor=0.1, total_iters=5),
                                S.CosineAnnealingLR(opt, T_max=25, eta_min=1e-4)], milestones=[5])


SCHEDULES = {
    "step": lambda S, opt: S.StepLR(opt, step_size=7, gamma=0.5),
    "multistep": lambda S, opt: S.MultiStepLR(opt, milestones=[5, 12, 12, 20], gamma=0.3),
    "cosine": lambda S, opt: S.CosineAnnealingLR(opt, T_max=30),
    "cosine-past-T_max": lambda S, opt: S.CosineAnnealingLR(opt, T_max=8, eta_min=1e-3),
    "linear-warmup": lambda S, opt: S.LinearLR(opt, start_factor=0.1, total_iters=8),
    "linear-decay": lambda S, opt: S.LinearLR(opt, start_factor=1.0, end_factor=0.2, total_iters=10),
    "exponential": lambda S, opt: S.ExponentialLR(opt, gamma=0.9),
    "onecycle": lambda S, opt: S.OneCycleLR(opt, max_lr=[0.5, 0.2], total_steps=30),
    "onecycle-linear-3phase": lambda S, opt: S.OneCycleLR(
        opt, max_lr=0.4, epochs=6, steps_per_epoch=5, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10.0, final_div_factor=100.0),
    "warmup-then-cosine": warmup_then_cosine,
    "sequential-of-three": lambda S, opt: S.SequentialLR(
        opt, [S.LinearLR(opt, start_factor=0.5, total_iters=4), S.StepLR(opt, step_size=3, gamma=0.5),
              S.ExponentialLR(opt, gamma=0.8)], milestones=[5, 15]),
    "chained": lambda S, opt: S.ChainedScheduler([S.LinearLR(opt, start_factor=0.2, total_iters=6),
                                                  S.ExponentialLR(opt, gamma=0.95)]),
}


def record(opt, sched, steps, first=True):
    """Per step: the rates from get_last_lr, and what the optimizer groups hold (rates, momentum)."""
    def snapshot():
        groups = [[g["lr"], g.get("momentum", -1.0), *g.get("betas", ())] for g in opt.param_groups]
        return list(sched.get_last_lr()), groups
    history = [snapshot()] if first else []
    for _ in range(steps):
        opt.step()
        sched.step()
        history.append(snapshot())
    return history


def assert_same_history(ours, theirs):
    assert len(ours) == len(theirs)
    for step, ((lrs, groups), (torch_lrs, torch_groups)) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(lrs, torch_lrs, rtol=1e-12, atol=1e-16, err_msg=f"lr at step {step}")
        for ours_group, torch_group in zip(groups, torch_groups):
            np.testing.assert_allclose(ours_group, torch_group, rtol=1e-12, atol=1e-16,
                                       err_msg=f"lr, momentum, betas at step {step}")


@pytest.mark.parametrize("optimizers", [sgd_pair, adam_pair], ids=["sgd", "adam"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name, optimizers):
    opt, torch_opt = optimizers()
    ours = record(opt, SCHEDULES[name](lr_scheduler, opt), 30)
    theirs = record(torch_opt, SCHEDULES[name](torch.optim.lr_scheduler, torch_opt), 30)
    assert_same_history(ours, theirs)
    assert all(type(lr) is float for lr in ours[-1][0])


def test_resumed_schedule_with_last_epoch_matches_torch():
    histories = []
    for S, opt in zip((lr_scheduler, torch.optim.lr_scheduler), sgd_pair()):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
        histories.append(record(opt, S.CosineAnnealingLR(opt, T_max=10, last_epoch=4), 12))
    assert_same_history(*histories)


@pytest.mark.parametrize("name", ["multistep", "cosine-past-T_max", "onecycle", "warmup-then-cosine", "chained"])
def test_schedule_state_dict_round_trip(name):
    opt, _ = sgd_pair()
    straight = record(opt, SCHEDULES[name](lr_scheduler, opt), 30)

    opt, _ = sgd_pair()
    sched = SCHEDULES[name](lr_scheduler, opt)
    record(opt, sched, 12)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    fresh_opt, _ = sgd_pair()
    fresh = SCHEDULES[name](lr_scheduler, fresh_opt)
    fresh_opt.load_state_dict(opt_state)
    fresh.load_state_dict(sched_state)
    assert record(fresh_opt, fresh, 18, first=False) == straight[13:]


@pytest.mark.parametrize("make,error,match", [
    (lambda opt: lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1)]), 3), TypeError,
     "StepLR: expected a minires.optim.Optimizer, got SGD"),
    (lambda opt: lr_scheduler.StepLR(opt, step_size=0), ValueError, "step_size must be a positive integer"),
    (lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=0), ValueError, "T_max must be positive"),
    (lambda opt: lr_scheduler.LinearLR(opt, start_factor=0.0), ValueError, r"start_factor must be in \(0, 1\]"),
    (lambda opt: lr_scheduler.LinearLR(opt, end_factor=1.5), ValueError, r"end_factor must be in \[0, 1\]"),
    (lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=5, last_epoch=3), KeyError, "initial_lr"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1), ValueError, "total_steps or both epochs"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=0), ValueError, "positive integer total_steps"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, 0.1, epochs=2, steps_per_epoch=2.5), ValueError, "steps_per_epoch"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, 0.1, total_steps=9, pct_start=1), ValueError, "pct_start"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, 0.1, total_steps=9, anneal_strategy="exp"), ValueError, "'cos' or 'linear'"),
    (lambda opt: lr_scheduler.OneCycleLR(opt, [0.1, 0.2, 0.3], total_steps=9), ValueError,
     "max_lr must have one value per parameter group: got 3 values for 2 groups"),
    (lambda opt: lr_scheduler.SequentialLR(opt, [lr_scheduler.ExponentialLR(opt, 0.9)], milestones=[3]),
     ValueError, "expected 0 milestones for 1 schedulers, got 1"),
    (lambda opt: lr_scheduler.SequentialLR(opt, [], milestones=[]), ValueError, "at least one scheduler"),
    (lambda opt: lr_scheduler.ChainedScheduler([lr_scheduler.ExponentialLR(opt, 0.9), "cosine"]), TypeError,
     r"schedulers\[1\] is a str"),
    (lambda opt: lr_scheduler.ChainedScheduler([lr_scheduler.ExponentialLR(opt, 0.9),
                                                lr_scheduler.ExponentialLR(sgd_pair()[0], 0.9)]),
     ValueError, r"same optimizer, but schedulers\[1\] \(ExponentialLR\)"),
])
def test_schedule_errors(make, error, match):
    with pytest.raises(error, match=match):
        make(sgd_pair()[0])


def test_onecycle_refuses_to_step_past_its_end():
    opt, _ = sgd_pair()
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=4)
    for _ in range(4):
        sched.step()
    with pytest.raises(ValueError, match="tried to step 5 times; the schedule has total_steps=4"):
        sched.step()
