"""The settings of experiments A-D under each profile, written out: one table per profile.

    python -m mingpt.experiments --show-profile cpu      # every phase of a profile, resolved

The experiments' structure is the paper's and the same in every profile (which tasks, which prefixes,
which LoRA); a profile chooses the model shapes and the phases: training samples per trained object
(per prefix), rows per step, learning rate, schedule and warm-up.
"""

import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

from . import tasks
from .model import GPTConfig

EXPERIMENTS = ("A", "B", "C", "D")
PROFILES = ("paper", "gpu", "cpu", "quick")
PREFIX_INITS = ("independent", "consecutive")


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
class Search:
    """A negative prefix at its best chance. `restarts` inits at the phase's learning rate, and on seed 0 the
    first init at each of `sweep_lrs` too, train under the full phase's schedule up to `screen_samples`
    (or the full budget, when smaller); the run with the best held-out accuracy there (then the lowest
    training loss) continues alone to the phase's full budget. The reported prefix is that run."""
    task: str
    restarts: int = 4
    screen_samples: int = 1_000_000
    sweep_lrs: Tuple[float, ...] = ()    # seed 0 only

    def screen_iters(self, phase: Phase) -> int:
        return min(math.ceil(self.screen_samples / phase.batch_size), phase.iters)

    def lrs(self, phase: Phase, seed: int) -> Tuple[float, ...]:
        """The learning rates screened for `seed`: the phase's first (with every init), then the sweep's."""
        return (phase.lr,) + (self.sweep_lrs if seed == 0 else ())


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
    prefix_init: str = "independent"               # how prefix inits are seeded: see components.prefix_seeds
    eval_samples: int = 3200
    searches: Tuple[Search, ...] = ()              # negative prefixes searched for their best run (Search)
    curve_points: int = 0                          # >0: held-out accuracy at this many log-spaced points of
                                                   # every trained component's run (learning curves)

    def __post_init__(self):
        if self.prefix_init not in PREFIX_INITS:
            raise ValueError(f"unknown prefix_init {self.prefix_init!r}; choose from {PREFIX_INITS}")
        single = {group[0] for group, _ in self.prefix_groups if len(group) == 1}
        unsearchable = [s.task for s in self.searches if s.task not in single]
        if unsearchable:
            raise ValueError(f"experiment {self.name}: searched prefixes {unsearchable} must each train in a group "
                             "of their own (prefix_groups)")

    def search(self, task: str) -> Optional[Search]:
        return next((s for s in self.searches if s.task == task), None)

    def restarts(self, group: Tuple[str, ...]) -> int:
        """Inits per task of a prefix group: its Search's restarts for a searched prefix, else prefix_restarts."""
        search = self.search(group[0]) if len(group) == 1 else None
        return search.restarts if search else self.prefix_restarts


def curve_steps(iters: int, points: int) -> Tuple[int, ...]:
    """`points` steps log-spaced from iters/256 to iters (fewer when the run is too short to tell them apart)."""
    if points <= 0:
        return ()
    first = max(1.0, iters / 256)
    steps = {round(first * (iters / first) ** (i / max(1, points - 1))) for i in range(points)}
    return tuple(sorted(steps | {iters}))


MIX, SORT, SORT_DESC, HIST = tasks.PRETRAIN_TASKS, ("sort_asc",), ("sort_desc",), ("double_hist",)
NEW_TASKS = ("sort_asc_add1", "double_hist")


# ---- the four experiments: their structure, with the profile's models and phases -------------------

def experiment_a(model: ModelSpec, pretrain: Phase, finetune: Phase, prefix: Phase, eval_samples=3200) -> Experiment:
    """Pretrained on ↗ only; full fine-tuning vs an n_S = 1 prefix on ↘."""
    return Experiment("A", model, 1, SORT, pretrain, ("sort_asc", "sort_desc"), finetune=finetune,
                      finetune_tasks=SORT_DESC, prefix_groups=((SORT_DESC, prefix),), eval_samples=eval_samples)


def experiment_b(model: ModelSpec, pretrain: Phase, prefix: Phase, restarts: int, eval_samples=3200) -> Experiment:
    """Pretrained on the mixture; one n_S = 1 prefix per pretraining task, each on every task."""
    return Experiment("B", model, 1, MIX, pretrain, MIX, prefix_groups=((MIX, prefix),), prefix_restarts=restarts,
                      eval_samples=eval_samples)


