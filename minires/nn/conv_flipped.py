"""The stride-1 convolution backward as one convolution of dy with the flipped kernel.

The plain route is in ``conv.py`` (dcols = dY @ W_mat, then col2im; ``with
minires.nn.reference_kernels():`` takes it everywhere); it is also exercise 6's solution,
``minires/exercises/solutions/ex6_conv2d.py``. ``conv.py``'s backward comes here at stride 1
when ``flipped_geometry`` applies.

In one dimension, with p_top the padding in front and k' = d*(k - 1) + 1 the dilated kernel,

    y[h] = sum_i W[i] x[h + i*d - p_top]
    dx[u] = sum_i W[i] dy[u + p_top - i*d]              (collect the h that read x[u])
          = sum_i W[k - 1 - i] dy[u + i*d - (k' - 1 - p_top)]     (i -> k - 1 - i)

a stride-1 convolution of dy with the kernel flipped in space (and input and output channels
swapped within each group), padded by k' - 1 - p_top in front and k' - 1 - p_bottom behind.
Its im2col matrix dy_cols has a row per *input* pixel u, holding dy[u + i*d - (k' - 1 - p_top)]
at flipped offset i, so the weight gradient comes out of the same matrix (h = u + p_top - i*d):

    dW[i] = sum_h dy[h] x[h + i*d - p_top] = sum_u dy_cols[u, offset k - 1 - i] x[u]

i.e. dy_colsᵀ @ x_rows, flipped back. One im2col copy (of dy) and two GEMMs with the long
contractions, in place of two copies (x again, for dW) and col2im's kh*kw strided adds over 9x
the input after a GEMM with the short C_out/G contraction. col2im stays for the rest (strides
> 1, paddings beyond the kernel) and as the reference.
"""
from ..backend import get_array_module
from .conv import ConvGeometry, _cols_product, _im2col_scratch, _weight_from_matrix


def flipped_geometry(geometry, dy_shape):
    """The geometry of dx as a convolution of dy, or None when this route does not apply."""
    if geometry.stride != (1, 1):
        return None
    padding = tuple((k - 1 - before, k - 1 - after)
                    for k, (before, after) in zip(geometry.dilated_kernel, geometry.padding))
    if min(min(pair) for pair in padding) < 0:
        return None
    return ConvGeometry(tuple(dy_shape), geometry.kernel, (1, 1), padding, geometry.dilation,
                        geometry.groups)


def _flip_kernel(matrix, kernel, in_group):
    """(G, out, (i, j, in)) -> (G, in, (kh-1-i, kw-1-j, out)): the kernel flipped in space, its
    input and output channels swapped. Its own inverse (called with the other channel count)."""
    xp = get_array_module(matrix)
    (kh, kw), (G, out_group, _) = kernel, matrix.shape
    flipped = matrix.reshape(G, out_group, kh, kw, in_group)[:, :, ::-1, ::-1]
    return xp.ascontiguousarray(flipped.transpose(0, 4, 2, 3, 1)).reshape(G, in_group, kh * kw * out_group)


def stride_one_gradients(x, dy, weight_matrix, geometry, flipped):
    """``(dx, dw)`` of a stride-1 convolution from ``dy_cols``, the im2col of dy (see above)."""
    xp = get_array_module(x, dy)
    N, C, H, W = geometry.input_shape
    G, C_out_group, _ = weight_matrix.shape
    dy_cols = _im2col_scratch(dy, flipped)                        # (G, N*H*W, kh*kw*C_out/G)
    dx = _cols_product(dy_cols, _flip_kernel(weight_matrix, geometry.kernel, C // G), None, flipped)
    x_rows = x.transpose(0, 2, 3, 1).reshape(N * H * W, G, C // G).transpose(1, 0, 2)
    flipped_dw = xp.matmul(dy_cols.transpose(0, 2, 1), x_rows)  # (G, kh*kw*C_out/G, C/G), as in dW
    dw_matrix = _flip_kernel(flipped_dw.transpose(0, 2, 1), geometry.kernel, C_out_group)
    return dx, _weight_from_matrix(dw_matrix, (G * C_out_group, C // G, *geometry.kernel))
