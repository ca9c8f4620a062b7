"""Where runs live and what their records say of them: the repository root, paths as records show them, and
what every manifest opens with (the command, one hardware string, torch's version)."""

import os
import platform
import sys
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


def command(module: str, argv=None) -> str:
    """The command a record names: `python -m <module>` with its arguments (this process's by default)."""
    return f"python -m {module} " + " ".join(str(a) for a in (sys.argv[1:] if argv is None else argv))


def provenance(module: str, argv=None, device: str = "cpu", processes: int = 1) -> dict:
    """What every manifest opens with: the command that made it, the machine and torch's version."""
    machine = hardware(device) + (f", {processes} process(es)" if processes > 1 else "")
    return {"command": command(module, argv), "hardware": machine, "torch": torch.__version__}
