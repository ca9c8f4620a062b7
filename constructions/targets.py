"""Validation of user-given targets (strings and maps), with errors that name the problem."""
from __future__ import annotations

from collections.abc import Mapping

from .vocabulary import Vocabulary


def target_ids(text: str, vocab: Vocabulary, max_length: int, what: str) -> list[int]:
    """Token ids of `text`; rejects strings longer than `max_length` or outside the vocabulary."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > max_length:
        raise ValueError(f"{what} {text!r} is too long: {len(text)} characters, at most {max_length} supported")
    try:
        return vocab.encode(text)
    except ValueError as error:
        raise ValueError(f"{what} {text!r}: {error}") from None


def map_targets(
    mapping: Mapping[str, str], vocab: Vocabulary, key_length: int, value_length: int, pad: str | None = None
) -> dict[tuple[int, ...], list[int]]:
    """{key ids: value ids} of a map from `key_length` characters to `value_length` characters.

    With `pad`, shorter values are allowed and right-padded with it; otherwise lengths must match.
    """
    targets = {}
    for key, value in mapping.items():
        key_ids = target_ids(key, vocab, key_length, "map key")
        if len(key_ids) != key_length:
            raise ValueError(f"map key {key!r} must have exactly {key_length} character(s)")
        value_ids = target_ids(value, vocab, value_length, f"value for key {key!r}")
        if pad is not None:
            value_ids += [vocab.id(pad)] * (value_length - len(value_ids))
        elif len(value_ids) != value_length:
            raise ValueError(f"value for key {key!r} must have exactly {value_length} character(s), got {value!r}")
        targets[tuple(key_ids)] = value_ids
    return targets
