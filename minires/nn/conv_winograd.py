"""The Winograd route of a 3x3 convolution, F(2x2, 3x3): 16 GEMMs with 2.25x fewer multiply-adds.

The plain route is in ``conv.py`` (im2col + one GEMM; ``with minires.nn.reference_kernels():``
takes it everywhere); it is also exercise 6's solution, ``minires/exercises/solutions/ex6_conv2d.py``.
``conv.py``'s dispatcher sends a convolution here when ``uses_winograd`` says so: 3x3 kernel,
stride 1, dilation 1, one group, any padding. Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks" (CVPR 2016).

One dimension: F(2, 3). Two outputs of a 3-tap filter g on four inputs d,

    y0 = d0 g0 + d1 g1 + d2 g2        y1 = d1 g0 + d2 g1 + d3 g2,

take 6 multiplications as written, and 4 this way (Winograd's minimal filtering):

    m0 = (d0 - d2) g0                 m1 = (d1 + d2) (g0 + g1 + g2) / 2
    m3 = (d1 - d3) g2                 m2 = (d2 - d1) (g0 - g1 + g2) / 2
    y0 = m0 + m1 + m2                 y1 = m1 - m2 - m3

(expand: m1 + m2 = d1 g1 + d2 g0 + d2 g2 and m1 - m2 = d1 g0 + d1 g2 + d2 g1). In matrices,
y = Aᵀ [(G g) ⊙ (Bᵀ d)] with ⊙ the elementwise product and

    Bᵀ = [[1, 0, -1, 0],      G = [[ 1,   0,   0 ],      Aᵀ = [[1, 1,  1,  0],
          [0, 1,  1, 0],           [1/2, 1/2, 1/2],            [0, 1, -1, -1]].
          [0, -1, 1, 0],           [1/2, -1/2, 1/2],
          [0, 1,  0, -1]]          [ 0,   0,   1 ]]

Two dimensions by nesting F(2, 3) in F(2, 3): a 2x2 output tile Y from a 4x4 input tile d and
the 3x3 kernel g is

    Y = Aᵀ [ U ⊙ V ] A        U = G g Gᵀ (4x4),  V = Bᵀ d B (4x4)

16 multiplications where the direct sum takes 36. Channels: y[o] = sum_c conv(x[c], g[o, c]),
and every transform is linear, so the sum over c moves inside, to the 16 positions (ξ, ν) of
the 4x4 transformed tile. With a row per tile (T = N * t_h * t_w of them):

    V[ξν]  (T, C)       V[ξν][tile, c] = (Bᵀ d B)[ξ, ν] of the tile's input in channel c
    U[ξν]  (C, C_out)   U[ξν][c, o]    = (G g[o, c] Gᵀ)[ξ, ν]
    M[ξν] = V[ξν] @ U[ξν]              16 GEMMs, (T, C) @ (C, C_out)
    Y_tile = Aᵀ M_tile A (+ b)         per tile and output channel

16*T*C*C_out multiply-adds, where im2col's one GEMM does 9*N*H_out*W_out*C*C_out = 36*T*C*C_out
(H_out, W_out even): 2.25x fewer. The transforms of the data are a few adds per value.

Tiles. Output tile (t, s) holds output rows 2t, 2t + 1 and columns 2s, 2s + 1, and reads padded
input rows 2t .. 2t + 3 (and likewise columns): tiles step by 2 and overlap by 2. With
H_out = H + pad_top + pad_bottom - 2 there are t_h = ceil(H_out / 2) tile rows, reading a padded
input of 2 t_h + 2 rows: when H_out is odd, one more zero row at the bottom (likewise the right),
and the output's extra row is cropped.

Backward: each stage above is linear, and the backward of a linear map is its transpose (exact,
no approximation: the same numbers as the direct convolution up to rounding):

    Y_tile = Aᵀ M A            ->  dM = A dY_tile Aᵀ             (dY zero-padded to whole tiles)
    M[ξν] = V[ξν] @ U[ξν]      ->  dU[ξν] = V[ξν]ᵀ @ dM[ξν]      16 GEMMs, (C, T) @ (T, C_out)
                                   dV[ξν] = dM[ξν] @ U[ξν]ᵀ      16 GEMMs, (T, C_out) @ (C_out, C)
    U = G g Gᵀ                 ->  dg = Gᵀ dU G                  per (o, c)
    V = Bᵀ d B                 ->  dd_tile = B dV Bᵀ, overlap-added into the padded input's gradient
    db[o] = sum of dy[:, o]

Overlap-add: padded row 2Y + p (p = 0, 1) is row p of tile Y and row p + 2 of tile Y - 1, so

    dx_pad[2Y + p] = (B dV)[p] of tile Y + (B dV)[p + 2] of tile Y - 1     (likewise columns)

and dx is the unpadded part of dx_pad.

Code. The transforms are matrices of 0 and ±1 (Bᵀ, Aᵀ and their transposes; the overlap-add
is [B[p] | B[p + 2]] over the tile and the one before), applied along the rows, then along the
columns. ``_combine`` writes each output row of such a matrix as adds and subtracts of strided
views straight into preallocated memory: no temporaries, no stacking. U and dg take one small
GEMM with G ⊗ G (16 x 9). Inside, images are HWNC -- (height, width, batch, channel), channels
innermost -- so that every strided view of the transforms is a run of N*C contiguous numbers (on
NHWC a run is C numbers, and NumPy's per-run overhead made the transforms 3x slower); each
transformed position V[ξν] is a contiguous (T, C) matrix, rows in (t, s, n) order, for its GEMM.
One transposing copy goes in (x, and dy in backward, into a zero-padded HWNC scratch image) and
one comes out (y, and dx, into a fresh channels-last array, as ``conv.py`` returns them).

Cost. The transforms run block by block of tile rows (``_CHUNK_BYTES``), so that the
intermediate rows stay in cache; the 16 GEMMs are a Python loop of ``matmul(out=)``, each on a
contiguous slice (a batched matmul over the 16 was slower). Measurements and where this route
wins: ``benchmarks/README.md``.

Memory. The cache keeps the input ``x`` (a reference, as the other routes) and U (16*C*C_out
numbers, 1.8x the weight). Backward computes V again from x rather than keeping it from forward:
V is 4x the input (64 MB in float32 for 64 channels of 32x32 at batch 64), and recomputing it
into a scratch buffer costs less than keeping it costs in memory and fresh pages (measured:
benchmarks/README.md). Scratch buffers (``minires.nn.scratch``): the padded input image
(about 1x the input), V (4x the input, with a zero tile row above and below: backward writes dV
over it), M (4x the output), the transposed dy (1x the output) and small blocks.

Precision. Each transformed weight sums up to 9 weights, each transformed input up to 4 inputs,
each output up to 9 products, with coefficients ±1, ±1/2, ±1/4 (exact in binary floating point):
on ResNet-18-CIFAR's layers the float32 relative error was 1.4e-7 to 5.3e-7, 1.0x to 1.9x the
im2col route's (tests/test_conv_winograd.py bounds it); float64 agrees with the textbook route to
1e-11.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from .conv import ConvGeometry, _channels_last_output, _take_input
from .conv_shifted import _row_blocks
from .scratch import scratch

# The transforms (Lavin & Gray 2016); a matrix's rows are its outputs.
B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))   # V = Bᵀ d B
G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))       # U = G g Gᵀ
A_T = ((1, 1, 1, 0), (0, 1, -1, -1))                               # Y = Aᵀ M A
A = tuple(zip(*A_T))                                                 # dM = A dY Aᵀ
# dx_pad[2Y + p] = sum_ξ B[p, ξ] dV_ξ[Y] + B[p + 2, ξ] dV_ξ[Y - 1], B[i, ξ] = Bᵀ[ξ, i]:
# one row per p over the sources (dV_0 .. dV_3 of tile Y, then of tile Y - 1)
OVERLAP_ADD = tuple(tuple(row[p] for row in B_T) + tuple(row[p + 2] for row in B_T) for p in (0, 1))

# Tuning (OpenBLAS on the CPU; measurements in benchmarks/README.md).
_CHUNK_BYTES = 2 ** 20         # the transforms' block of tile rows: its intermediate rows stay in cache
_MIN_CHANNELS = 64             # C and C_out from which the transforms cost less than the GEMMs save
_MIN_TILE_CHANNELS = 2 ** 15   # T * C from which that saving outweighs U's transform and each call's cost


def uses_winograd(device, geometry, C_out):
    """3x3, stride 1, dilation 1, one group, on the CPU, with enough channels and enough tiles.

    Enough channels: at least 64 in and out; the transforms add a few numbers per tile and
    channel, the GEMMs save 20 multiply-adds per tile and pair of channels, so with fewer channels
    the shifted GEMM or im2col win. Enough tiles: T * C >= 2**15 (T = N * t_h * t_w, e.g. a batch
    of 16 at 512 channels on 4x4): on a small batch the weight transform (U is 1.8x the weight)
    and the calls' fixed cost outweigh the GEMMs' saving. Measured on OpenBLAS only
    (benchmarks/README.md): a GPU keeps im2col's one big GEMM (see ``conv_shifted.uses_shifted_gemm``).
    """
    N, C, _, _ = geometry.input_shape
    t_h, t_w = tile_counts(geometry)
    return (device == "cpu" and geometry.kernel == (3, 3) and geometry.stride == (1, 1)
            and geometry.dilation == (1, 1) and geometry.groups == 1
            and min(C, C_out) >= _MIN_CHANNELS and N * t_h * t_w * C >= _MIN_TILE_CHANNELS)


@dataclass
class WinogradConvCache:
    """What the Winograd backward needs: the input (backward transforms it again), U, the shapes."""
    x: object               # (N, C, H, W); None once used
    weights: object         # U transposed, (16, C_out, C): U[k].T for forward, U[k] for dV
    geometry: ConvGeometry
    has_bias: bool


# -- the building blocks -------------------------------------------------------------------------
def _combine(matrix, sources, outs):
    """``outs[k] = sum_i matrix[k][i] * sources[i]`` for a matrix of 0, 1 and -1.

    Each output is written as adds and subtracts straight into its own memory (any strided
    view); a positive term goes first, so a negation is needed only for an all-negative row.
    """
    xp = get_array_module(*sources)
    for row, out in zip(matrix, outs):
        terms = sorted(((c, s) for c, s in zip(row, sources) if c), key=lambda term: term[0] < 0)
        (first_sign, first), rest = terms[0], terms[1:]
        if first_sign > 0 and rest:
            (sign, second), rest = rest[0], rest[1:]
            (xp.add if sign > 0 else xp.subtract)(first, second, out=out)
        elif first_sign > 0:
            out[...] = first
        else:
            xp.negative(first, out=out)
        for sign, term in rest:
            (xp.add if sign > 0 else xp.subtract)(out, term, out=out)
    return outs


def tile_counts(geometry):
    """``(t_h, t_w)``: 2x2 output tiles per column and per row, covering the output."""
    return tuple((size + 1) // 2 for size in geometry.output_size)


def _zero_padded_hwnc(source, shape, top, left, slot):
    """``source`` (h, w, N, C) placed at (top, left) of a zeroed (H', W', N, C) scratch image."""
    image = scratch(source, shape, source.dtype, slot)
    h, w = source.shape[:2]
    image[:top] = image[top + h:] = 0
    image[top:top + h, :left] = image[top:top + h, left + w:] = 0
    image[top:top + h, left:left + w] = source
    return image


def _chunk_rows(row_bytes):
    """Tile rows per block of the transforms: about ``_CHUNK_BYTES`` of intermediate rows."""
    return max(1, _CHUNK_BYTES // row_bytes)


# -- the weight transform: U = G g Gᵀ and its transpose dg = Gᵀ dU G ----------------------------
def _kron_G(like):
    """(G ⊗ G)[(ξ, ν), (i, j)] = G[ξ, i] G[ν, j], shape (16, 9), on ``like``'s device and dtype."""
    return get_array_module(like).asarray(np.kron(G, G), dtype=like.dtype)


