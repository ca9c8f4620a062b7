"""Two text tasks in the image of the paper's DART and Emotion, built from the documentation corpus.

* ``table_to_text`` (DART): the table of a documented object (its kind, module and parameters, as
  subject | relation | object triples) -> the first sentence of its docstring.
  Prompt ``TABLE: {triples} TEXT:``, target `` {sentence}`` then EOS; metrics BLEU (sacrebleu) and exact match.
* ``classification`` (Emotion): the first sentence of a docstring -> which of six parts of the
  documentation it comes from (`LABELS`), with every word that names a label or its library removed.
  Prompt ``TEXT: {x} LABEL:``, target `` {label}``; metric accuracy (the best-scoring of the six labels),
  reported beside the majority class.

Both keep the corpus's split (a hash of the documented object's name), so no test example was pretrained
on. The same `Example`s come from the real datasets' local exports (`read_examples`):

* DART as JSON lines, one table per line: ``{"tripleset": [[s, p, o], ...], "annotations": ...}`` with
  annotations either ``[{"text": ...}, ...]`` (the original release) or ``{"text": [...]}`` (Hugging Face's
  export); the first annotation is the target;
* Emotion as JSON lines or CSV with fields ``text`` and ``label`` (0-5 in Emotion's order, `EMOTION_LABELS`,
  or the label's name).
"""

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from lm import corpus

TASKS = ("table_to_text", "classification")
SPLITS = ("train", "validation", "test")

# classification: label -> the top-level modules whose documentation carries it (chapters of the
# references: numpy; torch's tensors and its neural-network packages; Python's internet and networking,
# operating-system services, and language services and development tools)
LABELS: Dict[str, Tuple[str, ...]] = {
    "arrays": ("numpy",),
    "tensors": ("torch", "torch.linalg", "torch.special", "torch.fft", "torch.sparse", "torch.masked",
                "torch.signal", "torch.func", "torch.autograd"),
    "networks": ("torch.nn", "torch.optim"),
    "internet": ("asyncio", "email", "http", "urllib", "socket", "ssl", "smtplib", "imaplib", "poplib", "ftplib",
                 "nntplib", "telnetlib", "mailbox", "xmlrpc", "wsgiref", "socketserver", "cgi", "html",
                 "webbrowser", "ipaddress", "uuid", "mimetypes", "base64", "binascii", "quopri", "json",
                 "select", "selectors"),
    "system": ("os", "posix", "io", "pathlib", "shutil", "tarfile", "zipfile", "gzip", "bz2", "lzma", "zlib",
               "tempfile", "glob", "fnmatch", "stat", "filecmp", "fileinput", "ntpath", "posixpath", "genericpath",
               "multiprocessing", "threading", "subprocess", "signal", "queue", "concurrent", "sched", "time",
               "platform", "logging", "curses", "ctypes", "termios", "fcntl", "pwd", "grp", "resource"),
    "language": ("builtins", "typing", "inspect", "ast", "importlib", "collections", "abc", "types",
                 "dataclasses", "contextlib", "functools", "itertools", "operator", "enum", "unittest",
                 "doctest", "pdb", "bdb", "traceback", "dis", "symtable", "tokenize", "code", "codeop", "gc",
                 "weakref", "warnings", "site", "sys", "pkgutil", "zipimport", "imp", "tracemalloc", "timeit",
                 "trace", "pstats", "cProfile", "keyword", "copy", "pickle", "marshal"),
}
# torch's packages that are neither about tensors nor networks (devices, compilers, distribution, tooling)
UNLABELLED = ("torch.distributed", "torch.cuda", "torch.ao", "torch.jit", "torch.export", "torch.onnx",
              "torch.utils", "torch.library", "torch.profiler", "torch.overrides", "torch.hub", "torch.amp",
              "torch.random", "torch.testing", "torch.distributions", "torch.nn.attention")
# words that would name a label (or its library) outright: removed from every classification input,
# with any dotted name that contains one (``torch.erfinv``, ``np.ndarray``)
LEAK_WORDS = ("arrays?", "ndarrays?", "numpy", "np", "tensors?", "torch", "nn", "networks?", "internet",
              "systems?", "languages?", "python")
EMOTION_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")  # Emotion's label ids 0-5

MAX_WORDS = 24        # longest sentence (target or classification input) kept, in words
MAX_PARAMS = 6        # parameters listed in a table


