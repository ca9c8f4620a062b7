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
"""

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from core.checkpoint import atomic_save, locked, read, sha256
from core.loop import TrainSettings, train
from core.lora import add_lora, load_lora, lora_parameters
from core.records import ROOT, hardware

from . import paper_files, tasks
from .checkpoint import load_model_from, model_state
from .model import GPT
from .paper import PAPER_ACCURACY
from .profiles import (
    EXPERIMENTS,
    PROFILES,
    Experiment,
    LoRASpec,
    Phase,
    Search,
    curve_steps,
    describe,
    profile,
)

REPO = ROOT   # the repository (the notebooks' name for it)
BATCHES_PER_DRAW = 16  # training batches generated per sampler call (see BatchStream)


# ---- where things live ----------------------------------------------------------------------------

@dataclass
class Paths:
    """Checkpoints and results of one profile; `root` is the repository or, for quick runs, a temp dir."""
    root: Path
    profile: str

    @property
    def checkpoints(self) -> Path:
        return self.root / "minGPT" / "checkpoints" / self.profile

    @property
    def results(self) -> Path:
        return self.root / "results" / "section5" / self.profile

    def component(self, experiment: str, seed: int, name: str) -> Path:
        return self.checkpoints / experiment / f"seed{seed}" / f"{name}.pt"


def default_root() -> Path:
    """The repository, or REPRO_OUT when a notebook runs in the quick setting."""
    return Path(os.environ["REPRO_OUT"]) if os.environ.get("REPRO_OUT") else REPO


class BatchStream:
    """get_batch for the trainer; draw_task_ids(generator) gives one batch's task ids, and each sequence
    starts with `placeholders` zero pads (0 for prefix-tuning: the prefix takes their positions).

    Draws BATCHES_PER_DRAW steps' batches at once: the sampler's fixed cost per call (and on a GPU
    its one host synchronisation) is paid once every BATCHES_PER_DRAW steps. The batches not yet
    used are part of the training state (`state_dict`, saved with the trainer's checkpoints), so a
    run resumed mid-draw sees the same batches as an uninterrupted one.
    """

    def __init__(self, draw_task_ids, placeholders: int, device):
        self.draw_task_ids, self.placeholders, self.device = draw_task_ids, placeholders, device
        self.queue: List[Tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, generator):
        if not self.queue:
            ids = torch.cat([self.draw_task_ids(generator) for _ in range(BATCHES_PER_DRAW)])
            x, y = tasks.make_batch(ids, self.placeholders, "train", generator, self.device)
            self.queue.extend(zip(x.chunk(BATCHES_PER_DRAW), y.chunk(BATCHES_PER_DRAW)))
        return self.queue.pop(0)

    def state_dict(self) -> dict:  # tokens and targets fit int8: the state is committed mid-run (Runner._scratch)
        return {"queue": [(x.to(torch.int8).cpu(), y.to(torch.int8).cpu()) for x, y in self.queue]}

    def load_state_dict(self, state: dict) -> None:
        self.queue = [(x.long().to(self.device), y.long().to(self.device)) for x, y in state["queue"]]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- the cache of trained components ----------------------------------------------------------------

class Store:
    """Loads a committed component when its file matches the manifest, else trains and records it.

    Each experiment folder has its own manifest.json, keyed by the checkpoint's path relative to the
    root; it is rewritten under a lock, so experiments and seeds can run in parallel processes.
    """

    def __init__(self, root: Path, device: str, retrain: bool = False, command: str = ""):
        self.root, self.device, self.retrain = root, device, retrain
        self.command = command or "python -m mingpt.experiments " + " ".join(sys.argv[1:])
        self.trained = False  # whether anything was trained since the last reset

    @staticmethod
    def manifest_path(path: Path) -> Path:
        return path.parent.parent / "manifest.json"  # <experiment>/seed<k>/<component>.pt

    def _manifest(self, path: Path) -> dict:
        manifest = self.manifest_path(path)
        return json.loads(manifest.read_text()) if manifest.exists() else {}

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # what a component was trained with; model_config: a pretrained model's shape; base_sha256: the stored
    # pretrained model a component was trained from
    SPEC_FIELDS = ("method", "model_config", "phase", "tasks", "restarts", "prefix_seeds", "targets", "base_sha256",
                   "search", "curve_points")

    def entry(self, path: Path) -> Optional[dict]:
        """The manifest entry of a stored component, or None."""
        return self._manifest(path).get(self.key(path))

    def load(self, path: Path, meta: dict) -> Optional[dict]:
        """The stored component, or None when it must be (re)trained: missing, --retrain, or stored
        with other settings than `meta` (the profile or the pretrained model changed since)."""
        entry = self.entry(path)
        if self.retrain or entry is None or not path.exists():
            return None
        changed = [f for f in self.SPEC_FIELDS if f in meta and entry.get(f) != meta[f]]
        if changed:
            print(f"{self.key(path)} was trained with other settings than the profile's now "
                  f"({', '.join(f'{f}: {entry.get(f)} -> {meta[f]}' for f in changed)}); training it again")
            return None
        return read(path, expected_sha256=entry["sha256"])

    def save(self, path: Path, obj: dict, meta: dict) -> None:
        """Store a trained component and its manifest entry; its training states (Runner._scratch) go."""
        self.trained = True
        atomic_save(obj, path)
        for state in training_states(path):
            state.unlink()
        self._update(path, {"command": self.command, "hardware": hardware(self.device), **meta,
                            "sha256": sha256(path), "bytes": path.stat().st_size})

    def record_metrics(self, path: Path, metrics: dict) -> None:
        entry = self.entry(path)
        if entry is not None and entry.get("metrics") != metrics:
            self._update(path, {**entry, "metrics": metrics})

    def _update(self, path: Path, entry: dict) -> None:
        with locked(self.manifest_path(path)):
            manifest = self._manifest(path)
            manifest[self.key(path)] = entry
            self.manifest_path(path).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


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
    """Trains (or loads) and evaluates the experiments of one profile."""

    def __init__(self, profile_name: str, root: Optional[Path] = None, device: Optional[str] = None,
                 retrain: bool = False, progress: bool = True, command: str = ""):
        self.profile = profile_name
        self.specs = profile(profile_name)
        self.device = device or default_device()
        self.paths = Paths(Path(root) if root else default_root(), profile_name)
        self.store = Store(self.paths.root, self.device, retrain, command)
        self.progress = progress
        self.finetune_curves: Dict[str, list] = {}   # task -> curve of the fine-tuning trained or loaded now
        self.lora_curves: Dict[str, Optional[list]] = {}

    # -- components --

    def train_settings(self, phase: Phase, method: str, seed: int, scratch: Optional[Path] = None,
                       **kw) -> TrainSettings:
        """The trainer's settings for `phase`; resumable from `scratch` when given."""
        return TrainSettings(method=method, max_iters=phase.iters, batch_size=phase.batch_size,
                             learning_rate=phase.lr, lr_schedule=phase.schedule, warmup_iters=phase.warmup,
                             seed=seed, autocast_bf16=torch.device(self.device).type == "cuda",
                             loss_positions=tasks.OUTPUT_LEN, checkpoint_path=str(scratch) if scratch else None,
                             checkpoint_every=max(1, phase.iters // 10),
                             log_every=max(1, phase.iters // 50), progress=self.progress, **kw)

    def task_batches(self, task_names: Tuple[str, ...], rows_per_task: int, placeholders: int):
        """get_batch for the trainer: `rows_per_task` rows of each task, in task order, each sequence starting
        with `placeholders` zero pads."""
        ids = torch.tensor([tasks.TASKS.index(t) for t in task_names], device=self.device)
        ids = ids.repeat_interleave(rows_per_task)
        return BatchStream(lambda generator: ids, placeholders, self.device)

    def _mixture_batches(self, task_names, rows: int, placeholders: int):
        """get_batch for pretraining: every row draws its task uniformly from `task_names`."""
        ids = torch.tensor([tasks.TASKS.index(t) for t in task_names], device=self.device)
        return BatchStream(
            lambda generator: ids[torch.randint(len(ids), (rows,), generator=generator, device=self.device)],
            placeholders, self.device)

    def pretrained(self, spec: Experiment, seed: int) -> GPT:
        path = self.paths.component(spec.name, seed, "pretrained")
        config = spec.model.config(spec.prefix_len)
        meta = self._meta(spec, seed, "pretrain", spec.pretrain, tasks=list(spec.pretrain_tasks),
                          model_config=asdict(config))  # another shape trains again
        stored = self.store.load(path, meta)
        if stored is not None:
            return load_model_from(stored, config, path).to(self.device)
        torch.manual_seed(seed)
        model = GPT(config)
        settings = self.train_settings(spec.pretrain, "pretrain", seed, self._scratch(path, meta))
        _, seconds = self._train(model, settings, self._mixture_batches(spec.pretrain_tasks, spec.pretrain.batch_size,
                                                                        spec.prefix_len))
        model.eval()
        self.store.save(path, model_state(model, half=True), {**meta, "train_time_s": seconds})
        return load_model_from(read(path), config, path).to(self.device)

    def finetuned(self, spec: Experiment, seed: int, base: GPT, task: str) -> Optional[GPT]:
        """A fully fine-tuned copy of `base`, or None when it is not stored and its accuracy is recorded."""
        path = self.paths.component(spec.name, seed, f"finetuned_{task}")
        config = spec.model.config(spec.prefix_len)
        meta = self._meta(spec, seed, "finetune", spec.finetune, tasks=[task])
        stored = self.store.load(path, meta)
        if stored is not None:
            self.finetune_curves[task] = self.store.entry(path).get("curve")
            return load_model_from(stored, config, path).to(self.device)
        model = GPT(config).to(self.device)
        model.load_state_dict(base.state_dict())
        settings = self.train_settings(spec.finetune, "finetune", seed, self._scratch(path, meta),
                                       eval_steps=curve_steps(spec.finetune.iters, spec.curve_points))
        result, seconds = self._train(model, settings, self.task_batches((task,), spec.finetune.batch_size, spec.prefix_len),
                                      evaluate=lambda _: [self._accuracy(spec, model, task)])
        model.eval()
        self.store.trained = True
        self.finetune_curves[task] = curve_of(result, spec.finetune.batch_size)
        if spec.save_finetuned:  # evaluate what is committed: the half-precision copy
            curve = {"curve": self.finetune_curves[task]} if spec.curve_points else {}
            self.store.save(path, model_state(model, half=True), {**meta, "train_time_s": seconds, **curve})
            return load_model_from(read(path), config, path).to(self.device)
        return model

    def prefixes(self, spec: Experiment, seed: int, base: GPT, group: Tuple[str, ...], phase: Phase) -> dict:
        """The stored record of a group of trained prefixes: {"prefixes": {task: prefix}, "loss_curves":
        {task: [(step, loss)]}, and with the profile's learning curves "curves": {task: [[samples, accuracy]]};
        a searched prefix's record also has "search", every screened run}."""
        search = spec.search(group[0]) if len(group) == 1 else None
        if search is not None:
            return self.searched_prefix(spec, seed, base, search, phase)
        name = "prefixes_" + "_".join(group)
        path = self.paths.component(spec.name, seed, name)
        restarts, seeds = spec.prefix_restarts, prefix_seeds(spec, seed, group)
        meta = self._meta(spec, seed, "prefix", phase, tasks=list(group), restarts=restarts, prefix_seeds=list(seeds))
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(phase, "prefix", seed, self._scratch(path, meta), n_prefixes=len(seeds),
                                           prefix_len=spec.prefix_len, prefix_seeds=seeds,
                                           eval_steps=curve_steps(phase.iters, spec.curve_points))
            every_task = group * restarts
            evaluate = lambda result: [self._accuracy(spec, base, t, p) for t, p in zip(every_task, result.prefixes.detach())]
            result, seconds = self._train(base, settings, self.task_batches(every_task, phase.batch_size, 0), evaluate)
            # final training loss of each (restart, task): mean of the last five logged losses
            final = torch.tensor([losses for _, losses in result.losses[-5:]]).mean(0).view(restarts, len(group))
            best = final.argmin(0)
            trained = result.prefixes.detach().cpu().view(restarts, len(group), *result.prefixes.shape[1:])
            kept = lambda i: int(best[i]) * len(group) + i   # index of task i's kept prefix among every_task
            stored = {"prefixes": {t: trained[best[i], i] for i, t in enumerate(group)},
                      "final_loss_per_restart": {t: final[:, i].tolist() for i, t in enumerate(group)},
                      "loss_curves": {t: column(result.losses, kept(i)) for i, t in enumerate(group)}}
            if spec.curve_points:
                stored["curves"] = {t: curve_of(result, phase.batch_size, kept(i)) for i, t in enumerate(group)}
            self.store.save(path, stored, {**meta, "train_time_s": seconds})
        return {**stored, "loss_curves": _loss_curves(stored, group)}

    def searched_prefix(self, spec: Experiment, seed: int, base: GPT, search: Search, phase: Phase) -> dict:
        """A negative prefix at its best chance (profiles.Search): every (learning rate, init) screened under
        the full phase's schedule, the best continued alone to the full budget."""
        task = search.task
        path = self.paths.component(spec.name, seed, f"prefixes_{task}")
        inits = prefix_seeds(spec, seed, (task,))
        lrs = search.lrs(phase, seed)
        meta = self._meta(spec, seed, "prefix", phase, tasks=[task], restarts=search.restarts,
                          prefix_seeds=list(inits),
                          search=json.loads(json.dumps({**asdict(search), "lrs_screened": lrs})))  # as the manifest holds it
        stored = self.store.load(path, meta)
        if stored is not None:
            return stored
        screen_iters = search.screen_iters(phase)
        eval_steps = tuple(sorted(set(curve_steps(phase.iters, spec.curve_points)) | {screen_iters}))
        evaluate = lambda result: [self._accuracy(spec, base, task, p) for p in result.prefixes.detach()]
        runs, results, seconds = [], {}, 0.0
        for lr in lrs:  # the phase's lr with every init, each other lr with the first
            seeds = inits if lr == phase.lr else inits[:1]
            state = self._scratch(path, meta, f"screen_lr{lr:g}")
            settings = self.train_settings(replace(phase, lr=lr), "prefix", seed, state, n_prefixes=len(seeds),
                                           prefix_len=spec.prefix_len, prefix_seeds=seeds, stop_at=screen_iters,
                                           eval_steps=eval_steps)
            results[lr], run_seconds = self._train(base, settings, self.task_batches((task,) * len(seeds),
                                                                                     phase.batch_size, 0), evaluate)
            seconds += run_seconds
            final_loss = torch.tensor([losses for _, losses in results[lr].losses[-5:]]).mean(0)
            runs += [{"lr": lr, "restart": k, "init_seed": init, "screen_samples": screen_iters * phase.batch_size,
                      "screen_accuracy": results[lr].evals[-1][1][k], "screen_loss": float(final_loss[k]),
                      "curve": curve_of(results[lr], phase.batch_size, k),
                      "loss_curve": [[step * phase.batch_size, round(loss, 4)] for step, loss in column(results[lr].losses, k)],
                      "state": str(state)}
                     for k, init in enumerate(seeds)]
        best = max(runs, key=lambda run: (run["screen_accuracy"], -run["screen_loss"]))
        result = results[best["lr"]]
        prefix, losses, curve = result.prefixes[best["restart"]], column(result.losses, best["restart"]), best["curve"]
        if screen_iters < phase.iters:  # the best run goes on alone to the full budget
            settings = self.train_settings(replace(phase, lr=best["lr"]), "prefix", seed,
                                           self._scratch(path, meta, "continued"), prefix_len=spec.prefix_len,
                                           prefix_seeds=(best["init_seed"],), eval_steps=eval_steps,
                                           resume_from=best["state"], resume_prefix=best["restart"])
            continued, _ = self._train(base, settings, self.task_batches((task,), phase.batch_size, 0), evaluate)
            seconds += continued.train_time_s - result.train_time_s  # it started from the screen's clock
            prefix, losses, curve = continued.prefixes[0], column(continued.losses, 0), curve_of(continued, phase.batch_size)
        for run in runs:
            del run["state"]
        stored = {"prefixes": {task: prefix.detach().cpu()}, "loss_curves": {task: losses}, "curves": {task: curve},
                  "search": {task: runs}, "chosen": {task: {k: best[k] for k in ("lr", "restart", "init_seed")}}}
        self.store.save(path, stored, {**meta, "train_time_s": round(seconds, 1)})
        return stored

    def lora(self, spec: Experiment, seed: int, base: GPT, lora: LoRASpec) -> GPT:
        path = self.paths.component(spec.name, seed, lora.name)
        model = GPT(base.config).to(self.device)
        model.load_state_dict(base.state_dict())
        meta = self._meta(spec, seed, "lora", lora.phase, tasks=[lora.task], targets=list(lora.targets))
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(lora.phase, "lora", seed, self._scratch(path, meta),
                                           lora_rank=1, lora_targets=lora.targets,
                                           eval_steps=curve_steps(lora.phase.iters, spec.curve_points))
            result, seconds = self._train(model, settings, self.task_batches((lora.task,), lora.phase.batch_size,
                                                                             placeholders_of(base)),
                                          evaluate=lambda _: [self._accuracy(spec, model, lora.task)])
            stored = {"lora": {k: v.detach().cpu() for k, v in lora_parameters(model).items()}}
            if spec.curve_points:
                stored["curve"] = curve_of(result, lora.phase.batch_size)
            self.store.save(path, stored, {**meta, "train_time_s": seconds})
        else:
            add_lora(model, rank=1, targets=lora.targets)
            load_lora(model, stored["lora"], str(path))
        self.lora_curves[lora.name] = stored.get("curve")
        return model.eval()

    def _train(self, model: GPT, settings: TrainSettings, get_batch, evaluate=None):
        """Train; return the trainer's result and its training seconds (summed over a resumed run's pieces)."""
        result = train(model, settings, get_batch, self.device, evaluate=evaluate if settings.eval_steps else None)
        return result, round(result.train_time_s, 1)

    @staticmethod
    def _accuracy(spec: Experiment, model: GPT, task: str, prefix: Optional[torch.Tensor] = None) -> float:
        """Held-out accuracy (percent) on one task, on the experiment's evaluation inputs: a curve's point."""
        return accuracies(model, (task,), prefix, spec.eval_samples)[task]

    def _scratch(self, path: Path, meta: dict, run: str = "") -> Path:
        """Resumable training state of the component at `path` (its `run`, for a component trained in
        several runs), one file per set of training settings (Store.SPEC_FIELDS): an interrupted run resumes,
        a changed profile or base model starts afresh. A prefix's or LoRA's state is small and sits beside
        the checkpoints, in `training/`, so that a queue stopped mid-run resumes from what is committed
        (storing the component deletes it); a whole model's stays under `<root>/runs/`, never committed."""
        settings = json.dumps({f: meta.get(f) for f in Store.SPEC_FIELDS}, sort_keys=True)
        name = f"{path.stem}.{hashlib.sha256(settings.encode()).hexdigest()[:12]}{'.' + run if run else ''}.train.pt"
        if meta["method"] in ("prefix", "lora"):
            return path.parent / "training" / name
        return self.paths.root / "runs" / self.profile / path.parent.relative_to(self.paths.checkpoints) / name

    def _meta(self, spec, seed, method, phase: Phase, **extra) -> dict:
        meta = {"profile": self.profile, "experiment": spec.name, "seed": seed, "method": method,
                "phase": asdict(phase), "iters": phase.iters, **extra}
        if spec.curve_points and method != "pretrain":
            meta["curve_points"] = spec.curve_points
        if method != "pretrain":  # trained from this seed's stored pretrained model: retrain if it changes
            meta["base_sha256"] = self._pretrained_sha256(spec, seed)
        return meta

    # -- the experiment --

    def run(self, name: str, seed: int = 0) -> Outcome:
        """Train (or load) every component of experiment `name` for `seed`, evaluate, write results."""
        if name not in self.specs:
            raise ValueError(f"unknown experiment {name!r}; choose from {EXPERIMENTS}")
        spec, start = self.specs[name], time.time()
        self.store.trained = False
        self.finetune_curves, self.lora_curves = {}, {}
        out = Outcome(spec, seed, self.pretrained(spec, seed))
        recorded = self._recorded(spec, seed)
        for task in spec.finetune_tasks:
            model = self.finetuned_or_recorded(spec, seed, out.pretrained, task, recorded)
            if model is not None:
                out.finetuned[task] = model
        for group, phase in spec.prefix_groups:
            stored = self.prefixes(spec, seed, out.pretrained, group, phase)
            out.prefixes.update({t: p.to(self.device) for t, p in stored["prefixes"].items()})
            out.prefix_loss_curves.update(stored["loss_curves"])
            out.curves.update({f"prefix_{t}": c for t, c in stored.get("curves", {}).items()})
            out.searches.update({f"prefix_{t}": runs for t, runs in stored.get("search", {}).items()})
        for lora in spec.loras:
            out.loras[lora.name] = self.lora(spec, seed, out.pretrained, lora)
        for task in spec.finetune_tasks:  # trained now, stored, or recorded with its accuracy
            curve = self.finetune_curves.get(task) or recorded.get("curves", {}).get(f"finetuned_{task}")
            if curve:
                out.curves[f"finetuned_{task}"] = curve
        out.curves.update({name: curve for name, curve in self.lora_curves.items() if curve})
        self._evaluate(out, recorded)
        self._record_metrics(out)
        out.wall_time_s = time.time() - start
        self._write_results(out)
        return out

    def finetuned_or_recorded(self, spec, seed, base, task, recorded) -> Optional[GPT]:
        key = f"finetuned_{task}"
        if not spec.save_finetuned and key in recorded.get("accuracy", {}) and not self.store.retrain:
            return None  # not committed; its accuracy row comes from the results file
        return self.finetuned(spec, seed, base, task)

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
        trained_from = {"base_sha256": self._pretrained_sha256(spec, seed),
                        "finetune_phase": asdict(spec.finetune) if spec.finetune else None}
        if spec.curve_points:  # a record without learning curves trains again
            trained_from["curve_points"] = spec.curve_points
        return trained_from

    def _pretrained_sha256(self, spec: Experiment, seed: int) -> str:
        return self.store.entry(self.paths.component(spec.name, seed, "pretrained"))["sha256"]

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


def prefix_seeds(spec: Experiment, seed: int, group: Tuple[str, ...]) -> Tuple[int, ...]:
    """The init seed of each prefix trained for `group`, in training order (restart by restart, each of
    the group's tasks; spec.restarts(group) restarts): "independent" gives every (experiment, seed, task,
    restart) its own draw; "consecutive" is seed + k, how the gpu profile's committed A, B and D prefixes
    were drawn."""
    restarts = spec.restarts(group)
    if spec.prefix_init == "consecutive":
        return tuple(seed + k for k in range(len(group) * restarts))
    names = [f"{spec.name}/seed{seed}/{task}/restart{r}" for r in range(restarts) for task in group]
    return tuple(int(hashlib.sha256(name.encode()).hexdigest()[:15], 16) for name in names)


def accuracies(model: GPT, task_names, prefix=None, n: int = 3200) -> Dict[str, float]:
    """Exact-match accuracy in percent of the model's greedy outputs on each task's evaluation set."""
    return {task: 100.0 * acc for task, acc in
            tasks.evaluate_tasks(model, task_names, prefix, n=n, placeholders=placeholders_of(model)).items()}


def _loss_curves(stored: dict, group: Tuple[str, ...]) -> Dict[str, list]:
    """Per-task loss curves of a stored prefix group (older files keep only the raw per-prefix log)."""
    if "loss_curves" in stored:
        return stored["loss_curves"]
    log = stored.get("losses", [])
    if not log or len(log[0][1]) != len(group):  # several restarts per task: no way to tell which was kept
        return {}
    return {t: [(step, losses[i]) for step, losses in log] for i, t in enumerate(group)}


def column(log: list, k: int) -> list:
    """[(step, value k)] of a log [(step, [value per prefix])]."""
    return [(step, values[k]) for step, values in log]


def curve_of(result, samples_per_step: int, k: int = 0) -> list:
    """The learning curve [[samples, held-out accuracy]] of prefix (or run) k from the trainer's evals."""
    return [[step * samples_per_step, round(values[k], 4)] for step, values in result.evals]


def training_states(path: Path) -> List[Path]:
    """The training states (Runner._scratch) of the component stored at `path`."""
    folder = path.parent / "training"
    return sorted(folder.glob(f"{path.stem}.*.train.pt")) if folder.exists() else []


def placeholders_of(model: GPT) -> int:
    """Placeholder positions the model was built for (ModelSpec.config: block_size = prefix_len + 20)."""
    return model.config.block_size - 2 * tasks.INPUT_LEN


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
                runner.pretrained(runner.specs[name], seed)
                print(f"[{args.profile}] {name} seed {seed}: pretrained model in {runner.paths.component(name, seed, 'pretrained')}")
                continue
            outcome = runner.run(name, seed)
            print(f"[{args.profile}] {name} seed {seed}: {outcome.wall_time_s:.0f} s")
            for row, accs in outcome.accuracy.items():
                print(f"  {row:28s} " + "  ".join(f"{tasks.TASK_SYMBOLS[t]} {a:6.2f}" for t, a in accs.items()))


if __name__ == "__main__":
    main()
