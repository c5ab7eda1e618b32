"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay (PyTorch's rule)."""
from .optimizer import Optimizer, _check_nonnegative


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as ``torch.optim.SGD``.

    For a parameter ``θ`` with gradient ``∇θ``, learning rate ``γ``, momentum ``μ``, dampening
    ``τ`` and weight decay ``λ``, each step computes::

        g = ∇θ + λ θ                      (-∇θ + λ θ with maximize=True)
        b = g                             on the first step (the buffer is NOT dampened)
        b = μ b + (1 - τ) g               on later steps           (only when μ != 0)
        d = g + μ b   (nesterov)   or   d = b   (momentum)   or   d = g   (μ = 0)
        θ = θ - γ d

    The buffer ``b`` is ``state[p]['momentum_buffer']``. Note that this is PyTorch's form of
    momentum (``γ`` multiplies the buffer rather than entering it), which differs from
    Sutskever et al. when ``γ`` changes during training. ``p.grad`` is left unchanged.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        _check_nonnegative(self._name, group, "momentum", "momentum")
        _check_nonnegative(self._name, group, "weight_decay", "weight decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{self._name}: Nesterov momentum requires a momentum and zero dampening, "
                             f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, p, grad, group, state):
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening, weight_decay = float(group["dampening"]), float(group["weight_decay"])

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * p.data  # a new array: p.grad is left as it was
        direction = grad
        if momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += grad if dampening == 0 else (1 - dampening) * grad
            direction = grad + momentum * buffer if group["nesterov"] else buffer
        p.data -= lr * direction
