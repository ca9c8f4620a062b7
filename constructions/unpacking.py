"""Base-V digits packed into one float, and ReLU layers that unpack them again.

A float r holding n digits, r = sum_j d_j V^-(j+1), is peeled one digit at a time:
    d_0 = #{t in 1..V-1 : V r >= t},   r' = V r - d_0   (the remaining n-1 digits).
The comparison `V r >= t` is a steep ramp a_t = relu(K (t - g/2 - V r)) followed by a clamp
s_t = relu(1 - a_t): with g the spacing of the grid V r lives on and K = 4/g, s_t is exactly 1 or
0 as long as rounding errors stay below g/4, so the digits come out exact. Two MLP layers per digit.
"""
from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch

from .layers import MLP
from .space import Space

DIGITS = "digits"  # block of the unpacked digits d_k / V, a table for `select_mlp`


def digits_as_integer(digits: Sequence[int], base: int) -> int:
    """The integer whose base-`base` digits are `digits`, most significant first."""
    value = 0
    for digit in digits:
        value = value * base + digit
    return value


def pack(digits: Sequence[int], base: int) -> float:
    """sum_j d_j base^-(j+1), correctly rounded to float64."""
    return float(Fraction(digits_as_integer(digits, base), base ** len(digits)))


def remainder(k: int) -> str:
    return f"rem{k}"


def _ramps(k: int) -> str:
    return f"ramps{k}"


def unpacking_blocks(base: int, n_digits: int) -> list[tuple[str, int]]:
    """Scratch blocks: remainders rem0 (the packed input) .. rem{n-1}, ramps per digit, digits."""
    return [
        *((remainder(k), 1) for k in range(n_digits)),
        *((_ramps(k), base - 1) for k in range(n_digits)),
        (DIGITS, n_digits),
    ]


def _ramp_mlp(space: Space, base: int, n_digits: int, k: int) -> MLP:
    """ramps_k[t-1] = relu(K (t - g/2 - V rem_k)), zero iff digit k >= t."""
    spacing = float(base) ** -(n_digits - k - 1)  # grid of V rem_k: its remaining digits
    steepness = 4 / spacing
    thresholds = torch.arange(1, base, dtype=torch.float64)
    w_in = torch.zeros(space.dim, base - 1, dtype=torch.float64)
    w_in[space.index(remainder(k)), :] = -steepness * base
    b_in = steepness * thresholds - 2  # K (t - g/2)
    w_out = torch.zeros(base - 1, space.dim, dtype=torch.float64)
    w_out[:, space[_ramps(k)]] = torch.eye(base - 1, dtype=torch.float64)
    return MLP(w_in, b_in, w_out, f"ramps: compare {base}*rem{k} with 1..{base - 1}")


def _peel_mlp(space: Space, base: int, n_digits: int, k: int) -> MLP:
    """Hidden [relu(rem_k), s_1..s_{V-1}]; writes d_k / V and (but for the last) rem_{k+1} = V rem_k - d_k."""
    hidden = base  # one pass-through unit + V-1 clamps
    w_in = torch.zeros(space.dim, hidden, dtype=torch.float64)
    w_in[space.index(remainder(k)), 0] = 1.0
    w_in[space[_ramps(k)], 1:] = -torch.eye(base - 1, dtype=torch.float64)
    b_in = torch.ones(hidden, dtype=torch.float64)
    b_in[0] = 0.0
    w_out = torch.zeros(hidden, space.dim, dtype=torch.float64)
    w_out[1:, space.index(DIGITS, k)] = 1 / base
    if k + 1 == n_digits:
        return MLP(w_in, b_in, w_out, f"peel digit {k}: d{k} = sum of clamps")
    w_out[0, space.index(remainder(k + 1))] = base
    w_out[1:, space.index(remainder(k + 1))] = -1.0
    return MLP(w_in, b_in, w_out, f"peel digit {k}: d{k} = sum of clamps, rem{k + 1} = {base}*rem{k} - d{k}")


def unpacking_layers(space: Space, base: int, n_digits: int) -> list[MLP]:
    """2 n_digits MLPs turning rem0 = pack(d, V) into the digits block (d_k / V).

    The last digit is peeled too rather than read off rem{n-1} = d / V: rem{n-1} carries the
    rounding error of rem0 amplified V^(n-1) times, the peeled digit is exact.
    """
    layers = []
    for k in range(n_digits):
        layers += [_ramp_mlp(space, base, n_digits, k), _peel_mlp(space, base, n_digits, k)]
    return layers
