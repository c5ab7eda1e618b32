"""The shifted-GEMM route of a convolution: stride 1, one group, few channels; no im2col copy.

The plain route is in ``conv.py`` (im2col + one GEMM; ``with minires.nn.reference_kernels():``
takes it everywhere); it is also exercise 6's solution, ``minires/exercises/solutions/ex6_conv2d.py``.
``conv.py``'s dispatcher sends a convolution here when ``uses_shifted_gemm`` says so.

View the padded channels-last input as a matrix X of rows (N*H_pad*W_pad, C), a row per pixel
of the padded grid. At stride 1 the input row of kernel offset (i, j) for the output at grid row
r is r + s_ij with s_ij = i*d_h*W_pad + j*d_w, so with W_ij = W[:, :, i, j]ᵀ (C, C_out)

    Y_grid[r] = sum_{i,j} X[r + s_ij] @ W_ij        each term a contiguous slice of X times W_ij

Grid rows whose window wraps past a row or an image are garbage; the valid (N, H_out, W_out)
corner of the grid is the output. Backward, with dY embedded in the grid (zeros at the garbage
rows, so that they contribute nothing):

    dW_ij = sum_r X[r + s_ij]ᵀ dY_grid[r]        dX_grid[r + s_ij] += dY_grid[r] @ W_ijᵀ

and dx is the unpadded part of dX_grid. kh*kw small GEMMs replace im2col's copy of 9x the input
and its one large GEMM. The cache keeps the input, as the im2col route's does; backward pads it
again. The small GEMMs run in blocks of rows, see ``_block_rows``; why and where this route
wins: ``benchmarks/README.md``.
"""
from dataclasses import dataclass

from ..backend import get_array_module
from .conv import ConvGeometry, _channels_last_output, _padded_nhwc, _take_input
from .scratch import scratch


@dataclass
class ShiftedConvCache:
    """What the shifted-GEMM backward needs: the input (backward pads it again), the weights."""
    x: object                 # (N, C, H, W); None once used
    weight_by_offset: object  # (kh*kw, C, C_out)
    geometry: ConvGeometry
    has_bias: bool


# Tuning (OpenBLAS on the CPU; measurements in benchmarks/README.md). A block of grid rows is
# about 2**19 multiply-adds: big enough that Python's per-call overhead stays small, small
# enough that its running sum and products stay in the core's cache.
_BLOCK_MULTIPLY_ADDS = 2 ** 19
_MAX_GEMM_BLOCK_ROWS = 4096
_MAX_CHANNEL_PRODUCT = 512  # C * C_out up to which this route beats im2col's few large GEMMs


