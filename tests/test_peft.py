"""PEFT adapters: this project's prefixes exported for Hugging Face models (the logits of the project's models),
the LLaMA stand-in in Hugging Face's layout, and `python -m lm.diagnose` on PEFT's own free keys and values:
the Section 4 identities to float64 rounding, the reach of a prefix past layer 0, and the errors it names."""

import json
from pathlib import Path

import pytest
import torch
from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
)
from transformers import AutoModelForCausalLM

from core.records import ROOT
from llama.checkpoint import load_shard
from llama.convert_hf import load_hf_checkpoint, save_hf_checkpoint
from lm import diagnose as dg
from lm import peft_adapters as pe
from lm.prefix_tune import load_prefixes
from lm.stand_ins import STAND_INS, load_model

RUNS = ROOT / "results" / "prefix_tuning"
GPT2 = STAND_INS["gpt2"].folder
PROMPTS = torch.tensor([[5, 9, 13, 2, 7, 30, 31], [40, 41, 42, 43, 44, 45, 46]])
TEXTS = ["TEXT: the tensor is reshaped LABEL:", "TEXT: the array holds the values LABEL:", "TEXT: a module LABEL:"]


@pytest.fixture(scope="module")
def llama_hf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama_hf")
    save_hf_checkpoint(str(STAND_INS["llama"].folder), str(folder))
    return folder


def peft_adapter(base: Path, config, folder: Path, seed: int = 0) -> Path:
    """An adapter made by PEFT itself (its initialisation: free keys and values) and saved by it."""
    torch.manual_seed(seed)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), config).save_pretrained(str(folder))
    return folder


def test_the_llama_stand_in_survives_the_round_trip_through_hugging_faces_layout(llama_hf):
    args, weights = load_hf_checkpoint(str(llama_hf))
    original = load_shard(str(STAND_INS["llama"].folder), 0, 1)
    assert set(weights) == set(original)
    assert all(torch.equal(weights[k], original[k].float()) for k in original)
    assert json.loads((llama_hf / "config.json").read_text())["num_hidden_layers"] == args.n_layers == 6
    from transformers import AutoTokenizer

    from llama.tokenizer import Tokenizer
    text = "TEXT: the tensor is reshaped LABEL:"   # Hugging Face's tokenizer reads text as Meta's does, BOS first
    assert AutoTokenizer.from_pretrained(llama_hf)(text)["input_ids"] == \
        Tokenizer(str(STAND_INS["llama"].folder / "tokenizer.model")).encode(text, bos=True, eos=False)


@pytest.mark.parametrize("family, run, tolerance", [("gpt2", "gpt2-classification-n10", 1e-5),
                                                    ("llama", "llama-table_to_text-n5", 1e-4)])
def test_an_exported_prefix_gives_the_projects_logits_through_peft(family, run, tolerance, llama_hf, tmp_path):
    model = load_model(family)
    prefix = load_prefixes(RUNS / run / "prefixes.pt", model)["prefixes"][0].float()
    base = GPT2 if family == "gpt2" else llama_hf
    pe.export_prefix(model, prefix, tmp_path / "adapter", base)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                           str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        ours, theirs = model.logits(PROMPTS, prefix), peft_model(input_ids=PROMPTS).logits
        plain = model.logits(PROMPTS)
    assert (theirs - ours).abs().max() <= tolerance
    assert (plain - ours).abs().max() > 100 * tolerance  # the prefix matters


def test_prompt_embeddings_round_trip():
    keys, values = torch.randn(3, 4, 5, 8), torch.randn(3, 4, 5, 8)
    back = pe.from_prompt_embeddings(pe.to_prompt_embeddings(keys, values), 3, 4)
    assert torch.equal(back[0], keys) and torch.equal(back[1], values)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_identities_hold_for_peft_s_free_keys_and_values_and_the_prefix_reaches_later_layers(family, llama_hf, tmp_path):
    base = GPT2 if family == "gpt2" else llama_hf
    folder = peft_adapter(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), tmp_path / "a")
    record = dg.diagnose(base, folder, TEXTS)
    assert record["layer0"]["attention"] <= 1e-10 and record["layer0"]["output"] <= 1e-10
    assert max(e["attention"] for e in record["own_input"]) <= 1e-10
    assert max(e["output"] for e in record["own_input"]) <= 1e-10
    tv = torch.tensor(record["tv_per_layer_head"])
    assert tv[0].max() <= 1e-12 < 1e-3 < tv[1:].mean()   # exactly unchanged at layer 0, moved after it


