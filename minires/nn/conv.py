"""2-D convolution as a matrix product: im2col, one GEMM, col2im (the textbook route); ``Conv2d``.

Where the plain version is. This file holds the textbook route -- im2col + one GEMM forward,
dW and dcols by two GEMMs and col2im backward -- which every convolution takes inside
``with minires.nn.reference_kernels():``; it is the method of exercise 6, whose solution is
``minires/exercises/solutions/ex6_conv2d.py``. Three faster routes, each in its own module with its
derivation, take over where they apply (``_conv2d_forward`` and ``conv2d_backward`` choose):
``conv_winograd.py``, Winograd's F(2x2, 3x3) (3x3, stride 1, one group, many channels, CPU: 16
GEMMs with 2.25x fewer multiply-adds), ``conv_shifted.py``, the shifted GEMM (stride 1, one group,
few channels, CPU: no im2col copy), and ``conv_flipped.py``, the stride-1 backward as one
convolution of dy with the flipped kernel.

Forward. For an input ``x`` of shape (N, C, H, W), zero-padded, a weight ``W`` of shape
(C_out, C/G, kh, kw) and ``G`` groups (output channel ``o`` belongs to group ``g`` and sees
only that group's C/G input channels):

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, g*C/G + c, h*s + i*d, w*s + j*d]

with ``s`` the stride and ``d`` the dilation (each a (height, width) pair) and the output size

    H_out = floor((H + pad_top + pad_bottom - d*(kh - 1) - 1) / s) + 1      (likewise W_out).

As a GEMM. im2col copies every receptive field into one row of a matrix, so that the triple sum
over (c, i, j) becomes one matrix product per group:

    cols[g, (n, h, w), (i, j, c)] = x_pad[n, g*C/G + c, h*s + i*d, w*s + j*d]
    W_mat[g, o, (i, j, c)]        = W[g*C_out/G + o, c, i, j]
    Y[g] = cols[g] @ W_mat[g]^T + b              shape (N*H_out*W_out, C_out/G): a row per pixel

(Exercise 6 orders the columns (c, i, j), to match ``w.reshape(C_out, -1)``; here they are
(i, j, c), so that on channels-last memory a window is kh*kw runs of C contiguous numbers.)

Backward. Y = cols W_matᵀ is linear in each factor, so with dY = dL/dY (a row per pixel):

    dW_mat = dYᵀ @ cols          (the textbook dW = dY·colsᵀ, with pixels as rows here)
    dcols  = dY @ W_mat          (the textbook Wᵀ·dY)
    dx     = col2im(dcols)       each window entry adds its gradient to the pixel it was copied
                                 from (col2im is the adjoint of im2col: a pixel seen by k windows
                                 gets k terms; a pixel seen by none, e.g. the last row when
                                 (H + 2p - kh) % s != 0, gets 0)
    db[o]  = sum_{n, h, w} dy[n, o, h, w]

Layout, chosen for speed while the API stays NCHW. Inside, images are channels-last (NHWC): a
receptive field is then kh*kw runs of C contiguous numbers, so the im2col copy moves long runs,
and the GEMM result (pixels x channels) already *is* the NHWC output. ``y`` is returned as an
(N, C_out, H_out, W_out) view of that memory; elementwise layers keep the layout, and the next
convolution gets its NHWC view for free. ``dx`` likewise is an NCHW view of an NHWC buffer.
``groups`` is the leading batch axis of every ``matmul`` (no Python loop over groups).

Cost. im2col is one strided view (``as_strided``) and one copy. col2im loops over the kh*kw
kernel offsets, each adding a strided slice into the padded gradient (no ``add.at``, no loop over
pixels); outside ``reference_kernels`` the backward computes dcols one kernel offset at a time (a
batched matmul), so that each offset's slice is contiguous. The three GEMMs (forward, dW, dcols)
do 2*N*H_out*W_out*C_out*(C/G)*kh*kw flops each and are most of the time.

Memory. The cache keeps the input ``x`` (a reference: the layer before usually keeps it anyway)
and the small weight matrix, not ``cols``, which is kh*kw/(s_h*s_w) times the size of the input
(9x for a 3x3 stride-1 convolution: 302 MB in float32 for a batch of 128 with 64 channels at
32x32). Backward makes one such copy next to its two GEMMs (``cols`` again, which dcols then
overwrites: ``cols`` is not needed once dW is known). ``cols`` and the padded input live in
scratch buffers reused from call to call (``minires.nn.scratch``): a fresh 300 MB buffer pays a
page fault per 4 KB page. A cache serves one backward pass, as in PyTorch.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..backend import device_of, get_array_module
from . import init
from .checks import (check_array, check_dim, check_float, check_matching, check_pair, check_rank,
                     check_same_shape, layer_name)
from .module import Module, Parameter
from .reference import uses_reference_kernels
from .scratch import scratch


# -- geometry: sizes of the kernel, the padding and the output ------------------------------------
def _padding_pairs(layer, padding, kernel, stride, dilation):
    """``((top, bottom), (left, right))`` from an int, a pair, ``"valid"`` or ``"same"``.

    ``"same"`` pads ``d*(k - 1)`` in total, the odd one at the end, as PyTorch does.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{layer_name(layer)}: invalid padding string {padding!r}, "
                             "should be one of {'valid', 'same'}")
        if stride != (1, 1):
            raise ValueError(f"{layer_name(layer)}: padding='same' is not supported for strided "
                             f"convolutions (stride={stride})")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in check_pair(layer, padding, "padding", 0))


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about the shapes of one convolution; built and checked by ``_conv_geometry``."""
    input_shape: tuple      # (N, C, H, W)
    kernel: tuple           # (kh, kw)
    stride: tuple           # (s_h, s_w)
    padding: tuple          # ((top, bottom), (left, right))
    dilation: tuple         # (d_h, d_w)
    groups: int

    @property
    def padded_size(self):
        _, _, H, W = self.input_shape
        (top, bottom), (left, right) = self.padding
        return H + top + bottom, W + left + right

    @property
    def dilated_kernel(self):
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def output_size(self):
        return tuple((p - k) // s + 1 for p, k, s in zip(self.padded_size, self.dilated_kernel, self.stride))

    @property
    def cols_shape(self):
        """``(G, N*H_out*W_out, kh*kw*C/G)``: one row per output pixel and group."""
        N, C, _, _ = self.input_shape
        H_out, W_out = self.output_size
        return self.groups, N * H_out * W_out, self.kernel[0] * self.kernel[1] * C // self.groups


def _check_groups(layer, groups):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{layer_name(layer)}: groups must be a positive integer, got {groups!r}")
    return int(groups)


def _conv_geometry(layer, input_shape, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Validate the hyper-parameters against an (N, C, H, W) input shape."""
    kernel = check_pair(layer, kernel_size, "kernel_size", 1)
    stride = check_pair(layer, stride, "stride", 1)
    dilation = check_pair(layer, dilation, "dilation", 1)
    padding = _padding_pairs(layer, padding, kernel, stride, dilation)
    groups = _check_groups(layer, groups)
    if input_shape[1] % groups:
        raise ValueError(f"{layer_name(layer)}: the input's {input_shape[1]} channels are not divisible "
                         f"by groups={groups}")
    geometry = ConvGeometry(tuple(input_shape), kernel, stride, padding, dilation, groups)
    if any(k > p for k, p in zip(geometry.dilated_kernel, geometry.padded_size)):
        raise ValueError(f"{layer_name(layer)}: kernel size {geometry.dilated_kernel} (after dilation) is "
                         f"larger than the padded input {geometry.padded_size} (input shape "
                         f"{tuple(input_shape)}, padding {padding})")
    return geometry


