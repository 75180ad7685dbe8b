"""The researchers' notebooks: each runs top to bottom on the small grid (SMOKE=1), its .ipynb is the
twin of its percent-format .py, and no outputs are committed."""

import os
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired_and_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    twin = jupytext.read(path.with_suffix(".py"))
    assert [c.source for c in twin.cells] == [c.source for c in notebook.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path, request):
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("PAUSECAST_RESULTS", str(tmp_path))
    if path.stem == "02-model-vs-reality":
        # it predicts real runs: with this machine's calibration, never another machine's
        monkeypatch.setenv("PAUSECAST_OVERHEADS", str(request.getfixturevalue("machine_overheads")))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=dict(os.environ))
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    figures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "a notebook of figures drew none"
