"""Accuracy tables in markdown from the results files, with the paper's numbers beside ours.

Used by scripts/render_results.py (RESULTS.md) and by the notebooks.
"""

import json
import statistics
from pathlib import Path
from typing import Optional

from core.records import ROOT

from . import paper, paper_files, tasks


def load(profile: str, experiment: str, root: Path = ROOT) -> Optional[dict]:
    """The results file of one experiment under one profile, or None."""
    path = root / "results" / "section5" / profile / f"{experiment}.json"
    return json.loads(path.read_text()) if path.exists() else None


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
