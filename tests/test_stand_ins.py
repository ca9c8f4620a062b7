"""The committed stand-ins: real layouts, real loaders, held-out perplexity as recorded, clear errors."""

import json
import math
import shutil
from collections import Counter

import pytest
import torch

from core.records import ROOT
from llama import CheckpointError
from lm import baselines, corpus
from lm.pretrain import perplexity, sha256, token_stream, tokenizer_of
from lm.stand_ins import STAND_INS, load_model, model_dir

LAYOUTS = {"llama": ["params.json", "consolidated.00.pth", "tokenizer.model"],
           "gpt2": ["config.json", "model.safetensors", "vocab.json", "merges.txt"]}


def manifest(family):
    return json.loads((STAND_INS[family].folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def held_out_streams():
    records = corpus.read(ROOT / "data" / "corpus")
    return {f: token_stream(corpus.texts(records, "test"), tokenizer_of(f, STAND_INS[f].folder)) for f in STAND_INS}


@pytest.mark.parametrize("family", STAND_INS)
def test_stand_in_is_in_its_real_layout_and_matches_its_manifest(family):
    folder = STAND_INS[family].folder
    entry = manifest(family)
    assert sorted(entry["sha256"]) == sorted(LAYOUTS[family])
    for name, digest in entry["sha256"].items():
        assert sha256(folder / name) == digest, name
    for field in ("command", "seed", "hardware", "wall_time_s_this_run", "tokens_seen", "perplexity"):
        assert field in entry


@pytest.mark.parametrize("family", STAND_INS)
def test_stand_in_shape_suits_layer_and_head_analyses(family):
    model = load_model(family)
    n_layers, n_heads = model.dims.n_layers, model.dims.n_heads
    assert n_layers >= 6 and n_heads >= n_layers
    assert 2e6 <= manifest(family)["parameters"] <= 1e7
    total = sum(p.stat().st_size for f in STAND_INS.values() for p in f.folder.iterdir())
    assert total <= 30 * 2 ** 20


@pytest.mark.parametrize("family", STAND_INS)
def test_stand_in_reproduces_its_recorded_perplexity_and_beats_a_bigram(family, held_out_streams):
    model = load_model(family)
    ppl = perplexity(model, held_out_streams[family], STAND_INS[family].context)
    assert ppl == pytest.approx(manifest(family)["perplexity"]["test"], rel=1e-4)
    records = corpus.read(ROOT / "data" / "corpus")
    tokenizer = tokenizer_of(family, STAND_INS[family].folder)
    train, validation = (token_stream(corpus.texts(records, s), tokenizer) for s in ("train", "validation"))
    bigram = baselines.perplexities(train, validation, held_out_streams[family], tokenizer.n_words)["bigram"]
    assert ppl < 0.75 * bigram


def test_bigram_baseline_equals_a_direct_count():
    train = torch.tensor([1, 2, 3, 1, 2, 1, 3, 3, 2, 1, 0, 2])
    test = torch.tensor([1, 3, 2, 2, 0, 1])
    vocab, weight = 5, 0.7
    unigram = Counter(train.tolist())
    p_uni = {t: (unigram[t] + 1) / (len(train) + vocab) for t in range(vocab)}
    pairs = Counter(zip(train[:-1].tolist(), train[1:].tolist()))
    starts = Counter(train[:-1].tolist())
    nll = 0.0
    for a, b in zip(test[:-1].tolist(), test[1:].tolist()):
        relative = pairs[(a, b)] / starts[a] if starts[a] else p_uni[b]
        nll -= math.log(weight * relative + (1 - weight) * p_uni[b])
    ours = baselines.bigram_log_probs(baselines.bigram_counts(train, vocab), baselines.unigram_probs(train, vocab),
                                      test[:-1], test[1:], weight)
    assert math.exp(-ours.mean().item()) == pytest.approx(math.exp(nll / (len(test) - 1)), rel=1e-12)


@pytest.mark.parametrize("family", STAND_INS)
def test_variable_points_at_other_weights(family, monkeypatch, tmp_path):
    monkeypatch.delenv(STAND_INS[family].env_var, raising=False)
    assert model_dir(family) == STAND_INS[family].folder
    monkeypatch.setenv(STAND_INS[family].env_var, str(tmp_path))
    assert model_dir(family) == tmp_path


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="params.json not found"):
        load_model("llama", tmp_path)
    with pytest.raises(FileNotFoundError, match="needs config.json"):
        load_model("gpt2", tmp_path)
    with pytest.raises(ValueError, match="unknown model family"):
        model_dir("bert")


def test_a_checkpoint_of_another_shape_is_refused(tmp_path):
    for family in STAND_INS:
        shutil.copytree(STAND_INS[family].folder, tmp_path / family)
    params = json.loads((tmp_path / "llama" / "params.json").read_text())
    (tmp_path / "llama" / "params.json").write_text(json.dumps(params | {"n_layers": params["n_layers"] + 1}))
    with pytest.raises(CheckpointError, match=r"missing \['layers.6"):
        load_model("llama", tmp_path / "llama")
    (tmp_path / "llama" / "params.json").write_text(json.dumps(params | {"dim": 128}))
    with pytest.raises(CheckpointError, match="has shape"):
        load_model("llama", tmp_path / "llama")
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(config | {"n_embd": 128}))
    with pytest.raises(ValueError, match="has shape"):
        load_model("gpt2", tmp_path / "gpt2")
