"""Scratch buffers: the big temporaries of one layer call, reused from call to call.

Why. A convolution's im2col matrix is large (302 MB in float32 for a 3x3 convolution of 64
channels on 128 images of 32x32) and lives only during the call. Allocated fresh each time, it
costs a page fault for every 4 KB page on its first write: the allocator hands blocks that big
back to the operating system when they are freed, so filling a fresh 300 MB buffer is much
slower than filling a reused one (measured: benchmarks/README.md). A scratch buffer is allocated
once, at the largest size asked for, and then reused: after the first training step no step pays
those page faults.

The rule that makes it safe: a scratch array is valid until the next request for the same
``slot`` on the same thread, so nothing returned by a layer or kept in its cache may point into
one. Each thread has its own buffers. ``release()`` frees them (e.g. after training).
"""
import math
import threading

import numpy as np

from ..backend import device_of, get_array_module

_buffers = threading.local()


def scratch(like, shape, dtype, slot):
    """An uninitialised ``shape`` array of ``dtype`` on ``like``'s device, from buffer ``slot``."""
    xp = get_array_module(like)
    by_key = _buffers.__dict__.setdefault("by_key", {})
    key = (slot, xp.__name__, device_of(like), np.dtype(dtype).name)
    size = math.prod(shape)
    if key not in by_key or by_key[key].size < size:
        by_key.pop(key, None)  # free the smaller buffer before allocating the larger one
        by_key[key] = xp.empty(size, dtype=dtype)
    return by_key[key][:size].reshape(shape)


def release():
    """Free the calling thread's scratch buffers (they are allocated again when needed)."""
    _buffers.__dict__.pop("by_key", None)


def scratch_bytes():
    """Bytes held by the calling thread's scratch buffers."""
    return sum(buffer.nbytes for buffer in _buffers.__dict__.get("by_key", {}).values())
