"""Test support that needs PyTorch (a test dependency only): never shipped with the library."""
