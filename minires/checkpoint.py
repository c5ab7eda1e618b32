"""Checkpoint files that cannot carry code: the arrays in an ``.npz``, everything else in JSON.

A pickle may name any function and have it called while it is read, so a doctored pickled
checkpoint handed to ``--resume`` or ``--eval-only`` would run its payload. This format cannot:

    checkpoint.npz                        a zip of .npy files, as numpy.savez writes them
      model/conv1.weight                  each array under its path in the saved state
      optimizer/state/0/momentum_buffer
      ...
      checkpoint.json                     the rest: a JSON document, its UTF-8 bytes as a uint8 array

``numpy.load(..., allow_pickle=False)`` reads it (refusing object arrays, the one kind of .npy
that holds a pickle) and ``json.loads`` makes nothing but dicts, lists, strings, numbers,
booleans and None. In the document an array is ``{"$array": "model/conv1.weight"}``, and each
value JSON lacks is a one-key object, so that a state comes back exactly as it was saved:

    a NumPy scalar, np.float64(0.5)       {"$scalar": "history/0/lr"}  (a 0-d array in the .npz)
    a tuple, (0.9, 0.999)                 {"$tuple": [0.9, 0.999]}
    a dict with other keys, {0: {...}}    {"$items": [[0, {...}]]}  (also a str key starting with $)
    a Counter, Counter({5: 1})            {"$counter": [[5, 1]]}  (MultiStepLR's milestones)

Floats keep every bit (JSON writes the shortest repr that reads back the same float, NaN and
infinities as NaN and Infinity) and ints any size (the 128-bit state of the random generator).

One file, written atomically (``minires.io.atomic_write``: a temporary file, fsync, rename): a
kill leaves the previous checkpoint or the new one. The arrays and the JSON in two files would
need two renames, and a kill between them would pair one epoch's weights with another's state.

Format 1, the ``checkpoint.pkl`` of older minires, was a pickle. ``load_state`` still reads it,
with an unpickler that admits only what such a file holds (NumPy arrays, dtypes and scalars,
Counters and the built-in containers): any other global is refused before anything runs.
"""
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from .backend import asnumpy
from .io import NUMPY_GLOBALS, RestrictedUnpickler, atomic_write

DOCUMENT = "checkpoint.json"
_FORMAT_1_GLOBALS = NUMPY_GLOBALS | {("collections", "Counter"), ("collections", "OrderedDict")}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, doctored, or not a checkpoint of this run."""


# -- writing -------------------------------------------------------------------------------------
def save_state(path, state):
    """Write ``state`` (nested dicts, lists and tuples of arrays, numbers, strings) to ``path`` atomically.

    Arrays on a GPU are copied to the host. A value of any other kind is a ``TypeError`` naming
    where it is, and nothing is written.
    """
    arrays = {}
    document = _encode(state, (), arrays)
    arrays[DOCUMENT] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _encode(value, where, arrays):
    """``value`` as JSON values; its arrays go into ``arrays`` under their path ``where``."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return {"$scalar": _store(value, where, arrays)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a NumPy or CuPy array
        return {"$array": _store(value, where, arrays)}
    if isinstance(value, list):
        return [_encode(item, where + (index,), arrays) for index, item in enumerate(value)]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(item, where + (index,), arrays) for index, item in enumerate(value)]}
    if isinstance(value, Counter):
        return {"$counter": [[_encode(key, where, arrays), count] for key, count in value.items()]}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: _encode(item, where + (key,), arrays) for key, item in value.items()}
        return {"$items": [[_encode(key, where, arrays), _encode(item, where + (key,), arrays)]
                           for key, item in value.items()]}
    raise TypeError(f"a checkpoint cannot hold a value of type {type(value).__name__} at {_name(where)}")


def _store(value, where, arrays):
    array = asnumpy(value)
    name = _name(where)
    if array.dtype.hasobject:
        raise TypeError(f"a checkpoint cannot hold an array of Python objects at {name}")
    if name in arrays or name == DOCUMENT:
        raise ValueError(f"two arrays of the checkpoint would be stored as {name}")
    arrays[name] = array
    return name


def _name(where):
    return "/".join(str(part) for part in where) or "(top)"


# -- reading -------------------------------------------------------------------------------------
class _Unreadable(Exception):
    """Why a file is not a checkpoint, found by this module's own checks."""


def unreadable(path, problem):
    """The ``CheckpointError`` for a file that cannot be a checkpoint because of ``problem``."""
    return CheckpointError(f"{path} cannot be read as a checkpoint: {problem}. Nothing in it was run. "
                           "Use an intact copy, or delete it to start the run afresh.")


def load_state(path):
    """The state saved by ``save_state``, or the dict of a format-1 pickle.

    A file that cannot be read (empty, cut short, not a checkpoint, or naming a function to call)
    is a ``CheckpointError`` naming it; nothing in it is run.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            head = f.read(2)
            f.seek(0)
            if head == b"PK":  # a zip: the .npz
                return _decode_npz(f)
            if head[:1] == b"\x80":  # a pickle, protocol 2 or later
                return _unpickle_format_1(f)
            raise _Unreadable("the file is empty" if not head else
                              "it is neither an .npz (zip) nor a pickle of an older minires")
        except _Unreadable as error:
            raise unreadable(path, error) from None
        except Exception as error:  # whatever a damaged or doctored file makes the readers raise
            raise unreadable(path, f"{type(error).__name__}: {error}") from error


def _decode_npz(file):
    with np.load(file, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if DOCUMENT not in arrays:
        raise _Unreadable(f"it holds no {DOCUMENT}")
    return _decode(json.loads(arrays.pop(DOCUMENT).tobytes().decode()), arrays)


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    tags = [key for key in value if key.startswith("$")]
    if not tags:
        return {key: _decode(item, arrays) for key, item in value.items()}
    if len(value) != 1 or tags[0] not in _TAGS:
        raise _Unreadable(f"unknown entry {', '.join(tags)} in {DOCUMENT}")
    return _TAGS[tags[0]](value[tags[0]], arrays)


def _array(name, arrays):
    if name not in arrays:
        raise _Unreadable(f"{DOCUMENT} names no array {name} of the archive")
    return arrays[name]


_TAGS = {
    "$array": _array,
    "$scalar": lambda name, arrays: _array(name, arrays)[()],
    "$tuple": lambda items, arrays: tuple(_decode(items, arrays)),
    "$items": lambda pairs, arrays: {_decode(key, arrays): _decode(item, arrays) for key, item in pairs},
    "$counter": lambda pairs, arrays: Counter({_decode(key, arrays): count for key, count in pairs}),
}


def _unpickle_format_1(file):
    state = RestrictedUnpickler(file, _FORMAT_1_GLOBALS, "a checkpoint").load()
    if not isinstance(state, dict):
        raise _Unreadable(f"expected a dict, got {type(state).__name__}")
    return state
