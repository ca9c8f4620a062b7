"""Evaluate a finished `python -m lm.prefix_tune` run again: its committed prefixes and the untuned model on the
task's test split, with the current evaluation code; the manifest's metrics are rewritten and the change is
recorded in it (`reevaluated`: the command, the reason, and the metrics before).

    python -m lm.evaluate_run results/prefix_tuning/llama-table_to_text-n1 --reason "..."
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

from core.records import ROOT, shown
from lm.prefix_tune import EVAL_BATCH, evaluate, load, load_prefixes, task_of


def reevaluate(run: Path, reason: str, device: str = "cpu") -> Dict:
    """The run's manifest with its metrics measured again (see the module's doc); written back to the run."""
    manifest_file = run / "manifest.json"
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{run} has no manifest.json: pass a folder written by `python -m lm.prefix_tune`")
    manifest = json.loads(manifest_file.read_text())
    folder, data = ROOT / manifest["model_folder"], manifest["data"]
    if "corpus" not in data:
        raise ValueError(f"{run} was trained on files ({data}); re-evaluate it where they are, with `lm.prefix_tune`")
    model, tokenizer, _ = load(manifest["family"], folder, EVAL_BATCH, 512, device)
    task = task_of(manifest["task"], None, None, ROOT / data["corpus"])
    prefixes = load_prefixes(run / "prefixes.pt", model)["prefixes"].to(device)
    metric = manifest["metric"]
    before = {"untuned": manifest["untuned"][metric], "prefixes": [p[metric] for p in manifest["prefixes"]]}
    manifest["untuned"] = evaluate(task, model, tokenizer, None)
    manifest["prefixes"] = [evaluate(task, model, tokenizer, p) for p in prefixes]
    manifest["mean"] = sum(p[metric] for p in manifest["prefixes"]) / len(manifest["prefixes"])
    manifest.setdefault("reevaluated", []).append(
        {"command": f"python -m lm.evaluate_run {shown(run)} --reason {reason!r}", "reason": reason,
         "before": before})
    manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lm.evaluate_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders of `python -m lm.prefix_tune`")
    p.add_argument("--reason", required=True, help="why the run is evaluated again (kept in its manifest)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    for run in args.runs:
        manifest = reevaluate(run, args.reason, args.device)
        entry = manifest["reevaluated"][-1]["before"]
        metric = manifest["metric"]
        print(f"{shown(run)}: untuned {entry['untuned']:.4f} -> {manifest['untuned'][metric]:.4f}; prefixes "
              f"{entry['prefixes']} -> {[p[metric] for p in manifest['prefixes']]}")


if __name__ == "__main__":
    main()
