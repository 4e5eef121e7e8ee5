"""Choose the autoencoders' open settings on the source's valid speakers (Das et al. 2022 leave them open).

For each of the source's speaker folds (as `emolingua transfer` makes them) every model is
fitted with a grid of one setting and scored on the valid speakers carved from the training
speakers, by the CCC of its activation (or valence) read-out; the test speakers are never read.
Prints the mean valid CCC of every candidate over folds and seeds, and the winner.

    EMOLINGUA_CACHE=<store> .venv/bin/python benchmarks/continuous_metric_defaults.py ../shared/corpora
"""

from __future__ import annotations

import sys
import time

import numpy as np

from emolingua.benchmark import BenchmarkConfig, load_rows
from emolingua.models import get_model
from emolingua.transfer import _rows, _source_folds

GRIDS = [
    ("dae", {"noise": [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]}),
    ("dae-metric-act", {"noise": [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]}),
    ("vae-annealed", {"kl_cycles": [1, 2, 4, 8]}),
    ("vae-ss", {"cluster": [0.1, 0.3, 1.0, 3.0]}),
]


def main(corpora: str, source: str = "ravdess", folds: int = 5, seeds: tuple[int, ...] = (0, 1)) -> None:
    X, manifest, _ = load_rows(BenchmarkConfig(corpora=corpora, output="/tmp/emolingua-defaults", features="egemaps",
                                               only_corpora=(source,)), progress=False)  # fmt: skip
    speaker = manifest["speaker"].astype(str).to_numpy()
    fold_of = _source_folds(speaker, folds)
    for name, grid in GRIDS:
        (option, values), = grid.items()
        scores: dict[float, list[float]] = {v: [] for v in values}
        start = time.perf_counter()
        for seed in seeds:
            for fold in range(1, folds + 1):
                train_spk = sorted({s for s in speaker if fold_of[s] != fold})
                valid_spk = set(np.random.default_rng(seed).permutation(train_spk)[: len(train_spk) // 4].tolist())
                is_valid = np.array([fold_of[s] != fold and s in valid_spk for s in speaker])
                is_train = np.array([fold_of[s] != fold and s not in valid_spk for s in speaker])
                model = get_model(name, seed=seed, **{option: tuple(values)})
                model.fit(_rows(X, manifest, np.flatnonzero(is_train), ["egemaps"]),
                          valid=_rows(X, manifest, np.flatnonzero(is_valid), ["egemaps"]))  # fmt: skip
                for cand in model.history[0]["candidates"]:
                    scores[cand[option][0]].append(cand["valid_score"])
        means = {v: float(np.mean(s)) for v, s in scores.items()}
        best = max(means, key=means.get)
        print(f"{name}: {option} -> valid CCC of the {get_model(name).config.target} read-out "
              + ", ".join(f"{v}: {m:.3f} ± {np.std(scores[v]):.3f}" for v, m in means.items())
              + f"; best {best} ({time.perf_counter() - start:.0f} s, {len(seeds) * folds} fits per value)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpora")
