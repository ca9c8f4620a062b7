"""Every notebook runs top to bottom in the quick setting (on a copy: committed outputs stay as they are).

The paper's published files (README, "With the paper's published files") are generated in their layouts from
this project's models and prefixes (tests/paper_layout.py): notebooks 01, 02 and llama_token_vs_soft_token run
with them, the others without, and prefix_bias_only and longer_prefixes run a second time with them, so that
each notebook's code path for the files and the default path both run."""

import importlib.util
from pathlib import Path

import pytest
import torch
from paper_layout import write_dart_prefix, write_mingpt_files, write_tensor

from core.records import ROOT
from lm import paper_files
from lm import virtual_tokens as vt
from lm.prefix_tune import load_prefixes
from lm.stand_ins import load_model

_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

NOTEBOOKS = run_notebooks.notebooks()
RUNS = ROOT / "results" / "prefix_tuning"


def _committed_prefixes(family: str, run: str) -> torch.Tensor:
    return load_prefixes(RUNS / run / "prefixes.pt", load_model(family))["prefixes"]


PAPER_FILES = {  # notebook -> writes that notebook's published files into a folder
    "01_cannot_learn_new_task.ipynb": lambda folder: write_mingpt_files(folder, "A"),
    "02_can_extract_pretrained_task.ipynb": lambda folder: write_mingpt_files(folder, "B"),
    "llama_token_vs_soft_token.ipynb": lambda folder: write_tensor(folder, paper_files.VIRTUAL_TOKENS, vt.matched_gaussian(
        vt.embedding_matrix(load_model("llama")), 300, torch.Generator().manual_seed(0))[:, None]),
    "prefix_bias_only.ipynb": lambda folder: write_dart_prefix(folder, _committed_prefixes("llama", "llama-table_to_text-n1")[0]),
    "longer_prefixes.ipynb": lambda folder: write_tensor(folder, paper_files.LONGER_PREFIXES,
                                                         _committed_prefixes("gpt2", "gpt2-classification-n10")),
}
WITH_FILES_FIRST = ("01_cannot_learn_new_task.ipynb", "02_can_extract_pretrained_task.ipynb", "llama_token_vs_soft_token.ipynb")
WITH_FILES_AGAIN = ("prefix_bias_only.ipynb", "longer_prefixes.ipynb")


def run_quick(path: Path, tmp_path: Path, monkeypatch, with_files: bool):
    """Run one notebook in the quick setting, with or without the paper's files; return its outputs as text."""
    before = path.read_bytes()
    monkeypatch.delenv("PAPER_FILES_DIR", raising=False)
    if with_files:
        PAPER_FILES[path.name](tmp_path / "paper_files")
        monkeypatch.setenv("PAPER_FILES_DIR", str(tmp_path / "paper_files"))
    nb = run_notebooks.run_notebook(path, quick=True, out_dir=tmp_path, timeout=900)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert path.read_bytes() == before  # the committed notebook is untouched
    shown = str(outputs)
    if path.name in PAPER_FILES:  # with the files their results are shown; without them the files are named
        missing = "Without the paper's files" if path.parent.name == "minGPT" else "is not in"
        assert (missing not in shown) if with_files else (missing in shown)
    return shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_in_quick_setting(path, tmp_path, monkeypatch):
    run_quick(path, tmp_path, monkeypatch, with_files=path.name in WITH_FILES_FIRST)


@pytest.mark.parametrize("name", WITH_FILES_AGAIN)
def test_notebook_runs_with_the_papers_files(name, tmp_path, monkeypatch):
    shown = run_quick(ROOT / name, tmp_path, monkeypatch, with_files=True)
    assert "the paper's prefix" in shown


def test_the_notebooks_are_the_papers_eight():
    """The README's notebook table, exactly: a renamed or lost notebook fails here, not silently in the run."""
    assert [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS] == [
        "constructions.ipynb", "llama_token_vs_soft_token.ipynb", "longer_prefixes.ipynb", "prefix_bias_only.ipynb",
        "minGPT/01_cannot_learn_new_task.ipynb", "minGPT/02_can_extract_pretrained_task.ipynb",
        "minGPT/03_can_learn_new_task_same_attention.ipynb", "minGPT/04_prefix_tuning_vs_lora.ipynb"]
