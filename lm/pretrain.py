"""Pretrain a stand-in on the documentation corpus and save it in its real counterpart's layout.

    python -m lm.pretrain llama --iters 2500     # -> models/llama-standin (params.json, consolidated.00.pth)
    python -m lm.pretrain gpt2 --iters 2500      # -> models/gpt2-standin (config.json, model.safetensors)
    python -m lm.pretrain llama --iters 1000 --threads 1 --out runs/lm/llama-rerun --save-at 50 100 250 500 750

--save-at also writes the weights at those steps (multiples of 50, the logging interval), each as a
complete model folder `<out>/step<N>/` in the same layout and precision as the final model, e.g. to
measure how a property grows with the model's quality (`lm.virtual_tokens`'s checkpoint sweep).

Training goes through the project's one training loop (`core.loop.train`): AdamW, warm-up and
cosine decay, seeded, with a tqdm bar, and resumable from its state in `<out>/training/` (run the same
command again after an interruption; the state is deleted once the model is saved). fp32 on the CPU, bf16 autocast on a GPU. The tokenizer must
already be in the model folder (`python -m lm.train_tokenizers`). The model is saved in half precision
after checking that the held-out perplexity is unchanged, with a manifest.json (command, seed, hardware,
wall time, tokens seen, held-out perplexity, sha256).
"""

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, List

import torch

from core.checkpoint import sha256
from core.loop import TrainSettings, train
from core.records import ROOT, provenance
from lm import corpus
from lm.stand_ins import StandIn, load_model, stand_in

HALF_PRECISION_TOLERANCE = 0.002   # relative change in held-out perplexity allowed by saving in fp16


def settings(folder: Path, iters: int, seed: int, device: str) -> TrainSettings:
    """The pretraining settings of both stand-ins (batches of 16 sequences of the stand-in's context)."""
    return TrainSettings(method="pretrain", max_iters=iters, batch_size=16, learning_rate=3e-3,
                         betas=(0.9, 0.95), weight_decay=0.1, grad_clip=1.0, lr_schedule="cosine",
                         warmup_iters=100, seed=seed, autocast_bf16=device.startswith("cuda"),
                         checkpoint_path=str(folder / "training" / "train_state.pt"),
                         checkpoint_every=100, log_every=50)


def tokenizer_of(family: str, folder: Path):
    if family == "llama":
        from llama.tokenizer import Tokenizer
        return Tokenizer(str(folder / "tokenizer.model"))
    from mingpt.gpt2_tokenizer import GPT2Tokenizer
    return GPT2Tokenizer(folder)


def token_stream(texts: List[str], tokenizer) -> torch.Tensor:
    """All documents as one stream: LLaMA's BOS ... EOS per document, GPT-2's text then <|endoftext|>."""
    ids: List[int] = []
    bos = tokenizer.bos_id != tokenizer.eos_id
    for text in texts:
        ids += tokenizer.encode(text, bos=bos, eos=True)
    return torch.tensor(ids, dtype=torch.long)


def new_model(spec: StandIn) -> torch.nn.Module:
    """A randomly initialised model of the stand-in's shape, in its family's architecture."""
    if spec.family == "llama":
        from llama.model import ModelArgs, Transformer
        return Transformer(ModelArgs(dim=spec.dim, n_layers=spec.n_layers, n_heads=spec.n_heads,
                                     vocab_size=spec.vocab_size, max_seq_len=spec.context, max_batch_size=32))
    from mingpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=spec.vocab_size, block_size=spec.context, n_layer=spec.n_layers,
                          n_head=spec.n_heads, n_embd=spec.dim, dropout=0.0))
    model.lm_head.weight = model.transformer.wte.weight  # GPT-2 ties its output layer to the token embedding
    return model


def window_batches(stream: torch.Tensor, context: int, batch_size: int) -> Callable:
    """get_batch(generator) -> (x, y): random windows of the stream, y the next tokens."""
    offsets = torch.arange(context + 1)

    def get_batch(generator: torch.Generator):
        starts = torch.randint(0, len(stream) - context - 1, (batch_size, 1), generator=generator)
        windows = stream[starts + offsets]
        return windows[:, :-1], windows[:, 1:]
    return get_batch


@torch.no_grad()
def perplexity(model: torch.nn.Module, stream: torch.Tensor, context: int, batch_size: int = 32) -> float:
    """exp(mean next-token cross-entropy) over consecutive windows of `context` tokens covering the stream."""
    model.eval()
    n = (len(stream) - 1) // context
    x = stream[: n * context].view(n, context)
    y = stream[1: n * context + 1].view(n, context)
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, n, batch_size):
        logits = model.logits(x[i:i + batch_size].to(device)).float()
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[i:i + batch_size].flatten().to(device),
                                                   reduction="sum").item()
        count += y[i:i + batch_size].numel()
    return math.exp(total / count)