def _window_slice(start, step, count):
    """``count`` positions ``start, start + step, ...`` (ends at the last one: never out of range)."""
    return slice(start, start + step * (count - 1) + 1, step)


# -- im2col and col2im ---------------------------------------------------------------------------
def _padded_nhwc(x, geometry):
    """``x`` zero-padded, channels last: (N, H_pad, W_pad, C) (a view when there is no padding).

    The padded copy is a scratch buffer (see ``scratch``): valid until the next convolution call.
    """
    x_nhwc = x.transpose(0, 2, 3, 1)
    (top, bottom), (left, right) = geometry.padding
    if top == bottom == left == right == 0:
        return x_nhwc
    N, C, H, W = x.shape
    H_pad, W_pad = geometry.padded_size
    padded = scratch(x, (N, H_pad, W_pad, C), x.dtype, "padded input")
    padded[:, :top] = padded[:, top + H:] = 0                       # the border rows ...
    padded[:, top:top + H, :left] = padded[:, top:top + H, left + W:] = 0  # ... and columns
    padded[:, top:top + H, left:left + W, :] = x_nhwc
    return padded


def _windows_of_padded(padded, geometry):
    """windows[n, h, w, i, j, g, c] = padded[n, h*s_h + i*d_h, w*s_w + j*d_w, g*C/G + c]: a view."""
    xp = get_array_module(padded)
    N, C, _, _ = geometry.input_shape
    G = geometry.groups
    (s_h, s_w), (d_h, d_w) = geometry.stride, geometry.dilation
    stride_n, stride_h, stride_w, stride_c = padded.strides
    return xp.lib.stride_tricks.as_strided(
        padded, shape=(N, *geometry.output_size, *geometry.kernel, G, C // G),
        strides=(stride_n, s_h * stride_h, s_w * stride_w, d_h * stride_h, d_w * stride_w,
                 C // G * stride_c, stride_c))


def _windows_of_cols(cols, geometry):
    """``cols`` (G, N*H_out*W_out, kh*kw*C/G) as windows[n, h, w, i, j, g, c] (a view)."""
    N, C, _, _ = geometry.input_shape
    (kh, kw), G = geometry.kernel, geometry.groups
    return cols.reshape(G, N, *geometry.output_size, kh, kw, C // G).transpose(1, 2, 3, 4, 5, 0, 6)


def _im2col(x, geometry, cols):
    """The one copy: the windows of padded ``x`` into the matrix ``cols``."""
    _windows_of_cols(cols, geometry)[...] = _windows_of_padded(_padded_nhwc(x, geometry), geometry)
    return cols


def _im2col_scratch(x, geometry):
    """``cols`` in a scratch buffer (see ``scratch``): the convolution's own, valid during one call."""
    return _im2col(x, geometry, scratch(x, geometry.cols_shape, x.dtype, "cols"))


def _add_windows(windows, geometry):
    """col2im proper: ``dx_pad[n, h*s + i*d, w*s + j*d, g, c] += windows[n, h, w, i, j, g, c]``.

    One strided-slice add per kernel offset (i, j); ``windows`` may have any memory layout, but
    the adds are fastest when each offset's slice is contiguous (see ``_col2im_input_gradient``).
    Returns an (N, C, H, W) view of the channels-last gradient buffer.
    """
    xp = get_array_module(windows)
    N, C, H, W = geometry.input_shape
    H_out, W_out = geometry.output_size
    (kh, kw), (s_h, s_w), (d_h, d_w) = geometry.kernel, geometry.stride, geometry.dilation
    (top, _), (left, _) = geometry.padding
    padded = xp.zeros((N, *geometry.padded_size, C), dtype=windows.dtype)
    padded_groups = padded.reshape(N, *geometry.padded_size, geometry.groups, C // geometry.groups)
    for i in range(kh):
        rows = _window_slice(i * d_h, s_h, H_out)
        for j in range(kw):
            padded_groups[:, rows, _window_slice(j * d_w, s_w, W_out)] += windows[:, :, :, i, j]
    return padded[:, top:top + H, left:left + W, :].transpose(0, 3, 1, 2)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """The receptive fields of ``x`` (N, C, H, W) as rows: ``cols`` of shape
    ``(groups, N*H_out*W_out, kh*kw*C/groups)``.

    ``cols[g, (n*H_out + h)*W_out + w, (i*kw + j)*C/groups + c]
    = x_pad[n, g*C/groups + c, h*s_h + i*d_h, w*s_w + j*d_w]``.
    """
    check_float("im2col", x)
    check_rank("im2col", x, 4, "(N, C, H, W)")
    geometry = _conv_geometry("im2col", x.shape, kernel_size, stride, padding, dilation, groups)
    return _im2col(x, geometry, get_array_module(x).empty(geometry.cols_shape, dtype=x.dtype))


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """The adjoint of ``im2col``: add every row entry back to the pixel it came from.

    ``cols`` is shaped like ``im2col``'s result for an input of ``input_shape`` (N, C, H, W);
    returns an array of ``input_shape`` (an NCHW view of channels-last memory).
    """
    check_float("col2im", cols, "cols")
    geometry = _conv_geometry("col2im", tuple(input_shape), kernel_size, stride, padding, dilation, groups)
    check_same_shape("col2im", cols, geometry.cols_shape, "cols")
    return _add_windows(_windows_of_cols(cols, geometry), geometry)


# -- the textbook route: y = cols @ W_matᵀ + b; dW_mat = dYᵀ @ cols; dx = col2im(dY @ W_mat) ----
@dataclass
class ConvCache:
    """What ``conv2d_backward`` needs: the input, the weight matrix, the shapes.

    Not ``cols``: backward makes one im2col copy (of x again; of dy on the flipped route), cheap
    next to its two GEMMs, which spares the 9x the input that keeping ``cols`` would cost. The input
    itself is usually kept anyway, by the layer before (a ReLU keeps its output). A cache serves
    one backward pass, as in PyTorch.
    """
    x: object               # (N, C, H, W); None once used
    weight_matrix: object   # (G, C_out/G, kh*kw*C/G)
    geometry: ConvGeometry
    has_bias: bool


def _weight_matrix(w, groups):
    """(C_out, C/G, kh, kw) -> (G, C_out/G, kh*kw*C/G), the row order of ``cols``."""
    C_out, C_group, kh, kw = w.shape
    by_group = w.reshape(groups, C_out // groups, C_group, kh, kw).transpose(0, 1, 3, 4, 2)
    return by_group.reshape(groups, C_out // groups, kh * kw * C_group)


def _weight_from_matrix(matrix, weight_shape):
    """The inverse of ``_weight_matrix``, as a fresh contiguous array."""
    C_out, C_group, kh, kw = weight_shape
    xp = get_array_module(matrix)
    groups = matrix.shape[0]
    by_group = matrix.reshape(groups, C_out // groups, kh, kw, C_group).transpose(0, 1, 4, 2, 3)
    return xp.ascontiguousarray(by_group.reshape(weight_shape))


def _check_operands(layer, x, w, b, groups):
    check_float(layer, x)
    check_rank(layer, x, 4, "(N, C, H, W)")
    check_float(layer, w, "weight")
    check_rank(layer, w, 4, "(C_out, C_in/groups, kh, kw)", "weight")
    groups = _check_groups(layer, groups)
    check_dim(layer, x, 1, w.shape[1] * groups, "channels")
    if w.shape[0] % groups:
        raise ValueError(f"{layer_name(layer)}: the weight's {w.shape[0]} output channels are not "
                         f"divisible by groups={groups}")
    if b is not None:
        check_array(layer, b, "bias")
        check_same_shape(layer, b, (w.shape[0],), "bias")
    check_matching(layer, x, w, b)


def _im2col_conv(x, weight_matrix, b, geometry):
    """``y = im2col(x) @ W_matᵀ + b`` as an (N, C_out, H_out, W_out) view of channels-last memory."""
    return _cols_product(_im2col_scratch(x, geometry), weight_matrix, b, geometry)


def _cols_product(cols, weight_matrix, b, geometry):
    """``cols @ W_matᵀ + b``, a row per output pixel, as an (N, C_out, H_out, W_out) view."""
    xp = get_array_module(cols, weight_matrix, b)
    N, _, _, _ = geometry.input_shape
    G, C_out_group, _ = weight_matrix.shape
    H_out, W_out = geometry.output_size
    out = xp.matmul(cols, weight_matrix.transpose(0, 2, 1))           # (G, N*H_out*W_out, C_out/G)
    if b is not None:
        out += b.reshape(G, 1, C_out_group)
    y_nhwc = out.transpose(1, 0, 2).reshape(N, H_out, W_out, G * C_out_group)  # a copy only when G > 1
    return y_nhwc.transpose(0, 3, 1, 2)


def _channels_last_output(valid, b):
    """One copy of ``valid`` (N, H, W, C), any layout, into a fresh contiguous channels-last array,
    adding the bias ``b`` (or None) on the way; returned as its (N, C, H, W) view."""
    xp = get_array_module(valid, b)
    y_nhwc = xp.empty(valid.shape, dtype=valid.dtype)
    if b is None:
        y_nhwc[...] = valid
    else:
        xp.add(valid, b, out=y_nhwc)
    return y_nhwc.transpose(0, 3, 1, 2)


def _weight_gradient(cols, dout, geometry):
    """``dW_mat = dYᵀ @ cols``, as a (C_out, C/G, kh, kw) weight gradient."""
    xp = get_array_module(cols, dout)
    N, C, _, _ = geometry.input_shape
    G, _, C_out_group = dout.shape
    # computed as (colsᵀ @ dY)ᵀ: OpenBLAS runs this orientation of the long (N*H_out*W_out)
    # contraction steadily on busy cores (see benchmarks/README.md)
    dw_matrix = xp.matmul(cols.transpose(0, 2, 1), dout).transpose(0, 2, 1)  # (G, C_out/G, kh*kw*C/G)
    return _weight_from_matrix(dw_matrix, (G * C_out_group, C // G, *geometry.kernel))


def _textbook_input_gradient(dout, weight_matrix, geometry, cols):
    """``dx = col2im(dY @ W_mat)`` as written; ``dcols`` is written over ``cols`` (no longer needed)."""
    dcols = get_array_module(dout, weight_matrix).matmul(dout, weight_matrix, out=cols)
    return _add_windows(_windows_of_cols(dcols, geometry), geometry)


def _check_upstream(dy, geometry, C_out, dtype):
    check_array("conv2d_backward", dy, "upstream gradient")
    N, _, _, _ = geometry.input_shape
    check_same_shape("conv2d_backward", dy, (N, C_out, *geometry.output_size), "upstream gradient")
    if dy.dtype != dtype:
        raise TypeError(f"conv2d_backward: upstream gradient of dtype {dy.dtype} does not match the "
                        f"forward's dtype {dtype}")


def _take_input(cache):
    """The cached input, once: a cache serves one backward pass, as in PyTorch."""
    x, cache.x = cache.x, None
    if x is None:
        raise RuntimeError("conv2d_backward: this cache was already used by a backward pass; "
                           "run conv2d_forward again")
    return x


# -- the routes' dispatcher ------------------------------------------------------------------------
from . import conv_flipped, conv_shifted, conv_winograd  # noqa: E402  (they build on the textbook pieces above)


def _conv2d_forward(layer, x, w, b, stride, padding, dilation, groups):
    """Check, then take a route: Winograd or the shifted GEMM where they apply (never under
    ``reference_kernels``, nor for an empty batch), else the textbook im2col + GEMM."""
    _check_operands(layer, x, w, b, groups)
    geometry = _conv_geometry(layer, x.shape, w.shape[2:], stride, padding, dilation, groups)
    if x.shape[0] and not uses_reference_kernels():
        if conv_winograd.uses_winograd(device_of(x), geometry, w.shape[0]):
            return conv_winograd.winograd_conv_forward(x, w, b, geometry)
        if conv_shifted.uses_shifted_gemm(device_of(x), geometry, w.shape[0]):
            return conv_shifted.shifted_conv_forward(x, w, b, geometry)
    weight_matrix = _weight_matrix(w, groups)
    y = _im2col_conv(x, weight_matrix, b, geometry)
    return y, ConvCache(x, weight_matrix, geometry, b is not None)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """``y = conv2d(x, w) + b`` with PyTorch's semantics; returns ``(y, cache)``.

    x: (N, C, H, W); w: (C_out, C/groups, kh, kw); b: (C_out,) or None. ``stride``, ``padding``
    and ``dilation`` are ints or (height, width) pairs; ``padding`` may also be ``"valid"`` or
    ``"same"`` (stride 1 only). y: (N, C_out, H_out, W_out), same dtype as x.
    """
    return _conv2d_forward("conv2d_forward", x, w, b, stride, padding, dilation, groups)


def conv2d_backward(dy, cache):
    """``(dx, dw, db)`` from ``dy = dL/dy``; ``db`` is None when the forward had no bias.

    Uses up ``cache`` (a cache serves one backward pass, as in PyTorch). The forward's route
    decides (its cache's type): a shifted-GEMM forward has a shifted-GEMM backward, a Winograd
    forward a Winograd backward.
    """
    if isinstance(cache, conv_winograd.WinogradConvCache):
        _check_upstream(dy, cache.geometry, cache.weights.shape[1], cache.weights.dtype)
        return conv_winograd.winograd_conv_backward(dy, cache)
    if isinstance(cache, conv_shifted.ShiftedConvCache):
        _check_upstream(dy, cache.geometry, cache.weight_by_offset.shape[2], cache.weight_by_offset.dtype)
        return conv_shifted.shifted_conv_backward(dy, cache)
    G, C_out_group, _ = cache.weight_matrix.shape
    _check_upstream(dy, cache.geometry, G * C_out_group, cache.weight_matrix.dtype)
    return _im2col_conv_backward(dy, cache)


def _im2col_conv_backward(dy, cache):
    """The im2col route's backward: at stride 1 both gradients from the flipped route (not under
    ``reference_kernels``), else dW from ``cols`` and dx by col2im."""
    geometry, weight_matrix = cache.geometry, cache.weight_matrix
    x = _take_input(cache)
    reference = uses_reference_kernels()
    flipped = None if reference else conv_flipped.flipped_geometry(geometry, dy.shape)
    if flipped is not None:
        dx, dw = conv_flipped.stride_one_gradients(x, dy, weight_matrix, geometry, flipped)
    else:
        G, C_out_group, _ = weight_matrix.shape
        # a row per output pixel, as in forward (a free view when dy is channels-last in memory)
        dout = dy.transpose(0, 2, 3, 1).reshape(geometry.cols_shape[1], G, C_out_group).transpose(1, 0, 2)
        cols = _im2col_scratch(x, geometry)   # again: cheaper than keeping 9x the input
        dw = _weight_gradient(cols, dout, geometry)
        input_gradient = _textbook_input_gradient if reference else _col2im_input_gradient
        dx = input_gradient(dout, weight_matrix, geometry, cols)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw, db


def _col2im_input_gradient(dout, weight_matrix, geometry, cols):
    """``_textbook_input_gradient``, faster: dcols one kernel offset at a time, so that col2im adds
    long contiguous runs, not C/G-long pieces; written over ``cols`` too."""
    xp = get_array_module(dout, weight_matrix)
    N, C, _, _ = geometry.input_shape
    (kh, kw), (G, C_out_group, _) = geometry.kernel, weight_matrix.shape
    pixels = cols.shape[1]
    weight_by_offset = weight_matrix.reshape(G, C_out_group, kh * kw, C // G).transpose(0, 2, 1, 3)
    dcols = xp.matmul(dout[:, None], weight_by_offset, out=cols.reshape(G, kh * kw, pixels, C // G))
    windows = dcols.reshape(G, kh, kw, N, *geometry.output_size, C // G).transpose(3, 4, 5, 1, 2, 0, 6)
    return _add_windows(windows, geometry)


class Conv2d(Module):
    """2-D convolution over an (N, C_in, H, W) input, PyTorch's ``nn.Conv2d`` (zero padding).

    ``weight``: (out_channels, in_channels/groups, kh, kw); ``bias``: (out_channels,) or None.
    Initialised like PyTorch: ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. uniform in
    ``±1/sqrt(fan_in)``, and the bias uniform in ``±1/sqrt(fan_in)``, ``fan_in = in/groups*kh*kw``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__()
        groups = _check_groups("Conv2d", groups)
        for what, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                raise ValueError(f"Conv2d: {what} ({channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = check_pair("Conv2d", kernel_size, "kernel_size", 1)
        self.stride = check_pair("Conv2d", stride, "stride", 1)
        self.dilation = check_pair("Conv2d", dilation, "dilation", 1)
        _padding_pairs("Conv2d", padding, self.kernel_size, self.stride, self.dilation)  # validates
        self.padding = padding if isinstance(padding, str) else check_pair("Conv2d", padding, "padding", 0)
        weight_shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(weight_shape, dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fans(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        y, cache = _conv2d_forward(self, x, self.weight.data, bias, self.stride, self.padding,
                                   self.dilation, self.groups)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        dx, dw, db = conv2d_backward(grad_output, self._saved_for_backward())
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
