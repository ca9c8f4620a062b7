"""Section 4 on LLaMA: a prefix only rescales the attention over the content and biases each head's output.

For a head, content query i and content key j, with n_S prefix positions s_1..s_{n_S}:
    A^pt_ij = A_ij (1 - sum_k A^pt_ik)                                        (the attention identity)
    t^pt_i  = sum_k A^pt_ik W_V s_k + (1 - sum_k A^pt_ik) t_i                 (the output identity)
where A and t come from the same layer without the prefix, on the same content input. That holds at
layer 0, and at any layer given that layer's content input (`isolated_layer_errors`); across a whole run
the biases change the input of later layers (`cross_layer_effects`).

Inputs are right-padded rows of different lengths; only positions inside each row are compared.
"""

from typing import Dict, List

import torch

from lm import prefix_attention
from lm.text_tasks import pad_right
from llama.model import causal_mask, compute_dtype
from recording import record


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _recorded(model, x, prefix) -> Dict[str, List[torch.Tensor]]:
    with torch.no_grad(), record(model, "attention_probs", "head_outputs") as recorded:
        model(x, prefix=prefix)
    return recorded


def identity_errors(plain_probs, plain_heads, probs, heads, values, lengths) -> Dict[str, float]:
    """Max |error| of both identities for one layer, every head, every position inside each row.

    plain_probs (B, H, T, T) and plain_heads (B, T, H, hd): the layer without the prefix; probs
    (B, H, n_S+T, n_S+T) and heads (B, n_S+T, H, hd): with it; values (H, n_S, hd): W_V s_k.
    """
    n = values.shape[1]
    probs, heads, plain_probs, plain_heads = (t.double() for t in (probs, heads, plain_probs, plain_heads))
    to_prefix = probs[:, :, n:, :n]                                       # (B, H, T, n_S)
    kept = 1 - to_prefix.sum(-1)                                          # (B, H, T)
    attention_error = (probs[:, :, n:, n:] - plain_probs * kept[..., None]).abs()
    bias = torch.einsum("bhik,hkd->bihd", to_prefix, values.double())
    output_error = (heads[:, n:] - (bias + kept.transpose(1, 2)[..., None] * plain_heads)).abs()
    inside = torch.arange(plain_heads.shape[1])[None, :] < torch.tensor(lengths)[:, None]   # (B, T)
    pair_inside = inside[:, None, :, None] & inside[:, None, None, :]
    return {"attention": attention_error.masked_fill(~pair_inside, 0).max().item(),
            "output": output_error.masked_fill(~inside[:, :, None, None], 0).max().item()}


def layer0_errors(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int,
                  aligned: bool = True) -> Dict[str, float]:
    """Both identities at layer 0, in the model's own dtype.

    aligned=True: layer 0 on the token embeddings with and without its prefix row, the content rotated at the
    same positions n_S.. in both (the identity itself: only the prefix differs). aligned=False: whole runs as a
    user makes them, the prefix-free one with the content at positions 0.., so the difference also holds the
    rounding of rotating the same content at other positions (equal in exact arithmetic, RoPE being relative).
    """
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    dtype = _dtype(model)
    values = prefix_attention.prefix_values(model, prefix.to(dtype))[0]
    if aligned:
        with torch.no_grad():
            h = model.tok_embeddings(x)
        s = prefix[0].to(dtype).expand(len(prompts), -1, -1)
        prefixed, plain = run_layer(model, 0, torch.cat([s, h], dim=1)), run_layer(model, 0, h, start=n)
        return identity_errors(plain["attention_probs"], plain["head_outputs"], prefixed["attention_probs"],
                               prefixed["head_outputs"], values, [len(p) for p in prompts])
    plain, prefixed = _recorded(model, x, None), _recorded(model, x, prefix)
    return identity_errors(plain["attention_probs"][0], plain["head_outputs"][0], prefixed["attention_probs"][0],
                           prefixed["head_outputs"][0], values, [len(p) for p in prompts])


