"""Every notebook runs top to bottom in the quick setting (on a copy: committed outputs stay as they are).
Notebooks 01 and 02 run with a generated set of the paper's published files (tests/paper_layout.py), so
that their section on the paper's models runs with the files; 03 and 04 run without them."""

import importlib.util
from pathlib import Path

import pytest

from paper_layout import write_mingpt_files

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

NOTEBOOKS = run_notebooks.notebooks()
WITH_PAPER_FILES = {"01_cannot_learn_new_task.ipynb": "A", "02_can_extract_pretrained_task.ipynb": "B"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_in_quick_setting(path, tmp_path, monkeypatch):
    before = path.read_bytes()
    experiment = WITH_PAPER_FILES.get(path.name)
    monkeypatch.delenv("PAPER_FILES_DIR", raising=False)
    if experiment:
        write_mingpt_files(tmp_path / "paper_files", experiment)
        monkeypatch.setenv("PAPER_FILES_DIR", str(tmp_path / "paper_files"))
    nb = run_notebooks.run_notebook(path, quick=True, out_dir=tmp_path, timeout=900)
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    if path.parent.name == "minGPT":  # the paper's files section: their table with them, the files named without
        shown = str([o for cell in nb.cells if "paper_files_summary" in cell.source for o in cell.outputs])
        assert ("the paper's published files" if experiment else "Without the paper's files") in shown
    assert path.read_bytes() == before  # the committed notebook is untouched


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"