def experiment_c(model: ModelSpec, pretrain: Phase, finetune: Phase, prefix_mix: Phase, prefix_new: Phase,
                 lora: Phase, prefix_hist: Optional[Phase] = None, eval_samples=3200) -> Experiment:
    """n_S = 10: prefixes (and full fine-tuning) on the four pretraining tasks, ↗+1 and H; MLP-only LoRA on H.

    The ↗+1 and H prefixes train together with `prefix_new`, as in the paper, or with `prefix_hist` for H
    on its own: a budget where the composition needs many more samples than H shows its plateau."""
    new_groups = ((NEW_TASKS, prefix_new),) if prefix_hist is None else \
        ((("sort_asc_add1",), prefix_new), (HIST, prefix_hist))
    return Experiment("C", model, 10, MIX, pretrain, tasks.TASKS, finetune=finetune, finetune_tasks=tasks.TASKS,
                      save_finetuned=False, prefix_groups=((MIX, prefix_mix), *new_groups),
                      loras=(LoRASpec("lora_mlp", ("mlp",), "double_hist", lora),), full_prefix_matrix=False,
                      eval_samples=eval_samples)


def experiment_d(model: ModelSpec, pretrain: Phase, prefix: Phase, lora: Phase, eval_samples=3200) -> Experiment:
    """n_S = 12: a prefix and a rank-1 LoRA of MLP + attention output on H, with equal parameter counts."""
    return Experiment("D", model, 12, MIX, pretrain, HIST, prefix_groups=((HIST, prefix),),
                      loras=(LoRASpec("lora_mlp_attn_out", ("mlp", "attn_out"), "double_hist", lora),),
                      eval_samples=eval_samples)


# ---- the profiles -------------------------------------------------------------------------------

TINY = ModelSpec(1, 1, 96)
ONE_LAYER = ModelSpec(1, 4, 256, attn_layernorm=False)
FOUR_LAYERS = ModelSpec(4, 4, 256)


def paper_profile() -> Dict[str, Experiment]:
    """The companion protocol: batch 64, its iterations (×64 = samples) and learning rates."""
    return {
        "A": experiment_a(TINY, pretrain=Phase(1_280_000, 64, 5e-4), finetune=Phase(640_000, 64, 5e-4),
                          prefix=Phase(2_560_000, 64, 5e-4)),
        "B": experiment_b(ONE_LAYER, pretrain=Phase(1_280_000, 64, 5e-4), prefix=Phase(1_920_000, 64, 5e-5), restarts=1),
        "C": experiment_c(FOUR_LAYERS, pretrain=Phase(2_560_000, 64, 5e-4), finetune=Phase(640_000, 64, 5e-4),
                          prefix_mix=Phase(1_280_000, 64, 5e-5), prefix_new=Phase(32_000_000, 64, 5e-5),
                          lora=Phase(640_000, 64, 5e-3)),
        "D": experiment_d(FOUR_LAYERS, pretrain=Phase(2_560_000, 64, 5e-4), prefix=Phase(6_400_000, 64, 5e-5),
                          lora=Phase(640_000, 64, 5e-3)),
    }


def gpu_profile() -> Dict[str, Experiment]:
    """The paper's samples per phase in larger batches where the steps are many.

    A keeps the paper's batch of 64 for pretraining and fine-tuning (a tiny model, cheap either way).
    Pretraining 256 (B) or 512 rows a step, fine-tuning 512, LoRA 128, with warm-up and cosine decay;
    prefixes 512 rows each at a constant 1e-3, or 4096 rows each with cosine decay for the phases of over
    4M samples each. B: a single init of an n_S = 1 prefix can plateau (a 512-row one-init run left ↘ at a
    loss of 0.15 per token), so the paper's 1.92M samples per task go to 4 inits of 480k in 64-row steps,
    the lowest final loss kept. The committed A, B and D prefixes (GPU runs of 2026-11) were initialised
    with seeds seed + k ("consecutive"); C, never run, draws its inits independently.
    """
    consecutive = lambda experiment: replace(experiment, prefix_init="consecutive")
    return {
        "A": consecutive(experiment_a(TINY, pretrain=Phase(1_280_000, 64, 5e-4), finetune=Phase(640_000, 64, 5e-4),
                                      prefix=Phase(2_560_000, 512, 1e-3))),
        "B": consecutive(experiment_b(ONE_LAYER, pretrain=Phase(1_280_000, 256, 1e-3, "cosine", 200),
                                      prefix=Phase(480_000, 64, 1e-3), restarts=4)),
        "C": experiment_c(FOUR_LAYERS, pretrain=Phase(2_560_000, 512, 1e-3, "cosine", 200),
                          finetune=Phase(640_000, 512, 5e-4, "cosine", 100), prefix_mix=Phase(1_280_000, 512, 1e-3),
                          prefix_new=Phase(32_000_000, 4096, 2e-3, "cosine", 100),
                          lora=Phase(640_000, 128, 5e-3, "cosine", 50)),
        "D": consecutive(experiment_d(FOUR_LAYERS, pretrain=Phase(2_560_000, 512, 1e-3, "cosine", 200),
                                      prefix=Phase(6_400_000, 4096, 2e-3, "cosine", 100),
                                      lora=Phase(640_000, 128, 5e-3, "cosine", 50))),
    }


