"""Plots and Markdown for benchmark results.

>>> plot_confusion(confusion=[[5, 1], [2, 7]], labels=["sad", "angry"], title="emodb", path="cm.png")  # doctest: +SKIP

Every figure is sized for its content (labels are never cut: ``bbox_inches="tight"``) and
written with matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["markdown_table", "plot_confusion", "plot_few_shot", "plot_layers"]


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return p


def plot_confusion(*, confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str,
                   path: str | os.PathLike) -> Path:  # fmt: skip
    """Row-normalised confusion matrix (rows: true class), with counts in each cell."""
    cm = np.asarray(confusion, dtype=float)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.75 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if rates[i, j] > 0.6 else "black"
            ax.text(j, i, f"{rates[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _save(fig, path)


def plot_layers(*, ua: Mapping[str, Sequence[float]], title: str, path: str | os.PathLike,
                chance: Mapping[str, float] | None = None) -> Path:  # fmt: skip
    """UA (%) of a probe on each single layer, one line per corpus."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, values in sorted(ua.items()):
        ax.plot(range(len(values)), 100 * np.asarray(values), marker="o", label=name)
    if chance:
        for name, value in chance.items():
            ax.axhline(100 * value, color="grey", lw=0.6, ls=":")
    n = max((len(v) for v in ua.values()), default=0)
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_xlabel("hidden state (0 = input embedding)")
    ax.set_ylabel("UA (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(fig, path)


def plot_few_shot(*, curves: Mapping[str, Mapping[int, tuple[float, float]]], title: str,
                  path: str | os.PathLike) -> Path:  # fmt: skip
    """UA (%) against K labelled utterances per class, mean and standard deviation over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in sorted(curves.items()):
        ks = sorted(points)
        mean = 100 * np.array([points[k][0] for k in ks])
        std = 100 * np.array([points[k][1] for k in ks])
        ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.set_xticks(sorted({k for points in curves.values() for k in points}))
    ax.set_xlabel("K labelled target utterances per class")
    ax.set_ylabel("UA (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(fig, path)


def markdown_table(*, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
