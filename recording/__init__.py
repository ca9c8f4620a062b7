"""Recording activations: the hook points and `record`, shared by the LLaMA and the minGPT model.

Both models name their hook points alike, one of each per layer, and record them the same way:

* ``attention_probs``: (batch, n_heads, queries, keys) softmax attention of each head;
* ``head_outputs``: (batch, queries, n_heads, head_dim) each head's output sum_j A_ij v_j, before the
  output projection;
* ``attention_output``: (batch, queries, dim) what the attention block adds to the residual stream.

Queries are the positions the pass computes: with a prefix, the prefix's positions 0..prefix_len-1
come first, then the tokens; keys are the prefix, any cached positions and the tokens.
"""

from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from torch import nn

NAMES = ("attention_probs", "head_outputs", "attention_output")


class HookPoint(nn.Module):
    """An identity that marks a tensor for `record`; when nothing records it, it costs one module call."""

    @property
    def active(self) -> bool:
        """Whether something records this point (a model may skip work whose only use is the recording)."""
        return bool(self._forward_hooks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@contextmanager
def record(model: nn.Module, *names: str) -> Iterator[Dict[str, List[torch.Tensor]]]:
    """Record the hook points `names` (default: all of NAMES) during the passes inside the block::

        with torch.no_grad(), record(model, "attention_probs") as recorded:
            model(tokens, prefix=prefix)
        recorded["attention_probs"][layer]  # (batch, n_heads, queries, keys), detached

    Yields {name: [one tensor per layer]}, each from the last forward pass inside the block.
    """
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown activation(s) {unknown}; the hook points are {list(NAMES)}")
    recorded: Dict[str, List[torch.Tensor]] = {}
    handles = []
    for name in names or NAMES:
        points = [m for path, m in model.named_modules() if isinstance(m, HookPoint) and path.rsplit(".", 1)[-1] == name]
        store = recorded[name] = [None] * len(points)
        for layer, point in enumerate(points):
            handles.append(point.register_forward_hook(
                lambda _m, _args, out, store=store, layer=layer: store.__setitem__(layer, out.detach())))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()
