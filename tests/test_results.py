"""The committed runs: the paper's claims against our results files, and the checkpoint manifests."""

import importlib.util
import json
from dataclasses import asdict

import pytest

from core.checkpoint import read, sha256
from core.records import ROOT
from mingpt import components, experiments, paper, report
from mingpt.checkpoint import load_model_from

RESULTS = sorted((ROOT / "results" / "section5").glob("*/*.json"))
MANIFESTS = sorted((ROOT / "minGPT" / "checkpoints").glob("*/*/manifest.json"))

# Claims a committed run does not meet, each with the reason; README and RESULTS.md report them.
# The test below requires the failures to be exactly these, so the list cannot go stale.
SHORTFALLS = {
    ("cpu", "B", "0"): {
        "why": "drawn from independent init seeds since 2026-12-02, the ↘ prefix (best of 4 inits, 64k samples each) "
               "also sorts 2.47 % of inputs ascending, above the 2 % bound (the inits seed + k gave at most 1.53 %)",
        "claims": {"B: prefix_sort_desc on sort_asc <= 2.0 %"}},
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


@pytest.mark.parametrize("experiment", ["A", "C", "D"])
def test_the_cpu_profiles_a_c_d_hold_every_claim_on_seeds_0_to_2(experiment):
    """Issues #16 and #26: the run anyone can repeat on a 2-core CPU shows every claim of Sections 5-6 on
    three seeds (B's shortfall is in SHORTFALLS)."""
    seeds = report.load("cpu", experiment)["seeds"]
    assert sorted(seeds) == ["0", "1", "2"]
    for seed, run in seeds.items():
        failed = [str(claim) for claim, _, holds in paper.check(experiment, run["accuracy"]) if not holds]
        assert failed == [], (seed, failed)


# Issue #26, item 1: each negative prefix and the rival whose samples it gets at least
NEGATIVE_PREFIX_RIVALS = {"A": ("prefix_sort_desc", "finetuned_sort_desc"),
                          "C": ("prefix_double_hist", "prefix_sort_asc_add1"),
                          "D": ("prefix_double_hist", "lora_mlp_attn_out")}


@pytest.mark.parametrize("experiment", sorted(NEGATIVE_PREFIX_RIVALS))
def test_each_negative_prefix_of_the_cpu_profile_had_its_best_chance(experiment):
    """Issue #26: the failing prefix trains on at least its rival's samples, is screened over >= 4 inits
    and on seed 0 over >= 3 learning rates a factor >= 3 apart, each screen on 1M samples (or the full
    budget where smaller); the results record the screen and the manifest the run kept."""
    data = report.load("cpu", experiment)
    spec = data["spec"]
    prefix, rival = NEGATIVE_PREFIX_RIVALS[experiment]
    budget = report.row_samples(spec, prefix)
    assert budget >= report.row_samples(spec, rival)
    (search,) = [s for s in spec["searches"] if f"prefix_{s['task']}" == prefix]
    phase = next(phase for group, phase in spec["prefix_groups"] if search["task"] in group)
    lr, screen = phase["lr"], min(1_000_000, budget)
    rates = sorted({lr, *search["sweep_lrs"]})
    assert search["restarts"] >= 4 and len(rates) >= 3
    assert all(high / low >= 3 - 1e-9 for low, high in zip(rates, rates[1:]))
    manifest = json.loads((ROOT / "minGPT" / "checkpoints" / "cpu" / experiment / "manifest.json").read_text())
    for seed, run in data["seeds"].items():
        screened = run["search"][prefix]
        assert {r["restart"] for r in screened} == set(range(search["restarts"]))
        assert {r["lr"] for r in screened} == (set(rates) if seed == "0" else {lr})
        assert all(0 <= r["screen_samples"] - screen < phase["batch_size"] for r in screened)  # whole steps
        (chosen,) = [r for r in screened if r.get("chosen")]
        entry = manifest[f"minGPT/checkpoints/cpu/{experiment}/seed{seed}/prefixes_{search['task']}.pt"]
        assert entry["chosen"] == {k: chosen[k] for k in ("lr", "restart", "init_seed")}


@pytest.mark.parametrize("profile, experiment, seed, run", [r for r in _runs() if r.values[1] in ("C", "D")])
def test_each_lora_has_exactly_its_prefixs_parameter_count(profile, experiment, seed, run):
    """D: rank-1 LoRA of MLP + attention output and the n_S = 12 prefix, 12·d·L each; C: MLP-only and
    n_S = 10, 10·d·L each (d, L: the results file's model)."""
    spec = json.loads((ROOT / "results" / "section5" / profile / f"{experiment}.json").read_text())["spec"]
    d, n_layer = spec["model"]["n_embd"], spec["model"]["n_layer"]
    lora, per_layer = {"C": ("lora_mlp", 10), "D": ("lora_mlp_attn_out", 12)}[experiment]
    assert run["param_counts"]["prefix"] == run["param_counts"][lora] == per_layer * d * n_layer


@pytest.mark.parametrize("profile, experiment, seed, run", list(_runs()))
def test_each_recorded_seed_comes_from_the_committed_models_and_the_current_profile(profile, experiment, seed, run):
    """A seed left from an earlier profile (other models, other phases) must not sit beside the current ones."""
    data = report.load(profile, experiment)
    spec = experiments.profile(profile)[experiment]
    assert data["spec"] == json.loads(json.dumps(asdict(spec)))
    manifest = json.loads((ROOT / "minGPT" / "checkpoints" / profile / experiment / "manifest.json").read_text())
    pretrained = manifest[f"minGPT/checkpoints/{profile}/{experiment}/seed{seed}/pretrained.pt"]
    assert run["trained_from"]["base_sha256"] == pretrained["sha256"]
    assert run["accuracy"]["pretrained"] == pretrained["metrics"]["pretrained"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_manifest_entries_match_their_files(manifest):
    """Every entry matches its file; a seed with results has metrics for each of its components (a seed
    still training across sessions has components stored before its evaluation)."""
    entries = json.loads(manifest.read_text())
    assert entries
    results = ROOT / "results" / "section5" / manifest.parent.parent.name / f"{manifest.parent.name}.json"
    evaluated = set(json.loads(results.read_text())["seeds"]) if results.exists() else set()
    for key, entry in entries.items():
        assert sha256(ROOT / key) == entry["sha256"], key
        for field in ("command", "profile", "seed", "hardware"):
            assert field in entry, (key, field)
        if str(entry["seed"]) in evaluated:
            assert "metrics" in entry, key


def test_committed_checkpoints_stay_under_30_mb():
    total = sum(p.stat().st_size for p in (ROOT / "minGPT" / "checkpoints").rglob("*") if p.is_file())
    assert total <= 30 * 2 ** 20


def _trained_with(entry: dict):
    """(phase, restarts, prefix init seeds) the current profile specifies for a manifest entry's component."""
    spec = experiments.profile(entry["profile"])[entry["experiment"]]
    if entry["method"] == "pretrain":
        return spec.pretrain, None, None
    if entry["method"] == "finetune":
        return spec.finetune, None, None
    if entry["method"] == "prefix":
        group = tuple(entry["tasks"])
        phase = next((p for g, p in spec.prefix_groups if g == group), None)
        assert phase is not None, f"the {entry['profile']} profile's {entry['experiment']} trains no prefix group {group}"
        return (phase, spec.restarts(group),
                list(components.prefix_seeds(spec, entry["seed"], group)))
    return next(l.phase for l in spec.loras if list(l.targets) == entry["targets"]), None, None


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_committed_components_match_the_current_profiles(manifest):
    """A profile edited after its run would make `make reproduce` retrain: every entry must match."""
    entries = json.loads(manifest.read_text())
    for key, entry in entries.items():
        phase, restarts, prefix_seeds = _trained_with(entry)
        if entry["method"] != "pretrain":  # trained from the committed pretrained model of its seed
            assert entry["base_sha256"] == entries[key.rsplit("/", 1)[0] + "/pretrained.pt"]["sha256"], key
        assert entry["phase"] == asdict(phase), key
        if restarts is not None:
            assert entry["restarts"] == restarts, key
            assert entry["prefix_seeds"] == prefix_seeds, key
        spec = experiments.profile(entry["profile"])[entry["experiment"]]
        if entry["method"] != "pretrain":
            assert entry.get("curve_points") == (spec.curve_points or None), key
        search = spec.search(entry["tasks"][0]) if entry["method"] == "prefix" and len(entry["tasks"]) == 1 else None
        if search is not None:  # the search's settings and the learning rates this seed screens
            assert entry["search"] == {**json.loads(json.dumps(asdict(search))),
                                       "lrs_screened": list(search.lrs(phase, entry["seed"]))}, key


def test_results_md_and_the_readmes_claims_are_rendered_from_the_committed_files():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
    render_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_results)
    assert (ROOT / "RESULTS.md").read_text() == render_results.render(), "run python scripts/render_results.py"
    readme = (ROOT / "README.md").read_text()
    assert readme == render_results.render_readme(readme), "run python scripts/render_results.py"
    with pytest.raises(ValueError, match="must hold the lines"):
        render_results.render_readme(readme.replace(render_results.GLANCE_END, ""))


def _curve_runs():
    """(profile, experiment, seed, row) of every prefix row with a learning curve in a committed results file."""
    for path in RESULTS:
        data = json.loads(path.read_text())
        for seed, run in data["seeds"].items():
            for row in run.get("curves", {}):
                if row.startswith("prefix_"):
                    yield path.parent.name, data["experiment"], seed, row


CURVES = list(_curve_runs())
SEARCHED = [c for c in CURVES if c[3] in report.load(c[0], c[1])["seeds"][c[2]].get("search", {})]


def _reaching_past_its_screen(curve_run) -> bool:
    profile, experiment, seed, row = curve_run
    run = report.load(profile, experiment)["seeds"][seed]
    return run["curves"][row][-1][0] > run["search"][row][0]["screen_samples"]


@pytest.mark.parametrize("pick", ["highest", "continued"])
def test_the_last_point_of_a_committed_curve_reproduces_from_its_checkpoint(pick):
    """The learning curve's last point was measured on the live prefix during training; loading the committed
    pretrained model and prefix and evaluating them on the same 3,200 test inputs must give it exactly.
    Checked on the curve whose last point is highest (a 0 % point would hold for almost any prefix), and on a
    searched prefix continued past its screen (its stored prefix is the continued run's, not a screened one)."""
    assert CURVES, "no committed results file records learning curves"
    last = lambda c: report.load(c[0], c[1])["seeds"][c[2]]["curves"][c[3]][-1][1]
    candidates = CURVES if pick == "highest" else [c for c in SEARCHED if _reaching_past_its_screen(c)]
    assert candidates, "no committed searched prefix was continued past its screen"
    profile, experiment, seed, row = max(candidates, key=last)
    run = report.load(profile, experiment)["seeds"][seed]
    folder = ROOT / "minGPT" / "checkpoints" / profile / experiment / f"seed{seed}"
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    key = lambda path: path.relative_to(ROOT).as_posix()
    base = load_model_from(read(folder / "pretrained.pt", manifest[key(folder / "pretrained.pt")]["sha256"]))
    task = row[len("prefix_"):]
    stored = next(p for p in folder.glob("prefixes_*.pt") if task in read(p)["prefixes"])
    prefix = read(stored, manifest[key(stored)]["sha256"])["prefixes"][task]
    recomputed = components.accuracies(base.eval(), (task,), prefix, 3200)[task]
    if pick == "highest":
        assert recomputed > 50  # a curve that ends high: the check below could not pass by accident
    assert round(recomputed, 4) == run["curves"][row][-1][1] == round(run["accuracy"][row][task], 4)


def _trained_rows(spec: dict, run: dict):
    """(row, the task it is trained on) of every row of a results entry but the pretrained model's."""
    lora_tasks = {lora["name"]: lora["task"] for lora in spec["loras"]}
    for row in run["accuracy"]:
        if row != "pretrained":
            yield row, lora_tasks.get(row) or row.split("_", 1)[1]


def _records_curves(profile: str, experiment: str) -> bool:
    return bool(report.load(profile, experiment)["spec"].get("curve_points"))


@pytest.mark.parametrize("profile, experiment, seed, run", [r for r in _runs() if _records_curves(*r.values[:2])])
def test_every_trained_row_has_a_learning_curve_ending_at_its_accuracy(profile, experiment, seed, run):
    """Issue #26: in a profile that records learning curves, every trained row has at least 10 points on its
    own task, in increasing sample counts, the last the accuracy the results report for that row and task."""
    spec = report.load(profile, experiment)["spec"]
    for row, task in _trained_rows(spec, run):
        curve = run.get("curves", {}).get(row)
        assert curve and len(curve) >= 10, (row, curve)
        samples = [n for n, _ in curve]
        assert samples == sorted(set(samples)), row
        assert curve[-1][1] == round(run["accuracy"][row][task], 4), row
        assert curve[-1][0] >= report.row_samples(spec, row), row  # at the end of the row's training


@pytest.mark.parametrize("curve_run", SEARCHED, ids=lambda c: "-".join(c))
def test_a_searched_prefix_reports_its_best_screened_run_and_that_runs_curve(curve_run):
    """The chosen run is the best screened one (accuracy at the end of the screen, then the lower loss), the only
    one marked, and the row's curve starts with its screen curve (continued, when the screen is shorter)."""
    profile, experiment, seed, row = curve_run
    run = report.load(profile, experiment)["seeds"][seed]
    screened, curve = run["search"][row], run["curves"][row]
    best = max(screened, key=lambda r: (r["screen_accuracy"], -r["screen_loss"]))
    assert [r for r in screened if r["chosen"]] == [best]
    assert curve[:len(best["curve"])] == best["curve"]
    assert best["curve"][-1] == [best["screen_samples"], round(best["screen_accuracy"], 4)]  # runs before 2026-12-07 kept it unrounded
    assert len({r["screen_samples"] for r in screened}) == 1  # every run screened on the same budget