def save(spec: StandIn, model: torch.nn.Module, folder: Path, dtype: torch.dtype) -> List[Path]:
    """Write the weights in the family's real layout; returns the files written."""
    if spec.family == "llama":
        from llama.checkpoint import checkpoint_params, save_checkpoint
        state = {k: v.to(dtype) for k, v in model.state_dict().items()}
        save_checkpoint(str(folder), checkpoint_params(model.params), [state])
        return [folder / "params.json", folder / "consolidated.00.pth"]
    from mingpt.gpt2_weights import save_gpt2
    tokenizer = tokenizer_of("gpt2", folder)
    save_gpt2(model, folder, dtype, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    return [folder / "config.json", folder / "model.safetensors"]


def snapshot_saver(spec: StandIn, model: torch.nn.Module, folder: Path, steps: List[int]) -> Callable:
    """on_log for the trainer: at each of `steps`, the weights as a model folder `folder/step<N>/` (tokenizer
    copied), in half precision like the final model."""
    import shutil

    def on_log(result):
        if result.step in steps:
            out = folder / f"step{result.step}"
            out.mkdir(parents=True, exist_ok=True)
            for name in ("tokenizer.model", "vocab.json", "merges.txt"):
                if (folder / name).exists():
                    shutil.copy(folder / name, out / name)
            save(spec, model, out, torch.float16)
    return on_log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["llama", "gpt2"])
    parser.add_argument("--iters", type=int, required=True, help="training steps of 16 sequences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    parser.add_argument("--out", type=Path, help="model folder (default: the stand-in's committed folder)")
    parser.add_argument("--save-at", type=int, nargs="*", default=[], metavar="STEP",
                        help="also save the weights at these steps (multiples of 50) as <out>/step<STEP>/")
    args = parser.parse_args(argv)
    s = settings(args.out or stand_in(args.family).folder, args.iters, args.seed, args.device)
    off_grid = [step for step in args.save_at if step % s.log_every or not 0 < step <= args.iters]
    if off_grid:
        parser.error(f"--save-at {off_grid}: steps must be multiples of {s.log_every} in 1..{args.iters}")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = stand_in(args.family)
    folder = args.out or spec.folder
    tokenizer = tokenizer_of(args.family, folder)
    if tokenizer.n_words != spec.vocab_size:
        raise ValueError(f"{folder}'s tokenizer has {tokenizer.n_words} pieces, the stand-in {spec.vocab_size}")
    records = corpus.read(args.corpus)
    train_stream = token_stream(corpus.texts(records, "train"), tokenizer)
    held_out = {split: token_stream(corpus.texts(records, split), tokenizer) for split in ("validation", "test")}
    torch.manual_seed(args.seed)
    model = new_model(spec)
    start = time.time()
    result = train(model, s, window_batches(train_stream, spec.context, s.batch_size), device=args.device,
                   on_log=snapshot_saver(spec, model, folder, args.save_at) if args.save_at else None)
    wall = time.time() - start
    model = model.float().cpu()
    fp32_ppl = {split: perplexity(model, stream, spec.context) for split, stream in held_out.items()}
    files = save(spec, model, folder, torch.float16)
    saved = load_model(args.family, folder)
    fp16_ppl = {split: perplexity(saved, stream, spec.context) for split, stream in held_out.items()}
    change = max(abs(fp16_ppl[k] / fp32_ppl[k] - 1) for k in fp32_ppl)
    if change > HALF_PRECISION_TOLERANCE:
        raise RuntimeError(f"saving in fp16 changed the held-out perplexity by {change:.2%}: {fp32_ppl} -> {fp16_ppl}")
    manifest = {
        **provenance("lm.pretrain", argv or None, args.device),
        "family": args.family, "seed": args.seed, "wall_time_s_this_run": round(wall, 1), "steps": result.step,
        "tokens_seen": result.step * s.batch_size * spec.context, "train_tokens": len(train_stream),
        "parameters": sum(p.numel() for p in model.parameters()), "settings": asdict(s) | {"checkpoint_path": None},
        "perplexity": fp16_ppl, "perplexity_fp32": fp32_ppl, "saved_dtype": "float16",
        "corpus_sha256": json.loads((args.corpus / "manifest.json").read_text())["sha256"],
        "loss_curve": result.losses,
        "sha256": {p.name: sha256(p) for p in files + [p for p in folder.iterdir() if p.name in
                                                         ("tokenizer.model", "vocab.json", "merges.txt")]},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(folder / "training", ignore_errors=True)   # the run is done: its resumable state goes
    print(json.dumps({k: manifest[k] for k in ("steps", "tokens_seen", "perplexity", "perplexity_fp32")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
