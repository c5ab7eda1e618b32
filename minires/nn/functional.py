"""The pure forward/backward functions of every layer, in one namespace (CS231n style).

A ``*_forward`` returns ``(output, cache)``; the matching ``*_backward(dout, cache)`` returns
the gradients of its inputs. They take their array module from their inputs, keep no state,
and run unchanged on NumPy and CuPy arrays.
"""
from .activation import relu_backward, relu_forward
