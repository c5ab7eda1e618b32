"""Helpers for comparing minires with PyTorch (the reference) in the tests."""
import numpy as np
import torch

from minires import testing
from minires.backend import asnumpy

torch.set_num_threads(2)


def to_torch(array, requires_grad=False):
    """A CPU torch tensor with the values (and dtype) of a NumPy/CuPy array."""
    t = torch.from_numpy(np.ascontiguousarray(asnumpy(array)).copy())
    return t.requires_grad_(requires_grad)


def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what="value"):
    """``actual`` (minires array) equals ``expected`` (torch tensor or array) within tolerances."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    testing.assert_close(actual, expected, rtol=rtol, atol=atol, what=what)


def copy_module_weights(minires_module, torch_module):
    """Load a minires module's state into a torch module with the same state_dict keys."""
    state = {k: torch.from_numpy(np.array(asnumpy(v))) for k, v in minires_module.state_dict().items()}
    torch_module.load_state_dict(state, strict=True)
