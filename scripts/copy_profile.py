"""Copy stored Section 5 components (checkpoints with their manifest entries) from one profile to another.

    python scripts/copy_profile.py cpu cpu-next --components pretrained   # start cpu-next from cpu's models
    python scripts/copy_profile.py cpu-next cpu --results --move          # cpu-next done: it becomes cpu

A profile stores its components under minGPT/checkpoints/<profile>/ with manifest keys and a "profile"
field that name it; this copies the files, rewrites those, and checks every copied file against its
sha256. A copied component loads in the target profile only where that profile trains it with the same
settings (the cache compares them), so copying never makes a run use a component it would not train.
--results also copies results/section5/<profile>/*.json (their "profile" rewritten); --move then deletes
the source folders.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from core import checkpoint
from core.records import ROOT
from mingpt.profiles import PROFILES


def copy_profile(source: str, target: str, components=(), results=False, move=False, root: Path = ROOT) -> int:
    """Copy (or move) the components named in `components` (all when empty); return how many were copied."""
    src, dst = root / "minGPT" / "checkpoints" / source, root / "minGPT" / "checkpoints" / target
    if not src.is_dir():
        raise FileNotFoundError(f"{src} does not exist: profile {source!r} has no stored components")
    copied = 0
    for manifest_path in sorted(src.glob("*/manifest.json")):
        entries = json.loads(manifest_path.read_text())
        target_manifest = dst / manifest_path.parent.name / "manifest.json"
        target_entries = json.loads(target_manifest.read_text()) if target_manifest.exists() else {}
        for key, entry in entries.items():
            path = root / key
            if components and path.stem not in components:
                continue
            if checkpoint.sha256(path) != entry["sha256"]:
                raise ValueError(f"{key} does not match its manifest's sha256; not copying it")
            new_path = dst / path.relative_to(src)
            new_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, new_path)
            target_entries[new_path.relative_to(root).as_posix()] = {**entry, "profile": target}
            copied += 1
        target_manifest.parent.mkdir(parents=True, exist_ok=True)
        target_manifest.write_text(json.dumps(target_entries, indent=1, sort_keys=True) + "\n")
    if results:
        for path in sorted((root / "results" / "section5" / source).glob("*.json")):
            data = json.loads(path.read_text())
            out = root / "results" / "section5" / target / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**data, "profile": target}, indent=1) + "\n")
    if move:
        shutil.rmtree(src)
        if results:
            shutil.rmtree(root / "results" / "section5" / source)
    return copied


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=PROFILES)
    parser.add_argument("target", choices=PROFILES)
    parser.add_argument("--components", nargs="*", default=[], metavar="NAME",
                        help="component names to copy, e.g. pretrained (default: every component)")
    parser.add_argument("--results", action="store_true", help="also copy the results files")
    parser.add_argument("--move", action="store_true", help="delete the source afterwards")
    args = parser.parse_args(argv)
    if args.source == args.target:
        parser.error("source and target are the same profile")
    n = copy_profile(args.source, args.target, args.components, args.results, args.move)
    print(f"copied {n} component(s) from {args.source} to {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
