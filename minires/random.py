"""The random generator used for weight initialisation and dropout masks.

``minires.manual_seed(0)`` makes model construction and training repeatable, like
``torch.manual_seed``. Random numbers are drawn on the host with NumPy's PCG64 generator
(initialisation happens once, so its cost does not matter); dropout draws on the device of
its input (see ``nn/dropout.py``).
"""
import numpy as np

from .backend import cupy_module

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the global generator (and CuPy's, which draw dropout masks on the GPUs); returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    cupy = cupy_module()
    if cupy is not None:
        for device in range(cupy.cuda.runtime.getDeviceCount()):
            with cupy.cuda.Device(device):  # cupy.random.seed reseeds the current device's generator only
                cupy.random.seed(seed)
    return _generator


def default_generator():
    """The global ``numpy.random.Generator`` (replaced by ``manual_seed``)."""
    return _generator


def get_state():
    """The generator's state (a dict), for checkpoints."""
    return _generator.bit_generator.state


def set_state(state):
    """Restore a state returned by ``get_state``."""
    _generator.bit_generator.state = state
