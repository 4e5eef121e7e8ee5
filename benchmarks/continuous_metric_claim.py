"""The paper's central claim on a transfer run's measures: does the metric loss beat the plain DAE?

Paired by (seed, fold): the same source speakers and the same seed for both models. Prints, per
corpus, the mean ± sd of the difference and in how many pairs the metric model is ahead, for
the activation R² and for the balanced accuracies (within-corpus CV and zero-shot).

    .venv/bin/python benchmarks/continuous_metric_claim.py runs/continuous-metric/egemaps/measures.csv
"""

from __future__ import annotations

import sys

import pandas as pd


def main(path: str, base: str = "dae", others: tuple[str, ...] = ("dae-metric-act", "dae-metric-val")) -> None:
    m = pd.read_csv(path)
    m["classes"], m["dimension"] = m["classes"].fillna(""), m["dimension"].fillna("")
    checks = [("r2", "", "arousal"), ("r2", "", "valence"), ("bacc", "N-S-A", ""), ("bacc", "N-S-H-A", ""),
              ("bacc-zero-shot", "N-S-A", ""), ("bacc-zero-shot", "N-S-H-A", "")]  # fmt: skip
    for other in others:
        print(f"\n{other} minus {base} (paired by seed and fold; ahead = pairs where {other} is higher)")
        print("| measure | " + " | ".join(dict.fromkeys(m["corpus"])) + " |")
        print("|---|" + "---|" * m["corpus"].nunique())
        for metric, classes, dim in checks:
            sel = m[(m.metric == metric) & (m.classes == classes) & (m.dimension == dim)]
            cells = []
            for corpus in dict.fromkeys(m["corpus"]):
                a = sel[(sel.model == other) & (sel.corpus == corpus)].set_index(["seed", "fold"])["value"]
                b = sel[(sel.model == base) & (sel.corpus == corpus)].set_index(["seed", "fold"])["value"]
                d = (a - b).dropna()
                cells.append(f"{d.mean():+.3f} ± {d.std():.3f} ({(d > 0).sum()}/{len(d)})" if len(d) else "")
            print(f"| {metric} {classes or dim} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
