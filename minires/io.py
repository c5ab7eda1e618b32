"""Saving and loading weights: ``.npz`` files (no torch needed) and PyTorch checkpoints.

Every write is atomic: the data goes to a temporary file in the same folder, is flushed to
disk, and only then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
A crash in the middle leaves the previous good file untouched.
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


def save_pickle(obj, path):
    """Pickle ``obj`` atomically (training checkpoints: nested dicts of arrays and numbers)."""
    with atomic_write(path) as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


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
