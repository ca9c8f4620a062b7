"""The budget probe: one component trained on a stored pretrained model, evaluated along the way."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from core.records import ROOT
from mingpt import probe, profiles


def committed_root(tmp_path: Path) -> Path:
    """A root holding a copy of the committed cpu C seed-0 pretrained model only: nothing can be written
    into the repository's checkpoints."""
    source = ROOT / "minGPT" / "checkpoints" / "cpu" / "C"
    target = tmp_path / "minGPT" / "checkpoints" / "cpu" / "C"
    (target / "seed0").mkdir(parents=True)
    shutil.copy(source / "manifest.json", target / "manifest.json")
    shutil.copy(source / "seed0" / "pretrained.pt", target / "seed0" / "pretrained.pt")
    return tmp_path


def test_probe_evaluates_along_the_way_and_counts_lora_parameters(tmp_path):
    record = probe.probe("C", "lora", "double_hist", samples=256, lr=5e-3, evals=2, eval_samples=64, progress=False,
                         root=committed_root(tmp_path))
    assert [point["samples"] for point in record["curve"]] == [128, 256]
    model = profiles.profile("cpu")["C"].model
    assert record["model"] == f"{model.n_layer}/{model.n_head}/{model.n_embd}"
    assert record["trained_params"] == 10 * model.n_embd * model.n_layer  # MLP-only rank-1 LoRA: as n_S = 10
    recorded = json.loads((ROOT / "results" / "section5" / "cpu" / "C.json").read_text())
    committed = recorded["seeds"]["0"]["accuracy"]["pretrained"]                               # the committed model's
    assert record["pretrained_accuracy"] == {task: committed[task] for task in record["pretrained_accuracy"]}
    assert sorted(p.name for p in (tmp_path / "minGPT" / "checkpoints" / "cpu" / "C").rglob("*")) == \
        ["manifest.json", "pretrained.pt", "seed0"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(experiment="E"), "unknown experiment 'E'"),
    (dict(method="adapter"), "unknown method 'adapter'"),
    (dict(experiment="D", method="finetune"), "experiment D has no fine-tuning phase"),
    (dict(task="reverse"), "unknown task 'reverse'"),
    (dict(model="4x4x64"), "--model takes layers/heads/width"),
])
def test_probe_refuses_bad_arguments(kwargs, message):
    args = {**dict(experiment="C", method="prefix", task="sort_asc_add1", samples=64, lr=1e-2), **kwargs}
    with pytest.raises(ValueError, match=message):
        probe.probe(**args)


def test_a_prefix_probe_starts_from_the_experiments_init(tmp_path):
    """The probe's prefix is the committed ↗+1 prefix's first step: same init seed as the run recorded."""
    record = probe.probe("C", "prefix", "sort_asc_add1", samples=64, lr=1e-2, evals=1, eval_samples=16,
                         progress=False, root=committed_root(tmp_path))
    manifest = json.loads((ROOT / "minGPT" / "checkpoints" / "cpu" / "C" / "manifest.json").read_text())
    assert [record["init_seed"]] == manifest["minGPT/checkpoints/cpu/C/seed0/prefixes_sort_asc_add1.pt"]["prefix_seeds"]


def test_batch_size_sets_the_rows_per_step(tmp_path):
    """--batch-size 32: 64 samples are 2 steps of 32 rows, evaluated after each."""
    record = probe.probe("C", "prefix", "add1", samples=64, lr=1e-2, evals=2, eval_samples=16, progress=False,
                         root=committed_root(tmp_path), batch_size=32)
    assert record["phase"]["batch_size"] == 32
    assert [point["samples"] for point in record["curve"]] == [32, 64]


def test_a_fine_tuning_probe_trains_every_weight_of_a_copy(tmp_path):
    root = committed_root(tmp_path)
    record = probe.probe("C", "finetune", "double_hist", samples=512, lr=1e-3, evals=2, eval_samples=16,
                         progress=False, root=root)
    spec = profiles.profile("cpu")["C"]
    assert record["phase"] == {**dataclasses.asdict(spec.finetune), "samples": 512, "lr": 1e-3}
    recorded = json.loads((ROOT / "results" / "section5" / "cpu" / "C.json").read_text())
    assert record["trained_params"] == recorded["seeds"]["0"]["param_counts"]["model"]  # every weight
    assert [point["samples"] for point in record["curve"]] == [256, 512]
