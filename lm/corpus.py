"""The documentation corpus: English docstrings shipped with Python, numpy and torch.

    python -m lm.corpus --out data/corpus       # build it (deterministic for the same package versions)
    python -m lm.corpus --check data/corpus     # rebuild in memory and compare with the committed sha256

Each record documents one object: a standard-library topic (`pydoc_data`), module, class, function or
method, or one of numpy's and torch's. Whitespace is normalised, docstrings under `MIN_CHARS` characters,
mostly non-ASCII ones and exact duplicates are dropped, and records are split into train / validation /
test by a stable hash of the documented object's qualified name, so whole docstrings are held out.
The built corpus is `corpus.jsonl.gz` (one JSON record per line, sorted by id) with `manifest.json`.
"""

import argparse
import contextlib
import gzip
import hashlib
import importlib
import inspect
import io
import json
import pkgutil
import re
import sys
import types
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

MIN_CHARS = 40
MAX_CHARS = 20_000           # a longer docstring is cut at a paragraph boundary before this
SPLITS = (("train", 90), ("validation", 95), ("test", 100))   # cumulative percent of the id hash
LIBRARIES = ("python", "numpy", "torch")

# Standard-library modules not worth importing: side effects (a browser, a window), test suites,
# the IDE, platform-specific or deprecated shims that warn.
STDLIB_SKIP = ("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
               "ensurepip", "venv", "pydoc_data", "__phello__", "__hello__", "msilib", "winreg", "winsound",
               "msvcrt", "_msi", "nt", "distutils", "asyncio.__main__", "sqlite3.__main__", "json.tool",
               "encodings", "ctypes.wintypes", "multiprocessing.popen_spawn_win32", "xxlimited")
# numpy and torch: the public namespaces a user reads the documentation of.
LIBRARY_MODULES = {
    "numpy": ("numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma", "numpy.polynomial",
              "numpy.polynomial.polynomial", "numpy.polynomial.chebyshev", "numpy.polynomial.legendre",
              "numpy.polynomial.hermite", "numpy.polynomial.laguerre", "numpy.strings", "numpy.char",
              "numpy.rec", "numpy.lib.stride_tricks", "numpy.lib.scimath", "numpy.testing", "numpy.dtypes",
              "numpy.exceptions", "numpy.emath"),
    "torch": ("torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils",
              "torch.nn.utils.rnn", "torch.linalg", "torch.fft", "torch.special", "torch.optim",
              "torch.optim.lr_scheduler", "torch.distributions", "torch.utils.data", "torch.autograd",
              "torch.autograd.functional", "torch.random", "torch.sparse", "torch.masked", "torch.func",
              "torch.testing", "torch.distributed", "torch.jit", "torch.amp", "torch.cuda", "torch.signal.windows",
              "torch.nn.attention", "torch.export", "torch.profiler", "torch.hub", "torch.onnx",
              "torch.ao.quantization", "torch.utils.checkpoint", "torch.overrides", "torch.library"),
}


@dataclass
class Record:
    """One documented object."""
    id: str                      # qualified name: the split is a hash of it
    library: str                 # "python", "numpy" or "torch"
    module: str                  # the module it is documented in ("" for a pydoc topic)
    name: str                    # its name in that module (the topic's name for a pydoc topic)
    kind: str                    # "topic", "module", "class", "function" or "method"
    params: List[str] = field(default_factory=list)   # parameter names, when the signature is known
    text: str = ""               # the normalised docstring
    split: str = ""


def normalise(text: str) -> str:
    """Dedent, strip trailing spaces, collapse runs of blank lines and tabs; cut very long texts."""
    text = inspect.cleandoc(text.replace("\r\n", "\n").replace("\t", "    "))
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) > MAX_CHARS:
        text = text[: text.rfind("\n\n", 0, MAX_CHARS)].rstrip()
    return text


def is_noise(text: str) -> bool:
    """Too short to learn from, mostly not English prose (non-ASCII, or almost no letters), or holding an
    object's memory address (generated signatures of bindings: they differ from process to process)."""
    if len(text) < MIN_CHARS or re.search(r" at 0x[0-9a-fA-F]+", text):
        return True
    ascii_share = sum(c.isascii() for c in text) / len(text)
    letter_share = sum(c.isalpha() for c in text) / len(text)
    return ascii_share < 0.95 or letter_share < 0.4


def split_of(record_id: str) -> str:
    """train / validation / test by the first 8 bytes of the sha256 of the id (identical everywhere)."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big") % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def parameter_names(obj) -> List[str]:
    try:
        return [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    except Exception:  # noqa: BLE001 - builtins without a signature, or one inspect cannot evaluate
        return []


def _doc(obj) -> str:
    doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) else ""


def _quiet_import(name: str) -> Optional[types.ModuleType]:
    """Import a module with its prints and warnings silenced; None when it cannot be imported here."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - ImportError, SystemExit, platform errors: skip the module
            return None


def stdlib_module_names() -> List[str]:
    """Public standard-library modules and their public submodules, sorted."""
    names = set()
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in STDLIB_SKIP:
            continue
        module = _quiet_import(top)
        if module is None:
            continue
        names.add(top)
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, prefix=top + ".", onerror=lambda _: None):
                parts = info.name.split(".")
                if any(p.startswith("_") or p in ("test", "tests") for p in parts) or info.name in STDLIB_SKIP:
                    continue
                names.add(info.name)
    return sorted(names)


