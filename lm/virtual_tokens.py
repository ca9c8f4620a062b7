"""Section 3 on a LLaMA: what one token, hard or virtual, makes the model say.

* `greedy_completions`: n greedy tokens after each one-token prompt (a hard token id, or a virtual token,
  i.e. a free input vector), batched, with the key/value cache and no BOS, as the paper's sweep;
* samplers of virtual tokens from the embedding matrix's statistics;
* `fit_virtual_tokens`: one virtual token optimised per target completion (the model frozen, teacher-forced
  cross-entropy, batched over targets), growing the target one token at a time from a warm start;
* `sweep_checkpoints`: the hard/virtual counts along a pretraining run (`python -m lm.pretrain --save-at`),
  against the model's validation perplexity.

    python -m lm.virtual_tokens runs/lm/llama-rerun/step*/ runs/lm/llama-rerun/
        # the counts at each saved step, into results/section3/llama_token_vs_soft_token.json ("by_checkpoint")
"""

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.records import command
from llama import Llama, Transformer


def greedy_completions(model: Transformer, n_tokens: int, token_ids: Optional[torch.Tensor] = None,
                       virtual_tokens: Optional[torch.Tensor] = None, batch_size: int = 256,
                       progress: bool = True) -> torch.Tensor:
    """(N, n_tokens) greedy continuations of N prompts: one-token prompts token_ids (N,), or virtual tokens fed
    as input embeddings, one per prompt (N, dim) or a sequence of them (N, length, dim).

    EOS does not stop a completion (every completion has n_tokens tokens)."""
    if (token_ids is None) == (virtual_tokens is None):
        raise ValueError("pass either token_ids (hard tokens) or virtual_tokens (input vectors), not both")
    generator = Llama(model)  # no tokenizer: generation runs the full n_tokens
    n = len(token_ids) if token_ids is not None else len(virtual_tokens)
    device = model.tok_embeddings.weight.device
    out = []
    for start in tqdm(range(0, n, batch_size), desc="completions", disable=not progress, mininterval=1.0):
        if token_ids is not None:
            prompts = [[int(t)] for t in token_ids[start:start + batch_size]]
            completions = generator.generate(prompts, n_tokens, temperature=0)
        else:
            vectors = virtual_tokens[start:start + batch_size]
            vectors = (vectors[:, None] if vectors.dim() == 2 else vectors).to(device, model.tok_embeddings.weight.dtype)
            completions = generator.generate([[] for _ in range(len(vectors))], n_tokens, temperature=0,
                                             virtual_tokens=vectors)
        out.append(torch.tensor(completions))
    return torch.cat(out)


def unique_curve(completions: torch.Tensor) -> torch.Tensor:
    """(N,) number of distinct completions among the first 1, 2, ..., N rows."""
    seen, curve = set(), []
    for row in completions.tolist():
        seen.add(tuple(row))
        curve.append(len(seen))
    return torch.tensor(curve)


def embedding_matrix(model: Transformer) -> torch.Tensor:
    return model.tok_embeddings.weight.detach().double().cpu()


def matched_gaussian(embeddings: torch.Tensor, n: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """n draws from the Gaussian with the embedding matrix's mean and `scale` times its covariance: (n, dim)."""
    mean = embeddings.mean(0)
    covariance = torch.cov(embeddings.T) + 1e-8 * torch.eye(embeddings.shape[1], dtype=embeddings.dtype)
    noise = torch.randn(n, embeddings.shape[1], generator=generator, dtype=embeddings.dtype)
    return (mean + scale ** 0.5 * noise @ torch.linalg.cholesky(covariance).T).float()


def convex_mixtures(embeddings: torch.Tensor, n: int, generator: torch.Generator, k: int = 4) -> torch.Tensor:
    """n random convex combinations of k token embeddings each (uniform tokens, flat Dirichlet weights)."""
    tokens = torch.randint(0, len(embeddings), (n, k), generator=generator)
    weights = -torch.log(torch.rand(n, k, generator=generator, dtype=embeddings.dtype))  # Exp(1): Dirichlet(1)
    weights = weights / weights.sum(1, keepdim=True)
    return (weights[:, :, None] * embeddings[tokens]).sum(1).float()


SAMPLERS = {
    "matched Gaussian": matched_gaussian,
    "convex mixture of 4 tokens": convex_mixtures,
}


@torch.no_grad()
def completion_perplexity(model: Transformer, completions: torch.Tensor, bos_id: int, batch_size: int = 256) -> float:
    """The model's own perplexity of the completions read as text on their own (after BOS)."""
    total, count = 0.0, 0
    device = model.tok_embeddings.weight.device
    for batch in completions.split(batch_size):
        tokens = torch.cat([torch.full((len(batch), 1), bos_id), batch], 1).to(device)
        logits = model(tokens[:, :-1]).float()
        total += F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="sum").item()
        count += batch.numel()
    return float(torch.tensor(total / count).exp())


