"""Construction (1): one virtual token makes the model generate any string of length <= 20.

The virtual token's content holds the string's codes c_i / V in its first 20 dimensions. A head
at every position copies them from position 0; the MLP picks code number `position` with the
one-hot position as the index, and the decoder turns it back into a character.
"""
from __future__ import annotations

import torch

from .construction import Construction
from .decoding import encode
from .layers import Attention
from .model import POSITION, TOKEN, Model
from .primitives import lookup_head, make_space, select_mlp
from .targets import target_ids
from .vocabulary import PRINTABLE, Vocabulary

MAX_LENGTH = 20
INVERSE_TEMPERATURE = 50.0


def build_string_generator(target: str, vocab: Vocabulary = PRINTABLE) -> Construction:
    ids = target_ids(target, vocab, MAX_LENGTH, "target string")
    if not ids:
        raise ValueError("target string is empty")
    space = make_space(vocab.size, MAX_LENGTH, ("string", MAX_LENGTH), ("z", 1))
    fetch = lookup_head(
        space, [0] * MAX_LENGTH, space.part(TOKEN, MAX_LENGTH), space["string"], INVERSE_TEMPERATURE,
        "every position reads the string codes of the virtual token",
    )
    layers = [
        Attention([fetch]),
        select_mlp(space, space["string"], space[POSITION], space.index("z"), "z = string[position]"),
    ]
    prompt = torch.zeros(1, vocab.size, dtype=torch.float64)  # (n_virtual=1, V)
    prompt[0, : len(ids)] = encode(ids, vocab.size)
    return Construction("string generator", Model(space, layers, "z"), prompt, vocab, user_length=0, n_new=len(ids))
