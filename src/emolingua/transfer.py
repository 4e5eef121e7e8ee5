"""How well a learned embedding transfers from one corpus to others: Das et al. 2022's evaluation.

Each model is trained on the source corpus only (``folds`` folds by speaker, a quarter of the
training speakers carved out as valid for the model's own choices) and its frozen encoder is
applied unchanged to the held-out source speakers and to every target corpus. Per model,
corpus, fold and seed:

- ``bacc``: balanced accuracy of a linear SVC on the latent, speaker-grouped cross-validation
  within the corpus (the paper's evaluation), for each class set; ``bacc-zero-shot``: the SVC
  fitted on the source's training latents only;
- ``r2``: adjusted R^2 of activation / valence regressed on the latent (OLS, in the corpus);
- ``r2-diff``: adjusted R^2 of the label difference regressed on the latent difference over
  consecutive pairs of the corpus's rows in a seeded random order (the paper's Table 1);
- ``bhattacharyya``: the distance between Gaussians fitted to the source's training latents and
  to the corpus's latents, ``1/8 d^T S^-1 d + 1/2 ln(det S / sqrt(det S1 det S2))``, S = (S1 + S2) / 2;
- ``spearman``: Spearman's rho between the model's read-out and activation / valence.

References on the same cross-validation folds: a linear SVC on the model's input features and
on each ``reference_features`` stream, within each corpus.

>>> run_transfer(TransferConfig(corpora="../shared/corpora", output="runs/cm", models=("dae", "dae-metric-act")))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emolingua.benchmark import BenchmarkConfig, load_rows
from emolingua.config import load_config, runtime, to_dict
from emolingua.errors import ConfigError
from emolingua.fileio import atomic_write
from emolingua.models import Dataset, get_model, model_names

__all__ = ["CLASS_SETS", "TransferConfig", "bhattacharyya", "adjusted_r2", "run_transfer"]

#: the paper's two class sets (a corpus without one of them uses what it has)
CLASS_SETS = (("neutral", "sad", "angry"), ("neutral", "sad", "happy", "angry"))
#: Bump when a job file's content changes meaning: every cached job is then recomputed.
JOB_FORMAT = 2
MODELS = ("dae", "dae-metric-act", "dae-metric-val", "vae", "vae-annealed", "vae-ss")


@dataclass(frozen=True)
class TransferConfig:
    """One transfer run. ``features``: the models' input stream (``egemaps`` as published; any
    pooled stream, e.g. ``whisper-base`` with ``feature_options`` and ``model_options.layers``);
    ``reference_features``: streams only the reference SVCs read (``whisper-base`` at
    ``reference_layer``); ``source`` and ``targets`` (empty: every other corpus); ``folds`` by
    speaker on the source, ``seeds`` of the models; ``cv_folds``: the within-corpus SVC folds."""

    corpora: str
    output: str = runtime()
    models: tuple[str, ...] = MODELS
    features: str = "egemaps"
    feature_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    reference_features: tuple[str, ...] = ("whisper-base",)
    reference_layer: int = 2
    source: str = "ravdess"
    targets: tuple[str, ...] = ()
    class_sets: tuple[tuple[str, ...], ...] = CLASS_SETS
    folds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    cv_folds: int = 5
    store: str | None = runtime(None)
    threads: int | None = runtime(None)

    def __post_init__(self) -> None:
        known = model_names()
        if bad := [m for m in self.models if m not in known]:
            raise ConfigError(f"models: {bad[0]!r} is not a registered model; known: {', '.join(known)}")
        if self.folds < 2 or self.cv_folds < 2 or not self.seeds:
            raise ConfigError("folds >= 2, cv_folds >= 2 and at least one seed are required")

    @classmethod
    def from_file(cls, path: str | Path | None, *, overrides: Sequence[str] = (), **values: Any) -> TransferConfig:
        """A YAML/TOML/JSON config (paths against its folder), then ``values``, then dotted ``overrides``."""
        from emolingua.benchmark import _resolve_paths

        values = {k: v for k, v in values.items() if v is not None}
        return load_config(cls, path, overrides=overrides, prepare=_resolve_paths, **values)


# ------------------------------------------------------------------------------------ measures
def adjusted_r2(X: np.ndarray, y: np.ndarray) -> float:
    """Adjusted R^2 of an OLS fit of ``y`` on ``X`` (with an intercept): ``1 - (1 - R^2)(n - 1)/(n - p - 1)``."""
    X = np.asarray(X, dtype=np.float64).reshape(len(y), -1)
    n, p = X.shape
    if n <= p + 1 or np.var(y) == 0:
        return float("nan")
    A = np.c_[X, np.ones(n)]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    r2 = 1 - np.sum((y - A @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
    return float(1 - (1 - r2) * (n - 1) / (n - p - 1))


def bhattacharyya(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between Gaussians fitted to the rows of ``a`` and of ``b``."""
    m1, m2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    s = (s1 + s2) / 2
    d = m1 - m2
    _, logdet = np.linalg.slogdet(s)
    _, l1 = np.linalg.slogdet(s1)
    _, l2 = np.linalg.slogdet(s2)
    return float(d @ np.linalg.solve(s, d) / 8 + 0.5 * (logdet - 0.5 * (l1 + l2)))


