"""Low-rank adaptation (LoRA) of chosen linear layers, for either model family.

``add_lora(model, rank, targets)`` wraps the named linear layers of every block so that
``W x + b`` becomes ``W x + b + B A x`` with A (rank, in) and B (out, rank). B starts at zero, so the
adapted model equals the base model at initialisation; only A and B train. Each family declares its
targets: `model.LORA_TARGETS` names, per target, the linear layers of one of `model.blocks` (minGPT's
"mlp" is c_fc and c_proj, LLaMA's w1, w2 and w3; "attn_out" is c_proj / wo; "attn_qkv" the query, key and
value projections).
"""

import math
from typing import Dict, Iterable, List

import torch
import torch.nn as nn


class LoRALinear(nn.Module):
    """A frozen linear layer (nn.Linear, or fairscale's parallel layers on one process) plus a trainable
    rank-r update B A."""

    def __init__(self, base: nn.Module, rank: int):
        super().__init__()
        if tuple(base.weight.shape) != (base.out_features, base.in_features):
            raise ValueError(f"LoRA adapts whole layers, but this one holds a {tuple(base.weight.shape)} shard of "
                             f"({base.out_features}, {base.in_features}): train a LoRA on one model-parallel process")
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t()) @ self.lora_B.t()


def add_lora(model: nn.Module, rank: int, targets: Iterable[str] = ("mlp",)) -> List[nn.Parameter]:
    """Freeze `model`, wrap the target layers of every block in LoRALinear; return the new parameters.

    targets: names from the family's `LORA_TARGETS`; the paper's Section 6 uses ("mlp", "attn_out").
    """
    unknown = [t for t in targets if t not in model.LORA_TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown} for {type(model).__name__}; choose from "
                         f"{sorted(model.LORA_TARGETS)}")
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    if lora_parameters(model):
        raise ValueError("the model already has LoRA adapters; add_lora wraps a plain model once "
                         "(build a fresh copy of the base model to train another adapter)")
    model.requires_grad_(False)
    params = []
    for block in model.blocks:
        for target in targets:
            for path in model.LORA_TARGETS[target]:
                parent_name, attr = path.split(".")
                parent = getattr(block, parent_name)
                adapted = LoRALinear(getattr(parent, attr), rank).to(getattr(parent, attr).weight.device)
                setattr(parent, attr, adapted)
                params += [adapted.lora_A, adapted.lora_B]
    return params


def lora_parameters(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The LoRA parameters of a model, by name (what a LoRA checkpoint stores)."""
    return {n: p for n, p in model.named_parameters() if ".lora_" in n}


def load_lora(model: nn.Module, state: Dict[str, torch.Tensor], source: str = "the LoRA checkpoint") -> None:
    """Load adapter weights into a model that `add_lora` has wrapped: exactly its LoRA parameters, no more, no less."""
    expected = set(lora_parameters(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if not expected or missing or unexpected:
        raise ValueError(f"{source} does not match the model's LoRA adapters (missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}, {len(expected)} expected): add_lora with the rank and targets it "
                         "was trained with before loading")
    model.load_state_dict(state, strict=False)
