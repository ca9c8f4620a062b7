"""The paper's Section 5 and 6 experiments A-D, under one of four profiles.

    python -m mingpt.experiments A B C D --profile cpu --seeds 0 1 2

A  cannot learn a new task: 1 layer, pretrained on sort-ascending; full fine-tuning vs a prefix on
   sort-descending.
B  can elicit a pretraining task: 1 layer, no LayerNorm before attention, pretrained on the four-task
   mixture; one prefix per task.
C  can learn a composition, not a new pattern: 4 layers, n_S = 10; prefixes (and full fine-tuning) on
   the four pretraining tasks, sort-then-add-one and the double histogram.
   C also trains an MLP-only rank-1 LoRA on the double histogram: 10·d·L parameters (width d, L layers;
   10,240 in the paper's model), as many as the n_S = 10 prefix.
D  prefix-tuning vs LoRA at equal parameter count on the double histogram: a model pretrained with
   n_S = 12; a prefix and a rank-1 LoRA of the MLP and attention output, 12·d·L parameters each.

Profiles (`mingpt/profiles.py`, one table each; ``--show-profile NAME`` prints every phase): ``paper``
(the companion protocol: batch 64, its iterations and learning rates), ``gpu`` (the paper's number of
training samples per phase with large batches and adapted learning rates; all prefixes of a phase
train together), ``cpu`` (budgets for a 2-core machine, smaller models; its C and D run in pieces with
``scripts/cpu_run.sh``) and ``quick``
(seconds; only checks that everything runs).

Every trained component is cached: a checkpoint under ``<root>/minGPT/checkpoints/<profile>`` is
loaded (its sha256 checked against the manifest) instead of retraining, unless the profile's settings
or the pretrained model it was trained from changed since; components too large to commit (C's fully
fine-tuned models) reuse their recorded accuracies from the results file.

Three modules: `store` (where components live, and when a stored one is stale), `components` (training or
loading one component) and this one (an experiment's run: its components, their evaluation, the results file).
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from core.checkpoint import locked
from core.lora import lora_parameters
from core.records import hardware

from . import paper_files, tasks
from .components import Components, Trained, accuracies
from .model import GPT
from .paper import PAPER_ACCURACY
from .profiles import EXPERIMENTS, PROFILES, Experiment, describe, profile
from .store import Paths, Store, default_root


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- running one experiment ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """What an experiment produced for one seed: models, prefixes and the accuracy table (percent)."""
    spec: Experiment
    seed: int
    pretrained: GPT
    finetuned: Dict[str, GPT] = field(default_factory=dict)
    prefixes: Dict[str, torch.Tensor] = field(default_factory=dict)       # task -> (n_layer, n_S, C)
    prefix_loss_curves: Dict[str, list] = field(default_factory=dict)    # task -> [(step, loss)]
    curves: Dict[str, list] = field(default_factory=dict)                # row -> [[samples, accuracy]]
    searches: Dict[str, list] = field(default_factory=dict)              # row -> every screened run (Search)
    loras: Dict[str, GPT] = field(default_factory=dict)
    accuracy: Dict[str, Dict[str, float]] = field(default_factory=dict)  # row -> task -> percent
    param_counts: Dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0


class Runner:
    """Runs the experiments of one profile: each component trained or loaded (`Components`), then evaluated,
    with the accuracies recorded in the manifests and the results file."""

    def __init__(self, profile_name: str, root: Optional[Path] = None, device: Optional[str] = None,
                 retrain: bool = False, progress: bool = True, command: str = ""):
        self.profile = profile_name
        self.specs = profile(profile_name)
        self.device = device or default_device()
        self.paths = Paths(Path(root) if root else default_root(), profile_name)
        self.store = Store(self.paths.root, self.device, retrain, command)
        self.components = Components(profile_name, self.paths, self.store, self.device, progress)

    def run(self, name: str, seed: int = 0) -> Outcome:
        """Train (or load) every component of experiment `name` for `seed`, evaluate, write results."""
        if name not in self.specs:
            raise ValueError(f"unknown experiment {name!r}; choose from {EXPERIMENTS}")
        spec, start = self.specs[name], time.time()
        self.store.trained = False
        out = Outcome(spec, seed, self.components.pretrained(spec, seed))
        recorded = self._recorded(spec, seed)
        finetune_curves, lora_curves = {}, {}
        for task in spec.finetune_tasks:
            trained = self.finetuned_or_recorded(spec, seed, out.pretrained, task, recorded)
            if trained is not None:
                out.finetuned[task], finetune_curves[task] = trained
        for group, phase in spec.prefix_groups:
            stored = self.components.prefixes(spec, seed, out.pretrained, group, phase)
            out.prefixes.update({t: p.to(self.device) for t, p in stored["prefixes"].items()})
            out.prefix_loss_curves.update(stored["loss_curves"])
            out.curves.update({f"prefix_{t}": c for t, c in stored.get("curves", {}).items()})
            out.searches.update({f"prefix_{t}": marked_chosen(runs, stored["chosen"][t])
                                 for t, runs in stored.get("search", {}).items()})
        for lora in spec.loras:
            out.loras[lora.name], lora_curves[lora.name] = self.components.lora(spec, seed, out.pretrained, lora)
        for task in spec.finetune_tasks:  # trained now, stored, or recorded with its accuracy
            curve = finetune_curves.get(task) or recorded.get("curves", {}).get(f"finetuned_{task}")
            if curve:
                out.curves[f"finetuned_{task}"] = curve
        out.curves.update({name: curve for name, curve in lora_curves.items() if curve})
        self._evaluate(out, recorded)
        self._record_metrics(out)
        out.wall_time_s = time.time() - start
        self._write_results(out)
        return out

    def finetuned_or_recorded(self, spec, seed, base, task, recorded) -> Optional[Trained]:
        """The fine-tuned model and its curve, or None when it is not committed and its accuracy is recorded."""
        key = f"finetuned_{task}"
        if not spec.save_finetuned and key in recorded.get("accuracy", {}) and not self.store.retrain:
            return None  # not committed; its accuracy row comes from the results file
        return self.components.finetuned(spec, seed, base, task)

    def _evaluate(self, out: Outcome, recorded: dict) -> None:
        spec, n = out.spec, out.spec.eval_samples
        evaluate = lambda model, prefix=None, own=None: accuracies(
            model, spec.eval_tasks if own is None else (own,), prefix, n)
        out.accuracy["pretrained"] = evaluate(out.pretrained)
        for task in spec.finetune_tasks:
            key = f"finetuned_{task}"
            if task in out.finetuned:
                out.accuracy[key] = evaluate(out.finetuned[task])
            else:
                out.accuracy[key] = recorded["accuracy"][key]
        for task, prefix in out.prefixes.items():
            out.accuracy[f"prefix_{task}"] = evaluate(out.pretrained, prefix,
                                                      None if spec.full_prefix_matrix else task)
        for lora in spec.loras:
            out.accuracy[lora.name] = evaluate(out.loras[lora.name])
        out.param_counts = {"model": out.pretrained.num_params(),
                            "prefix": next(iter(out.prefixes.values())).numel()}  # (n_layer, n_S, C)
        for lora in spec.loras:
            out.param_counts[lora.name] = sum(p.numel() for p in lora_parameters(out.loras[lora.name]).values())

    def _record_metrics(self, out: Outcome) -> None:
        """Put each stored component's accuracies into its manifest entry."""
        spec, seed, acc = out.spec, out.seed, out.accuracy
        rows = {"pretrained": ["pretrained"]}
        rows.update({f"finetuned_{t}": [f"finetuned_{t}"] for t in spec.finetune_tasks})
        rows.update({"prefixes_" + "_".join(g): [f"prefix_{t}" for t in g] for g, _ in spec.prefix_groups})
        rows.update({l.name: [l.name] for l in spec.loras})
        for component, names in rows.items():
            self.store.record_metrics(self.paths.component(spec.name, seed, component), {r: acc[r] for r in names})

    def _results_path(self, name: str) -> Path:
        return self.paths.results / f"{name}.json"

    def _recorded(self, spec: Experiment, seed: int) -> dict:
        """This seed's results entry, if its fine-tuned rows were trained from the stored pretrained
        model with the profile's fine-tuning phase (so they hold without their models); else {}."""
        path = self._results_path(spec.name)
        if not path.exists():
            return {}
        entry = json.loads(path.read_text()).get("seeds", {}).get(str(seed), {})
        return entry if entry.get("trained_from") == self._trained_from(spec, seed) else {}

    def _trained_from(self, spec: Experiment, seed: int) -> dict:
        trained_from = {"base_sha256": self.components.pretrained_sha256(spec, seed),
                        "finetune_phase": asdict(spec.finetune) if spec.finetune else None}
        if spec.curve_points:  # a record without learning curves trains again
            trained_from["curve_points"] = spec.curve_points
        return trained_from

    def _write_results(self, out: Outcome) -> None:
        path = self._results_path(out.spec.name)
        with locked(path):  # other seeds of this experiment may finish in parallel processes
            data = json.loads(path.read_text()) if path.exists() else {"experiment": out.spec.name, "seeds": {}}
            previous = data["seeds"].get(str(out.seed), {})
            data.update(profile=self.profile, spec=asdict(out.spec))
            trained_now = self.store.trained or not previous  # else hardware and time are the training run's
            data["seeds"][str(out.seed)] = {
                "hardware": hardware(self.device) if trained_now else previous["hardware"],
                "wall_time_s": round(out.wall_time_s, 1) if trained_now else previous["wall_time_s"],
                "trained_from": self._trained_from(out.spec, out.seed),
                "param_counts": out.param_counts,
                "accuracy": out.accuracy,
                **({"curves": out.curves} if out.curves else {}),
                **({"search": out.searches} if out.searches else {}),
            }
            data["seeds"] = dict(sorted(data["seeds"].items(), key=lambda item: int(item[0])))
            path.write_text(json.dumps(data, indent=1) + "\n")


