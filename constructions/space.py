"""Named subspaces of the residual stream (in the spirit of tracr's named bases)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Space:
    """The residual stream as an ordered list of named blocks of dimensions.

    `space["pos"]` is the slice of the stream that holds the one-hot position, so weights are
    written block by block: `w[space["pos"], space["string"]] = ...`.
    """

    blocks: tuple[tuple[str, int], ...]
    _offsets: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets, start = {}, 0
        for name, size in self.blocks:
            if name in offsets:
                raise ValueError(f"block {name!r} is declared twice")
            if size < 1:
                raise ValueError(f"block {name!r} must have at least one dimension, got {size}")
            offsets[name] = start
            start += size
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def of(cls, *blocks: tuple[str, int]) -> Space:
        return cls(tuple(blocks))

    @property
    def dim(self) -> int:
        return sum(size for _, size in self.blocks)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.blocks]

    def size(self, name: str) -> int:
        return dict(self.blocks)[name]

    def __getitem__(self, name: str) -> slice:
        start = self._offsets[name]
        return slice(start, start + self.size(name))

    def index(self, name: str, i: int = 0) -> int:
        """Stream index of dimension `i` of block `name`."""
        if not 0 <= i < self.size(name):
            raise IndexError(f"block {name!r} has {self.size(name)} dimensions, asked for {i}")
        return self._offsets[name] + i

    def part(self, name: str, stop: int) -> slice:
        """The first `stop` dimensions of block `name`."""
        start = self._offsets[name]
        return slice(start, start + min(stop, self.size(name)))

    def blocks_used(self, matrix: torch.Tensor, axis: int) -> list[str]:
        """Names of the blocks along `axis` (the stream axis of `matrix`) with a nonzero entry."""
        nonzero = (matrix != 0).any(dim=1 - axis)
        return [name for name in self.names if nonzero[self[name]].any()]