def _svc_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_splits: int) -> float:
    """Balanced accuracy of a standardised linear SVC, speaker-grouped cross-validation (pooled predictions)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    k = min(n_splits, len(set(groups)))
    if k < 2 or len(set(y)) < 2:
        return float("nan")
    pred = np.empty(len(y), dtype=object)
    for tr, te in GroupKFold(n_splits=k).split(X, y, groups):
        if len(set(y[tr])) < 2:
            return float("nan")
        pred[te] = make_pipeline(StandardScaler(), LinearSVC(dual="auto", max_iter=5000)).fit(X[tr], y[tr]).predict(X[te])
    return float(balanced_accuracy_score(y, pred.astype(str)))


def _svc_zero_shot(Xs: np.ndarray, ys: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if len(set(ys)) < 2 or len(set(y)) < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LinearSVC(dual="auto", max_iter=5000)).fit(Xs, ys)
    with warnings.catch_warnings():  # a predicted class the corpus lacks is simply wrong
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(y, model.predict(X)))


def _in_set(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    return np.isin(labels, list(classes))


def _set_name(classes: Sequence[str]) -> str:
    return "-".join(c[0].upper() for c in classes)  # N-S-A, N-S-H-A


# --------------------------------------------------------------------------------------- run
def _rows(X: dict[str, Any], manifest: pd.DataFrame, idx: np.ndarray, streams: Sequence[str]) -> Dataset:
    rows = manifest.iloc[idx]
    return Dataset(streams={k: X[k][idx] for k in streams},
                   targets={"label": rows["label"].astype(str).to_numpy(), "arousal": rows["arousal"].to_numpy(float),
                            "valence": rows["valence"].to_numpy(float)},
                   corpus=rows["corpus"].to_numpy(), language=rows["language"].to_numpy(),
                   speaker=rows["speaker"].to_numpy(), ids=rows["path"].to_numpy())  # fmt: skip


def _source_folds(speakers: np.ndarray, folds: int) -> dict[str, int]:
    """Speaker -> fold (1..folds): sorted speakers dealt round robin after a fixed shuffle."""
    unique = np.array(sorted(set(speakers.tolist())))
    order = np.random.default_rng(12345).permutation(len(unique))
    return {str(unique[i]): 1 + j % folds for j, i in enumerate(order)}


def _job(cfg: TransferConfig, X: dict[str, Any], manifest: pd.DataFrame, model_name: str, seed: int, fold: int,
         fold_of: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:  # fmt: skip
    """One model trained on the source's other folds; its measures on every corpus, and the latents."""
    corpus = manifest["corpus"].to_numpy()
    speaker = manifest["speaker"].astype(str).to_numpy()
    source = corpus == cfg.source
    held = source & np.array([fold_of.get(s, 0) == fold for s in speaker])
    train_spk = sorted({s for s in speaker[source & ~held]})
    valid_spk = set(np.random.default_rng(seed).permutation(train_spk)[: max(1, len(train_spk) // 4)].tolist())
    is_valid = source & ~held & np.isin(speaker, list(valid_spk))
    is_train = source & ~held & ~is_valid
    streams = [cfg.features]
    model = get_model(model_name, seed=seed, threads=cfg.threads, **cfg.model_options)
    train_rows = _rows(X, manifest, np.flatnonzero(is_train), streams)
    start = time.perf_counter()
    model.fit(train_rows, valid=_rows(X, manifest, np.flatnonzero(is_valid), streams))
    fit_seconds = time.perf_counter() - start
    Z_train = model.transform(train_rows)
    y_train = manifest["label"].astype(str).to_numpy()[is_train]
    out: list[dict[str, Any]] = []
    head = {"model": model_name, "features": cfg.features, "seed": seed, "fold": fold}
    source_name = f"{cfg.source} (held-out speakers)"
    out += [{**head, "corpus": source_name, "role": "source", "n": int(is_train.sum()), "metric": "fit-seconds",
             "value": fit_seconds},
            {**head, "corpus": source_name, "role": "source", "n": int(is_train.sum()), "metric": "outliers-dropped",
             "value": float(model.selected.get("outliers_dropped", 0))}]  # fmt: skip
    units = [(source_name, held, "source")]
    units += [(c, corpus == c, "target") for c in sorted(set(corpus.tolist()) - {cfg.source})]
    rng = np.random.default_rng(seed)
    latents: dict[str, list[Any]] = {"z": [], "corpus": [], "label": []}
    for name, mask, role in units:
        idx = np.flatnonzero(mask)
        data = _rows(X, manifest, idx, streams)
        Z = model.transform(data)
        labels = data.targets["label"]
        dims = model.read_out(Z)  # the latent just computed, not a second encoder pass
        latents["z"].append(Z), latents["corpus"].append(np.full(len(Z), name)), latents["label"].append(labels)
        base = {**head, "corpus": name, "role": role, "n": int(len(idx))}

        def add(metric: str, value: float, **extra: Any) -> None:
            out.append({**base, "metric": metric, "value": float(value), **extra})

        for classes in cfg.class_sets:
            keep = _in_set(labels, classes)
            if len(set(labels[keep].tolist())) < 2:
                continue
            add("bacc", _svc_cv(Z[keep], labels[keep], data.speaker[keep], cfg.cv_folds), classes=_set_name(classes))
            src = _in_set(y_train, classes)
            add("bacc-zero-shot", _svc_zero_shot(Z_train[src], y_train[src], Z[keep], labels[keep]),
                classes=_set_name(classes))  # fmt: skip
        order = rng.permutation(len(idx))
        for dim in ("arousal", "valence"):
            y = data.targets[dim]
            add("r2", adjusted_r2(Z, y), dimension=dim)
            zd, ld = np.diff(Z[order], axis=0), np.diff(y[order])
            add("r2-diff", adjusted_r2(zd, ld), dimension=dim)
            if dim in dims and np.var(y) > 0:
                from scipy.stats import spearmanr

                add("spearman", spearmanr(dims[dim], y).statistic, dimension=dim)
        add("bhattacharyya", bhattacharyya(Z_train, Z))
    return out, {k: np.concatenate(v) for k, v in latents.items()}


def _references(cfg: TransferConfig, X: dict[str, Any], manifest: pd.DataFrame, fold_of: dict[str, int]) -> list[dict[str, Any]]:
    """Linear SVCs on the input features and the reference streams, within each corpus."""
    corpus = manifest["corpus"].to_numpy()
    speaker = manifest["speaker"].astype(str).to_numpy()
    labels = manifest["label"].astype(str).to_numpy()
    out = []
    for stream in (cfg.features, *cfg.reference_features):
        if stream not in X:
            continue
        F = X[stream]
        F = F[:, cfg.reference_layer] if F.ndim == 3 and F.shape[1] > 1 else F.reshape(len(F), -1)
        held = (corpus == cfg.source) & np.array([fold_of.get(s, 0) > 0 for s in speaker])
        units = [(f"{cfg.source} (held-out speakers)", held)] + [(c, corpus == c) for c in sorted(set(corpus) - {cfg.source})]
        for name, mask in units:
            for classes in cfg.class_sets:
                keep = mask & _in_set(labels, classes)
                if len(set(labels[keep].tolist())) < 2:
                    continue
                out.append({"model": f"svc on {stream}", "features": stream, "corpus": name, "metric": "bacc",
                            "classes": _set_name(classes), "seed": 0, "fold": 0,
                            "value": _svc_cv(F[keep], labels[keep], speaker[keep], cfg.cv_folds)})  # fmt: skip
    return out


def _key(cfg: TransferConfig, manifest: pd.DataFrame, *parts: Any) -> str:
    what = {k: v for k, v in to_dict(cfg).items() if k not in ("output", "store", "threads", "models", "seeds")}
    text = json.dumps([JOB_FORMAT, what, manifest["path"].tolist(), manifest["content"].tolist(), parts], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_transfer(cfg: TransferConfig, *, progress: bool = True) -> pd.DataFrame:
    """Train every model on the source and measure the transfer; writes ``measures.csv`` and
    ``report.md`` with figures to ``cfg.output`` and returns the measures. Each (model, seed,
    fold) is one job file: a killed run resumes, and a job is recomputed when its inputs change."""
    from emolingua.models import model_class

    out = Path(cfg.output)
    only = (cfg.source, *cfg.targets) if cfg.targets else ()
    specs = ",".join(dict.fromkeys([cfg.features, *cfg.reference_features]))
    options = {cfg.features: cfg.feature_options} if cfg.feature_options else {}
    bench = BenchmarkConfig(corpora=cfg.corpora, output=str(out), features=specs, feature_options=options,
                            only_corpora=only, store=cfg.store, model="logreg")  # fmt: skip  (loads pooled streams)
    X, manifest, notes = load_rows(bench, progress=progress)
    if cfg.source not in set(manifest["corpus"]):
        raise ConfigError(f"source {cfg.source!r}: no such corpus among {', '.join(sorted(set(manifest['corpus'])))}")
    for name in cfg.models:
        if model_class(name).task != "regression" or not hasattr(model_class(name), "read_out"):
            raise ConfigError(f"models: {name!r} has no latent embedding (transform); use one of {', '.join(MODELS)}")
    widest = max(cfg.class_sets, key=len)
    usable = manifest.groupby("corpus")["label"].agg(lambda v: len(set(v) & set(widest)) >= 2)
    if dropped := sorted(c for c, ok in usable.items() if not ok and c != cfg.source):
        notes.append(f"left out {', '.join(dropped)}: fewer than two of the classes {', '.join(widest)}")
        idx = np.flatnonzero(~manifest["corpus"].isin(dropped).to_numpy())
        X, manifest = {k: v[idx] for k, v in X.items()}, manifest.iloc[idx].reset_index(drop=True)
    fold_of = _source_folds(manifest.loc[manifest["corpus"] == cfg.source, "speaker"].astype(str).to_numpy(), cfg.folds)
    jobs = out / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    todo = [(m, s, f) for m in cfg.models for s in cfg.seeds for f in range(1, cfg.folds + 1)]
    todo.append(("references", 0, 0))
    for model_name, seed, fold in todo:
        # the key holds every option of the model as built, defaults included: a changed default recomputes
        built = {} if model_name == "references" else get_model(model_name, seed=seed, **cfg.model_options).options()
        path = jobs / f"{model_name}-s{seed}-f{fold}-{_key(cfg, manifest, model_name, seed, fold, built)}.json"
        if path.exists():
            rows += json.loads(path.read_text())
            continue
        if model_name == "references":
            got = _references(cfg, X, manifest, fold_of)
        else:
            got, latents = _job(cfg, X, manifest, model_name, seed, fold, fold_of)
            if seed == cfg.seeds[0] and fold == 1:  # the figures show one model of each kind
                (out / "latents").mkdir(exist_ok=True)
                np.savez(out / "latents" / f"{model_name}.npz", **{k: np.asarray(v, dtype=float if k == "z" else str)
                                                                   for k, v in latents.items()})  # fmt: skip
        with atomic_write(path, "w") as f:  # one job at a time: a killed run loses at most the current one
            f.write(json.dumps(got, default=str))
        rows += got
        if progress:
            print(f"transfer: {model_name} seed {seed} fold {fold} done", flush=True)
    measures = pd.DataFrame(rows)
    measures.to_csv(out / "measures.csv", index=False)
    from emolingua.reports import transfer_report

    transfer_report(measures, cfg=to_dict(cfg), notes=notes, out=out)
    return measures