def cpu_profile() -> Dict[str, Experiment]:
    """2-core budgets: far fewer samples; B at width 128, C and D at 4 layers of width 96.

    Every prefix trains in 64-row steps at lr 1e-2 with cosine decay. B pretrains on 1.2M samples (its four
    tasks each need about as many as A's one: with 300k its ↗ / ↘ prefixes reached 70 / 59 %) and gets 4
    initialisations per prefix, as in the gpu profile. C and D need depth and width (results/probes): on 2
    layers of width 64 the ↗+1 prefix plateaus near 28 %, on 4 it reached 38.62 % after 2.5M samples and the
    rank-1 LoRA 80.59 % on H; on 4 layers of width 96, ↗+1 reaches 52.3 % after 250k samples and 60.22 %
    after 1M, the LoRA 95.28 % after 1M. D's LoRA gets 3M samples at a peak lr of 2e-3: at 5e-3 seed 2's
    stalled (60.16 % after 1M, 5.59 % after 2M; 6.38 % after 1M at 1e-2), at 2e-3 it kept climbing (72.03 %
    after 1M, 84.25 % after 2M; seed 1 87.34 % after 2M).
    Every negative prefix gets at least its rival's samples and a search (issue #26): A's ↘ prefix 150k
    (the fine-tuning's), C's H prefix 1M (the ↗+1 prefix's), D's H prefix 3M (the LoRA's); each is screened
    with 4 inits, and on seed 0 also at lr 3e-3 and 3e-2, at 1M samples (A: its full 150k), and the best
    run continues to the full budget. Every trained component records its accuracy at 12 log-spaced points
    (fewer where a run has too few steps; a continued search keeps its screen's too). C's full fine-tuning
    keeps 20k samples per task, with which it does not learn H; with 1M it does (results/probes).
    At width d and L layers the parameter counts match as in the paper: an n_S = 12 prefix and a rank-1 LoRA
    of MLP + attention output both have 12·d·L parameters, n_S = 10 and MLP-only 10·d·L.
    """
    width_128, four_layers = ModelSpec(1, 4, 128, attn_layernorm=False), ModelSpec(4, 4, 96)
    search = lambda task: (Search(task, restarts=4, screen_samples=1_000_000, sweep_lrs=(3e-3, 3e-2)),)
    searched = lambda experiment, task: replace(experiment, searches=search(task), curve_points=12)
    return {
        "A": searched(experiment_a(TINY, pretrain=Phase(300_000, 256, 2e-3, "cosine", 100),
                                   finetune=Phase(150_000, 256, 1e-3, "cosine", 50),
                                   prefix=Phase(150_000, 64, 1e-2, "cosine", 20)), "sort_desc"),
        "B": replace(experiment_b(width_128, pretrain=Phase(1_200_000, 256, 2e-3, "cosine", 100),
                                  prefix=Phase(64_000, 64, 1e-2, "cosine", 20), restarts=4), curve_points=12),
        "C": searched(experiment_c(four_layers, pretrain=Phase(600_000, 256, 1.5e-3, "cosine", 100),
                                   finetune=Phase(20_000, 256, 1e-3, "cosine", 20),
                                   prefix_mix=Phase(100_000, 64, 1e-2, "cosine", 20),
                                   prefix_new=Phase(1_000_000, 64, 1e-2, "cosine", 20),
                                   prefix_hist=Phase(1_000_000, 64, 1e-2, "cosine", 20),
                                   lora=Phase(400_000, 64, 5e-3, "cosine", 20)), "double_hist"),
        "D": searched(experiment_d(four_layers, pretrain=Phase(600_000, 256, 1.5e-3, "cosine", 100),
                                   prefix=Phase(3_000_000, 64, 1e-2, "cosine", 20),
                                   lora=Phase(3_000_000, 64, 2e-3, "cosine", 20)), "double_hist"),
    }


