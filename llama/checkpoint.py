"""Meta checkpoints: a directory of params.json and consolidated.NN.pth, one shard per model-parallel rank."""

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from llama.model import ModelArgs

StateDict = Dict[str, torch.Tensor]

# Dimension along which fairscale's layers split each weight across ranks (by module name); norms are replicated.
SPLIT_DIMS = {"tok_embeddings": 1, "wq": 0, "wk": 0, "wv": 0, "wo": 1, "w1": 0, "w2": 1, "w3": 0, "output": 0}
IGNORED_KEYS = ("rope.freqs",)  # Meta's checkpoints carry the rotary frequencies; the model recomputes them


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model or the launch; the message says how to fix it."""


def split_dim(key: str) -> Optional[int]:
    """Dimension along which the weight `key` is split across model-parallel ranks (None: replicated)."""
    return SPLIT_DIMS.get(key.rsplit(".", 2)[-2])


def shard_paths(ckpt_dir: str) -> List[Path]:
    """consolidated.00.pth, consolidated.01.pth, ... of a checkpoint directory, checked to be complete."""
    directory = Path(ckpt_dir)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    paths = sorted(directory.glob("consolidated.*.pth"))
    expected = [directory / f"consolidated.{i:02d}.pth" for i in range(len(paths))]
    if not paths or paths != expected:
        raise CheckpointError(
            f"{directory} holds shards {[p.name for p in paths]}; a Meta checkpoint holds consolidated.00.pth, "
            "consolidated.01.pth, ... (one per model-parallel rank) next to params.json"
        )
    return paths


def read_params(ckpt_dir: str) -> dict:
    """params.json as a dict of ModelArgs fields."""
    path = Path(ckpt_dir) / "params.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a Meta checkpoint directory holds params.json with the ModelArgs")
    params = json.loads(path.read_text())
    unknown = set(params) - {f.name for f in fields(ModelArgs)}
    if unknown:
        raise CheckpointError(f"{path} has fields {sorted(unknown)} that ModelArgs does not support")
    return params


def load_shard(ckpt_dir: str, rank: int, model_parallel_size: int) -> StateDict:
    """The state dict of this rank's shard; the shard count must equal the model-parallel size."""
    paths = shard_paths(ckpt_dir)
    if len(paths) != model_parallel_size:
        raise CheckpointError(
            f"{ckpt_dir} holds {len(paths)} shard(s) but the model-parallel size is {model_parallel_size}: "
            f"launch with `torchrun --nproc_per_node {len(paths)}`, or re-shard it for {model_parallel_size} "
            f"process(es) with `python -m llama.shards {ckpt_dir} OUT_DIR --parts {model_parallel_size}`"
        )
    state_dict = torch.load(paths[rank], map_location="cpu", weights_only=True, mmap=True)
    return {key: value for key, value in state_dict.items() if key not in IGNORED_KEYS}


def load_strict(model: nn.Module, state_dict: StateDict, source: str) -> None:
    """Load every weight of the model from state_dict, after checking names and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model: missing {missing[:8]}, unexpected {unexpected[:8]} "
            "(is it a LLaMA checkpoint in Meta's naming? convert Hugging Face ones with `python -m llama.convert_hf`)"
        )
    for key, tensor in expected.items():
        if state_dict[key].shape != tensor.shape:
            raise CheckpointError(
                f"{key} in {source} has shape {tuple(state_dict[key].shape)} but the model built from params.json "
                f"expects {tuple(tensor.shape)}: params.json does not describe this checkpoint, or the shard was "
                "split for a different number of processes"
            )
    model.load_state_dict(state_dict, strict=True)


def checkpoint_params(args: ModelArgs) -> dict:
    """The params.json fields of ModelArgs: all but the runtime batch and length limits."""
    return {k: v for k, v in asdict(args).items() if k not in ("max_batch_size", "max_seq_len")}


def save_checkpoint(out_dir: str, params: dict, shards: List[StateDict]) -> None:
    """Write params.json and one consolidated.NN.pth per shard."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(json.dumps(params, indent=2))
    for rank, state_dict in enumerate(shards):
        torch.save(state_dict, directory / f"consolidated.{rank:02d}.pth")
