"""The paper's Section 5 and 6 numbers and the claims our runs are checked against.

Accuracies in percent, keyed like our results files: row (pretrained / finetuned_<task> /
prefix_<task> / lora name) -> test task. The paper reports numbers, not bounds: the thresholds of `CLAIMS`
(>= 85, <= 3, >= 50, ...) are this project's reading of its claims, and every table shows the paper's number
beside them (`PAPER_ACCURACY`).
"""

from typing import Dict, List, NamedTuple

from . import tasks

MIX = tasks.PRETRAIN_TASKS   # ↗ ↘ +1 +2, the pretraining mixture

PAPER_ACCURACY: Dict[str, Dict[str, Dict[str, float]]] = {
    "A": {"pretrained": {"sort_asc": 91.41, "sort_desc": 0.0},
          "finetuned_sort_desc": {"sort_desc": 84.91},
          "prefix_sort_desc": {"sort_desc": 0.00}},
    "B": {"pretrained": dict(zip(MIX, (31.44, 19.16, 29.97, 15.62))),
          "prefix_sort_asc": dict(zip(MIX, (94.09, 0.00, 0.00, 0.00))),
          "prefix_sort_desc": dict(zip(MIX, (0.03, 83.72, 0.22, 0.66))),
          "prefix_add1": dict(zip(MIX, (0.00, 0.00, 99.62, 0.00))),
          "prefix_add2": dict(zip(MIX, (0.00, 0.00, 0.16, 99.78)))},
    "C": {"pretrained": dict(zip(MIX + ("sort_asc_add1", "double_hist"), (5.91, 27.75, 39.66, 22.81, 0.0, 0.0))),
          "prefix_sort_asc": {"sort_asc": 99.69}, "prefix_sort_desc": {"sort_desc": 99.59},
          "prefix_add1": {"add1": 100.00}, "prefix_add2": {"add2": 99.97},
          "prefix_sort_asc_add1": {"sort_asc_add1": 71.59}, "prefix_double_hist": {"double_hist": 0.62}},
    "D": {"prefix_double_hist": {"double_hist": 0.31}, "lora_mlp_attn_out": {"double_hist": 92.38}},
}


class Claim(NamedTuple):
    experiment: str
    row: str
    task: str
    at_least: float = None   # the accuracy must be >= this
    at_most: float = None    # or <= this

    def holds(self, accuracy: float) -> bool:
        return (self.at_least is None or accuracy >= self.at_least) and \
               (self.at_most is None or accuracy <= self.at_most)

    def __str__(self):
        bound = f">= {self.at_least}" if self.at_least is not None else f"<= {self.at_most}"
        return f"{self.experiment}: {self.row} on {self.task} {bound} %"

    @property
    def paper(self):
        """The paper's own accuracy for this row and task (None where it reports none)."""
        return PAPER_ACCURACY.get(self.experiment, {}).get(self.row, {}).get(self.task)


def _b_claims() -> List[Claim]:
    return [Claim("B", f"prefix_{p}", t, at_least=80.0) if p == t else Claim("B", f"prefix_{p}", t, at_most=2.0)
            for p in MIX for t in MIX]


CLAIMS: List[Claim] = [
    Claim("A", "pretrained", "sort_asc", at_least=85.0),
    Claim("A", "finetuned_sort_desc", "sort_desc", at_least=75.0),
    Claim("A", "prefix_sort_desc", "sort_desc", at_most=2.0),
    *_b_claims(),
    *[Claim("C", f"prefix_{t}", t, at_least=95.0) for t in MIX],
    Claim("C", "prefix_sort_asc_add1", "sort_asc_add1", at_least=50.0),
    Claim("C", "prefix_double_hist", "double_hist", at_most=3.0),
    Claim("D", "lora_mlp_attn_out", "double_hist", at_least=85.0),
    Claim("D", "prefix_double_hist", "double_hist", at_most=3.0),
]


def check(experiment: str, accuracy: Dict[str, Dict[str, float]]) -> List[tuple]:
    """(claim, our accuracy, holds) for each claim about `experiment` (accuracy: one seed's table)."""
    return [(c, accuracy[c.row][c.task], c.holds(accuracy[c.row][c.task]))
            for c in CLAIMS if c.experiment == experiment]
