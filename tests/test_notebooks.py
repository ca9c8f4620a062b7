"""Every notebook runs top to bottom in the quick setting (on a copy: committed outputs stay as they are)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

NOTEBOOKS = run_notebooks.notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_in_quick_setting(path, tmp_path):
    before = path.read_bytes()
    nb = run_notebooks.run_notebook(path, quick=True, out_dir=tmp_path, timeout=900)
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert path.read_bytes() == before  # the committed notebook is untouched


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"
