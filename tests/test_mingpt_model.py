"""minGPT with prefix-tuning hooks: Section 4 identities, caches, per-sample prefixes, GPT-2 parity, LoRA."""

import json

import pytest
import torch

from core.lora import add_lora
from mingpt import checkpoint
from mingpt.model import GPT, GPTConfig, record


def random_gpt(n_layer=3, n_head=4, n_embd=32, attn_layernorm=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=10, block_size=32, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                          dropout=0.0, attn_layernorm=attn_layernorm)).to(dtype).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so attention is far from uniform
        for p in model.parameters():
            p.normal_(0, 0.15)
    return model


def block_inputs(model, idx, prefix):
    """Residual input of every block at the token positions in a prefixed forward pass (the prefix is
    put in front inside the block)."""
    inputs = []
    handles = [b.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for b in model.transformer.h]
    model(idx, prefix=prefix)
    for h in handles:
        h.remove()
    return inputs


def attention_of(model, layer, x):
    """(pattern (B,H,T,T), head outputs (B,H,T,hd), values (B,H,T,hd)) of one layer's attention on input x."""
    block = model.transformer.h[layer]
    with record(model, "attention_probs", "head_outputs") as rec:
        block.attn(block.ln_1(x))
    C = x.size(-1)
    v = block.attn.c_attn(block.ln_1(x))[..., 2 * C:]
    v = v.view(*x.shape[:2], block.attn.n_head, -1).transpose(1, 2)
    return rec["attention_probs"][layer], rec["head_outputs"][layer].transpose(1, 2), v


@pytest.mark.parametrize("n_S", [1, 3])
@pytest.mark.parametrize("attn_layernorm", [True, False])
@pytest.mark.parametrize("layer", [0, 2])
def test_section4_identities(n_S, attn_layernorm, layer):
    """A^pt_ij = A_ij (1 - sum_k A^pt_ik) and t^pt_i = sum_k A^pt_ik v(s_k) + (1 - sum_k A^pt_ik) t_i.

    At a deeper layer the earlier layers are held fixed: both passes see the same content inputs
    (those of the prefixed pass), one with the prefix in front and one without.
    """
    model = random_gpt(attn_layernorm=attn_layernorm)
    B, T = 4, 12
    idx = torch.randint(0, 10, (B, T))
    prefix = torch.randn(model.config.n_layer, n_S, model.config.n_embd, dtype=torch.float64)
    content = block_inputs(model, idx, prefix)[layer]                        # (B, T, C)
    with_prefix = torch.cat([prefix[layer].expand(B, -1, -1), content], 1)   # what the block attends over

    A_pt, t_pt, v_pt = attention_of(model, layer, with_prefix)
    A, t, _ = attention_of(model, layer, content)
    to_prefix = A_pt[..., n_S:, :n_S].sum(-1, keepdim=True)                  # (B, H, T, 1)

    attention_error = (A_pt[..., n_S:, n_S:] - A * (1 - to_prefix)).abs().max()
    bias = A_pt[..., n_S:, :n_S] @ v_pt[..., :n_S, :]                       # sum_k A^pt_ik W_V s_k
    output_error = (t_pt[..., n_S:, :] - (bias + (1 - to_prefix) * t)).abs().max()
    assert attention_error <= 1e-10 and output_error <= 1e-10
    assert 0.01 < to_prefix.mean() < 0.99  # the prefix takes part of the attention: the identity is not vacuous

    # and the model's own pass used exactly this attention at that layer
    with record(model, "attention_probs") as rec:
        model(idx, prefix=prefix)
    assert torch.allclose(rec["attention_probs"][layer], A_pt, atol=1e-12, rtol=0)


def test_per_sample_prefix_equals_loop():
    model = random_gpt()
    idx = torch.randint(0, 10, (5, 14))
    prefixes = torch.randn(5, model.config.n_layer, 2, model.config.n_embd, dtype=torch.float64)
    batched, _ = model(idx, prefix=prefixes)
    looped = torch.cat([model(idx[i:i + 1], prefix=prefixes[i])[0] for i in range(5)])
    assert (batched - looped).abs().max() <= 1e-12


@pytest.mark.parametrize("use_prefix", [False, True])
def test_cached_generation_equals_recompute(use_prefix):
    model = random_gpt(dtype=torch.float32)
    idx = torch.randint(0, 10, (6, 8))
    prefix = torch.randn(model.config.n_layer, 3, model.config.n_embd) if use_prefix else None
    cached = model.generate(idx, 12, prefix=prefix)
    seq = idx
    for _ in range(12):  # no cache: the whole sequence every step
        logits, _ = model(seq, prefix=prefix)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, seq)


def test_cached_multi_token_chunk_equals_recompute():
    model = random_gpt()
    idx = torch.randint(0, 10, (3, 15))
    full, _ = model(idx)
    cache = []
    first, _ = model(idx[:, :6], cache=cache)
    second, _ = model(idx[:, 6:], cache=cache)           # a 9-token chunk at start_pos 6
    assert (torch.cat([first, second], 1) - full).abs().max() <= 1e-12


def test_sampled_generation_is_seeded():
    model = random_gpt(dtype=torch.float32)
    idx = torch.randint(0, 10, (4, 5))
    runs = [model.generate(idx, 6, do_sample=True, top_k=3, generator=torch.Generator().manual_seed(1))
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_recording_is_off_by_default_and_cleaned_up():
    model = random_gpt()
    idx = torch.randint(0, 10, (2, 6))
    with record(model, "attention_probs", "attention_output") as rec:
        model(idx)
    assert rec["attention_probs"][1].shape == (2, 4, 6, 6) and rec["attention_output"][0].shape == (2, 6, 32)
    assert torch.allclose(rec["attention_probs"][0].sum(-1), torch.ones(2, 4, 6, dtype=torch.float64))
    assert not any(b.attn.attention_probs.active or b.attention_output.active for b in model.transformer.h)
    with pytest.raises(ValueError, match="unknown activation"):
        with record(model, "attention"):
            pass


def test_gradients_reach_the_prefix_only():
    model = random_gpt(dtype=torch.float32).requires_grad_(False)
    prefix = torch.randn(model.config.n_layer, 2, model.config.n_embd, requires_grad=True)
    idx = torch.randint(0, 10, (3, 9))
    _, loss = model(idx, prefix=prefix, targets=idx)
    loss.backward()
    assert prefix.grad is not None and torch.isfinite(prefix.grad).all() and prefix.grad.abs().sum() > 0


# ---- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, message", [
    ((2, 1, 32), "expected \\(n_layer=3"),      # wrong layer count
    ((3, 1, 16), "n_embd=32"),                  # wrong width
    ((5, 3, 1, 32), "per-sample prefix has batch 5"),
    ((3, 27, 32), "sequence of 33 positions \\(prefix and cache included\\) exceeds block_size=32"),
])
def test_bad_prefix_is_a_clear_error(shape, message):
    model = random_gpt()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(2, 6, dtype=torch.long), prefix=torch.zeros(shape, dtype=torch.float64))


