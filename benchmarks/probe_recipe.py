"""The torch probes (``mlp``, ``layer-weights``) against logistic regression, LOSO, same folds, one run.

Cached whisper-base features (bf16, pooled mean+std, 7 layers x 1024) of /work/meas/manifest.parquet,
LOSO splits per corpus (seed 0; BAVED on its ``intensity`` column), every fold z-scored with its
training rows' mean and std. Each model picks its hyper-parameters on the fold's valid rows only;
the test predictions of all folds of a corpus are pooled into one UA.

    EMOLINGUA_CACHE=/work/cache PYTHONPATH=src python benchmarks/probe_recipe.py            # all
    ... benchmarks/probe_recipe.py --corpus savee --corpus casia --model layer-weights     # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from emolingua.metrics import unweighted_accuracy
from emolingua.models.module import Batch
from emolingua.models.probes import LayerWeightsNet, MLPNet
from emolingua.models.trainer import TrainConfig, Trainer
from emolingua.protocols import make_splits

MANIFEST = "/work/meas/manifest.parquet"
STORE = "/work/cache/features"
EXTRACTOR = "whisper-base"
STREAM = "whisper-base"
CORPORA = ("casia", "emodb", "emovo", "ravdess", "savee", "urdu", "baved")
MODELS = ("logreg", "mlp", "layer-weights")
#: the logistic regression of the reference: C on valid, warm-started from the smallest C up
LOGREG_C = (0.001, 0.01, 0.1, 1.0)


def target_of(corpus: str) -> str:
    """BAVED has no emotion categories, only intensity levels: those are its classes."""
    return "intensity" if corpus == "baved" else "label"


# ---------------------------------------------------------------------------- the recipe
#: How the probes train (tried on SAVEE, CASIA and EMOVO first; see the module docstring of
#: emolingua.models.probes): early stopping on valid UA with room to wait out a noisy curve.
TRAIN = TrainConfig(epochs=100, lr=1e-3, weight_decay=1e-2, batch_size=32, patience=20, monitor="ua", mode="max",
                    seed=0, threads=1)  # fmt: skip
#: Net options shared by every candidate (hidden 1024 scored about as well on the three small corpora
#: and costs twice as much on BAVED's 59 folds).
NET: dict[str, Any] = {"hidden": 512, "dropout": 0.5}
#: The candidates each fold compares on valid. ``layer="ridge"``: the mlp sees the one layer a
#: closed-form ridge classifier ranks best on valid; ``peak``: layer-weights starts with that
#: layer's logit at ``peak`` (3: 77% of the mix, 6: 98%) and learns the mix from there.
GRID: dict[str, list[dict[str, Any]]] = {
    "mlp": [{"layer": "ridge", "input_dropout": 0.5}, {"layer": "ridge", "input_dropout": 0.8}],
    "layer-weights": [{"peak": 3, "input_dropout": 0.8}, {"peak": 6, "input_dropout": 0.8}],
}


# ---------------------------------------------------------------------------- data
@dataclass
class Fold:
    corpus: str
    fold: int
    classes: list[str]
    X: dict[str, np.ndarray]  # role -> (n, 7, 1024) float32, z-scored with train statistics
    y: dict[str, np.ndarray]  # role -> (n,) int64 class indices into ``classes``
    ridge: tuple[int, list[float]] | None = None  # ridge_layer's answer, computed once per fold


def load() -> tuple[pd.DataFrame, np.ndarray]:
    from emolingua.features import get_extractor
    from emolingua.features.store import FeatureStore

    manifest = pd.read_parquet(MANIFEST)
    extractor = get_extractor(EXTRACTOR)
    X, found = FeatureStore(root=STORE).load_pooled(paths=manifest["path"].tolist(), extractor=extractor, workers=1)
    if not found.all() or not np.isfinite(X).all():
        raise SystemExit(f"{extractor.spec}: {int((~found).sum())} of {len(found)} rows missing or not finite")
    return manifest, X


def folds(manifest: pd.DataFrame, X: np.ndarray, corpus: str) -> Iterator[Fold]:
    column = target_of(corpus)
    rows = manifest[manifest["corpus"] == corpus]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # twin-speaker notes: the splits are the same with or without them
        splits = make_splits(rows, protocol="loso", seed=0, stratify_on=column)
    assert splits["speaker_independent"].all()
    where = pd.Series(np.arange(len(manifest)), index=manifest["path"])
    labels = manifest[column].fillna("").astype(str).to_numpy()
    for fold, part in splits.groupby("fold", sort=True):
        idx = {r: where.loc[part.loc[part["role"] == r, "path"]].to_numpy() for r in ("train", "valid", "test")}
        classes = sorted(set(labels[idx["train"]]))
        mean = X[idx["train"]].astype(np.float64).mean(0)
        std = X[idx["train"]].astype(np.float64).std(0)
        std[std < 1e-8] = 1.0
        Xz = {r: ((X[i] - mean) / std).astype(np.float32) for r, i in idx.items()}
        # a class missing from train cannot be predicted; its rows stay, as an error (index -1 never wins)
        code = {c: k for k, c in enumerate(classes)}
        y = {r: np.array([code.get(v, -1) for v in labels[i]], dtype=np.int64) for r, i in idx.items()}
        yield Fold(corpus, int(fold), classes, Xz, y)


def ua(y: np.ndarray, pred: np.ndarray) -> float:
    return unweighted_accuracy(y, pred)


# ---------------------------------------------------------------------------- models
def fit_logreg(f: Fold) -> tuple[np.ndarray, dict[str, Any]]:
    """Each layer and C, fitted on train and scored on valid; the best pair predicts test."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, int, float, Any] | None = None
    for layer in range(f.X["train"].shape[1]):
        est = LogisticRegression(solver="lbfgs", max_iter=300, tol=1e-3, warm_start=True, random_state=0)
        for C in LOGREG_C:
            est.set_params(C=C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(f.X["train"][:, layer], f.y["train"])
            score = ua(f.y["valid"], est.predict(f.X["valid"][:, layer]))
            if best is None or score > best[0]:
                coef, intercept = est.coef_.copy(), est.intercept_.copy()
                best = (score, layer, C, (coef, intercept))
    assert best is not None
    score, layer, C, (coef, intercept) = best
    pred = np.argmax(f.X["test"][:, layer].astype(np.float64) @ coef.T + intercept, axis=1)
    return pred, {"layer": layer, "C": C, "valid_ua": score}


def ridge_layer(f: Fold, alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)) -> tuple[int, list[float]]:
    """The layer whose ridge classifier (one-vs-rest least squares, alpha best on valid) scores best on
    valid UA, and every layer's score: a closed-form ranking that costs a fraction of one net.

    On a corpus of a few speakers every layer separates the training rows perfectly, so the
    training loss cannot tell which layer carries over to a new speaker; valid rows can.
    """
    if f.ridge is not None:
        return f.ridge
    from scipy.linalg import solve

    Y = np.eye(len(f.classes))[f.y["train"]] * 2 - 1
    scores = []
    for layer in range(f.X["train"].shape[1]):
        A = f.X["train"][:, layer].astype(np.float64)
        V = f.X["valid"][:, layer].astype(np.float64)
        a_mean, y_mean = A.mean(0), Y.mean(0)
        A, Yc = A - a_mean, Y - y_mean
        dual = len(A) < A.shape[1]  # solve in the smaller of the two Gram matrices
        G = A @ A.T if dual else A.T @ A
        best = -1.0
        for alpha in alphas:
            sol = solve(G + alpha * np.eye(len(G)), Yc if dual else A.T @ Yc, assume_a="pos")
            coef = A.T @ sol if dual else sol
            best = max(best, ua(f.y["valid"], np.argmax((V - a_mean) @ coef + y_mean, axis=1)))
        scores.append(best)
    f.ridge = (int(np.argmax(scores)), scores)
    return f.ridge


