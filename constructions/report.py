"""Smallest logit margins of the four constructions and the precision limit of construction (4).

    python -m constructions.report [--quick] [--seed N] [--max-base V]
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from fractions import Fraction

from .unpacking import digits_as_integer, pack
from .verify import CheckConfig, CheckResult, check_all, check_pair_map, pair_map_targets
from .vocabulary import digits

QUICK_CONFIG = CheckConfig(n_strings=10, n_char_maps=2, n_response_maps=1, n_pair_maps=2)
FLOAT64_MANTISSA_BITS = 53


@dataclass
class BaseResult:
    """Construction (4) at base V: does packing V base-V digits into a float64 survive, do the layers?"""

    base: int
    bits_needed: float  # log2 of the V^V distinct packed values of one row
    packing_exact: bool  # every tested row rounds back to its digits from the float alone
    check: CheckResult


def _packing_exact(rows: list[list[int]], base: int) -> bool:
    """True when each row's float, read exactly, is nearer its own grid point than any other."""
    return all(
        round(Fraction(pack(row, base)) * base ** len(row)) == digits_as_integer(row, base) for row in rows
    )


def sweep_bases(max_base: int = 16, n_maps: int = 5, seed: int = 0) -> list[BaseResult]:
    results = []
    for base in range(2, max_base + 1):
        vocab = digits(base)
        config = CheckConfig(n_pair_maps=n_maps, seed=seed)
        maps = pair_map_targets(config, vocab)
        rows = [[vocab.id(m[a + b]) for b in vocab.chars] for m in maps for a in vocab.chars]
        check = check_pair_map(config, vocab)
        results.append(BaseResult(base, base * math.log2(base), _packing_exact(rows, base), check))
    return results


def largest_working_base(results: list[BaseResult]) -> int:
    """Largest V such that (4) is exact for every base up to V."""
    largest = 1
    for result in results:
        if not result.check.all_exact:
            break
        largest = result.base
    return largest


def format_margins(checks: list[CheckResult]) -> str:
    lines = [f"{'construction':<26}{'targets':>8}{'queries':>9}{'exact':>7}{'min margin':>14}"]
    for c in checks:
        lines.append(f"{c.name:<26}{c.n_targets:>8}{c.n_queries:>9}{c.n_exact:>7}{c.min_margin:>14.6g}")
    return "\n".join(lines)


def format_sweep(results: list[BaseResult]) -> str:
    lines = [f"{'V':>3}{'bits V*log2(V)':>16}{'packing exact':>15}{'queries exact':>17}"]
    for r in results:
        lines.append(
            f"{r.base:>3}{r.bits_needed:>16.1f}{str(r.packing_exact):>15}"
            f"{f'{r.check.n_exact}/{r.check.n_queries}':>17}"
        )
    largest = largest_working_base(results)
    lines.append(
        f"largest V for (4) in float64: {largest}. Each virtual-token dimension packs one row of V base-V "
        f"digits, V^V values that need V*log2(V) bits; a float64 has {FLOAT64_MANTISSA_BITS} significant bits "
        f"({largest}*log2({largest}) = {largest * math.log2(largest):.1f} fits, "
        f"{largest + 1}*log2({largest + 1}) = {(largest + 1) * math.log2(largest + 1):.1f} does not), "
        "so beyond it neighbouring rows round to the same float and digits are lost before any layer runs."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few targets per construction instead of all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random targets")
    parser.add_argument("--max-base", type=int, default=16, help="largest V tried for construction (4)")
    args = parser.parse_args(argv)
    config = replace(QUICK_CONFIG if args.quick else CheckConfig(), seed=args.seed)
    print("Smallest logit margin (top logit minus runner-up) over all tested queries")
    print(format_margins(check_all(config)))
    print(f"\n(4) against the base V (random maps + the all-(V-1) map, seed {args.seed})")
    print(format_sweep(sweep_bases(args.max_base, n_maps=2 if args.quick else 5, seed=args.seed)))


if __name__ == "__main__":
    main()
