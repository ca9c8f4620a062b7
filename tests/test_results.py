"""The committed runs: the paper's claims against our results files, and the checkpoint manifests."""

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from mingpt import checkpoint, experiments, paper, report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "results" / "section5").glob("*/*.json"))
MANIFESTS = sorted((ROOT / "minGPT" / "checkpoints").glob("*/*/manifest.json"))

# Claims a committed run does not meet, each with the reason; README and RESULTS.md report them.
# The test below requires the failures to be exactly these, so the list cannot go stale.
CPU_BUDGET = ("the cpu profile's budgets are far below the paper's (300k-1.2M pretraining samples, 64k-160k "
              "per prefix, 60k for LoRA, models of width 64-128)")
SHORTFALLS = {
    **{("cpu", "C", seed): {
        "why": CPU_BUDGET + "; the composition ↗+1 needs more depth and samples: 160k reach 2-18 %, and on this "
               "2-layer model a probe plateaus near 28 % (640k); a 4-layer one reaches 51 % after 1M (results/probes)",
        "claims": {"C: prefix_sort_asc_add1 on sort_asc_add1 >= 50.0 %"}} for seed in ("0", "1", "2")},
    **{("cpu", "D", seed): {
        "why": CPU_BUDGET + "; the rank-1 LoRA (1,536 parameters) learns H slowly: about 1 % after 60k samples, "
               "51 % after 1M and 58 % after 3M in probes (results/probes)",
        "claims": {"D: lora_mlp_attn_out on double_hist >= 85.0 %"}} for seed in ("0", "1", "2")},
}


def _runs():
    for path in RESULTS:
        data = json.loads(path.read_text())
        for seed, run in data["seeds"].items():
            yield pytest.param(path.parent.name, data["experiment"], seed, run,
                               id=f"{path.parent.name}-{data['experiment']}-seed{seed}")


@pytest.mark.parametrize("profile, experiment, seed, run", list(_runs()))
def test_committed_run_meets_the_papers_claims(profile, experiment, seed, run):
    failed = {str(claim) for claim, _, holds in paper.check(experiment, run["accuracy"]) if not holds}
    expected = SHORTFALLS.get((profile, experiment, seed), {"claims": set()})["claims"]
    assert failed == expected


@pytest.mark.parametrize("experiment", ["C", "D"])
def test_c_and_d_have_three_seeds(experiment):
    assert max(len(report.load(p, experiment)["seeds"]) for p in ("gpu", "cpu")
               if report.load(p, experiment)) >= 3


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_manifest_entries_match_their_files(manifest):
    entries = json.loads(manifest.read_text())
    assert entries
    for key, entry in entries.items():
        assert checkpoint.sha256(ROOT / key) == entry["sha256"], key
        for field in ("command", "profile", "seed", "hardware", "metrics"):
            assert field in entry, (key, field)


def test_committed_checkpoints_stay_under_30_mb():
    total = sum(p.stat().st_size for p in (ROOT / "minGPT" / "checkpoints").rglob("*") if p.is_file())
    assert total <= 30 * 2 ** 20


def _trained_with(entry: dict):
    """(phase, restarts) the current profile specifies for a manifest entry's component."""
    spec = experiments.profile(entry["profile"])[entry["experiment"]]
    if entry["method"] == "pretrain":
        return spec.pretrain, None
    if entry["method"] == "finetune":
        return spec.finetune, None
    if entry["method"] == "prefix":
        return next(p for g, p in spec.prefix_groups if list(g) == entry["tasks"]), spec.prefix_restarts
    return next(l.phase for l in spec.loras if list(l.targets) == entry["targets"]), None


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_committed_components_match_the_current_profiles(manifest):
    """A profile edited after its run would make `make reproduce` retrain: every entry must match."""
    entries = json.loads(manifest.read_text())
    for key, entry in entries.items():
        phase, restarts = _trained_with(entry)
        if entry["method"] != "pretrain":  # trained from the committed pretrained model of its seed
            assert entry["base_sha256"] == entries[key.rsplit("/", 1)[0] + "/pretrained.pt"]["sha256"], key
        assert entry["phase"] == asdict(phase), key
        if restarts is not None:
            assert entry["restarts"] == restarts, key


def test_results_md_is_rendered_from_the_committed_files():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
    render_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_results)
    assert (ROOT / "RESULTS.md").read_text() == render_results.render(), "run python scripts/render_results.py"
