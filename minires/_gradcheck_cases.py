"""The layers and blocks that ``python -m minires.gradcheck`` checks, on small awkward shapes."""
import numpy as np

from . import nn
from .gradcheck import check_module


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def all_cases():
    """A list of zero-argument callables, each returning a ``gradcheck.Report``."""
    return [
        lambda: check_module(nn.ReLU(), _x(2, 3, 5, 4)),
    ]
