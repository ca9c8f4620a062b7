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
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from . import checkpoint, tasks
from .lora import add_lora, load_lora, lora_parameters
from .model import GPT
from .profiles import EXPERIMENTS, PROFILES, Experiment, LoRASpec, Phase, describe, profile
from .trainer import TrainSettings, train

REPO = Path(__file__).resolve().parents[2]
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

    @property
    def scratch(self) -> Path:  # resumable training state, never committed
        return self.root / "runs" / self.profile

    def component(self, experiment: str, seed: int, name: str) -> Path:
        return self.checkpoints / experiment / f"seed{seed}" / f"{name}.pt"


def default_root() -> Path:
    """The repository, or REPRO_OUT when a notebook runs in the quick setting."""
    return Path(os.environ["REPRO_OUT"]) if os.environ.get("REPRO_OUT") else REPO


def hardware(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores (torch {torch.__version__})"


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

    def state_dict(self) -> dict:
        return {"queue": [(x.cpu(), y.cpu()) for x, y in self.queue]}

    def load_state_dict(self, state: dict) -> None:
        self.queue = [(x.to(self.device), y.to(self.device)) for x, y in state["queue"]]


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
    SPEC_FIELDS = ("method", "model_config", "phase", "tasks", "restarts", "prefix_seeds", "targets", "base_sha256")

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
        return checkpoint.read(path, expected_sha256=entry["sha256"])

    def save(self, path: Path, obj: dict, meta: dict) -> None:
        self.trained = True
        checkpoint.atomic_save(obj, path)
        self._update(path, {"command": self.command, "hardware": hardware(self.device), **meta,
                            "sha256": checkpoint.sha256(path), "bytes": path.stat().st_size})

    def record_metrics(self, path: Path, metrics: dict) -> None:
        entry = self.entry(path)
        if entry is not None and entry.get("metrics") != metrics:
            self._update(path, {**entry, "metrics": metrics})

    def _update(self, path: Path, entry: dict) -> None:
        with checkpoint.locked(self.manifest_path(path)):
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
            return checkpoint.load_model_from(stored, config, path).to(self.device)
        torch.manual_seed(seed)
        model = GPT(config)
        settings = self.train_settings(spec.pretrain, "pretrain", seed, self._scratch(path, meta))
        _, seconds = self._train(model, settings, self._mixture_batches(spec.pretrain_tasks, spec.pretrain.batch_size,
                                                                        spec.prefix_len))
        model.eval()
        self.store.save(path, checkpoint.model_state(model, half=True), {**meta, "train_time_s": seconds})
        return checkpoint.load_model_from(checkpoint.read(path), config, path).to(self.device)

    def finetuned(self, spec: Experiment, seed: int, base: GPT, task: str) -> Optional[GPT]:
        """A fully fine-tuned copy of `base`, or None when it is not stored and its accuracy is recorded."""
        path = self.paths.component(spec.name, seed, f"finetuned_{task}")
        config = spec.model.config(spec.prefix_len)
        meta = self._meta(spec, seed, "finetune", spec.finetune, tasks=[task])
        stored = self.store.load(path, meta)
        if stored is not None:
            return checkpoint.load_model_from(stored, config, path).to(self.device)
        model = GPT(config).to(self.device)
        model.load_state_dict(base.state_dict())
        settings = self.train_settings(spec.finetune, "finetune", seed, self._scratch(path, meta))
        _, seconds = self._train(model, settings, self.task_batches((task,), spec.finetune.batch_size, spec.prefix_len))
        model.eval()
        self.store.trained = True
        if spec.save_finetuned:  # evaluate what is committed: the half-precision copy
            self.store.save(path, checkpoint.model_state(model, half=True), {**meta, "train_time_s": seconds})
            return checkpoint.load_model_from(checkpoint.read(path), config, path).to(self.device)
        return model

    def prefixes(self, spec: Experiment, seed: int, base: GPT, group: Tuple[str, ...], phase: Phase
                 ) -> Tuple[Dict[str, torch.Tensor], Dict[str, list]]:
        """Trained prefixes of a group of tasks, and each one's training-loss curve [(step, loss)]."""
        name = "prefixes_" + "_".join(group)
        path = self.paths.component(spec.name, seed, name)
        restarts, seeds = spec.prefix_restarts, prefix_seeds(spec, seed, group)
        meta = self._meta(spec, seed, "prefix", phase, tasks=list(group), restarts=restarts, prefix_seeds=list(seeds))
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(phase, "prefix", seed, self._scratch(path, meta), n_prefixes=len(seeds),
                                           prefix_len=spec.prefix_len, prefix_seeds=seeds)
            result, seconds = self._train(base, settings, self.task_batches(group * restarts, phase.batch_size, 0))
            # final training loss of each (restart, task): mean of the last five logged losses
            final = torch.tensor([losses for _, losses in result.losses[-5:]]).mean(0).view(restarts, len(group))
            best = final.argmin(0)
            trained = result.prefixes.detach().cpu().view(restarts, len(group), *result.prefixes.shape[1:])
            curve = lambda i: [(step, losses[best[i] * len(group) + i]) for step, losses in result.losses]
            stored = {"prefixes": {t: trained[best[i], i] for i, t in enumerate(group)},
                      "final_loss_per_restart": {t: final[:, i].tolist() for i, t in enumerate(group)},
                      "loss_curves": {t: curve(i) for i, t in enumerate(group)}}
            self.store.save(path, stored, {**meta, "train_time_s": seconds})
        return {t: p.to(self.device) for t, p in stored["prefixes"].items()}, _loss_curves(stored, group)

    def lora(self, spec: Experiment, seed: int, base: GPT, lora: LoRASpec) -> GPT:
        path = self.paths.component(spec.name, seed, lora.name)
        model = GPT(base.config).to(self.device)
        model.load_state_dict(base.state_dict())
        meta = self._meta(spec, seed, "lora", lora.phase, tasks=[lora.task], targets=list(lora.targets))
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(lora.phase, "lora", seed, self._scratch(path, meta),
                                      lora_rank=1, lora_targets=lora.targets)
            _, seconds = self._train(model, settings, self.task_batches((lora.task,), lora.phase.batch_size,
                                                                        placeholders_of(base)))
            self.store.save(path, {"lora": {k: v.detach().cpu() for k, v in lora_parameters(model).items()}},
                            {**meta, "train_time_s": seconds})
        else:
            add_lora(model, rank=1, targets=lora.targets)
            load_lora(model, stored["lora"], str(path))
        return model.eval()

    def _train(self, model: GPT, settings: TrainSettings, get_batch):
        """Train; return the trainer's result and its training seconds (summed over a resumed run's pieces)."""
        result = train(model, settings, get_batch, self.device)
        return result, round(result.train_time_s, 1)

    def _scratch(self, path: Path, meta: dict) -> Path:
        """Resumable training state of the component at `path`, one file per set of training settings
        (Store.SPEC_FIELDS): an interrupted run resumes, a changed profile or base model starts afresh."""
        settings = json.dumps({f: meta.get(f) for f in Store.SPEC_FIELDS}, sort_keys=True)
        digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
        return self.paths.scratch / path.relative_to(self.paths.checkpoints).with_suffix(f".{digest}.train.pt")

    def _meta(self, spec, seed, method, phase: Phase, **extra) -> dict:
        meta = {"profile": self.profile, "experiment": spec.name, "seed": seed, "method": method,
                "phase": asdict(phase), "iters": phase.iters, **extra}
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
        out = Outcome(spec, seed, self.pretrained(spec, seed))
        recorded = self._recorded(spec, seed)
        for task in spec.finetune_tasks:
            model = self.finetuned_or_recorded(spec, seed, out.pretrained, task, recorded)
            if model is not None:
                out.finetuned[task] = model
        for group, phase in spec.prefix_groups:
            prefixes, curves = self.prefixes(spec, seed, out.pretrained, group, phase)
            out.prefixes.update(prefixes)
            out.prefix_loss_curves.update(curves)
        for lora in spec.loras:
            out.loras[lora.name] = self.lora(spec, seed, out.pretrained, lora)
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
        return {"base_sha256": self._pretrained_sha256(spec, seed),
                "finetune_phase": asdict(spec.finetune) if spec.finetune else None}

    def _pretrained_sha256(self, spec: Experiment, seed: int) -> str:
        return self.store.entry(self.paths.component(spec.name, seed, "pretrained"))["sha256"]

    def _write_results(self, out: Outcome) -> None:
        path = self._results_path(out.spec.name)
        with checkpoint.locked(path):  # other seeds of this experiment may finish in parallel processes
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
            }
            data["seeds"] = dict(sorted(data["seeds"].items(), key=lambda item: int(item[0])))
            path.write_text(json.dumps(data, indent=1) + "\n")


def prefix_seeds(spec: Experiment, seed: int, group: Tuple[str, ...]) -> Tuple[int, ...]:
    """The init seed of each prefix trained for `group`, in training order (restart by restart, each of
    the group's tasks): "independent" gives every (experiment, seed, task, restart) its own draw;
    "consecutive" is seed + k, how the gpu profile's committed A, B and D prefixes were drawn."""
    if spec.prefix_init == "consecutive":
        return tuple(seed + k for k in range(len(group) * spec.prefix_restarts))
    names = [f"{spec.name}/seed{seed}/{task}/restart{r}" for r in range(spec.prefix_restarts) for task in group]
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


def placeholders_of(model: GPT) -> int:
    """Placeholder positions the model was built for (ModelSpec.config: block_size = prefix_len + 20)."""
    return model.config.block_size - 2 * tasks.INPUT_LEN


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
    parser.add_argument("--show-profile", choices=PROFILES, metavar="PROFILE",
                        help="print every phase of PROFILE (models, samples, rows, learning rates) and exit")
    args = parser.parse_args(argv)
    if args.show_profile:
        print(describe(args.show_profile))
        return
    unknown = [e for e in args.experiments if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {EXPERIMENTS}")
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
