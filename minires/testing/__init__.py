"""Test support that needs nothing but NumPy, shipped with the library (like ``numpy.testing``).

- ``assert_close``: a minires array (NumPy or CuPy) equals the expected values within tolerances.
- ``minires.testing.fake_cupy``: a CuPy stand-in whose arrays live on a fake GPU (two of them) and
  refuse what CuPy refuses; ``minires.backend.substitute_cupy(fake_cupy)`` runs the GPU path on it
  (op code must run on CuPy without a GPU to test on).
- ``minires.testing.cifar_files``: tiny CIFAR-10 folders in the real file format.
- ``minires.testing.trained``: stand-ins for trained networks (weights files of untrained ones).

The comparisons with PyTorch live in the test suite (``tests/support``): torch is a test
dependency only.
"""
import numpy as np

from ..backend import asnumpy


def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what="value"):
    """``actual`` equals ``expected`` (arrays, on any device) in shape and within tolerances."""
    actual, expected = asnumpy(actual), asnumpy(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)
