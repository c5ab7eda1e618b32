"""Learning-rate schedules, stepping exactly like ``torch.optim.lr_scheduler``.

A schedule writes ``group['lr']`` of each parameter group of its optimizer. Its life::

    sched = CosineAnnealingLR(opt, T_max=100)   # sets last_epoch = 0 and the first rates
    for epoch in range(100):
        train(...)                              # opt.step() ... with the current rates
        sched.step()                            # last_epoch += 1, new rates

``base_lrs`` are the groups' ``'initial_lr'``, which the first schedule built on an optimizer
records from ``'lr'`` (a second schedule keeps them). Resuming with ``last_epoch=k`` requires
them to be there already.

Two forms, as in PyTorch. ``get_lr()`` is the *chainable* form: it computes the new rate from
the rate currently in the group (``lr * gamma`` at a StepLR milestone, a ratio of cosines for
CosineAnnealingLR), so that several schedules can act on one optimizer, each multiplying in its
factor (``ChainedScheduler``). ``_closed_form_lr()`` computes the rate at ``last_epoch`` from
``base_lrs`` alone; ``SequentialLR`` uses it to restart a schedule at its milestone. The two
agree up to rounding when a schedule runs alone; we keep PyTorch's choice of which to use where,
so that sequences match PyTorch's to the last bits.

``state_dict()`` is every attribute but the optimizer (``load_state_dict`` sets them back).
Load the optimizer's state after building the schedule (the constructor writes the rates),
then the schedule's.
"""
import copy
import math
from bisect import bisect_right
from collections import Counter

from .optimizer import Optimizer


