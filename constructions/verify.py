"""Exhaustive checks of the four constructions: exactness and smallest logit margin."""
from __future__ import annotations

import random
from dataclasses import dataclass

from . import cases
from .char_map import build_char_map
from .construction import Construction
from .pair_map import build_pair_map
from .response_map import RESPONSE_LENGTH, build_response_map
from .string_generator import MAX_LENGTH, build_string_generator
from .vocabulary import PRINTABLE, Vocabulary, digits

DEMO_STRING = "I love transformers!"


@dataclass(frozen=True)
class CheckConfig:
    """How many random targets each check draws (the issue's acceptance numbers by default)."""

    n_strings: int = 100
    n_char_maps: int = 20
    n_response_maps: int = 10
    n_pair_maps: int = 20
    seed: int = 0


@dataclass
class CheckResult:
    name: str
    n_targets: int
    n_queries: int
    n_exact: int
    min_margin: float

    @property
    def all_exact(self) -> bool:
        return self.n_exact == self.n_queries


def _run(construction: Construction, expected: dict[str, str]) -> tuple[int, float]:
    """(number of queries answered exactly, smallest margin) over all queries in `expected`."""
    queries = list(expected)
    completion = construction.generate(queries)
    n_exact = sum(text == expected[q] for q, text in zip(queries, completion.texts))
    return n_exact, completion.min_margin


def _check(name: str, build, targets: list, expected_of) -> CheckResult:
    n_exact, n_queries, margin = 0, 0, float("inf")
    for target in targets:
        expected = expected_of(target)
        exact, target_margin = _run(build(target), expected)
        n_exact, n_queries, margin = n_exact + exact, n_queries + len(expected), min(margin, target_margin)
    return CheckResult(name, len(targets), n_queries, n_exact, margin)


def check_string_generator(config: CheckConfig = CheckConfig()) -> CheckResult:
    rng = random.Random(config.seed)
    targets = [DEMO_STRING] + [cases.random_string(rng, PRINTABLE, MAX_LENGTH) for _ in range(config.n_strings)]
    return _check("(1) string generator", build_string_generator, targets, lambda s: {"": s})


def check_char_map(config: CheckConfig = CheckConfig()) -> CheckResult:
    rng = random.Random(config.seed)
    targets = [cases.random_char_map(rng, PRINTABLE) for _ in range(config.n_char_maps)]
    return _check("(2) char -> char", build_char_map, targets, dict)


def check_response_map(config: CheckConfig = CheckConfig()) -> CheckResult:
    rng = random.Random(config.seed)
    targets = [cases.random_response_map(rng, PRINTABLE, RESPONSE_LENGTH) for _ in range(config.n_response_maps)]
    return _check(
        "(3) char -> response", build_response_map, targets,
        lambda m: {x: r.ljust(RESPONSE_LENGTH) for x, r in m.items()},
    )


def pair_map_targets(config: CheckConfig, vocab: Vocabulary) -> list[dict[str, str]]:
    """Random maps plus the map with every output V-1, which packs the largest floats."""
    rng = random.Random(config.seed)
    targets = [cases.random_pair_map(rng, vocab) for _ in range(config.n_pair_maps)]
    targets.append({a + b: vocab.chars[-1] for a in vocab.chars for b in vocab.chars})
    return targets


def check_pair_map(config: CheckConfig = CheckConfig(), vocab: Vocabulary = digits(10)) -> CheckResult:
    targets = pair_map_targets(config, vocab)
    return _check(f"(4) pair -> token, V={vocab.size}", lambda m: build_pair_map(m, vocab), targets, dict)


def check_all(config: CheckConfig = CheckConfig()) -> list[CheckResult]:
    return [check(config) for check in (check_string_generator, check_char_map, check_response_map, check_pair_map)]
