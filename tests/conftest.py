"""Shared fixtures: the array back-ends every layer test runs on."""
import numpy as np
import pytest

from minires import backend


def _cupy_module():
    import cupy
    return cupy


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not backend.cupy_available(), reason="CuPy finds no CUDA device"))])
def xp(request):
    """The array module under test: NumPy always, CuPy when a GPU is there."""
    return np if request.param == "numpy" else _cupy_module()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