def _block_rows(C, C_out):
    """Rows of the grid per block of small GEMMs (each (rows, C) @ (C, C_out))."""
    return min(_MAX_GEMM_BLOCK_ROWS, _BLOCK_MULTIPLY_ADDS // (C * C_out))


def uses_shifted_gemm(device, geometry, C_out):
    """Stride 1, one group and few channels (``C * C_out <= 512``), on the CPU only.

    The many small GEMMs are a CPU trick: each block of rows stays in cache, and the 9x im2col
    copy is never written; with more channels im2col's few big GEMMs win. On a GPU one big GEMM
    is the better choice at every size: each small GEMM would be a kernel launch of its own
    (thousands per layer, each too small to fill the device), while the im2col copy is cheap at
    the GPU's memory bandwidth. So a GPU always takes im2col + one GEMM (tests/test_conv.py
    states the route per device); the stride-1 flipped-kernel backward, one im2col copy of dy
    and two big GEMMs, suits both and is taken on every device.
    """
    C = geometry.input_shape[1]
    return (device == "cpu" and geometry.stride == (1, 1) and geometry.groups == 1
            and C * C_out <= _MAX_CHANNEL_PRODUCT)


def _padded_rows(x, geometry):
    """The padded input, channels last, as a (N*H_pad*W_pad, C) matrix: a row per grid pixel.

    A scratch buffer (see ``scratch``), or ``x``'s own memory when it needs no padding and is
    channels-last already: either way, read it during this call only.
    """
    padded = _padded_nhwc(x, geometry)
    if not padded.flags.c_contiguous:  # unpadded and not channels-last
        padded = _into_scratch(padded, "padded input")
    return padded.reshape(-1, geometry.input_shape[1])


def _into_scratch(array, slot):
    """A copy of ``array`` in the scratch buffer ``slot``."""
    copy = scratch(array, array.shape, array.dtype, slot)
    copy[...] = array
    return copy


def _row_shifts(geometry):
    """The row shift ``i*d_h*W_pad + j*d_w`` of each kernel offset (i, j), in (i, j) order."""
    _, W_pad = geometry.padded_size
    (kh, kw), (d_h, d_w) = geometry.kernel, geometry.dilation
    return [i * d_h * W_pad + j * d_w for i in range(kh) for j in range(kw)]


def _grid_rows(geometry):
    """How many grid rows hold an output: up to the last valid one, whose window ends the input."""
    N, _, _, _ = geometry.input_shape
    H_pad, W_pad = geometry.padded_size
    return N * H_pad * W_pad - _row_shifts(geometry)[-1]


def _row_blocks(count, block):
    """``(start, stop)`` of consecutive blocks of ``block`` rows covering ``range(count)``."""
    return [(start, min(count, start + block)) for start in range(0, count, block)]


def _weight_by_offset(w):
    """(C_out, C, kh, kw) -> (kh*kw, C, C_out): one (C, C_out) matrix W_ij per kernel offset."""
    xp = get_array_module(w)
    C_out, C, kh, kw = w.shape
    return xp.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(kh * kw, C, C_out)


def _sum_of_shifted_products(rows, weight_by_offset, shifts, count, out):
    """``out[r] = sum_k rows[r + shifts[k]] @ weight_by_offset[k]`` for ``r < count``.

    Done block by block (see ``_block_rows``), so that the running sum and each product stay
    in cache.
    """
    xp = get_array_module(rows)
    C, C_out = weight_by_offset.shape[1:]
    block = _block_rows(C, C_out)
    products = xp.empty((min(block, count), C_out), dtype=out.dtype)
    for start, stop in _row_blocks(count, block):
        total, product = out[start:stop], products[:stop - start]
        xp.matmul(rows[start + shifts[0]:stop + shifts[0]], weight_by_offset[0], out=total)
        for k in range(1, len(shifts)):
            total += xp.matmul(rows[start + shifts[k]:stop + shifts[k]], weight_by_offset[k], out=product)
    return out


def shifted_conv_forward(x, w, b, geometry):
    """``(y, ShiftedConvCache)``: y as in ``conv2d_forward``, a contiguous channels-last NCHW view."""
    N, _, _, _ = geometry.input_shape
    H_pad, W_pad = geometry.padded_size
    H_out, W_out = geometry.output_size
    C_out = w.shape[0]
    rows = _padded_rows(x, geometry)
    weight_by_offset = _weight_by_offset(w)
    grid = scratch(x, (N * H_pad * W_pad, C_out), x.dtype, "grid")  # rows past _grid_rows stay unset
    _sum_of_shifted_products(rows, weight_by_offset, _row_shifts(geometry), _grid_rows(geometry), grid)
    valid = grid.reshape(N, H_pad, W_pad, C_out)[:, :H_out, :W_out]
    y = _channels_last_output(valid, b)
    return y, ShiftedConvCache(x, weight_by_offset, geometry, b is not None)


def _dy_on_grid(dy, geometry):
    """dy embedded in the padded grid as rows (N*H_pad*W_pad, C_out), zeros off the valid outputs
    (a scratch buffer, see ``scratch``)."""
    N, C_out, H_out, W_out = dy.shape
    grid = scratch(dy, (N, *geometry.padded_size, C_out), dy.dtype, "gradient grid")
    grid[:, H_out:] = grid[:, :H_out, W_out:] = 0
    grid[:, :H_out, :W_out] = dy.transpose(0, 2, 3, 1)
    return grid.reshape(-1, C_out)


def shifted_conv_backward(dy, cache):
    """``(dx, dw, db)`` from ``dy`` (checked by the caller) and a ``ShiftedConvCache``."""
    geometry, weight_by_offset = cache.geometry, cache.weight_by_offset
    rows = _padded_rows(_take_input(cache), geometry)
    xp = get_array_module(dy, rows)
    N, C, H, W = geometry.input_shape
    (kh, kw), C_out = geometry.kernel, weight_by_offset.shape[2]
    (top, _), (left, _) = geometry.padding
    shifts, count = _row_shifts(geometry), _grid_rows(geometry)
    dy_rows = _dy_on_grid(dy, geometry)[:count]   # zeros at the garbage rows: they add nothing
    # block by block (see _block_rows), for each kernel offset (i, j) with rows shifted by s_ij:
    #   dW_ij += X[block + s_ij]ᵀ @ dY[block]       dX[block + s_ij] += dY[block] @ W_ijᵀ
    block = _block_rows(C, C_out)
    dw_by_offset = xp.zeros((kh * kw, C, C_out), dtype=dy.dtype)
    dw_product = xp.empty((C, C_out), dtype=dy.dtype)
    dx_rows = xp.zeros_like(rows)
    dx_product = xp.empty((min(block, count), C), dtype=dy.dtype)
    # W_ijᵀ contiguous: OpenBLAS threads a transposed operand's small GEMMs sooner
    transposed_weights = xp.ascontiguousarray(weight_by_offset.transpose(0, 2, 1))
    for start, stop in _row_blocks(count, block):
        dy_block, dx_block = dy_rows[start:stop], dx_product[:stop - start]
        for k, shift in enumerate(shifts):
            dw_by_offset[k] += xp.matmul(rows[start + shift:stop + shift].T, dy_block, out=dw_product)
            dx_rows[start + shift:stop + shift] += xp.matmul(dy_block, transposed_weights[k], out=dx_block)
    dw = xp.ascontiguousarray(dw_by_offset.reshape(kh, kw, C, C_out).transpose(3, 2, 0, 1))
    dx_padded = dx_rows.reshape(N, *geometry.padded_size, C)
    dx = dx_padded[:, top:top + H, left:left + W].transpose(0, 3, 1, 2)
    db = dy_rows.sum(axis=0) if cache.has_bias else None
    return dx, dw, db
