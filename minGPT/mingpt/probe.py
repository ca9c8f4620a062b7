"""Accuracy against training samples for one prefix, rank-1 LoRA or full fine-tuning: what a budget buys.

    python -m mingpt.probe C --method prefix --task sort_asc_add1 --samples 640000
    python -m mingpt.probe D --method lora --task double_hist --samples 1000000 --lr 5e-3
    python -m mingpt.probe D --model 4/4/64 --pretrain-samples 600000 --method lora --samples 500000
    python -m mingpt.probe C --method finetune --task double_hist --samples 1000000 --lr 1e-3

Trains one component on the profile's stored pretrained model of the experiment and seed or, with
--model, on a model of that shape pretrained with the profile's pretraining phase (its sample count
set by --pretrain-samples) and cached under <root>/runs/probe/ (--root, default the repository). The component trains with the profile's
phase for it, with the given samples and peak learning rate: a prefix with the phase of the
experiment's prefix of that task (else of its last prefix group), starting from that prefix's init
(with --restart K, from the experiment's init for restart K); a LoRA with the experiment's LoRA phase
(in the cpu profile: 64-row steps, warm-up 20, cosine decay); full fine-tuning with the experiment's
fine-tuning phase (every weight trains); --batch-size sets other rows per step. Every samples/--evals
training samples it is evaluated on the first --eval-samples test inputs; at the end on 3,200. The record goes to results/probes/<name>.json; nothing under
checkpoints changes.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import torch

from core.loop import train
from core.records import ROOT, provenance

from . import tasks
from .components import accuracies, prefix_seeds
from .experiments import Runner
from .model import GPT
from .profiles import PROFILES, ModelSpec

METHODS = ("prefix", "lora", "finetune")


def parse_model(text: str) -> ModelSpec:
    try:
        n_layer, n_head, n_embd = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--model takes layers/heads/width, e.g. 4/4/64, not {text!r}") from None
    return ModelSpec(n_layer, n_head, n_embd)


def probe_runner(experiment: str, profile: str, model: str, pretrain_samples: int, root: Optional[Path],
                 progress: bool):
    """The runner whose pretrained model the probe trains on, and the experiment's spec: the profile's, or with
    `model` another shape, pretrained (once) into <root>/runs/probe/, never into the committed checkpoints."""
    runner = Runner(profile, root=root, progress=progress)
    if experiment not in runner.specs:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {tuple(runner.specs)}")
    spec = runner.specs[experiment]
    if model:
        spec = replace(spec, model=parse_model(model),
                       pretrain=replace(spec.pretrain, samples=pretrain_samples or spec.pretrain.samples))
        root = (root or ROOT) / "runs" / "probe" / f"{model.replace('/', 'x')}-{spec.pretrain.samples}"
        runner = Runner(profile, root=root, progress=progress)
        runner.specs[experiment] = spec
    return runner, spec


def probe_component(spec, method: str, task: str, seed: int, restart: int):
    """The phase the probed component takes its settings from and its trainer settings: a prefix the phase of
    the experiment's prefix for the task (else its last) and that restart's init; a LoRA the experiment's; full
    fine-tuning the experiment's fine-tuning phase."""
    if method == "prefix":
        group, template = next(((g, p) for g, p in spec.prefix_groups if task in g), spec.prefix_groups[-1])
        seeds = prefix_seeds(replace(spec, prefix_restarts=restart + 1, searches=()), seed, group)
        init = seeds[restart * len(group) + group.index(task)] if task in group else seed + restart
        return template, dict(n_prefixes=1, prefix_len=spec.prefix_len, prefix_seeds=(init,))
    if method == "finetune":
        if spec.finetune is None:
            raise ValueError(f"experiment {spec.name} has no fine-tuning phase; choose A or C for --method finetune")
        return spec.finetune, {}
    if not spec.loras:
        raise ValueError(f"experiment {spec.name} trains no LoRA; choose C or D for --method lora")
    return spec.loras[0].phase, dict(lora_rank=1, lora_targets=spec.loras[0].targets)


