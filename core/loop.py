"""One training loop for pretraining, full fine-tuning, prefix-tuning and LoRA.

The method is a setting, not a subclass:

* ``pretrain`` / ``finetune``: every model parameter trains, model in train mode (dropout on);
* ``prefix``: `n_prefixes` prefixes of the model's `prefix_shape(prefix_len)`, drawn from N(0, 1), train
  together in one batch; the model is frozen and in eval mode. Each prefix sees its own
  `batch_size` rows, its loss is the mean over its rows, and its gradient is clipped on its own, so
  training several prefixes together equals training each alone;
* ``lora``: rank-`lora_rank` adapters on `lora_targets` train; the base model is frozen, in eval mode.

AdamW (weight decay on weight matrices only), gradient-norm clipping, seeded data and dropout, a tqdm
bar, atomic checkpoints and resumption from the last one.

The model is either family, minGPT's `GPT` or LLaMA's `Transformer` (`llama.model`), through the interface
both implement (`core.family.PrefixLM`): `logits`, `prefix_shape`, `hyperparameters` and, for LoRA,
`blocks` and `LORA_TARGETS`.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from core import checkpoint
from core.checkpoint import check_config
from core.lora import add_lora, load_lora, lora_parameters
from core.records import shown

METHODS = ("pretrain", "finetune", "prefix", "lora")

# get_batch(generator) -> (x, y): (rows, T) inputs and targets (-1 = no loss). For method "prefix"
# the rows are n_prefixes blocks of batch_size rows, block k for prefix k. A get_batch with state of its
# own beside the generator also has state_dict() and load_state_dict(state), checkpointed with the run.
BatchFn = Callable[[torch.Generator], Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainSettings:
    method: str = "pretrain"
    max_iters: int = 1000
    batch_size: int = 64                 # rows per step (per prefix for method "prefix")
    learning_rate: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1            # weight matrices only
    grad_clip: float = 1.0               # max gradient norm (per prefix for method "prefix")
    loss_positions: int = 0              # >0: targets lie in the last this many positions only, and
                                         # the model's last layer computes just those (0: anywhere)
    lr_schedule: str = "constant"        # "constant", "cosine" (to 10 % of learning_rate) or "step"
    lr_decay: float = 0.975              # "step": the learning rate is multiplied by this ...
    lr_decay_every: int = 1000           # ... every this many steps (the paper's Appendix B)
    warmup_iters: int = 0
    n_prefixes: int = 1                  # prefix: how many prefixes train together
    prefix_len: int = 1                  # prefix: n_S
    prefix_seeds: Tuple[int, ...] = ()   # prefix: prefix k is drawn with prefix_seeds[k] (default: seed + k)
    lora_rank: int = 1
    lora_targets: Tuple[str, ...] = ("mlp",)
    seed: int = 0
    stop_at: int = 0                     # >0: stop after this step; the schedule still spans max_iters
    eval_steps: Tuple[int, ...] = ()     # steps after which train()'s `evaluate` runs (learning curves)
    resume_from: Optional[str] = None    # prefix: a checkpoint of several prefixes to continue one of ...
    resume_prefix: int = 0               # ... this one, when checkpoint_path does not exist yet
    autocast_bf16: bool = False          # bfloat16 autocast (GPU); fp32 otherwise
    checkpoint_path: Optional[str] = None
    checkpoint_every: int = 1000
    log_every: int = 100
    progress: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown training method {self.method!r}; choose from {METHODS}")
        if self.lr_schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose 'constant', 'cosine' or 'step'")
        if self.resume_from and (self.method != "prefix" or self.n_prefixes != 1):
            raise ValueError("resume_from continues one prefix of a prefix run: set method='prefix', n_prefixes=1")
        if self.prefix_seeds and len(self.prefix_seeds) != self.n_prefixes:
            raise ValueError(f"{len(self.prefix_seeds)} prefix_seeds for n_prefixes={self.n_prefixes}; give one per prefix")


# settings that define a run: resuming a checkpoint saved under other values is an error (max_iters
# may grow: a finished run continues)
RUN_FIELDS = ("batch_size", "learning_rate", "betas", "weight_decay", "grad_clip", "lr_schedule", "lr_decay",
              "lr_decay_every", "warmup_iters", "n_prefixes", "prefix_len", "prefix_seeds", "lora_rank",
              "lora_targets", "seed")


@dataclass
class TrainResult:
    losses: List[Tuple[int, List[float]]] = field(default_factory=list)  # (step, loss per prefix or [loss])
    prefixes: Optional[torch.Tensor] = None                                # (n_prefixes, *prefix_shape)
    step: int = 0
    train_time_s: float = 0.0  # wall seconds of the steps and evaluations, summed over the pieces of a resumed run
    evals: List[Tuple[int, List[float]]] = field(default_factory=list)   # (step, evaluate(result)) per eval step


def train(model: nn.Module, settings: TrainSettings, get_batch: BatchFn, device="cpu",
          on_log: Optional[Callable[[TrainResult], None]] = None,
          evaluate: Optional[Callable[[TrainResult], List[float]]] = None) -> TrainResult:
    """Train `model` (in place; LoRA adapters are added to it) and return losses and prefixes.

    on_log(result), if given, runs every `log_every` steps after the loss is logged (result.prefixes
    holds the live prefixes; LoRA adapters live in `model`), e.g. to evaluate along the way.
    evaluate(result), if given, runs after each of `eval_steps` and its values (e.g. one held-out
    accuracy per prefix) go to result.evals, which is checkpointed with the run: a learning curve that
    survives resumption. It must not draw from torch's global random state.
    """
    s = settings
    torch.manual_seed(s.seed)
    model.to(device)
    data_rng = torch.Generator(device=device).manual_seed(s.seed)
    params, prefixes = _trainable(model, s, device)
    optimizer = _adamw(model, params, s)
    result = TrainResult(prefixes=prefixes)
    _resume(model, s, optimizer, data_rng, result, get_batch)

    stop = min(s.stop_at or s.max_iters, s.max_iters)
    rows_per_prefix = torch.arange(s.n_prefixes, device=device).repeat_interleave(s.batch_size)
    start, earlier = time.perf_counter(), result.train_time_s
    bar = tqdm(range(result.step, stop), initial=result.step, total=stop,
               desc=f"{s.method}", disable=not s.progress, mininterval=1.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, s)
        x, y = get_batch(data_rng)
        if s.loss_positions:
            if step == result.step:
                _check_loss_positions(y, s.loss_positions)
            y = y[:, -s.loss_positions:]
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=s.autocast_bf16):
            prefix = None if prefixes is None else prefixes[rows_per_prefix]  # (rows, n_layer, n_S, C)
            logits = model.logits(x, prefix, s.loss_positions)
        loss_per_prefix = _loss_per_prefix(logits, y, s.n_prefixes if prefixes is not None else 1)
        optimizer.zero_grad(set_to_none=True)
        loss_per_prefix.sum().backward()
        _clip(params, prefixes, s.grad_clip)
        optimizer.step()

        done = step + 1
        logged = done % s.log_every == 0 or done == stop
        if logged:
            result.losses.append((done, loss_per_prefix.detach().float().cpu().tolist()))
            bar.set_postfix(loss=f"{loss_per_prefix.mean().item():.4f}")
        result.step, result.train_time_s = done, earlier + time.perf_counter() - start
        if logged and on_log is not None:
            on_log(result)
        if evaluate is not None and done in s.eval_steps:
            mode = model.training
            result.evals.append((done, [float(v) for v in evaluate(result)]))
            model.train(mode)  # an evaluation that switched to eval mode leaves dropout as training had it
        if s.checkpoint_path and (done % s.checkpoint_every == 0 or done == stop):
            _save(model, s, optimizer, data_rng, result, get_batch)
    return result


def _trainable(model: nn.Module, s: TrainSettings, device) -> Tuple[List[nn.Parameter], Optional[nn.Parameter]]:
    """Set train/eval mode and requires_grad for the method; return the trainable parameters."""
    if s.method in ("pretrain", "finetune"):
        model.train().requires_grad_(True)
        return list(model.parameters()), None
    model.eval().requires_grad_(False)
    if s.method == "lora":
        return add_lora(model, s.lora_rank, s.lora_targets), None
    seeds = s.prefix_seeds or tuple(s.seed + k for k in range(s.n_prefixes))
    prefixes = nn.Parameter(initial_prefixes(model, s.prefix_len, seeds).to(device))
    return [prefixes], prefixes


def initial_prefixes(model: nn.Module, prefix_len: int, seeds) -> torch.Tensor:
    """(len(seeds), *model.prefix_shape(prefix_len)): the prefixes a prefix run starts from, each drawn from
    N(0, 1) with its own seed (so a batched run starts as single-prefix runs with those seeds do): the
    untrained baseline of any trained prefix."""
    return torch.stack([torch.randn(model.prefix_shape(prefix_len), generator=torch.Generator().manual_seed(seed))
                        for seed in seeds])


def _adamw(model: nn.Module, params: List[nn.Parameter], s: TrainSettings) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not biases, norms, embeddings or prefixes)."""
    embeddings = {id(m.weight) for m in model.modules() if type(m).__name__.endswith("Embedding")}  # also fairscale's
    decay = [p for p in params if p.dim() == 2 and id(p) not in embeddings]
    no_decay = [p for p in params if not (p.dim() == 2 and id(p) not in embeddings)]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.learning_rate, betas=s.betas, fused=True)  # one fused kernel, CPU or GPU


