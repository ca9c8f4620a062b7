"""Execute the repository's notebooks top to bottom.

    python scripts/run_notebooks.py                 # every notebook, saved back with its outputs
    python scripts/run_notebooks.py --quick         # quick setting, outputs discarded (what the tests run)
    python scripts/run_notebooks.py minGPT/01_cannot_learn_new_task.ipynb

Each notebook runs with its own folder as the working directory. In the quick setting the notebooks see
REPRO_QUICK=1 and write what they produce under REPRO_OUT (a temporary folder) instead of the repository.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from core.records import ROOT


def notebooks():
    """Every notebook of the repository: the top level and minGPT/, in name order."""
    return sorted(ROOT.glob("*.ipynb")) + sorted((ROOT / "minGPT").glob("*.ipynb"))


def run_notebook(path: Path, quick: bool, out_dir: Path = None, timeout: int = 3600) -> nbformat.NotebookNode:
    """Execute one notebook in its folder; in the quick setting with REPRO_QUICK=1 and REPRO_OUT=out_dir."""
    nb = nbformat.read(path, as_version=4)
    env_before = dict(os.environ)
    os.environ["REPRO_QUICK"] = "1" if quick else "0"
    if out_dir is not None:
        os.environ["REPRO_OUT"] = str(out_dir)
    else:
        os.environ.pop("REPRO_OUT", None)
    try:  # the kernel inherits this process's environment
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="quick setting; do not save outputs")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.paths] or notebooks()
    for path in paths:
        start = time.time()
        print(f"running {path.relative_to(ROOT)} ...", flush=True)
        if args.quick:
            with tempfile.TemporaryDirectory() as out:
                run_notebook(path, quick=True, out_dir=Path(out))
        else:
            nbformat.write(run_notebook(path, quick=False), path)
        print(f"  done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