def quick_profile() -> Dict[str, Experiment]:
    """8 steps of 16 rows for every phase, on 1-layer width-32 models: checks that the pipeline runs."""
    small, small_no_norm = ModelSpec(1, 2, 32), ModelSpec(1, 2, 32, attn_layernorm=False)
    steps = lambda lr: Phase(128, 16, lr, "cosine")
    a = experiment_a(small, pretrain=steps(2e-3), finetune=steps(1e-3), prefix=Phase(256, 16, 1e-2, "cosine"),
                     eval_samples=64)
    return {
        "A": replace(a, searches=(Search("sort_desc", restarts=2, screen_samples=128, sweep_lrs=(3e-2,)),),
                     curve_points=4),
        "B": experiment_b(small_no_norm, pretrain=steps(2e-3), prefix=steps(1e-2), restarts=4, eval_samples=64),
        "C": experiment_c(small, pretrain=steps(1.5e-3), finetune=steps(1e-3), prefix_mix=steps(1e-2),
                          prefix_new=steps(1e-2), lora=steps(5e-3), eval_samples=64),
        "D": experiment_d(small, pretrain=steps(1.5e-3), prefix=steps(1e-2), lora=steps(5e-3), eval_samples=64),
    }


def profile(name: str) -> Dict[str, Experiment]:
    tables = {"paper": paper_profile, "gpu": gpu_profile, "cpu": cpu_profile, "quick": quick_profile}
    if name not in tables:
        raise ValueError(f"unknown profile {name!r}; choose from {PROFILES}")
    return tables[name]()


def describe(name: str) -> str:
    """Every phase of a profile, one line each: what `--show-profile` prints."""
    symbols = lambda group: " ".join(tasks.TASK_SYMBOLS[t] for t in group)
    line = lambda what, p: (f"  {what:34s} {p.samples:>11,} samples  {p.batch_size:>5} rows  lr {p.lr:g} {p.schedule}"
                            + (f", warm-up {p.warmup}" if p.warmup else "") + f"  ({p.iters:,} steps)")
    out = [f"profile {name}"]
    for spec in profile(name).values():
        m = spec.model
        out.append(f"{spec.name}: {m.n_layer} layer(s) × {m.n_head} head(s) × width {m.n_embd}"
                   + ("" if m.attn_layernorm else ", no LayerNorm before attention")
                   + f", n_S = {spec.prefix_len}, {spec.eval_samples} test inputs per task")
        out.append(line(f"pretrain on {symbols(spec.pretrain_tasks)}", spec.pretrain))
        if spec.finetune:
            out.append(line(f"fine-tune each of {symbols(spec.finetune_tasks)}", spec.finetune))
        for group, phase in spec.prefix_groups:
            restarts = f" ×{spec.prefix_restarts} inits" if spec.prefix_restarts > 1 else ""
            restarts += ", inits seeded seed + k" if spec.prefix_init == "consecutive" else ""
            out.append(line(f"prefixes {symbols(group)}{restarts}", phase))
            search = spec.search(group[0]) if len(group) == 1 else None
            if search:
                sweep = f"; seed 0 also lr {', '.join(f'{lr:g}' for lr in search.sweep_lrs)} (first init)" \
                    if search.sweep_lrs else ""
                out.append(f"    searched: {search.restarts} inits screened at "
                           f"{search.screen_iters(phase) * phase.batch_size:,} samples{sweep}; the best continues")
        for lora in spec.loras:
            out.append(line(f"rank-1 LoRA {'+'.join(lora.targets)} on {tasks.TASK_SYMBOLS[lora.task]}", lora.phase))
        if spec.curve_points:
            out.append(f"  learning curves: held-out accuracy at {spec.curve_points} log-spaced points of each run")
    return "\n".join(out)
