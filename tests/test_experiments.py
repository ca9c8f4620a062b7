"""The experiment runner's cache of trained components: what it loads and when it trains again."""

import json
from dataclasses import replace

from mingpt import experiments


def _manifest(runner: experiments.Runner, experiment: str) -> dict:
    return json.loads((runner.paths.checkpoints / experiment / "manifest.json").read_text())


def test_components_retrain_when_their_pretrained_model_changes(tmp_path):
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    runner.run("A")
    before = _manifest(runner, "A")
    runner.run("A")  # everything is stored: loads, trains nothing
    assert _manifest(runner, "A") == before

    spec = runner.specs["A"]
    runner.specs["A"] = replace(spec, pretrain=replace(spec.pretrain, lr=spec.pretrain.lr / 2))
    runner.run("A")
    after = _manifest(runner, "A")
    pretrained = lambda manifest: manifest["minGPT/checkpoints/quick/A/seed0/pretrained.pt"]["sha256"]
    assert pretrained(after) != pretrained(before)
    downstream = [key for key, entry in after.items() if entry["method"] != "pretrain"]
    assert len(downstream) == 2  # the fine-tuned model and the prefix
    for key in downstream:
        assert after[key]["base_sha256"] == pretrained(after), key
        assert after[key]["sha256"] != before[key]["sha256"], key
