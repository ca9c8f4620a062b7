"""Random targets for the exhaustive checks (shared by the tests, the report and the notebook)."""
from __future__ import annotations

import random

from .vocabulary import Vocabulary


def random_string(rng: random.Random, vocab: Vocabulary, max_length: int) -> str:
    return "".join(rng.choices(vocab.chars, k=rng.randint(1, max_length)))


def random_char_map(rng: random.Random, vocab: Vocabulary) -> dict[str, str]:
    return {x: rng.choice(vocab.chars) for x in vocab.chars}


def random_response_map(rng: random.Random, vocab: Vocabulary, max_length: int) -> dict[str, str]:
    return {x: random_string(rng, vocab, max_length) for x in vocab.chars}


def random_pair_map(rng: random.Random, vocab: Vocabulary) -> dict[str, str]:
    return {a + b: rng.choice(vocab.chars) for a in vocab.chars for b in vocab.chars}
