"""What the notebooks measure on trained models: attention patterns, the spread of the rescaled
content attention across prefixes (Section 4 says 0 in the first layer), and attention-block outputs."""

from typing import Dict, Optional

import matplotlib.pyplot as plt
import torch

from . import tasks
from .model import GPT
from .model import record as record_activations
from .plots import content_attention

PAPER_INPUT = [2, 6, 0, 1, 4, 6, 3, 0, 1, 2]  # the input of the paper's attention figures


def model_input(inputs: torch.Tensor, prefix: Optional[torch.Tensor], prefix_len: int, model: GPT) -> torch.Tensor:
    """(B, 10) inputs -> what the model reads, on its device: the inputs after the prefix, or after
    prefix_len placeholder zeros (the pretraining layout) when there is no prefix."""
    if model.training:
        raise ValueError("the model is in training mode, so dropout would perturb what is measured; "
                         "call model.eval() first")
    pads = torch.zeros(len(inputs), 0 if prefix is not None else prefix_len, dtype=torch.long)
    return torch.cat([pads, torch.as_tensor(inputs).cpu()], 1).to(next(model.parameters()).device)


@torch.no_grad()
def record(model: GPT, inputs: torch.Tensor, prefix: Optional[torch.Tensor], prefix_len: int,
           *names: str) -> Dict[str, list]:
    """Record activations over the whole sequence: prefix (or placeholders), input and the 10-token greedy
    output; every recording covers prefix_len + 20 positions either way, or prefix_len + 19 for a model whose
    context ends before the last output token (the paper's published models: that token is never read).
    Adds "tokens" (B, prefix_len + 20), with zeros where the prefix sits."""
    idx = model_input(inputs, prefix, prefix_len, model)
    generated = model.generate(idx, tasks.INPUT_LEN, prefix=prefix)
    fits = model.config.block_size - (prefix_len if prefix is not None else 0)  # positions the context holds
    with record_activations(model, *names) as rec:
        model(generated[:, :fits], prefix=prefix)
    rec["tokens"] = generated.cpu()
    if prefix is not None:  # zeros where the prefix sits, as in the pretraining layout
        rec["tokens"] = torch.cat([torch.zeros(len(inputs), prefix_len, dtype=torch.long), rec["tokens"]], 1)
    return rec


def content_attention_spread(model: GPT, prefixes: Dict[str, Optional[torch.Tensor]], inputs: torch.Tensor,
                             prefix_len: int, layer: int = 0) -> float:
    """Largest difference, over prefix pairs, inputs, heads and positions, of the layer's attention
    among input positions with the prefix column removed and rows rescaled. Section 4: exactly 0
    in the first layer (up to rounding), whatever the prefixes."""
    rescaled = []
    for prefix in prefixes.values():
        idx = model_input(inputs, prefix, prefix_len, model)
        with torch.no_grad(), record_activations(model, "attention_probs") as rec:
            model(idx, prefix=prefix)
        rescaled.append(content_attention(rec["attention_probs"][layer], prefix_len))
    return max((a - b).abs().max().item() for a in rescaled for b in rescaled)


def plot_bias_scatter(outputs: Dict[str, torch.Tensor], ax=None, dims=None):
    """Scatter two residual dimensions of attention-block outputs (one point per input), one colour
    per prefix. dims: default the two dimensions where the prefixes' mean outputs differ most."""
    if dims is None:
        means = torch.stack([o.mean(0) for o in outputs.values()])
        dims = means.var(0).topk(2).indices.tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    for name, out in outputs.items():
        ax.scatter(out[:, dims[0]].cpu(), out[:, dims[1]].cpu(), s=4, alpha=0.5, label=name)
    ax.set_xlabel(f"dimension {dims[0]}")
    ax.set_ylabel(f"dimension {dims[1]}")
    ax.legend(markerscale=4)
    return ax
