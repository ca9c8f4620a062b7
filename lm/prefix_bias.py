"""Section 4 on LLaMA: a prefix only rescales the attention over the content and biases each head's output.

For a head, content query i and content key j, with n_S prefix positions s_1..s_{n_S}:
    A^pt_ij = A_ij (1 - sum_k A^pt_ik)                                        (the attention identity)
    t^pt_i  = sum_k A^pt_ik W_V s_k + (1 - sum_k A^pt_ik) t_i                 (the output identity)
where A and t come from the same layer without the prefix, on the same content input. That holds at
layer 0, and at any layer given that layer's content input (`isolated_layer_errors`); across a whole run
the biases change the input of later layers (`cross_layer_effects`).

Inputs are right-padded rows of different lengths; only positions inside each row are compared.
"""

import math
from typing import Dict, List

import torch

from lm import prefix_attention
from lm.text_tasks import pad_right
from recording import record


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _recorded(model, x, prefix) -> Dict[str, List[torch.Tensor]]:
    with torch.no_grad(), record(model, "attention_probs", "head_outputs") as recorded:
        model(x, prefix=prefix)
    return recorded


def identity_errors(plain_probs, plain_heads, probs, heads, values, lengths, prefix_len: int) -> Dict[str, torch.Tensor]:
    """Both identities for one layer, per input and head: (B, H) tensors of the max |error| over every
    position inside each row ("attention", "output"), and the max |value| of what each identity compares
    ("attention_scale": the prefixed content attention A^pt_ij, "output_scale": the prefixed output t^pt_i),
    the magnitude that sets each precision's rounding step. The one implementation of Section 4's identities:
    `lm.diagnose` uses it for Hugging Face models too.

    plain_probs (B, H, T, T) and plain_heads (B, T, H, hd): the layer without the prefix; probs
    (B, H, T, prefix_len + T) and heads (B, T, H, hd): with it, at the content queries; values
    (H, prefix_len, hd): W_V s_k, or None when the prefix's values are unknown (then no output identity).
    """
    n = prefix_len
    probs, plain_probs = probs.double(), plain_probs.double()
    to_prefix = probs[..., :n]                                            # (B, H, T, n_S)
    kept = 1 - to_prefix.sum(-1)                                          # (B, H, T)
    attention_error = (probs[..., n:] - plain_probs * kept[..., None]).abs()
    inside = torch.arange(plain_probs.shape[2])[None, :] < torch.tensor(lengths)[:, None]   # (B, T)
    pairs = (inside[:, None, :, None] & inside[:, None, None, :]).double()                # (B, 1, T, T)
    per_head = lambda t, mask, dims: (t * mask).amax(dims)
    errors = {"attention": per_head(attention_error, pairs, (2, 3)),
              "attention_scale": per_head(probs[..., n:].abs(), pairs, (2, 3))}
    if values is not None:
        heads, plain_heads = heads.double(), plain_heads.double()
        bias = torch.einsum("bhik,hkd->bihd", to_prefix, values.double())
        output_error = (heads - (bias + kept.transpose(1, 2)[..., None] * plain_heads)).abs()
        positions = inside[:, :, None, None].double()                                      # (B, T, 1, 1)
        errors.update(output=per_head(output_error, positions, (1, 3)), output_scale=per_head(heads.abs(), positions, (1, 3)))
    return errors


