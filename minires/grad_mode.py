"""``no_grad``: inference mode, in which forward passes keep nothing for backward.

Keeping the cache costs memory (a ResNet keeps every activation it will need);
under ``with minires.no_grad():`` modules drop it, and calling ``backward`` is an error.
The switch is per thread, like PyTorch's.
"""
import functools
import threading

_state = threading.local()


def is_grad_enabled():
    """True unless inside ``no_grad()``."""
    return getattr(_state, "enabled", True)


class set_grad_enabled:
    """Context manager (and decorator) that turns saving for backward on or off."""

    def __init__(self, mode):
        self.mode = bool(mode)

    def __enter__(self):
        self.previous = is_grad_enabled()
        _state.enabled = self.mode

    def __exit__(self, *exc):
        _state.enabled = self.previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(set_grad_enabled):
    """``with no_grad(): y = model(x)`` -- forward keeps no cache; backward raises."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turn saving back on inside a ``no_grad`` block."""

    def __init__(self):
        super().__init__(True)
