"""How a trained prefix is attended to, and the output biases it induces (Section 4, Appendix B), for either family.

For a prefix s (n_layers, n_S, dim) a head's output at query i is
    t^pt_i = sum_k A^pt_ik W_V s_k + (1 - sum_k A^pt_ik) t_i,
so the prefix can only add a bias in the span of its n_S value vectors {W_V s_k}. These functions measure
the attention A^pt_ik to the prefix positions, its renormalised form (summing to 1 over k), and the biases
sum_k A^pt_ik W_V s_k that it induces.
"""

import math
from typing import Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from lm.text_tasks import pad_right
from recording import record


@torch.no_grad()
def last_token_prefix_attention(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int,
                                batch_size: int = 32) -> torch.Tensor:
    """(n_inputs, n_layers, n_heads, n_S): each head's attention from each prompt's last token to the prefix."""
    prefix_len = prefix.shape[-2]
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start: start + batch_size]
        x = pad_right(batch, pad_id)
        with record(model, "attention_probs") as recorded:
            model.logits(x, prefix)
        last = torch.tensor([prefix_len + len(p) - 1 for p in batch])            # the last token's query row
        rows = torch.arange(len(batch))
        out.append(torch.stack([a[rows, :, last, :prefix_len] for a in recorded["attention_probs"]], dim=1))
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


def density(samples: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """A Gaussian kernel density estimate of 1-d `samples` on `grid` (Scott's bandwidth, at least 1e-3 so that
    a nearly constant weight still draws a visible peak)."""
    samples = samples.double().flatten()
    width = max(samples.std().item() * len(samples) ** -0.2, 1e-3)
    z = (grid.double()[:, None] - samples[None, :]) / width
    return torch.exp(-0.5 * z ** 2).mean(1) / (width * math.sqrt(2 * math.pi))


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
    (`model.prefix_keys_values`; LLaMA's key/value heads repeated for the query heads that share them)."""
    values = model.prefix_keys_values(prefix)[1]
    return values.repeat_interleave(model.dims.n_heads // values.shape[1], dim=1).double()


def prefix_biases(attention: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n_inputs, n_layers, n_heads, head_dim): sum_k A^pt_ik W_V s_k, from `last_token_prefix_attention`'s
    attention (n_inputs, n_layers, n_heads, n_S) and `prefix_values`."""
    return torch.einsum("nlhk,lhkd->nlhd", attention, values)


def prefix_measures(attention: torch.Tensor, biases: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Appendix B's measures of one prefix, from its last-token attention (n_inputs, n_layers, n_heads, n_S)
    and the biases it induces (n_inputs, n_layers, n_heads, head_dim): ``gap`` (layers, heads), the 1st-99th
    percentile gap across inputs of each position's renormalised attention, averaged over positions;
    ``prefix_share`` (layers,), the attention given to the prefix in all; ``effective_positions`` (layers,);
    ``effective_rank`` and ``effective_rank_centred`` (layers, heads) of the biases over the inputs."""
    weights = renormalised(attention)
    n_layers, n_heads = attention.shape[1:3]
    rank = lambda centred: torch.tensor([[effective_rank(biases[:, layer, head], centred) for head in range(n_heads)]
                                         for layer in range(n_layers)], dtype=torch.float64)
    return {"gap": percentile_gap(weights).mean(-1), "prefix_share": attention.sum(-1).mean((0, 2)),
            "effective_positions": effective_positions(weights).mean((0, 2)),
            "effective_rank": rank(False), "effective_rank_centred": rank(True)}


def summarise_measures(per_prefix: List[Dict[str, torch.Tensor]]) -> dict:
    """`prefix_measures` of a set of prefixes averaged over the prefixes, each as a list over layers:

    * ``gap_over_heads``: the percentile gap averaged over heads; ``gap_head_l_of_layer_l``: of head L of
      layer L only (the companion code's indexing); ``gap_per_head``: (layers, heads); ``gap_over_heads_per_prefix``:
      (prefixes, layers), the spread behind the mean;
    * ``prefix_share``, ``effective_positions``;
    * ``effective_rank`` and ``effective_rank_centred``, averaged over heads: uncentred, a mean bias shared by
      all inputs counts as one direction; centred, the directions in which the bias varies with the input.
    """
    mean = {key: torch.stack([m[key] for m in per_prefix]).mean(0) for key in per_prefix[0]}
    gap = mean["gap"]                                                                       # (L, H)
    n_layers, n_heads = gap.shape
    return {"n_prefixes": len(per_prefix),
            "gap_over_heads": gap.mean(1).tolist(),
            "gap_head_l_of_layer_l": [gap[layer, layer % n_heads].item() for layer in range(n_layers)],
            "gap_per_head": gap.tolist(),
            "gap_over_heads_per_prefix": [m["gap"].mean(1).tolist() for m in per_prefix],
            "prefix_share": mean["prefix_share"].tolist(),
            "effective_positions": mean["effective_positions"].tolist(),
            "effective_rank": mean["effective_rank"].mean(1).tolist(),
            "effective_rank_centred": mean["effective_rank_centred"].mean(1).tolist()}


def appendix_b_measures(model, prompts: List[List[int]], prefixes: torch.Tensor, pad_id: int,
                        subsets: Optional[Dict[str, Sequence[int]]] = None, progress: bool = False) -> dict:
    """Appendix B's measures (`summarise_measures`) of prefixes (n_prefixes, n_layers, n_S, dim) on prompts,
    from the last token's attention to the prefix positions. With `subsets` ({name: indices into prompts}) the
    attention is computed once and the measures are returned per subset: {name: measures}."""
    chosen = subsets or {"all": range(len(prompts))}
    per_prefix = {name: [] for name in chosen}
    for prefix in tqdm(prefixes, desc="prefixes", disable=not progress):
        attention = last_token_prefix_attention(model, prompts, prefix, pad_id)            # (N, L, H, n)
        biases = prefix_biases(attention, prefix_values(model, prefix))                   # (N, L, H, hd)
        for name, rows in chosen.items():
            rows = torch.as_tensor(list(rows))
            per_prefix[name].append(prefix_measures(attention[rows], biases[rows]))
    measures = {name: {"n_inputs": len(chosen[name]), **summarise_measures(m)} for name, m in per_prefix.items()}
    return measures if subsets else measures["all"]
