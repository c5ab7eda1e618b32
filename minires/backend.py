"""Array back-ends: NumPy on the CPU, CuPy on a GPU.

Every op takes its array module from its input, ``xp = get_array_module(x)``, and
then writes ``xp.zeros``, ``xp.matmul`` ... so that the same code runs on both.
Nothing here moves data between host and device unless asked to: ``to_device`` and
``asnumpy`` are the only doors, and mixing devices in one op is an error.

Other array libraries with a NumPy-compatible module can be plugged in with
``register_array_module`` (the test-suite uses it for a strict CuPy stand-in).
"""
import numpy as np

try:  # CuPy is optional (the "gpu" extra); importing it must never break NumPy users.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA driver/library error raised at import
    _cupy = None

_registered = []  # (array type, array module, device name) for extra back-ends


def register_array_module(array_type, module, device="cpu"):
    """Make ``get_array_module`` return ``module`` for arrays of ``array_type``."""
    _registered.append((array_type, module, device))


def _lookup(x):
    for array_type, module, device in _registered:
        if isinstance(x, array_type):
            return module, device
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy, f"cuda:{x.device.id}"
    return None, None


def get_array_module(*arrays):
    """NumPy or CuPy (or a registered module), taken from the arrays given.

    Raises ``ValueError`` when the arrays live on different devices.
    """
    modules = {_lookup(a)[0] or np for a in arrays if a is not None and not np.isscalar(a)}
    if len(modules) > 1:
        names = sorted(f"{type(a).__module__}.{type(a).__name__}" for a in arrays if a is not None)
        raise ValueError(f"arrays from different devices cannot be mixed: got {', '.join(names)}; "
                         "move them with minires.backend.to_device first")
    return modules.pop() if modules else np


def device_of(x):
    """``"cpu"`` or ``"cuda:N"``: where the array lives."""
    return _lookup(x)[1] or "cpu"


def cupy_available():
    """True when CuPy is installed and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def asnumpy(x):
    """A NumPy array with the values of ``x`` (copies from the GPU when needed).

    A device array is copied with its ``get()``, CuPy's explicit device-to-host transfer (which
    a registered back-end's arrays must offer too).
    """
    if _lookup(x)[0] is not None:
        return x.get()
    return np.asarray(x)


def parse_device(device):
    """``("cpu", None)``, ``("cuda", None)`` or ``("cuda", N)``; anything else is a ValueError."""
    device = str(device)
    kind, _, index = device.partition(":")
    if device in ("cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return kind, int(index) if index else None
    raise ValueError(f"to_device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def to_device(x, device):
    """Copy ``x`` to ``device`` ("cpu", "cuda", "cuda:N"); returns ``x`` when already there."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return asnumpy(x)
    if not cupy_available():
        raise RuntimeError(f"to_device: device {device!r} asked for, but CuPy finds no CUDA device "
                           "(install the 'gpu' extra on a machine with a GPU)")
    if index is None:
        return _cupy.asarray(x)
    with _cupy.cuda.Device(index):
        return _cupy.asarray(x)


def is_channels_last(x):
    """True for an (N, C, H, W) array whose memory is (N, H, W, C): the convolutions' layout.

    Elementwise operations on two operands of different layouts run several times slower (they
    walk one of them against its memory order), so layers give gradients the layout of their input.
    """
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous
