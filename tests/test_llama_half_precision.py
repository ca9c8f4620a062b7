"""LLaMA in half precision follows Meta's numerics: the rotary embedding is computed in float32 and cast back.

Meta's reference rotates queries and keys as complex64 numbers (`torch.view_as_complex(x.float())` times
`freqs_cis`) and casts the result to the model's dtype. The check below rotates the same way, written
independently with complex numbers, and requires the model's fp16 rotation to equal it bit for bit; then
fp16 logits of a whole model are compared with a float64 run of the same (fp16-rounded) weights.
"""

import torch

from llama import ModelArgs, Transformer
from llama.model import apply_rotary, rotary_tables


def meta_style_rotary(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """x (bsz, seqlen, heads, head_dim) rotated as complex64 pairs, cast back to x's dtype."""
    seqlen, head_dim = x.shape[1], x.shape[-1]
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seqlen, dtype=torch.float64), freqs)
    rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)       # (seqlen, head_dim/2)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation[None, :, None, :]).flatten(-2).type_as(x)


def fp16_arithmetic_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotation carried out in fp16 arithmetic (what the model did before it followed Meta)."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos.half()[:, None], sin.half()[:, None]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def test_fp16_rotary_equals_metas_complex64_rotation():
    torch.manual_seed(0)
    x = (torch.randn(3, 200, 4, 64) * 4).half()
    cos, sin = rotary_tables(64, 200, 10000.0)
    ours = apply_rotary(x, cos.float(), sin.float())
    reference = meta_style_rotary(x)
    assert ours.dtype == torch.float16
    assert torch.equal(ours, reference)
    # the check is sharp: fp16 arithmetic disagrees with the reference on about a third of the entries
    assert (fp16_arithmetic_rotary(x, cos, sin) != reference).float().mean() > 0.1


def test_fp16_logits_track_a_float64_run_of_the_same_weights():
    torch.manual_seed(0)
    args = ModelArgs(dim=64, n_layers=2, n_heads=4, vocab_size=97, multiple_of=32, max_batch_size=2, max_seq_len=64)
    half = Transformer(args).half().eval().requires_grad_(False)
    exact = Transformer(args).double().eval().requires_grad_(False)
    exact.load_state_dict({k: v.double() for k, v in half.state_dict().items()})
    tokens = torch.randint(0, 97, (2, 64))
    with torch.no_grad():
        error = (half(tokens).double() - exact(tokens)).abs().max().item()
        scale = exact(tokens).abs().max().item()
    assert error <= 1e-2 * scale, (error, scale)
