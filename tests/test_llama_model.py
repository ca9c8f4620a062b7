"""llama.model: parity with Hugging Face, cached decoding, prefix/virtual-token hooks, gradients, recording."""

import pytest
import torch

from llama import CheckpointError, HookPoint, ModelArgs, Transformer, record
from llama.checkpoint import checkpoint_params, load_strict, read_params
from llama.convert_hf import args_from_hf_config, load_hf_checkpoint
from llama.convert_hf import main as convert_main

ATOL = 1e-5
# the small Hugging Face LLaMA the conversion tests build
SMALL_HF_CONFIG = dict(vocab_size=61, hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                       num_attention_heads=4, rms_norm_eps=1e-5)


def random_model(dtype=torch.float32, **overrides) -> Transformer:
    """A small random LLaMA in eval mode, frozen, with non-trivial norm weights."""
    fields = dict(
        dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61, multiple_of=16, max_batch_size=4, max_seq_len=32
    )
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**fields, **overrides})).to(dtype).eval().requires_grad_(False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def model() -> Transformer:
    return random_model()


@pytest.mark.parametrize(
    "n_kv_heads, tied", [(4, False), (2, False), (2, True)], ids=["multi-head", "grouped-query", "tied-embeddings"]
)
def test_logits_match_transformers_llama(tmp_path, n_kv_heads, tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SMALL_HF_CONFIG,
        num_key_value_heads=n_kv_heads,
        rope_theta=500.0,
        max_position_embeddings=32,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    hf_model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in hf_model.parameters():
            param.normal_(0.0, 0.3)
    hf_model.save_pretrained(tmp_path)

    args, state_dict = load_hf_checkpoint(str(tmp_path))
    args.max_batch_size, args.max_seq_len = 2, 32
    model = Transformer(args).eval()
    load_strict(model, state_dict, str(tmp_path))
    tokens = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        expected = hf_model(tokens).logits
        # Both the cache-free training path and the cached inference path must match.
        assert (model(tokens) - expected).abs().max() <= ATOL
    with torch.enable_grad():
        assert (model(tokens) - expected).abs().max() <= ATOL
    assert args.n_kv_heads == n_kv_heads and args.rope_theta == 500.0

    convert_main([str(tmp_path), str(tmp_path / "meta")])
    converted = torch.load(tmp_path / "meta" / "consolidated.00.pth", weights_only=True)
    assert all(torch.equal(converted[k], v) for k, v in state_dict.items())
    assert read_params(str(tmp_path / "meta")) == checkpoint_params(args)


def test_cached_chunks_equal_full_recompute(model):
    tokens = torch.randint(0, 61, (3, 12))
    with torch.no_grad():
        full = model(tokens)
        chunks = [model(tokens[:, a:b], a) for a, b in [(0, 3), (3, 7), (7, 8), (8, 12)]]
    assert (torch.cat(chunks, dim=1) - full).abs().max() <= ATOL


def test_cached_chunks_after_prefix_and_virtual_tokens(model):
    tokens = torch.randint(0, 61, (2, 9))
    virtual = torch.randn(2, 2, 32)
    prefix = torch.randn(2, 3, 32)  # (n_layers, n_S, dim), shared
    with torch.no_grad():
        full = model(tokens, input_embeds=virtual, prefix=prefix)  # (2, 2 + 9, vocab)
        first = model(tokens[:, :4], input_embeds=virtual, prefix=prefix)
        second = model(tokens[:, 4:8], 3 + 2 + 4)  # positions: 3 prefix, 2 virtual, 4 tokens so far
        third = model(tokens[:, 8:], 3 + 2 + 8)
    assert full.shape == (2, 11, 61)
    assert (torch.cat([first, second, third], dim=1) - full).abs().max() <= ATOL


def test_prefix_shared_equals_per_sample(model):
    tokens = torch.randint(0, 61, (2, 5))
    prefix = torch.randn(2, 3, 32)
    with torch.no_grad():
        shared = model(tokens, prefix=prefix)
        per_sample = model(tokens, prefix=torch.stack([prefix, prefix.clone()]))  # copies: no expand on this side
        other = model(tokens, prefix=torch.stack([prefix, torch.randn(2, 3, 32)]))
    assert torch.equal(shared, per_sample)
    assert torch.equal(other[0], shared[0]) and not torch.allclose(other[1], shared[1])


def test_one_layer_prefix_of_token_embeddings_equals_prompting():
    """With one layer, a prefix equal to some tokens' embeddings is exactly prompting with those tokens:
    the prefix sits at positions 0..n_S-1 and goes through the attention norm like any token."""
    model = random_model(n_layers=1)
    tokens = torch.randint(0, 61, (2, 9))
    with torch.no_grad():
        prefix = model.tok_embeddings(tokens[:, :3])[:, None]  # (bsz, n_layers=1, n_S=3, dim)
        assert (model(tokens[:, 3:], prefix=prefix) - model(tokens)[:, 3:]).abs().max() <= ATOL


def test_all_virtual_equals_token_embeddings(model):
    tokens = torch.randint(0, 61, (2, 6))
    with torch.no_grad():
        embeds = model.tok_embeddings(tokens)
        assert torch.equal(model(input_embeds=embeds), model(tokens))
        assert torch.equal(model(tokens[:, 2:], input_embeds=embeds[:, :2]), model(tokens))


def test_prefix_and_virtual_token_gradients(model):
    tokens = torch.randint(0, 61, (2, 6))
    shared = torch.randn(2, 3, 32, requires_grad=True)
    per_sample = torch.randn(2, 2, 3, 32, requires_grad=True)
    virtual = torch.randn(2, 2, 32, requires_grad=True)
    for prefix in (shared, per_sample):
        model(tokens, input_embeds=virtual, prefix=prefix).logsumexp(-1).sum().backward()
        assert torch.isfinite(prefix.grad).all()
        assert (prefix.grad.flatten(-2).abs().sum(-1) > 0).all()  # every layer's prefix gets a gradient
    assert torch.isfinite(virtual.grad).all() and (virtual.grad.abs().sum(-1) > 0).all()
    assert all(param.grad is None for param in model.parameters())


def test_training_pass_leaves_no_graph_or_stale_entries_in_cache(model):
    tokens = torch.randint(0, 61, (2, 6))
    prefix = torch.randn(2, 3, 32, requires_grad=True)
    with torch.no_grad():
        model(tokens, prefix=prefix)
    before = [(layer.attention.cache_k.clone(), layer.attention.cache_v.clone()) for layer in model.layers]
    model(tokens, prefix=prefix).sum().backward()
    for layer, (k, v) in zip(model.layers, before):
        cache_k, cache_v = layer.attention.cache_k, layer.attention.cache_v
        assert not cache_k.requires_grad and cache_k.grad_fn is None and cache_v.grad_fn is None
        assert torch.equal(cache_k, k) and torch.equal(cache_v, v)
    with torch.no_grad(), pytest.raises(ValueError, match=r"the cache holds 0 position\(s\)"):
        model(tokens[:, :1], 9)  # the training pass invalidated the cache
    with pytest.raises(ValueError, match="only inference passes fill"):
        model(tokens[:, :1], 9)


def test_later_chunk_inside_prefix_is_an_error(model):
    tokens = torch.randint(0, 61, (2, 6))
    with torch.no_grad():
        model(tokens, prefix=torch.randn(2, 4, 32))
        with pytest.raises(
            ValueError, match=r"starts at position 2, inside the prefix \(positions 0..3\).*start_pos >= 4"
        ):
            model(tokens[:, :1], 2)
        with pytest.raises(ValueError, match="first chunk only"):
            model(tokens[:, :1], 10, prefix=torch.randn(2, 4, 32))
        model(tokens[:, :1], 10)  # right after the prefix and the 6 tokens


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prefix=torch.randn(3, 2, 32)), r"prefix has shape \(2, 3, 2, 32\); expected \(n_layers=2"),
        (dict(prefix=torch.randn(3, 2, 2, 32)), r"prefix has shape \(3, 2, 2, 32\)"),
        (dict(input_embeds=torch.randn(2, 2, 16)), r"virtual tokens are given as \(bsz, n_virtual, dim=32\)"),
        (dict(input_embeds=torch.randn(3, 2, 32)), "input_embeds has batch size 3 but tokens has 2"),
        (dict(tokens=torch.zeros(2, 0, dtype=torch.long)), "the chunk is empty"),
        (dict(tokens=torch.zeros(5, 3, dtype=torch.long)), "exceeds the model's max_batch_size=4"),
        (dict(tokens=torch.zeros(2, 33, dtype=torch.long)), "max_seq_len=32"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, kwargs, message):
    kwargs.setdefault("tokens", torch.zeros(2, 3, dtype=torch.long))
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_recording_is_off_by_default_and_returns_every_layer_and_head(model):
    hook_points = [m for m in model.modules() if isinstance(m, HookPoint)]
    assert len(hook_points) == 3 * 2 and not any(m.active for m in hook_points)
    tokens = torch.randint(0, 61, (2, 5))
    with torch.no_grad(), record(model, "attention_probs", "head_outputs", "attention_output") as recorded:
        model(tokens, prefix=torch.randn(2, 3, 32))
    assert not any(m.active for m in hook_points)
    probs = recorded["attention_probs"]
    assert len(probs) == 2 and probs[1].shape == (2, 4, 8, 8)  # one per layer: (bsz, heads, prefix + tokens, keys)
    assert torch.allclose(probs[1].sum(-1), torch.ones(2, 4, 8))
    assert recorded["head_outputs"][0].shape == (2, 8, 4, 8)  # (bsz, positions, heads, head_dim)
    assert recorded["attention_output"][0].shape == (2, 8, 32)  # (bsz, positions, dim)
    with pytest.raises(ValueError, match=r"the hook points are \['attention_probs', 'head_outputs', 'attention_output'\]"):
        with record(model, "attn_scores"):
            pass


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), r"uses \['rope_type'\] beyond Meta's LLaMA"),
        (dict(attention_bias=True, head_dim=16), r"uses \['attention_bias', 'head_dim'\]"),
    ],
)
def test_unsupported_hf_configs_are_errors(change, message):
    config = dict(SMALL_HF_CONFIG)
    with pytest.raises(CheckpointError, match=message):
        args_from_hf_config({**config, **change})
    assert args_from_hf_config(config).n_kv_heads == 4


def test_bad_head_counts_are_errors():
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide n_heads=4"):
        random_model(n_kv_heads=3)


def test_missing_hf_config_is_an_error(tmp_path):
    with pytest.raises(
        CheckpointError, match="config.json not found: a Hugging Face checkpoint directory holds config.json"
    ):
        load_hf_checkpoint(str(tmp_path))
