"""The paper's Section 5 and 6 experiments A-D, under one of four profiles.

    python -m mingpt.experiments A B C D --profile cpu --seeds 0 1 2

A  cannot learn a new task: 1 layer, pretrained on sort-ascending; full fine-tuning vs a prefix on
   sort-descending.
B  can elicit a pretraining task: 1 layer, no LayerNorm before attention, pretrained on the four-task
   mixture; one prefix per task.
C  can learn a composition, not a new pattern: 4 layers, n_S = 10; prefixes (and full fine-tuning) on
   the four pretraining tasks, sort-then-add-one and the double histogram.
   C also trains an MLP-only rank-1 LoRA on the double histogram: 10,240 parameters, as many as the
   n_S = 10 prefix.
D  prefix-tuning vs LoRA at equal parameter count on the double histogram: a model pretrained with
   n_S = 12; a prefix and a rank-1 LoRA of the MLP and attention output, 12,288 parameters each.

Profiles: ``paper`` (the companion protocol: batch 64, its iterations and learning rates), ``gpu``
(the paper's number of training samples per phase with large batches and adapted learning rates;
all prefixes of a phase train together), ``cpu`` (budgets for a 2-core machine; smaller models where
stated) and ``quick`` (seconds; only checks that everything runs).

Every trained component is cached: a checkpoint under ``<root>/minGPT/checkpoints/<profile>`` is
loaded (its sha256 checked against the manifest) instead of retraining, unless the profile's settings
or the pretrained model it was trained from changed since; components too large to commit (C's fully
fine-tuned models) reuse their recorded accuracies from the results file.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from . import checkpoint, tasks
from .lora import add_lora, load_lora, lora_parameters
from .model import GPT, GPTConfig
from .trainer import TrainSettings, train

REPO = Path(__file__).resolve().parents[2]
BATCHES_PER_DRAW = 16  # training batches generated per sampler call (see BatchStream)
EXPERIMENTS = ("A", "B", "C", "D")
PROFILES = ("paper", "gpu", "cpu", "quick")


# ---- specifications --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """How one component trains: samples per trained object (per prefix), rows per step, learning rate."""
    samples: int
    batch_size: int
    lr: float
    schedule: str = "constant"
    warmup: int = 0

    @property
    def iters(self) -> int:
        return math.ceil(self.samples / self.batch_size)


@dataclass(frozen=True)
class ModelSpec:
    n_layer: int
    n_head: int
    n_embd: int
    attn_layernorm: bool = True

    def config(self, prefix_len: int) -> GPTConfig:
        return GPTConfig(vocab_size=tasks.VOCAB_SIZE, block_size=prefix_len + 2 * tasks.INPUT_LEN,
                         n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                         attn_layernorm=self.attn_layernorm)


@dataclass(frozen=True)
class LoRASpec:
    name: str
    targets: Tuple[str, ...]
    task: str
    phase: Phase


@dataclass(frozen=True)
class Experiment:
    name: str
    model: ModelSpec
    prefix_len: int
    pretrain_tasks: Tuple[str, ...]
    pretrain: Phase
    eval_tasks: Tuple[str, ...]
    finetune: Optional[Phase] = None
    finetune_tasks: Tuple[str, ...] = ()
    save_finetuned: bool = True                    # False: too large to commit; accuracies are recorded
    prefix_groups: Tuple[Tuple[Tuple[str, ...], Phase], ...] = ()   # prefixes trained together
    loras: Tuple[LoRASpec, ...] = ()
    full_prefix_matrix: bool = True                # every prefix on every eval task, or its own task only
    prefix_restarts: int = 1                       # >1: train that many inits per task, keep the lowest loss
    eval_samples: int = 3200


def _paper(it: int, lr: float) -> Phase:
    return Phase(samples=64 * it, batch_size=64, lr=lr)


MIX, SORT, SORT_DESC, HIST = tasks.PRETRAIN_TASKS, ("sort_asc",), ("sort_desc",), ("double_hist",)
TINY = ModelSpec(1, 1, 96)
ONE_LAYER = ModelSpec(1, 4, 256, attn_layernorm=False)
FOUR_LAYERS = ModelSpec(4, 4, 256)


def _paper_profile() -> Dict[str, Experiment]:
    return {
        "A": Experiment("A", TINY, 1, SORT, _paper(20_000, 5e-4), ("sort_asc", "sort_desc"),
                        finetune=_paper(10_000, 5e-4), finetune_tasks=SORT_DESC,
                        prefix_groups=((SORT_DESC, _paper(40_000, 5e-4)),)),
        "B": Experiment("B", ONE_LAYER, 1, MIX, _paper(20_000, 5e-4), MIX,
                        prefix_groups=((MIX, _paper(30_000, 5e-5)),)),
        "C": Experiment("C", FOUR_LAYERS, 10, MIX, _paper(40_000, 5e-4), tasks.TASKS,
                        finetune=_paper(10_000, 5e-4), finetune_tasks=tasks.TASKS, save_finetuned=False,
                        prefix_groups=((MIX, _paper(20_000, 5e-5)),
                                       (("sort_asc_add1", "double_hist"), _paper(500_000, 5e-5))),
                        loras=(LoRASpec("lora_mlp", ("mlp",), "double_hist", _paper(10_000, 5e-3)),),
                        full_prefix_matrix=False),
        "D": Experiment("D", FOUR_LAYERS, 12, MIX, _paper(40_000, 5e-4), HIST,
                        prefix_groups=((HIST, _paper(100_000, 5e-5)),),
                        loras=(LoRASpec("lora_mlp_attn_out", ("mlp", "attn_out"), "double_hist",
                                        _paper(10_000, 5e-3)),)),
    }


def _large_batch(phase: Phase, batch_size: int, lr: float, schedule="constant", warmup=0) -> Phase:
    """The same number of samples as `phase` in steps of `batch_size` rows."""
    return Phase(phase.samples, batch_size, lr, schedule, warmup)


def _gpu_profile() -> Dict[str, Experiment]:
    """The paper's samples per phase; larger batches where the steps are many or the time goes.

    A's pretraining and fine-tuning keep the paper's batch of 64 (a tiny model, cheap either way).
    Pretraining 256 (B) or 512 rows a step, fine-tuning 512, LoRA 128, with warm-up and cosine decay;
    prefixes 512 rows each a step at a constant 1e-3, or 4096 rows each with cosine decay for the
    long phases (over 4M samples each), where the time goes.
    """
    paper = _paper_profile()
    pretrain = lambda p: Phase(p.samples, 512, 1e-3, "cosine", 200)
    finetune = lambda p: Phase(p.samples, 512, 5e-4, "cosine", 100)
    prefix = lambda p: (Phase(p.samples, 512, 1e-3) if p.samples < 4e6
                        else Phase(p.samples, 4096, 2e-3, "cosine", 100))
    lora = lambda p: Phase(p.samples, 128, 5e-3, "cosine", 50)
    out = {name: _rescale(spec, pretrain, finetune, prefix, lora) for name, spec in paper.items()}
    out["A"] = replace(out["A"], pretrain=paper["A"].pretrain, finetune=paper["A"].finetune)
    # B: single inits of the n_S = 1 prefixes can plateau (a 512-row, one-init run left ↘ at 0.15 loss
    # per token); the paper's 1.92M samples per task go to 4 inits of 480k in 64-row steps, the
    # lowest final loss kept
    b_prefix = paper["B"].prefix_groups[0][1]
    out["B"] = replace(out["B"], pretrain=Phase(paper["B"].pretrain.samples, 256, 1e-3, "cosine", 200),
                       prefix_groups=((MIX, Phase(b_prefix.samples // 4, 64, 1e-3)),), prefix_restarts=4)
    return out


def _cpu_profile() -> Dict[str, Experiment]:
    """2-core budgets: far fewer samples; B uses width 128, C and D 2 layers of width 64.

    Every prefix trains in many small steps (64 rows) at learning rate 1e-2 with cosine decay.
    B pretrains on 1.2M samples (its four tasks each need about as many as A's one: with 300k its
    ↗ / ↘ prefixes reached 70 / 59 %) and its n_S = 1 prefixes get 4 initialisations each, the lowest
    final loss kept (see the gpu profile).
    With width d and L layers the parameter counts still match as in the paper: an n_S = 12 prefix and
    a rank-1 LoRA of MLP + attention output both have 12·d·L parameters, n_S = 10 and MLP-only 10·d·L.
    """
    gpu = _gpu_profile()
    small_b, small_cd = ModelSpec(1, 4, 128, attn_layernorm=False), ModelSpec(2, 4, 64)
    a, b, c, d = gpu["A"], gpu["B"], gpu["C"], gpu["D"]
    prefix = lambda samples: Phase(samples, 64, 1e-2, "cosine", 20)
    lora = lambda l: replace(l, phase=Phase(60_000, 64, 5e-3, "cosine", 20))
    pretrain_cd = Phase(450_000, 256, 1.5e-3, "cosine", 100)
    return {
        "A": replace(a, pretrain=Phase(300_000, 256, 2e-3, "cosine", 100),
                     finetune=Phase(150_000, 256, 1e-3, "cosine", 50),
                     prefix_groups=((SORT_DESC, prefix(150_000)),)),
        "B": replace(b, model=small_b, pretrain=Phase(1_200_000, 256, 2e-3, "cosine", 100),
                     prefix_groups=((MIX, prefix(64_000)),), prefix_restarts=4),
        "C": replace(c, model=small_cd, pretrain=pretrain_cd, finetune=Phase(20_000, 256, 1e-3, "cosine", 20),
                     prefix_groups=((MIX, prefix(160_000)), (("sort_asc_add1", "double_hist"), prefix(160_000))),
                     loras=tuple(lora(l) for l in c.loras)),
        "D": replace(d, model=small_cd, pretrain=pretrain_cd, prefix_groups=((HIST, prefix(100_000)),),
                     loras=tuple(lora(l) for l in d.loras)),
    }


def _quick_profile() -> Dict[str, Experiment]:
    """A few steps of everything on tiny models: checks that the pipeline runs, not the claims."""
    cpu = _cpu_profile()
    tiny = lambda p: Phase(8 * 16, 16, p.lr, p.schedule, 0)
    small = ModelSpec(1, 2, 32)
    out = {}
    for name, spec in cpu.items():
        spec = _rescale(spec, tiny, tiny, tiny, tiny)
        out[name] = replace(spec, model=replace(small, attn_layernorm=spec.model.attn_layernorm),
                            eval_samples=64)
    return out


def _rescale(spec: Experiment, pretrain, finetune, prefix, lora) -> Experiment:
    """Apply a phase transformation to every phase of an experiment."""
    return replace(spec, pretrain=pretrain(spec.pretrain),
                   finetune=finetune(spec.finetune) if spec.finetune else None,
                   prefix_groups=tuple((group, prefix(phase)) for group, phase in spec.prefix_groups),
                   loras=tuple(replace(l, phase=lora(l.phase)) for l in spec.loras))


def profile(name: str) -> Dict[str, Experiment]:
    builders = {"paper": _paper_profile, "gpu": _gpu_profile, "cpu": _cpu_profile, "quick": _quick_profile}
    if name not in builders:
        raise ValueError(f"unknown profile {name!r}; choose from {PROFILES}")
    return builders[name]()


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

    Each experiment folder has its own manifest.json (so experiments can run in parallel processes),
    keyed by the checkpoint's path relative to the root.
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

    # what a component was trained with; base_sha256: the stored pretrained model it was trained from
    SPEC_FIELDS = ("method", "phase", "tasks", "restarts", "targets", "base_sha256")

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
        meta = self._meta(spec, seed, "pretrain", spec.pretrain, tasks=list(spec.pretrain_tasks))
        stored = self.store.load(path, meta)
        if stored is not None:
            return checkpoint.load_model_from(stored, config, path).to(self.device)
        torch.manual_seed(seed)
        model = GPT(config)
        settings = self.train_settings(spec.pretrain, "pretrain", seed, self._scratch(path, meta))
        train(model, settings, self._mixture_batches(spec.pretrain_tasks, spec.pretrain.batch_size, spec.prefix_len),
              self.device)
        model.eval()
        self.store.save(path, checkpoint.model_state(model, half=True), meta)
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
        train(model, settings, self.task_batches((task,), spec.finetune.batch_size, spec.prefix_len), self.device)
        model.eval()
        self.store.trained = True
        if spec.save_finetuned:  # evaluate what is committed: the half-precision copy
            self.store.save(path, checkpoint.model_state(model, half=True), meta)
            return checkpoint.load_model_from(checkpoint.read(path), config, path).to(self.device)
        return model

    def prefixes(self, spec: Experiment, seed: int, base: GPT, group: Tuple[str, ...], phase: Phase
                 ) -> Tuple[Dict[str, torch.Tensor], Dict[str, list]]:
        """Trained prefixes of a group of tasks, and each one's training-loss curve [(step, loss)]."""
        name = "prefixes_" + "_".join(group)
        path = self.paths.component(spec.name, seed, name)
        restarts = spec.prefix_restarts
        meta = self._meta(spec, seed, "prefix", phase, tasks=list(group), restarts=restarts)
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(phase, "prefix", seed, self._scratch(path, meta),
                                      n_prefixes=len(group) * restarts, prefix_len=spec.prefix_len)
            result = train(base, settings, self.task_batches(group * restarts, phase.batch_size, placeholders=0),
                           self.device)
            # final training loss of each (restart, task): mean of the last five logged losses
            final = torch.tensor([losses for _, losses in result.losses[-5:]]).mean(0).view(restarts, len(group))
            best = final.argmin(0)
            trained = result.prefixes.detach().cpu().view(restarts, len(group), *result.prefixes.shape[1:])
            curve = lambda i: [(step, losses[best[i] * len(group) + i]) for step, losses in result.losses]
            stored = {"prefixes": {t: trained[best[i], i] for i, t in enumerate(group)},
                      "final_loss_per_restart": {t: final[:, i].tolist() for i, t in enumerate(group)},
                      "loss_curves": {t: curve(i) for i, t in enumerate(group)}}
            self.store.save(path, stored, meta)
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
            train(model, settings, self.task_batches((lora.task,), lora.phase.batch_size, placeholders_of(base)),
                  self.device)
            self.store.save(path, {"lora": {k: v.detach().cpu() for k, v in lora_parameters(model).items()}}, meta)
        else:
            add_lora(model, rank=1, targets=lora.targets)
            load_lora(model, stored["lora"], str(path))
        return model.eval()

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
        n_layer, d = out.pretrained.config.n_layer, out.pretrained.config.n_embd
        out.param_counts = {"model": out.pretrained.num_params(), "prefix": n_layer * spec.prefix_len * d}
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")


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
    args = parser.parse_args(argv)
    unknown = [e for e in args.experiments if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {EXPERIMENTS}")
    runner = Runner(args.profile, args.root, args.device, args.retrain, not args.no_progress)
    for seed in args.seeds:
        for name in args.experiments or EXPERIMENTS:
            outcome = runner.run(name, seed)
            print(f"[{args.profile}] {name} seed {seed}: {outcome.wall_time_s:.0f} s")
            for row, accs in outcome.accuracy.items():
                print(f"  {row:28s} " + "  ".join(f"{tasks.TASK_SYMBOLS[t]} {a:6.2f}" for t, a in accs.items()))


if __name__ == "__main__":
    main()
