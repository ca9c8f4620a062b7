"""The paper's published LLaMA and GPT-2 files (lm.paper_files): files written in the published layouts
(tests/paper_layout.py) from this project's committed prefixes load as exactly those prefixes and give the same
logits; files made for another model, of another kind, or absent are refused with the problem named."""


import pytest
import torch
from paper_layout import write_dart_prefix, write_tensor

from core.records import ROOT
from lm import paper_files
from lm import virtual_tokens as vt
from lm.prefix_tune import load_prefixes
from lm.stand_ins import load_model

RUNS = ROOT / "results" / "prefix_tuning"
PROMPTS = torch.tensor([[5, 9, 13, 2, 7, 30, 31], [40, 41, 42, 43, 44, 45, 46]])


@pytest.fixture(scope="module")
def llama():
    return load_model("llama")


@pytest.fixture(scope="module")
def gpt2():
    return load_model("gpt2")


def test_a_dart_prefix_file_gives_the_projects_logits(llama, tmp_path):
    committed = load_prefixes(RUNS / "llama-table_to_text-n1" / "prefixes.pt", llama)["prefixes"][0]
    write_dart_prefix(tmp_path, committed)
    loaded = paper_files.llama_prefix(llama, tmp_path)
    assert loaded.dtype == torch.float32 and not loaded.requires_grad and torch.equal(loaded, committed.float())
    with torch.no_grad():
        assert torch.equal(llama.logits(PROMPTS, loaded), llama.logits(PROMPTS, committed.float()))


def test_the_longer_prefixes_file_gives_the_projects_logits(gpt2, tmp_path):
    committed = load_prefixes(RUNS / "gpt2-classification-n10" / "prefixes.pt", gpt2)["prefixes"]
    write_tensor(tmp_path, paper_files.LONGER_PREFIXES, committed)
    loaded = paper_files.gpt2_prefixes(gpt2, tmp_path)
    assert loaded.shape == committed.shape == (20, *gpt2.prefix_shape(10))
    with torch.no_grad():
        for k in (0, 19):
            assert torch.equal(gpt2.logits(PROMPTS, loaded[k]), gpt2.logits(PROMPTS, committed[k].float()))


def test_the_virtual_tokens_file_gives_the_same_completions_of_one_or_more_vectors(llama, tmp_path):
    tokens = torch.randn(6, 2, llama.params.dim, generator=torch.Generator().manual_seed(0)) * 0.05
    write_tensor(tmp_path, paper_files.VIRTUAL_TOKENS, tokens)
    loaded = paper_files.virtual_tokens(llama, tmp_path)
    assert torch.equal(loaded, tokens)
    completions = vt.greedy_completions(llama, 4, virtual_tokens=loaded, progress=False)
    single = vt.greedy_completions(llama, 4, virtual_tokens=loaded[:, 0], progress=False)
    assert completions.shape == single.shape == (6, 4)
    assert not torch.equal(completions, single)   # the second vector of each row is read, as a second position


def test_a_file_made_for_another_model_is_refused(llama, gpt2, tmp_path):
    """The paper's files hold LLaMA-7B's and GPT-2's shapes: given the stand-ins, they are refused."""
    write_dart_prefix(tmp_path, torch.zeros(32, 1, 4096))
    with pytest.raises(ValueError, match=r"holds prefixes of shape \(32, 1, 4096\), but this model's prefix of length 1 "
                                         r"has shape \(n_layers, n_S, dim\) = \(6, 1, 256\): the file was made for another model"):
        paper_files.llama_prefix(llama, tmp_path)
    write_tensor(tmp_path, paper_files.LONGER_PREFIXES, torch.zeros(2, 12, 10, 768))
    with pytest.raises(ValueError, match=r"\(2, 12, 10, 768\), but .* = \(6, 10, 256\): the file was made for another model"):
        paper_files.gpt2_prefixes(gpt2, tmp_path)
    write_tensor(tmp_path, paper_files.VIRTUAL_TOKENS, torch.zeros(4, 1, 4096))
    with pytest.raises(ValueError, match=r"holds \(4, 1, 4096\), but this model takes virtual tokens of shape \(N, length, 256\)"):
        paper_files.virtual_tokens(llama, tmp_path)


def test_a_file_of_another_kind_is_refused(llama, gpt2, tmp_path):
    torch.save({"prefixes": torch.zeros(llama.prefix_shape(1))}, tmp_path / paper_files.DART_PREFIX)
    with pytest.raises(ValueError, match="not a prefix file of the paper's prefix_tune.py \\(no 'prefix' entry\\)"):
        paper_files.llama_prefix(llama, tmp_path)
    write_tensor(tmp_path, paper_files.LONGER_PREFIXES, torch.zeros(gpt2.prefix_shape(10)))
    with pytest.raises(ValueError, match=r"holds \(6, 10, 256\); expected a tensor of 4 dimensions"):
        paper_files.gpt2_prefixes(gpt2, tmp_path)
    (tmp_path / paper_files.VIRTUAL_TOKENS).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="(?s)could not be read .* download it again"):
        paper_files.virtual_tokens(llama, tmp_path)


def test_a_missing_file_is_named_with_where_to_put_it(llama, tmp_path, monkeypatch):
    monkeypatch.setenv(paper_files.ENV_VAR, str(tmp_path))
    assert paper_files.folder() == tmp_path and not paper_files.available(paper_files.DART_PREFIX)
    with pytest.raises(FileNotFoundError, match=r"the paper's llama-7B_DART_Classic_1_1_20230920_223226_9.pt is not in "
                                                r".* \(the repository root unless PAPER_FILES_DIR is set\); download it"):
        paper_files.llama_prefix(llama)
    monkeypatch.delenv(paper_files.ENV_VAR)
    assert paper_files.folder() == ROOT
    assert "is not in . (the repository root" in paper_files.describe_missing(paper_files.LONGER_PREFIXES)
