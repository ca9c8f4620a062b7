"""Figures: the decoding lines, and weight matrices drawn on their named subspaces."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import SymLogNorm

from .decoding import decoding_lines
from .layers import MLP, Attention
from .model import Model
from .space import Space


def plot_decoding_lines(vocab_size: int, ax=None, z_range: tuple[float, float] = (0.0, 1.0)):
    """The V logit lines over z; their upper envelope switches token at z = (c + 1/2)/V."""
    ax = ax or plt.gca()
    z = torch.linspace(*z_range, 501, dtype=torch.float64)
    slope, intercept = decoding_lines(vocab_size)
    codes = torch.arange(vocab_size) / vocab_size
    shown = (codes >= z_range[0] - 1 / vocab_size) & (codes <= z_range[1] + 1 / vocab_size)  # lines near the top
    logits = z[:, None] * slope[shown] + intercept[shown]  # (501, shown)
    ax.plot(z, logits, lw=0.8)
    ax.plot(z, logits.max(dim=1).values, "k", lw=2, label="max logit")
    inside = codes[(codes >= z_range[0]) & (codes <= z_range[1])]
    ax.vlines(inside, logits.min(), logits.max(), colors="0.7", lw=0.5, linestyles=":", label="codes c/V")
    ax.set(xlabel="z", ylabel="logit", title=f"decoding lines, V={vocab_size}: token c wins near z = c/V")
    ax.legend(loc="lower center")
    return ax


def _stream_axis(space: Space, matrix: torch.Tensor, axis: int) -> tuple[torch.Tensor, list[tuple[str, int, int]]]:
    """Keep only the blocks used along `axis`; return the indices kept and (name, start, stop) for labels."""
    kept, spans = [], []
    for name in space.blocks_used(matrix, axis):
        block = space[name]
        spans.append((name, len(kept), len(kept) + block.stop - block.start))
        kept += range(block.start, block.stop)
    return torch.tensor(kept), spans


def _panel(ax, space: Space, matrix: torch.Tensor, stream_rows: bool, stream_cols: bool, title: str):
    """imshow of `matrix` with unused stream blocks dropped and the used ones labelled."""
    row_spans = col_spans = []
    if stream_rows:
        keep, row_spans = _stream_axis(space, matrix, 0)
        matrix = matrix[keep]
    if stream_cols:
        keep, col_spans = _stream_axis(space, matrix, 1)
        matrix = matrix[:, keep]
    scale = float(matrix.abs().max()) or 1.0
    ax.imshow(matrix, cmap="RdBu_r", norm=SymLogNorm(1e-2, vmin=-scale, vmax=scale), aspect="auto",
              interpolation="nearest")
    for spans, set_ticks, line in ((row_spans, ax.set_yticks, ax.axhline), (col_spans, ax.set_xticks, ax.axvline)):
        if spans:
            set_ticks([(start + stop - 1) / 2 for _, start, stop in spans], [name for name, _, _ in spans])
            for _, start, _ in spans[1:]:
                line(start - 0.5, color="k", lw=0.5)
    ax.set(xlabel="" if stream_cols else "hidden unit", ylabel="" if stream_rows else "hidden unit")
    ax.set_title(f"{title}  (|w| <= {scale:.2g})", fontsize=9)


Panel = tuple[Space, torch.Tensor, bool, bool, str]  # (space, matrix, rows on stream?, cols on stream?, title)


def _panel_rows(model: Model, layer_index: int) -> list[list[Panel]]:
    """One row of two panels per MLP or attention head of the layer."""
    layer = model.layers[layer_index]
    if isinstance(layer, MLP):
        space = Space.of(*model.space.blocks, ("bias", 1))  # draw the bias as one more input row
        w_in = torch.cat([layer.w_in, layer.b_in[None]])
        return [[(space, w_in, True, False, f"L{layer_index} mlp: w_in, b_in"),
                 (model.space, layer.w_out, False, True, f"L{layer_index} mlp: w_out")]]
    assert isinstance(layer, Attention)
    rows = []
    for h, head in enumerate(layer.heads):
        qk = head.inverse_temperature * head.query @ head.key.T  # (d, d) bilinear score form
        rows.append([(model.space, qk, True, True, f"L{layer_index} head {h}: T W_Q W_K^T"),
                     (model.space, head.value @ head.output, True, True, f"L{layer_index} head {h}: W_V W_O")])
    return rows


def plot_weights(model: Model, layer_indices: list[int] | None = None, title: str = ""):
    """The chosen layers' matrices (all layers by default), one row per MLP or attention head.

    Red positive, blue negative, symmetric-log colour scale saturating at the largest |w| of the panel.
    """
    indices = range(len(model.layers)) if layer_indices is None else layer_indices
    rows = [row for i in indices for row in _panel_rows(model, i % len(model.layers))]
    fig, axes = plt.subplots(len(rows), 2, figsize=(7.5, 2.4 * len(rows)), squeeze=False, layout="constrained")
    for row, row_axes in zip(rows, axes):
        for panel, ax in zip(row, row_axes):
            _panel(ax, *panel)
    fig.suptitle(title)
    return fig