def _batch(X: np.ndarray, y: np.ndarray | None = None) -> Batch:
    targets = {} if y is None else {"label": torch.from_numpy(y)}
    masks = {} if y is None else {"label": torch.from_numpy(y >= 0)}
    return Batch(streams={STREAM: torch.from_numpy(X)}, targets=targets, masks=masks)


def _predict(net: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return net(_batch(X))["logits"].argmax(1).numpy()


def fit_probe(model: str, f: Fold, *, train: TrainConfig = TRAIN, net: dict[str, Any] | None = None,
              grid: list[dict[str, Any]] | None = None) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """Every candidate of the grid trained with early stopping on valid UA; the best on valid predicts test.

    Recipe-level keys of a candidate: ``layer`` (mlp: ``"ridge"``, the layer :func:`ridge_layer`
    picks on valid, or ``"all"``, every layer flattened); ``peak`` (layer-weights: the initial
    logit of the ridge layer, 0 for an even start). The other keys are net options.
    """
    net = NET if net is None else net
    grid = GRID[model] if grid is None else grid
    n_layers = f.X["train"].shape[1]
    ridge = ridge_layer(f)[0] if any(c.get("layer") == "ridge" or c.get("peak") for c in grid) else None
    best: tuple[float, dict[str, Any], torch.nn.Module, np.ndarray] | None = None
    for cand in grid:
        options = {**net, **{k: v for k, v in cand.items() if k not in ("layer", "peak")}}
        layers = slice(ridge, ridge + 1) if cand.get("layer") == "ridge" else slice(None)
        X = {r: x[:, layers] for r, x in f.X.items()}
        with torch.random.fork_rng(devices=[]):  # the net's initial weights: seeded, the caller's RNG untouched
            torch.manual_seed(train.seed)
            if model == "mlp":
                module = MLPNet(input_shapes={STREAM: X["train"].shape[1:]}, n_classes=len(f.classes), **options)
            else:
                init = np.zeros(n_layers)
                if cand.get("peak"):
                    init[ridge] = float(cand["peak"])
                module = LayerWeightsNet(input_shapes={STREAM: X["train"].shape[1:]}, n_classes=len(f.classes),
                                         init_logits={STREAM: init.tolist()}, **options)  # fmt: skip
        valid_x, valid_y = X["valid"], f.y["valid"]
        module = Trainer(train, log=lambda s: None).fit(
            module, train=_batch(X["train"], f.y["train"]), evaluate=lambda m: {"ua": ua(valid_y, _predict(m, valid_x))})
        score = max(r["ua"] for r in module.history_)
        if best is None or score > best[0]:
            best = (score, {**cand, "epoch": module.best_epoch_}, module, X["test"])
    assert best is not None
    score, chosen, module, test_x = best
    info = {**chosen, "valid_ua": score, "ridge_layer": ridge}
    if isinstance(module, LayerWeightsNet):
        with torch.no_grad():
            info["weights"] = [round(float(w), 3) for w in module.layer_weights()[STREAM]]
    return _predict(module, test_x), info


def run_corpus(manifest: pd.DataFrame, X: np.ndarray, corpus: str, models: list[str], *, verbose: bool = False,
               **probe: Any) -> dict[str, Any]:  # fmt: skip
    truth: list[np.ndarray] = []
    preds: dict[str, list[np.ndarray]] = {m: [] for m in models}
    seconds = {m: 0.0 for m in models}
    chosen: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for f in folds(manifest, X, corpus):
        truth.append(f.y["test"])
        for m in models:
            t0 = time.process_time()
            pred, info = fit_logreg(f) if m == "logreg" else fit_probe(m, f, **probe)
            seconds[m] += time.process_time() - t0
            preds[m].append(pred)
            chosen[m].append(info)
            if verbose:
                print(f"  {corpus} fold {f.fold} {m}: test {100 * ua(f.y['test'], pred):.1f} {info}", flush=True)
    y = np.concatenate(truth)
    return {"corpus": corpus, "folds": len(truth),
            "ua": {m: 100 * ua(y, np.concatenate(p)) for m, p in preds.items()},
            "valid_ua": {m: 100 * float(np.mean([c["valid_ua"] for c in chosen[m]])) for m in models},
            "cpu_seconds": seconds, "chosen": chosen}  # fmt: skip


def _job(manifest: pd.DataFrame, X: np.ndarray, corpus: str, models: list[str], verbose: bool,
         probe: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return run_corpus(manifest, X, corpus, models, verbose=verbose, **probe)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", action="append", choices=CORPORA, help="repeatable; default: all seven")
    ap.add_argument("--model", action="append", choices=MODELS, help="repeatable; default: all three")
    ap.add_argument("--train", default="{}", help='JSON overrides of the TrainConfig, e.g. \'{"lr": 3e-3}\'')
    ap.add_argument("--net", default="{}", help='JSON overrides of the shared net options, e.g. \'{"hidden": 128}\'')
    ap.add_argument("--grid", default=None, help="JSON list of candidates (net options) compared on valid")
    ap.add_argument("--json", default=None, help="also write the results (with every fold's choice) here")
    ap.add_argument("--jobs", type=int, default=1, help="corpora run in this many processes (1 thread each)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per fold and model")
    args = ap.parse_args(argv)
    corpora = args.corpus or list(CORPORA)
    models = args.model or list(MODELS)
    probe: dict[str, Any] = {"train": dataclasses.replace(TRAIN, **json.loads(args.train)),
                             "net": {**NET, **json.loads(args.net)}}  # fmt: skip
    if args.grid is not None:
        probe["grid"] = json.loads(args.grid)
    t0 = time.perf_counter()
    manifest, X = load()
    print(f"{EXTRACTOR}: {X.shape} ({time.perf_counter() - t0:.1f}s); train {probe['train']}; net {probe['net']}; "
          f"grid {probe.get('grid', {m: GRID[m] for m in models if m in GRID})}", flush=True)  # fmt: skip

    def report(r: dict[str, Any]) -> None:
        cells = "  ".join(f"{m} {r['ua'][m]:5.1f} (valid {r['valid_ua'][m]:5.1f}, {r['cpu_seconds'][m]:5.0f}s)"
                          for m in models)  # fmt: skip
        print(f"{r['corpus']:8s} {r['folds']:3d} folds  {cells}", flush=True)

    results = []
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # forked workers share the loaded features; BAVED (59 folds) first, as it takes the longest
        order = sorted(corpora, key=lambda c: -int((manifest["corpus"] == c).sum()))
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as pool:
            futures = {c: pool.submit(_job, manifest, X, c, models, args.verbose, probe) for c in order}
            for c in order:
                report(futures[c].result())
            results = [futures[c].result() for c in corpora]
    else:
        for corpus in corpora:
            results.append(_job(manifest, X, corpus, models, args.verbose, probe))
            report(results[-1])
    print("\nUA % (LOSO, speaker-independent), test predictions of all folds pooled per corpus")
    print("corpus    " + "".join(f"{m:>15s}" for m in models) + ("   probe - logreg" if "logreg" in models else ""))
    for r in results:
        line = f"{r['corpus']:8s}  " + "".join(f"{r['ua'][m]:15.1f}" for m in models)
        if "logreg" in models:
            line += "   " + " ".join(f"{r['ua'][m] - r['ua']['logreg']:+5.1f}" for m in models if m != "logreg")
        print(line)
    total = {m: sum(r["cpu_seconds"][m] for r in results) for m in models}
    print("cpu s     " + "".join(f"{total[m]:15.0f}" for m in models))
    print(f"wall {time.perf_counter() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"train": dataclasses.asdict(probe["train"]), "net": probe["net"],
                       "grid": probe.get("grid", GRID), "results": results}, fh, indent=1, default=str)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
