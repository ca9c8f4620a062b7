"""Prefix-tune a LLaMA or a GPT-2 on a text task: the paper's `prefix_tune.py`, for both families.

    python -m lm.prefix_tune --task table_to_text --llama --prefix-len 1          # the LLaMA stand-in
    python -m lm.prefix_tune --task classification --gpt2 --prefix-len 10 --seeds 1-20
    python -m lm.prefix_tune --task classification --gpt2 --prefix-len 10 --seeds 1-20 --epochs 3 \
        --until-plateau 10 --eval-every 48 --out runs/my-run    # to a plateau of validation accuracy
    python -m lm.prefix_tune --task classification --gpt2 ~/gpt2 --train emotion/train.jsonl --test emotion/test.jsonl
    torchrun --nproc_per_node 2 -m lm.prefix_tune --task table_to_text --llama ~/llama-7b-2shards

The prefix is the paper's parametrisation: `prefix_len` positions whose attention input is a learned
vector in every layer; keys and values are computed from it by the frozen model. One prefix per seed;
all of them train together in one batch through the project's one training loop (`core.loop`),
each with its own loss and gradient clipping, on the same examples, so a batched run equals separate
ones. Adam at lr 0.01, multiplied by 0.975 every 1,000 steps (the paper's Appendix B).

`--llama DIR` takes a Meta folder (run under torchrun with one process per shard), `--gpt2 DIR` a
Hugging Face GPT-2 folder; without DIR, `LLAMA_CKPT_DIR` / `GPT2_DIR` or the committed stand-in.
Without `--train`/`--test` the task comes from the documentation corpus (`lm.text_tasks`).

The run folder (`--out`, default `results/prefix_tuning/<family>-<task>-n<prefix_len>`) receives
`prefixes.pt` (the prefixes with their settings) and `manifest.json` (command, hardware, wall times,
loss curves, the sha256 of every input and output, and the held-out metric of the untuned model, of the
majority class for classification, and of each prefix). Training resumes from its state in
`<out>/training/` after an interruption (small: the prefixes and their optimiser state, so a run in
progress can be committed and resumed elsewhere); the state is deleted when the run is done. A folder
that holds a finished run (a manifest and no training state) is replaced only with `--force`: the
committed runs are read by the notebooks.

`--eval-every N` evaluates every prefix on the validation split every N steps (the learning curve, kept
in the manifest with the prefixes at each of those steps in `prefixes_by_step.pt`). `--epochs E` sets the
length in epochs (an epoch: as many examples as the training split, drawn with replacement) instead of
--steps; with `--until-plateau MAX` training goes on past E epochs until the mean validation metric of
the prefixes rose by at most 0.5 points over the last 20 % of the steps taken, or MAX epochs.
"""

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import sacrebleu
import torch
import torch.distributed as dist

from core import checkpoint
from core.checkpoint import sha256
from core.loop import TrainSettings, train
from core.records import ROOT, provenance, shown
from lm import text_tasks
from lm.stand_ins import model_dir, stand_in
from lm.text_tasks import Encoded, Example, TextTask

MAX_NEW_TOKENS = 48        # table_to_text: longest generated text, in tokens
EVAL_BATCH = 32            # rows per evaluation pass


# ------------------------------------------------------------------------------------------- models

def load(family: str, folder: Optional[Path], rows: int, max_seq_len: int, device: str):
    """(model, tokenizer, folder) of either family, frozen, in eval mode, on `device`."""
    folder = Path(folder or model_dir(family))
    if stand_in(family).family == "llama":
        from lm.stand_ins import load_llama
        generator = load_llama(folder, max_seq_len=max_seq_len, max_batch_size=max(rows, EVAL_BATCH), device=device)
        return generator.model, generator.tokenizer, folder
    from lm.stand_ins import load_gpt2
    model, tokenizer = load_gpt2(folder)
    return model.to(device), tokenizer, folder


