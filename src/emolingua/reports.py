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

__all__ = ["markdown_table", "plot_bars", "plot_confusion", "plot_few_shot", "plot_latents", "plot_layers", "transfer_report"]


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


# ----------------------------------------------------------------------- embedding transfer
#: Das et al. 2022's published balanced accuracies (5-fold CV, mean), for the tables beside ours
PUBLISHED_BACC = {("emodb", "N-S-A"): {"dae": 0.72, "dae-metric-act": 0.74, "dae-metric-val": 0.78, "svc on egemaps": 0.89},
                  ("urdu", "N-S-H-A"): {"dae": 0.38, "dae-metric-act": 0.41, "dae-metric-val": 0.43, "svc on egemaps": 0.82}}  # fmt: skip


def plot_latents(*, z: np.ndarray, corpus: np.ndarray, label: np.ndarray, title: str, path: str | os.PathLike) -> Path:
    """One panel per corpus: the 2-d latent coloured by emotion, with marginal densities on the edges."""
    names = list(dict.fromkeys(corpus.tolist()))
    classes = sorted(set(label.tolist()))
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(classes)}
    lo, hi = np.percentile(z, [0.5, 99.5], axis=0)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        on = corpus == name
        for c in classes:
            rows = on & (label == c)
            if rows.any():
                ax.scatter(z[rows, 0], z[rows, 1], s=5, alpha=0.6, color=colours[c], label=c)
        ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[1], hi[1]), ax.set_title(name, fontsize=9)
        top, right = ax.inset_axes([0, 1.0, 1, 0.18]), ax.inset_axes([1.0, 0, 0.18, 1])
        for c in classes:
            rows = on & (label == c)
            if rows.sum() > 1:
                top.hist(z[rows, 0], bins=30, range=(lo[0], hi[0]), histtype="step", density=True, color=colours[c])
                right.hist(z[rows, 1], bins=30, range=(lo[1], hi[1]), histtype="step", density=True,
                           color=colours[c], orientation="horizontal")  # fmt: skip
        top.axis("off"), right.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in classes]
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(wspace=0.4)
    fig.suptitle(title, y=1.12)
    return _save(fig, path)