def probe(experiment: str, method: str, task: str, samples: int, lr: float, profile: str = "cpu",
          seed: int = 0, model: str = "", pretrain_samples: int = 0, evals: int = 8,
          eval_samples: int = 640, progress: bool = True, root: Optional[Path] = None, restart: int = 0,
          batch_size: int = 0) -> dict:
    """Train the component, evaluating along the way; return the record (see module docstring).

    root: where the stored pretrained models are read (default: the repository's checkpoints).
    restart: a prefix starts from the init the experiment draws for that restart (0: its first).
    batch_size: rows per step (0: the phase's)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if task not in tasks.TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {tasks.TASKS}")
    start = time.time()
    runner, spec = probe_runner(experiment, profile, model, pretrain_samples, root, progress)
    base = runner.components.pretrained(spec, seed)
    template, component = probe_component(spec, method, task, seed, restart)
    init = component["prefix_seeds"][0] if method == "prefix" else None
    phase = replace(template, samples=samples, lr=lr, batch_size=batch_size or template.batch_size)
    settings = replace(runner.components.train_settings(phase, method, seed, **component),
                       log_every=max(1, phase.iters // evals))
    trained = base
    if method != "prefix":  # a LoRA or fine-tuning trains a copy
        trained = GPT(base.config)
        trained.load_state_dict(base.state_dict())

    def evaluate(result, n):
        prefix = result.prefixes[0].detach() if method == "prefix" else None
        return accuracies(trained.eval(), (task,), prefix, n)[task]

    curve = []
    def on_log(result):  # the evaluation grid; the last step is evaluated on 3,200 inputs below
        if result.step % settings.log_every == 0:
            curve.append((result.step * phase.batch_size, evaluate(result, eval_samples)))
    placeholders = 0 if method == "prefix" else spec.prefix_len  # a prefix takes the placeholders' positions
    result = train(trained, settings, runner.components.task_batches((task,), phase.batch_size, placeholders),
                   runner.device, on_log=on_log)
    n_layer, d = base.config.n_layer, base.config.n_embd
    return {
        **provenance("mingpt.probe", device=runner.device),
        "profile": profile, "experiment": experiment, "seed": seed,
        "model": f"{n_layer}/{base.config.n_head}/{d}", "prefix_len": spec.prefix_len,
        "pretrain": asdict(spec.pretrain),
        "pretrained_accuracy": accuracies(base, spec.pretrain_tasks, None, 3200),
        "method": method, "task": task, "phase": asdict(phase),
        **({"restart": restart, "init_seed": init} if method == "prefix" else {}),
        "trained_params": (n_layer * spec.prefix_len * d if method == "prefix"
                           else sum(p.numel() for p in trained.parameters() if p.requires_grad)),
        "curve": [{"samples": s, "accuracy": round(a, 2), "eval_samples": eval_samples} for s, a in curve],
        "final_loss": result.losses[-1][1][0],
        "final_accuracy": round(evaluate(result, 3200), 2),
        "threads": torch.get_num_threads(),
        "wall_time_s": round(time.time() - start, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mingpt.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="the experiment whose pretrained model is used: C or D")
    parser.add_argument("--method", default="prefix", choices=METHODS)
    parser.add_argument("--task", default="sort_asc_add1", choices=tasks.TASKS)
    parser.add_argument("--samples", type=int, default=640_000, help="training samples")
    parser.add_argument("--batch-size", type=int, default=0, help="rows per step (default: the phase's)")
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (cosine to 10 %%)")
    parser.add_argument("--profile", default="cpu", choices=PROFILES, help="whose pretrained model and phases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="", help="layers/heads/width of a model pretrained for the probe")
    parser.add_argument("--pretrain-samples", type=int, default=0, help="with --model: pretraining samples")
    parser.add_argument("--restart", type=int, default=0,
                        help="prefix: start from the init the experiment draws for this restart (default: its first)")
    parser.add_argument("--evals", type=int, default=8, help="evaluations along the way")
    parser.add_argument("--eval-samples", type=int, default=640, help="test inputs per evaluation along the way")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "probes", help="where the record goes")
    parser.add_argument("--root", type=Path, default=None,
                        help="a checkout whose checkpoints are read and under whose runs/ a --model is pretrained "
                             "(default: this repository)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    record = probe(args.experiment, args.method, args.task, args.samples, args.lr, args.profile, args.seed,
                   args.model, args.pretrain_samples, args.evals, args.eval_samples, not args.no_progress,
                   root=args.root, restart=args.restart, batch_size=args.batch_size)
    name = (f"{args.profile}_{args.experiment}{args.seed}_{record['model'].replace('/', 'x')}_{args.method}_{args.task}"
            f"_{args.samples}_lr{args.lr:g}" + (f"_b{args.batch_size}" if args.batch_size else "")
            + (f"_restart{args.restart}" if args.restart else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(" ".join(f"{c['samples']}:{c['accuracy']:.1f}" for c in record["curve"]))
    print(f"{name}: final {record['final_accuracy']:.2f} % after {args.samples:,} samples, "
          f"{record['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