def _weight_transform(w):
    """U[ξν]ᵀ, as (16, C_out, C), from the weight (C_out, C, 3, 3): one GEMM with G ⊗ G."""
    C_out, C = w.shape[:2]
    return get_array_module(w).matmul(_kron_G(w), w.reshape(C_out * C, 9).T).reshape(16, C_out, C)


def _weight_transform_backward(dU_T):
    """dg = Gᵀ dU G per (o, c): the weight gradient (C_out, C, 3, 3) from dU[ξν]ᵀ, (16, C_out, C)."""
    _, C_out, C = dU_T.shape
    by_tap = get_array_module(dU_T).matmul(dU_T.reshape(16, C_out * C).T, _kron_G(dU_T))  # (C_out*C, 9)
    return by_tap.reshape(C_out, C, 3, 3)


# -- the data transforms: V = Bᵀ d B, Y = Aᵀ M A and their transposes ------------------------------
def _tiles_buffer(like, t_h, t_w, N, C):
    """Scratch for V, then dV: (16, t_h + 2, t_w, N*C); tile row t at index t + 1, so that the
    overlap-add reads tile Y - 1 of the first row as a zero row (set by backward)."""
    return scratch(like, (16, t_h + 2, t_w, N * C), like.dtype, "winograd tiles")


