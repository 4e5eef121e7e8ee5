"""The continuous metric loss inside the multi-gate model: an arousal axis for languages it never saw.

For each held-out language: the best multi-gate variant (configs/multigate/joint-layers.yaml)
with ``affect_target: arousal`` is trained on the other corpora (fold 1 of speaker-kfold:4:
training and test speakers train, valid speakers choose the epoch) and read out on every row of
the held-out language, passed as an unknown language. Prints Spearman's rho between the
read-outs and the taxonomy's arousal / valence priors, for the metric loss and for mse.

    EMOLINGUA_CACHE=<store> .venv/bin/python benchmarks/multigate_affect.py ../shared/corpora de zh ur
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings

import numpy as np
from scipy.stats import spearmanr

from emolingua.benchmark import BenchmarkConfig, load_rows
from emolingua.models import Dataset, get_model
from emolingua.protocols import make_splits

CONFIG = "configs/multigate/joint-layers.yaml"


def main(corpora: str, held_out: list[str]) -> None:
    cfg = BenchmarkConfig.from_file(CONFIG, corpora=corpora, output="/tmp/emolingua-affect")
    # pooled streams only (loaded as for a pooled model): the variant reads no frame sequences
    X, manifest, _ = load_rows(dataclasses.replace(cfg, model="logreg", model_options={}), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = make_splits(manifest, protocol=cfg.protocol, seed=cfg.seed)
    fold = splits[splits["fold"] == 1].set_index("path")["role"]
    role = manifest["path"].map(fold).fillna("").to_numpy()
    lang = manifest["language"].astype(str).to_numpy()

    def rows(idx: np.ndarray, language: np.ndarray | None = None) -> Dataset:
        r = manifest.iloc[idx]
        return Dataset(streams={k: v[idx] for k, v in X.items()},
                       targets={"label": r["label"].astype(str).to_numpy(), "arousal": r["arousal"].to_numpy(float),
                                "valence": r["valence"].to_numpy(float)},
                       corpus=r["corpus"].to_numpy(), language=r["language"].to_numpy() if language is None else language,
                       speaker=r["speaker"].to_numpy())  # fmt: skip

    for held in held_out:
        train = np.flatnonzero((lang != held) & np.isin(role, ["train", "test"]))
        valid = np.flatnonzero((lang != held) & (role == "valid"))
        test = np.flatnonzero(lang == held)
        for loss in ("metric", "mse"):
            options = {**cfg.model_options, "target": "label", "affect_target": "arousal", "affect_loss": loss}
            start = time.perf_counter()
            model = get_model(cfg.model, **options).fit(rows(train), valid=rows(valid))
            unseen = rows(test, language=np.full(len(test), "unseen"))
            read = model.dimensions(unseen)
            out = {"held_out": held, "loss": loss, "fit_s": round(time.perf_counter() - start)}
            for dim in ("arousal", "valence"):
                y = unseen.targets[dim]
                ok = np.isfinite(y)
                out[f"rho_{dim}"] = round(float(spearmanr(read[dim][ok], y[ok]).statistic), 3)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpora", sys.argv[2:] or ["de", "zh", "ur"])
