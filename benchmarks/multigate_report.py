"""Tables and figures of docs/methods/multigate.md from finished benchmark runs.

    .venv/bin/python benchmarks/multigate_report.py runs/multigate
    .venv/bin/python benchmarks/multigate_report.py runs/multigate/variant-ablations full-seed0=multigate-variant \
        mask-per-domain-l0-seed0=multigate-variant-mask

Reads ``<root>/<run>/results.json`` for every run below ``root`` (a run named ``name-seedN`` is
seed N of variant ``name``; variants with several seeds are shown as mean ± sd over seeds of the
per-corpus UA), prints a markdown table of test UA % per corpus (all SI unless the run says SD),
and draws, from the multigate runs' job files (``explain`` of each fold's model, kept under ``describe``): the mean gate
weight per language and stream with the spread over utterances, the mask density per language,
and the loss terms per epoch.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def load_runs(root: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(root.glob("**/results.json")):
        name = str(path.parent.relative_to(root))
        variant = re.sub(r"-seed\d+$", "", name)
        runs[variant].append(json.loads(path.read_text()))
    return runs


def table(runs: dict[str, list[dict]]) -> str:
    for res in runs.values():  # BAVED is scored on its intensity levels in every run: one column
        for run in res:
            for r in run["corpora"]:
                r["corpus"] = r["corpus"].replace(" (intensity)", "")
    corpora = sorted({r["corpus"] for res in runs.values() for run in res for r in run["corpora"]})
    lines = ["| variant | seeds | SI/SD | " + " | ".join(corpora) + " | mean |", "|---" * (len(corpora) + 4) + "|"]
    for variant, results in runs.items():
        per = {c: [next((r["ua"] for r in run["corpora"] if r["corpus"] == c), np.nan) for run in results] for c in corpora}
        si = {r["speaker_independent"] for run in results for r in run["corpora"]}
        means = [np.nanmean([per[c][i] for c in corpora]) for i in range(len(results))]

        def cell(v: list[float]) -> str:
            v = [x for x in v if not np.isnan(x)]
            if not v:
                return "–"
            return f"{100 * np.mean(v):.1f}" + (f" ± {100 * np.std(v, ddof=1):.1f}" if len(v) > 1 else "")

        lines.append(f"| {variant} | {len(results)} | {'/'.join('SI' if s else 'SD' for s in sorted(si, reverse=True))} | "
                     + " | ".join(cell(per[c]) for c in corpora) + f" | {cell(means)} |")  # fmt: skip
    return "\n".join(lines)


def valid_scores(root: Path) -> str:
    """Per variant: the mean over corpora of each corpus's valid UA at the epoch each fold kept
    (from the training history in the job files), mean ± sd over seeds; unfinished runs left out."""
    by: dict[str, list[float]] = defaultdict(list)
    for run in sorted(p.parent for p in root.glob("**/results.json")):
        infos = describes(run)
        per: dict[str, list[float]] = defaultdict(list)
        for d in infos:
            kept = [e for e in d.get("history", []) if "ua_sum" in e]
            if kept:
                best = max(kept, key=lambda e: e["ua_sum"])  # the first best epoch, as the trainer keeps it
                for k, v in best.items():
                    if k.startswith("ua."):
                        per[k[3:]].append(v)
        if len(infos) == 4 and per:
            by[re.sub(r"-seed\d+$", "", str(run.relative_to(root)))].append(100 * np.mean([np.mean(v) for v in per.values()]))
    return "\n".join(f"valid {name}: {np.mean(v):.1f}" + (f" ± {np.std(v, ddof=1):.1f}" if len(v) > 1 else "") + f" ({len(v)} seeds)"
                     for name, v in by.items())


def describes(run_dir: Path) -> list[dict]:
    out = []
    for job in sorted((run_dir / "jobs").glob("*.json")):
        d = json.loads(job.read_text()).get("describe")
        if d:
            out.append(d)
    return out


def figures(run_dir: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    infos = describes(run_dir)
    if not infos:
        return []
    made = []
    streams = infos[0]["streams"]
    langs = sorted({g for d in infos for g in d["gates"]})
    mean = np.array([[np.mean([d["gates"][g]["mean"][j] for d in infos if g in d["gates"]]) for j in range(len(streams))]
                     for g in langs])  # fmt: skip
    sd = np.array([[np.mean([d["gates"][g]["sd"][j] for d in infos if g in d["gates"]]) for j in range(len(streams))]
                   for g in langs])  # fmt: skip
    many = len(streams) > 10  # the default colour cycle repeats after 10: distinct colours, legend outside
    fig, ax = plt.subplots(figsize=(11, 4) if many else (8, 3.5))
    width = 0.8 / len(streams)
    colours = plt.cm.tab20(np.linspace(0, 1, len(streams))) if many else [None] * len(streams)
    for j, s in enumerate(streams):
        ax.bar(np.arange(len(langs)) + j * width, mean[:, j], width, yerr=sd[:, j], capsize=2, label=s,
               color=colours[j], error_kw={"elinewidth": 0.6})  # fmt: skip
    ax.set_xticks(np.arange(len(langs)) + 0.4 - width / 2, langs)
    ax.set_ylabel("gate weight (mean ± sd over utterances)")
    ax.set_title(f"Gate weights per gate (language or corpus) and stream ({len(infos)} folds, test utterances)")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0)) if many else ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    made.append(FIGURES / f"{prefix}-gates.png")
    fig.savefig(made[-1], dpi=120)
    plt.close(fig)

    twins = [j for j, s in enumerate(streams) if s.endswith("~speaker")]
    if twins:  # how much each gate trusts the per-speaker view: the summed weight of the twin streams
        share = mean[:, twins].sum(axis=1)
        print("gate weight on the speaker twins:", ", ".join(f"{g} {v:.2f}" for g, v in zip(langs, share)))
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(langs, share)
        ax.set_ylim(0, 1)
        ax.set_ylabel("summed gate weight")
        ax.set_title(f"Summed gate weight of the {len(twins)} speaker twins, per gate")
        fig.tight_layout()
        made.append(FIGURES / f"{prefix}-twin-share.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)

    heads = sorted({h for d in infos for h in d["mask_density"]})
    if heads:
        fig, ax = plt.subplots(figsize=(6, 3))
        vals = [[d["mask_density"][h] for d in infos if h in d["mask_density"]] for h in heads]
        ax.bar(heads, [np.mean(v) for v in vals], yerr=[np.std(v) for v in vals], capsize=3)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("open fraction of the 256x256 mask")
        ax.set_title("Mask density per gate after training (mean ± sd over folds)")
        fig.tight_layout()
        made.append(FIGURES / f"{prefix}-mask-density.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for i, d in enumerate(infos):
        h = d["history"]
        epochs = [e["epoch"] for e in h]
        for k in sorted({k for e in h for k in e if k.startswith("loss.")}):
            axes[0].plot(epochs, [e.get(k, np.nan) for e in h], label=k[5:] if i == 0 else None,
                         color={"loss.ce": "C0", "loss.contrastive": "C1", "loss.l0": "C2"}.get(k, "C3"), alpha=0.7)
        axes[1].plot(epochs, [e.get("ua_sum", np.nan) for e in h], color="C0", alpha=0.7)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch"), axes[0].set_ylabel("training loss term"), axes[0].legend()
    axes[1].set_xlabel("epoch"), axes[1].set_ylabel("valid: sum of UA over domains")
    fig.suptitle("Loss terms and the checkpoint rule per epoch (one line per fold)")
    fig.tight_layout()
    made.append(FIGURES / f"{prefix}-training.png")
    fig.savefig(made[-1], dpi=120)
    plt.close(fig)
    return made


def main() -> None:
    """``multigate_report.py ROOT [RUN=PREFIX ...]``: the table of every run below ROOT, and the
    figures of each named run (default: ``joint=multigate``), written as docs/figures/PREFIX-*.png."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/multigate")
    runs = load_runs(root)
    print(table(runs))
    print(valid_scores(root))
    for spec in sys.argv[2:] or ["joint=multigate"]:
        name, _, prefix = spec.partition("=")
        if (root / name / "jobs").exists():
            for p in figures(root / name, prefix or "multigate"):
                print("wrote", p)


if __name__ == "__main__":
    main()
