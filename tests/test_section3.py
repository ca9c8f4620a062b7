"""Section 3 on the LLaMA stand-in: the committed counts reproduce from the committed checkpoint, the
measures are right on hand-made cases, and the committed run shows claim 1's measurable form."""

import json

import pytest
import torch

from core.records import ROOT
from lm import virtual_tokens as vt
from lm.stand_ins import load_llama

RECORD = ROOT / "results" / "section3" / "llama_token_vs_soft_token.json"


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


@pytest.fixture(scope="module")
def model():
    return load_llama(max_seq_len=64, max_batch_size=256, device="cpu").model


def test_hard_token_count_reproduces_from_the_checkpoint(record, model):
    completions = vt.greedy_completions(model, record["sweep"]["completion_len"],
                                        token_ids=torch.arange(record["hard"]["tried"]), progress=False)
    assert len({tuple(row) for row in completions.tolist()}) == record["hard"]["unique"]


def test_matched_gaussian_count_reproduces_for_the_first_512(record, model):
    """The first 512 virtual tokens of the seeded sampler (unique among them: the curve's second point)."""
    vectors = vt.matched_gaussian(vt.embedding_matrix(model), record["virtual"]["matched Gaussian"]["tried"],
                                  torch.Generator().manual_seed(record["sweep"]["seed"]))[:512]
    completions = vt.greedy_completions(model, record["sweep"]["completion_len"], virtual_tokens=vectors,
                                        progress=False)
    assert len({tuple(row) for row in completions.tolist()}) == record["curves_every_256"]["matched Gaussian"][1]


def test_optimised_virtual_tokens_beat_the_best_hard_token_on_both_kinds(record):
    for kind in ("held-out text", "random tokens"):
        for length in record["sweep"]["fit_lengths"]:
            row = record["fits"][f"{kind}, length {length}"]
            assert row["leading"] > row["hard_leading"], (kind, length, row)


def test_unique_curve_and_matches_on_hand_made_cases():
    completions = torch.tensor([[1, 2], [1, 2], [3, 4], [1, 3], [3, 4]])
    assert vt.unique_curve(completions).tolist() == [1, 1, 2, 3, 3]
    targets = torch.tensor([[1, 2, 5], [1, 9, 9], [7, 7, 7]])
    decoded = torch.tensor([[1, 2, 6], [1, 9, 9], [0, 7, 7]])
    assert vt.leading_matches(decoded, targets).tolist() == [2, 3, 0]
    hard = torch.tensor([[1, 2, 5, 0], [7, 0, 0, 0], [1, 9, 0, 0]])
    assert vt.best_hard_token_matches(hard, targets).tolist() == [3, 2, 1]
    assert vt.share_of_one_token(torch.tensor([[4, 4, 4], [4, 5, 4]])) == 0.5


def test_samplers_follow_the_embedding_statistics():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(500, 6, generator=generator, dtype=torch.float64) @ torch.randn(6, 6, generator=generator,
                                                                                          dtype=torch.float64) + 3
    drawn = vt.matched_gaussian(embeddings, 200_000, generator).double()
    assert torch.allclose(drawn.mean(0), embeddings.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(drawn.T), torch.cov(embeddings.T), atol=0.1 * torch.cov(embeddings.T).abs().max())
    mixtures = vt.convex_mixtures(embeddings, 100, generator).double()
    low, high = embeddings.min(0).values, embeddings.max(0).values
    assert ((mixtures >= low - 1e-5) & (mixtures <= high + 1e-5)).all()  # inside the embeddings' bounding box
