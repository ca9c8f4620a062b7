"""Accuracy tables in markdown from the results files, with the paper's numbers beside ours.

Used by scripts/render_results.py (RESULTS.md) and by the notebooks.
"""

import json
import math
import statistics
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

from core.records import ROOT

from . import paper, paper_files, profiles, tasks


def load(profile: str, experiment: str, root: Path = ROOT) -> Optional[dict]:
    """The results file of one experiment under one profile, or None."""
    path = root / "results" / "section5" / profile / f"{experiment}.json"
    return json.loads(path.read_text()) if path.exists() else None


def probes(root: Path = ROOT, **match) -> list:
    """(file name, record) of each budget probe (python -m mingpt.probe, results/probes/) whose fields equal
    `match`, e.g. probes(method="finetune", task="double_hist"), in file-name order."""
    records = [(path.name, json.loads(path.read_text())) for path in sorted((root / "results" / "probes").glob("*.json"))]
    return [(name, r) for name, r in records if all(r[field] == value for field, value in match.items())]


def cell(values, paper_value=None) -> str:
    text = f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    return text + (f" ({paper_value:.2f})" if paper_value is not None else "")


def table_lines(experiment: str, accuracy: dict) -> list:
    """Markdown lines of one accuracy table {row: {task: %}}, the paper's numbers in brackets."""
    return table(experiment, {"0": {"accuracy": accuracy}})


