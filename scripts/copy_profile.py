"""Copy stored Section 5 components (checkpoints with their manifest entries) from one profile to another.

    python scripts/copy_profile.py cpu NEW --components pretrained   # a new profile NEW starts from cpu's models
    python scripts/copy_profile.py NEW cpu --results --move          # NEW done: it becomes cpu

(NEW: a profile added to mingpt.profiles for the purpose. Issue #26's runs were trained this way, under the name
`cpu-next`.)

A profile stores its components under minGPT/checkpoints/<profile>/ with manifest keys and a "profile"
field that name it; this copies the files, rewrites those (each entry gains "copied_from"; its "command"
stays the one that trained it), and checks every file and its copy against the manifest's sha256. A copied
component loads in the target profile only where that profile trains it with the same settings (the cache
compares them), so copying never makes a run use a component it would not train. --results also copies
results/section5/<profile>/*.json (their "profile" rewritten, "copied_from" added); --move then deletes the
source folders, and refuses to start while they hold a file no manifest lists (a run's training state).
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
    """Copy (or move) the components named in `components` (all when empty); return how many were copied.
    Each copy's manifest entry names the profile and key it was copied from; its command stays the one that
    trained it."""
    src, dst = root / "minGPT" / "checkpoints" / source, root / "minGPT" / "checkpoints" / target
    if not src.is_dir():
        raise FileNotFoundError(f"{src} does not exist: profile {source!r} has no stored components")
    manifests = {path: json.loads(path.read_text()) for path in sorted(src.glob("*/manifest.json"))}
    if move:
        refuse_unlisted(src, manifests, root)
    copied = 0
    for manifest_path, entries in manifests.items():
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
            if checkpoint.sha256(new_path) != entry["sha256"]:
                raise OSError(f"the copy {new_path} does not match {key}'s sha256: copy again")
            target_entries[new_path.relative_to(root).as_posix()] = {**entry, "profile": target,
                                                                     "copied_from": {"profile": source, "key": key}}
            copied += 1
        if target_entries:  # an experiment none of whose components was selected gets no manifest
            target_manifest.parent.mkdir(parents=True, exist_ok=True)
            target_manifest.write_text(json.dumps(target_entries, indent=1, sort_keys=True) + "\n")
    if results:
        for path in sorted((root / "results" / "section5" / source).glob("*.json")):
            data = json.loads(path.read_text())
            out = root / "results" / "section5" / target / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**data, "profile": target, "copied_from": source}, indent=1) + "\n")
    if move:
        shutil.rmtree(src)
        if results:
            shutil.rmtree(root / "results" / "section5" / source)
    return copied


def refuse_unlisted(src: Path, manifests: dict, root: Path) -> None:
    """Moving deletes `src`: refuse while it holds a file no manifest lists (a training state of a run in
    progress, a stray checkpoint), which would be lost."""
    listed = {root / key for entries in manifests.values() for key in entries} | set(manifests)
    unlisted = [p for p in sorted(src.rglob("*")) if p.is_file() and p not in listed and p.name != "manifest.json.lock"]
    if unlisted:
        shown = ", ".join(str(p.relative_to(root)) for p in unlisted[:5]) + (" …" if len(unlisted) > 5 else "")
        raise ValueError(f"{src.relative_to(root)} holds {len(unlisted)} file(s) no manifest lists ({shown}): a run "
                         "may be in progress; finish it (or delete them) before moving the profile")


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
