"""Building blocks shared by the constructions: a positional lookup head and a table selection MLP."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .layers import MLP, AttentionHead
from .model import POSITION, TOKEN
from .space import Space


def make_space(vocab_size: int, n_positions: int, *scratch: tuple[str, int]) -> Space:
    """Input blocks (content, one-hot position) followed by the construction's scratch blocks."""
    return Space.of((TOKEN, vocab_size), (POSITION, n_positions), *scratch)


def _width(block: slice) -> int:
    return block.stop - block.start


def lookup_head(
    space: Space, sources: Sequence[int], read: slice, write: slice, inverse_temperature: float, description: str
) -> AttentionHead:
    """Head whose query at position p attends to position sources[p] and copies its `read` into `write`.

    Scores are T for the source position and 0 elsewhere, so the copy is exact up to exp(-T) leakage.
    """
    n, d, width = space.size(POSITION), space.dim, _width(read)
    if _width(write) != width:
        raise ValueError("read and write blocks must have the same width")
    if len(sources) != n or any(not 0 <= s <= p for p, s in enumerate(sources)):
        raise ValueError("need one source per position, each at or before its query position")
    query = torch.zeros(d, n, dtype=torch.float64)  # position p -> one-hot of its source
    query[space[POSITION], :] = torch.nn.functional.one_hot(torch.tensor(list(sources)), n).double()
    key = torch.zeros(d, n, dtype=torch.float64)  # position p -> its own one-hot
    key[space[POSITION], :] = torch.eye(n, dtype=torch.float64)
    value = torch.zeros(d, width, dtype=torch.float64)
    value[read, :] = torch.eye(width, dtype=torch.float64)
    output = torch.zeros(width, d, dtype=torch.float64)
    output[:, write] = torch.eye(width, dtype=torch.float64)
    return AttentionHead(query, key, value, output, inverse_temperature, description)


def select_mlp(space: Space, table: slice, index: slice, out: int, description: str) -> MLP:
    """out = sum_k relu(table_k + index_k - 1) = table[i] for a one-hot index e_i and table in [0, 1]."""
    width, d = _width(table), space.dim
    if _width(index) != width:
        raise ValueError("table and index blocks must have the same width")
    w_in = torch.zeros(d, width, dtype=torch.float64)
    w_in[table, :] = torch.eye(width, dtype=torch.float64)
    w_in[index, :] += torch.eye(width, dtype=torch.float64)
    w_out = torch.zeros(width, d, dtype=torch.float64)
    w_out[:, out] = 1.0
    return MLP(w_in, -torch.ones(width, dtype=torch.float64), w_out, description)
