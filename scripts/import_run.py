"""Unpack the GPU run's tarballs (scripts/gpu_run.sh) into the repository.

    python scripts/import_run.py /path/to/device/output [--seeds 0]

Results of every seed are kept; checkpoints only for --seeds (the repository keeps its checkpoints
under 30 MB). Manifest entries of checkpoints that are not kept are dropped, so every manifest entry
names a file that is in the repository, with its sha256.
"""

import argparse
import json
import tarfile
from pathlib import Path

from core.records import ROOT


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the folder holding results.tgz and checkpoints_seed*.tgz")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds whose checkpoints to keep")
    args = parser.parse_args(argv)
    with tarfile.open(args.folder / "results.tgz") as tar:
        tar.extractall(ROOT, filter="data")
    for seed in args.seeds:
        path = args.folder / f"checkpoints_seed{seed}.tgz"
        if path.exists():
            with tarfile.open(path) as tar:
                tar.extractall(ROOT, filter="data")
    for manifest in (ROOT / "minGPT" / "checkpoints").glob("*/*/manifest.json"):
        entries = json.loads(manifest.read_text())
        kept = {k: v for k, v in entries.items() if (ROOT / k).exists()}
        manifest.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        print(f"{manifest.relative_to(ROOT)}: {len(kept)} of {len(entries)} entries kept")


if __name__ == "__main__":
    main()
