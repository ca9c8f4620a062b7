"""The experiment runner's cache of trained components: what it loads and when it trains again."""

import json
from dataclasses import replace

import torch

from core.checkpoint import read
from mingpt import components, experiments, profiles
from mingpt.checkpoint import load_model_from


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
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    spec = runner.specs["A"]
    base = runner.components.pretrained(spec, 0)
    trained = runner.components.finetuned(spec, 0, base, "sort_desc").model
    path = runner.paths.component("A", 0, "finetuned_sort_desc")
    committed = load_model_from(read(path), spec.model.config(spec.prefix_len), path)
    for (name, a), b in zip(trained.state_dict().items(), committed.state_dict().values()):
        assert torch.equal(a, b), name


def test_show_profile_prints_every_resolved_phase(capsys):
    experiments.main(["--show-profile", "cpu"])
    out = capsys.readouterr().out
    assert "B: 1 layer(s) × 4 head(s) × width 128, no LayerNorm before attention, n_S = 1" in out
    lines = {" ".join(line.split()) for line in out.splitlines()}
    assert "prefixes ↗ ↘ +1 +2 ×4 inits 64,000 samples 64 rows lr 0.01 cosine, warm-up 20 (1,000 steps)" in lines
    assert "rank-1 LoRA mlp+attn_out on H 3,000,000 samples 64 rows lr 0.002 cosine, warm-up 20 (46,875 steps)" in lines
    experiments.main(["--show-profile", "paper"])
    lines = {" ".join(line.split()) for line in capsys.readouterr().out.splitlines()}
    assert "prefixes ↗+1 H 32,000,000 samples 64 rows lr 5e-05 constant (500,000 steps)" in lines


def test_every_prefix_init_is_its_own_draw():
    """No prefix starts from another's vector: not C's ↗+1 from its ↗, not seed 1's ↗ from seed 0's ↘."""
    specs = profiles.profile("cpu")
    count = 4 + 4 * 4 + (4 + 1 + 4) + 4  # per seed: A ↘ ×4 inits; B's 4 ×4; C's 4 of the mix, ↗+1, H ×4; D H ×4
    seeds = [s for seed in range(3) for name in "ABCD" for group, _ in specs[name].prefix_groups
             for s in components.prefix_seeds(specs[name], seed, group)]
    assert len(seeds) == 3 * count
    assert len(set(seeds)) == len(seeds)
    # the committed components record these seeds: the scheme must not drift (15 hex digits of a sha256)
    assert components.prefix_seeds(specs["C"], 0, ("sort_asc_add1",)) == (610394100888815990,)
    gpu_b = profiles.profile("gpu")["B"]  # committed with seeds seed + k, restart by restart
    assert components.prefix_seeds(gpu_b, 1, profiles.MIX) == tuple(range(1, 17))


def test_a_prefix_retrains_when_its_init_seeds_change(tmp_path):
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    runner.run("A")
    key = "minGPT/checkpoints/quick/A/seed0/prefixes_sort_desc.pt"
    first = _manifest(runner, "A")
    before = first[key]
    assert before["prefix_seeds"] == list(components.prefix_seeds(runner.specs["A"], 0, ("sort_desc",)))
    screened = json.loads((tmp_path / "results/section5/quick/A.json").read_text())["seeds"]["0"]["search"]
    chosen = torch.load(tmp_path / key, weights_only=True)["chosen"]["sort_desc"]  # what the store kept
    assert [(r["lr"], r["restart"]) for r in screened["prefix_sort_desc"] if r["chosen"]] == \
        [(chosen["lr"], chosen["restart"])]  # the results mark exactly that run of the 3 screened
    assert before["chosen"] == chosen  # and the manifest names it (its phase holds the profile's lr)
    assert len(screened["prefix_sort_desc"]) == 3
    runner.specs["A"] = replace(runner.specs["A"], prefix_init="consecutive")
    runner.run("A")
    manifest = _manifest(runner, "A")
    assert manifest[key]["prefix_seeds"] == [0, 1] != before["prefix_seeds"]  # quick A: a search over 2 inits
    assert manifest[key]["sha256"] != before["sha256"]
    unchanged = {k: e["sha256"] for k, e in manifest.items() if k != key}  # only the prefix trained again
    assert unchanged == {k: e["sha256"] for k, e in first.items() if k != key}


def test_a_pretrained_model_retrains_when_the_profile_changes_its_shape(tmp_path, capsys):
    """A stored model of another width is trained again (not loaded into a config it does not fit)."""
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    spec = runner.specs["D"]
    assert runner.components.pretrained(spec, 0).config.n_embd == spec.model.n_embd
    wider = replace(spec, model=replace(spec.model, n_embd=2 * spec.model.n_embd))
    assert runner.components.pretrained(wider, 0).config.n_embd == 2 * spec.model.n_embd
    assert "model_config" in capsys.readouterr().out
    entry = _manifest(runner, "D")["minGPT/checkpoints/quick/D/seed0/pretrained.pt"]
    assert entry["model_config"]["n_embd"] == 2 * spec.model.n_embd


def test_every_trained_row_records_its_curve_when_trained_and_when_loaded(tmp_path):
    """Fine-tuning, prefix and LoRA curves reach the results whether the component trains now or is loaded,
    each ending at the accuracy the results report for that row on its own task."""
    runner = experiments.Runner("quick", root=tmp_path, device="cpu", progress=False)
    runner.specs["D"] = replace(runner.specs["D"], curve_points=3)
    rows = {"A": {"finetuned_sort_desc": "sort_desc", "prefix_sort_desc": "sort_desc"},
            "D": {"prefix_double_hist": "double_hist", "lora_mlp_attn_out": "double_hist"}}
    for experiment, own_task in rows.items():
        trained, loaded = runner.run(experiment), runner.run(experiment)
        assert loaded.curves == trained.curves and set(trained.curves) == set(own_task), experiment
        for row, task in own_task.items():
            assert len(trained.curves[row]) >= 3, row
            assert trained.curves[row][-1][1] == round(trained.accuracy[row][task], 4), row