@dataclass(frozen=True)
class Example:
    prompt: str          # what the model reads
    target: str          # what it should continue with (the reference text, or " " + label)
    label: str = ""      # classification: the label


@dataclass(frozen=True)
class TextTask:
    name: str
    splits: Dict[str, List[Example]]
    labels: Tuple[str, ...] = ()      # classification: the label set, in order

    def examples(self, split: str) -> List[Example]:
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown text task {name!r}; choose from {TASKS}")
    return name


# ---------------------------------------------------------------------------------------------- prompts

def table_prompt(triples: Sequence[Sequence[str]]) -> str:
    return "TABLE: " + " ; ".join(" | ".join(t) for t in triples) + " TEXT:"


def classification_prompt(text: str) -> str:
    return f"TEXT: {text} LABEL:"


def table_example(triples: Sequence[Sequence[str]], text: str) -> Example:
    return Example(table_prompt(triples), " " + text)


def classification_example(text: str, label: str) -> Example:
    return Example(classification_prompt(text), " " + label, label)


# ------------------------------------------------------------------------------ the corpus's tasks

_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
_SENTENCE_END = re.compile(r"(?<=[\w)\]'\"`])\.(?=\s|$)")


def first_sentence(docstring: str) -> Optional[str]:
    """The docstring's first sentence (after a leading signature line), or None if it is not plain prose."""
    paragraphs = [p for p in docstring.split("\n\n") if p.strip()]
    if paragraphs and _SIGNATURE.match(" ".join(paragraphs[0].split())):
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return None
    text = " ".join(paragraphs[0].split())
    end = _SENTENCE_END.search(text)
    if end is None:
        return None
    sentence = text[: end.end()]
    words = sentence.split()
    if not 3 <= len(words) <= MAX_WORDS or not sentence[0].isupper() or not sentence.isascii():
        return None
    if any(mark in sentence for mark in (":func:", ":class:", ":meth:", "::", "\\", ">>>", "|")):
        return None
    return sentence


def record_triples(record: corpus.Record) -> List[Tuple[str, str, str]]:
    triples = [(record.name, "kind", record.kind), (record.name, "module", record.module)]
    if record.params:
        triples.append((record.name, "parameters", ", ".join(record.params[:MAX_PARAMS])))
    return triples


def label_of(record: corpus.Record) -> Optional[str]:
    """The classification label of a record: that of the longest entry of `LABELS` or `UNLABELLED` that is
    its module or a package above it (None: in none of the six parts)."""
    parts = record.module.split(".")
    for depth in range(len(parts), 0, -1):
        module = ".".join(parts[:depth])
        if module in UNLABELLED:
            return None
        for label, modules in LABELS.items():
            if module in modules:
                return label
    return None


_LEAKS = re.compile(r"[\w.]*\b(?:" + "|".join(LEAK_WORDS) + r")\b[\w.]*", re.IGNORECASE)


def without_leaks(text: str) -> str:
    return " ".join(_LEAKS.sub(" ", text).split())


def corpus_task(name: str, corpus_dir: Path) -> TextTask:
    """The task `name` built from the corpus at `corpus_dir`, deterministically, in the corpus's splits."""
    check_task(name)
    splits: Dict[str, List[Example]] = {split: [] for split in SPLITS}
    records = [r for r in corpus.read(corpus_dir) if r.kind != "topic"]
    if name == "table_to_text":
        for r in records:
            sentence = first_sentence(r.text)
            if sentence:
                splits[r.split].append(table_example(record_triples(r), sentence))
        return TextTask(name, splits)
    seen: Dict[str, set] = {}
    candidates = []
    for r in records:
        label, sentence = label_of(r), first_sentence(r.text)
        if label and sentence:
            x = without_leaks(sentence)
            if len(x.split()) >= 3:
                seen.setdefault(x, set()).add(label)
                candidates.append((r.split, x, label))
    kept = set()
    for split, x, label in candidates:   # an input under two labels is ambiguous; a repeated one counts once
        if len(seen[x]) == 1 and x not in kept:
            kept.add(x)
            splits[split].append(classification_example(x, label))
    return TextTask(name, splits, tuple(LABELS))


# ------------------------------------------------------------------------------ the real datasets' files

def _records(path: Path) -> List[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a JSON-lines or CSV export of the dataset")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number} is not a JSON object ({e}); expected one record per line") from e
    return rows


