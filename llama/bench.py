"""Benchmark of the Section 3 sweep: every vocabulary token as a one-token prompt, greedy completions.

    python -m llama.bench [--vocab-size V --dim D ...]

Times the sweep on a randomly initialised model with the key/value cache and with the whole sequence
recomputed at every step (best of --repeats runs each), counts the completions on which the two differ,
and prints a markdown table.
"""

import argparse
import time
from typing import List, Optional

import torch

from core.records import hardware
from llama.generation import Llama
from llama.model import ModelArgs, Transformer


def sweep(generator: Llama, vocab_size: int, gen_len: int, batch_size: int, use_cache: bool) -> List[List[int]]:
    """Greedy completions of every token id used alone as the prompt (no BOS), in batches."""
    completions = []
    for first in range(0, vocab_size, batch_size):
        prompts = [[token] for token in range(first, min(first + batch_size, vocab_size))]
        completions += generator.generate(prompts, gen_len, temperature=0.0, use_cache=use_cache)
    return completions


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llama.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--gen-len", type=int, default=10, help="greedy tokens per prompt (paper: 10)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="time each mode this often, report the fastest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model_args = ModelArgs(
        dim=args.dim,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        vocab_size=args.vocab_size,
        multiple_of=64,
        max_batch_size=args.batch_size,
        max_seq_len=args.gen_len + 1,
    )
    generator = Llama(Transformer(model_args).to(args.device).eval().requires_grad_(False))

    for use_cache in (True, False):  # warm-up: first calls pay one-off allocation costs
        generator.generate([[0]] * args.batch_size, args.gen_len, temperature=0.0, use_cache=use_cache)
    modes = {"key/value cache": True, "full recompute": False}
    best = {name: float("inf") for name in modes}
    completions = {}
    for _ in range(args.repeats):  # modes alternate, so that both see the same machine load
        for name, use_cache in modes.items():
            start = time.perf_counter()
            completions[name] = sweep(generator, args.vocab_size, args.gen_len, args.batch_size, use_cache)
            best[name] = min(best[name], time.perf_counter() - start)
    cached, recomputed = completions.values()
    recompute_time = best["full recompute"]

    print(
        f"LLaMA dim={args.dim} layers={args.n_layers} heads={args.n_heads} vocab={args.vocab_size}, fp32, random "
        f"weights; {args.vocab_size} one-token prompts x {args.gen_len} greedy tokens, batch {args.batch_size}; "
        f"{hardware(args.device)}\n"
    )
    print("| decoding | time (s) | generated tokens/s | speed-up | unique completions |")
    print("|---|---|---|---|---|")
    n_generated = sum(len(c) for c in cached)
    for name, seconds in best.items():
        unique = len({tuple(c) for c in completions[name]})
        print(
            f"| {name} | {seconds:.2f} | {n_generated / seconds:,.0f} | {recompute_time / seconds:.2f}x | {unique:,} |"
        )
    differing = sum(a != b for a, b in zip(cached, recomputed))
    print(f"\ncompletions that differ between the two (rounding flips of near-tied greedy choices): {differing}")


if __name__ == "__main__":
    main()