def table(experiment: str, seeds: dict) -> list:
    """Markdown lines: one row per results row, one column per task, mean ± std over seeds (paper)."""
    runs = list(seeds.values())
    rows = list(runs[0]["accuracy"])
    columns = [t for t in tasks.TASKS if any(t in runs[0]["accuracy"][r] for r in rows)]
    lines = ["| row | " + " | ".join(tasks.TASK_SYMBOLS[t] for t in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for task in columns:
            values = [run["accuracy"][row][task] for run in runs if task in run["accuracy"].get(row, {})]
            reference = paper.PAPER_ACCURACY.get(experiment, {}).get(row, {}).get(task)
            cells.append(cell(values, reference) if values else "")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def claims(experiment: str, seeds: dict) -> list:
    """Markdown lines: each of the paper's claims as this project's threshold reads it (mingpt.paper.CLAIMS),
    the paper's own number, every seed's accuracy with ✓ where the threshold holds, and how many hold per seed."""
    checks = {seed: paper.check(experiment, run["accuracy"]) for seed, run in seeds.items()}
    lines = ["| claim, with the project's threshold | paper | " + " | ".join(f"seed {seed}" for seed in checks) + " |",
             "|---|---|" + "---|" * len(checks)]
    for i, (claim, _, _) in enumerate(next(iter(checks.values()))):
        cells = [f"{results[i][1]:.2f} {'✓' if results[i][2] else '✗'}" for results in checks.values()]
        reported = "—" if claim.paper is None else f"{claim.paper:.2f}"
        lines.append(f"| {claim} | {reported} | " + " | ".join(cells) + " |")
    held = lambda results: sum(holds for _, _, holds in results)
    lines.append("| thresholds met | | " + " | ".join(f"{held(r)} of {len(r)}" for r in checks.values()) + " |")
    return lines


def summary(experiment: str, profile: str, root: Path = ROOT) -> str:
    """Markdown: the accuracy table and the claims of one experiment's recorded seeds under a profile."""
    data = load(profile, experiment, root)
    if data is None:
        return f"*No results for experiment {experiment} under the {profile} profile.*"
    seeds = data["seeds"]
    hardware = " / ".join(sorted({run["hardware"] for run in seeds.values()}))
    return "\n".join([f"**Experiment {experiment}, {profile} profile**, seeds {', '.join(seeds)} ({hardware}); "
                      "accuracy in %, paper in brackets:", ""] + table(experiment, seeds) + [""]
                     + claims(experiment, seeds))


# ------------------------------------------------------------------------------ the claims at a glance

class GlanceLine(NamedTuple):
    """One line of the claims at a glance: the accuracies (row, task) of one experiment it shows, either each
    of them (averaged over seeds when several) or, per seed, the highest of them."""
    label: str
    experiment: str
    cells: Tuple[Tuple[str, str], ...]
    highest: bool = False
    params: bool = False   # also show the trained parameters of the (first) row's component


GLANCE = (
    GlanceLine("A: pretrained on ↗, accuracy on ↗", "A", (("pretrained", "sort_asc"),)),
    GlanceLine("A: full fine-tuning learns ↘", "A", (("finetuned_sort_desc", "sort_desc"),)),
    GlanceLine("A: a prefix cannot learn ↘", "A", (("prefix_sort_desc", "sort_desc"),)),
    GlanceLine("B: each prefix elicits its own task (↗ / ↘ / +1 / +2)", "B", tuple((f"prefix_{t}", t) for t in paper.MIX)),
    GlanceLine("B: and stays off the other three tasks (the highest of its 12 accuracies)", "B",
               tuple((f"prefix_{p}", t) for p in paper.MIX for t in paper.MIX if p != t), highest=True),
    GlanceLine("C: prefixes elicit ↗ / ↘ / +1 / +2", "C", tuple((f"prefix_{t}", t) for t in paper.MIX)),
    GlanceLine("C: a prefix learns the composition ↗+1", "C", (("prefix_sort_asc_add1", "sort_asc_add1"),)),
    GlanceLine("C: a prefix cannot learn H", "C", (("prefix_double_hist", "double_hist"),), params=True),
    GlanceLine("C: full fine-tuning on H (no claim; at the `cpu` profile's 20k samples no reference either: "
               "1M-sample probes learn H, notebook 03)", "C", (("finetuned_double_hist", "double_hist"),)),
    GlanceLine("C: MLP-only rank-1 LoRA on H, as many parameters as the prefix (ours, not the paper's; not counted "
               "as support)", "C", (("lora_mlp", "double_hist"),), params=True),
    GlanceLine("D: an n_S = 12 prefix cannot learn H", "D", (("prefix_double_hist", "double_hist"),), params=True),
    GlanceLine("D: a rank-1 LoRA of MLP + attention output, as many parameters, learns H", "D",
               (("lora_mlp_attn_out", "double_hist"),), params=True),
)


def glance(profile_names, root: Path = ROOT) -> list:
    """Markdown lines: the claims of Sections 5-6 (GLANCE), the paper's numbers, this project's thresholds and
    each profile's committed seeds, with the training samples of each component."""
    lines = ["| claim | paper | our threshold | " + " | ".join(f"`{p}` profile" for p in profile_names) + " |",
             "|---|---|---|" + "---|" * len(profile_names)]
    for line in GLANCE:
        checked = [c for c in paper.CLAIMS if c.experiment == line.experiment and (c.row, c.task) in line.cells]
        reported = [paper.PAPER_ACCURACY.get(line.experiment, {}).get(row, {}).get(task) for row, task in line.cells]
        reported = [max(reported)] if line.highest else reported
        paper_cell = "—" if None in reported else " / ".join(f"{v:.2f}" for v in reported)
        cells = [_glance_cell(line, checked, load(p, line.experiment, root)) for p in profile_names]
        lines.append(f"| {line.label} | {paper_cell} | {_thresholds(checked, line.highest)} | " + " | ".join(cells) + " |")
    return lines


def _glance_cell(line: GlanceLine, checked, data: Optional[dict]) -> str:
    """Per seed (one value) or the mean over seeds (several), the samples trained on, and on how many seeds
    every threshold of the line holds."""
    if data is None or line.cells[0][0] not in next(iter(data["seeds"].values()))["accuracy"]:
        return "—"
    runs = data["seeds"]
    at = lambda run, row, task: run["accuracy"][row][task]
    if line.highest:
        values = " / ".join(f"{max(at(run, *c) for c in line.cells):.2f}" for run in runs.values())
    elif len(line.cells) == 1:
        values = " / ".join(f"{at(run, *line.cells[0]):.2f}" for run in runs.values())
    else:
        values = " / ".join(f"{statistics.mean(at(run, *c) for run in runs.values()):.2f}" for c in line.cells)
    seeds = f"seed {', '.join(runs)}" if len(runs) == 1 else f"seeds {', '.join(runs)}"
    averaged = len(runs) > 1 and len(line.cells) > 1 and not line.highest
    row = line.cells[0][0]
    params = ""
    if line.params:
        counts = next(iter(runs.values()))["param_counts"]
        params = f"; {counts['prefix' if row.startswith('prefix_') else row]:,} parameters"
    text = f"{values} ({'mean of ' if averaged else ''}{seeds}; {_samples(data['spec'], row)}{params})"
    if checked:
        met = sum(all(c.holds(at(run, c.row, c.task)) for c in checked) for run in runs.values())
        text += f" {'✓' if met == len(runs) else '✗'} {met} of {len(runs)}"
    return text


def _thresholds(checked, highest: bool) -> str:
    bounds = sorted({f"≥ {c.at_least:g}" if c.at_least is not None else f"≤ {c.at_most:g}" for c in checked})
    if not bounds:
        return "—"
    return bounds[0] + (" each" if len(checked) > 1 and not highest else "")


def row_samples(spec: dict, row: str) -> int:
    """The training samples of a results row's component, from the results file's spec."""
    if row == "pretrained":
        return spec["pretrain"]["samples"]
    if row.startswith("finetuned_"):
        return spec["finetune"]["samples"]
    if row.startswith("prefix_"):
        return next(phase["samples"] for group, phase in spec["prefix_groups"] if row[len("prefix_"):] in group)
    return next(lora["phase"]["samples"] for lora in spec["loras"] if lora["name"] == row)


def _samples(spec: dict, row: str) -> str:
    n = row_samples(spec, row)
    return f"{n / 1e6:g}M samples" if n >= 1e6 else f"{n / 1e3:g}k samples"


# ------------------------------------------------------------------------------ learning curves

# the profiles whose experiments record learning curves (Experiment.curve_points)
CURVE_PROFILES = tuple(p for p in profiles.PROFILES if any(e.curve_points for e in profiles.profile(p).values()))


def seed_curves(data: dict, row: str) -> dict:
    """{seed: (samples, accuracy)} of one row's learning curve in a results file's seeds (those that have it)."""
    curves = {}
    for seed, run in data["seeds"].items():
        points = run.get("curves", {}).get(row)
        if points:
            samples, accuracy = zip(*points)
            curves[seed] = (list(samples), list(accuracy))
    return curves


def mean_curve(curves: dict):
    """(samples, mean accuracy) over seeds at the sample counts every seed's curve has."""
    common = sorted(set.intersection(*(set(samples) for samples, _ in curves.values())))
    if not common:
        raise ValueError(f"the curves of seeds {sorted(curves)} share no sample count: they come from runs with "
                         "different phases or curve points; plot them without a mean")
    at = lambda samples, accuracy, s: accuracy[samples.index(s)]
    return common, [sum(at(*curve, s) for curve in curves.values()) / len(curves) for s in common]


def trend(samples, accuracy, n_eval: int, share: float = 0.5, z: float = 2.0) -> str:
    """"still rising" if a curve gained more than `z` sampling errors over the last `share` of its samples
    (from its last point at or below (1 - share) of the final sample count; each point an accuracy in %
    on `n_eval` inputs), "flat" if not, "too short to tell" without a point that early."""
    earlier = [a for s, a in zip(samples, accuracy) if s <= (1 - share) * samples[-1]]
    if not earlier:
        return "too short to tell"
    variance = lambda percent: (percent / 100) * (1 - percent / 100) / n_eval
    error = 100 * math.sqrt(variance(earlier[-1]) + variance(accuracy[-1]))
    return "still rising" if accuracy[-1] - earlier[-1] > z * error else "flat"


def with_curves(experiment: str, profile_names=CURVE_PROFILES, root: Path = ROOT):
    """(profile, results) of the first profile whose results file of `experiment` records learning curves,
    else (None, None)."""
    for profile in profile_names:
        data = load(profile, experiment, root)
        if data and any("curves" in run for run in data["seeds"].values()):
            return profile, data
    return None, None


def curve_lines(data: dict, rows) -> list:
    """One line per row and seed: the curve's last point, and its trend over its last half (`trend`, on
    the experiment's evaluation inputs)."""
    n_eval = data["spec"]["eval_samples"]
    return [f"{row} seed {seed}: {accuracy[-1]:.2f} % after {samples[-1]:,} samples; "
            f"{trend(samples, accuracy, n_eval)} over the last half of its samples"
            for row in rows for seed, (samples, accuracy) in seed_curves(data, row).items()]


def at_equal_samples(data: dict, first: str, second: str) -> Optional[str]:
    """The two rows compared at the largest sample count that every seed's curve of both reaches: each
    curve's last point at or below it (the sample counts read are printed), averaged over the seeds that
    have both rows. None without curves."""
    by_seed = {row: seed_curves(data, row) for row in (first, second)}
    seeds = [s for s in data["seeds"] if all(by_seed[row].get(s) for row in (first, second))]
    if not seeds:
        return None
    curves = {row: [by_seed[row][s] for s in seeds] for row in (first, second)}
    budget = min(samples[-1] for row in curves.values() for samples, _ in row)
    last_within = lambda samples, accuracy: [(n, a) for n, a in zip(samples, accuracy) if n <= budget][-1]
    read = {row: [last_within(*curve) for curve in row_curves] for row, row_curves in curves.items()}
    shown = lambda row: (f"{row} {statistics.mean(a for _, a in read[row]):.2f} % (read at "
                         + " / ".join(f"{n:,}" for n in sorted({n for n, _ in read[row]})) + ")")
    return f"at {budget:,} samples, the most that both reach (seeds {', '.join(seeds)}): {shown(first)}, {shown(second)}"


def search_lines(data: dict, row: str) -> list:
    """One line per screened run of a searched prefix (profiles.Search): its learning rate and init, and its
    accuracy and mean training loss at the end of the screen, the chosen one (reported, and continued
    where the screen is shorter than the budget) marked."""
    return [f"seed {seed}: lr {r['lr']:<6g} init {r['restart']}: {r['screen_accuracy']:6.2f} % after "
            f"{r['screen_samples']:,} samples, loss {r['screen_loss']:.3f}{'  ← chosen' if r.get('chosen') else ''}"
            for seed, run in data["seeds"].items() for r in run.get("search", {}).get(row, [])]


def paper_files_summary(experiment: str, n: int = 3200, where: Optional[Path] = None) -> str:
    """Markdown: the accuracy table of the paper's published model and prefixes for one experiment (paper in
    brackets), or which files were looked for where when they are absent."""
    if not paper_files.available(experiment, where):
        return f"*Without the paper's files: {paper_files.describe_missing(experiment, where)}.*"
    table = paper_files.accuracy_table(experiment, where, n=n)
    return "\n".join([f"**Experiment {experiment}, the paper's published files** (`{paper_files.spec(experiment).model_file}`"
                      f" and {len(table) - 1} prefix file(s)) on this project's {n:,} test inputs; accuracy in %, the "
                      "paper's own measurement in brackets (on the companion's test split, which differs):", ""]
                     + table_lines(experiment, table))
