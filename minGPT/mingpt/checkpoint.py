"""Saving and loading models and trained prefixes: atomic writes, config checks, sha256."""

import fcntl
import hashlib
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from .model import GPT, GPTConfig, check_config


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file next to `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextmanager
def locked(path):
    """Hold an exclusive lock on `path` (through `<path>.lock`) for a read-modify-write that processes
    running in parallel, e.g. two seeds of one experiment, may do at the same time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(path, expected_sha256: Optional[str] = None) -> dict:
    """Load a checkpoint dict, with clear errors for a missing, corrupt or altered file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train it first or pass the right path")
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise ValueError(f"checkpoint {path} does not match its recorded sha256 (corrupt or replaced); "
                         "delete it and retrain, or restore it from the repository")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} could not be read ({type(e).__name__}: {e}); delete it and retrain") from e


def model_state(model: GPT, half: bool = False) -> dict:
    """A model's config and weights (optionally float16 to halve the file) as a checkpoint dict."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return {"model_config": asdict(model.config), "model": state}


def load_model_from(ckpt: dict, config: Optional[GPTConfig] = None, source: str = "checkpoint") -> GPT:
    """Build a float32 GPT, in eval mode, from a checkpoint dict; if `config` is given it must match."""
    if config is not None:
        check_config(ckpt["model_config"], config, source=str(source))
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.eval()


def save_model(model: GPT, path, half: bool = False, **meta) -> None:
    atomic_save({**model_state(model, half), "meta": meta}, path)


def load_model(path, config: Optional[GPTConfig] = None, expected_sha256: Optional[str] = None) -> GPT:
    return load_model_from(read(path, expected_sha256), config, source=path)
