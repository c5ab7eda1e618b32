"""Pooling: max, average and adaptive average over windows of each channel.

Where the plain version is. The textbook route -- one padded copy of the input, each window
offset read as a strided slice of it -- is ``_read_taps`` / ``_add_into_taps`` below with
``with minires.nn.reference_kernels():``; exercise 4 (``minires/exercises/solutions/ex4_max_pool.py``)
writes max pooling that way. Outside that block the same taps read stride phases instead (the
speed trick below); the scan over taps, the divisors and the modules are shared.

Windows. A 2-D pooling of kernel (kh, kw), stride (sh, sw), padding (ph, pw) and dilation
(dh, dw) gives output pixel (o, q) the window of input positions

    (o*sh - ph + i*dh,  q*sw - pw + j*dw),        0 <= i < kh, 0 <= j < kw,

and the output size  H_out = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1  (likewise W_out). With
``ceil_mode`` the division rounds up, except that the last window must start inside the input or
its left padding (PyTorch's rule). Positions outside the input hold the neutral element of the
reduction: -inf for the max (so a negative input is never beaten by padding), 0 for the average.

Taps (the textbook route). One window offset (i, j) -- a *tap* -- read for every output pixel
at once is the strided slice ``x_pad[..., i*dh::sh, j*dw::sw]`` (``H_out`` rows of it) of the
input padded with the neutral element. A pooling is a loop over the kh*kw taps, each a handful
of elementwise operations on output-sized arrays; backward adds each tap's gradient into the
same strided slice of a padded gradient, whose interior is ``dx``. Overlapping windows (3x3
stride 2) make several taps write the same input positions: they simply add up, tap after tap
-- a loop over taps, never over pixels, never ``add.at``.

Taps over stride phases (the speed trick). Strided slices make NumPy's loops slow (no SIMD;
several times slower than contiguous ones). But position ``o*s + start`` is element
``o + start // s`` of the stride phase ``x[..., r::s]``, ``r = start mod s``: every tap reads a
plain *shifted* slice of one phase. So the input is copied once into its sh*sw
phases, each padded with the neutral element so that every tap reads a full output-sized slice
(one copy of the input in total; at stride 1 the single phase is a padded copy of x). Then each
tap reads a contiguous slice. Backward runs the same way in reverse: each tap adds its gradient
into the shifted slice of a padded per-phase buffer, and the buffers' interiors are interleaved
into ``dx`` at the end.

Max pooling. ``y = max`` over the window. PyTorch's CPU kernel scans a window in row-major tap
order and moves its argmax when ``value > max or isnan(value)``: ties keep the first maximum, a NaN
wins (the last NaN, then), and a window whose values are all -inf points at its first element
inside the input. We run that same scan over taps, for all windows at once, keeping the index of
the winning tap (``argmax``, one int8 per output). Backward: the max is a selection, so

    dx[position of the winning tap] += dy        (one element per window gets the gradient),

summed over the windows that share a position.

Average pooling. ``y = sum(window) / divisor`` with PyTorch's divisor: the window's size counted
up to the padded border (``count_include_pad=True``), or only its elements inside the input
(``False``), or ``divisor_override``. Backward: every window element gets ``dy / divisor``.

Adaptive average pooling to (H_out, W_out): output row i averages input rows
``floor(i*H/H_out) <= h < ceil((i+1)*H/H_out)`` (bins that may overlap), likewise columns. As an
averaging matrix ``P_H`` (H_out, H) and ``P_W`` (W_out, W): ``y = P_H x P_W^T`` and, the map
being linear, ``dx = P_H^T dy P_W`` (the textbook route). Fast paths: global pooling (1x1, what
ResNets use) is a mean, and when the sizes divide the bins are disjoint blocks (a reshape and a mean).

Shapes: (N, C, H, W) or (C, H, W) in; the leading axes are kept.

Memory. Max pooling keeps only ``argmax``: 1 byte per output element (1/16 of the input's bytes
for a 3x3/2 pool of float32; the input itself is not referenced). Forward and backward each need
one temporary, padded copy of the input's size (the phases, or the padded input). Average pooling
keeps only the divisor (a number or an (H_out, W_out) array); adaptive pooling keeps nothing but
shapes. Each cache is a small dataclass (``MaxPoolCache``, ``AvgPoolCache``,
``AdaptiveAvgPoolCache``). Speed against PyTorch: ``benchmarks/README.md``.
"""
import operator
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, is_channels_last
from .checks import check_float, check_pair, check_rank, check_same_shape, layer_name
from .module import Module
from .reference import uses_reference_kernels