def layer_inputs(model, x: torch.Tensor, prefix: torch.Tensor) -> List[torch.Tensor]:
    """The input of every layer in the prefixed run, (B, n_S + T, dim): the prefix rows, then the content."""
    inputs: List[torch.Tensor] = []
    handles = [layer.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach())) for layer in model.layers]
    try:
        with torch.no_grad():
            model(x, prefix=prefix)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


@torch.no_grad()
def run_layer(model, layer_id: int, h: torch.Tensor, start: int = 0) -> Dict[str, torch.Tensor]:
    """Layer `layer_id` alone on input h (B, T, dim) at positions start..start+T-1 (no cache: the keys are h's
    own positions): its attention probabilities and head outputs."""
    total, dtype = h.shape[1], h.dtype
    cos = model.rope_cos[start:start + total].to(h.device, compute_dtype(dtype))
    sin = model.rope_sin[start:start + total].to(h.device, compute_dtype(dtype))
    with record(model, "attention_probs", "head_outputs") as recorded:
        model.layers[layer_id](h, 0, cos, sin, causal_mask(total, 0, dtype, h.device), False)
    return {name: tensors[layer_id] for name, tensors in recorded.items()}


def isolated_layer_errors(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int) -> List[Dict[str, float]]:
    """For each layer: both identities with that layer's content input taken from the prefixed run, so
    that the comparison isolates the layer (with and without its prefix row s = prefix[l]; the content at
    positions n_S.. in both)."""
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    values = prefix_attention.prefix_values(model, prefix.to(_dtype(model)))
    errors = []
    for layer_id, h in enumerate(layer_inputs(model, x, prefix)):
        with_prefix, without = run_layer(model, layer_id, h), run_layer(model, layer_id, h[:, n:], start=n)
        errors.append(identity_errors(without["attention_probs"], without["head_outputs"], with_prefix["attention_probs"],
                                      with_prefix["head_outputs"], values[layer_id], [len(p) for p in prompts]))
    return errors


def cross_layer_effects(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int) -> Dict[str, torch.Tensor]:
    """Whole runs with and without the prefix, per layer and head (averaged over content queries):

    * ``tv``: total-variation distance between the renormalised content attention of the prefixed run,
      A^pt_ij / (1 - sum_k A^pt_ik), and the plain run's A_ij (0 at layer 0);
    * ``span_share``: the share of r_i = t^pt_i - (1 - sum_k A^pt_ik) t_i (what is left of the prefixed output
      after the plain output's share) that lies in span{W_V s_k} (1 at layer 0, where r_i is the bias).
    """
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    plain, prefixed = _recorded(model, x, None), _recorded(model, x, prefix)
    values = prefix_attention.prefix_values(model, prefix.to(_dtype(model)))
    inside = (torch.arange(x.shape[1])[None, :] < torch.tensor([len(p) for p in prompts])[:, None]).double()  # (B, T)
    tv, share = [], []
    for layer_id in range(len(model.layers)):
        probs, plain_probs = prefixed["attention_probs"][layer_id].double(), plain["attention_probs"][layer_id].double()
        kept = 1 - probs[:, :, n:, :n].sum(-1)                                                   # (B, H, T)
        distance = 0.5 * (probs[:, :, n:, n:] / kept[..., None] - plain_probs).abs().sum(-1)      # (B, H, T)
        tv.append((distance * inside[:, None]).sum((0, 2)) / inside.sum())
        residual = (prefixed["head_outputs"][layer_id][:, n:].double()
                    - kept.transpose(1, 2)[..., None] * plain["head_outputs"][layer_id].double())   # (B, T, H, hd)
        basis = torch.linalg.qr(values[layer_id].transpose(1, 2)).Q                              # (H, hd, n_S)
        projected = torch.einsum("bthd,hdk->bthk", residual, basis)
        ratio = projected.pow(2).sum(-1) / residual.pow(2).sum(-1).clamp_min(1e-300)             # (B, T, H)
        share.append((ratio * inside[..., None]).sum((0, 1)) / inside.sum())
    return {"tv": torch.stack(tv), "span_share": torch.stack(share)}