def _tile_matrices(tiles, C):
    """The 16 (T, C) matrices of a tiles buffer (views: GEMMs write dV through them)."""
    return tiles[:, 1:-1].reshape(16, -1, C)


def _input_transform(x, geometry):
    """V (16, t_h + 2, t_w, N*C) in scratch: Bᵀ d B of every input tile, rows then columns."""
    N, C, _, _ = geometry.input_shape
    (top, _), (left, _) = geometry.padding
    t_h, t_w = tile_counts(geometry)
    padded = _zero_padded_hwnc(x.transpose(2, 3, 0, 1), (2 * t_h + 2, 2 * t_w + 2, N, C), top, left,
                               "winograd image").reshape(2 * t_h + 2, 2 * t_w + 2, N * C)
    tiles = _tiles_buffer(x, t_h, t_w, N, C)
    V = tiles.reshape(4, 4, t_h + 2, t_w, N * C)[:, :, 1:-1]
    rows = _chunk_rows(4 * padded[0].nbytes)
    by_rows = scratch(x, (4, min(rows, t_h), 2 * t_w + 2, N * C), x.dtype, "winograd block")
    for start, stop in _row_blocks(t_h, rows):
        # Bᵀ along the rows: padded row 2t + i is row i of tile t
        block = by_rows[:, :stop - start]
        _combine(B_T, [padded[2 * start + i:2 * stop + i - 1:2] for i in range(4)], block)
        # then along the columns, for the four rows ξ at once
        _combine(B_T, [block[:, :, j:j + 2 * t_w - 1:2] for j in range(4)],
                 [V[:, nu, start:stop] for nu in range(4)])
    return tiles


