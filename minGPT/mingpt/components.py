"""Training (or loading) one component of an experiment: the pretrained model, a fully fine-tuned copy, a group
of prefixes (a searched one at its best chance: `profiles.Search`) or a LoRA, each through the one training
loop (`core.loop`) and cached in the profile's `Store`; with the data they train on."""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch

from core.checkpoint import read
from core.loop import TrainSettings, train
from core.lora import add_lora, load_lora, lora_parameters

from . import tasks
from .checkpoint import load_model_from, model_state
from .model import GPT
from .profiles import Experiment, LoRASpec, Phase, Search, curve_steps
from .store import Paths, Store

BATCHES_PER_DRAW = 16  # training batches generated per sampler call (see BatchStream)


class Trained(NamedTuple):
    """A fine-tuned model or a model with a LoRA, and its learning curve [[samples, accuracy]] (None if not kept)."""
    model: GPT
    curve: Optional[list]


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

    def state_dict(self) -> dict:  # tokens and targets fit int8: the state is committed mid-run (Components.scratch)
        return {"queue": [(x.to(torch.int8).cpu(), y.to(torch.int8).cpu()) for x, y in self.queue]}

    def load_state_dict(self, state: dict) -> None:
        self.queue = [(x.long().to(self.device), y.long().to(self.device)) for x, y in state["queue"]]


