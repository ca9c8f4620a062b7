"""Split and merge the model-parallel shards of a Meta checkpoint.

    python -m llama.shards SRC_DIR DST_DIR --parts N

merges the shards of SRC_DIR and splits the result into N shards (N=1: merge only), writing DST_DIR with
params.json, consolidated.00.pth ... and a copy of tokenizer.model when SRC_DIR has one.
"""

import argparse
import shutil
from pathlib import Path
from typing import List, Optional

import torch

from llama.checkpoint import (
    IGNORED_KEYS,
    CheckpointError,
    StateDict,
    read_params,
    save_checkpoint,
    shard_paths,
    split_dim,
)


def merge_shards(shards: List[StateDict]) -> StateDict:
    """One state dict from the shards of all ranks: split weights concatenated, replicated ones checked equal."""
    merged = {}
    for key in shards[0]:
        parts = [shard[key] for shard in shards]
        dim = split_dim(key)
        if dim is not None:
            merged[key] = torch.cat(parts, dim=dim)
        elif all(torch.equal(parts[0], part) for part in parts[1:]):
            merged[key] = parts[0]
        else:
            raise CheckpointError(f"{key} is replicated across ranks but differs between shards")
    return merged


def split_state_dict(state_dict: StateDict, parts: int) -> List[StateDict]:
    """The shards of `parts` model-parallel ranks, as fairscale's layers split them."""
    shards: List[StateDict] = [{} for _ in range(parts)]
    for key, tensor in state_dict.items():
        dim = split_dim(key)
        if dim is not None and tensor.shape[dim] % parts:
            raise CheckpointError(
                f"{key} has {tensor.shape[dim]} rows/columns along dimension {dim}, not divisible into {parts} shards"
            )
        pieces = tensor.chunk(parts, dim=dim) if dim is not None else [tensor] * parts
        for shard, piece in zip(shards, pieces):
            shard[key] = piece.clone()
    return shards


def reshard(src_dir: str, dst_dir: str, parts: int) -> None:
    """Write the checkpoint of src_dir to dst_dir as `parts` shards."""
    shards = [torch.load(path, map_location="cpu", weights_only=True) for path in shard_paths(src_dir)]
    merged = {key: value for key, value in merge_shards(shards).items() if key not in IGNORED_KEYS}
    save_checkpoint(dst_dir, read_params(src_dir), split_state_dict(merged, parts))
    tokenizer = Path(src_dir) / "tokenizer.model"
    if tokenizer.is_file():
        shutil.copy(tokenizer, Path(dst_dir) / "tokenizer.model")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llama.shards",
        description="Re-shard a Meta LLaMA checkpoint for a different model-parallel size (merge, then split).",
    )
    parser.add_argument("src_dir", help="checkpoint directory with params.json and consolidated.NN.pth")
    parser.add_argument("dst_dir", help="output directory")
    parser.add_argument("--parts", type=int, default=1, help="number of shards to write (1: merge; default 1)")
    args = parser.parse_args(argv)
    reshard(args.src_dir, args.dst_dir, args.parts)


if __name__ == "__main__":
    main()
