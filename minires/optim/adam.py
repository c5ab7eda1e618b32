"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's update rules."""
from ..backend import get_array_module
from .optimizer import Optimizer, _check_nonnegative


class Adam(Optimizer):
    """Adam, exactly as ``torch.optim.Adam`` (its single-tensor implementation).

    For a parameter ``θ`` with gradient ``∇θ``, learning rate ``γ``, ``betas = (β1, β2)``,
    ``eps = ε`` and weight decay ``λ``, step ``t = 1, 2, ...`` computes::

        g = ∇θ                             (-∇θ with maximize=True)
        g = g + λ θ                        L2 penalty, Adam          } when λ != 0
        θ = θ (1 - γ λ)                    decoupled decay, AdamW    }
        m = m + (1 - β1) (g - m)           first moment  (= β1 m + (1 - β1) g, PyTorch's lerp)
        v = β2 v + (1 - β2) g²             second moment
        v_max = max(v_max, v)              amsgrad only; then v_max replaces v below
        θ = θ - γ / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + ε)

    ``m``, ``v`` (and ``v_max``) start at zero; the factors ``1 - β^t`` undo that start's pull
    towards zero (bias correction). Note that ``ε`` is added after the correction of ``v``.
    ``state[p]`` holds ``'step'`` (``t``, an int), ``'exp_avg'`` (``m``), ``'exp_avg_sq'``
    (``v``) and, with amsgrad, ``'max_exp_avg_sq'``. ``p.grad`` is left unchanged.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        _check_nonnegative(self._name, group, "eps", "epsilon")
        _check_nonnegative(self._name, group, "weight_decay", "weight decay")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"{self._name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{self._name}: invalid beta parameter at index {index}: {beta!r}, "
                                 "expected 0 <= beta < 1")

    def _update(self, p, grad, group, state):
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        xp = get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * p.data  # a new array: p.grad is left as it was
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]

        step_size = lr / (1 - beta1 ** step)
        update = xp.sqrt(exp_avg_sq)  # the one temporary: becomes the denominator, then the update
        update /= (1 - beta2 ** step) ** 0.5
        update += eps
        xp.divide(exp_avg, update, out=update)
        update *= step_size
        p.data -= update


class AdamW(Adam):
    """Adam with decoupled weight decay, exactly as ``torch.optim.AdamW``: ``θ = θ (1 - γ λ)``
    before the Adam step, instead of adding ``λ θ`` to the gradient (see ``Adam`` for the rule).
    The decay then does not pass through the moment estimates, so every weight shrinks at the
    same rate whatever its gradient history. Default ``weight_decay=1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