@pytest.mark.parametrize("projection", [False, True])
def test_the_diagnosis_runs_the_prefix_as_peft_does(projection, tmp_path):
    """Also for prefix_projection=True, whose saved prompt_embeddings are the projected keys and values."""
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=projection,
                                encoder_hidden_size=32)
    folder = peft_adapter(GPT2, config, tmp_path / "a", seed=1)
    model, adapter = dg.load_hf_model(GPT2), pe.read_adapter(folder)
    ours = dg.diagnose_input(model, PROMPTS[:1], adapter)["logits"]
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(GPT2, dtype=torch.float64), str(folder))
    with torch.no_grad():
        theirs = peft_model.eval()(input_ids=PROMPTS[:1]).logits[0]
    assert (ours - theirs).abs().max() <= 1e-10


def test_a_prompt_tuning_adapter_is_a_prefix_from_layer_0_on(tmp_path):
    folder = peft_adapter(GPT2, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), tmp_path / "p")
    record = dg.diagnose(GPT2, folder, TEXTS)
    assert record["kind"] == "PROMPT_TUNING" and "output" not in record["layer0"]
    assert record["layer0"]["attention"] <= 1e-10 and max(e["attention"] for e in record["own_input"]) <= 1e-10
    assert torch.tensor(record["tv_per_layer_head"])[1:].mean() > 1e-3


def test_the_command_runs_on_the_committed_peft_adapter(tmp_path, capsys):
    dg.main(["--hf-model", str(GPT2), "--adapter", str(ROOT / "results" / "peft" / "gpt2-classification-n10" / "seed1"),
             "--task", "classification", "--n-inputs", "2", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "diagnosis.json").read_text())
    assert record["n_inputs"] == 2 and record["n_virtual"] == 10 and (tmp_path / "diagnosis.png").is_file()
    assert "layer 0 (aligned, float64): attention identity max" in capsys.readouterr().out


def test_errors_name_the_problem(tmp_path, llama_hf):
    lora = tmp_path / "lora"
    get_peft_model(AutoModelForCausalLM.from_pretrained(GPT2, dtype=torch.float32),
                   LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"])).save_pretrained(str(lora))
    with pytest.raises(ValueError, match="is a LORA adapter; the paper's diagnostics are for prefix tuning and prompt tuning"):
        dg.diagnose(GPT2, lora, TEXTS)
    other = peft_adapter(llama_hf, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2), tmp_path / "other")
    config = json.loads((other / pe.CONFIG_FILE).read_text())
    config.update(num_layers=12)      # an adapter made for a 12-layer model of the same width
    (other / pe.CONFIG_FILE).write_text(json.dumps(config))
    weights = {"prompt_embeddings": torch.zeros(2, 12 * 2 * 256)}
    from safetensors.torch import save_file
    save_file(weights, other / pe.ADAPTER_FILE)
    with pytest.raises(ValueError, match=r"has \(layers, key/value heads, head_dim\) = \(12, 8, 32\) but the model has "
                                         r"\(6, 8, 32\): it was made for another base model"):
        dg.diagnose(GPT2, other, TEXTS)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(ValueError, match="is a 'bert' model; the diagnostics support the GPT-2 and LLaMA families"):
        dg.load_hf_model(bert)
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found: a PEFT adapter folder"):
        pe.read_adapter(tmp_path / "nothing")


def test_this_projects_prefix_is_the_special_case_the_notebook_measures(tmp_path):
    """Exported as keys and values and diagnosed through Hugging Face, a committed prefix gives the Appendix B
    measures longer_prefixes.ipynb computes from the layer-input prefix with this project's model."""
    from lm import prefix_attention as pa
    from lm import text_tasks
    from lm.stand_ins import load_gpt2
    model, tokenizer = load_gpt2()
    prefix = load_prefixes(RUNS / "gpt2-classification-n10" / "prefixes.pt", model)["prefixes"][:1]
    pe.export_prefix(model, prefix[0], tmp_path / "adapter", GPT2)
    test = text_tasks.corpus_task("classification", ROOT / "data" / "corpus").examples("test")[:6]
    prompts = [text_tasks.encode(tokenizer, e, eos=False).prompt for e in test]
    notebook = pa.appendix_b_measures(model.double(), prompts, prefix.double(), tokenizer.eos_id)
    record = dg.diagnose(GPT2, tmp_path / "adapter", [e.prompt for e in test])
    for key in ("gap_over_heads", "prefix_share", "effective_positions", "effective_rank_centred"):
        assert torch.allclose(torch.tensor(record[key]), torch.tensor(notebook[key]), atol=1e-6, rtol=0), key