def share_of_one_token(completions: torch.Tensor) -> float:
    """Share of completions that repeat a single token throughout."""
    return (completions == completions[:, :1]).all(1).float().mean().item()


def leading_matches(completions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(K,) how many leading tokens of each completion equal its target's."""
    agree = (completions[:, :targets.shape[1]] == targets).long()
    return agree.cumprod(1).sum(1)


def best_hard_token_matches(hard_completions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(K,) for each target, the most leading tokens that any hard token's greedy completion matches."""
    length = targets.shape[1]
    best = []
    for target in targets:
        agree = (hard_completions[:, :length] == target).long().cumprod(1).sum(1)
        best.append(int(agree.max()))
    return torch.tensor(best)


def fit_virtual_tokens(model: Transformer, targets: torch.Tensor, init: torch.Tensor, report_lengths: List[int],
                       steps_per_token: int = 40, lr: float = 0.1, progress: bool = True) -> Dict[int, torch.Tensor]:
    """One virtual token per target (K, L), optimised to make the frozen model produce the target.

    Stage l = 1..L trains on the first l target tokens (teacher-forced cross-entropy, Adam), starting from
    the previous stage's vectors; init (K, dim) starts stage 1. Returns {l: (K, dim) vectors after stage l}
    for each l in report_lengths.
    """
    device = model.tok_embeddings.weight.device
    targets = targets.to(device)
    vectors = torch.nn.Parameter(init.clone().float().to(device))
    optimizer = torch.optim.Adam([vectors], lr=lr)
    snapshots = {}
    stages = tqdm(range(1, targets.shape[1] + 1), desc="virtual tokens", disable=not progress)
    for length in stages:
        for _ in range(steps_per_token):
            logits = model(targets[:, :length - 1], input_embeds=vectors[:, None]).float()  # (K, length, vocab)
            loss = F.cross_entropy(logits.flatten(0, 1), targets[:, :length].flatten(), reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        stages.set_postfix(loss=f"{loss.item() / targets[:, :length].numel():.3f}")
        if length in report_lengths:
            snapshots[length] = vectors.detach().cpu().clone()
    return snapshots


# ---- the notebook's experiment (llama_token_vs_soft_token.ipynb) -----------------------------------------

PAPER = {"hard_unique": 24_426, "hard_tried": 32_000, "virtual_unique": 46_812, "virtual_tried": 48_218}


@dataclass(frozen=True)
class Sweep:
    """Settings of the Section 3 sweep and of the virtual-token fits; the quick setting only shrinks sizes."""
    vocab_subset: Optional[int]             # hard tokens tried: ids 0..vocab_subset-1 (None: the whole vocabulary)
    completion_len: int = 10                # the paper's 10-token completions
    virtual_ratio: float = 1.5               # M = ceil(1.5 V) virtual tokens: the paper tried 48,218 for 32,000
    fit_targets: int = 100                  # K targets: half held-out text, half random tokens
    fit_lengths: Tuple[int, ...] = (1, 2, 4, 8, 16)
    steps_per_token: int = 40
    fit_lr: float = 1.0
    seed: int = 0


FULL = Sweep(vocab_subset=None)
QUICK = Sweep(vocab_subset=128, fit_targets=8, fit_lengths=(1, 2, 4), steps_per_token=10)


def fit_targets(records_text: List[str], tokenizer, vocab_size: int, sweep: Sweep) -> Dict[str, torch.Tensor]:
    """K/2 windows of held-out text (one per test document, at a seeded offset) and K/2 uniformly random
    non-special tokens, each (K/2, max fit length)."""
    length, half = max(sweep.fit_lengths), sweep.fit_targets // 2
    generator = torch.Generator().manual_seed(sweep.seed)
    streams = [s for s in (tokenizer.encode(t, bos=False, eos=False) for t in records_text) if len(s) > length]
    order = torch.randperm(len(streams), generator=generator)[:half]
    text = []
    for i in order.tolist():
        offset = int(torch.randint(0, len(streams[i]) - length, (1,), generator=generator))
        text.append(streams[i][offset:offset + length])
    special = {tokenizer.bos_id, tokenizer.eos_id, 0}
    ordinary = torch.tensor([t for t in range(vocab_size) if t not in special])
    random_tokens = ordinary[torch.randint(0, len(ordinary), (half, length), generator=generator)]
    return {"held-out text": torch.tensor(text), "random tokens": random_tokens}


# ---- along pretraining: does the gap open as the model improves? -----------------------------------------

def unique_counts(model: Transformer, n_hard: int, completion_len: int, virtual_ratio: float, seed: int,
                  progress: bool = False) -> Dict[str, int]:
    """Unique greedy completions of the first n_hard token ids and of ceil(virtual_ratio * n_hard) virtual
    tokens from each sampler (drawn from this model's embeddings with `seed`, as the notebook draws them)."""
    ids = torch.arange(n_hard)
    counts = {"hard": int(unique_curve(greedy_completions(model, completion_len, token_ids=ids, progress=progress))[-1])}
    embeddings, m = embedding_matrix(model), math.ceil(virtual_ratio * n_hard)
    for key, sampler in (("gaussian", matched_gaussian), ("mixture", convex_mixtures)):
        vectors = sampler(embeddings, m, torch.Generator().manual_seed(seed))
        completions = greedy_completions(model, completion_len, virtual_tokens=vectors, progress=progress)
        counts[key] = int(unique_curve(completions)[-1])
    counts.update(hard_tried=n_hard, virtual_tried=m)
    return counts


def sweep_checkpoints(folders: List[Path], sweep: "Sweep", progress: bool = True) -> List[Dict]:
    """For each model folder of a pretraining run (`step<N>/` folders and the final one, whose manifest
    gives its step): its validation perplexity and the unique completions of its hard and virtual tokens."""
    from core.checkpoint import sha256
    from core.records import ROOT
    from lm import corpus
    from lm.pretrain import perplexity, token_stream
    from lm.stand_ins import STAND_INS, load_llama
    rows = []
    validation = None
    for folder in tqdm(folders, desc="checkpoints", disable=not progress):
        folder = Path(folder)
        llama = load_llama(folder, max_seq_len=STAND_INS["llama"].context, max_batch_size=256, device="cpu")
        if validation is None:
            validation = token_stream(corpus.texts(corpus.read(ROOT / "data" / "corpus"), "validation"), llama.tokenizer)
        model = llama.model
        n_hard = model.dims.vocab_size if sweep.vocab_subset is None else sweep.vocab_subset
        counts = unique_counts(model, n_hard, sweep.completion_len, sweep.virtual_ratio, sweep.seed)
        rows.append({"step": checkpoint_step(folder), "folder": folder.name,
                     "val_perplexity": perplexity(model, validation, STAND_INS["llama"].context),
                     "hard_unique": counts["hard"], "gaussian_unique": counts["gaussian"],
                     "mixture_unique": counts["mixture"], "hard_tried": counts["hard_tried"],
                     "virtual_tried": counts["virtual_tried"],
                     "consolidated_sha256": sha256(folder / "consolidated.00.pth")})
    return sorted(rows, key=lambda row: row["step"])


def checkpoint_step(folder: Path) -> int:
    """The training step of a model folder: `step<N>` by name, else its manifest's `steps`."""
    if folder.name.startswith("step") and folder.name[4:].isdigit():
        return int(folder.name[4:])
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise ValueError(f"{folder} is neither a step<N>/ folder of `lm.pretrain --save-at` nor a model with a "
                         "manifest.json giving its steps")
    return int(json.loads(manifest.read_text())["steps"])


def main(argv=None) -> int:
    import argparse

    from core.records import ROOT
    parser = argparse.ArgumentParser(prog="python -m lm.virtual_tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="model folders of one pretraining run")
    parser.add_argument("--record", type=Path, default=ROOT / "results" / "section3" / "llama_token_vs_soft_token.json",
                        help="the results file whose 'by_checkpoint' entry is written")
    parser.add_argument("--quick", action="store_true", help="the quick sweep (128 hard tokens)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = QUICK if args.quick else FULL
    rows = sweep_checkpoints(args.folders, sweep)
    record = json.loads(args.record.read_text()) if args.record.exists() else {}
    measured = {row["folder"] for row in rows}  # rows of other folders stay: a run can be measured in parts
    kept = [row for row in record.get("by_checkpoint", []) if row["folder"] not in measured]
    record["by_checkpoint"] = sorted(kept + rows, key=lambda row: (row["step"], row["folder"]))
    record["by_checkpoint_commands"] = record.get("by_checkpoint_commands", []) + [command("lm.virtual_tokens", argv)]
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    for row in record["by_checkpoint"]:
        print(f"{row['folder']:>14s} step {row['step']:5d}: perplexity {row['val_perplexity']:8.2f}; unique hard {row['hard_unique']:,} / "
              f"{row['hard_tried']:,}, Gaussian {row['gaussian_unique']:,}, mixture {row['mixture_unique']:,} / {row['virtual_tried']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