def load_prefixes(path: Path, model) -> Dict:
    """A `prefixes.pt` of this command, checked against `model`: {"prefixes": (n, *prefix_shape), ...}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; train prefixes with `python -m lm.prefix_tune`")
    saved = checkpoint.read(path)
    if not isinstance(saved, dict) or "prefixes" not in saved:
        raise ValueError(f"{path} is not a prefix file of `python -m lm.prefix_tune` (no 'prefixes' entry)")
    prefixes = saved["prefixes"]
    expected = model.prefix_shape(prefixes.shape[-2])
    if prefixes.dim() != 4 or tuple(prefixes.shape[1:]) != expected:
        raise ValueError(f"{path} holds prefixes of shape {tuple(prefixes.shape)}, but this model takes "
                         f"(n_prefixes, *{expected}): they were trained for another model")
    return saved


# --------------------------------------------------------------------------------------- evaluation

def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def greedy_continuations(model, prompts: List[List[int]], prefix: Optional[torch.Tensor], eos_id: int,
                         max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = EVAL_BATCH) -> List[List[int]]:
    """Greedy continuation of each prompt until EOS (not included) or max_new_tokens, with the family's own
    cached decoding (`model.complete`), in batches of prompts sorted by length."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    continuations: Dict[int, List[int]] = {}
    for start in range(0, len(order), batch_size):
        index = order[start: start + batch_size]
        continuations.update(zip(index, model.complete([prompts[i] for i in index], max_new_tokens, prefix,
                                                       eos_id=eos_id)))
    return [continuations[i] for i in range(len(prompts))]


