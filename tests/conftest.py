"""Shared fixtures: the array back-ends every layer test runs on; the real CIFAR-10, when there."""
import os
from pathlib import Path

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


@pytest.fixture(scope="session")
def real_data_root():
    """The folder named by ``MINIRES_DATA`` that holds ``cifar-10-batches-py/``; skips without it."""
    root = os.environ.get("MINIRES_DATA")
    if not root:
        pytest.skip("MINIRES_DATA is not set (the folder that holds cifar-10-batches-py/)")
    if not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no cifar-10-batches-py/ in MINIRES_DATA={root}")
    return Path(root)
