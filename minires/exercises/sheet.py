"""Writing the exercise sheet: the reference files with their solutions taken out.

A reference file (``solutions/ex*.py``) marks each answer with two comment lines,
``# BEGIN SOLUTION`` and ``# END SOLUTION``. The sheet is the same file with the marked lines
replaced by ``raise NotImplementedError(...)``: the docstrings, the given forward passes and the
first lines of each backward (unpacking the cache) stay. One source for both, so the sheet and
the solutions can never drift apart.
"""
from pathlib import Path

from . import solutions
from .grader import EXERCISES

SOLUTIONS_DIR = Path(solutions.__file__).parent
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"

README = """\
# Gradient-check exercises (minires)

Seven backward passes to write, from a ReLU to a residual block. Each file holds the forward
pass (given), what to derive, the shapes, hints, and the functions to complete: replace each
`raise NotImplementedError(...)` by your code. NumPy only; no loops over pixels or samples.

{exercises}

Exercise 7 builds its residual block from YOUR ReLU, batch norm and convolution (exercises 1, 5
and 6) as soon as they pass; until then it uses minires' and says so.

Check your work at any time (all exercises, or some by number), from inside this folder

    python -m minires.exercises check
    python -m minires.exercises check 4 5

or from anywhere else

    python -m minires.exercises check {directory} 4 5

Each exercise is graded by numerical gradient checks (central differences in float64, with a
*random* upstream gradient), by comparison with minires' own layers on the same inputs, and by
probes for the usual mistakes, which print a hint. Exercises 5 and 7 ask you to derive the
gradient on paper first; after a failed attempt the grader shows the derivation's result. The
exit code is 0 when every chosen exercise passes.
"""


class SheetExistsError(FileExistsError):
    """``start`` would overwrite a sheet that is already there."""


def strip_solutions(source, filename="<source>"):
    """``source`` with every marked solution replaced by ``raise NotImplementedError``."""
    lines, function, inside = [], None, False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("def "):
            function = stripped[len("def "):].split("(")[0]
        if stripped == BEGIN:
            if inside or function is None:
                raise ValueError(f"{filename}, line {number}: misplaced {BEGIN}")
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(f'{indent}raise NotImplementedError("{function}: your code here (see the docstring)")')
            inside = True
        elif stripped == END:
            if not inside:
                raise ValueError(f"{filename}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{filename}: {BEGIN} without {END}")
    return "\n".join(lines) + "\n"


def sheet_files(directory):
    """``{file name: content}`` of the sheet for ``directory``."""
    listing = "\n".join(f"{e.number}. `{e.name}.py`: {e.title}" for e in EXERCISES)
    files = {"README.md": README.format(exercises=listing, directory=directory)}
    for exercise in EXERCISES:
        name = f"{exercise.name}.py"
        files[name] = strip_solutions((SOLUTIONS_DIR / name).read_text(), name)
    return files


def start(directory, force=False):
    """Write the sheet into ``directory``; refuses to overwrite its files unless ``force``.

    Returns the paths written.
    """
    directory = Path(directory)
    files = sheet_files(directory)
    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        raise SheetExistsError(f"{directory} already holds {', '.join(existing)}: your work would be "
                               "overwritten. Choose another folder, or pass --force to start afresh.")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        (directory / name).write_text(content)
        paths.append(directory / name)
    return paths
