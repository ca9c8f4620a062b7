"""The family interface (`core.family.PrefixLM`) both models implement: each member against what the model's
own forward pass computes."""

import pytest
import torch

from core.family import Dims, PrefixLM
from lm.stand_ins import STAND_INS, load_model
from recording import record

TOKENS = torch.tensor([[5, 9, 13, 2, 7, 30, 31], [40, 41, 42, 43, 44, 45, 46]])


@pytest.fixture(scope="module", params=sorted(STAND_INS))
def model(request):
    return load_model(request.param).double().eval()


def test_both_families_implement_the_interface_with_one_set_of_dimensions(model):
    spec = STAND_INS["llama" if model.family == "llama" else "gpt2"]
    assert isinstance(model, PrefixLM)
    assert model.dims == Dims(n_layers=spec.n_layers, n_heads=spec.n_heads, width=spec.dim,
                              context=model.dims.context, vocab_size=spec.vocab_size)
    assert model.dims.context >= spec.context
    assert model.prefix_shape(3) == (spec.n_layers, 3, spec.dim) and len(model.blocks) == spec.n_layers


def test_logits_are_the_forward_passes(model):
    prefix = torch.randn(model.prefix_shape(2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        out = model(TOKENS, prefix=prefix)
        logits = model.logits(TOKENS, prefix)
        last = model.logits(TOKENS, prefix, logits_to_keep=2)
    assert torch.equal(logits, out[0] if isinstance(out, tuple) else out)
    assert logits.shape == (2, TOKENS.shape[1], model.dims.vocab_size)
    assert torch.allclose(last, logits[:, -2:], atol=1e-12, rtol=0)


def test_prefix_keys_values_are_what_the_attention_reads(model):
    """The keys and values at the prefix positions that a prefixed pass caches (LLaMA: its key/value cache;
    minGPT: the cache `generate` keeps) are `prefix_keys_values`."""
    prefix = torch.randn(model.prefix_shape(3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    keys, values = model.prefix_keys_values(prefix)
    with torch.no_grad():
        if model.family == "llama":
            model(TOKENS, prefix=prefix)
            cached = [(b.attention.cache_k[:1, :3, :].transpose(1, 2)[0], b.attention.cache_v[:1, :3].transpose(1, 2)[0])
                      for b in model.blocks]
        else:
            cache = []
            model(TOKENS, prefix=prefix, cache=cache)
            cached = [(k[0, :, :3], v[0, :, :3]) for k, v in cache]
    assert keys.shape == values.shape == (model.dims.n_layers, keys.shape[1], 3, model.dims.width // model.dims.n_heads)
    for layer, (k, v) in enumerate(cached):
        assert torch.allclose(keys[layer], k.double(), atol=1e-10, rtol=0), layer
        assert torch.allclose(values[layer], v.double(), atol=1e-10, rtol=0), layer


def test_one_layer_run_alone_records_what_the_whole_pass_records(model):
    """Block 2 run alone on the input the whole prefix-free pass gave it: the same attention and head outputs."""
    inputs = []
    handle = model.blocks[2].register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        with torch.no_grad(), record(model, "attention_probs", "head_outputs") as whole:
            model.logits(TOKENS)
    finally:
        handle.remove()
    alone = model.run_layer(2, inputs[0])
    for name in ("attention_probs", "head_outputs"):
        assert torch.allclose(alone[name], whole[name][2], atol=1e-12, rtol=0), name


def test_token_embeddings_are_the_first_blocks_input_after_a_prefix(model):
    """The first block's input at the token positions of a prefixed pass, the tokens placed after the prefix's
    3 positions, is `token_embeddings(tokens, start=3)`: GPT's learned positions shift, LLaMA's input does not."""
    prefix = torch.randn(model.prefix_shape(3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs = []
    handle = model.blocks[0].register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        with torch.no_grad():
            model.logits(TOKENS, prefix)
    finally:
        handle.remove()
    content = inputs[0][:, -TOKENS.shape[1]:]  # LLaMA's first block sees the prefix rows first; GPT's the tokens
    assert torch.allclose(model.token_embeddings(TOKENS, start=3), content, atol=1e-12, rtol=0)
    shifted = not torch.allclose(model.token_embeddings(TOKENS, start=0), content, atol=1e-6, rtol=0)
    assert shifted == (model.family == "gpt")


def test_complete_is_greedy_decoding_for_prompts_of_any_length(model):
    """One return type for both families: new tokens only, per prompt, equal to argmax decoding without a cache;
    cut before eos_id."""
    prompts = [[5, 9, 13], [40, 41, 42, 43, 44]]
    prefix = torch.randn(model.prefix_shape(2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    completions = model.complete(prompts, 5, prefix)
    for prompt, completion in zip(prompts, completions):
        tokens = list(prompt)
        for _ in range(5):
            with torch.no_grad():
                tokens.append(int(model.logits(torch.tensor([tokens]), prefix)[0, -1].argmax()))
        assert completion == tokens[len(prompt):]
    eos = completions[1][2]
    assert model.complete(prompts[1:], 5, prefix, eos_id=eos)[0] == completions[1][:completions[1].index(eos)]
