"""Construction (4): one virtual token maps any pair of user tokens (V = 10) to a token.

The virtual token has only V dimensions for V^2 outputs, so dimension a packs the row
f(a, 0..V-1) as base-V digits of one float: pack = sum_b f(a, b) V^-(b+1). Sequence: virtual
token, first user token a, second user token b. At b's position:
  attention  head 1 copies the V packed floats, head 2 copies the one-hot of a;
  MLP        rem0 = packed[a] (table selection);
  2V MLPs unpack rem0 into digits f(a, b') / V for all b' (see unpacking.py);
  MLP        z = digits[b], decoded into the output token.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .construction import Construction
from .layers import Attention
from .model import TOKEN, Model
from .primitives import lookup_head, make_space, select_mlp
from .targets import map_targets
from .unpacking import DIGITS, pack, remainder, unpacking_blocks, unpacking_layers
from .vocabulary import Vocabulary, digits

INVERSE_TEMPERATURE = 1000.0


def build_pair_map(mapping: Mapping[str, str], vocab: Vocabulary = digits(10)) -> Construction:
    targets = map_targets(mapping, vocab, key_length=2, value_length=1)
    base = vocab.size
    rows = [[targets.get((a, b), [0])[0] for b in range(base)] for a in range(base)]
    space = make_space(base, 3, ("packed", base), ("first", base), *unpacking_blocks(base, base), ("z", 1))
    heads = [
        lookup_head(space, [0, 0, 0], space[TOKEN], space["packed"], INVERSE_TEMPERATURE, "read the packed rows"),
        lookup_head(space, [0, 1, 1], space[TOKEN], space["first"], INVERSE_TEMPERATURE, "read the first user token"),
    ]
    layers = [
        Attention(heads),
        select_mlp(space, space["packed"], space["first"], space.index(remainder(0)), "rem0 = packed[first token]"),
        *unpacking_layers(space, base, base),
        select_mlp(space, space[DIGITS], space[TOKEN], space.index("z"), "z = digits[second token]"),
    ]
    prompt = torch.tensor([[pack(row, base) for row in rows]], dtype=torch.float64)  # (n_virtual=1, V)
    return Construction("pair map", Model(space, layers, "z"), prompt, vocab, user_length=2, n_new=1)