def _learning_rate(step: int, s: TrainSettings) -> float:
    if s.warmup_iters and step < s.warmup_iters:
        return s.learning_rate * (step + 1) / s.warmup_iters
    if s.lr_schedule == "constant":
        return s.learning_rate
    if s.lr_schedule == "step":
        return s.learning_rate * s.lr_decay ** ((step - s.warmup_iters) // s.lr_decay_every)
    progress = (step - s.warmup_iters) / max(1, s.max_iters - s.warmup_iters)
    return s.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _check_loss_positions(y: torch.Tensor, n: int) -> None:
    """Refuse a batch with targets before its last n positions: their loss would be dropped silently."""
    if n > y.size(1) or bool((y[:, :y.size(1) - n] != -1).any()):
        raise ValueError(f"the batch has targets outside its last loss_positions={n} positions (targets of "
                         f"shape {tuple(y.shape)}); set TrainSettings.loss_positions=0 or to cover every target")


def _loss_per_prefix(logits: torch.Tensor, y: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of each group of rows: (n_groups,)."""
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), y.clamp(min=0), reduction="none")
    mask = (y != -1).float()
    token_loss = (token_loss * mask).view(n_groups, -1).sum(1)
    return token_loss / mask.view(n_groups, -1).sum(1)


def _clip(params: List[nn.Parameter], prefixes: Optional[nn.Parameter], max_norm: float) -> None:
    """Clip the gradient norm; each prefix on its own (the same formula as clip_grad_norm_)."""
    if prefixes is None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    norms = prefixes.grad.flatten(1).norm(dim=1)                     # (n_prefixes,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    prefixes.grad.mul_(scale.view(-1, 1, 1, 1))


def _state(model: nn.Module, s: TrainSettings, prefixes) -> Dict[str, torch.Tensor]:
    """What the method trains: the whole model, the prefixes, or the LoRA adapters."""
    if s.method == "prefix":
        return {"prefixes": prefixes.detach()}
    if s.method == "lora":
        return {k: v.detach() for k, v in lora_parameters(model).items()}
    return model.state_dict()


def _recorded(s: TrainSettings) -> dict:
    """The settings as a checkpoint keeps them: its paths relative to the repository (no machine paths in a
    committed training state; resuming compares RUN_FIELDS, never paths)."""
    settings = asdict(s)
    settings.update({f: shown(settings[f]) for f in ("checkpoint_path", "resume_from") if settings[f]})
    return settings


def _save(model, s, optimizer, data_rng, result: TrainResult, get_batch: BatchFn) -> None:
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    checkpoint.atomic_save({
        "settings": _recorded(s), "model_config": model.hyperparameters(), "step": result.step,
        "trained": _state(model, s, result.prefixes), "optimizer": optimizer.state_dict(),
        "data_rng": data_rng.get_state(), "torch_rng": torch.get_rng_state(), "cuda_rng": cuda_rng,
        "losses": result.losses, "train_time_s": result.train_time_s, "evals": result.evals,
        "batch_source": get_batch.state_dict() if hasattr(get_batch, "state_dict") else None,
    }, s.checkpoint_path)


def _resume(model, s: TrainSettings, optimizer, data_rng, result: TrainResult, get_batch: BatchFn) -> None:
    """Continue from `s.checkpoint_path` when it exists (a finished run returns at once). A batch source with
    state of its own (`state_dict` / `load_state_dict`, e.g. batches drawn ahead) gets it back too."""
    if not s.checkpoint_path or not Path(s.checkpoint_path).exists():
        if s.resume_from:
            _continue_one_prefix(model, s, optimizer, data_rng, result)
        return
    ckpt = checkpoint.read(s.checkpoint_path)
    check_config(ckpt["model_config"], model.hyperparameters(), source=s.checkpoint_path)
    if ckpt["settings"]["method"] != s.method:
        raise ValueError(f"{s.checkpoint_path} holds a {ckpt['settings']['method']!r} run, not {s.method!r}; "
                         "use another checkpoint_path")
    changed = {f: (ckpt["settings"].get(f), getattr(s, f)) for f in RUN_FIELDS if ckpt["settings"].get(f) != getattr(s, f)}
    if changed:
        raise ValueError(f"{s.checkpoint_path} holds a run with other settings ("
                         + ", ".join(f"{f}: {a!r} there, {b!r} here" for f, (a, b) in changed.items())
                         + "); delete it to start afresh or use another checkpoint_path")
    trained = ckpt["trained"]
    if s.method == "prefix":
        if trained["prefixes"].shape != result.prefixes.shape:
            raise ValueError(f"{s.checkpoint_path} holds prefixes of shape {tuple(trained['prefixes'].shape)}, "
                             f"this run trains {tuple(result.prefixes.shape)}; use another checkpoint_path")
        result.prefixes.data.copy_(trained["prefixes"])
    else:
        if s.method == "lora":
            load_lora(model, trained, s.checkpoint_path)
        else:
            model.load_state_dict(trained)
    optimizer.load_state_dict(ckpt["optimizer"])
    data_rng.set_state(ckpt["data_rng"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    result.step, result.losses = ckpt["step"], ckpt["losses"]
    result.train_time_s = ckpt.get("train_time_s", 0.0)  # 0 for checkpoints written before it was kept
    result.evals = ckpt.get("evals", [])
    if ckpt.get("batch_source") is not None and hasattr(get_batch, "load_state_dict"):
        get_batch.load_state_dict(ckpt["batch_source"])


# settings a continued prefix shares with the run it continues (n_prefixes and prefix_seeds differ)
CONTINUE_FIELDS = ("max_iters", "batch_size", "learning_rate", "betas", "weight_decay", "grad_clip", "lr_schedule",
                   "lr_decay", "lr_decay_every", "warmup_iters", "prefix_len", "seed")


def _continue_one_prefix(model, s: TrainSettings, optimizer, data_rng, result: TrainResult) -> None:
    """Start from prefix `s.resume_prefix` of the several-prefix run saved at `s.resume_from`: its values,
    its Adam moments, the step, its column of the losses and evals, the training time and the data
    generator. The rows drawn ahead for the other prefixes are dropped, so the data from here on are new
    draws; the prefix's optimisation continues exactly (the same schedule, moments and step count)."""
    ckpt = checkpoint.read(s.resume_from)
    check_config(ckpt["model_config"], model.hyperparameters(), source=s.resume_from)
    there = ckpt["settings"]
    changed = {f: (there.get(f), getattr(s, f)) for f in CONTINUE_FIELDS if there.get(f) != getattr(s, f)}
    changed.update({f: (there[f], "prefix") for f in ("method",) if there[f] != "prefix"})
    if changed:
        raise ValueError(f"{s.resume_from} cannot be continued with these settings ("
                         + ", ".join(f"{f}: {a!r} there, {b!r} here" for f, (a, b) in changed.items()) + ")")
    k, n = s.resume_prefix, there["n_prefixes"]
    if not 0 <= k < n:
        raise ValueError(f"{s.resume_from} holds {n} prefixes; resume_prefix={k} is not one of 0..{n - 1}")
    result.prefixes.data.copy_(ckpt["trained"]["prefixes"][k:k + 1])
    state = ckpt["optimizer"]
    for moments in state["state"].values():   # the prefixes are the optimizer's only parameter
        for name in ("exp_avg", "exp_avg_sq"):
            moments[name] = moments[name][k:k + 1].clone()
    optimizer.load_state_dict(state)
    data_rng.set_state(ckpt["data_rng"])
    torch.set_rng_state(ckpt["torch_rng"])
    result.step, result.train_time_s = ckpt["step"], ckpt["train_time_s"]
    result.losses = [(step, [losses[k]]) for step, losses in ckpt["losses"]]
    result.evals = [(step, [values[k]]) for step, values in ckpt.get("evals", [])]