class Components:
    """Trains or loads the components of one profile's experiments (see the module's doc)."""

    def __init__(self, profile_name: str, paths: Paths, store: Store, device: str, progress: bool = True):
        self.profile, self.paths, self.store, self.device, self.progress = profile_name, paths, store, device, progress

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
        settings = self.train_settings(spec.pretrain, "pretrain", seed, self.scratch(path, meta))
        _, seconds = self._train(model, settings, self._mixture_batches(spec.pretrain_tasks, spec.pretrain.batch_size,
                                                                        spec.prefix_len))
        model.eval()
        self.store.save(path, model_state(model, half=True), {**meta, "train_time_s": seconds})
        return load_model_from(read(path), config, path).to(self.device)

    def finetuned(self, spec: Experiment, seed: int, base: GPT, task: str) -> Trained:
        """A fully fine-tuned copy of `base` on `task`, with its learning curve."""
        path = self.paths.component(spec.name, seed, f"finetuned_{task}")
        config = spec.model.config(spec.prefix_len)
        meta = self._meta(spec, seed, "finetune", spec.finetune, tasks=[task])
        stored = self.store.load(path, meta)
        if stored is not None:
            return Trained(load_model_from(stored, config, path).to(self.device), self.store.entry(path).get("curve"))
        model = GPT(config).to(self.device)
        model.load_state_dict(base.state_dict())
        settings = self.train_settings(spec.finetune, "finetune", seed, self.scratch(path, meta),
                                       eval_steps=curve_steps(spec.finetune.iters, spec.curve_points))
        result, seconds = self._train(model, settings, self.task_batches((task,), spec.finetune.batch_size, spec.prefix_len),
                                      evaluate=lambda _: [self._accuracy(spec, model, task)])
        model.eval()
        self.store.trained = True
        curve = curve_of(result, spec.finetune.batch_size) if spec.curve_points else None
        if spec.save_finetuned:  # evaluate what is committed: the half-precision copy
            kept = {"curve": curve} if curve else {}
            self.store.save(path, model_state(model, half=True), {**meta, "train_time_s": seconds, **kept})
            return Trained(load_model_from(read(path), config, path).to(self.device), curve)
        return Trained(model, curve)

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
            settings = self.train_settings(phase, "prefix", seed, self.scratch(path, meta), n_prefixes=len(seeds),
                                           prefix_len=spec.prefix_len, prefix_seeds=seeds,
                                           eval_steps=curve_steps(phase.iters, spec.curve_points))
            every_task = group * restarts
            evaluate = lambda result: [self._accuracy(spec, base, t, p) for t, p in zip(every_task, result.prefixes.detach())]
            result, seconds = self._train(base, settings, self.task_batches(every_task, phase.batch_size, 0), evaluate)
            final = final_losses(result).view(restarts, len(group))  # (restart, task)
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
            state = self.scratch(path, meta, f"screen_lr{lr:g}")
            settings = self.train_settings(replace(phase, lr=lr), "prefix", seed, state, n_prefixes=len(seeds),
                                           prefix_len=spec.prefix_len, prefix_seeds=seeds, stop_at=screen_iters,
                                           eval_steps=eval_steps)
            results[lr], run_seconds = self._train(base, settings, self.task_batches((task,) * len(seeds),
                                                                                     phase.batch_size, 0), evaluate)
            seconds += run_seconds
            final_loss = final_losses(results[lr])
            curves = [curve_of(results[lr], phase.batch_size, k) for k in range(len(seeds))]
            runs += [{"lr": lr, "restart": k, "init_seed": init, "screen_samples": screen_iters * phase.batch_size,
                      "screen_accuracy": curves[k][-1][1], "screen_loss": float(final_loss[k]), "curve": curves[k],
                      "loss_curve": [[step * phase.batch_size, round(loss, 4)] for step, loss in column(results[lr].losses, k)],
                      "state": str(state)}
                     for k, init in enumerate(seeds)]
        best = max(runs, key=lambda run: (run["screen_accuracy"], -run["screen_loss"]))
        result = results[best["lr"]]
        prefix, losses, curve = result.prefixes[best["restart"]], column(result.losses, best["restart"]), best["curve"]
        if screen_iters < phase.iters:  # the best run goes on alone to the full budget
            settings = self.train_settings(replace(phase, lr=best["lr"]), "prefix", seed,
                                           self.scratch(path, meta, "continued"), prefix_len=spec.prefix_len,
                                           prefix_seeds=(best["init_seed"],), eval_steps=eval_steps,
                                           resume_from=best["state"], resume_prefix=best["restart"])
            continued, _ = self._train(base, settings, self.task_batches((task,), phase.batch_size, 0), evaluate)
            seconds += continued.train_time_s - result.train_time_s  # it started from the screen's clock
            prefix, losses, curve = continued.prefixes[0], column(continued.losses, 0), curve_of(continued, phase.batch_size)
        for run in runs:
            del run["state"]
        stored = {"prefixes": {task: prefix.detach().cpu()}, "loss_curves": {task: losses}, "curves": {task: curve},
                  "search": {task: runs}, "chosen": {task: {k: best[k] for k in ("lr", "restart", "init_seed")}}}
        # the manifest names the run kept: its phase is the profile's, its lr and init may be others
        self.store.save(path, stored, {**meta, "train_time_s": round(seconds, 1), "chosen": stored["chosen"][task]})
        return stored

    def lora(self, spec: Experiment, seed: int, base: GPT, lora: LoRASpec) -> Trained:
        """`base` with a rank-1 LoRA trained on lora.task (a copy: `base` is unchanged), with its learning curve."""
        path = self.paths.component(spec.name, seed, lora.name)
        model = GPT(base.config).to(self.device)
        model.load_state_dict(base.state_dict())
        meta = self._meta(spec, seed, "lora", lora.phase, tasks=[lora.task], targets=list(lora.targets))
        stored = self.store.load(path, meta)
        if stored is None:
            settings = self.train_settings(lora.phase, "lora", seed, self.scratch(path, meta),
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
        return Trained(model.eval(), stored.get("curve"))

    def _train(self, model: GPT, settings: TrainSettings, get_batch, evaluate=None):
        """Train; return the trainer's result and its training seconds (summed over a resumed run's pieces)."""
        result = train(model, settings, get_batch, self.device, evaluate=evaluate if settings.eval_steps else None)
        return result, round(result.train_time_s, 1)

    @staticmethod
    def _accuracy(spec: Experiment, model: GPT, task: str, prefix: Optional[torch.Tensor] = None) -> float:
        """Held-out accuracy (percent) on one task, on the experiment's evaluation inputs: a curve's point."""
        return accuracies(model, (task,), prefix, spec.eval_samples)[task]

    def scratch(self, path: Path, meta: dict, run: str = "") -> Path:
        """Resumable training state of the component at `path` (its `run`, for a component trained in
        several runs), one file per set of training settings (Store.SPEC_FIELDS): an interrupted run resumes,
        a changed profile or base model starts afresh. A prefix's or LoRA's state is small and sits beside
        the checkpoints, in `training/`, so that a queue stopped mid-run resumes from what is committed
        (storing the component deletes it); a whole model's stays under `<root>/runs/`, never committed."""
        settings = json.dumps({f: meta.get(f) for f in Store.SPEC_FIELDS}, sort_keys=True)
        name = f"{path.stem}.{hashlib.sha256(settings.encode()).hexdigest()[:12]}{'.' + run if run else ''}.train.pt"
        if meta["method"] in ("prefix", "lora"):
            return path.parent / "training" / name
        return self.paths.scratch / path.parent.relative_to(self.paths.checkpoints) / name

    def _meta(self, spec, seed, method, phase: Phase, **extra) -> dict:
        meta = {"profile": self.profile, "experiment": spec.name, "seed": seed, "method": method,
                "phase": asdict(phase), "iters": phase.iters, **extra}
        if spec.curve_points and method != "pretrain":
            meta["curve_points"] = spec.curve_points
        if method != "pretrain":  # trained from this seed's stored pretrained model: retrain if it changes
            meta["base_sha256"] = self.pretrained_sha256(spec, seed)
        return meta

    def pretrained_sha256(self, spec: Experiment, seed: int) -> str:
        return self.store.entry(self.paths.component(spec.name, seed, "pretrained"))["sha256"]


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


def final_losses(result) -> torch.Tensor:
    """(n_prefixes,) or (1,): each run's final training loss, the mean of its last five logged losses."""
    return torch.tensor([losses for _, losses in result.losses[-5:]]).mean(0)


def placeholders_of(model: GPT) -> int:
    """Placeholder positions the model was built for (ModelSpec.config: block_size = prefix_len + 20)."""
    return model.config.block_size - 2 * tasks.INPUT_LEN
