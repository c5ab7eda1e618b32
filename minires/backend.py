"""Array back-ends: NumPy on the CPU, CuPy on a GPU.

Every op takes its array module from its input, ``xp = get_array_module(x)``, and
then writes ``xp.zeros``, ``xp.matmul`` ... so that the same code runs on both.
Nothing here moves data between host and device unless asked to: ``to_device`` and
``asnumpy`` are the only doors, and mixing devices in one op is an error.

Test hook: ``with substitute_cupy(module):`` puts a stand-in where CuPy stands, for the
block only (``minires.testing.fake_cupy``, whose arrays live on a fake GPU). Nothing in minires
calls it, so it is never active in normal use; inside the block every line below that CuPy
would run -- the device of an array, ``to_device``, ``asnumpy``, ``cupy_available``, seeding --
runs on the stand-in.
"""
import contextlib

import numpy as np

try:  # CuPy is optional (the "gpu" extra); importing it must never break NumPy users.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA driver/library error raised at import
    _cupy = None


@contextlib.contextmanager
def substitute_cupy(module):
    """Test hook: within the block, ``module`` plays CuPy (see the module docstring).

    ``module`` needs what minires asks of CuPy: ``ndarray`` (whose arrays have ``.device.id``),
    ``asarray``, ``asnumpy``, ``cuda.Device`` and ``cuda.runtime.getDeviceCount``, ``random.seed``,
    and the NumPy-like functions the ops call. ``None`` plays a machine without CuPy.
    """
    global _cupy
    previous, _cupy = _cupy, module
    try:
        yield module
    finally:
        _cupy = previous


def cupy_module():
    """The CuPy module (or the stand-in put in its place) when it sees a GPU, else ``None``."""
    return _cupy if cupy_available() else None


def get_array_module(*arrays):
    """NumPy or CuPy, taken from the arrays given.

    Raises ``ValueError`` when the arrays live on different devices (the host and a GPU, or two GPUs).
    """
    devices = {}  # device -> an array that lives there
    for a in arrays:
        if a is not None and not np.isscalar(a):
            devices.setdefault(device_of(a), a)
    if len(devices) > 1:
        names = sorted(f"{type(a).__module__}.{type(a).__name__} on {device}" for device, a in devices.items())
        raise ValueError(f"arrays from different devices cannot be mixed: got {', '.join(names)}; "
                         "move them with minires.backend.to_device first")
    return np if set(devices) <= {"cpu"} else _cupy


def device_of(x):
    """``"cpu"`` or ``"cuda:N"``: where the array lives."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return f"cuda:{x.device.id}"
    return "cpu"


def cupy_available():
    """True when CuPy is installed and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def asnumpy(x):
    """A NumPy array with the values of ``x`` (copies from the GPU when needed)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def parse_device(device):
    """``("cpu", None)``, ``("cuda", None)`` or ``("cuda", N)``; anything else is a ValueError."""
    device = str(device)
    kind, _, index = device.partition(":")
    if device in ("cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return kind, int(index) if index else None
    raise ValueError(f"to_device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _require_cupy(device):
    if not cupy_available():
        raise RuntimeError(f"to_device: device {device!r} asked for, but CuPy finds no CUDA device "
                           "(install the 'gpu' extra on a machine with a GPU)")


def on_device(device):
    """The context in which CuPy computes on ``device``; nothing to do for "cpu" and "cuda" (the current GPU).

    CuPy computes on the current GPU and refuses arrays of another one (or, with peer access, reads
    them slowly across the bus), so work on the arrays of "cuda:1" runs in ``with on_device("cuda:1"):``.
    minires' entry points that are given a device or move arrays to one (``Module.to``,
    ``load_state_dict``, the optimizers' ``load_state_dict``, ``train_one_epoch``, ``evaluate``)
    enter it themselves.
    """
    kind, index = parse_device(device)
    if kind == "cpu" or index is None:
        return contextlib.nullcontext()
    _require_cupy(device)
    return _cupy.cuda.Device(index)


def to_device(x, device):
    """Copy ``x`` to ``device`` ("cpu", "cuda", "cuda:N"); returns ``x`` when already there."""
    if parse_device(device)[0] == "cpu":
        return asnumpy(x)
    _require_cupy(device)
    with on_device(device):
        return _cupy.asarray(x)


def is_channels_last(x):
    """True for an (N, C, H, W) array whose memory is (N, H, W, C): the convolutions' layout.

    Elementwise operations on two operands of different layouts run several times slower (they
    walk one of them against its memory order), so layers give gradients the layout of their input.
    """
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous
