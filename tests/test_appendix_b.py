"""Appendix B's record (`python -m lm.appendix_b`): the committed record is of the committed prefixes, one
layer's gap recomputes through Hugging Face and PEFT (an independent forward pass), and the record is reused
only for the prefixes, model and inputs it was made from."""

import json

import pytest
import torch

from core.checkpoint import sha256
from core.records import ROOT
from lm import appendix_b, text_tasks
from lm import diagnose as dg
from lm import peft_adapters as pe
from lm.prefix_tune import load_prefixes
from lm.stand_ins import STAND_INS, load_gpt2

RUN = appendix_b.DEFAULT_RUN
RECORD = appendix_b.DEFAULT_OUT
CORPUS = ROOT / "data" / "corpus"


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


def test_the_committed_record_is_of_the_committed_prefixes_on_every_input(record):
    manifest = json.loads((RUN / "manifest.json").read_text())
    assert record["prefixes_sha256"] == sha256(RUN / "prefixes.pt") == manifest["prefixes_sha256"]
    task = text_tasks.corpus_task("classification", CORPUS)
    counts = {split: len(task.examples(split)) for split in ("train", "validation", "test")}
    assert record["n_inputs"] == {"all": sum(counts.values()), "test": counts["test"]}
    n_layers = STAND_INS["gpt2"].n_layers
    for state in ("trained", "untrained"):
        for subset in ("all", "test"):
            measures = record[state][subset]
            assert measures["n_prefixes"] == len(manifest["seeds"]) and measures["n_inputs"] == record["n_inputs"][subset]
            for key in ("gap_over_heads", "gap_head_l_of_layer_l", "effective_rank", "effective_rank_centred"):
                assert len(measures[key]) == n_layers, (state, subset, key)
    during = record["during_training"]
    assert during["steps"] == [0] + [step for step, _ in manifest["validation_curve"]["points"]]
    assert all(m["n_inputs"] == counts["test"] and m["n_prefixes"] == len(manifest["seeds"]) for m in during["measures"])


def test_one_layers_gap_recomputes_through_hugging_face_and_peft(record, tmp_path):
    """The first prefix's gap per layer on the test split, from GPT-2's Hugging Face implementation in float64
    with the prefix as a PEFT adapter (its keys and values), against the record (float32, this project's model)."""
    model, tokenizer = load_gpt2()
    prefix = load_prefixes(RUN / "prefixes.pt", model)["prefixes"][0]
    pe.export_prefix(model, prefix, tmp_path / "adapter", STAND_INS["gpt2"].folder)
    test = text_tasks.corpus_task("classification", CORPUS).examples("test")
    through_hf = dg.diagnose(STAND_INS["gpt2"].folder, tmp_path / "adapter", [e.prompt for e in test])
    layer = 2
    assert through_hf["gap_over_heads"][layer] == pytest.approx(
        record["trained"]["test"]["gap_over_heads_per_prefix"][0][layer], abs=1e-5)


def test_a_record_is_reused_only_for_what_it_was_made_from(tmp_path, capsys):
    out = tmp_path / "record.json"
    first = appendix_b.main(["--limit", "3", "--prefixes", "2", "--out", str(out)])
    assert torch.is_grad_enabled()   # main leaves the caller's autograd on
    assert first["n_inputs"] == {"all": 9, "test": 3} and first["trained"]["all"]["n_prefixes"] == 2
    out.write_text(json.dumps({**first, "seconds": -1.0}))               # marked: a reused record keeps the mark
    assert appendix_b.main(["--limit", "3", "--prefixes", "2", "--out", str(out)])["seconds"] == -1.0
    again = appendix_b.main(["--limit", "4", "--prefixes", "2", "--out", str(out)])   # other inputs: measured again
    assert again["seconds"] >= 0 and again["n_inputs"] == {"all": 12, "test": 4}
    assert "was made from other prefixes, model or inputs: measuring again" in capsys.readouterr().out


def test_the_test_subset_indexes_the_test_split():
    model, tokenizer = load_gpt2()
    task = text_tasks.corpus_task("classification", CORPUS)
    prompts, subsets = appendix_b.prompts_by_split(task, tokenizer, limit=5)
    expected = [text_tasks.encode(tokenizer, e, eos=False).prompt for e in task.examples("test")[:5]]
    assert [prompts[i] for i in subsets["test"]] == expected and len(prompts) == 15


def test_a_run_of_another_task_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "table_to_text"}))
    with pytest.raises(SystemExit, match="is a run on 'table_to_text'; Appendix B's measures are of classification"):
        appendix_b.main(["--run", str(tmp_path)])
    with pytest.raises(SystemExit, match="has no manifest.json"):
        appendix_b.main(["--run", str(tmp_path / "nothing")])
