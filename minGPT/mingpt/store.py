"""Where a profile's components live and the cache of them: a component is loaded when its file matches its
manifest entry and was trained with the profile's settings now, else trained again and recorded."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from core import records
from core.checkpoint import atomic_save, locked, read, sha256
from core.records import ROOT, hardware


@dataclass
class Paths:
    """Checkpoints and results of one profile; `root` is the repository or, for quick runs, a temp dir."""
    root: Path
    profile: str

    @property
    def checkpoints(self) -> Path:
        return self.root / "minGPT" / "checkpoints" / self.profile

    @property
    def results(self) -> Path:
        return self.root / "results" / "section5" / self.profile

    @property
    def scratch(self) -> Path:
        """Training states of whole models (too large to commit), under the root's git-ignored runs/."""
        return self.root / "runs" / self.profile

    def component(self, experiment: str, seed: int, name: str) -> Path:
        return self.checkpoints / experiment / f"seed{seed}" / f"{name}.pt"


def default_root() -> Path:
    """The repository, or REPRO_OUT when a notebook runs in the quick setting."""
    return Path(os.environ["REPRO_OUT"]) if os.environ.get("REPRO_OUT") else ROOT


class Store:
    """Loads a committed component when its file matches the manifest, else trains and records it.

    Each experiment folder has its own manifest.json, keyed by the checkpoint's path relative to the
    root; it is rewritten under a lock, so experiments and seeds can run in parallel processes.
    """

    def __init__(self, root: Path, device: str, retrain: bool = False, command: str = ""):
        self.root, self.device, self.retrain = root, device, retrain
        self.command = command or records.command("mingpt.experiments")
        self.trained = False  # whether anything was trained since the last reset

    @staticmethod
    def manifest_path(path: Path) -> Path:
        return path.parent.parent / "manifest.json"  # <experiment>/seed<k>/<component>.pt

    def _manifest(self, path: Path) -> dict:
        manifest = self.manifest_path(path)
        return json.loads(manifest.read_text()) if manifest.exists() else {}

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # what a component was trained with; model_config: a pretrained model's shape; base_sha256: the stored
    # pretrained model a component was trained from
    SPEC_FIELDS = ("method", "model_config", "phase", "tasks", "restarts", "prefix_seeds", "targets", "base_sha256",
                   "search", "curve_points")

    def entry(self, path: Path) -> Optional[dict]:
        """The manifest entry of a stored component, or None."""
        return self._manifest(path).get(self.key(path))

    def load(self, path: Path, meta: dict) -> Optional[dict]:
        """The stored component, or None when it must be (re)trained: missing, --retrain, or stored
        with other settings than `meta` (the profile or the pretrained model changed since)."""
        entry = self.entry(path)
        if self.retrain or entry is None or not path.exists():
            return None
        changed = [f for f in self.SPEC_FIELDS if f in meta and entry.get(f) != meta[f]]
        if changed:
            print(f"{self.key(path)} was trained with other settings than the profile's now "
                  f"({', '.join(f'{f}: {entry.get(f)} -> {meta[f]}' for f in changed)}); training it again")
            return None
        return read(path, expected_sha256=entry["sha256"])

    def save(self, path: Path, obj: dict, meta: dict) -> None:
        """Store a trained component and its manifest entry; its training states (Components.scratch) go."""
        self.trained = True
        atomic_save(obj, path)
        for state in training_states(path):
            state.unlink()
        self._update(path, {"command": self.command, "hardware": hardware(self.device), **meta,
                            "sha256": sha256(path), "bytes": path.stat().st_size})

    def record_metrics(self, path: Path, metrics: dict) -> None:
        entry = self.entry(path)
        if entry is not None and entry.get("metrics") != metrics:
            self._update(path, {**entry, "metrics": metrics})

    def _update(self, path: Path, entry: dict) -> None:
        with locked(self.manifest_path(path)):
            manifest = self._manifest(path)
            manifest[self.key(path)] = entry
            self.manifest_path(path).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def training_states(path: Path) -> List[Path]:
    """The training states (Components.scratch) of the component stored at `path`."""
    folder = path.parent / "training"
    return sorted(folder.glob(f"{path.stem}.*.train.pt")) if folder.exists() else []