def marked_chosen(runs: List[dict], chosen: dict) -> List[dict]:
    """A searched prefix's screened runs, each with "chosen": whether it is the run reported (and continued)."""
    return [{**run, "chosen": all(run[k] == chosen[k] for k in ("lr", "restart"))} for run in runs]


def print_paper_files(names, where: Optional[Path], device: str) -> None:
    """The accuracy tables of the paper's published models found in `where` (see mingpt.paper_files)."""
    for name in names:
        if not paper_files.available(name, where):
            print(paper_files.describe_missing(name, where))
            continue
        table = paper_files.accuracy_table(name, where, device=device)
        print(f"experiment {name}, the paper's files, on this project's 3,200 test inputs (the paper's own number after /):")
        for row, accs in table.items():
            print(f"  {row:28s} " + "  ".join(f"{tasks.TASK_SYMBOLS[t]} {a:6.2f}" + (
                f" / {p:6.2f}" if (p := PAPER_ACCURACY.get(name, {}).get(row, {}).get(t)) is not None else "")
                for t, a in accs.items()))


# ---- command line ----------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mingpt.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help=f"any of {' '.join(EXPERIMENTS)} (default: all)")
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--root", type=Path, default=None,
                        help="where checkpoints/results go (default: the repository, or $REPRO_OUT)")
    parser.add_argument("--retrain", action="store_true", help="ignore stored components and train again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="only train (or load) the pretrained models and stop, e.g. to pretrain seeds in parallel first")
    parser.add_argument("--paper-files", nargs="?", const="", metavar="DIR",
                        help="evaluate the paper's published models and prefixes (in DIR, else $PAPER_FILES_DIR, "
                             "else minGPT/) on this project's test inputs, beside the paper's numbers, and exit")
    parser.add_argument("--show-profile", choices=PROFILES, metavar="PROFILE",
                        help="print every phase of PROFILE (models, samples, rows, learning rates) and exit")
    args = parser.parse_args(argv)
    if args.show_profile:
        print(describe(args.show_profile))
        return
    unknown = [e for e in args.experiments if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {EXPERIMENTS}")
    if args.paper_files is not None:
        print_paper_files(args.experiments or EXPERIMENTS, Path(args.paper_files) if args.paper_files else None,
                          args.device or default_device())
        return
    runner = Runner(args.profile, args.root, args.device, args.retrain, not args.no_progress)
    for seed in args.seeds:
        for name in args.experiments or EXPERIMENTS:
            if args.pretrain_only:
                runner.components.pretrained(runner.specs[name], seed)
                print(f"[{args.profile}] {name} seed {seed}: pretrained model in {runner.paths.component(name, seed, 'pretrained')}")
                continue
            outcome = runner.run(name, seed)
            print(f"[{args.profile}] {name} seed {seed}: {outcome.wall_time_s:.0f} s")
            for row, accs in outcome.accuracy.items():
                print(f"  {row:28s} " + "  ".join(f"{tasks.TASK_SYMBOLS[t]} {a:6.2f}" for t, a in accs.items()))


if __name__ == "__main__":
    main()
