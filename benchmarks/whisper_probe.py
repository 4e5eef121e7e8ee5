"""Speaker-independent logistic-regression probe on stored Whisper features, per corpus.

Compares extractor configurations (``input`` fitted / padded, ``precision`` fp32 / int8) on
the same folds. Protocol: speaker-kfold:5 (SI; a corpus with fewer than 3 speakers falls
back to an SD utterance split and is marked so). Features: the mean of every hidden state,
concatenated, standardised on the training part; the regularisation C is picked on the valid
split only; unweighted accuracy (UA, balanced accuracy) on test, averaged over folds.

    .venv/bin/python benchmarks/whisper_probe.py --manifest manifest.parquet --store STORE \\
        --config input=fitted,precision=int8 --config input=padded,precision=int8

Features must be in the store already (``emolingua features extract``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from emolingua.corpora import read_manifest
from emolingua.features import get_extractor
from emolingua.features.store import FeatureStore
from emolingua.protocols import make_splits

C_GRID = (0.001, 0.01, 0.1)


def probe(X: np.ndarray, manifest: pd.DataFrame, splits: pd.DataFrame) -> tuple[float, bool]:
    """Mean test UA over folds, and whether every fold was speaker independent."""
    row_of = {p: i for i, p in enumerate(manifest["path"])}
    uas, si = [], True
    for _, fold in splits.groupby("fold"):
        idx = {role: np.array([row_of[p] for p in fold.loc[fold["role"] == role, "path"]]) for role in ("train", "valid", "test")}
        y = manifest["label"].to_numpy()
        scaler = StandardScaler().fit(X[idx["train"]])
        Xtr, Xva, Xte = (scaler.transform(X[idx[r]]) for r in ("train", "valid", "test"))
        best = None
        for c in C_GRID:
            clf = LogisticRegression(C=c, max_iter=300).fit(Xtr, y[idx["train"]])
            score = balanced_accuracy_score(y[idx["valid"]], clf.predict(Xva)) if len(idx["valid"]) else 0.0
            if best is None or score > best[0]:
                best = (score, clf)
        assert best is not None
        uas.append(balanced_accuracy_score(y[idx["test"]], best[1].predict(Xte)))
        si &= bool(fold["speaker_independent"].all())
    return float(np.mean(uas)), si


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--extractor", default="whisper-base")
    ap.add_argument("--config", action="append", required=True, help="comma-separated key=value extractor options")
    ap.add_argument("--protocol", default="speaker-kfold:5")
    args = ap.parse_args()

    manifest = read_manifest(args.manifest)
    manifest = manifest[manifest["label"] != ""].reset_index(drop=True)
    store = FeatureStore(root=args.store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = make_splits(manifest, protocol=args.protocol)
    results: dict[str, dict[str, float]] = {}
    si_of: dict[str, bool] = {}
    for config in args.config:
        options = dict(kv.split("=", 1) for kv in config.split(","))
        ex = get_extractor(args.extractor, **options)
        pooled, found = store.load_pooled(paths=manifest["path"], extractor=ex)
        if not found.all():
            raise SystemExit(f"{config}: {int((~found).sum())} files lack features in {args.store}; extract them first")
        dim = pooled.shape[2] // 2
        X = pooled[:, :, :dim].reshape(len(pooled), -1)  # means of every hidden state
        for corpus, rows in manifest.groupby("corpus"):
            sel = rows.index.to_numpy()
            sub = rows.reset_index(drop=True)
            ua, si = probe(X[sel], sub, splits[splits["corpus"] == corpus])
            results.setdefault(corpus, {})[config] = ua
            si_of[corpus] = si
    header = "| corpus | SI/SD | " + " | ".join(args.config) + " |"
    print(header)
    print("|" + "---|" * (len(args.config) + 2))
    for corpus in sorted(results):
        cells = " | ".join(f"{100 * results[corpus][c]:.1f}" for c in args.config)
        print(f"| {corpus} | {'SI' if si_of[corpus] else 'SD'} | {cells} |")
    means = " | ".join(f"{100 * np.mean([results[k][c] for k in results]):.1f}" for c in args.config)
    print(f"| **mean** | | {means} |")
    print(f"\nUA %, {args.protocol}, logistic regression on the means of all hidden states, C in {C_GRID} picked on valid")


if __name__ == "__main__":
    main()
