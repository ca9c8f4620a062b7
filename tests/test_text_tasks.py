"""The text tasks: deterministic, split as the corpus, hand-checked rules, and the real datasets' loaders."""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch

from core.records import ROOT
from lm import corpus, text_tasks
from lm.corpus import Record
from lm.text_tasks import Example, classification_example, table_example

CORPUS = ROOT / "data" / "corpus"


@pytest.fixture(scope="module")
def tasks():
    return {name: text_tasks.corpus_task(name, CORPUS) for name in text_tasks.TASKS}


def test_tasks_are_the_same_in_a_fresh_process(tasks):
    """Built again by another Python process (its own hash seed): every split of every task, example for example."""
    script = ("import json, sys; from pathlib import Path; from lm import text_tasks; "
              "print(json.dumps({n: {s: [[e.prompt, e.target] for e in t.splits[s]] for s in t.splits} "
              "for n in text_tasks.TASKS for t in [text_tasks.corpus_task(n, Path(sys.argv[1]))]}))")
    result = subprocess.run([sys.executable, "-c", script, str(CORPUS)], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "random"})
    here = {n: {s: [[e.prompt, e.target] for e in t.splits[s]] for s in t.splits} for n, t in tasks.items()}
    assert json.loads(result.stdout) == here


def test_every_table_to_text_example_comes_from_a_record_of_its_split(tasks):
    by_table = {}
    for r in corpus.read(CORPUS):
        by_table.setdefault(text_tasks.table_prompt(text_tasks.record_triples(r)), set()).add(r.split)
    for split, examples in tasks["table_to_text"].splits.items():
        assert len(examples) > 300 if split == "test" else True
        for e in examples:
            assert split in by_table[e.prompt]


def test_classification_has_six_classes_of_300_and_disjoint_splits(tasks):
    task = tasks["classification"]
    counts = Counter(e.label for examples in task.splits.values() for e in examples)
    assert sorted(counts) == sorted(text_tasks.LABELS) and min(counts.values()) >= 300
    inputs = {split: {e.prompt for e in examples} for split, examples in task.splits.items()}
    assert not inputs["train"] & inputs["test"] and not inputs["train"] & inputs["validation"]
    words = {w.lower().strip(".,") for examples in task.splits.values() for e in examples for w in e.prompt.split()}
    assert not words & {"numpy", "np", "torch", "nn", "tensor", "tensors", "array", "arrays", "internet", "system",
                        "python", "networks", "language"}


def test_labels_follow_the_longest_listed_module():
    def label(module):
        return text_tasks.label_of(Record(id=module + ".x", library="", module=module, name="x", kind="function"))
    assert label("torch") == "tensors" and label("torch.linalg") == "tensors"
    assert label("torch.nn.functional") == "networks" and label("torch.optim.lr_scheduler") == "networks"
    assert label("torch.nn.attention") is None and label("torch.distributed.rpc") is None
    assert label("email.mime.text") == "internet" and label("os") == "system" and label("builtins") == "language"
    assert label("numpy.polynomial.legendre") == "arrays" and label("xml.dom") is None and label("") is None


def test_first_sentence_and_leak_removal_by_hand():
    assert text_tasks.first_sentence("norm(x, ord=None) -> float\n\nMatrix or vector norm.  More text.") == \
        "Matrix or vector norm."
    assert text_tasks.first_sentence("Return the\n  sum of e.g. values. Then more.") == "Return the sum of e.g."
    assert text_tasks.first_sentence("See :func:`torch.erfinv`.") is None          # markup, not prose
    assert text_tasks.first_sentence("lowercase start is not a sentence.") is None
    assert text_tasks.first_sentence("No full stop at all") is None
    assert text_tasks.first_sentence("Word " * 30 + "end.") is None                # longer than MAX_WORDS
    assert text_tasks.without_leaks("Return a NumPy array of torch.Tensor values as np.float32 arrays here.") == \
        "Return a of values as here."


def test_prompts_are_the_papers_form():
    assert table_example([("a", "kind", "class"), ("a", "module", "m")], "An A.") == \
        Example("TABLE: a | kind | class ; a | module | m TEXT:", " An A.")
    assert classification_example("I feel fine", "joy") == Example("TEXT: I feel fine LABEL:", " joy", "joy")


