"""minires: a plain-NumPy/CuPy deep-learning layer library with hand-written backward passes."""
from . import backend, data, gradcheck, io, models, nn, optim
from .summary import summary
from .random import manual_seed
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__version__ = "0.1.0"
