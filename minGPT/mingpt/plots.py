"""Attention maps like the figures of Petrov, Torr & Bibi (2024), Section 5."""

import matplotlib.pyplot as plt
import torch


def content_attention(pattern: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """
    Attention among the content positions only: pattern (..., T, T) -> (..., T - n_S, T - n_S), the
    prefix rows and columns removed and each row rescaled to sum to 1. By Section 4 of the paper
    a prefix leaves this block unchanged in the first layer.
    """
    block = torch.as_tensor(pattern)[..., prefix_len:, prefix_len:]
    return block / block.sum(dim=-1, keepdim=True)


def plot_attention(pattern: torch.Tensor, tokens, prefix_len: int, rescale: bool = False,
                   ax=None, title: str = None):
    """
    Show one head's attention pattern (T, T), queries as rows and keys as columns.
    tokens: the T tokens of the sequence, for the axis labels (prefix positions are labelled "P").
    rescale: drop the prefix positions and rescale rows over the content (see content_attention).
    Returns the matplotlib Axes.
    """
    pattern = torch.as_tensor(pattern).detach().float().cpu()
    labels = ["P"] * prefix_len + [str(t) for t in torch.as_tensor(tokens).tolist()[prefix_len:]]
    if len(labels) != pattern.shape[-1]:
        raise ValueError(f"{len(labels)} tokens for an attention pattern of shape {tuple(pattern.shape)}")
    if rescale:
        pattern, labels = content_attention(pattern, prefix_len), labels[prefix_len:]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(pattern.numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title is not None:
        ax.set_title(title)
    return ax