def _output_transform(M, geometry):
    """The output image (2 t_h, 2 t_w, N, C_out), HWNC, in scratch: Aᵀ M A of every tile."""
    N, C_out = geometry.input_shape[0], M.shape[2]
    t_h, t_w = tile_counts(geometry)
    M = M.reshape(4, 4, t_h, t_w, N * C_out)
    image = scratch(M, (t_h, 2, t_w, 2, N * C_out), M.dtype, "winograd output image")
    rows = _chunk_rows(8 * M[0, 0, 0].nbytes)
    by_rows = scratch(M, (2, 4, min(rows, t_h), t_w, N * C_out), M.dtype, "winograd block")
    for start, stop in _row_blocks(t_h, rows):
        block = by_rows[:, :, :stop - start]
        _combine(A_T, [M[xi, :, start:stop] for xi in range(4)], block)
        _combine(A_T, [block[:, nu] for nu in range(4)],
                 [image[start:stop, :, :, j].transpose(1, 0, 2, 3) for j in range(2)])
    return image.reshape(2 * t_h, 2 * t_w, N, C_out)


def _output_transform_backward(dy, geometry, dM):
    """dM = A dY Aᵀ of every tile, into ``dM`` (16, T, C_out), dy zero-padded to whole tiles."""
    N, C_out, H_out, W_out = dy.shape
    t_h, t_w = tile_counts(geometry)
    image = _zero_padded_hwnc(dy.transpose(2, 3, 0, 1), (2 * t_h, 2 * t_w, N, C_out), 0, 0,
                              "winograd output image").reshape(t_h, 2, t_w, 2, N * C_out)
    dM = dM.reshape(4, 4, t_h, t_w, N * C_out)
    rows = _chunk_rows(8 * dM[0, 0, 0].nbytes)
    by_columns = scratch(dy, (4, min(rows, t_h), 2, t_w, N * C_out), dy.dtype, "winograd block")
    for start, stop in _row_blocks(t_h, rows):
        block = by_columns[:, :stop - start]
        _combine(A, [image[start:stop, :, :, j] for j in range(2)], block)
        _combine(A, [block[:, :, i] for i in range(2)], [dM[xi, :, start:stop] for xi in range(4)])