def test_dart_loader_reads_both_exports(tmp_path):
    original = {"tripleset": [["Mars", "orbits", "Sun"], ["Mars", "colour", "red"]],
                "annotations": [{"source": "WikiSQL", "text": "Mars, the red planet,  orbits the Sun."}]}
    hugging_face = {"tripleset": [["Ada", "born", "1815"]], "subtree_was_extended": False,
                    "annotations": {"source": ["webnlg"], "text": ["Ada was born in 1815.", "In 1815 Ada was born."]}}
    path = tmp_path / "dart.jsonl"
    path.write_text(json.dumps(original) + "\n\n" + json.dumps(hugging_face) + "\n")
    assert text_tasks.read_examples("table_to_text", path) == [
        Example("TABLE: Mars | orbits | Sun ; Mars | colour | red TEXT:", " Mars, the red planet, orbits the Sun."),
        Example("TABLE: Ada | born | 1815 TEXT:", " Ada was born in 1815.")]


def test_emotion_loader_reads_csv_and_json_lines(tmp_path):
    (tmp_path / "e.csv").write_text('text,label\n"i feel  calm, really",1\nim so scared,fear\n')
    (tmp_path / "e.jsonl").write_text(json.dumps({"text": "what a shock", "label": 5}) + "\n")
    assert text_tasks.read_examples("classification", tmp_path / "e.csv") == [
        Example("TEXT: i feel calm, really LABEL:", " joy", "joy"), Example("TEXT: im so scared LABEL:", " fear", "fear")]
    task = text_tasks.file_task("classification", {"train": tmp_path / "e.csv", "test": tmp_path / "e.jsonl"})
    assert task.labels == text_tasks.EMOTION_LABELS and task.examples("test")[0].label == "surprise"


def test_loaders_name_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tripleset": [["a", "b", "c"]]}) + "\n")
    with pytest.raises(ValueError, match=r"record 1 has no field 'annotations'"):
        text_tasks.read_examples("table_to_text", bad)
    bad.write_text(json.dumps({"tripleset": [["a", "b"]], "annotations": [{"text": "x"}]}) + "\n")
    with pytest.raises(ValueError, match=r"record 1 needs a non-empty tripleset of \[subject, relation, object\]"):
        text_tasks.read_examples("table_to_text", bad)
    bad.write_text(json.dumps({"text": "x", "label": 9}) + "\n")
    with pytest.raises(ValueError, match=r"record 1 has label '9'; expected .*sadness, joy"):
        text_tasks.read_examples("classification", bad)
    bad.write_text(json.dumps({"label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"record 1 has no field 'text'"):
        text_tasks.read_examples("classification", bad)
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1 is not a JSON object"):
        text_tasks.read_examples("classification", bad)
    with pytest.raises(FileNotFoundError, match=r"missing.csv does not exist"):
        text_tasks.read_examples("classification", tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"unknown text task 'sentiment'; choose from"):
        text_tasks.corpus_task("sentiment", CORPUS)
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['dev'\]"):
        text_tasks.file_task("classification", {"dev": bad})


class CharTokenizer:
    """A stand-in tokenizer: one id per character, BOS 1, EOS 2 (as LLaMA's, distinct)."""
    bos_id, eos_id = 1, 2

    def encode(self, s, bos, eos):
        return [self.bos_id] * bos + [ord(c) for c in s] + [self.eos_id] * eos


def test_training_batch_puts_targets_on_the_target_tokens_only():
    encoded = [text_tasks.encode(CharTokenizer(), Example("ab:", " c"), eos=True),
               text_tasks.encode(CharTokenizer(), Example("x:", " yz"), eos=False)]
    assert encoded[0].prompt == [1, 97, 98, 58] and encoded[0].target == [32, 99, 2]
    x, y = text_tasks.training_batch(encoded, pad_id=0)
    assert x.tolist() == [[1, 97, 98, 58, 32, 99, 2], [1, 120, 58, 32, 121, 122, 0]]
    assert y.tolist() == [[-1, -1, -1, 32, 99, 2, -1], [-1, -1, 32, 121, 122, -1, -1]]


def test_batch_source_repeats_one_draw_for_every_prefix():
    encoded = [text_tasks.encode(CharTokenizer(), Example(f"{i}:", " v" * (i + 1)), eos=False) for i in range(5)]
    get_batch = text_tasks.batch_source(encoded, batch_size=3, n_prefixes=2, pad_id=0)
    x, y = get_batch(torch.Generator().manual_seed(4))
    assert x.shape[0] == 6 and torch.equal(x[:3], x[3:]) and torch.equal(y[:3], y[3:])
    again, _ = get_batch(torch.Generator().manual_seed(4))
    assert torch.equal(x, again)
