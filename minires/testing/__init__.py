"""Test support that needs nothing but NumPy, shipped with the library (like ``numpy.testing``).

- ``minires.testing.fake_cupy``: a CuPy stand-in whose arrays live on a fake device and refuse
  what CuPy refuses; ``minires.backend.substitute_cupy(fake_cupy)`` runs the GPU path on it.
"""
