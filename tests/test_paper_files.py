"""The paper's published minGPT files: loaded from files built in the published layout (tests/paper_layout.py),
checked against an independent forward pass that follows the companion's model (the prefix replaces the
attention input at the zero pads' positions in every layer), and every error a reader can meet."""

import math

import pytest
import torch
import torch.nn.functional as F
from paper_layout import companion_state, write_mingpt_files

from mingpt import paper_files, tasks


def companion_logits(state: dict, n_head: int, idx: torch.Tensor, prefix=None) -> torch.Tensor:
    """Logits of the companion's minGPT, written from its description with plain tensor operations in float64:
    the whole sequence (pads included) at positions 0.., and in each layer the attention input at positions
    0..n_S-1 replaced by prefix[layer]; the residual stream at those positions stays the pads'."""
    s = {k: v.double() for k, v in state.items()}
    ln = lambda x, name: F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], 1e-5)
    B, T = idx.shape
    x = s["transformer.wte.weight"][idx] + s["transformer.wpe.weight"][:T]
    layers = 1 + max(int(k.split(".")[2]) for k in s if k.startswith("transformer.h."))
    for l in range(layers):
        p = f"transformer.h.{l}."
        h = x.clone()
        if prefix is not None:
            h[:, :prefix.shape[1]] = prefix[l].double()
        if p + "ln_1.weight" in s:
            h = ln(h, p + "ln_1")
        q, k, v = (h @ s[p + "attn.c_attn.weight"].T + s[p + "attn.c_attn.bias"]).split(h.shape[-1], dim=-1)
        q, k, v = (t.view(B, T, n_head, -1).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + y @ s[p + "attn.c_proj.weight"].T + s[p + "attn.c_proj.bias"]
        m = F.gelu(ln(x, p + "ln_2") @ s[p + "mlp.c_fc.weight"].T + s[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ s[p + "mlp.c_proj.weight"].T + s[p + "mlp.c_proj.bias"]
    return ln(x, "transformer.ln_f") @ s["lm_head.weight"].T


@pytest.mark.parametrize("experiment", ["A", "B", "C", "D"])
def test_a_published_model_and_its_prefixes_give_the_companions_logits(experiment, tmp_path):
    paper = paper_files.PAPER_MODELS[experiment]
    original, prefixes = write_mingpt_files(tmp_path, experiment)
    state = companion_state(original)
    model = paper_files.load_model(experiment, tmp_path)
    c = model.config
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.attn_layernorm) == \
        (paper.n_layer, paper.n_head, paper.n_embd, paper.prefix_len + 19, experiment != "B")
    inputs = tasks.eval_inputs(8)
    with_pads = torch.cat([torch.zeros(8, paper.prefix_len, dtype=torch.long), inputs, inputs[:, :9]], 1)
    with torch.no_grad():
        ours = model.double()(with_pads)[0]
        assert (ours - companion_logits(state, paper.n_head, with_pads)).abs().max() < 1e-12
        loaded = paper_files.load_prefixes(experiment, model.float(), tmp_path)
        assert set(loaded) == set(paper.prefix_tasks)
        for task, prefix in loaded.items():
            assert prefix.dtype == torch.float32 and not prefix.requires_grad and torch.equal(prefix, prefixes[task])
            ours = model.double()(with_pads[:, paper.prefix_len:], prefix=prefix.double())[0]
            reference = companion_logits(state, paper.n_head, with_pads, prefix)[:, paper.prefix_len:]
            assert (ours - reference).abs().max() < 1e-12
            model.float()


def test_the_accuracy_table_has_the_experiments_rows_and_tasks(tmp_path):
    write_mingpt_files(tmp_path, "B")
    table = paper_files.accuracy_table("B", tmp_path, n=32)
    assert list(table) == ["pretrained"] + [f"prefix_{t}" for t in tasks.PRETRAIN_TASKS]
    assert all(list(row) == list(tasks.PRETRAIN_TASKS) for row in table.values())
    # an untrained random model solves none of 32 test inputs of any task
    assert all(value == 0.0 for row in table.values() for value in row.values())


def test_the_prefixes_are_optional_and_their_absence_is_not_an_error(tmp_path):
    write_mingpt_files(tmp_path, "D")
    (tmp_path / "04_prefix_double_hist.pth").unlink()
    assert paper_files.load_prefixes("D", paper_files.load_model("D", tmp_path), tmp_path) == {}
    assert list(paper_files.accuracy_table("D", tmp_path, n=16)) == ["pretrained"]


def test_the_folder_comes_from_the_argument_then_the_variable_then_minGPT(tmp_path, monkeypatch):
    monkeypatch.delenv(paper_files.ENV_VAR, raising=False)
    assert paper_files.folder() == paper_files.MINGPT_DIR
    monkeypatch.setenv(paper_files.ENV_VAR, str(tmp_path))
    assert paper_files.folder() == tmp_path
    write_mingpt_files(tmp_path, "A")
    assert paper_files.available("A") and not paper_files.available("B")
    assert paper_files.folder(tmp_path / "x") == tmp_path / "x"


def test_a_missing_file_is_named_with_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"03_pretrained.pth does not exist; download it .* put it in .*PAPER_FILES_DIR"):
        paper_files.load_model("C", tmp_path)
    message = paper_files.describe_missing("B", tmp_path)
    assert all(name in message for name in ("02_pretrained.pth", "02_prefix_ascending.pth", "02_prefix_add2.pth"))


def test_a_prefix_of_another_model_is_refused(tmp_path):
    write_mingpt_files(tmp_path, "B")
    write_mingpt_files(tmp_path, "C")
    model = paper_files.load_model("C", tmp_path)
    with pytest.raises(ValueError, match=r"shape \(1, 1, 256\), but a prefix of this model has \(4, 10, 256\): "
                                         r"it belongs to a model of another depth, width or n_S"):
        paper_files.load_prefix(tmp_path / "02_prefix_add1.pth", model, prefix_len=10)


def test_another_experiments_model_file_is_refused(tmp_path):
    write_mingpt_files(tmp_path, "A")
    (tmp_path / "01_sort.pth").rename(tmp_path / "02_pretrained.pth")
    with pytest.raises(ValueError, match="model of 1 layer.* and width 96, but experiment B's has 1 and 256"):
        paper_files.load_model("B", tmp_path)


def test_a_state_dict_with_unknown_keys_is_refused(tmp_path):
    model, _ = write_mingpt_files(tmp_path, "A")
    state = companion_state(model)
    state["transformer.h.0.attn.rotary.inv_freq"] = torch.ones(4)
    torch.save(state, tmp_path / "01_sort.pth")
    with pytest.raises(ValueError, match=r"unknown keys \['transformer.h.0.attn.rotary.inv_freq'\], missing keys \[\]"):
        paper_files.load_model("A", tmp_path)


def test_a_prefix_file_given_as_a_model_and_an_unknown_experiment_are_refused(tmp_path):
    write_mingpt_files(tmp_path, "D")
    (tmp_path / "04_prefix_double_hist.pth").rename(tmp_path / "04_pretrained.pth")
    with pytest.raises(ValueError, match="holds a Tensor, not a state dict; is it a prefix file"):
        paper_files.load_model("D", tmp_path)
    with pytest.raises(ValueError, match=r"unknown experiment 'E'"):
        paper_files.load_model("E", tmp_path)


@pytest.mark.parametrize("experiment", ["A", "B", "C", "D"])
def test_each_notebooks_section_shows_the_table_with_the_files_and_names_them_without(experiment, tmp_path):
    from mingpt import report
    missing = report.paper_files_summary(experiment, n=16, where=tmp_path)
    assert missing.startswith("*Without the paper's files") and paper_files.PAPER_MODELS[experiment].model_file in missing
    write_mingpt_files(tmp_path, experiment)
    shown = report.paper_files_summary(experiment, n=16, where=tmp_path)
    paper = paper_files.PAPER_MODELS[experiment]
    assert f"(`{paper.model_file}` and {len(paper.prefix_tasks)} prefix file(s)) on this project's 16 test inputs" in shown
    assert shown.count("\n| ") == 2 + len(paper.prefix_tasks)   # header, rule, pretrained and one row per prefix
