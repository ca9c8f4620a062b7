"""A stack of layers over a named residual stream, with one-hot positions and scalar decoding."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .decoding import decode_logits
from .layers import MLP, Layer
from .space import Space

TOKEN, POSITION = "token", "pos"


@dataclass
class Model:
    """The paper's simplified transformer.

    The input is the content (block "token": one-hot for real tokens, free for virtual tokens)
    concatenated with a one-hot position (block "pos"); every other block is scratch, zero at the
    input. The 1-dimensional block `readout` holds the scalar z decoded into V logits.
    """

    space: Space
    layers: list[Layer]
    readout: str

    @property
    def vocab_size(self) -> int:
        return self.space.size(TOKEN)

    @property
    def n_positions(self) -> int:
        return self.space.size(POSITION)

    def embed(self, prompt: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """prompt: (n_virtual, V) virtual tokens, tokens: (batch, n_real) ids -> (batch, n, d)."""
        n_virtual, (batch, n_real) = prompt.shape[0], tokens.shape
        n = n_virtual + n_real
        if n > self.n_positions:
            raise ValueError(f"sequence of {n} positions exceeds the model's {self.n_positions}")
        x = torch.zeros(batch, n, self.space.dim, dtype=torch.float64)
        x[:, :n_virtual, self.space[TOKEN]] = prompt
        x[:, n_virtual:, self.space[TOKEN]] = torch.nn.functional.one_hot(tokens, self.vocab_size).double()
        x[:, :, self.space.part(POSITION, n)] = torch.eye(n, dtype=torch.float64)
        return x

    def forward(
        self, x: torch.Tensor, past: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stack on new positions x (batch, n_new, d) after the earlier positions in `past`.

        past[l] is layer l's input at the earlier positions (it never changes: attention is causal).
        Returns the final stream at the new positions and the extended `past`.
        """
        contexts = []
        for l, layer in enumerate(self.layers):
            context = x if past is None else torch.cat([past[l], x], dim=-2)
            contexts.append(context)
            x = x + layer(x, context)
        return x, contexts

    def decode(self, stream: torch.Tensor) -> torch.Tensor:
        """(..., d) final stream -> (..., V) logits from the readout scalar."""
        return decode_logits(stream[..., self.space.index(self.readout)], self.vocab_size)

    def program(self) -> str:
        """One line per head / MLP: what it reads, what it writes, what it is for."""
        lines = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, MLP):
                reads, writes = self.space.blocks_used(layer.w_in, 0), self.space.blocks_used(layer.w_out, 1)
                lines.append(f"{i:2d} mlp  {_arrow(reads, writes)}  # {layer.description}")
                continue
            for head in layer.heads:
                match = self.space.blocks_used(head.query, 0), self.space.blocks_used(head.key, 0)
                moves = self.space.blocks_used(head.value, 0), self.space.blocks_used(head.output, 1)
                lines.append(
                    f"{i:2d} head T={head.inverse_temperature:g} q,k: {_arrow(*match)}  v: {_arrow(*moves)}"
                    f"  # {head.description}"
                )
        return "\n".join(lines)


def _arrow(reads: list[str], writes: list[str]) -> str:
    return f"{'+'.join(reads)} -> {'+'.join(writes)}"
