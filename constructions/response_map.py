"""Construction (3): 10 virtual tokens map one user character to a response of <= 10 characters.

Virtual token j holds the table of j-th response characters, f(x)_j / V for every x. The model
always writes 10 characters (shorter responses are right-padded with `fill`). Sequence:
10 virtual tokens, the user token at position 10, then the fed-back response: 20 positions.
At position 10 + j one head reads the user token (position 10), another reads virtual token j;
the MLP picks that table's entry for the user token.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .construction import Construction
from .decoding import encode
from .layers import Attention
from .model import TOKEN, Model
from .primitives import lookup_head, make_space, select_mlp
from .targets import map_targets
from .vocabulary import PRINTABLE, Vocabulary

N_VIRTUAL = RESPONSE_LENGTH = 10
INVERSE_TEMPERATURE = 100.0


def build_response_map(mapping: Mapping[str, str], vocab: Vocabulary = PRINTABLE, fill: str = " ") -> Construction:
    targets = map_targets(mapping, vocab, key_length=1, value_length=RESPONSE_LENGTH, pad=fill)
    blank = [vocab.id(fill)] * RESPONSE_LENGTH
    responses = torch.tensor([targets.get((x,), blank) for x in range(vocab.size)])  # (V, 10)
    n_positions = N_VIRTUAL + RESPONSE_LENGTH  # the last response token is never fed back
    space = make_space(vocab.size, n_positions, ("user", vocab.size), ("table", vocab.size), ("z", 1))
    user_at = [p if p < N_VIRTUAL else N_VIRTUAL for p in range(n_positions)]
    table_at = [p if p < N_VIRTUAL else p - N_VIRTUAL for p in range(n_positions)]
    heads = [
        lookup_head(space, user_at, space[TOKEN], space["user"], INVERSE_TEMPERATURE, "read the user token"),
        lookup_head(
            space, table_at, space[TOKEN], space["table"], INVERSE_TEMPERATURE,
            "response step j reads virtual token j",
        ),
    ]
    layers = [
        Attention(heads),
        select_mlp(space, space["table"], space["user"], space.index("z"), "z = table[user token]"),
    ]
    prompt = encode(responses.T, vocab.size)  # (n_virtual=10, V)
    model = Model(space, layers, "z")
    return Construction("response map", model, prompt, vocab, user_length=1, n_new=RESPONSE_LENGTH)