def _per_group(name, optimizer, value):
    """``value`` repeated for each group, or a list with one value per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} must have one value per parameter group: got {len(value)} "
                             f"values for {len(optimizer.param_groups)} groups")
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """Base class: subclasses write ``get_lr()`` (and ``_closed_form_lr()`` when it differs)."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a minires.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for index, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: resuming with last_epoch={last_epoch} needs "
                                   f"'initial_lr' in param_groups[{index}]; load the optimizer's "
                                   "state_dict first (a fresh run starts with last_epoch=-1)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        """The step the constructor takes (``last_epoch`` -1 -> 0 on a fresh run). Meanwhile
        ``_is_initial`` tells the chainable forms that there is no previous rate to scale."""
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self):
        """The rates for ``last_epoch`` (chainable form: may use the current ``group['lr']``).
        Called by ``step``; read the rates with ``get_last_lr()``."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_lr")

    def _closed_form_lr(self):
        """The rates at ``last_epoch`` from ``base_lrs`` alone (what ``get_lr`` is, for a
        schedule that does not override this)."""
        return self.get_lr()

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self):
        """Advance one epoch (or iteration) and write the new rates into the optimizer."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _restart(self):
        """Jump to ``last_epoch = 0`` with the closed-form rates (``SequentialLR`` at a milestone)."""
        self.last_epoch = 0
        self._set_lrs(self._closed_form_lr())

    def _set_lrs(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = self._current_lrs()

    def get_last_lr(self):
        """The rates the last step wrote, one per parameter group."""
        return self._last_lr

    def state_dict(self):
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (last_epoch // step_size)``: decay by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not (isinstance(step_size, int) and step_size > 0):
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= last_epoch)``; a milestone listed twice counts twice."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [lr * factor for lr in self._current_lrs()]

    def _closed_form_lr(self):
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear ramp of the factor from ``start_factor`` to ``end_factor`` over ``total_iters`` steps
    (a warm-up with the defaults), then constant::

        lr = base_lr * (start_factor + (end_factor - start_factor) * min(last_epoch, total_iters) / total_iters)

    The chainable form multiplies the current rate by the ratio of consecutive factors.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        slope = self.end_factor - self.start_factor
        previous_factor_times_total = self.total_iters * self.start_factor + (self.last_epoch - 1) * slope
        return [lr * (1.0 + slope / previous_factor_times_total) for lr in self._current_lrs()]

    def _closed_form_lr(self):
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** last_epoch``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` steps (SGDR without restarts)::

        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * last_epoch / T_max)) / 2

    Like PyTorch, ``step`` uses the recursive form: ``lr - eta_min`` is multiplied by the ratio
    of consecutive ``1 + cos`` terms, so another schedule may act on the same rates; at the
    bottom of each period (where that ratio would be 0/0) the rate climbs back by the first
    step's change. Past ``T_max`` the rate therefore rises again, along the cosine.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not T_max > 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:  # leaving a minimum
            climb = (1 - math.cos(math.pi / self.T_max)) / 2
            return [lr + (base_lr - self.eta_min) * climb
                    for lr, base_lr in zip(self._current_lrs(), self.base_lrs)]
        ratio = ((1 + math.cos(math.pi * self.last_epoch / self.T_max))
                 / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max)))
        return [ratio * (lr - self.eta_min) + self.eta_min for lr in self._current_lrs()]

    def _closed_form_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018), stepped once per batch, as ``torch``'s OneCycleLR.

    The rate rises from ``initial_lr = max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start * total_steps`` steps, then falls to ``min_lr = initial_lr / final_div_factor``
    at step ``total_steps - 1``; with ``three_phase`` it falls back to ``initial_lr`` over as many
    steps as it rose, and only then to ``min_lr``. Each phase interpolates with half a cosine
    (``anneal_strategy='cos'``) or linearly. ``total_steps`` or ``epochs * steps_per_epoch``.

    With ``cycle_momentum`` (default, as in PyTorch) the momentum moves the other way, between
    ``max_momentum`` and ``base_momentum``: it writes ``group['momentum']`` (SGD) or
    ``group['betas'][0]`` (Adam). This replaces the optimizer's momentum, also a momentum of 0.
    The groups also get ``'initial_lr'``, ``'max_lr'``, ``'min_lr'``, ``'max_momentum'`` and
    ``'base_momentum'``. Stepping beyond ``total_steps`` is an error.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"OneCycleLR: expected a minires.optim.Optimizer, got {type(optimizer).__name__}")
        self.total_steps = self._total_steps(total_steps, epochs, steps_per_epoch)
        if not (isinstance(pct_start, float) and 0 <= pct_start <= 1):
            raise ValueError(f"OneCycleLR: pct_start must be a float between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self._phases = self._make_phases(pct_start, three_phase)

        max_lrs = _per_group("OneCycleLR: max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for group, group_max_lr in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = group_max_lr / div_factor
                group["max_lr"] = group_max_lr
                group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with a momentum or "
                                 "betas (SGD, Adam); pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            max_momentums = _per_group("OneCycleLR: max_momentum", optimizer, max_momentum)
            base_momentums = _per_group("OneCycleLR: base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for group, top, bottom in zip(optimizer.param_groups, max_momentums, base_momentums):
                    self._set_momentum(group, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = bottom
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _total_steps(total_steps, epochs, steps_per_epoch):
        def check_positive_int(name, value):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"OneCycleLR: expected a positive integer {name}, got {value!r}")
        if total_steps is not None:
            check_positive_int("total_steps", total_steps)
            return total_steps
        if epochs is not None and steps_per_epoch is not None:
            check_positive_int("epochs", epochs)
            check_positive_int("steps_per_epoch", steps_per_epoch)
            return epochs * steps_per_epoch
        raise ValueError("OneCycleLR: give either total_steps or both epochs and steps_per_epoch")

    def _make_phases(self, pct_start, three_phase):
        """(last step of the phase, rate at its start, rate at its end, momentum at start, at end)."""
        rise_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            return [(rise_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                    (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                     "base_momentum", "max_momentum"),
                    (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        return [(rise_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _set_momentum(self, group, momentum):
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {step} times; the schedule has "
                             f"total_steps={self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            phase_start = 0.0
            for number, (phase_end, lr_from, lr_to, momentum_from, momentum_to) in enumerate(self._phases):
                if step <= phase_end or number == len(self._phases) - 1:
                    pct = (step - phase_start) / (phase_end - phase_start)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[momentum_from], group[momentum_to], pct))
                    break
                phase_start = phase_end
        return lrs


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after the other, switching at the ``milestones`` (epoch numbers).

    Warm-up then cosine::

        warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
        cosine = CosineAnnealingLR(opt, T_max=95)
        sched = SequentialLR(opt, [warmup, cosine], milestones=[5])

    At a milestone the next schedule restarts from its own ``last_epoch = 0`` (closed form),
    so each schedule counts its epochs from the moment it takes over.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_schedulers("SequentialLR", schedulers, optimizer)
        milestones = list(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                             f"{len(schedulers)} schedulers, got {len(milestones)}")
        self._schedulers = list(schedulers)
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # Building each schedule stepped it once; undo that and start the first one afresh.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._step_back(self)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def _step_back(self, scheduler):
        """``last_epoch -= 1`` for every schedule inside ``scheduler`` (nested ones too)."""
        if hasattr(scheduler, "_schedulers"):
            for inner in scheduler._schedulers:
                self._step_back(inner)
        else:
            scheduler.last_epoch -= 1

    def step(self):
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._restart()
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        return _nested_state_dict(self)

    def load_state_dict(self, state_dict):
        _load_nested_state_dict(self, state_dict)


class ChainedScheduler(LRScheduler):
    """Step several schedules together, each multiplying in its factor (chainable forms)::

        ChainedScheduler([LinearLR(opt, start_factor=0.1, total_iters=5), ExponentialLR(opt, gamma=0.95)])
    """

    def __init__(self, schedulers, optimizer=None):
        self.optimizer = _check_schedulers("ChainedScheduler", schedulers, optimizer)
        self._schedulers = list(schedulers)
        self._last_lr = self._current_lrs()

    def step(self):
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = self._current_lrs()

    def state_dict(self):
        return _nested_state_dict(self)

    def load_state_dict(self, state_dict):
        _load_nested_state_dict(self, state_dict)


def _check_schedulers(name, schedulers, optimizer=None):
    """Schedules on one optimizer (``optimizer``, else the first schedule's); returns it."""
    if len(schedulers) < 1:
        raise ValueError(f"{name}: expected at least one scheduler, got none")
    for index, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{name}: schedulers[{index}] is a {type(scheduler).__name__}, not a scheduler")
    optimizer = schedulers[0].optimizer if optimizer is None else optimizer
    for index, scheduler in enumerate(schedulers):
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"{name}: all schedulers must belong to the same optimizer, but "
                             f"schedulers[{index}] ({type(scheduler).__name__}) has another one")
    return optimizer


def _nested_state_dict(scheduler):
    state = {key: copy.deepcopy(value) for key, value in scheduler.__dict__.items()
             if key not in ("optimizer", "_schedulers")}
    state["_schedulers"] = [inner.state_dict() for inner in scheduler._schedulers]
    return state


def _load_nested_state_dict(scheduler, state_dict):
    state = {key: value for key, value in state_dict.items() if key != "_schedulers"}
    scheduler.__dict__.update(copy.deepcopy(state))
    for inner, inner_state in zip(scheduler._schedulers, state_dict["_schedulers"]):
        inner.load_state_dict(inner_state)
