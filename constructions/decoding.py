"""The paper's scalar token code: token c is the number c/V, decoded by V affine logit lines."""
from __future__ import annotations

import torch


def encode(ids, vocab_size: int) -> torch.Tensor:
    """Token ids -> their scalar codes c/V (all in [0, 1))."""
    return torch.as_tensor(ids, dtype=torch.float64) / vocab_size


def decoding_lines(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slopes and intercepts of the logit lines: logit_c(z) = (2c/V - 1) z + 0.25 - (c/V)^2.

    logit_c(z) = z^2 - z + 0.25 - (z - c/V)^2, so the top line at z is the c nearest to V z.
    """
    c = torch.arange(vocab_size, dtype=torch.float64) / vocab_size
    return 2 * c - 1, 0.25 - c**2


def decode_logits(z: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """z: (...,) scalar codes -> (..., V) logits."""
    slope, intercept = decoding_lines(vocab_size)
    return z[..., None] * slope + intercept
