"""Where runs live and what their records say of them: the repository root, paths as records show them, and
the one hardware string every manifest carries."""

import os
import platform
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent   # the repository


def shown(path) -> str:
    """A path as records and notebooks show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def hardware(device: str = "cpu") -> str:
    """The machine a run used, as every manifest records it: the GPU's name, or the CPU's architecture,
    cores and torch threads; with torch's version."""
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s) "
            f"(torch {torch.__version__})")
