"""Reference solutions of the gradient-check exercises (the sheet is these files without the solutions).

Each file holds the given forward pass and the backward pass to write; the lines between
``# BEGIN SOLUTION`` and ``# END SOLUTION`` are what ``python -m minires.exercises start``
replaces by ``raise NotImplementedError``. Try the exercises before you read on!
"""
