"""Gradient-check exercises: write the backward passes yourself, and let minires grade them.

    python -m minires.exercises start DIR            # writes the sheet: README.md and ex1..ex7
    python -m minires.exercises check DIR [N ...]     # grades it; exit code 0 when all pass

The exercises: ReLU, a linear layer, softmax cross-entropy, max pooling (overlapping windows,
ties), batch norm, col2im and conv2d, and a residual block with its skip connection. The grader
(``grader.py``) runs numerical gradient checks, compares with minires' own layers and recognises
the usual mistakes; the reference solutions are in ``solutions/``.
"""
from .grader import EXERCISES, Result, grade_directory, grade_module, reference_module
from .sheet import SheetExistsError, start, strip_solutions