def _field(row: dict, key: str, path: Path, number: int, expected: str):
    if not isinstance(row, dict) or key not in row:
        raise ValueError(f"{path} record {number} has no field {key!r}; each record needs {expected}")
    return row[key]


def read_examples(name: str, path: Path) -> List[Example]:
    """The examples of one split of the real dataset (DART for table_to_text, Emotion for classification)."""
    check_task(name)
    examples = []
    for number, row in enumerate(_records(path), 1):
        if name == "table_to_text":
            expected = '"tripleset" ([[subject, relation, object], ...]) and "annotations" (their texts)'
            triples = _field(row, "tripleset", path, number, expected)
            annotations = _field(row, "annotations", path, number, expected)
            texts = annotations.get("text", []) if isinstance(annotations, dict) else [a.get("text") for a in annotations]
            if not texts or not texts[0] or not triples or any(len(t) != 3 for t in triples):
                raise ValueError(f"{path} record {number} needs a non-empty tripleset of [subject, relation, "
                                 f"object] triples and at least one annotation text")
            examples.append(table_example(triples, " ".join(str(texts[0]).split())))
        else:
            expected = '"text" and "label" (0-5 or a label name of ' + ", ".join(EMOTION_LABELS) + ")"
            text = _field(row, "text", path, number, expected)
            label = str(_field(row, "label", path, number, expected)).strip()
            if label.isdigit() and int(label) < len(EMOTION_LABELS):
                label = EMOTION_LABELS[int(label)]
            if label not in EMOTION_LABELS:
                raise ValueError(f"{path} record {number} has label {label!r}; expected {expected}")
            examples.append(classification_example(" ".join(str(text).split()), label))
    if not examples:
        raise ValueError(f"{path} holds no records")
    return examples


def file_task(name: str, files: Dict[str, Path]) -> TextTask:
    """The task from the real dataset's files, one per split (e.g. {"train": ..., "test": ...})."""
    unknown = set(files) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLITS}")
    splits = {split: read_examples(name, path) for split, path in files.items()}
    return TextTask(name, splits, EMOTION_LABELS if name == "classification" else ())


# ---------------------------------------------------------------------------------------- tokens

@dataclass
class Encoded:
    prompt: List[int]      # with BOS when the tokenizer has one of its own (LLaMA), none for GPT-2
    target: List[int]      # the target's tokens (then EOS for table_to_text)


def uses_bos(tokenizer) -> bool:
    return tokenizer.bos_id != tokenizer.eos_id   # GPT-2's <|endoftext|> is both, and prompts start without it


def encode(tokenizer, example: Example, eos: bool) -> Encoded:
    """Token ids of the prompt and of the target that follows it, so that prompt + target = the whole text."""
    bos = uses_bos(tokenizer)
    prompt = tokenizer.encode(example.prompt, bos=bos, eos=False)
    whole = tokenizer.encode(example.prompt + example.target, bos=bos, eos=eos)
    if whole[: len(prompt)] != prompt:
        raise ValueError(f"the tokenizer merges the prompt's end with the target's start in {example.prompt!r} + "
                         f"{example.target!r}; end prompts with a separator such as ':'")
    return Encoded(prompt, whole[len(prompt):])


def pad_right(rows: List[List[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def training_batch(items: List[Encoded], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x, y): x the prompts and targets, right-padded; y[t] = x[t+1] on target tokens, -1 elsewhere."""
    x = pad_right([e.prompt + e.target for e in items], pad_id)
    y = torch.full_like(x, -1)
    for row, e in enumerate(items):
        start = len(e.prompt) - 1
        y[row, start: start + len(e.target)] = torch.tensor(e.target)
    return x, y


def batch_source(items: List[Encoded], batch_size: int, n_prefixes: int, pad_id: int) -> Callable:
    """get_batch(generator) for the trainer: batch_size examples drawn with replacement, the same for
    every prefix (n_prefixes blocks of rows). It draws from the generator only, whose state the trainer
    checkpoints, so a resumed run sees the same batches as an uninterrupted one."""
    def get_batch(generator: torch.Generator):
        picks = torch.randint(len(items), (batch_size,), generator=generator).tolist()
        x, y = training_batch([items[i] for i in picks], pad_id)
        return x.repeat(n_prefixes, 1), y.repeat(n_prefixes, 1)
    return get_batch


def longest(items: List[Encoded]) -> int:
    return max(len(e.prompt) + len(e.target) for e in items)
