"""Layers of the paper's simplified transformer (no LayerNorm), acting on the whole stream.

Each layer maps the stream at the new positions, x (batch, n_new, d), to an update that the model adds
to it; attention also sees `context` (batch, n, d), its input at all positions so far, of which x is
the last n_new (so generation can feed one new position at a time). Every layer here writes
into scratch blocks that are zero before it runs, so adding is the same as concatenating the
layer's output to its input (the paper's concatenation wiring); the named blocks keep the two
views identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionHead:
    """Causal softmax attention with inverse temperature T: softmax(T q k^T) v w_out."""

    query: torch.Tensor  # (d_model, d_key)
    key: torch.Tensor  # (d_model, d_key)
    value: torch.Tensor  # (d_model, d_value)
    output: torch.Tensor  # (d_value, d_model)
    inverse_temperature: float
    description: str = ""

    def attention(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attention weights (batch, n_new, n) of the new positions over all positions."""
        scores = self.inverse_temperature * (x @ self.query) @ (context @ self.key).transpose(-1, -2)
        n_new, n = x.shape[-2], context.shape[-2]
        future = torch.ones(n_new, n, dtype=torch.bool).triu(n - n_new + 1)
        return scores.masked_fill(future, float("-inf")).softmax(dim=-1)

    def __call__(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # (A context) W_V W_O = A (context W_V) W_O; this order is cheaper when n_new = 1
        return self.attention(x, context) @ context @ self.value @ self.output


@dataclass
class Attention:
    """A multi-head attention layer: the sum of its heads' outputs."""

    heads: list[AttentionHead]

    def __call__(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return sum(head(x, context) for head in self.heads)


@dataclass
class MLP:
    """A one-hidden-layer ReLU MLP: relu(x w_in + b_in) w_out."""

    w_in: torch.Tensor  # (d_model, d_hidden)
    b_in: torch.Tensor  # (d_hidden,)
    w_out: torch.Tensor  # (d_hidden, d_model)
    description: str = ""

    def __call__(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return torch.relu(x @ self.w_in + self.b_in) @ self.w_out  # position-wise: context unused


Layer = Attention | MLP
