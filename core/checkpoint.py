"""Files of training runs, for both model families: atomic saves, locks for parallel writers, sha256, reading
a checkpoint with clear errors, and the check that a saved configuration is the model's."""

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch


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


def check_config(saved: dict, config: dict, source: str = "checkpoint") -> None:
    """Raise a clear error when a saved model configuration differs from a model's (`hyperparameters()` of
    either family; dropout may differ)."""
    expected = config
    diffs = {k: (saved.get(k), v) for k, v in expected.items() if k != "dropout" and saved.get(k) != v}
    if diffs:
        lines = ", ".join(f"{k}: {source} has {a!r}, model has {b!r}" for k, (a, b) in diffs.items())
        raise ValueError(f"{source} was saved from another model configuration ({lines}); "
                         "build the model with the checkpoint's configuration or pick the matching checkpoint")
