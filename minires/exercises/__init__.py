"""Gradient-check exercises: write the backward passes yourself, and let minires grade them.

    python -m minires.exercises start DIR             # writes the sheet: README.md and ex1..ex7
    python -m minires.exercises check [DIR] [N ...]   # grades it (DIR: the current folder by default)

The exercises: ReLU, a linear layer, softmax cross-entropy, max pooling (overlapping windows,
ties), batch norm, col2im and conv2d, and a residual block (identity and projection shortcuts)
built from your own ReLU, batch norm and convolution. The grader (``grader.py``) runs numerical
gradient checks, compares with minires' own layers and recognises the usual mistakes
(``hints.py``); the reference solutions are in ``solutions/``; ``layers.py`` puts the sheet's
layers in one toolbox, yours where they pass.
"""
from .grader import EXERCISES, Result, grade_directory, grade_module, reference_module, sheet_toolbox
from .layers import toolbox
from .sheet import SheetExistsError, start, strip_solutions