def _input_transform_backward(tiles, geometry):
    """dx_pad (2 t_h + 2, 2 t_w + 2, N, C), HWNC, in scratch: B dV Bᵀ of every tile, overlap-added.

    ``tiles`` holds dV as ``_tiles_buffer`` lays it out; its first and last rows are set to zero.
    Block by block of padded rows 2Y, 2Y + 1 (Y = 0 .. t_h): along the rows (tiles Y and Y - 1),
    then along the columns (tiles s and s - 1, from a block with a zero column on either side).
    """
    t_h, t_w = tile_counts(geometry)
    tiles[:, 0] = tiles[:, -1] = 0
    NC = tiles.shape[-1]
    dV = tiles.reshape(4, 4, t_h + 2, t_w, NC)
    image = scratch(tiles, (t_h + 1, 2, t_w + 1, 2, NC), tiles.dtype, "winograd image")
    rows = _chunk_rows(8 * dV[0, 0, 0].nbytes)
    by_rows = scratch(tiles, (2, 4, min(rows, t_h + 1), t_w + 2, NC), tiles.dtype, "winograd block")
    by_rows[..., 0, :] = by_rows[..., -1, :] = 0
    for start, stop in _row_blocks(t_h + 1, rows):
        block = by_rows[:, :, :stop - start]
        _combine(OVERLAP_ADD, [dV[xi, :, start + 1:stop + 1] for xi in range(4)]
                 + [dV[xi, :, start:stop] for xi in range(4)], block[..., 1:-1, :])
        _combine(OVERLAP_ADD, [block[:, nu, :, 1:] for nu in range(4)] + [block[:, nu, :, :-1] for nu in range(4)],
                 [image[start:stop, :, :, q].transpose(1, 0, 2, 3) for q in range(2)])
    N, C, _, _ = geometry.input_shape
    return image.reshape(2 * t_h + 2, 2 * t_w + 2, N, C)


# -- the route ---------------------------------------------------------------------------------
def winograd_conv_forward(x, w, b, geometry):
    """``(y, WinogradConvCache)``: y as in ``conv2d_forward``, a contiguous channels-last NCHW view."""
    xp = get_array_module(x, w, b)
    C, C_out = geometry.input_shape[1], w.shape[0]
    H_out, W_out = geometry.output_size
    U_T = _weight_transform(w)
    V = _tile_matrices(_input_transform(x, geometry), C)
    M = scratch(x, (16, V.shape[1], C_out), x.dtype, "winograd products")
    for k in range(16):
        xp.matmul(V[k], U_T[k].T, out=M[k])
    image = _output_transform(M, geometry)
    # one transposing copy, cropped to the output, into a contiguous channels-last array
    y = _channels_last_output(image[:H_out, :W_out].transpose(2, 0, 1, 3), b)
    return y, WinogradConvCache(x, U_T, geometry, b is not None)


def winograd_conv_backward(dy, cache):
    """``(dx, dw, db)`` from ``dy`` (checked by the caller) and a ``WinogradConvCache``."""
    geometry, U_T = cache.geometry, cache.weights
    x = _take_input(cache)
    xp = get_array_module(dy, x)
    _, C, H, W = geometry.input_shape
    C_out = U_T.shape[1]
    (top, _), (left, _) = geometry.padding
    tiles = _input_transform(x, geometry)             # V again: see Memory above
    V = _tile_matrices(tiles, C)
    dM = scratch(dy, (16, V.shape[1], C_out), dy.dtype, "winograd products")
    _output_transform_backward(dy, geometry, dM)
    dU_T = xp.empty((16, C_out, C), dtype=dy.dtype)
    for k in range(16):  # dU[ξν] = V[ξν]ᵀ @ dM[ξν], written transposed: dg then needs no copy
        xp.matmul(V[k].T, dM[k], out=dU_T[k].T)
    for k in range(16):                               # dV over V: V is no longer needed
        xp.matmul(dM[k], U_T[k], out=V[k])
    dx_padded = _input_transform_backward(tiles, geometry)
    dx = _channels_last_output(dx_padded[top:top + H, left:left + W].transpose(2, 0, 1, 3), None)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, _weight_transform_backward(dU_T), db
