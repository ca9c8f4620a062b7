"""Figures: the decoding lines, and weight matrices drawn on their named subspaces."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import SymLogNorm

from .decoding import decoding_lines
from .layers import MLP, Attention
from .model import Model
from .space import Space


def plot_decoding_lines(vocab_size: int, ax=None, z_range: tuple[float, float] = (0.0, 1.0),
                        chars: str | None = None):
    """The V logit lines over z; their upper envelope switches token at z = (c + 1/2)/V.

    One legend entry per drawn line (token id c, and its character when `chars` is given), placed
    to the right of the axes.
    """
    ax = ax or plt.gca()
    z = torch.linspace(*z_range, 501, dtype=torch.float64)
    slope, intercept = decoding_lines(vocab_size)
    codes = torch.arange(vocab_size) / vocab_size
    shown = (codes >= z_range[0] - 1 / vocab_size) & (codes <= z_range[1] + 1 / vocab_size)  # lines near the top
    logits = z[:, None] * slope[shown] + intercept[shown]  # (501, shown)
    for column, c in enumerate(torch.nonzero(shown).flatten().tolist()):
        label = f"token {c}" + (f" {chars[c]!r}" if chars is not None else "")
        ax.plot(z, logits[:, column], lw=0.8, label=label)
    ax.plot(z, logits.max(dim=1).values, "k", lw=2, label="max logit")
    inside = codes[(codes >= z_range[0]) & (codes <= z_range[1])]
    ax.vlines(inside, logits.min(), logits.max(), colors="0.7", lw=0.5, linestyles=":", label="codes c/V")
    ax.set(xlabel="z", ylabel="logit", title=f"decoding lines, V={vocab_size}: token c wins near z = c/V")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="line", title_fontsize=8)
    return ax


def _stream_axis(space: Space, matrix: torch.Tensor, axis: int) -> tuple[torch.Tensor, list[tuple[str, int, int]]]:
    """Keep only the blocks used along `axis`; return the indices kept and (name, start, stop) for labels."""
    kept, spans = [], []
    for name in space.blocks_used(matrix, axis):
        block = space[name]
        spans.append((name, len(kept), len(kept) + block.stop - block.start))
        kept += range(block.start, block.stop)
    return torch.tensor(kept), spans


def _panel(ax, space: Space, matrix: torch.Tensor, stream_rows: bool, stream_cols: bool, title: str,
           ylabel: str, xlabel: str):
    """imshow of `matrix` with unused stream blocks dropped and the used ones labelled, with a colour bar."""
    row_spans = col_spans = []
    if stream_rows:
        keep, row_spans = _stream_axis(space, matrix, 0)
        matrix = matrix[keep]
    if stream_cols:
        keep, col_spans = _stream_axis(space, matrix, 1)
        matrix = matrix[:, keep]
    scale = float(matrix.abs().max()) or 1.0
    linear = 1e-2  # SymLogNorm's linear range: |w| below it is drawn on a linear scale
    image = ax.imshow(matrix, cmap="RdBu_r", norm=SymLogNorm(linear, vmin=-scale, vmax=scale), aspect="auto",
                      interpolation="nearest")
    ticks = [-scale, 0.0, scale]
    if scale > linear:  # and a power of ten half-way (on the log scale) between the linear range and |w|max
        middle = 10.0 ** round(math.log10(math.sqrt(scale * linear)))
        ticks = [-scale, -middle, 0.0, middle, scale]
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.08, pad=0.02, ticks=ticks, format="%.2g")
    colorbar.set_label("weight (symlog)", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    for spans, set_ticks, line in ((row_spans, ax.set_yticks, ax.axhline), (col_spans, ax.set_xticks, ax.axvline)):
        if spans:
            set_ticks([(start + stop - 1) / 2 for _, start, stop in spans], [name for name, _, _ in spans])
            for _, start, _ in spans[1:]:
                line(start - 0.5, color="k", lw=0.5)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(f"{title}  (|w| <= {scale:.2g})", fontsize=9)


# (space, matrix, rows on stream?, cols on stream?, title, row axis label, column axis label)
Panel = tuple[Space, torch.Tensor, bool, bool, str, str, str]


def _panel_rows(model: Model, layer_index: int) -> list[list[Panel]]:
    """One row of two panels per MLP or attention head of the layer."""
    layer = model.layers[layer_index]
    if isinstance(layer, MLP):
        space = Space.of(*model.space.blocks, ("bias", 1))  # draw the bias as one more input row
        w_in = torch.cat([layer.w_in, layer.b_in[None]])
        return [[(space, w_in, True, False, f"L{layer_index} mlp: w_in, b_in", "stream block read", "hidden unit"),
                 (model.space, layer.w_out, False, True, f"L{layer_index} mlp: w_out", "hidden unit",
                  "stream block written")]]
    assert isinstance(layer, Attention)
    rows = []
    for h, head in enumerate(layer.heads):
        qk = head.inverse_temperature * head.query @ head.key.T  # (d, d) bilinear score form
        rows.append([(model.space, qk, True, True, f"L{layer_index} head {h}: T W_Q W_K^T", "query-side block",
                      "key-side block"),
                     (model.space, head.value @ head.output, True, True, f"L{layer_index} head {h}: W_V W_O",
                      "stream block read", "stream block written")])
    return rows


def plot_weights(model: Model, layer_indices: list[int] | None = None, title: str = ""):
    """The chosen layers' matrices (all layers by default), one row per MLP or attention head.

    Red positive, blue negative, symmetric-log colour scale saturating at the largest |w| of the panel,
    shown by a colour bar beside each panel.
    """
    indices = range(len(model.layers)) if layer_indices is None else layer_indices
    rows = [row for i in indices for row in _panel_rows(model, i % len(model.layers))]
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 2.4 * len(rows)), squeeze=False, layout="constrained")
    for row, row_axes in zip(rows, axes):
        for panel, ax in zip(row, row_axes):
            _panel(ax, *panel)
    fig.suptitle(title)
    return fig
