"""Construction (2): one virtual token makes the model apply any map of one character to one.

The virtual token's content is the table f(x) / V for all V characters x. A head copies it from
position 0 to the user's position, where the MLP picks entry x with the user's one-hot token.
Characters missing from the map go to the first vocabulary character.
"""
from __future__ import annotations

from collections.abc import Mapping

from .construction import Construction
from .decoding import encode
from .layers import Attention
from .model import TOKEN, Model
from .primitives import lookup_head, make_space, select_mlp
from .targets import map_targets
from .vocabulary import PRINTABLE, Vocabulary

INVERSE_TEMPERATURE = 100.0


def build_char_map(mapping: Mapping[str, str], vocab: Vocabulary = PRINTABLE) -> Construction:
    targets = map_targets(mapping, vocab, key_length=1, value_length=1)
    table = [targets.get((x,), [0])[0] for x in range(vocab.size)]
    space = make_space(vocab.size, 2, ("table", vocab.size), ("z", 1))
    fetch = lookup_head(
        space, [0, 0], space[TOKEN], space["table"], INVERSE_TEMPERATURE, "read the map table of the virtual token"
    )
    layers = [
        Attention([fetch]),
        select_mlp(space, space["table"], space[TOKEN], space.index("z"), "z = table[user token]"),
    ]
    prompt = encode(table, vocab.size)[None]  # (n_virtual=1, V)
    return Construction("char map", Model(space, layers, "z"), prompt, vocab, user_length=1, n_new=1)