def module_records(library: str, module_name: str) -> Iterator[Record]:
    """The module's docstring and those of its public classes, functions and methods defined there."""
    module = _quiet_import(module_name)
    if module is None:
        return
    if _doc(module):
        yield Record(module_name, library, module_name, module_name.rsplit(".", 1)[-1], "module", text=_doc(module))
    exported = getattr(module, "__all__", None)
    for name in sorted(set(exported) if isinstance(exported, (list, tuple)) else dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if not _defined_in(obj, library, module_name):
            continue
        if inspect.isclass(obj):
            yield Record(f"{module_name}.{name}", library, module_name, name, "class", parameter_names(obj), _doc(obj))
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if attr.startswith("_") or not callable(member):
                    continue
                member = getattr(obj, attr, None)
                if _doc(member):
                    yield Record(f"{module_name}.{name}.{attr}", library, module_name, f"{name}.{attr}",
                                 "method", parameter_names(member), _doc(member))
        elif _doc(obj):
            yield Record(f"{module_name}.{name}", library, module_name, name, "function", parameter_names(obj),
                         _doc(obj))


def _defined_in(obj, library: str, module_name: str) -> bool:
    """A class or function whose home is this module (standard library) or this library (numpy, torch)."""
    if isinstance(obj, types.ModuleType) or not (inspect.isclass(obj) or callable(obj)):
        return False
    home = getattr(obj, "__module__", None) or ""
    if library == "python":
        return home.lstrip("_") == module_name     # e.g. io.StringIO lives in _io
    return home.split(".")[0].lstrip("_") == library


def topic_records() -> Iterator[Record]:
    """The language reference topics that `help()` shows (keywords, statements, special methods)."""
    from pydoc_data.topics import topics
    for name in sorted(topics):
        yield Record(f"pydoc_data.topics.{name}", "python", "", name, "topic", text=topics[name])


def raw_records() -> Iterator[Record]:
    yield from topic_records()
    for module_name in stdlib_module_names():
        yield from module_records("python", module_name)
    for library, modules in LIBRARY_MODULES.items():
        for module_name in modules:
            yield from module_records(library, module_name)


def build() -> List[Record]:
    """Every record, normalised, filtered, de-duplicated (first id in sorted order wins), split, sorted by id."""
    by_id: Dict[str, Record] = {}
    for record in raw_records():
        record.text = normalise(record.text)
        if not is_noise(record.text) and record.id not in by_id:
            by_id[record.id] = record
    records, seen_texts = [], set()
    for record_id in sorted(by_id):
        record = by_id[record_id]
        if record.text in seen_texts:
            continue
        seen_texts.add(record.text)
        record.split = split_of(record.id)
        records.append(record)
    return records


def encode(records: List[Record]) -> bytes:
    """The gzip file's bytes: deterministic (no timestamp, no file name)."""
    lines = "".join(json.dumps(asdict(r), ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(lines.encode())
    return buffer.getvalue()


def source_versions() -> Dict[str, str]:
    import numpy
    import torch
    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "torch": torch.__version__}


def manifest_of(records: List[Record], data: bytes) -> dict:
    sizes = {}
    for name, _ in SPLITS:
        part = [r for r in records if r.split == name]
        sizes[name] = {"records": len(part), "characters": sum(len(r.text) for r in part)}
    per_library = {lib: sum(r.library == lib for r in records) for lib in LIBRARIES}
    return {"file": "corpus.jsonl.gz", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "sources": source_versions(), "records_per_library": per_library, "splits": sizes,
            "split_rule": "sha256(id)[:8] as an integer mod 100: <90 train, <95 validation, else test",
            "min_chars": MIN_CHARS, "max_chars": MAX_CHARS, "command": "python -m lm.corpus --out data/corpus"}


def read(directory) -> List[Record]:
    """The committed corpus, checked against its manifest's sha256."""
    directory = Path(directory)
    manifest_path, data_path = directory / "manifest.json", directory / "corpus.jsonl.gz"
    if not manifest_path.is_file() or not data_path.is_file():
        raise FileNotFoundError(f"{directory} is not a built corpus (it needs manifest.json and corpus.jsonl.gz); "
                                "build one with `python -m lm.corpus --out DIR`")
    data = data_path.read_bytes()
    expected = json.loads(manifest_path.read_text())["sha256"]
    if hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{data_path} does not match the sha256 in {manifest_path}: the file is corrupt or was "
                         "edited; restore it with git or rebuild it with `python -m lm.corpus --out DIR`")
    return [Record(**json.loads(line)) for line in gzip.decompress(data).decode().splitlines()]


def texts(records: List[Record], split: str) -> List[str]:
    if split not in dict(SPLITS):
        raise ValueError(f"unknown split {split!r}; choose from {[name for name, _ in SPLITS]}")
    return [r.text for r in records if r.split == split]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="folder to write corpus.jsonl.gz and manifest.json into")
    group.add_argument("--check", type=Path, help="rebuild and compare with this folder's manifest")
    args = parser.parse_args(argv)
    records = build()
    data = encode(records)
    manifest = manifest_of(records, data)
    if args.check:
        committed = json.loads((args.check / "manifest.json").read_text())
        same = committed["sha256"] == manifest["sha256"]
        print(f"rebuilt {manifest['sha256']} ({'matches' if same else 'differs from'} {committed['sha256']}); "
              f"sources here {manifest['sources']}, committed {committed['sources']}")
        return 0 if same else 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.jsonl.gz").write_bytes(data)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: manifest[k] for k in ("sha256", "bytes", "records_per_library", "splits")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