def plot_bars(*, values: Mapping[str, Mapping[str, tuple[float, float]]], title: str, ylabel: str,
              path: str | os.PathLike, published: Mapping[str, Mapping[str, float]] | None = None) -> Path:  # fmt: skip
    """Grouped bars: groups (e.g. corpora) x series (models), mean with an sd whisker; published
    values, where given, as black ticks on the bar of the same group and series."""
    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.22 * len(groups) * max(1, len(series)) + 2)), 3.6))
    for j, s in enumerate(series):
        x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
        m = [values[g].get(s, (np.nan, np.nan))[0] for g in groups]
        e = [values[g].get(s, (np.nan, np.nan))[1] for g in groups]
        ax.bar(x, m, width, yerr=e, label=s, capsize=2)
        for xi, g in zip(x, groups):
            if published and s in published.get(g, {}):
                ax.plot([xi - width / 2, xi + width / 2], [published[g][s]] * 2, color="black", lw=2)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def transfer_report(measures, *, cfg: Mapping[str, object], notes: Sequence[str], out: str | os.PathLike) -> Path:  # noqa: ANN001
    """report.md and figures of :func:`emolingua.transfer.run_transfer`'s measures (a DataFrame)."""
    out = Path(out)
    m = measures.copy()
    for col in ("classes", "dimension"):
        m[col] = m[col].fillna("") if col in m else ""
    m["corpus_short"] = m["corpus"].str.split(" ").str[0]
    stats = m.groupby(["model", "corpus", "corpus_short", "metric", "classes", "dimension"])["value"].agg(["mean", "std", "count"]).reset_index()
    corpora = list(dict.fromkeys(stats.sort_values("corpus", key=lambda c: c.str.contains("held-out") * -1)["corpus"]))
    models = list(dict.fromkeys(m["model"]))

    def cell(model: str, corpus: str, metric: str, classes: str = "", dimension: str = "") -> str:
        r = stats[(stats.model == model) & (stats.corpus == corpus) & (stats.metric == metric) &
                  (stats.classes == classes) & (stats.dimension == dimension)]  # fmt: skip
        if r.empty or not np.isfinite(r["mean"].iat[0]):
            return ""
        sd = r["std"].iat[0]
        return f"{r['mean'].iat[0]:.2f}" + (f" ± {sd:.2f}" if r["count"].iat[0] > 1 and np.isfinite(sd) else "")

    lines = [f"# emolingua transfer: trained on {cfg['source']}, features {cfg['features']}", "",
             f"Models trained on {cfg['source']} only ({cfg['folds']} folds by speaker, seeds {list(cfg['seeds'])}); "
             "the frozen encoder applied unchanged to every corpus. Mean ± sd over folds and seeds. "
             "All speaker independent (SI): the source's row is its held-out speakers; the targets were never seen. "
             "Activation/valence on corpora without ratings are the taxonomy's priors shifted by intensity "
             "(one value per class and level): a coarse stand-in for rated labels.", ""]  # fmt: skip
    for metric, title in (("bacc", "Balanced accuracy of a linear SVC on the latent, speaker-grouped CV within each corpus"),
                          ("bacc-zero-shot", "Balanced accuracy, zero-shot: the SVC fitted on the source's training latents")):
        for classes in [c for c in dict.fromkeys(stats.loc[stats.metric == metric, "classes"]) if c]:
            rows = [[mo, *(cell(mo, c, metric, classes) for c in corpora)] for mo in models
                    if any(cell(mo, c, metric, classes) for c in corpora)]  # fmt: skip
            lines += [f"## {title}: {classes} (SI)", "", markdown_table(header=["model", *corpora], rows=rows), ""]
    for metric, title in (("r2-diff", "Adjusted R² of label differences on latent differences (the paper's Table 1)"),
                          ("r2", "Adjusted R² of activation / valence on the latent (the paper's Table 2)"),
                          ("spearman", "Spearman's rho between the model's read-out and the label"),
                          ("bhattacharyya", "Bhattacharyya distance from the source's training latents"),
                          ("fit-seconds", "Seconds to train one model on the source"),
                          ("outliers-dropped", "Training rows dropped as outliers (any |z| > 10)")):  # fmt: skip
        dims = [d for d in ("arousal", "valence", "") if not stats[(stats.metric == metric) & (stats.dimension == d)].empty]
        for d in dims:
            rows = [[mo, *(cell(mo, c, metric, "", d) for c in corpora)] for mo in models
                    if any(cell(mo, c, metric, "", d) for c in corpora)]  # fmt: skip
            lines += [f"## {title}{': ' + d if d else ''}", "", markdown_table(header=["model", *corpora], rows=rows), ""]
    pub = [[f"{c} {k}", *(f"{v[mo]:.2f}" if mo in v else "" for mo in ("dae", "dae-metric-act", "dae-metric-val", "svc on egemaps"))]
           for (c, k), v in PUBLISHED_BACC.items()]  # fmt: skip
    lines += ["## Published (Das et al. 2022; IEMOCAP source with rated labels, 5-fold CV)", "",
              markdown_table(header=["corpus, classes", "dae", "dae-metric-act", "dae-metric-val", "svc on eGeMAPS"], rows=pub), ""]  # fmt: skip
    figures = []
    for path in sorted((out / "latents").glob("*.npz")):
        d = np.load(path)
        figures.append(plot_latents(z=d["z"], corpus=d["corpus"], label=d["label"], title=f"{path.stem}: latent per corpus",
                                    path=out / "figures" / f"latents-{path.stem}.png"))  # fmt: skip
    for metric, classes, ylabel in (("bacc", "N-S-A", "balanced accuracy"), ("bacc", "N-S-H-A", "balanced accuracy")):
        vals = {c.split(" ")[0]: {mo: (float(r["mean"]), float(r["std"] if np.isfinite(r["std"]) else 0))
                                  for mo in models for _, r in stats[(stats.model == mo) & (stats.corpus == c) &
                                  (stats.metric == metric) & (stats.classes == classes)].iterrows()} for c in corpora}  # fmt: skip
        published = {c: v for (c, k), v in PUBLISHED_BACC.items() if k == classes}
        figures.append(plot_bars(values=vals, title=f"{classes}: within-corpus CV on the latent (bars) vs published (ticks)",
                                 ylabel=ylabel, path=out / "figures" / f"bacc-{classes}.png", published=published))  # fmt: skip
    for d in ("arousal", "valence"):
        vals = {c.split(" ")[0]: {mo: (float(r["mean"]), float(r["std"] if np.isfinite(r["std"]) else 0))
                                  for mo in models for _, r in stats[(stats.model == mo) & (stats.corpus == c) &
                                  (stats.metric == "r2") & (stats.dimension == d)].iterrows()} for c in corpora}  # fmt: skip
        figures.append(plot_bars(values=vals, title=f"adjusted R² of {d} on the latent", ylabel="adj. R²",
                                 path=out / "figures" / f"r2-{d}.png"))  # fmt: skip
    lines += ["Figures: " + ", ".join(f"`{p.relative_to(out)}`" for p in figures), ""]
    if notes:
        lines += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
