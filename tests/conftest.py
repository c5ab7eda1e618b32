"""Shared fixtures: the array back-ends every layer test runs on; the real CIFAR-10, when there."""
import os
from pathlib import Path

import numpy as np
import pytest

from minires import backend
from minires.testing import fake_cupy


def _cupy_module():
    import cupy
    return cupy


@pytest.fixture
def fake_gpu():
    """The CuPy stand-in installed as minires' CuPy for one test: "cuda" is its fake GPU 0."""
    with backend.substitute_cupy(fake_cupy):
        yield fake_cupy


_REAL_GPU = pytest.param("cupy", marks=pytest.mark.skipif(not backend.cupy_available(),
                                                          reason="CuPy finds no CUDA device"))


def _array_module(request):
    if request.param == "numpy":
        return np
    if request.param == "fake_cupy":
        return request.getfixturevalue("fake_gpu")
    return _cupy_module()


@pytest.fixture(params=["numpy", "fake_cupy", _REAL_GPU])
def xp(request):
    """The array module under test: NumPy; the CuPy stand-in on its fake GPU (``fake_gpu``); real
    CuPy when a GPU is there. Tests move modules with ``.to("cuda")`` for the last two."""
    return _array_module(request)


@pytest.fixture(params=["fake_cupy", _REAL_GPU])
def gpu_xp(request):
    """A GPU's array module: the CuPy stand-in always, real CuPy when a GPU is there."""
    return _array_module(request)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def real_data_root():
    """The folder named by ``MINIRES_DATA`` that holds ``cifar-10-batches-py/``; skips without it."""
    root = os.environ.get("MINIRES_DATA")
    if not root:
        pytest.skip("MINIRES_DATA is not set (the folder that holds cifar-10-batches-py/)")
    if not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no cifar-10-batches-py/ in MINIRES_DATA={root}")
    return Path(root)
