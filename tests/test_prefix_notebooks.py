"""The committed records of `prefix_bias_only.ipynb` (Section 4) and `longer_prefixes.ipynb` (Appendix B)
reproduce from the committed model and prefixes."""

import json

import pytest
import torch

from core.records import ROOT
from lm import prefix_attention as pa
from lm import prefix_bias as pb
from lm import text_tasks
from lm.prefix_tune import load_prefixes
from lm.pretrain import tokenizer_of
from lm.stand_ins import load_model

RUNS = ROOT / "results" / "prefix_tuning"


def test_layer0_identities_hold_from_the_committed_prefixes():
    record = json.loads((ROOT / "results" / "section4" / "prefix_bias_only.json").read_text())
    assert not record["quick"] and record["n_inputs"] >= 100
    tokenizer = tokenizer_of("llama", ROOT / record["model_folder"])
    examples = text_tasks.corpus_task("table_to_text", ROOT / "data" / "corpus").examples("test")
    inputs = [e.prompt + e.target for e in (text_tasks.encode(tokenizer, x, eos=False) for x in examples)]
    for n_s in (1, 5):
        for dtype, bound in ((torch.float64, 1e-10), (torch.float32, 1e-5)):  # aligned: the identity itself
            model = load_model("llama", ROOT / record["model_folder"]).to(dtype)
            prefix = load_prefixes(RUNS / f"llama-table_to_text-n{n_s}" / "prefixes.pt", model)["prefixes"][0].to(dtype)
            errors = pb.concat_errors([pb.layer0_errors(model, inputs[i:i + 32], prefix, tokenizer.eos_id)["aligned"]
                                       for i in range(0, len(inputs), 32)])
            worst = {k: errors[k].max().item() for k in ("attention", "output")}
            name = str(dtype).split(".")[-1]
            assert max(worst.values()) <= bound, (n_s, name, worst)
            recorded = {k: record["layer0"][f"n{n_s}_{name}"][k] for k in worst}
            assert worst == pytest.approx(recorded, rel=0.5, abs=1e-16), (n_s, name, worst, recorded)


def test_layer0_gap_reproduces_from_the_committed_prefixes():
    """The record's layer-0 gap of the trained prefixes on the test split, recomputed in float64 from the
    committed prefixes (the record is float32: the gaps agree to 1e-5)."""
    record = json.loads((ROOT / "results" / "appendix_b" / "longer_prefixes.json").read_text())
    assert record["max_prefixes"] is None and record["trained"]["test"]["n_prefixes"] == 20
    model = load_model("gpt2", ROOT / record["model_folder"]).double()
    tokenizer = tokenizer_of("gpt2", ROOT / record["model_folder"])
    prefixes = load_prefixes(ROOT / record["run"] / "prefixes.pt", model)["prefixes"].double()
    examples = text_tasks.corpus_task("classification", ROOT / "data" / "corpus").examples("test")
    assert len(examples) == record["n_inputs"]["test"]
    prompts = [text_tasks.encode(tokenizer, e, eos=False).prompt for e in examples]
    gaps = []
    for prefix in prefixes:
        weights = pa.renormalised(pa.last_token_prefix_attention(model, prompts, prefix, tokenizer.eos_id))
        gaps.append(pa.percentile_gap(weights[:, 0]).mean())        # layer 0: heads and positions averaged
    assert torch.stack(gaps).mean().item() == pytest.approx(record["trained"]["test"]["gap_over_heads"][0], abs=1e-5)
