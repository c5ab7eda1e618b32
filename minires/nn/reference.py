"""The plain routes, one switch away: ``with minires.nn.reference_kernels(): ...``.

Some ops have fast routes beside their textbook one: the convolution's Winograd F(2x2, 3x3)
(``conv_winograd.py``), shifted GEMM (``conv_shifted.py``) and flipped-kernel stride-1 backward
(``conv_flipped.py``), the pooling's stride phases, batch norm's blocked channel sums, ReLU's
bit-mask backward, scratch buffers.
Inside the block every op takes its textbook route instead:

- convolution: forward = im2col + one GEMM; backward = dW from ``cols``, ``dcols = dY @ W_mat``
  in one GEMM, then col2im (``conv.py``: exercise 6's method);
- pooling: one padded copy of the input, each window offset a strided slice of it (``pool.py``);
  adaptive pooling always as the two averaging matrices;
- batch norm: plain float64 reductions and broadcasts over the channel axis (``norm.py``);
- ReLU: ``where(y <= 0, 0, dy)``.

The results are the same to float64 rounding (the tests check a whole ResNet both ways), so a
student can step through the textbook backward of a real network and compare it with the fast one.

The switch is a ``contextvars.ContextVar``: it holds for the thread (or asyncio task) that
entered the block, and other threads keep their own setting. Blocks nest; leaving one restores
the setting before it.
"""
import contextlib
import contextvars

_reference = contextvars.ContextVar("minires_reference_kernels", default=False)


@contextlib.contextmanager
def reference_kernels(enabled=True):
    """Run every op inside the block on its textbook route (``enabled=False``: the fast routes)."""
    token = _reference.set(bool(enabled))
    try:
        yield
    finally:
        _reference.reset(token)


def uses_reference_kernels():
    """True inside a ``reference_kernels()`` block (of this thread)."""
    return _reference.get()
