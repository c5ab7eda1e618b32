"""The pure forward/backward functions of every layer, in one namespace (CS231n style).

A ``*_forward`` returns ``(output, cache)``; the matching ``*_backward(dout, cache)`` returns
the gradients of its inputs. They take their array module from their inputs, keep no state,
and run unchanged on NumPy and CuPy arrays.
"""
from .activation import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward
from .linear import linear_backward, linear_forward
from .dropout import dropout_backward, dropout_forward
from .loss import cross_entropy_backward, cross_entropy_forward, softmax_cross_entropy
from .reshape import flatten_backward, flatten_forward
from .conv import col2im, conv2d_backward, conv2d_forward, im2col
from .norm import batch_norm_backward, batch_norm_forward
from .sync_norm import sync_batch_norm_backward, sync_batch_norm_forward
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, avg_pool2d_backward,
                   avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward)
