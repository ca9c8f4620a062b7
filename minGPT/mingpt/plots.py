"""Attention maps like the figures of Petrov, Torr & Bibi (2024), Section 5, and learning curves."""

import matplotlib.pyplot as plt
import torch

from .report import mean_curve, seed_curves


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


def plot_learning_curves(data: dict, rows: dict, ax=None, title: str = None):
    """Held-out accuracy against training samples (log x) for the rows of a Section 5 results file:
    rows {row: label}; each seed a thin line, the mean over seeds bold. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    for (row, label), colour in zip(rows.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        curves = seed_curves(data, row)
        if not curves:
            continue
        for samples, accuracy in curves.values():
            ax.plot(samples, accuracy, color=colour, lw=0.8, alpha=0.5)
        samples, mean = mean_curve(curves)
        ax.plot(samples, mean, color=colour, lw=2.5, marker="o", ms=3,
                label=f"{label} (mean of seed{'s' if len(curves) > 1 else ''} {', '.join(curves)})")
    ax.set_xscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
