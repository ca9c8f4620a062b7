"""Process groups for fairscale's model-parallel layers, under torchrun or in a lone process."""

import contextlib
import io
import os
from typing import Optional

import torch
import torch.distributed as dist
from fairscale.nn.model_parallel import initialize as fs_init


def setup_model_parallel(model_parallel_size: Optional[int] = None, device: Optional[torch.device] = None) -> int:
    """Join the process group and fairscale's model-parallel groups, creating them on first use.

    Under torchrun (WORLD_SIZE set) the group spans its processes; a lone process gets a 1-process group
    with an in-memory store, so no port or file is needed. Calling again is free and checks the size.
    Returns the model-parallel size (default: the number of processes).
    """
    if not dist.is_initialized():
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
        if "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    world_size = dist.get_world_size()
    if not fs_init.model_parallel_is_initialized():
        size = model_parallel_size or world_size
        if size > world_size or world_size % size:
            raise ValueError(
                f"model_parallel_size={size} does not fit {world_size} process(es): "
                f"launch with `torchrun --nproc_per_node {size}` (one process per checkpoint shard)"
            )
        with contextlib.redirect_stdout(io.StringIO()):  # fairscale prints its group sizes
            fs_init.initialize_model_parallel(size)
    size = fs_init.get_model_parallel_world_size()
    if model_parallel_size not in (None, size):
        raise ValueError(
            f"this process already runs model parallelism of size {size}, not {model_parallel_size}: "
            f"use a new process (torchrun --nproc_per_node {model_parallel_size})"
        )
    return size