def concat_errors(parts: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """identity_errors of several batches of inputs as one: (inputs, H) per entry."""
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def worst(errors: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The maxima over inputs and heads: absolute errors, and relative errors (each head's error over the
    magnitude of what it compares, on that input)."""
    return {"attention": errors["attention"].max().item(), "output": errors["output"].max().item(),
            "attention_relative": (errors["attention"] / errors["attention_scale"]).max().item(),
            "output_relative": (errors["output"] / errors["output_scale"]).max().item()}


MANTISSA_BITS = {torch.float64: 52, torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}


def rounding_step(magnitude: float, dtype: torch.dtype) -> float:
    """The spacing of `dtype`'s numbers at `magnitude` (one unit in the last place): 2^-11 = 4.88e-4 for
    float16 in [0.5, 1)."""
    return 2.0 ** (math.floor(math.log2(magnitude)) - MANTISSA_BITS[dtype])


def layer0_errors(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int) -> Dict[str, Dict[str, torch.Tensor]]:
    """Both identities at layer 0, in the model's own dtype, per input and head (identity_errors), with the
    prefix-free side formed two ways:

    "aligned": layer 0 on the token embeddings with and without its prefix row, the content rotated at the
    same positions n_S.. in both (the identity itself: only the prefix differs). "as_run": as a user runs the
    model, the prefix-free run with the content at positions 0.., so the difference also holds the rounding of
    rotating the same content at other positions (equal in exact arithmetic, RoPE being relative).
    Layer 0 of a whole run sees only the embeddings, so layer 0 is run alone (as in a whole forward pass).
    """
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    dtype = _dtype(model)
    values = prefix_attention.prefix_values(model, prefix.to(dtype))[0]
    h = model.token_embeddings(x)
    s = prefix[0].to(dtype).expand(len(prompts), -1, -1)
    prefixed = model.run_layer(0, torch.cat([s, h], dim=1))
    errors = {}
    for mode, start in (("aligned", n), ("as_run", 0)):
        plain = model.run_layer(0, h, start=start)
        errors[mode] = identity_errors(plain["attention_probs"], plain["head_outputs"], prefixed["attention_probs"][:, :, n:],
                                       prefixed["head_outputs"][:, n:], values, [len(p) for p in prompts], n)
    return errors


def prefixed_run(model, x: torch.Tensor, prefix: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
    """One whole prefixed run, recorded: each layer's attention probabilities and head outputs, and its input
    (B, n_S + T, dim): the prefix rows, then the content."""
    inputs: List[torch.Tensor] = []
    handles = [layer.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach())) for layer in model.blocks]
    try:
        recorded = _recorded(model, x, prefix)
    finally:
        for handle in handles:
            handle.remove()
    return {**recorded, "inputs": inputs}


def plain_run(model, x: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
    """One whole prefix-free run, recorded: each layer's attention probabilities and head outputs."""
    return _recorded(model, x, None)


def isolated_layer_errors(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int,
                          prefixed: Dict[str, List[torch.Tensor]] = None) -> List[Dict[str, torch.Tensor]]:
    """For each layer, both identities per input and head (identity_errors), with that layer's content input
    taken from the prefixed run, so that the comparison isolates the layer: the layer with its prefix row
    s = prefix[l] (as recorded in the prefixed run) against the layer alone without it (the content at
    positions n_S.. in both). `prefixed`: the prefixed run's recordings (prefixed_run), when already made."""
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    prefixed = prefixed or prefixed_run(model, x, prefix)
    values = prefix_attention.prefix_values(model, prefix.to(_dtype(model)))
    errors = []
    for layer_id, h in enumerate(prefixed["inputs"]):
        without = model.run_layer(layer_id, h[:, n:], start=n)
        errors.append(identity_errors(without["attention_probs"], without["head_outputs"],
                                      prefixed["attention_probs"][layer_id][:, :, n:], prefixed["head_outputs"][layer_id][:, n:],
                                      values[layer_id], [len(p) for p in prompts], n))
    return errors


def cross_layer_effects(model, prompts: List[List[int]], prefix: torch.Tensor, pad_id: int,
                        prefixed: Dict[str, List[torch.Tensor]] = None,
                        plain: Dict[str, List[torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """Whole runs with and without the prefix, per input, layer and head, summed over each input's content
    queries (divide by "positions" for the mean; `mean_over_batches` for the record's average):

    * ``tv``: total-variation distance between the renormalised content attention of the prefixed run,
      A^pt_ij / (1 - sum_k A^pt_ik), and the plain run's A_ij (0 at layer 0);
    * ``span_share``: the share of r_i = t^pt_i - (1 - sum_k A^pt_ik) t_i (what is left of the prefixed output
      after the plain output's share) that lies in span{W_V s_k} (1 at layer 0, where r_i is the bias);
    * ``positions``: (B,) content queries per input.
    `prefixed`, `plain`: the recordings of the prefixed run (prefixed_run) and of the plain one (plain_run),
    when already made (the plain run serves every prefix).
    """
    x = pad_right(prompts, pad_id)
    n = prefix.shape[-2]
    plain, prefixed = plain or plain_run(model, x), prefixed or prefixed_run(model, x, prefix)
    values = prefix_attention.prefix_values(model, prefix.to(_dtype(model)))
    inside = (torch.arange(x.shape[1])[None, :] < torch.tensor([len(p) for p in prompts])[:, None]).double()  # (B, T)
    tv, share = [], []
    for layer_id in range(model.dims.n_layers):
        probs, plain_probs = prefixed["attention_probs"][layer_id].double(), plain["attention_probs"][layer_id].double()
        kept = 1 - probs[:, :, n:, :n].sum(-1)                                                   # (B, H, T)
        distance = 0.5 * (probs[:, :, n:, n:] / kept[..., None] - plain_probs).abs().sum(-1)      # (B, H, T)
        tv.append((distance * inside[:, None]).sum(2))                                           # (B, H)
        residual = (prefixed["head_outputs"][layer_id][:, n:].double()
                    - kept.transpose(1, 2)[..., None] * plain["head_outputs"][layer_id].double())   # (B, T, H, hd)
        basis = torch.linalg.qr(values[layer_id].transpose(1, 2)).Q                              # (H, hd, n_S)
        projected = torch.einsum("bthd,hdk->bthk", residual, basis)
        ratio = projected.pow(2).sum(-1) / residual.pow(2).sum(-1).clamp_min(1e-300)             # (B, T, H)
        share.append((ratio * inside[..., None]).sum(1))                                         # (B, H)
    return {"tv": torch.stack(tv, 1), "span_share": torch.stack(share, 1), "positions": inside.sum(1)}


def mean_over_batches(per_input: torch.Tensor, positions: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The record's average of a per-input sum over content queries (inputs, ...): the mean over the content
    queries of each batch of `batch_size` consecutive inputs, then over the batches weighted by their inputs
    (how the notebook has averaged since its first run; the inputs in their held-out order)."""
    means, weights = [], []
    for start in range(0, len(per_input), batch_size):
        means.append(per_input[start:start + batch_size].sum(0) / positions[start:start + batch_size].sum())
        weights.append(min(batch_size, len(per_input) - start))
    weights = torch.tensor(weights, dtype=torch.float64)
    return sum(w * m for w, m in zip(weights, means)) / weights.sum()
