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

from llama.model import apply_rotary
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


@torch.no_grad()
def prefix_keys_values(model, prefix: torch.Tensor):
    """Each layer's keys and values at the prefix positions, as a key/value cache holds them:
    two (n_layers, n_kv_heads, n_S, head_dim) tensors. LLaMA's keys are rotated to positions 0..n_S-1 (Meta's
    interleaved pairs); PEFT's free parametrisation of a prefix is exactly these tensors."""
    keys, values = [], []
    if hasattr(model, "params"):  # LLaMA
        n_s = prefix.shape[-2]
        for layer, s in zip(model.layers, prefix):
            attention, x = layer.attention, layer.attention_norm(s)
            k = attention.wk(x).view(1, n_s, attention.n_local_kv_heads, attention.head_dim)
            k = apply_rotary(k, model.rope_cos[:n_s], model.rope_sin[:n_s])[0]
            keys.append(k.transpose(0, 1))
            values.append(attention.wv(x).view(n_s, attention.n_local_kv_heads, attention.head_dim).transpose(0, 1))
    else:  # minGPT / GPT-2
        for block, s in zip(model.transformer.h, prefix):
            n_embd, n_head = s.shape[-1], block.attn.n_head
            _, k, v = block.attn.c_attn(block.ln_1(s)).split(n_embd, dim=-1)
            keys.append(k.view(len(s), n_head, -1).transpose(0, 1))
            values.append(v.view(len(s), n_head, -1).transpose(0, 1))
    return torch.stack(keys), torch.stack(values)


def prefix_biases(attention: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n_inputs, n_layers, n_heads, head_dim): sum_k A^pt_ik W_V s_k, from `last_token_prefix_attention`'s
    attention (n_inputs, n_layers, n_heads, n_S) and `prefix_values`."""
    return torch.einsum("nlhk,lhkd->nlhd", attention, values)


def appendix_b_measures(model, prompts: List[List[int]], prefixes: torch.Tensor, pad_id: int) -> dict:
    """Appendix B's measures of a set of prefixes (n_prefixes, n_layers, n_S, dim) on a set of prompts, from the
    last token's attention to the prefix positions, each as a list over layers:

    * ``gap_over_heads``: the 1st-99th percentile gap across inputs of each position's renormalised attention,
      averaged over heads, positions and prefixes; ``gap_head_l_of_layer_l``: the same for head L of layer L
      only (the companion code's indexing); ``gap_per_head``: (layers, heads), averaged over positions and
      prefixes;
    * ``prefix_share``: the attention the last token gives the prefix in all, averaged over inputs, heads and
      prefixes;
    * ``effective_positions``: exp(entropy) of the renormalised attention, averaged over inputs, heads, prefixes;
    * ``effective_rank`` and ``effective_rank_centred``: of each prefix's induced biases at the last token over
      the inputs (inputs x head_dim per layer and head), averaged over heads and prefixes, uncentred and
      with the biases' mean over inputs removed first.
    """
    attention = torch.stack([last_token_prefix_attention(model, prompts, p, pad_id) for p in prefixes])  # (P, N, L, H, n)
    weights = renormalised(attention)
    gaps = torch.stack([percentile_gap(w) for w in weights])                                        # (P, L, H, n)
    n_layers, n_heads = gaps.shape[1], gaps.shape[2]
    biases = torch.stack([prefix_biases(a, prefix_values(model, p)) for a, p in zip(attention, prefixes)])  # (P, N, L, H, hd)
    rank = lambda centred: torch.tensor([[[effective_rank(biases[p, :, layer, head], centred) for head in range(n_heads)]
                                          for layer in range(n_layers)] for p in range(len(prefixes))]).mean((0, 2))
    return {"n_inputs": len(prompts), "n_prefixes": len(prefixes),
            "gap_over_heads": gaps.mean((0, 2, 3)).tolist(),
            "gap_head_l_of_layer_l": [gaps[:, layer, layer % n_heads].mean().item() for layer in range(n_layers)],
            "gap_per_head": gaps.mean((0, 3)).tolist(),
            "prefix_share": attention.sum(-1).mean((0, 1, 3)).tolist(),
            "effective_positions": effective_positions(weights).mean((0, 1, 3)).tolist(),
            "effective_rank": rank(False).tolist(), "effective_rank_centred": rank(True).tolist()}
