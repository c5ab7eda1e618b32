"""The guided notebooks (demos/notebooks/): run end to end, paired .ipynb in sync, answers collapsed.

Each notebook is a jupytext percent-format ``.py`` file (the source, diffable) with a paired
``.ipynb`` generated from it. Here every notebook runs in a Jupyter kernel (nbclient), on the real
CIFAR-10 subset when ``MINIRES_DATA`` holds it and on stand-in images otherwise; notebook 2 takes
the reference solutions of the exercises as "the student's" layers (``MINIRES_EXERCISES``).
"""
import os
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

from minires.exercises.sheet import SOLUTIONS_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "demos" / "notebooks").glob("[0-9]_*.py"))
REGENERATE = "jupytext --to ipynb demos/notebooks/*.py"


def _cells(notebook):
    return [(cell.cell_type, cell.source, cell.metadata.get("jupyter", {})) for cell in notebook.cells]


def test_the_three_notebooks_are_there():
    assert [path.name[0] for path in NOTEBOOKS] == ["1", "2", "3"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_paired_ipynb_is_in_sync_with_its_source(path):
    paired = path.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: {REGENERATE}"
    assert _cells(nbformat.read(paired, as_version=4)) == _cells(jupytext.read(path)), \
        f"{paired.name} differs from {path.name}: {REGENERATE}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_why_question_has_its_answer_collapsed_below_it(path):
    cells = jupytext.read(path).cells
    questions = [i for i, cell in enumerate(cells) if cell.cell_type == "markdown" and cell.source.startswith("**Why?**")]
    assert questions, f"{path.name} asks no question"
    for i in questions:
        answer = cells[i + 1]
        assert answer.source.startswith("**Answer.**"), f"{path.name}: no answer below {cells[i].source[:60]!r}"
        assert answer.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: answer not collapsed"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_end_to_end(path, monkeypatch):
    monkeypatch.setenv("MINIRES_EXERCISES", str(SOLUTIONS_DIR))       # notebook 2: the "student's" layers
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = jupytext.read(path)
    # the timeout guards against a hang; each notebook takes well under 2 minutes on 2 shared cores
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()   # raises CellExecutionError, with the cell and its traceback, when a cell fails
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "Traceback" not in printed
