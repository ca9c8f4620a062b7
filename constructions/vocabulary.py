"""Character vocabularies with error messages that name the offending input."""
from __future__ import annotations

import string
from dataclasses import dataclass


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of single characters; token id = position in `chars`."""

    chars: str

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("vocabulary characters must be distinct")

    @property
    def size(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return len(char) == 1 and char in self.chars

    def id(self, char: str) -> int:
        if char not in self:
            raise ValueError(f"character {char!r} is not in the vocabulary of {self.size} characters")
        return self.chars.index(char)

    def encode(self, text: str) -> list[int]:
        return [self.id(char) for char in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


# The paper's 94 printable ASCII characters. It does not say which 94 of the 95 (' ' to '~'); the
# space is needed by "I love transformers!", so we keep ' ' to '}' and drop '~'.
PRINTABLE = Vocabulary("".join(chr(code) for code in range(ord(" "), ord("~"))))

_DIGIT_CHARS = string.digits + string.ascii_lowercase + string.ascii_uppercase


def digits(base: int) -> Vocabulary:
    """Vocabulary of `base` digit symbols: 0-9, then a-z, then A-Z."""
    if not 2 <= base <= len(_DIGIT_CHARS):
        raise ValueError(f"base must be between 2 and {len(_DIGIT_CHARS)}, got {base}")
    return Vocabulary(_DIGIT_CHARS[:base])
