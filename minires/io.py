"""Saving and loading weights: ``.npz`` files (no torch needed) and PyTorch checkpoints.

Every write is atomic: the data goes to a temporary file in the same folder, is flushed to
disk, and only then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
A crash in the middle leaves the previous good file untouched (and the temporary file, which
``remove_orphans`` clears away when the next run starts).

Pickles written by others (CIFAR-10's batch files, the checkpoints of older minires) are read
with ``RestrictedUnpickler``: unpickling can call any function the file names, so only the
few a file of arrays needs are admitted.
"""
import contextlib
import os
import pickle
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .backend import asnumpy


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: ...`` -- ``path`` appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes it 0600; a file gets umask's mode
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def remove_orphans(folder, suffix=".tmp"):
    """Delete the temporary files (``.NAME.XXXXXXXX.tmp``) that killed atomic writes left in ``folder``.

    Call it only when no other process writes in ``folder``: their writes in progress look the same.
    """
    for orphan in Path(folder).glob(f".*.*{suffix}"):
        if orphan.is_file():
            orphan.unlink()


def _current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _state_of(model_or_state):
    return model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state


def save_npz(model_or_state, path):
    """Write a model's ``state_dict`` (or a dict of arrays) to ``path`` as an ``.npz`` file."""
    arrays = {name: asnumpy(value) for name, value in _state_of(model_or_state).items()}
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_npz(path):
    """The ``OrderedDict`` name -> NumPy array saved by ``save_npz``."""
    with np.load(path, allow_pickle=False) as archive:
        return OrderedDict((name, archive[name]) for name in archive.files)


# How NumPy pickles arrays, dtypes and scalars: the globals a file of arrays needs. NumPy 2
# renamed numpy.core to numpy._core, and a file names the module of the NumPy that wrote it.
NUMPY_GLOBALS = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype")}
    | {(f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")}
    | {(f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only with the globals in ``allowed`` (``(module, name)`` pairs).

    Any other global (``os.system``, ``builtins.eval`` ...) raises ``pickle.UnpicklingError``
    before anything runs; ``what`` names the kind of file in that message ("a CIFAR file").
    """

    def __init__(self, file, allowed, what, **options):
        super().__init__(file, **options)
        self.allowed, self.what = allowed, what

    def find_class(self, module, name):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in {self.what}")
        return super().find_class(module, name)


def torch_state_dict_to_numpy(state_dict):
    """A PyTorch ``state_dict`` (tensors) as an ``OrderedDict`` of NumPy arrays."""
    return OrderedDict((name, value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value))
                       for name, value in state_dict.items())


def load_torch_checkpoint(model, checkpoint, strict=True):
    """Load a PyTorch ``.pth`` file or ``state_dict`` into a minires ``model`` (needs torch for a file).

    Checkpoints that wrap the weights (``{"state_dict": ...}`` or ``{"model": ...}``) are unwrapped,
    and the ``module.`` prefix of ``DataParallel`` checkpoints is stripped. A wrong architecture
    gives ``StateDictError`` listing the missing, unexpected and mismatched keys.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        import torch  # only needed to read PyTorch's file format
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    state = torch_state_dict_to_numpy(checkpoint)
    if state and all(name.startswith("module.") for name in state):
        state = OrderedDict((name[len("module."):], value) for name, value in state.items())
    return model.load_state_dict(state, strict=strict)
