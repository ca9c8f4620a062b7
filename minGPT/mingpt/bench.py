"""Training throughput of the paper's three minGPT configurations on this device.

    python -m mingpt.bench                      # batch 64 and a large batch, current device
    python -m mingpt.bench --large-batch 4096 --steps 50

Times the real training loop (`core.loop.train`, data generation included) for pretraining
and prefix-tuning, and data generation alone (drawn as training draws it: one sampler call per
`BATCHES_PER_DRAW` steps), and prints a markdown table. Each time is the median of `--repeats`
measurements, since other processes on a small machine make single measurements noisy.
"""

import argparse
import time

import torch

from core.loop import TrainSettings, train
from core.records import hardware

from . import tasks
from .components import BATCHES_PER_DRAW, BatchStream
from .experiments import default_device
from .model import GPT, GPTConfig

CONFIGS = [  # (name, layers, heads, width, n_S, LayerNorm before attention)
    ("1/1/96, n_S=1", 1, 1, 96, 1, True),
    ("1/4/256, n_S=1", 1, 4, 256, 1, False),
    ("4/4/256, n_S=10", 4, 4, 256, 10, True),
]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _median(values) -> float:
    return sorted(values)[len(values) // 2]


def step_time(config: GPTConfig, method: str, batch: int, prefix_len: int, steps: int, device,
              repeats: int = 1) -> float:
    """Seconds per training step: (time of warm-up + steps) - (time of warm-up), divided by steps."""
    ids = torch.zeros(batch, dtype=torch.long, device=device)

    def run(iters):
        settings = TrainSettings(method=method, max_iters=iters, batch_size=batch, prefix_len=prefix_len,
                                 autocast_bf16=torch.device(device).type == "cuda", progress=False,
                                 loss_positions=tasks.OUTPUT_LEN,
                                 log_every=10 ** 9)
        placeholders = 0 if method == "prefix" else prefix_len  # a prefix takes the placeholders' positions
        train(GPT(config), settings, BatchStream(lambda g: ids, placeholders, device), device)

    warmup = max(3, steps // 5)
    run(warmup)  # first call compiles kernels and warms the allocator
    return _median([(_timed(lambda: run(warmup + steps), device) - _timed(lambda: run(warmup), device)) / steps
                    for _ in range(repeats)])


def data_time(batch: int, prefix_len: int, steps: int, device, repeats: int = 1) -> float:
    """Seconds of data generation per training step, through the training pipeline (`BatchStream`)."""
    ids = torch.zeros(batch, dtype=torch.long, device=device)
    get_batch = BatchStream(lambda g: ids, prefix_len, device)
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(BATCHES_PER_DRAW):  # warm-up: exactly one draw, so each timed run starts a new one
        get_batch(g)
    calls = BATCHES_PER_DRAW * max(1, steps // BATCHES_PER_DRAW)
    return _median([_timed(lambda: [get_batch(g) for _ in range(calls)], device) / calls
                    for _ in range(repeats)])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mingpt.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--large-batch", type=int, default=None, help="default: 4096 on GPU, 1024 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 100 GPU, 10 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="median of this many (default: 1 GPU, 5 CPU)")
    parser.add_argument("--configs", nargs="+", type=int, default=[0, 1, 2], help="indices into CONFIGS")
    args = parser.parse_args(argv)
    device = args.device or default_device()
    gpu = torch.device(device).type == "cuda"
    large = args.large_batch or (4096 if gpu else 1024)
    steps = args.steps or (100 if gpu else 10)
    repeats = args.repeats or (1 if gpu else 5)
    print(f"device: {hardware(device)}; precision: {'bf16 autocast' if gpu else 'fp32'}\n")
    print("| config | batch | pretrain ms/step | pretrain µs/sample | prefix ms/step | prefix µs/sample "
          "| data ms/batch | data % of prefix step |")
    print("|---|---|---|---|---|---|---|---|")
    for index in args.configs:
        name, n_layer, n_head, n_embd, prefix_len, ln = CONFIGS[index]
        config = GPTConfig(block_size=prefix_len + 20, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                           attn_layernorm=ln)
        for batch in (64, large):
            pre = step_time(config, "pretrain", batch, prefix_len, steps, device, repeats)
            pt = step_time(config, "prefix", batch, prefix_len, steps, device, repeats)
            data = data_time(batch, prefix_len, steps, device, repeats)
            print(f"| {name} | {batch} | {pre * 1e3:.2f} | {pre / batch * 1e6:.2f} | {pt * 1e3:.2f} | "
                  f"{pt / batch * 1e6:.2f} | {data * 1e3:.3f} | {100 * data / pt:.1f} |", flush=True)


if __name__ == "__main__":
    main()
