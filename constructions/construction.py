"""A construction = frozen weights + the virtual tokens that program them; greedy generation."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .model import Model
from .vocabulary import Vocabulary


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: for these tiny matrices, thread hand-offs cost more than the math
    (30x slower on a busy 2-core machine). Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Completion:
    texts: list[str]
    margins: torch.Tensor  # (batch, n_new): top logit minus runner-up at every generated token

    @property
    def min_margin(self) -> float:
        return float(self.margins.min())


@dataclass
class Construction:
    """Model weights plus the soft prompt; queries are `user_length` real tokens."""

    name: str
    model: Model
    prompt: torch.Tensor  # (n_virtual, V): input vectors, not vocabulary embeddings
    vocab: Vocabulary
    user_length: int
    n_new: int  # tokens generated per query

    def generate(self, queries: Sequence[str]) -> Completion:
        """Greedy autoregressive generation: each output token is appended and fed back."""
        for query in queries:
            if len(query) != self.user_length:
                raise ValueError(f"{self.name} expects {self.user_length} user characters, got {query!r}")
        tokens = torch.tensor([self.vocab.encode(q) for q in queries], dtype=torch.long)
        tokens = tokens.reshape(len(queries), self.user_length)
        margins, past, n_done = [], None, 0
        with single_thread():
            for _ in range(self.n_new):
                x = self.model.embed(self.prompt, tokens)[:, n_done:]  # positions not run yet
                stream, past = self.model.forward(x, past)
                n_done += x.shape[1]
                top2 = self.model.decode(stream[:, -1]).topk(2, dim=-1)  # (batch, 2)
                margins.append(top2.values[:, 0] - top2.values[:, 1])
                tokens = torch.cat([tokens, top2.indices[:, :1]], dim=1)
        texts = [self.vocab.decode(row[self.user_length:]) for row in tokens]
        return Completion(texts, torch.stack(margins, dim=1))

    def __call__(self, query: str = "") -> str:
        return self.generate([query]).texts[0]
