"""The documentation corpus: it rebuilds to the committed bytes, and its split is by documented object."""

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest

from core.records import ROOT
from lm import corpus

CORPUS = ROOT / "data" / "corpus"


@pytest.fixture(scope="module")
def records():
    return corpus.read(CORPUS)


def test_builder_reproduces_the_committed_corpus():
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    if corpus.source_versions() != manifest["sources"]:
        pytest.skip(f"the corpus was built from {manifest['sources']}, this machine has {corpus.source_versions()}")
    # a fresh interpreter: a package imported by the test session (transformers) patches standard-library classes
    done = subprocess.run([sys.executable, "-m", "lm.corpus", "--check", str(CORPUS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert manifest["sha256"] in done.stdout


def test_committed_file_matches_its_manifest():
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    data = (CORPUS / "corpus.jsonl.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) == manifest["bytes"]


def test_split_is_the_stated_hash_of_the_id(records):
    for record in records:
        bucket = int(hashlib.sha256(record.id.encode()).hexdigest()[:16], 16) % 100
        assert record.split == ("train" if bucket < 90 else "validation" if bucket < 95 else "test"), record.id


def test_split_holds_out_whole_documents(records):
    ids = [r.id for r in records]
    texts = [r.text for r in records]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)
    counts = {name: sum(r.split == name for r in records) for name in ("train", "validation", "test")}
    total = len(records)
    assert 0.88 < counts["train"] / total < 0.92 and 0.04 < counts["test"] / total < 0.06, counts
    assert {r.library for r in records} == {"python", "numpy", "torch"}
    assert sum(len(t) for t in texts) > 5_000_000


def test_records_are_normalised_prose(records):
    for record in records:
        assert len(record.text) >= corpus.MIN_CHARS
        assert record.text == record.text.strip() and "\t" not in record.text and "\n\n\n" not in record.text
        assert not re.search(r" at 0x[0-9a-f]{4,}", record.text, re.IGNORECASE)  # no memory address
        assert not any(line != line.rstrip() for line in record.text.split("\n"))


def test_normalise_and_noise_rules():
    assert corpus.normalise("  First line.\n\n\n\n      indented   \n\tend  ") == "First line.\n\n  indented\nend"
    assert corpus.is_noise("short")
    assert corpus.is_noise("<object at 0x7f3a2c> " * 5)
    assert corpus.is_noise("数据" * 40)
    assert not corpus.is_noise("Return the sum of the elements of an array along an axis.")


def test_corrupt_or_missing_corpus_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a built corpus"):
        corpus.read(tmp_path)
    shutil.copy(CORPUS / "manifest.json", tmp_path)
    data = gzip.decompress((CORPUS / "corpus.jsonl.gz").read_bytes())
    (tmp_path / "corpus.jsonl.gz").write_bytes(gzip.compress(data.replace(b"Return", b"Yield", 1)))
    with pytest.raises(ValueError, match="does not match the sha256"):
        corpus.read(tmp_path)


def test_unknown_split_is_refused(records):
    with pytest.raises(ValueError, match="unknown split"):
        corpus.texts(records, "dev")
