"""scripts/copy_profile.py on a made-up profile in a temporary root: what it copies, records and refuses."""

import importlib.util
import json

import pytest
import torch

from core import checkpoint
from core.records import ROOT

_spec = importlib.util.spec_from_file_location("copy_profile", ROOT / "scripts" / "copy_profile.py")
copy_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(copy_profile)


def stored_profile(root, profile="cpu-next"):
    """One experiment folder with a stored component and its manifest entry, and a results file."""
    folder = root / "minGPT" / "checkpoints" / profile / "D"
    (folder / "seed0").mkdir(parents=True)
    component = folder / "seed0" / "prefixes_double_hist.pt"
    torch.save({"prefixes": {"double_hist": torch.arange(6.0)}}, component)
    key = component.relative_to(root).as_posix()
    entry = {"profile": profile, "command": f"python -m mingpt.experiments --profile {profile} D --seeds 0",
             "sha256": checkpoint.sha256(component)}
    (folder / "manifest.json").write_text(json.dumps({key: entry}))
    results = root / "results" / "section5" / profile
    results.mkdir(parents=True)
    (results / "D.json").write_text(json.dumps({"experiment": "D", "profile": profile, "seeds": {}}))
    return component, key


def test_move_rewrites_the_profile_and_says_where_each_file_came_from(tmp_path):
    component, key = stored_profile(tmp_path)
    assert copy_profile.copy_profile("cpu-next", "cpu", results=True, move=True, root=tmp_path) == 1
    manifest = json.loads((tmp_path / "minGPT/checkpoints/cpu/D/manifest.json").read_text())
    assert list(manifest) == ["minGPT/checkpoints/cpu/D/seed0/prefixes_double_hist.pt"]
    entry = manifest["minGPT/checkpoints/cpu/D/seed0/prefixes_double_hist.pt"]
    assert entry["profile"] == "cpu" and entry["copied_from"] == {"profile": "cpu-next", "key": key}
    assert entry["command"].startswith("python -m mingpt.experiments --profile cpu-next")  # what trained it
    copied = torch.load(tmp_path / "minGPT/checkpoints/cpu/D/seed0/prefixes_double_hist.pt", weights_only=True)
    assert torch.equal(copied["prefixes"]["double_hist"], torch.arange(6.0))
    results = json.loads((tmp_path / "results/section5/cpu/D.json").read_text())
    assert results["profile"] == "cpu" and results["copied_from"] == "cpu-next"
    assert not component.parent.parent.exists() and not (tmp_path / "results/section5/cpu-next").exists()


def test_move_refuses_while_a_training_state_would_be_lost(tmp_path):
    component, _ = stored_profile(tmp_path)
    state = component.parent / "training" / "prefixes_double_hist.abc.continued.train.pt"
    state.parent.mkdir()
    state.write_bytes(b"in progress")
    with pytest.raises(ValueError, match="1 file\\(s\\) no manifest lists .*continued.train.pt.*in progress"):
        copy_profile.copy_profile("cpu-next", "cpu", results=True, move=True, root=tmp_path)
    assert state.exists() and not (tmp_path / "minGPT/checkpoints/cpu").exists()  # nothing copied, nothing lost


def test_a_file_that_differs_from_its_manifest_is_not_copied(tmp_path):
    component, _ = stored_profile(tmp_path)
    torch.save({"prefixes": {"double_hist": torch.zeros(6)}}, component)
    with pytest.raises(ValueError, match="does not match its manifest's sha256"):
        copy_profile.copy_profile("cpu-next", "cpu", root=tmp_path)


def test_copying_only_some_components_writes_no_manifest_where_none_was_selected(tmp_path):
    stored_profile(tmp_path)
    assert copy_profile.copy_profile("cpu-next", "cpu", components=("pretrained",), root=tmp_path) == 0
    assert not (tmp_path / "minGPT/checkpoints/cpu/D").exists()
