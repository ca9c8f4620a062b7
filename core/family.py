"""The interface both model families implement, minGPT's `GPT` and LLaMA's `Transformer`, so that the
training loop, `lm/` and the analyses treat them alike, without attribute checks or reaching into layers.

Shapes: a prefix is (n_layers, prefix_len, width) shared by the batch, or (B, n_layers, prefix_len, width) one
per row; it takes positions 0..prefix_len-1 before the tokens, and logits are for the tokens only.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Tuple, runtime_checkable

import torch
from torch import nn


@dataclass(frozen=True)
class Dims:
    """A model's dimensions, under one set of names for both families."""
    n_layers: int
    n_heads: int
    width: int        # the residual stream's dimension (GPT's n_embd, LLaMA's dim)
    context: int      # positions the model takes, the prefix's included (GPT's block_size, LLaMA's max_seq_len)
    vocab_size: int


@runtime_checkable
class PrefixLM(Protocol):
    """What a model of either family offers the rest of the project."""

    family: str                                  # "gpt" or "llama"
    LORA_TARGETS: Dict[str, Tuple[str, ...]]     # LoRA target name -> the linear layers it adapts in a block

    @property
    def dims(self) -> Dims: ...

    @property
    def blocks(self) -> nn.ModuleList: ...

    def hyperparameters(self) -> dict:
        """The configuration a checkpoint records and checks on resumption."""

    def logits(self, tokens: torch.Tensor, prefix: Optional[torch.Tensor] = None,
               logits_to_keep: int = 0) -> torch.Tensor:
        """(B, T, vocab) logits of the tokens (B, T), with an optional prefix; of the last n positions only
        with logits_to_keep = n > 0."""

    def prefix_shape(self, prefix_len: int) -> Tuple[int, int, int]:
        """(n_layers, prefix_len, width): the shape of a prefix of prefix_len positions."""

    def prefix_keys_values(self, prefix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each layer's keys and values at the prefix positions as its attention reads them (LLaMA's keys
        rotated to positions 0..prefix_len-1): two (n_layers, n_kv_heads, prefix_len, head_dim) tensors."""

    def complete(self, prompts: List[List[int]], max_new_tokens: int, prefix: Optional[torch.Tensor] = None,
                 temperature: float = 0.0, eos_id: Optional[int] = None) -> List[List[int]]:
        """Each prompt's new tokens (at most max_new_tokens, cut before eos_id), greedy at temperature 0, else
        sampled: one return type for both families' cached decoding."""

    def token_embeddings(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T, width) the first block's input for tokens (B, T) at positions start..start+T-1 (GPT adds its
        learned positions here; LLaMA's enter in attention, through `run_layer`'s `start`)."""

    def run_layer(self, layer: int, h: torch.Tensor, start: int = 0) -> Dict[str, torch.Tensor]:
        """Block `layer` alone on inputs h (B, T, width) at positions start..start+T-1, its keys those of h's
        own positions: its attention probabilities (B, H, T, T) and head outputs (B, T, H, head_dim)."""