def test_prefix_on_a_continuation_is_an_error():
    model = random_gpt()
    cache = []
    model(torch.zeros(1, 4, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="first pass only"):
        model(torch.zeros(1, 2, dtype=torch.long), prefix=torch.zeros(3, 1, 32, dtype=torch.float64), cache=cache)


def test_sequence_longer_than_block_size_is_an_error():
    with pytest.raises(ValueError, match="exceeds block_size=32"):
        random_gpt()(torch.zeros(1, 33, dtype=torch.long))


def test_checkpoint_from_another_config_is_an_error(tmp_path):
    model = random_gpt(dtype=torch.float32)
    checkpoint.save_model(model, tmp_path / "m.pt")
    other = GPTConfig(vocab_size=10, block_size=32, n_layer=2, n_head=4, n_embd=32)
    with pytest.raises(ValueError, match="n_layer: .* has 3, model has 2"):
        checkpoint.load_model(tmp_path / "m.pt", config=other)
    assert torch.equal(checkpoint.load_model(tmp_path / "m.pt").lm_head.weight, model.lm_head.weight)


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load_model(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        checkpoint.load_model(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="sha256"):
        checkpoint.load_model(tmp_path / "bad.pt", expected_sha256="0" * 64)


# ---- LoRA ---------------------------------------------------------------------------------------------

def paper_model():
    return GPT(GPTConfig(vocab_size=10, block_size=32, n_layer=4, n_head=4, n_embd=256, dropout=0.0)).eval()


@pytest.mark.parametrize("targets, count", [(("mlp",), 10_240), (("mlp", "attn_out"), 12_288)])
def test_lora_parameter_counts_and_identity_at_init(targets, count):
    model = paper_model()
    idx = torch.randint(0, 10, (2, 20))
    before, _ = model(idx)
    params = add_lora(model, rank=1, targets=targets)
    assert sum(p.numel() for p in params) == count
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count
    after, _ = model(idx)
    assert torch.equal(before, after)
    with torch.no_grad():  # and the adapters do change the function once trained
        for p in params[1::2]:
            p.normal_()
    assert not torch.allclose(model(idx)[0], before)


def test_unknown_lora_target_is_an_error():
    with pytest.raises(ValueError, match="unknown LoRA target"):
        add_lora(paper_model(), rank=1, targets=("mlp", "ffn"))


# ---- GPT-2 weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("safetensors", [True, False])
def test_gpt2_parity_with_transformers(tmp_path, safetensors):
    transformers = pytest.importorskip("transformers")
    from mingpt.gpt2_weights import load_gpt2
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=101, n_positions=24, n_embd=48, n_layer=3, n_head=4)
    reference = transformers.GPT2LMHeadModel(config).eval()
    if safetensors:
        reference.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
    else:
        config.save_pretrained(tmp_path)
        torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_gpt2(tmp_path).eval()
    idx = torch.randint(0, 101, (3, 24))
    with torch.no_grad():
        expected = reference(idx).logits
    assert (ours(idx)[0] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_saved_gpt2_folder_loads_in_transformers_with_the_same_logits(tmp_path, dtype):
    """save_gpt2 writes what Hugging Face's GPT2LMHeadModel reads: the same logits, and load_gpt2 round-trips."""
    transformers = pytest.importorskip("transformers")
    from mingpt.gpt2_weights import load_gpt2, save_gpt2
    model = random_gpt(dtype=torch.float32)
    model.lm_head.weight = model.transformer.wte.weight
    save_gpt2(model, tmp_path, dtype, bos_token_id=0, eos_token_id=0)
    if dtype == torch.float16:  # compare with the fp16-rounded weights
        model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    idx = torch.randint(0, 10, (3, 32))
    with torch.no_grad():
        expected = reference(idx).logits
        assert (model(idx)[0] - expected).abs().max() <= 1e-4
        assert (load_gpt2(tmp_path)(idx)[0] - expected).abs().max() <= 1e-4


def test_save_gpt2_refuses_what_gpt2_cannot_hold(tmp_path):
    from mingpt.gpt2_weights import save_gpt2
    with pytest.raises(ValueError, match="ties its output layer"):
        save_gpt2(random_gpt(dtype=torch.float32), tmp_path)
    with pytest.raises(ValueError, match="LayerNorm before attention"):
        save_gpt2(random_gpt(attn_layernorm=False, dtype=torch.float32), tmp_path)


def test_load_gpt2_names_what_is_wrong_with_the_folder(tmp_path):
    from mingpt.gpt2_weights import load_gpt2, save_gpt2
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_gpt2(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="needs config.json"):
        load_gpt2(tmp_path)
    model = random_gpt(dtype=torch.float32)
    model.lm_head.weight = model.transformer.wte.weight
    save_gpt2(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"n_layer": 2}))
    with pytest.raises(ValueError, match="do not match a GPT-2 of this config"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config | {"n_embd": 64}))
    with pytest.raises(ValueError, match="has shape"):
        load_gpt2(tmp_path)


def test_analysis_refuses_a_model_in_training_mode():
    from mingpt import analysis
    model = random_gpt(dtype=torch.float32).train()
    with pytest.raises(ValueError, match="call model.eval"):
        analysis.content_attention_spread(model, {"none": None}, torch.zeros(2, 10, dtype=torch.long), 1)


@pytest.mark.parametrize("use_prefix", [False, True])
def test_logits_to_keep_equals_the_tail_of_the_full_logits(use_prefix):
    model = random_gpt()
    idx = torch.randint(0, 10, (3, 12))
    prefix = torch.randn(3, 2, 32, dtype=torch.float64) if use_prefix else None
    full, _ = model(idx, prefix=prefix)
    for keep in (1, 5, 12):
        tail, _ = model(idx, prefix=prefix, logits_to_keep=keep)
        assert tail.shape == (3, keep, 10)
        assert (tail - full[:, -keep:]).abs().max() <= 1e-12


def test_logits_to_keep_gives_the_same_gradients():
    model = random_gpt()
    idx, targets = torch.randint(0, 10, (4, 12)), torch.randint(0, 10, (4, 12))
    targets[:, :-4] = -1
    grads = []
    for keep, y in ((0, targets), (4, targets[:, -4:])):
        model.zero_grad()
        model(idx, targets=y, logits_to_keep=keep)[1].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max() <= 1e-12


def test_bad_logits_to_keep_and_targets_are_clear_errors():
    model = random_gpt()
    idx = torch.randint(0, 10, (2, 8))
    with pytest.raises(ValueError, match="logits_to_keep=9 must lie in 0..T=8"):
        model(idx, logits_to_keep=9)
    with pytest.raises(ValueError, match="pass the targets of the last n positions"):
        model(idx, targets=torch.zeros(2, 8, dtype=torch.long), logits_to_keep=3)
