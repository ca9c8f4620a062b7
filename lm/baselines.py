"""n-gram baselines for the stand-ins: unigram and interpolated bigram perplexities on the same tokens."""

import math
from typing import Dict

import torch


def unigram_probs(train: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Add-one smoothed token frequencies of the training stream: (vocab_size,)."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    return counts / counts.sum()


def bigram_counts(train: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(vocab_size, vocab_size) counts of (previous, next) token pairs."""
    pairs = train[:-1] * vocab_size + train[1:]
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).double().view(vocab_size, vocab_size)


def bigram_log_probs(counts: torch.Tensor, unigram: torch.Tensor, previous: torch.Tensor, nxt: torch.Tensor,
                     weight: float) -> torch.Tensor:
    """log p(next | previous) = log(weight * relative bigram frequency + (1 - weight) * unigram)."""
    row_totals = counts.sum(1)
    relative = counts[previous, nxt] / row_totals[previous].clamp(min=1.0)
    relative = torch.where(row_totals[previous] > 0, relative, unigram[nxt])
    return torch.log(weight * relative + (1 - weight) * unigram[nxt])


def perplexities(train: torch.Tensor, validation: torch.Tensor, test: torch.Tensor, vocab_size: int) -> Dict:
    """Unigram and bigram test perplexities; the bigram's interpolation weight is chosen on validation."""
    unigram = unigram_probs(train, vocab_size)
    counts = bigram_counts(train, vocab_size)
    weights = [w / 20 for w in range(1, 20)]
    val_nll = [-bigram_log_probs(counts, unigram, validation[:-1], validation[1:], w).mean().item() for w in weights]
    weight = weights[min(range(len(weights)), key=val_nll.__getitem__)]
    test_bigram = -bigram_log_probs(counts, unigram, test[:-1], test[1:], weight).mean().item()
    test_unigram = -torch.log(unigram[test[1:]]).mean().item()
    return {"unigram": math.exp(test_unigram), "bigram": math.exp(test_bigram), "bigram_weight": weight}
