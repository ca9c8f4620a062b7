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


def test_a_fine_tuned_model_is_evaluated_as_committed(tmp_path):
    """The fine-tuned model is committed in half precision: the model evaluated right after training must be
    that file's, so its recorded accuracy reproduces from the committed checkpoint."""
    import torch
    from mingpt import checkpoint
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    spec = runner.specs["A"]
    base = runner.pretrained(spec, 0)
    trained = runner.finetuned(spec, 0, base, "sort_desc")
    path = runner.paths.component("A", 0, "finetuned_sort_desc")
    committed = checkpoint.load_model_from(checkpoint.read(path), spec.model.config(spec.prefix_len), path)
    for (name, a), b in zip(trained.state_dict().items(), committed.state_dict().values()):
        assert torch.equal(a, b), name


def test_show_profile_prints_every_resolved_phase(capsys):
    experiments.main(["--show-profile", "cpu"])
    out = capsys.readouterr().out
    assert "B: 1 layer(s) × 4 head(s) × width 128, no LayerNorm before attention, n_S = 1" in out
    lines = {" ".join(line.split()) for line in out.splitlines()}
    assert "prefixes ↗ ↘ +1 +2 ×4 inits 64,000 samples 64 rows lr 0.01 cosine, warm-up 20 (1,000 steps)" in lines
    assert "rank-1 LoRA mlp+attn_out on H 60,000 samples 64 rows lr 0.005 cosine, warm-up 20 (938 steps)" in lines
    experiments.main(["--show-profile", "paper"])
    lines = {" ".join(line.split()) for line in capsys.readouterr().out.splitlines()}
    assert "prefixes ↗+1 H 32,000,000 samples 64 rows lr 5e-05 constant (500,000 steps)" in lines
