"""Appendix B's record for a run of prefixes on the classification task: the measures of
`lm.prefix_attention.appendix_b_measures` for

* the trained prefixes,
* untrained prefixes (the trainer's initialisation with the run's seeds: what training started from),
* the prefixes at each evaluated step of training (the run's `prefixes_by_step.pt`), on the test split,

on every example of the task (train, validation and test: the attention measures need no held-out data)
and on the test split alone.

    python -m lm.appendix_b                       # the committed GPT-2 run -> results/appendix_b/longer_prefixes.json
    python -m lm.appendix_b --run runs/my-run --out runs/my-run/appendix_b.json --limit 64

`longer_prefixes.ipynb` reads the record and recomputes it only when it is missing or was made for other
prefixes, model or inputs. The committed run's record took 2,092 s of one CPU core (its `seconds`).
"""

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from core.checkpoint import sha256
from core.loop import initial_prefixes
from core.records import ROOT, shown
from lm import prefix_attention as pa
from lm import text_tasks
from lm.prefix_tune import load_prefixes
from lm.stand_ins import load_gpt2

DEFAULT_RUN = ROOT / "results" / "prefix_tuning" / "gpt2-classification-n10"
DEFAULT_OUT = ROOT / "results" / "appendix_b" / "longer_prefixes.json"
PAPER_GAP = [.016, .102, .174, .088, .076, .069, .080, .106, .163, .147, .156, .102]   # GPT-2, heads as the paper reads them
DTYPE = torch.float32   # float64 moves the gaps by < 1e-5 (the notebook's float64 check) at 2.4x the time


def prompts_by_split(task: text_tasks.TextTask, tokenizer, limit: Optional[int] = None):
    """Every example's prompt, train then validation then test (those the task has, each cut to `limit` if
    given), and the subsets measured: {"all": every index, "test": the test split's}."""
    prompts, test = [], []
    for split in [split for split in text_tasks.SPLITS if split in task.splits]:
        examples = task.examples(split)[:limit]
        if split == "test":
            test = list(range(len(prompts), len(prompts) + len(examples)))
        prompts += [text_tasks.encode(tokenizer, e, eos=False).prompt for e in examples]
    return prompts, {"all": range(len(prompts)), "test": test}


def key_of(run: Path, model_folder: Path, n_inputs: Dict[str, int], max_prefixes: Optional[int]) -> Dict:
    """What a record was made from: the prefixes' and model's files, the inputs counted per subset and how many
    of the prefixes were measured (None: all)."""
    return {"prefixes_sha256": sha256(run / "prefixes.pt"), "max_prefixes": max_prefixes,
            "prefixes_by_step_sha256": sha256(run / "prefixes_by_step.pt") if (run / "prefixes_by_step.pt").exists() else None,
            "model_sha256": {p.name: sha256(p) for p in sorted(model_folder.iterdir()) if p.suffix in (".safetensors", ".json")},
            "n_inputs": n_inputs}


def measure_run(run: Path, model, pad_id: int, prompts: List[List[int]], subsets: Dict,
                max_prefixes: Optional[int] = None, progress: bool = True) -> Dict:
    """The record of `run`'s prefixes (the first `max_prefixes` if given) on the prompts and their subsets
    (`prompts_by_split`): trained, untrained and during training (see the module's doc)."""
    saved = load_prefixes(run / "prefixes.pt", model)
    model = copy.deepcopy(model).to(DTYPE)
    def measure(prefixes, on_prompts, chosen=None):
        return pa.appendix_b_measures(model, on_prompts, prefixes[:max_prefixes].to(DTYPE), pad_id, chosen, progress)

    start = time.time()
    record = {"trained": measure(saved["prefixes"], prompts, subsets),
              "untrained": measure(initial_prefixes(model, saved["prefix_len"], saved["seeds"]), prompts, subsets)}
    by_step_file = run / "prefixes_by_step.pt"
    if by_step_file.exists():  # on the test prompts alone (the attention is computed for the prompts passed)
        by_step = torch.load(by_step_file, weights_only=True)["prefixes_by_step"]
        test_prompts = [prompts[i] for i in subsets["test"]]
        record["during_training"] = {"split": "test", "steps": [0] + sorted(by_step),
                                     "measures": [record["untrained"]["test"]]
                                     + [measure(by_step[step], test_prompts) for step in sorted(by_step)]}
    record["seconds"] = round(time.time() - start, 1)
    record["dtype"] = str(DTYPE).removeprefix("torch.")
    return record


def load_or_measure(run: Path, model, tokenizer, task: text_tasks.TextTask, model_folder: Path, out: Path,
                    limit: Optional[int] = None, max_prefixes: Optional[int] = None, progress: bool = True) -> Dict:
    """The record at `out` if it was made from these prefixes, model and inputs; else measured and written there."""
    prompts, subsets = prompts_by_split(task, tokenizer, limit)
    key = key_of(run, model_folder, {name: len(rows) for name, rows in subsets.items()}, max_prefixes)
    if out.exists():
        record = json.loads(out.read_text())
        if all(record.get(k) == v for k, v in key.items()):
            return record
        print(f"{shown(out)} was made from other prefixes, model or inputs: measuring again")
    record = {"run": shown(run), "model_folder": shown(model_folder), **key, "paper_gap": PAPER_GAP,
              **measure_run(run, model, tokenizer.eos_id, prompts, subsets, max_prefixes, progress)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: Optional[List[str]] = None) -> Dict:
    p = argparse.ArgumentParser(prog="python -m lm.appendix_b", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=DEFAULT_RUN, help="a `python -m lm.prefix_tune --task classification` run folder")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the record to write (default: the committed one)")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="the corpus the task comes from")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples of each split (a quick check)")
    p.add_argument("--prefixes", type=int, default=None, help="only the first N prefixes (a quick check)")
    args = p.parse_args(argv)
    manifest_file = args.run / "manifest.json"
    if not manifest_file.is_file():
        raise SystemExit(f"{args.run} has no manifest.json: pass --run a folder written by `python -m lm.prefix_tune`")
    manifest = json.loads(manifest_file.read_text())
    if manifest["task"] != "classification":
        raise SystemExit(f"{args.run} is a run on {manifest['task']!r}; Appendix B's measures are of classification prefixes")
    folder = Path(manifest["model_folder"])
    folder = folder if folder.is_absolute() else ROOT / folder
    model, tokenizer = load_gpt2(folder)
    task = text_tasks.corpus_task("classification", args.corpus)
    with torch.no_grad():  # not torch.set_grad_enabled(False): a caller's autograd stays as it was
        record = load_or_measure(args.run, model, tokenizer, task, folder, args.out, args.limit, args.prefixes)
    print(f"{shown(args.out)}: {record['n_inputs']} inputs, {record['seconds']} s")
    return record


if __name__ == "__main__":
    main()
