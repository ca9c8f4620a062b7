"""Hook points: named identity modules whose tensors can be recorded on demand."""

from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity that marks a tensor for `record`; when nothing records it, it costs one module call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@contextmanager
def record(model: nn.Module, *names: str) -> Iterator[Dict[str, List[torch.Tensor]]]:
    """Record what passes through the model's hook points while the context is open.

    `names` selects hook points by the end of their qualified name (e.g. "attention_probs",
    "layers.0.attention.head_outputs"); none selects all. Yields {hook name: [tensor per forward call]};
    the tensors are kept as they are (attached to the autograd graph when gradients are on).
    """
    recorded: Dict[str, List[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, HookPoint) and (not names or name.endswith(names)):
            store = recorded.setdefault(name, [])
            handles.append(module.register_forward_hook(lambda _m, _args, out, store=store: store.append(out)))
    if not handles:
        available = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, HookPoint)})
        raise ValueError(f"no hook point name ends with {names}; the model's hook points are named {available}")
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()
