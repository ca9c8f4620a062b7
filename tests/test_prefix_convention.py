"""One convention for both model families (README, design notes): the prefix takes positions
0..prefix_len-1 of every layer's attention input, the tokens follow at prefix_len.., logits are the tokens',
and recordings share names, shapes and lifetime.

Each family is checked against the paper's own description, built independently of the model's prefix
code: put prefix_len placeholder tokens before the input and, with a forward pre-hook on every layer,
overwrite the layer's input at those positions with that layer's prefix vectors.
"""

import pytest
import torch

from llama import ModelArgs, Transformer
from mingpt.model import GPT, GPTConfig
from recording import record

PREFIX_LEN, T, B, DIM, LAYERS, HEADS, VOCAB = 3, 7, 2, 32, 2, 4, 41


def llama_model():
    torch.manual_seed(0)
    args = ModelArgs(dim=DIM, n_layers=LAYERS, n_heads=HEADS, vocab_size=VOCAB, multiple_of=16, max_batch_size=B,
                     max_seq_len=16)
    return Transformer(args).double().eval().requires_grad_(False), lambda m: m.layers


def gpt_model():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=LAYERS, n_head=HEADS, n_embd=DIM, dropout=0.0)
    return GPT(config).double().eval().requires_grad_(False), lambda m: m.transformer.h


FAMILIES = {"llama": llama_model, "mingpt": gpt_model}


def logits(model, tokens, prefix=None):
    out = model(tokens, prefix=prefix)
    return out[0] if isinstance(out, tuple) else out


def placeholder_run(model, layers, tokens, prefix):
    """The paper's description: placeholders at 0..prefix_len-1 whose layer inputs are overwritten."""
    def overwrite(layer_id):
        def hook(_module, args):
            x = args[0].clone()
            x[:, :PREFIX_LEN] = prefix[layer_id]
            return (x, *args[1:])
        return hook
    handles = [layer.register_forward_pre_hook(overwrite(i)) for i, layer in enumerate(layers)]
    try:
        placeholders = torch.zeros(B, PREFIX_LEN, dtype=torch.long)
        return logits(model, torch.cat([placeholders, tokens], 1))[:, PREFIX_LEN:]
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_is_the_layer_input_at_the_first_positions(family):
    model, layers = FAMILIES[family]()
    tokens = torch.randint(1, VOCAB, (B, T))
    prefix = torch.randn(LAYERS, PREFIX_LEN, DIM, dtype=torch.float64)
    with torch.no_grad():
        ours = logits(model, tokens, prefix)
        expected = placeholder_run(model, layers(model), tokens, prefix)
    assert ours.shape == (B, T, VOCAB)  # the tokens' logits only
    assert (ours - expected).abs().max() <= 1e-10


@pytest.mark.parametrize("family", FAMILIES)
def test_recordings_have_the_same_names_shapes_and_lifetime(family):
    model, _ = FAMILIES[family]()
    tokens = torch.randint(1, VOCAB, (B, T))
    prefix = torch.randn(LAYERS, PREFIX_LEN, DIM, dtype=torch.float64)
    with torch.no_grad(), record(model) as recorded:
        logits(model, tokens[:, :2], prefix)
        logits(model, tokens, prefix)  # the last pass is the one kept
    n = PREFIX_LEN + T
    assert sorted(recorded) == ["attention_output", "attention_probs", "head_outputs"]
    assert all(len(tensors) == LAYERS for tensors in recorded.values())
    assert recorded["attention_probs"][0].shape == (B, HEADS, n, n)
    assert recorded["head_outputs"][0].shape == (B, n, HEADS, DIM // HEADS)
    assert recorded["attention_output"][1].shape == (B, n, DIM)
    assert not recorded["attention_probs"][0].requires_grad
    probs = recorded["attention_probs"][1]
    assert torch.allclose(probs.sum(-1), torch.ones_like(probs[..., 0]))
    assert probs.triu(1).abs().max() == 0  # causal over prefix + tokens
