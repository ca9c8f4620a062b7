"""Section 4 of the paper on LLaMA: a prefix only rescales attention over content and biases the output.

For layer 0, every head h, content query i and content key j (float64, n_S prefix vectors s_k):
    A^pt_ij = A_ij (1 - sum_k A^pt_ik)
    t^pt_i  = sum_k A^pt_ik W_V s_k + (1 - sum_k A^pt_ik) t_i
where A, t come from the run without prefix. In the prefixed run the content sits at positions n_S.., in
the plain run at 0..; with rotary embeddings a query-key score depends only on the offset between the two
positions, so shifting all content by n_S leaves A unchanged in exact arithmetic (checked separately below,
to 1e-13), and the identities hold to rounding error.
"""

import pytest
import torch

from llama import ModelArgs, Transformer, record
from llama.model import apply_rotary, repeat_kv, rotary_tables

TOLERANCE = 1e-10


def random_model(n_kv_heads: int) -> Transformer:
    torch.manual_seed(0)
    args = ModelArgs(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=n_kv_heads,
        vocab_size=53,
        multiple_of=16,
        max_batch_size=2,
        max_seq_len=24,
    )
    model = Transformer(args).double().eval().requires_grad_(False)
    with torch.no_grad():
        for layer in model.layers:
            layer.attention_norm.weight.uniform_(0.5, 1.5)
    return model


def layer0_attention(model: Transformer, tokens: torch.Tensor, prefix=None):
    """Layer 0's attention probabilities (bsz, heads, queries, keys) and head outputs (bsz, queries, heads, head_dim)."""
    names = ("attention_probs", "head_outputs")
    with torch.no_grad(), record(model, *names) as recorded:
        model(tokens, prefix=prefix)
    return [recorded[name][0] for name in names]


@pytest.mark.parametrize("n_kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
@pytest.mark.parametrize("prefix_len", [1, 4])
def test_prefix_rescales_attention_and_biases_output(n_kv_heads, prefix_len):
    model = random_model(n_kv_heads)
    attention = model.layers[0].attention
    tokens = torch.randint(0, 53, (2, 8))
    prefix = torch.randn(2, 2, prefix_len, 32, dtype=torch.float64)  # (bsz, n_layers, n_S, dim), per sample

    probs, outputs = layer0_attention(model, tokens)
    probs_pt, outputs_pt = layer0_attention(model, tokens, prefix)
    probs_pt, outputs_pt = probs_pt[:, :, prefix_len:], outputs_pt[:, prefix_len:]  # content queries only
    to_prefix = probs_pt[..., :prefix_len]  # A^pt_ik, (bsz, heads, queries, n_S)
    prefix_mass = to_prefix.sum(-1)  # sum_k A^pt_ik
    assert 0.05 < prefix_mass.mean() < 0.95  # the prefix takes a real share of the attention

    attention_error = probs_pt[..., prefix_len:] - probs * (1 - prefix_mass)[..., None]
    # W_V s_k for every head: values of the normed prefix vectors of layer 0, shared by grouped query heads
    prefix_values = attention.wv(model.layers[0].attention_norm(prefix[:, 0]))
    prefix_values = repeat_kv(
        prefix_values.view(2, prefix_len, n_kv_heads, 8), attention.n_rep
    )  # (bsz, n_S, heads, head_dim)
    bias = torch.einsum("bhik,bkhd->bihd", to_prefix, prefix_values)
    output_error = outputs_pt - (bias + (1 - prefix_mass).transpose(1, 2)[..., None] * outputs)

    assert attention_error.abs().max() <= TOLERANCE
    assert output_error.abs().max() <= TOLERANCE
    assert (outputs_pt - outputs).abs().max() > 1e-3  # the prefix does move the output


def test_rotary_scores_depend_only_on_position_offsets():
    cos, sin = rotary_tables(head_dim=8, n_positions=24, theta=10000.0)
    queries, keys = torch.randn(2, 8, 4, 8, dtype=torch.float64), torch.randn(2, 8, 4, 8, dtype=torch.float64)
    for shift in (1, 4):
        plain = torch.einsum(
            "bihd,bjhd->bhij", apply_rotary(queries, cos[:8], sin[:8]), apply_rotary(keys, cos[:8], sin[:8])
        )
        moved_cos, moved_sin = cos[shift : shift + 8], sin[shift : shift + 8]
        shifted = torch.einsum(
            "bihd,bjhd->bhij", apply_rotary(queries, moved_cos, moved_sin), apply_rotary(keys, moved_cos, moved_sin)
        )
        assert (plain - shifted).abs().max() <= 1e-13