_LAYOUT = "(N, C, H, W) or (C, H, W)"


# -- geometry ------------------------------------------------------------------------------------
def _output_length(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's ``pooling_output_shape`` along one axis."""
    span = dilation * (kernel - 1) + 1
    length = (size + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (length - 1) * stride >= size + padding:
        length -= 1  # the last window would start in the right padding: drop it
    return length


@dataclass(frozen=True)
class Axis:
    """One axis of a pooling: how its kernel offsets read the padded stride phases.

    Output ``o`` with offset ``i`` reads input position ``start_i + o*s`` (``start_i = i*d - p``),
    which is element ``o + start_i // s`` of phase ``start_i % s`` (the positions ``r, r+s, ...``).
    Each phase is padded with ``before`` neutral elements in front (and some behind), so that
    every offset reads a full-length slice of it.
    """
    taps: tuple           # (offset i, phase r, first element read in the padded phase), in order
    before: int
    padded_length: int
    phase_lengths: tuple  # unpadded length of each phase
    first_inside: tuple   # per output position: its first offset that lands inside the input


def _plan_axis(size, length, kernel, stride, padding, dilation):
    starts = [i * dilation - padding for i in range(kernel)]   # the position output 0 reads

    def inside(start, o):
        return 0 <= start + o * stride < size

    before = max(0, max(-(start // stride) for start in starts))
    phase_lengths = tuple(len(range(r, size, stride)) for r in range(stride))
    padded_length = before + max(max(phase_lengths), max(start // stride for start in starts) + length)
    taps = tuple((i, start % stride, before + start // stride) for i, start in enumerate(starts)
                 if any(inside(start, o) for o in range(length)))  # skip offsets that only read padding
    first_inside = tuple(next((i for i, start in enumerate(starts) if inside(start, o)), 0)
                         for o in range(length))
    return Axis(taps, before, padded_length, phase_lengths, first_inside)


@dataclass(frozen=True)
class Tap:
    """One kernel offset (i, j): an output-sized slice of the padded input, or of one stride phase."""
    index: int      # i*kw + j: the position in PyTorch's row-major window scan
    window: tuple   # (rows, cols) strided slices of the padded input (the textbook route)
    phase: tuple    # (r, c): it reads the phase x[..., r::sh, c::sw] (the fast route) ...
    source: tuple   # ... at these (rows, cols) slices of the padded phase, each of the output's length


@dataclass(frozen=True)
class PoolGeometry:
    """The shapes of one 2-D pooling, checked; built by ``_geometry``."""
    input_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    output_size: tuple
    rows: Axis
    cols: Axis

    @property
    def output_shape(self):
        return self.input_shape[:-2] + self.output_size

    @property
    def padded_shape(self):
        """The input padded in front and as far behind as the last window reaches (at least the padding)."""
        size = zip(self.input_shape[-2:], self.kernel, self.stride, self.padding, self.dilation, self.output_size)
        return self.input_shape[:-2] + tuple(max(n + 2 * p, (length - 1) * s + d * (k - 1) + 1)
                                             for n, k, s, p, d, length in size)

    def input_window(self):
        """The slices of the padded input that hold the input."""
        return tuple(slice(p, p + n) for p, n in zip(self.padding, self.input_shape[-2:]))

    @property
    def padded_phase_shape(self):
        return self.input_shape[:-2] + (self.rows.padded_length, self.cols.padded_length)

    def taps(self):
        """Every tap that lands inside the input somewhere, in row-major window order."""
        (H_out, W_out), kw = self.output_size, self.kernel[1]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return [Tap(i * kw + j, (_window_slice(i * dh, sh, H_out), _window_slice(j * dw, sw, W_out)),
                    (r, c), (slice(top, top + H_out), slice(left, left + W_out)))
                for i, r, top in self.rows.taps for j, c, left in self.cols.taps]

    def phases(self):
        return sorted({tap.phase for tap in self.taps()})

    def interior(self, phase):
        """The slices of a padded phase that hold the input's elements."""
        r, c = phase
        return (slice(self.rows.before, self.rows.before + self.rows.phase_lengths[r]),
                slice(self.cols.before, self.cols.before + self.cols.phase_lengths[c]))


def _geometry(layer, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Check the input and the hyper-parameters (PyTorch's rules) and build the geometry."""
    check_float(layer, x)
    check_rank(layer, x, (3, 4), _LAYOUT)
    kernel = check_pair(layer, kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else check_pair(layer, stride, "stride", 1)
    padding = check_pair(layer, padding, "padding", 0)
    dilation = check_pair(layer, dilation, "dilation", 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{layer_name(layer)}: padding should be at most half of the kernel size, "
                         f"got padding={padding} for kernel_size={kernel}")
    size = tuple(x.shape[-2:])
    per_axis = list(zip(size, kernel, stride, padding, dilation))
    output_size = tuple(_output_length(*args, ceil_mode) for args in per_axis)
    if min(output_size) < 1:
        raise ValueError(f"{layer_name(layer)}: kernel {kernel} (dilation {dilation}) is larger than the "
                         f"padded input: input of shape {tuple(x.shape)} padded by {padding} gives "
                         f"output size {output_size}")
    rows, cols = (_plan_axis(n, length, *args) for (n, *args), length in zip(per_axis, output_size))
    return PoolGeometry(tuple(x.shape), kernel, stride, padding, dilation, output_size, rows, cols)


def _window_slice(start, step, count):
    """``count`` positions ``start, start + step, ...`` (ends at the last one: never out of range)."""
    return slice(start, start + step * (count - 1) + 1, step)


def _at(array, slices):
    return array[(Ellipsis, *slices)]


def _read_taps(x, geometry, fill):
    """``[(tap, view)]``: each tap's output-sized view of ``x`` padded with ``fill`` (the neutral
    element: -inf for max, 0 for a sum). Textbook route: strided slices of one padded copy; fast
    route: contiguous slices of the padded stride phases."""
    if uses_reference_kernels():
        padded = get_array_module(x).full(geometry.padded_shape, fill, dtype=x.dtype)
        _at(padded, geometry.input_window())[...] = x
        return [(tap, _at(padded, tap.window)) for tap in geometry.taps()]
    phases = _padded_phases(x, geometry, fill)
    return [(tap, _at(phases[tap.phase], tap.source)) for tap in geometry.taps()]


def _add_into_taps(gradient_of_tap, geometry, dtype, xp):
    """``dx``: each tap adds ``gradient_of_tap(tap)`` (output-sized) where it read; overlapping
    windows add up. The reverse of ``_read_taps``, on the same route."""
    if uses_reference_kernels():
        padded = xp.zeros(geometry.padded_shape, dtype=dtype)
        for tap in geometry.taps():
            window = _at(padded, tap.window)
            window += gradient_of_tap(tap)
        return _at(padded, geometry.input_window())
    gradients = {phase: xp.zeros(geometry.padded_phase_shape, dtype=dtype) for phase in geometry.phases()}
    for tap in geometry.taps():
        _at(gradients[tap.phase], tap.source)[...] += gradient_of_tap(tap)
    return _merge_phases(gradients, geometry, dtype, xp)


def _padded_phases(x, geometry, fill):
    """``{(r, c): x[..., r::sh, c::sw]}`` for the phases the taps read, each copied into a buffer
    padded with ``fill`` (the neutral element: -inf for max, 0 for a sum)."""
    xp = get_array_module(x)
    sh, sw = geometry.stride
    phases = {}
    for phase in geometry.phases():
        padded = xp.full(geometry.padded_phase_shape, fill, dtype=x.dtype)
        _at(padded, geometry.interior(phase))[...] = x[..., phase[0]::sh, phase[1]::sw]
        phases[phase] = padded
    return phases


def _merge_phases(phases, geometry, dtype, xp):
    """The inverse for gradients: the interiors of the padded phase buffers, interleaved into ``dx``."""
    sh, sw = geometry.stride
    every_phase_read = len(phases) == sh * sw
    dx = (xp.empty if every_phase_read else xp.zeros)(geometry.input_shape, dtype=dtype)
    for (r, c), gradient in phases.items():
        dx[..., r::sh, c::sw] = _at(gradient, geometry.interior((r, c)))
    return dx


# -- max pooling ---------------------------------------------------------------------------------
@dataclass
class MaxPoolCache:
    """What ``max_pool2d_backward`` needs: for each output element the index ``i*kw + j`` of the
    window element that won (int8, or int32 for windows of over 127 elements), and the shapes."""
    argmax: object
    geometry: PoolGeometry


def _max_pool(x, geometry):
    xp = get_array_module(x)
    out_shape = geometry.output_shape
    y = xp.full(out_shape, -np.inf, dtype=x.dtype)
    index_dtype = np.dtype(np.int8 if geometry.kernel[0] * geometry.kernel[1] <= 127 else np.int32)
    first_rows, first_cols = (xp.asarray(axis.first_inside) for axis in (geometry.rows, geometry.cols))
    argmax = xp.empty(out_shape, dtype=index_dtype)
    argmax[...] = first_rows[:, None] * geometry.kernel[1] + first_cols  # if no value beats -inf
    wins, is_nan = xp.empty(out_shape, dtype=bool), xp.empty(out_shape, dtype=bool)
    candidate = xp.empty(out_shape, dtype=index_dtype)
    for tap, value in _read_taps(x, geometry, -np.inf):
        xp.greater(value, y, out=wins)              # strictly: a tie keeps the earlier tap
        xp.not_equal(value, value, out=is_nan)
        wins |= is_nan                              # a NaN always takes over
        # The argmax is the last tap that took over. Taps come in increasing index order, so it
        # is a running maximum of index * wins (much faster than a masked copy).
        xp.multiply(wins, index_dtype.type(tap.index), out=candidate)
        xp.maximum(argmax, candidate, out=argmax)
        xp.maximum(y, value, out=y)                 # NaN propagates, as in PyTorch
    return y, MaxPoolCache(argmax, geometry)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling of ``x`` (N, C, H, W) or (C, H, W); ``stride=None`` means ``kernel_size``.

    Returns ``(y, cache)``, a ``MaxPoolCache``.
    """
    geometry = _geometry("max_pool2d_forward", x, kernel_size, stride, padding, dilation, ceil_mode)
    return _max_pool(x, geometry)


def max_pool2d_backward(dy, cache):
    """``dx``: each window's ``dy`` goes to its argmax; overlapping windows add up."""
    argmax, geometry = cache.argmax, cache.geometry
    check_same_shape("max_pool2d_backward", dy, geometry.output_shape, "upstream gradient")
    xp = get_array_module(dy, argmax)
    won, routed = xp.empty(dy.shape, dtype=bool), xp.empty_like(dy)

    def routed_to(tap):  # dy where this tap won, else 0
        xp.equal(argmax, tap.index, out=won)
        return xp.multiply(won, dy, out=routed)

    return _add_into_taps(routed_to, geometry, dy.dtype, xp)


# -- average pooling -----------------------------------------------------------------------------
def _window_counts(size, length, kernel, stride, padding, count_include_pad):
    """PyTorch's divisor along one axis: window sizes, clipped at the padded border (or the input)."""
    counts = []
    for o in range(length):
        start = o * stride - padding
        end = min(start + kernel, size + padding)   # a ceil_mode window may reach past the padding
        if not count_include_pad:
            start, end = max(start, 0), min(end, size)
        counts.append(end - start)
    return counts


def _divisor(geometry, count_include_pad, divisor_override, dtype, xp):
    """A number when every window divides alike, else an (H_out, W_out) array."""
    if divisor_override is not None:
        return divisor_override
    rows, cols = (_window_counts(geometry.input_shape[axis - 2], geometry.output_size[axis],
                                 geometry.kernel[axis], geometry.stride[axis], geometry.padding[axis],
                                 count_include_pad) for axis in (0, 1))
    if len(set(rows)) == 1 and len(set(cols)) == 1:
        return rows[0] * cols[0]
    return xp.asarray(rows, dtype=dtype)[:, None] * xp.asarray(cols, dtype=dtype)[None, :]


def _avg_geometry(layer, x, kernel_size, stride, padding, ceil_mode, divisor_override):
    if divisor_override is not None and (isinstance(divisor_override, bool) or
                                         not isinstance(divisor_override, (int, np.integer)) or
                                         divisor_override == 0):
        raise ValueError(f"{layer_name(layer)}: divisor_override must be a non-zero integer or None, "
                         f"got {divisor_override!r}")
    return _geometry(layer, x, kernel_size, stride, padding, 1, ceil_mode)


@dataclass
class AvgPoolCache:
    """What ``avg_pool2d_backward`` needs: the divisor (a number or an (H_out, W_out) array), the shapes."""
    divisor: object
    geometry: PoolGeometry


def _avg_pool(x, geometry, count_include_pad, divisor_override):
    xp = get_array_module(x)
    y = xp.zeros(geometry.output_shape, dtype=x.dtype)
    for _, value in _read_taps(x, geometry, 0):
        y += value
    divisor = _divisor(geometry, count_include_pad, divisor_override, x.dtype, xp)
    y /= divisor
    return y, AvgPoolCache(divisor, geometry)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """Average pooling of ``x`` (N, C, H, W) or (C, H, W), with ``torch.nn.AvgPool2d``'s options.

    Returns ``(y, cache)``, an ``AvgPoolCache``.
    """
    geometry = _avg_geometry("avg_pool2d_forward", x, kernel_size, stride, padding, ceil_mode,
                             divisor_override)
    return _avg_pool(x, geometry, count_include_pad, divisor_override)


def avg_pool2d_backward(dy, cache):
    """``dx``: every element of a window gets ``dy / divisor``; overlapping windows add up."""
    geometry = cache.geometry
    check_same_shape("avg_pool2d_backward", dy, geometry.output_shape, "upstream gradient")
    xp = get_array_module(dy)
    share = dy / cache.divisor
    return _add_into_taps(lambda tap: share, geometry, dy.dtype, xp)


# -- adaptive average pooling ----------------------------------------------------------------------
def _adaptive_size(layer, output_size, input_size):
    """``output_size`` (an int, or a pair whose ``None`` entries keep the input's size) as a pair."""
    pair = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    try:
        pair = tuple(size if wanted is None else operator.index(wanted)
                     for wanted, size in zip(pair, input_size, strict=True))
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{layer_name(layer)}: output_size must be a positive int or a pair of positive "
                         f"ints (or None), got {output_size!r}")
    return pair


def _bin_matrix(size, length, dtype, xp):
    """``P`` (length, size): row i averages PyTorch's bin floor(i*size/length) .. ceil((i+1)*size/length)."""
    i, j = xp.arange(length)[:, None], xp.arange(size)[None, :]
    start, end = (i * size) // length, -((-(i + 1) * size) // length)
    return (((j >= start) & (j < end)) / (end - start)).astype(dtype)


@dataclass
class AdaptiveAvgPoolCache:
    """What ``adaptive_avg_pool2d_backward`` needs: shapes, and whether the input was channels-last."""
    input_shape: tuple
    output_size: tuple      # (H_out, W_out)
    channels_last: bool


def _adaptive_avg_pool(x, output_size):
    xp = get_array_module(x)
    (H, W), (H_out, W_out) = x.shape[-2:], output_size
    if not uses_reference_kernels() and (H_out, W_out) == (1, 1):
        y = x.mean(axis=(-2, -1), keepdims=True)
    elif not uses_reference_kernels() and H % H_out == 0 and W % W_out == 0:
        blocks = x.reshape(*x.shape[:-2], H_out, H // H_out, W_out, W // W_out)
        y = blocks.mean(axis=(-3, -1))
    else:
        rows, cols = _bin_matrices((H, W), (H_out, W_out), x.dtype, xp)
        y = xp.matmul(xp.matmul(rows, x), cols.T)
    return y, AdaptiveAvgPoolCache(tuple(x.shape), (H_out, W_out), is_channels_last(x))


def _bin_matrices(size, output_size, dtype, xp):
    """``P_H`` (H_out, H) and ``P_W`` (W_out, W), the averaging matrices of the bins."""
    return tuple(_bin_matrix(n, length, dtype, xp) for n, length in zip(size, output_size))


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling of ``x`` (N, C, H, W) or (C, H, W) to ``output_size``.

    Returns ``(y, cache)``, an ``AdaptiveAvgPoolCache``.
    """
    check_float("adaptive_avg_pool2d_forward", x)
    check_rank("adaptive_avg_pool2d_forward", x, (3, 4), _LAYOUT)
    return _adaptive_avg_pool(x, _adaptive_size("adaptive_avg_pool2d_forward", output_size, x.shape[-2:]))


def _empty_blocks(input_shape, blocks, channels_last, dtype, xp):
    """An empty ``input_shape[:-2] + blocks`` array, channels last in memory when the input was:
    its gradient then has the layout of the rest of the network (see ``is_channels_last``)."""
    if not channels_last:
        return xp.empty(input_shape[:-2] + blocks, dtype=dtype)
    N, C, _, _ = input_shape
    return xp.empty((N, *blocks, C), dtype=dtype).transpose(0, 5, 1, 2, 3, 4)


def adaptive_avg_pool2d_backward(dy, cache):
    """``dx = P_H^T dy P_W``: each input element gets the share of every bin it lies in."""
    input_shape, (H_out, W_out) = cache.input_shape, cache.output_size
    check_same_shape("adaptive_avg_pool2d_backward", dy, input_shape[:-2] + (H_out, W_out),
                     "upstream gradient")
    xp = get_array_module(dy)
    H, W = input_shape[-2:]
    if not uses_reference_kernels() and H % H_out == 0 and W % W_out == 0:
        # disjoint blocks (1x1 included): spread dy evenly
        kh, kw = H // H_out, W // W_out
        dx = _empty_blocks(input_shape, (H_out, kh, W_out, kw), cache.channels_last, dy.dtype, xp)
        dx[...] = (dy / (kh * kw))[..., :, None, :, None]
        return dx.reshape(input_shape)
    rows, cols = _bin_matrices((H, W), (H_out, W_out), dy.dtype, xp)
    return xp.matmul(xp.matmul(rows.T, dy), cols)


# -- modules -------------------------------------------------------------------------------------
class MaxPool2d(Module):
    """Max over each window; padding acts as -inf. See the module docstring for ties and NaN."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode
        for what, value, minimum in (("kernel_size", kernel_size, 1), ("stride", self.stride, 1),
                                     ("padding", padding, 0), ("dilation", dilation, 1)):
            check_pair(self, value, what, minimum)

    def forward(self, x):
        geometry = _geometry(self, x, self.kernel_size, self.stride, self.padding, self.dilation,
                             self.ceil_mode)
        y, cache = _max_pool(x, geometry)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return max_pool2d_backward(grad_output, self._saved_for_backward())

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over each window, with ``torch.nn.AvgPool2d``'s divisor rules."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override
        for what, value, minimum in (("kernel_size", kernel_size, 1), ("stride", self.stride, 1),
                                     ("padding", padding, 0)):
            check_pair(self, value, what, minimum)

    def forward(self, x):
        geometry = _avg_geometry(self, x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                 self.divisor_override)
        y, cache = _avg_pool(x, geometry, self.count_include_pad, self.divisor_override)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return avg_pool2d_backward(grad_output, self._saved_for_backward())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average over PyTorch's adaptive bins, to a fixed ``output_size`` (``(1, 1)``: global pooling)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        _adaptive_size(self, output_size, (1, 1))  # validates the type early

    def forward(self, x):
        check_float(self, x)
        check_rank(self, x, (3, 4), _LAYOUT)
        y, cache = _adaptive_avg_pool(x, _adaptive_size(self, self.output_size, x.shape[-2:]))
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return adaptive_avg_pool2d_backward(grad_output, self._saved_for_backward())

    def extra_repr(self):
        return f"output_size={self.output_size}"
