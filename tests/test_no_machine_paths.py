"""What a user reads names nothing outside the repository: no absolute path of the machine a notebook ran
on, and no file of the team's (../shared/..., its PAPER.md or NOTES.md), in committed notebook outputs, README.md, RESULTS.md or docs/."""

import json
import re
from pathlib import Path

import pytest

from core.records import ROOT

OUTSIDE = re.compile(r"(?<![\w.~])/(?:work|home|tmp|root|mnt|opt|var|Users)/|\.\./shared\b|\b(?:PAPER|NOTES)\.md\b")


def _documents():
    notebooks = sorted(ROOT.glob("*.ipynb")) + sorted((ROOT / "minGPT").glob("*.ipynb"))
    return notebooks + [ROOT / "README.md", ROOT / "RESULTS.md"] + sorted((ROOT / "docs").glob("*.md"))


def _texts(path: Path):
    """(where, text) of what a reader sees: every cell and output of a notebook, or the whole page."""
    if path.suffix != ".ipynb":
        yield path.name, path.read_text()
        return
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        yield f"{path.name} cell {i}", "".join(cell["source"])
        for output in cell.get("outputs", []):
            yield f"{path.name} cell {i} output", "".join(output.get("text", "")) + json.dumps(output.get("data", {}))


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_names_nothing_outside_the_repository(path):
    found = [(where, match.group(0)) for where, text in _texts(path) for match in OUTSIDE.finditer(text)]
    assert not found, found


def test_the_pattern_finds_what_it_must():
    assert OUTSIDE.search("wrote /work/main/results/x.json") and OUTSIDE.search("see `../shared/NOTES.md`")
    assert OUTSIDE.search("the claim (PAPER.md, Section 3)")   # the team's files, which users do not have
    assert not OUTSIDE.search("results/section4/x.json and minGPT/01.ipynb, 1/4/256")
