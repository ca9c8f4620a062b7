"""Render RESULTS.md, and the README's claims at a glance, from the results files under
results/section5/<profile>/<experiment>.json.

    python scripts/render_results.py            # writes RESULTS.md and the README's block

Every number in RESULTS.md comes from those files (written by `python -m mingpt.experiments`) and
from the budget probes' records under results/probes/ (written by `python -m mingpt.probe`);
the paper's numbers come from mingpt/paper.py.
"""

import argparse
import json
from pathlib import Path

from core.records import ROOT
from mingpt.profiles import PROFILES
from mingpt.report import claims, glance, load, probes, table
from mingpt.store import Paths
from mingpt.tasks import TASK_SYMBOLS

TITLES = {
    "A": "A. Prefix-tuning cannot learn a new task (Figure 1; notebook 01)",
    "B": "B. A prefix can elicit a pretraining task (notebook 02)",
    "C": "C. A prefix can learn a composition of pretraining skills, not a new attention pattern (notebook 03)",
    "D": "D. Prefix-tuning vs LoRA at equal parameter count (notebook 04)",
}
PROFILE_NOTES = {
    "gpu": "the paper's number of training samples per phase, large batches; the machine that trained each component is in its manifest",
    "cpu": "2-core budgets; smaller models for B (width 128) and C/D (4 layers, width 96); every negative prefix "
           "trains on at least its rival's samples, as the best of a search over 4 inits (on seed 0 also 3 learning "
           "rates), and every component records a learning curve; the training time of each stored component is in "
           "its manifest",
}
FIGURES = ROOT / "results" / "figures"


def section(experiment: str) -> list:
    lines = [f"## {TITLES[experiment]}", ""]
    for profile in ("gpu", "cpu"):
        data = load(profile, experiment)
        if data is None:
            lines += [f"**{profile} profile:** no complete run committed.", ""]
            continue
        seeds = data["seeds"]
        first = next(iter(seeds.values()))
        hardware = sorted({run["hardware"] for run in seeds.values()})
        wall = ", ".join(f"seed {s}: {run['wall_time_s']:.0f} s" for s, run in seeds.items())
        counts = ", ".join(f"{k} {v:,}" for k, v in first["param_counts"].items())
        lines += [f"**{profile} profile** ({PROFILE_NOTES[profile]}); seeds {', '.join(seeds)}; "
                  f"{' / '.join(hardware)}; wall time of the last run {wall}{training_times(profile, experiment)}; "
                  f"parameters: {counts}.", "",
                  "Accuracy in % (exact match, 3,200 test inputs; mean ± std over seeds), paper in brackets:", ""]
        lines += table(experiment, seeds) + [""] + claims(experiment, seeds) + [""]
    for figure in sorted(FIGURES.glob(f"{experiment}_*.png")):
        lines += [f"![{figure.stem}](results/figures/{figure.name})", ""]
    return lines


def training_times(profile: str, experiment: str) -> str:
    """Each seed's stored components' training seconds (manifest `train_time_s`), summed: a run's time
    across the sessions it was resumed in. Components that are not stored (C's fully fine-tuned models)
    and evaluation are not counted; nor are seeds with a component trained before times were kept."""
    path = Paths(ROOT, profile).checkpoints / experiment / "manifest.json"
    entries = json.loads(path.read_text()).values() if path.exists() else []
    per_seed = {}
    for entry in entries:
        per_seed.setdefault(entry["seed"], []).append(entry.get("train_time_s"))
    per_seed = {seed: times for seed, times in per_seed.items() if None not in times}  # older runs: untimed
    if not per_seed:
        return ""
    return "; training time of the stored components (manifests' `train_time_s`, summed) " + ", ".join(
        f"seed {seed}: {sum(times):,.0f} s" for seed, times in sorted(per_seed.items()))


def probe_section() -> list:
    """One row per budget probe: what trained on which pretrained model, and its accuracy curve."""
    records = [record for _, record in probes()]
    if not records:
        return []
    lines = ["## Budget probes: accuracy against training samples (`python -m mingpt.probe`)", "",
             "One component on a `cpu`-profile pretrained model (or one of another shape, pretrained with that",
             "profile's phase), trained with cosine decay (a prefix or LoRA in 64-row steps, full fine-tuning in the",
             "profile's fine-tuning steps) and evaluated along the way on 640 test inputs; the last column on 3,200.",
             "Records: `results/probes/*.json`.", "",
             "| pretrained model | n_S | component | task | peak lr | trained parameters "
             "| accuracy (%) at k samples | final (%) | wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        pretrain = f"{r['experiment']} seed {r['seed']}, {r['model']}, {r['pretrain']['samples'] // 1000}k samples"
        component = {"prefix": "prefix", "lora": "rank-1 LoRA", "finetune": "full fine-tuning"}[r["method"]]
        curve = ", ".join(f"{p['samples'] // 1000}k: {p['accuracy']:.1f}" for p in r["curve"])
        lines.append(f"| {pretrain} | {r['prefix_len']} | {component} | {TASK_SYMBOLS[r['task']]} | {r['phase']['lr']:g} "
                     f"| {r['trained_params']:,} | {curve} | **{r['final_accuracy']:.2f}** "
                     f"| {r['wall_time_s']:.0f} s, {r['threads']} thread(s) |")
    return lines + [""]


def render() -> str:
    lines = ["# Results: Sections 5 and 6", "",
             "Generated by `python scripts/render_results.py` from `results/section5/<profile>/<experiment>.json`,",
             "which `python -m mingpt.experiments` writes. The paper's values in brackets. The claims' thresholds",
             "(>= 85 %, <= 3 %, ...) are this project's reading of the paper's claims, which report numbers, not",
             "bounds; each claim table shows the paper's number beside its threshold.",
             "A `gpu` run that is absent or partial did not fit the session's GPU time; see README.", ""]
    for experiment in ("A", "B", "C", "D"):
        lines += section(experiment)
    lines += probe_section()
    return "\n".join(lines) + "\n"


GLANCE_START = "<!-- the claims at a glance: generated by `python scripts/render_results.py` from the results files; do not edit -->"
GLANCE_END = "<!-- end of the claims at a glance -->"


def committed_profiles() -> list:
    return [p for p in PROFILES if (ROOT / "results" / "section5" / p).is_dir()]


def render_readme(readme: str) -> str:
    """The README with its claims-at-a-glance block (between GLANCE_START and GLANCE_END) rendered again."""
    if readme.count(GLANCE_START) != 1 or readme.count(GLANCE_END) != 1:
        raise ValueError(f"the README must hold the lines {GLANCE_START!r} and {GLANCE_END!r} once each")
    head, rest = readme.split(GLANCE_START)
    _, tail = rest.split(GLANCE_END)
    legend = ["", "Each profile's cell: the accuracy (%) on every committed seed, or the mean over seeds where a line "
              "shows several rows, then the seeds, the component's training samples, and on how many seeds every "
              "threshold of the line holds (✓ on all). The thresholds are this project's reading of the paper's "
              "claims (`mingpt/paper.py`); the paper reports numbers, shown beside them. — : no committed run.", ""]
    return head + "\n".join([GLANCE_START] + legend + glance(committed_profiles()) + ["", GLANCE_END]) + tail


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "RESULTS.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    args.output.write_text(render())
    args.readme.write_text(render_readme(args.readme.read_text()))
    print(f"wrote {args.output} and the claims at a glance in {args.readme}")


if __name__ == "__main__":
    main()