@torch.no_grad()
def target_log_probs(model, items: List[Encoded], prefix: Optional[torch.Tensor], pad_id: int,
                     batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """(len(items),): the log-probability of each item's target given its prompt."""
    device = _device_of(model)
    scores = []
    for start in range(0, len(items), batch_size):
        x, y = text_tasks.training_batch(items[start: start + batch_size], pad_id)
        log_probs = model.logits(x.to(device), prefix).float().log_softmax(-1).cpu()
        token = log_probs.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((token * (y != -1)).sum(1))
    return torch.cat(scores)


def classify(model, tokenizer, examples: List[Example], labels: Sequence[str], prefix) -> List[str]:
    """The label of highest log-probability after each example's prompt."""
    items = [text_tasks.encode(tokenizer, Example(e.prompt, " " + label, label), eos=False)
             for e in examples for label in labels]
    scores = target_log_probs(model, items, prefix, tokenizer.eos_id).view(len(examples), len(labels))
    return [labels[i] for i in scores.argmax(1).tolist()]


def evaluate(task: TextTask, model, tokenizer, prefix: Optional[torch.Tensor], split: str = "test") -> Dict:
    """The held-out metrics of `model` with `prefix` (None: the untuned model)."""
    examples = task.examples(split)
    if task.name == "classification":
        predicted = classify(model, tokenizer, examples, task.labels, prefix)
        correct = sum(p == e.label for p, e in zip(predicted, examples))
        return {"accuracy": 100.0 * correct / len(examples), "predicted": dict(Counter(predicted))}
    prompts = [text_tasks.encode(tokenizer, e, eos=True).prompt for e in examples]
    texts = [tokenizer.decode(ids).strip() for ids in greedy_continuations(model, prompts, prefix, tokenizer.eos_id)]
    references = [e.target.strip() for e in examples]
    return {"bleu": sacrebleu.corpus_bleu(texts, [references]).score,
            "exact_match": 100.0 * sum(t == r for t, r in zip(texts, references)) / len(examples),
            "samples": [{"prompt": e.prompt, "reference": r, "generated": t}
                        for e, r, t in list(zip(examples, references, texts))[:5]]}


def majority(task: TextTask, split: str = "test") -> Dict:
    """Accuracy on `split` of always answering the training set's most frequent label."""
    label = Counter(e.label for e in task.examples("train")).most_common(1)[0][0]
    examples = task.examples(split)
    return {"label": label, "accuracy": 100.0 * sum(e.label == label for e in examples) / len(examples)}


# ------------------------------------------------------------------------------------------ the run

def parse_seeds(text: str) -> List[int]:
    """'3' -> [3]; '1-20' -> [1, ..., 20]; '0,4,7' -> [0, 4, 7]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if int(high or low) < int(low):
            raise ValueError(f"--seeds {text!r}: the range {part!r} runs backwards; write it low-high, e.g. '1-3'")
        seeds += list(range(int(low), int(high or low) + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} repeats a seed")
    return seeds


def task_of(name: str, train_file: Optional[Path], test_file: Optional[Path], corpus_dir: Path,
            validation_file: Optional[Path] = None) -> TextTask:
    if (train_file is None) != (test_file is None):
        raise ValueError("pass both --train and --test (the real dataset's files), or neither (the corpus's task)")
    if train_file is None:
        return text_tasks.corpus_task(name, corpus_dir)
    files = {"train": train_file, "test": test_file, **({"validation": validation_file} if validation_file else {})}
    return text_tasks.file_task(name, files)


def settings(steps: int, batch_size: int, lr: float, prefix_len: int, seeds: Sequence[int], data_seed: int = 0,
             checkpoint_path: Optional[Path] = None, progress: bool = True) -> TrainSettings:
    """The trainer's settings for prefix-tuning: Adam (no weight decay), ×0.975 every 1,000 steps, per-prefix
    clipping at norm 1, one prefix per seed."""
    return TrainSettings(method="prefix", max_iters=steps, batch_size=batch_size, learning_rate=lr,
                         betas=(0.9, 0.999), weight_decay=0.0, grad_clip=1.0, lr_schedule="step", lr_decay=0.975,
                         lr_decay_every=1000, n_prefixes=len(seeds), prefix_len=prefix_len,
                         prefix_seeds=tuple(seeds), seed=data_seed,
                         checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
                         checkpoint_every=25, log_every=10, progress=progress)


PLATEAU_SHARE, PLATEAU_GAIN = 0.2, 0.5   # --until-plateau: at most 0.5 points gained over the last 20 % of steps


def plateaued(evals: List, share: float = PLATEAU_SHARE, gain: float = PLATEAU_GAIN) -> bool:
    """Whether the mean of the evaluated values rose by at most `gain` since the last evaluation at or
    before (1 - share) of the steps taken; evals: [(step, [value per prefix])], the last one now."""
    step, values = evals[-1]
    earlier = [v for s_, v in evals if s_ <= (1 - share) * step]
    if not earlier:
        return False
    mean = lambda v: sum(v) / len(v)
    return mean(values) - mean(earlier[-1]) <= gain


def train_in_pieces(model, s: TrainSettings, get_batch, device: str, evaluate, min_steps: int, until_plateau: bool,
                    max_seconds: float = 0.0):
    """Train to s.max_iters, or with `until_plateau` from `min_steps` on up to the first evaluation at which
    the validation curve has plateaued (`plateaued`), or at which the training time (summed over resumed
    pieces) has passed `max_seconds` (0: no limit). Each piece ends at an evaluation step and resumes from
    the state saved there."""
    if not until_plateau:
        return train(model, s, get_batch, device, evaluate=evaluate if s.eval_steps else None)
    for stop in [step for step in s.eval_steps if step >= min_steps] + [s.max_iters]:
        result = train(model, replace(s, stop_at=stop), get_batch, device, evaluate=evaluate)
        if plateaued(result.evals) or (max_seconds and result.train_time_s >= max_seconds):
            break
    return result


def run(args) -> Dict:
    family = "llama" if args.llama is not False else "gpt2"
    task = task_of(args.task, args.train, args.test, args.corpus, args.validation)
    if args.eval_every:
        task.examples("validation")  # --eval-every reads it: a task without one fails here, not mid-run
    out = args.out or ROOT / "results" / "prefix_tuning" / f"{family}-{args.task}-n{args.prefix_len}"
    if (out / "manifest.json").exists() and not (out / "training" / "train_state.pt").exists() and not args.force:
        raise FileExistsError(f"{out} holds a finished run (its manifest.json), which notebooks and records may read: "
                              "pass --out another folder, or --force to replace it")
    rows = len(args.seeds) * args.batch_size
    model, tokenizer, folder = load(family, args.llama or args.gpt2 or None, rows, args.max_seq_len, args.device)
    eos = args.task == "table_to_text"
    items = {split: [text_tasks.encode(tokenizer, e, eos) for e in task.examples(split)] for split in ("train", "test")}
    check_fits(model, args.prefix_len, items, eos, family)
    s, min_steps = training_settings(args, len(items["train"]), out / "training")
    metric = "accuracy" if args.task == "classification" else "bleu"

    def validate(result):  # each prefix on the validation split; the prefixes kept for the record
        if args.rank == 0:
            (out / "training").mkdir(parents=True, exist_ok=True)
            torch.save(result.prefixes.detach().cpu(), out / "training" / f"prefixes_step{result.step}.pt")
        return [evaluate(task, model, tokenizer, p, "validation")[metric] for p in result.prefixes.detach()]

    state = Path(s.checkpoint_path)
    resumed_from = checkpoint.read(state)["step"] if state.exists() else 0
    start = time.time()
    result = train_in_pieces(model, s, text_tasks.batch_source(items["train"], s.batch_size, s.n_prefixes, tokenizer.eos_id),
                             args.device, validate, min_steps, bool(args.until_plateau), 3600 * args.max_hours)
    walls = {"training": round(time.time() - start, 1)}
    start = time.time()
    untuned = evaluate(task, model, tokenizer, None)
    tuned = [evaluate(task, model, tokenizer, p) for p in result.prefixes.detach()]
    walls["evaluation"] = round(time.time() - start, 1)
    manifest = manifest_of(args, family, folder, task, s, result, metric, untuned, tuned)
    manifest.update(wall_time_s=walls, resumed_from_step=resumed_from)   # > 0: the wall time covers the steps after it
    if args.rank == 0:
        save_run(out, manifest, result, args, family)
    return manifest


def check_fits(model, prefix_len: int, items: Dict[str, List[Encoded]], eos: bool, family: str) -> None:
    """A clear error when the prefix and the task's longest example (and, for generation, its continuation)
    do not fit the model's context."""
    needed = prefix_len + max(text_tasks.longest(items["train"]),
                              text_tasks.longest(items["test"]) + (MAX_NEW_TOKENS if eos else 0))
    if needed > model.dims.context:
        raise ValueError(f"a prefix of {prefix_len} positions and the task's longest example need {needed} "
                         f"positions, but the model takes {model.dims.context}: shorten the prefix"
                         + (" or raise --max-seq-len" if family == "llama" else ""))


def training_settings(args, n_train: int, state_dir: Path):
    """The trainer's settings for the command's arguments, and the steps to take before --until-plateau may
    stop (all of them without it)."""
    steps_per_epoch = n_train / args.batch_size
    steps = math.ceil(args.epochs * steps_per_epoch) if args.epochs else args.steps
    max_steps = math.ceil(args.until_plateau * steps_per_epoch) if args.until_plateau else steps
    s = settings(max_steps, args.batch_size, args.lr, args.prefix_len, args.seeds, args.data_seed,
                 state_dir / "train_state.pt", progress=args.rank == 0)
    return replace(s, eval_steps=tuple(range(args.eval_every, max_steps + 1, args.eval_every)) if args.eval_every else ()), steps


def manifest_of(args, family: str, folder: Path, task: TextTask, s: TrainSettings, result, metric: str,
                untuned: Dict, tuned: List[Dict]) -> Dict:
    """The run's record: command, inputs with their sha256, settings, curves and every metric."""
    n_train = len(task.examples("train"))
    manifest = {
        **provenance("lm.prefix_tune", args.argv, args.device, args.world_size),
        "family": family, "task": args.task, "model_folder": shown(folder),
        "model_sha256": {p.name: sha256(p) for p in sorted(folder.iterdir())
                         if p.suffix in (".pth", ".safetensors", ".json", ".model", ".txt") and p.name != "manifest.json"},
        "data": ({"train": shown(args.train), "test": shown(args.test)} if args.train
                 else {"corpus": shown(args.corpus)}),
        "examples": {split: len(task.examples(split)) for split in ("train", "test")},
        "settings": asdict(s) | {"checkpoint_path": None},
        "train_time_s": round(result.train_time_s, 1),   # summed over every piece of the run
        "steps": result.step, "examples_seen_per_prefix": result.step * s.batch_size,
        "epochs": round(result.step * s.batch_size / n_train, 3),
        "loss_curve": result.losses, "metric": metric, "seeds": list(args.seeds),
        "untuned": untuned, "prefixes": tuned,
        "mean": sum(t[metric] for t in tuned) / len(tuned),
    }
    if result.evals:
        manifest["validation_curve"] = {"split": "validation", "examples": len(task.examples("validation")),
                                        "points": [[step, values] for step, values in result.evals],
                                        "mean": [[step, sum(v) / len(v)] for step, v in result.evals]}
    if args.until_plateau:
        timed_out = bool(args.max_hours) and result.train_time_s >= 3600 * args.max_hours
        stopped = plateaued(result.evals) if result.evals else False
        manifest["stopping"] = {"min_epochs": args.epochs, "max_epochs": args.until_plateau,
                                "rule": f"mean validation {metric} gained <= {PLATEAU_GAIN} points over the last "
                                        f"{PLATEAU_SHARE:.0%} of the steps taken",
                                "max_hours": args.max_hours or None, "plateaued": stopped,
                                "stopped_by": "plateau" if stopped else "time budget" if timed_out else "max epochs"}
    if args.task == "classification":
        manifest["majority"] = majority(task)
    return manifest


def save_run(out: Path, manifest: Dict, result, args, family: str) -> None:
    """Write the run folder: prefixes.pt, the prefixes at each validation point, manifest.json; the training
    state goes."""
    state_dir = out / "training"
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"prefixes": result.prefixes.detach().cpu(), "seeds": list(args.seeds), "prefix_len": args.prefix_len,
                "family": family, "task": args.task, "settings": manifest["settings"]}, out / "prefixes.pt")
    manifest["prefixes_sha256"] = sha256(out / "prefixes.pt")
    if result.evals:  # the prefixes at each evaluated step, for analyses of how training moves them
        by_step = {step: torch.load(state_dir / f"prefixes_step{step}.pt") for step, _ in result.evals}
        torch.save({"prefixes_by_step": by_step, "seeds": list(args.seeds)}, out / "prefixes_by_step.pt")
        manifest["prefixes_by_step_sha256"] = sha256(out / "prefixes_by_step.pt")
    for path in state_dir.glob("*.pt") if state_dir.exists() else ():
        path.unlink()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    summary = {k: manifest[k] for k in ("family", "task", "steps", "wall_time_s", "mean")}
    summary["untuned"] = manifest["untuned"][manifest["metric"]]
    summary["majority"] = manifest.get("majority", {}).get("accuracy")
    print(json.dumps(summary, indent=1))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lm.prefix_tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=text_tasks.TASKS)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--llama", nargs="?", const=None, default=False, type=Path, metavar="DIR",
                       help="a Meta LLaMA folder (default: LLAMA_CKPT_DIR or the stand-in)")
    model.add_argument("--gpt2", nargs="?", const=None, default=False, type=Path, metavar="DIR",
                       help="a Hugging Face GPT-2 folder (default: GPT2_DIR or the stand-in)")
    p.add_argument("--prefix-len", type=int, default=1, help="n_S, positions the prefix takes (default 1)")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="one prefix per seed: '0', '1-20', '0,3' (default 0)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--epochs", type=float, default=0, help="training length in epochs of the training split, instead of --steps")
    p.add_argument("--until-plateau", type=float, default=0, metavar="MAX_EPOCHS",
                   help="with --epochs and --eval-every: go on until validation plateaus, at most MAX_EPOCHS")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate on the validation split every N steps (0: never)")
    p.add_argument("--force", action="store_true", help="replace a finished run in --out (default: refuse)")
    p.add_argument("--max-hours", type=float, default=0,
                   help="with --until-plateau: also stop at the first evaluation after this much training time")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step, each prefix (default 32)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate, ×0.975 every 1,000 steps (default 0.01)")
    p.add_argument("--data-seed", type=int, default=0, help="seeds the order of the examples (default 0)")
    p.add_argument("--train", type=Path, help="the real dataset's training file (JSON lines or CSV)")
    p.add_argument("--test", type=Path, help="the real dataset's held-out file (JSON lines or CSV)")
    p.add_argument("--validation", type=Path, help="the real dataset's validation file, for --eval-every")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="the corpus the default tasks come from")
    p.add_argument("--max-seq-len", type=int, default=stand_in("llama").context,
                   help="LLaMA: positions to build the model for, prefix included (default: the stand-in's context)")
    p.add_argument("--out", type=Path, help="the run folder (default results/prefix_tuning/<family>-<task>-n<prefix_len>)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.prefix_len < 1:
        raise ValueError(f"--prefix-len must be at least 1, not {args.prefix_len}")
    if args.until_plateau and not (args.epochs and args.eval_every and args.until_plateau >= args.epochs):
        raise ValueError("--until-plateau MAX needs --epochs E <= MAX and --eval-every N (the validation curve it reads)")
    if args.gpt2 is not False and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        raise ValueError("GPT-2 runs in one process; torchrun with several is for LLaMA's model-parallel shards")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.argv = argv
    args.world_size = int(os.environ.get("WORLD_SIZE", 1))
    args.rank = int(os.environ.get("RANK", 0))
    run(args)
    if dist.is_initialized() and args.world_size > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
