"""Scratch buffers: reused per slot and thread, and never aliased by what a layer returns or keeps."""
import threading

import numpy as np

from minires import nn
from minires.nn.scratch import release, scratch, scratch_bytes


def test_a_slot_is_reused_and_grows_when_asked_for_more():
    release()
    like = np.zeros(1, dtype=np.float32)
    a = scratch(like, (4, 5), np.float32, "a")
    b = scratch(like, (2, 3), np.float32, "a")
    assert np.shares_memory(a, b) and b.shape == (2, 3) and b.dtype == np.float32
    assert not np.shares_memory(a, scratch(like, (4, 5), np.float32, "other slot"))
    assert not np.shares_memory(a, scratch(like, (4, 5), np.float64, "a"))  # one buffer per dtype
    bigger = scratch(like, (10, 10), np.float32, "a")
    assert bigger.shape == (10, 10) and not np.shares_memory(a, bigger)
    assert scratch_bytes() == 100 * 4 + 20 * 4 + 20 * 8
    release()
    assert scratch_bytes() == 0


def test_each_thread_has_its_own_buffers():
    release()
    like = np.zeros(1)
    mine = scratch(like, (8,), np.float64, "a")
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(scratch(like, (8,), np.float64, "a")))
    thread.start()
    thread.join()
    assert not np.shares_memory(mine, theirs[0])
    release()


def test_convolutions_sharing_scratch_keep_their_own_outputs_and_gradients():
    """Forward two convolutions of each kind (im2col and shifted GEMM), then backward in reverse
    order: each must equal a run on its own (no output or cache may point into a scratch buffer)."""
    rng = np.random.default_rng(0)
    for channels, stride in ((64, 1), (64, 2), (16, 1)):
        convs = [nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False) for _ in range(2)]
        xs = [rng.standard_normal((2, channels, 8, 8)).astype(np.float32) for _ in range(2)]
        alone = []
        for conv, x in zip(convs, xs):
            y = conv(x)
            alone.append((y.copy(), conv.backward(np.ones_like(y)).copy()))
        ys = [conv(x) for conv, x in zip(convs, xs)]
        dxs = [conv.backward(np.ones_like(y)) for conv, y in zip(convs[::-1], ys[::-1])][::-1]
        for (y_alone, dx_alone), y, dx in zip(alone, ys, dxs):
            np.testing.assert_array_equal(y, y_alone)
            np.testing.assert_array_equal(dx, dx_alone)
    assert scratch_bytes() > 0
