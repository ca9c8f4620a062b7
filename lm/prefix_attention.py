"""How a trained prefix is attended to, and the output biases it induces (Section 4, Appendix B), for either family.

For a prefix s (n_layers, n_S, dim) a head's output at query i is
    t^pt_i = sum_k A^pt_ik W_V s_k + (1 - sum_k A^pt_ik) t_i,
so the prefix can only add a bias in the span of its n_S value vectors {W_V s_k}. These functions measure
the attention A^pt_ik to the prefix positions, its renormalised form (summing to 1 over k), and the biases
sum_k A^pt_ik W_V s_k that it induces.
"""

import math
from typing import List

import torch

from lm.text_tasks import pad_right
from mingpt.trainer import logits_of
from recording import record


@torch.no_grad()
def last_token_prefix_attention(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int,
                                batch_size: int = 32) -> torch.Tensor:
    """(n_inputs, n_layers, n_heads, n_S): each head's attention from each prompt's last token to the prefix."""
    n_prefix = prefix.shape[-2]
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start: start + batch_size]
        x = pad_right(batch, pad_id)
        with record(model, "attention_probs") as recorded:
            logits_of(model, x, prefix)
        last = torch.tensor([n_prefix + len(p) - 1 for p in batch])            # the last token's query row
        rows = torch.arange(len(batch))
        out.append(torch.stack([a[rows, :, last, :n_prefix] for a in recorded["attention_probs"]], dim=1))
    return torch.cat(out).double()


def renormalised(attention: torch.Tensor) -> torch.Tensor:
    """Attention to the prefix positions, rescaled to sum to 1 over them (the last axis)."""
    return attention / attention.sum(-1, keepdim=True)


def percentile_gap(weights: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """The high-minus-low quantile across inputs (the first axis; linear interpolation, as numpy's default)."""
    return torch.quantile(weights, high, dim=0) - torch.quantile(weights, low, dim=0)


def effective_positions(weights: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of each renormalised distribution over the prefix positions (1 = one position, n_S = all)."""
    return torch.exp(-(weights * weights.clamp_min(1e-300).log()).sum(-1))


def effective_rank(vectors: torch.Tensor, centred: bool = False) -> float:
    """exp(entropy of the normalised singular values) of the rows of `vectors` (Roy and Vetterli's measure).

    Uncentred, a mean shared by every row counts as one direction and, when it dominates, pulls the rank
    toward 1 whatever the rows' variation; centred (the rows' mean subtracted first) it measures how many
    directions the rows vary in."""
    vectors = vectors.double()
    if centred:
        vectors = vectors - vectors.mean(0, keepdim=True)
    s = torch.linalg.svdvals(vectors)
    p = s / s.sum()
    return math.exp(-(p * p.clamp_min(1e-300).log()).sum().item())


@torch.no_grad()
def prefix_values(model, prefix: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_heads, n_S, head_dim): W_V s_k, the value vector each head computes from each prefix position
    (from the layer's normalised input, as the model does)."""
    values = []
    if hasattr(model, "params"):  # LLaMA: values from the RMS-normalised input; keys/values may be shared by heads
        for layer, s in zip(model.layers, prefix):
            attention = layer.attention
            v = attention.wv(layer.attention_norm(s)).view(len(s), attention.n_local_kv_heads, attention.head_dim)
            values.append(v.repeat_interleave(attention.n_rep, dim=1).transpose(0, 1))
    else:  # minGPT / GPT-2: values from the LayerNorm-ed input (experiment B's model has none)
        for block, s in zip(model.transformer.h, prefix):
            n_embd = s.shape[-1]
            v = block.attn.c_attn(block.ln_1(s))[:, 2 * n_embd:]
            values.append(v.view(len(s), block.attn.n_head, -1).transpose(0, 1))
    return torch.stack(values).double()


def prefix_biases(attention: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n_inputs, n_layers, n_heads, head_dim): sum_k A^pt_ik W_V s_k, from `last_token_prefix_attention`'s
    attention (n_inputs, n_layers, n_heads, n_S) and `prefix_values`."""
    return torch.einsum("nlhk,lhkd->nlhd", attention, values)
