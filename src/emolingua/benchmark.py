"""One command that trains and scores a model on every corpus under honest protocols.

>>> cfg = BenchmarkConfig(corpora="../shared/corpora", output="runs/loso", protocol="loso")   # doctest: +SKIP
>>> results = run_benchmark(cfg)                                                            # doctest: +SKIP

Steps: validate the whole configuration -> scan (or read a manifest) -> extract features into
the store (cached) -> splits -> one job per (corpus or held-out target, fold) -> scores, plots
and a Markdown report in ``output``. Model selection (the regularisation inside the model, and
the layer when ``layers="select"``) looks at the valid split only; test predictions of every
layer candidate are kept solely for the per-layer analysis plot.

Jobs are cached in ``output/jobs/``, each under a key of everything its result depends on: its
rows (path, audio content key, role, label, corpus, language, speaker), the feature
extractor's fingerprint, the model, its options and the emolingua version, and the target,
layers, normalisation, labels and seed. A rerun (or a killed run resumed) recomputes exactly
the jobs whose inputs changed and reuses the others; the report says how many of each.

Paths in the ``config.yaml`` written beside the report are absolute, and relative paths in a
config file are read relative to that file's folder, so ``emolingua benchmark --config
config.yaml`` reproduces the run from any working directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from emolingua import __version__
from emolingua.config import load_config, runtime, to_dict
from emolingua.corpora import read_manifest, scan_corpora, write_manifest
from emolingua.errors import ConfigError, InputFileError
from emolingua.executors import check_executor, executor_session
from emolingua.features import FeatureExtractor, get_extractor
from emolingua.features.extract import default_store_dir, extract_to_store
from emolingua.features.store import FeatureStore
from emolingua.fileio import atomic_write, check_writable, content_keys
from emolingua.metrics import score_classification, score_regression, unweighted_accuracy
from emolingua.models import NORMALISE, Dataset, Frames, get_model, model_class, model_names
from emolingua.models.data import frame_streams
from emolingua.system import limited_threads
from emolingua.protocols import (
    DEFAULT_REPEATS,
    DEFAULT_SHOTS,
    SHARED_LABELS,
    TRANSFER_PROTOCOLS,
    make_splits,
    make_transfer_splits,
    parse_protocol,
)
from emolingua.reports import markdown_table, plot_confusion, plot_few_shot, plot_layers
from emolingua.system import usable_cores as cpu_count

__all__ = ["BenchmarkConfig", "load_emobox_reference", "run_benchmark"]

TARGETS = ("label", "intensity", "arousal", "valence")
PROTOCOLS = ("loso", "speaker-kfold:K", "random:A/B/C", "emobox:DIR", "leave-one-corpus-out",
             "leave-one-language-out", "few-shot[:K,...]")  # fmt: skip
#: Bump when a job file's content changes meaning: every cached job is then recomputed.
JOB_FORMAT = 3
_PATH_FIELDS = ("corpora", "output", "store", "emobox_reference")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a run depends on; ``BenchmarkConfig.from_file`` reads it back from YAML/TOML/JSON.

    corpora: a folder to scan, or a manifest file (.parquet/.csv/.jsonl).
    features: one extractor spec, or several joined by commas (``whisper-base,egemaps``): each is a
    named stream of the rows; ``feature_options`` are the options of the one extractor, or a mapping
    of spec -> options when there are several.
    layers: ``select`` (each single layer is a candidate, chosen on valid in each fold), ``all``, or a
    layer index; handed to the model, whose :meth:`~emolingua.models.Model.search_grid` says what it compares.
    joint: one model per fold for all corpora at once (fold k of every corpus's within-corpus
    split: trained on the union of the training parts, chosen on the union of the valid parts,
    scored on each corpus's test part); corpora without categories (BAVED) join with their
    intensity levels as their label set.
    normalise: ``auto`` (training statistics within a corpus; ``adapt-corpus`` in transfer protocols,
    where a held-out corpus is z-scored with its own unlabelled rows) or a mode of
    :data:`emolingua.models.NORMALISE`.
    labels: the label set of transfer protocols (default neutral/happy/sad/angry).
    drop_labels: rows with these labels are left out in every protocol (e.g. ``[neutral]`` for
    the 6-class EmoDB that Wang et al. 2022 report).
    workers: parallel fold jobs (and extraction processes); threads: BLAS/torch threads of each
    (default: the cores divided by ``workers``, so that workers x threads never exceeds the cores).
    executor: ``local`` (this machine's processes) or ``ray``: extraction batches and fold jobs
    become Ray tasks on the cluster at ``ray_address`` (default: ``$RAY_ADDRESS``, else a Ray
    instance started on this machine), ``threads`` (default 1) per task; see :mod:`emolingua.executors`.
    Fields marked ``runtime`` (output, store, workers, threads, executor, ray_address) say where and
    how fast, not what is computed, so :func:`emolingua.config.fingerprint` and the job keys leave them out.
    """

    corpora: str
    output: str = runtime()
    features: str = "whisper-base"
    feature_options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "loso"
    model: str = "logreg"
    model_options: dict[str, Any] = field(default_factory=dict)
    target: str = "label"
    layers: str = "select"
    normalise: str = "auto"
    labels: tuple[str, ...] = SHARED_LABELS
    shots: tuple[int, ...] = DEFAULT_SHOTS
    repeats: int = DEFAULT_REPEATS
    only_corpora: tuple[str, ...] = ()
    drop_labels: tuple[str, ...] = ()
    joint: bool = False
    seed: int = 0
    store: str | None = runtime(None)
    n_boot: int = 1000
    workers: int = runtime(1)
    threads: int | None = runtime(None)
    executor: str = runtime("local")
    ray_address: str | None = runtime(None)
    emobox_reference: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target {self.target!r}: unknown; use one of {', '.join(TARGETS)}")
        for name in ("labels", "shots", "only_corpora", "drop_labels"):
            if isinstance(value := getattr(self, name), (list, tuple)):
                object.__setattr__(self, name, tuple(value))

    @property
    def transfer(self) -> bool:
        return self.protocol.split(":")[0] in {p.split(":")[0] for p in TRANSFER_PROTOCOLS}

    @property
    def normalisation(self) -> str:
        """The normalisation mode ``normalise`` resolves to for this protocol."""
        if self.normalise == "auto":
            return "adapt-corpus" if self.transfer else "train"
        return self.normalise

    @property
    def feature_specs(self) -> list[str]:
        return [f.strip() for f in self.features.split(",") if f.strip()]

    @property
    def regression(self) -> bool:
        return self.target in ("arousal", "valence")

    @property
    def threads_per_worker(self) -> int:
        """``threads``, or the cores divided among the workers (at least one); on Ray one per task
        (the driver's cores say nothing about the nodes')."""
        if self.executor == "ray":
            return self.threads or 1
        return self.threads or max(1, cpu_count() // max(1, self.workers))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def resolved(self, base: str | os.PathLike | None = None) -> BenchmarkConfig:
        """A copy whose paths (corpora, output, store, the emobox folder) are absolute, relative ones
        taken against ``base`` (default: the working directory); no store means the default store."""
        values = _resolve_paths(self.to_dict(), Path(base) if base is not None else Path.cwd())
        values["store"] = values["store"] or str(default_store_dir().absolute())
        return dataclasses.replace(self, **values)

    def validate(self) -> None:
        """Check every name, value and path before any work: raises ConfigError / InputFileError.

        Constructs the extractor (so bad extractor options and models not available offline
        are reported here) and checks that the output and the store can be written.
        """
        _check(self)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, *, overrides: Sequence[str] = (), **values: Any) -> BenchmarkConfig:
        """Read a YAML, TOML or JSON config (or none); ``values`` (not None) win, then dotted ``overrides``.

        Relative paths in the file are read against the file's folder; unknown keys and each
        value's type are checked against the fields (``seed: abc`` is a ConfigError naming the
        file); ``overrides`` are ``-s`` texts such as ``"model_options.C=[0.1]"``.
        """
        values = {k: v for k, v in values.items() if v is not None}
        return load_config(cls, path, overrides=overrides, prepare=_resolve_paths, **values)


# ---------------------------------------------------------------------------- validation
def _checked(cfg: BenchmarkConfig) -> BenchmarkConfig:
    """``cfg`` with every field's type checked against the annotations (ConfigError naming the field)."""
    return load_config(BenchmarkConfig, **cfg.to_dict())


def _resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    def absolute(p: str) -> str:
        return os.path.normpath(os.path.join(base.absolute(), os.path.expanduser(p)))

    out = dict(values)
    for name in _PATH_FIELDS:
        if isinstance(out.get(name), str) and out[name]:
            out[name] = absolute(out[name])
    protocol = out.get("protocol")
    if isinstance(protocol, str) and protocol.startswith("emobox:") and protocol[7:].strip():
        out["protocol"] = "emobox:" + absolute(protocol[7:].strip())
    return out


def _check_protocol(cfg: BenchmarkConfig) -> None:
    name, _, arg = cfg.protocol.strip().partition(":")
    known = f"use one of {', '.join(PROTOCOLS)}"
    if cfg.transfer:
        if name == "few-shot" and arg:
            if not all(k.strip().isdigit() for k in arg.split(",")):
                raise ConfigError(f"protocol {cfg.protocol!r}: few-shot:K,... needs whole numbers K >= 0")
        elif arg:
            raise ConfigError(f"protocol {cfg.protocol!r}: {name} takes no argument")
        return
    try:
        proto = parse_protocol(cfg.protocol)
    except ValueError as exc:
        why = _one_line(exc).split("; known")[0]
        why = "unknown" if why.startswith("unknown protocol") else why
        raise ConfigError(f"protocol {cfg.protocol!r}: {why}; {known}") from None
    if proto.name == "emobox" and not Path(proto.folder or "").is_dir():
        raise InputFileError(f"protocol {cfg.protocol!r}: EmoBox folder not found; give its data folder, "
                             "e.g. emobox:../shared/partitions/emobox")  # fmt: skip


def _check(cfg: BenchmarkConfig) -> list[FeatureExtractor]:
    """Everything :meth:`BenchmarkConfig.validate` checks; returns the extractors it constructed."""
    cfg = _checked(cfg)
    _check_protocol(cfg)
    if cfg.model not in model_names():
        raise ConfigError(f"model {cfg.model!r}: unknown; use one of {', '.join(model_names())}")
    if cfg.normalise not in ("auto", *NORMALISE):
        raise ConfigError(f"normalise {cfg.normalise!r}: unknown; use one of auto, {', '.join(NORMALISE)}")
    if cfg.layers not in ("select", "all") and not re.fullmatch(r"-?\d+", cfg.layers.strip()):
        raise ConfigError(f"layers {cfg.layers!r}: unknown; use select (chosen on valid), all, or a layer index")
    if cfg.joint and cfg.transfer:
        raise ConfigError(f"joint: trains all corpora together on a within-corpus protocol, not on {cfg.protocol}")
    for name, low in (("seed", 0), ("workers", 1), ("repeats", 1), ("n_boot", 0), ("threads", 1)):
        value = getattr(cfg, name)
        if value is not None and value < low:
            raise ConfigError(f"{name} {value}: must be at least {low}")
    if any(k < 0 for k in cfg.shots):
        raise ConfigError(f"shots {list(cfg.shots)}: must be whole numbers >= 0")
    check_executor(executor=cfg.executor, ray_address=cfg.ray_address)
    try:
        model = get_model(cfg.model, **_model_options(cfg, cfg.normalisation))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {cfg.model!r}: {_one_line(exc).removeprefix(f'model {cfg.model}: ')}") from None
    if (model.task == "regression") != cfg.regression:
        fits = "a regression model (ridge)" if cfg.regression else "a classifier (not ridge)"
        raise ConfigError(f"model {cfg.model!r}: a {model.task} model cannot predict target {cfg.target!r}; use {fits}")
    source = Path(cfg.corpora)
    if not source.exists():
        raise InputFileError(f"corpora {source}: no such folder or manifest file; give the folder that holds "
                             "the corpora or a manifest written by `emolingua corpora scan`")  # fmt: skip
    check_writable(cfg.output, what="output")
    check_writable(cfg.store or default_store_dir(), what="feature store")
    specs = cfg.feature_specs
    if not specs:
        raise ConfigError(f"features {cfg.features!r}: give an extractor (`emolingua features list` shows them)")
    several = len(specs) > 1
    if several and (unknown := sorted(set(cfg.feature_options) - set(specs))):
        raise ConfigError(f"feature_options: with several features, give options per extractor "
                          f"({', '.join(specs)}); {unknown[0]!r} is none of them")  # fmt: skip
    extractors = []
    for spec in specs:
        options = dict(cfg.feature_options.get(spec) or {}) if several else dict(cfg.feature_options)
        options.setdefault("threads", cfg.threads_per_worker)  # workers x threads never exceeds the cores
        extractor = get_extractor(spec, **options)  # raises ConfigError for a bad name or option
        extractor.fingerprint()  # resolves a hub model's identity now: offline, that is the error to report
        extractors.append(extractor)
    if model.uses_frames and not any(e.keeps_frames for e in extractors):
        raise ConfigError(f"model {cfg.model!r} reads frame sequences; keep some with the extractor's option "
                          "(e.g. -s feature_options.frame_layers=[6] for whisper, frames=true for mfcc)")  # fmt: skip
    return extractors


def _model_options(cfg: BenchmarkConfig, normalise: str, candidate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's options in a job: the run's, its layers and normalisation, the seed, the thread cap."""
    layers: Any = cfg.layers if cfg.layers in ("select", "all") else (int(cfg.layers),)
    options = {"layers": layers, "normalise": normalise, "seed": cfg.seed, "threads": cfg.threads_per_worker,
               **cfg.model_options, **(candidate or {})}  # fmt: skip
    return options


# ---------------------------------------------------------------------------- data
def _without_categories(cfg: BenchmarkConfig, manifest: pd.DataFrame) -> list[str]:
    """Corpora with no emotion categories (at most one label) but intensity levels, like BAVED
    (whose level 1 alone is labelled neutral): scored on intensity."""
    if cfg.target != "label" or cfg.transfer or "intensity" not in manifest:
        return []
    names = []
    for corpus, rows in manifest.groupby("corpus"):
        labels = rows["label"].astype(str)
        if labels[labels != ""].nunique() < 2 and (rows["intensity"].astype(str) != "").any():
            names.append(str(corpus))
    return names


def _select_corpora(cfg: BenchmarkConfig, manifest: pd.DataFrame, source: Path) -> pd.DataFrame:
    """The rows of ``cfg.only_corpora``; a name that matches no corpus (or reader) is a ConfigError."""
    if not cfg.only_corpora:
        return manifest
    corpus = manifest["corpus"].astype(str)
    reader = manifest["reader"].astype(str) if "reader" in manifest else corpus
    present = set(corpus) | set(reader)
    if unknown := [n for n in cfg.only_corpora if n not in present]:
        raise ConfigError(f"corpus filter {', '.join(unknown)}: not in {source}; corpora there: "
                          f"{', '.join(sorted(set(corpus))) or 'none'}")  # fmt: skip
    return manifest[corpus.isin(cfg.only_corpora) | reader.isin(cfg.only_corpora)]


def _manifest(cfg: BenchmarkConfig, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the selected corpora, each with the content key of its audio as it is now, and
    notes naming the rows left out."""
    source = Path(cfg.corpora)
    if source.is_file():
        manifest = read_manifest(source)
        missing = sorted({"corpus", "speaker", "language", "label"} - set(manifest.columns))
        if missing:
            raise InputFileError(f"{source}: manifest lacks column(s) {', '.join(missing)}; "
                                 "write it with `emolingua corpora scan ROOT --output FILE`")  # fmt: skip
        manifest = _select_corpora(cfg, manifest, source).reset_index(drop=True)
        fresh = False  # a content column may predate a change of the audio: hash again
    else:
        manifest = scan_corpora(root=source).manifest
        if manifest.empty:
            raise InputFileError(f"corpora {source}: no supported corpus found in this folder; give the folder "
                                 "that holds the corpora (`emolingua corpora list` shows the supported ones)")  # fmt: skip
        manifest = _select_corpora(cfg, manifest, source).reset_index(drop=True)
        fresh = "content" in manifest
        write_manifest(manifest, out / "manifest.parquet")
    manifest["path"] = manifest["path"].astype(str)
    twice = manifest["path"].duplicated()
    notes = [f"left out a second row of {p}: the path is listed twice in the manifest" for p in manifest["path"][twice]]
    manifest = manifest[~twice].reset_index(drop=True)
    if cfg.drop_labels:
        dropped = manifest["label"].astype(str).isin(cfg.drop_labels).to_numpy()
        notes.append(f"drop_labels: left out {int(dropped.sum())} rows labelled {', '.join(cfg.drop_labels)}")
        manifest = manifest[~dropped].reset_index(drop=True)
    keys = manifest["content"].tolist() if fresh else content_keys(manifest["path"].tolist())
    manifest["content"] = [k if isinstance(k, str) and k else None for k in keys]
    return manifest, notes


def _scorable(target: str, manifest: pd.DataFrame) -> np.ndarray:
    """Rows with a value of ``target`` (continuous targets: labelled rows with a rating)."""
    if target in ("arousal", "valence"):
        return (manifest[target].notna() & (manifest["label"].astype(str) != "")).to_numpy()
    if target not in manifest:
        return np.zeros(len(manifest), dtype=bool)
    return (manifest[target].fillna("").astype(str) != "").to_numpy()


def _features(cfg: BenchmarkConfig, extractors: list[FeatureExtractor], manifest: pd.DataFrame, *, progress: bool
              ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:  # fmt: skip
    """Extract what the store lacks and load every row's streams (pooled by spec, frames as
    ``spec/stream`` when the model reads them); rows left out come with one note each, naming the
    file and the reason."""
    store = FeatureStore(root=cfg.store or default_store_dir())
    paths = manifest["path"].tolist()
    durations = manifest["duration"].tolist() if "duration" in manifest else None
    keys = [k if isinstance(k, str) and k else None for k in manifest["content"]]  # hashed by _manifest just now
    frames = model_class(cfg.model).uses_frames
    keep = np.ones(len(paths), dtype=bool)
    why: dict[int, str] = {}
    loaded = {}
    for extractor in extractors:
        summary = extract_to_store(paths=paths, keys=keys, extractor=extractor, store=store, durations=durations,
                                   workers=cfg.workers, progress=progress, executor=cfg.executor,
                                   ray_address=cfg.ray_address)  # fmt: skip
        X, found, rows = store.load(keys=keys, extractor=extractor, frames=frames)  # twins: every row gets the entry
        finite = found & np.isfinite(X.reshape(len(X), -1)).all(axis=1) if X.size else found
        reasons = dict(summary.failures)
        for i in np.flatnonzero(keep & ~finite):
            if found[i]:
                why[i] = f"non-finite features (NaN or infinity) from {extractor.spec}"
            elif keys[i] is None:
                why[i] = reasons.get(paths[i], "file not found or not readable")
            else:
                why[i] = reasons.get(paths[i], f"no {extractor.spec} features in the store after extraction")
        keep &= finite
        loaded[extractor.spec] = (X, rows)
    idx = np.flatnonzero(keep)
    streams: dict[str, Any] = {}
    for spec, (X, rows) in loaded.items():
        streams[spec] = X[idx]
        if frames:
            streams.update(frame_streams(spec=spec, rows=rows, idx=idx))
    notes = [f"left out {paths[i]}: {why[i]}" for i in sorted(why)]
    return streams, manifest.iloc[idx].reset_index(drop=True), notes


def _splits(cfg: BenchmarkConfig, manifest: pd.DataFrame) -> pd.DataFrame:
    if cfg.transfer:
        labels = cfg.labels if cfg.target == "label" else ()
        column = "label" if cfg.regression else cfg.target
        splits = make_transfer_splits(manifest, protocol=cfg.protocol, labels=labels, target_column=column,
                                      seed=cfg.seed, shots=cfg.shots, repeats=cfg.repeats)  # fmt: skip
        splits["unit"] = splits["target"]
    else:
        stratify = "label" if cfg.regression else cfg.target
        splits = make_splits(manifest, protocol=cfg.protocol, seed=cfg.seed, stratify_on=stratify)
        splits["unit"] = "all corpora" if cfg.joint else splits["corpus"]
    return splits


# ---------------------------------------------------------------------------- jobs
def _label(candidate: dict[str, Any], cfg: BenchmarkConfig) -> str:
    """A candidate's name in results: its layer index for single-layer candidates, else its options."""
    if not candidate:
        return cfg.layers.strip()
    if set(candidate) == {"layers"} and isinstance(candidate["layers"], tuple) and len(candidate["layers"]) == 1:
        return str(candidate["layers"][0])
    return ",".join(f"{k}={v}" for k, v in sorted(candidate.items()))


def _take(streams: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    return {k: v.take(idx) if isinstance(v, Frames) else v[idx] for k, v in streams.items()}


def dataset_rows(streams: dict[str, Any], manifest: pd.DataFrame, idx: np.ndarray, target: str, *,
                 features: dict[str, Any] | None = None) -> Dataset:  # fmt: skip
    """The manifest rows at ``idx`` with their streams and ``target`` (``features``: how the streams were
    made, for a model that will predict from audio): what :func:`load_rows` gives, as a Dataset."""
    rows = manifest.iloc[idx]
    y = rows[target].to_numpy(dtype=float) if target in ("arousal", "valence") else rows[target].astype(str).to_numpy()
    return Dataset(streams=_take(streams, idx), targets={target: y}, corpus=rows["corpus"].to_numpy(),
                   language=rows["language"].to_numpy(), speaker=rows["speaker"].to_numpy(),
                   ids=rows["path"].to_numpy(), features=features)  # fmt: skip


def _normalise_transfer(streams: dict[str, Any], manifest: pd.DataFrame, idx: dict[str, np.ndarray]) -> dict[str, Any]:
    """``adapt-corpus`` in transfer folds: a source corpus is z-scored by its training rows, a
    target corpus by all of its rows in the fold (its few labelled shots and its test rows, labels
    unused), so that K = 0 and K > 0 see the target on the same scale."""
    corpus = manifest["corpus"].to_numpy()
    targets = set(corpus[idx["test"]])
    used = np.concatenate([idx["train"], idx["valid"], idx["test"]])
    out = {}
    for key, X in streams.items():
        values = X.values if isinstance(X, Frames) else X
        z = np.zeros(values.shape, dtype=np.float32)
        for name in set(corpus[used]):
            rows = used[corpus[used] == name]
            basis = rows if name in targets else idx["train"][corpus[idx["train"]] == name]
            basis = basis if len(basis) else rows
            ref = X.take(basis).values if isinstance(X, Frames) else X[basis]
            mean, std = ref.mean(axis=0), ref.std(axis=0)
            at = np.concatenate([np.arange(X.offsets[r], X.offsets[r + 1]) for r in rows]) if isinstance(X, Frames) else rows
            z[at] = (values[at] - mean) / np.where(std > 1e-8, std, 1.0)
        out[key] = Frames(values=z, offsets=X.offsets) if isinstance(X, Frames) else z
    return out


def _fit_candidate(cfg: BenchmarkConfig, cand: dict[str, Any], normalise: str, train: Dataset, valid: Dataset,
                   test: Dataset) -> dict[str, Any]:  # fmt: skip
    """One candidate of the model's grid: fit on train (its own choices on valid), score valid, predict test."""
    model = get_model(cfg.model, **_model_options(cfg, normalise, cand))
    model.fit(train, valid=valid if len(valid) else None)
    pred = model.predict(test)
    return {
        "valid_score": model.score(valid) if len(valid) else float("nan"),
        "test_pred": [float(p) for p in pred] if cfg.regression else [str(p) for p in pred],
        "selected": getattr(model, "selected", {}),
        "describe": model.explain(test),
    }


def _too_small(cfg: BenchmarkConfig, train: Dataset, test: Dataset) -> str | None:
    """Why a fold cannot be scored, or None."""
    if len(test.y) == 0:
        return "it has no test rows"
    if len(train.y) == 0:
        return "it has no training rows"
    if not cfg.regression and len(classes := sorted(set(train.y.tolist()))) < 2:
        return f"its training rows hold a single class ({classes[0]})"
    return None


def _run_job(cfg: BenchmarkConfig, X: dict[str, Any], manifest: pd.DataFrame, rows: pd.DataFrame) -> dict[str, Any]:
    """Fit every candidate of the model's grid on train, pick on valid, predict test; a fold that
    cannot be fitted is returned as skipped, with the reason."""
    index = pd.Series(np.arange(len(manifest)), index=manifest["path"])
    idx = {r: index.loc[rows.loc[rows["role"] == r, "path"]].to_numpy() for r in ("train", "valid", "test")}
    column = cfg.target
    normalise = cfg.normalisation
    head = {"unit": str(rows["unit"].iat[0]), "fold": int(rows["fold"].iat[0])}
    if cfg.transfer and normalise == "adapt-corpus":
        X, normalise = _normalise_transfer(X, manifest, idx), "none"
    train, valid, test = (dataset_rows(X, manifest, idx[r], column) for r in ("train", "valid", "test"))
    what = f"{head['unit']} fold {head['fold']}"
    if why := _too_small(cfg, train, test):
        return {**head, "skipped": f"{what}: not scored, {why}; too small for protocol {cfg.protocol}"}
    by_candidate: dict[str, Any] = {}
    with limited_threads(cfg.threads_per_worker):
        try:
            grid = get_model(cfg.model, **_model_options(cfg, normalise)).search_grid(train)
        except ValueError as exc:
            return {**head, "skipped": f"{what}: not scored, {_one_line(exc)}", "retry": True}
        for cand in grid:
            try:
                by_candidate[_label(cand, cfg)] = _fit_candidate(cfg, cand, normalise, train, valid, test)
            except ValueError as exc:  # a data problem in this fold: the other folds are still scored
                return {**head, "skipped": f"{what}: not scored, {_one_line(exc)}", "retry": True}
    scores = {c: v["valid_score"] for c, v in by_candidate.items()}
    best = max(scores, key=lambda c: -np.inf if np.isnan(scores[c]) else scores[c])
    test_rows = manifest.iloc[idx["test"]]
    return {
        **head,
        "shots": int(rows["shots"].iat[0]) if "shots" in rows else 0,
        "repeat": int(rows["repeat"].iat[0]) if "repeat" in rows else 0,
        "labels": str(rows["labels"].iat[0]) if "labels" in rows else "",
        "speaker_independent": bool(rows["speaker_independent"].all()),
        "n_train": len(idx["train"]),
        "n_valid": len(idx["valid"]),
        "chosen": best,
        "chosen_selected": by_candidate[best]["selected"],
        "describe": by_candidate[best]["describe"],
        "valid_scores": scores,
        "test_path": test_rows["path"].tolist(),
        "test_corpus": test_rows["corpus"].astype(str).tolist(),
        "test_speaker": test_rows["speaker"].astype(str).tolist(),
        "test_true": test_rows[column].astype(float).tolist() if cfg.regression else test_rows[column].astype(str).tolist(),
        "test_pred": by_candidate[best]["test_pred"],
        "candidate_pred": {c: v["test_pred"] for c, v in by_candidate.items()},
    }


def _job_base(cfg: BenchmarkConfig, extractors: list[FeatureExtractor]) -> dict[str, Any]:
    """What every job of a run depends on besides its rows."""
    prints = [e.fingerprint() for e in extractors]
    return {"format": JOB_FORMAT, "emolingua": __version__, "features": prints[0] if len(prints) == 1 else prints,
            "model": cfg.model, "model_options": cfg.model_options, "target": cfg.target, "layers": cfg.layers,
            "normalise": cfg.normalisation, "labels": list(cfg.labels), "seed": cfg.seed,
            "transfer": cfg.protocol.split(":")[0] if cfg.transfer else ""}  # fmt: skip


def _job_keys(cfg: BenchmarkConfig, base: dict[str, Any], manifest: pd.DataFrame, splits: pd.DataFrame
              ) -> dict[tuple[str, int], str]:  # fmt: skip
    """sha256 of a canonical JSON of everything a job depends on, per (unit, fold): ``base`` and
    its rows: every split column, and each row's content key, target value, language and speaker."""
    extra = [c for c in ("content", cfg.target, "label", "language", "speaker") if c not in splits.columns]
    info = manifest.drop_duplicates("path").set_index("path")[list(dict.fromkeys(extra))]
    joined = splits.join(info, on="path")
    columns = sorted(joined.columns)
    keys = {}
    for (unit, fold), rows in joined.groupby(["unit", "fold"], sort=True):
        table = rows[columns].astype(str).sort_values(columns).to_numpy().tolist()
        blob = json.dumps({**base, "columns": columns, "rows": table}, sort_keys=True, default=str)
        keys[(str(unit), int(fold))] = hashlib.sha256(blob.encode()).hexdigest()
    return keys


def _job_file(jobs_dir: Path, unit: str, fold: int, key: str) -> Path:
    return jobs_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{unit}-fold{fold:03d}") + f"-{key[:20]}.json")


def _cached(path: Path) -> dict[str, Any] | None:
    """A job file's result, or None when it must be computed (missing, unreadable, or failed with
    an error that may since be fixed; a fold too small for the protocol stays cached)."""
    try:
        job = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return None if job.get("retry") else job


def _local_jobs(cfg: BenchmarkConfig, X: dict[str, Any], manifest: pd.DataFrame,
                todo: list[tuple[tuple[str, int], pd.DataFrame]]) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The jobs' results as they finish, ``cfg.workers`` processes at a time on this machine."""
    from joblib import Parallel, delayed

    runner = Parallel(n_jobs=cfg.workers, return_as="generator_unordered")
    yield from runner(delayed(_run_job)(cfg, X, manifest, rows) for _, rows in todo)


def _ray_jobs(cfg: BenchmarkConfig, X: dict[str, Any], manifest: pd.DataFrame,
              todo: list[tuple[tuple[str, int], pd.DataFrame]]) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The jobs' results as they finish, each job a Ray task. The features and the manifest go to
    the cluster once; a job that fails for good is returned as not scored, to be retried by the
    next run (like a fold that failed with an error locally)."""
    if not todo:
        return
    from emolingua.executors import RayTasks, describe_error, ray_session

    # explicit threads: a job on a node must not count that node's cores (its numbers would then depend on where it ran)
    threads = cfg.threads_per_worker
    job_cfg = dataclasses.replace(cfg, threads=threads)
    with ray_session(address=cfg.ray_address):
        import ray

        shared = [ray.put(job_cfg), ray.put(X), ray.put(manifest)]
        tasks: RayTasks[tuple[str, int]] = RayTasks(_run_job, num_cpus=threads)
        try:
            for uf, rows in todo:
                tasks.submit(uf, *shared, rows)
            while tasks.running:
                for (unit, fold), result, error in tasks.wait():
                    if error is not None:
                        result = {"unit": unit, "fold": fold, "retry": True,
                                  "skipped": f"{unit} fold {fold}: not scored, its Ray task failed {tasks.retries + 1} "
                                             f"times ({describe_error(error)}); the next run computes it again"}  # fmt: skip
                    yield result
        finally:
            tasks.cancel()


def _run_jobs(cfg: BenchmarkConfig, X: dict[str, Any], manifest: pd.DataFrame, splits: pd.DataFrame, out: Path,
              base: dict[str, Any], *, progress: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:  # fmt: skip
    """Every job's result (cached ones read back) and the counts of jobs reused and computed."""
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    keys = _job_keys(cfg, base, manifest, splits)
    groups = [((str(u), int(f)), rows) for (u, f), rows in splits.groupby(["unit", "fold"], sort=True)]
    files = {uf: _job_file(jobs_dir, *uf, keys[uf]) for uf, _ in groups}
    results = {uf: _cached(files[uf]) for uf, _ in groups}
    todo = [(uf, rows) for uf, rows in groups if results[uf] is None]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), disable=not progress,
                  console=Console(stderr=True)) as bar:  # fmt: skip  (stdout carries results only)
        task = bar.add_task(f"{cfg.model} on {cfg.protocol}", total=len(groups), completed=len(groups) - len(todo))
        run = _ray_jobs if cfg.executor == "ray" else _local_jobs
        for result in run(cfg, X, manifest, todo):
            uf = (result["unit"], result["fold"])
            results[uf] = json.loads(json.dumps({"key": keys[uf], **result}))  # as a reader of the file sees it
            with atomic_write(files[uf], "w") as f:  # written at once: a killed run resumes here
                f.write(json.dumps(results[uf]))
            bar.advance(task)
    jobs = [results[uf] for uf, _ in groups]
    counts = {"total": len(groups), "reused": len(groups) - len(todo), "computed": len(todo),
              "skipped": sum("skipped" in j for j in jobs)}  # fmt: skip
    for job, (uf, _) in zip(jobs, groups):
        job["file"] = files[uf].name
    return jobs, counts


# ---------------------------------------------------------------------------- scoring
def load_emobox_reference(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """The EmoBox UA table (Markdown) as {corpus: {backbone: UA %}}."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("|")]
    header = [c.strip().lower() for c in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, float]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for corpus, value in zip(header[1:], cells[1:]):
            table.setdefault(corpus, {})[cells[0]] = float(value)
    return table


def _emobox_reference(cfg: BenchmarkConfig) -> dict[str, dict[str, float]]:
    if not cfg.protocol.startswith("emobox:"):
        return {}
    candidates = [cfg.emobox_reference] if cfg.emobox_reference else []
    folder = Path(cfg.protocol.split(":", 1)[1])
    candidates += [str(d / "emobox-ua.md") for d in (folder, folder.parent, folder.parent.parent / "reference")]
    for c in candidates:
        if c and Path(c).is_file():
            return load_emobox_reference(c)
    return {}


def _score(cfg: BenchmarkConfig, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per test corpus (and per K for few-shot): pooled test predictions over folds."""
    rows = []
    for job in jobs:
        for i, path in enumerate(job["test_path"]):
            rows.append({"unit": job["unit"], "fold": job["fold"], "shots": job["shots"], "repeat": job["repeat"],
                         "labels": job["labels"], "si": job["speaker_independent"], "corpus": job["test_corpus"][i],
                         "speaker": job["test_speaker"][i], "true": job["test_true"][i], "pred": job["test_pred"][i],
                         **{f"cand:{c}": p[i] for c, p in job["candidate_pred"].items()}})  # fmt: skip
    table = pd.DataFrame(rows)
    candidates = [c[5:] for c in table.columns if c.startswith("cand:")]
    results: dict[str, Any] = {"corpora": [], "few_shot": [], "layers": {}}
    few_shot = cfg.protocol.startswith("few-shot")
    keys = ["corpus", "shots"] if few_shot else ["corpus"]
    for key, part in table.groupby(keys, sort=True):
        corpus = key[0] if isinstance(key, tuple) else key
        si = bool(part["si"].all())
        protocol = cfg.protocol
        if cfg.regression:
            res = score_regression(part["true"].astype(float), part["pred"].astype(float), protocol=protocol,
                                   speaker_independent=si).to_dict()  # fmt: skip
        else:
            labels = sorted(set(part["true"]) | set(part["pred"]))
            groups = part["speaker"] if si and (part["speaker"] != "").all() else None
            res = score_classification(part["true"], part["pred"], labels=labels, protocol=protocol,
                                       speaker_independent=si, groups=groups, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()  # fmt: skip
            fold_ua = [unweighted_accuracy(f["true"], f["pred"]) for _, f in part.groupby(["fold"])]
            res["fold_ua_mean"], res["fold_ua_std"] = float(np.mean(fold_ua)), float(np.std(fold_ua))
            res["folds"] = len(fold_ua)
            res["scored_labels"] = sorted(set(part["true"]))
        res["corpus"] = corpus
        res["n"] = len(part)
        if few_shot:
            per_repeat = [unweighted_accuracy(r["true"], r["pred"]) for _, r in part.groupby("repeat")]
            res["shots"] = int(key[1])
            res["ua_repeats"] = per_repeat
            res["ua_mean"], res["ua_std"] = float(np.mean(per_repeat)), float(np.std(per_repeat))
            results["few_shot"].append(res)
        else:
            results["corpora"].append(res)
            if not cfg.regression and len(candidates) > 1:
                results["layers"][corpus] = {c: unweighted_accuracy(part["true"], part[f"cand:{c}"]) for c in candidates}
    results["chosen"] = pd.Series([j["chosen"] for j in jobs]).value_counts().to_dict()
    return results


# ---------------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}"


def _write_report(cfg: BenchmarkConfig, results: dict[str, Any], languages: dict[str, str], out: Path,
                  seconds: float) -> None:  # fmt: skip
    lang = {**languages, **{f"{k} (intensity)": v for k, v in languages.items()}}
    reference = _emobox_reference(cfg)
    lines = [f"# emolingua benchmark: {cfg.model} on {cfg.features}, protocol `{cfg.protocol}`", ""]
    mode = cfg.normalisation
    scope = {"adapt-corpus": " (transductive: a held-out corpus by its own unlabelled rows)" if cfg.transfer else
             " (transductive: a corpus unseen in training by its own unlabelled rows)",
             "adapt-speaker": " (transductive: each speaker by their own unlabelled rows)",
             "train": " (statistics of the training rows)", "corpus": " (each training corpus by its training rows)",
             "none": ""}[mode]  # fmt: skip
    if twins := cfg.model_options.get("speaker_twins"):
        scope += f"; speaker twins of {', '.join(twins)} (transductive: each speaker by their own unlabelled rows)"
    lines.append(f"Target `{cfg.target}`; layers `{cfg.layers}` (chosen on valid); feature normalisation "
                 f"`{mode}`{scope}; seed {cfg.seed}; {seconds:.0f} s. SI = speaker independent, SD = speaker dependent.")  # fmt: skip
    lines.append("")
    if results["corpora"] and not cfg.regression:
        header = ["corpus", "language", "protocol", "SI/SD", "utterances", "classes", "UA % [95% CI]", "WA %", "macro-F1 %",
                  "UA per fold (mean ± sd)"]  # fmt: skip
        if reference:
            header += ["EmoBox whisper-large-v3", "EmoBox best"]
        body = []
        for r in results["corpora"]:
            row = [r["corpus"], lang.get(r["corpus"], ""), cfg.protocol if not cfg.protocol.startswith("emobox:") else "emobox",
                   "SI" if r["speaker_independent"] else "SD", r["n"], len(r["scored_labels"]),
                   f"{_pct(r['ua'])} [{_pct(r['ua_ci'][0])}, {_pct(r['ua_ci'][1])}]", _pct(r["wa"]), _pct(r["macro_f1"]),
                   f"{_pct(r['fold_ua_mean'])} ± {_pct(r['fold_ua_std'])} ({r['folds']})"]  # fmt: skip
            if reference:
                ref = reference.get(r["corpus"].split("-")[0], {})
                best = max(ref.items(), key=lambda kv: kv[1]) if ref else None
                row += [f"{ref['whisper-large-v3']:.1f}" if "whisper-large-v3" in ref else "-",
                        f"{best[1]:.1f} ({best[0]})" if best else "-"]  # fmt: skip
            body.append(row)
        lines += [markdown_table(header=header, rows=body), ""]
        if cfg.transfer:
            lines.append("Scored labels per corpus: " + "; ".join(f"{r['corpus']}: {', '.join(r['scored_labels'])}"
                                                                   for r in results["corpora"]))  # fmt: skip
            lines.append("")
    if results["corpora"] and cfg.regression:
        header = ["corpus", "language", "SI/SD", "utterances", "CCC", "Pearson r", "R²"]
        body = [[r["corpus"], lang.get(r["corpus"], ""), "SI" if r["speaker_independent"] else "SD", r["n"],
                 f"{r['ccc']:.3f}", f"{r['pearson']:.3f}", f"{r['r2']:.3f}"] for r in results["corpora"]]  # fmt: skip
        lines += [markdown_table(header=header, rows=body), ""]
    if results["few_shot"]:
        ks = sorted({r["shots"] for r in results["few_shot"]})
        header = ["corpus", "SI/SD"] + [f"K={k}" for k in ks]
        body = []
        for corpus in sorted({r["corpus"] for r in results["few_shot"]}):
            cells = {r["shots"]: r for r in results["few_shot"] if r["corpus"] == corpus}
            si = all(c["speaker_independent"] for c in cells.values())
            body.append([corpus, "SI" if si else "SD"] + [f"{_pct(cells[k]['ua_mean'])} ± {_pct(cells[k]['ua_std'])}"
                                                           if k in cells else "-" for k in ks])  # fmt: skip
        lines += [f"UA % (mean ± sd over {cfg.repeats} seeds), K labelled target utterances per class:", "",
                  markdown_table(header=header, rows=body), ""]  # fmt: skip
    if results["layers"]:
        cands = list(next(iter(results["layers"].values())))
        lines += ["Per-layer analysis (test UA % of each candidate; the reported model is the one chosen on valid, "
                  f"chosen counts {results['chosen']}):", "",
                  markdown_table(header=["corpus", *cands],
                                 rows=[[c, *[_pct(v[k]) for k in cands]] for c, v in results["layers"].items()]), ""]  # fmt: skip
    jobs = results["jobs"]
    skipped = f"; {jobs['skipped']} not scored, see the notes" if jobs["skipped"] else ""
    lines += [f"Jobs: {jobs['total']} ({jobs['reused']} reused from earlier runs, {jobs['computed']} computed{skipped}).", ""]
    if results["notes"]:
        lines += ["Notes:", "", *[f"- {note}" for note in results["notes"]], ""]
    lines.append("Figures: " + ", ".join(f"`{p.relative_to(out)}`" for p in sorted(out.rglob("*.png"))))
    lines += ["", f"Reproduce: `emolingua benchmark --config {out / 'config.yaml'}` (the config, with absolute paths, "
              "is written beside this report)."]
    with atomic_write(out / "report.md", "w") as f:
        f.write("\n".join(lines) + "\n")


def _plots(cfg: BenchmarkConfig, results: dict[str, Any], out: Path) -> None:
    for old in [*out.glob("confusion/*.png"), out / "layers.png", out / "few_shot.png"]:  # from an earlier run
        old.unlink(missing_ok=True)
    for r in results["corpora"]:
        if "confusion" in r:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", r["corpus"]).strip("-")
            plot_confusion(confusion=r["confusion"], labels=r["labels"], path=out / "confusion" / f"{name}.png",
                           title=f"{r['corpus']} ({'SI' if r['speaker_independent'] else 'SD'}), UA {_pct(r['ua'])} %")  # fmt: skip
    if results["layers"]:
        layer_only = {c: [v[k] for k in v if k != "all"] for c, v in results["layers"].items()}
        plot_layers(ua=layer_only, path=out / "layers.png", title=f"{cfg.features}: UA of a probe on each layer ({cfg.protocol.split(':')[0]})")
    if results["few_shot"]:
        curves: dict[str, dict[int, tuple[float, float]]] = {}
        for r in results["few_shot"]:
            curves.setdefault(r["corpus"], {})[r["shots"]] = (r["ua_mean"], r["ua_std"])
        plot_few_shot(curves=curves, path=out / "few_shot.png", title=f"Few-shot adaptation ({cfg.model}, {cfg.features})")


def _empty_results() -> dict[str, Any]:
    return {"corpora": [], "few_shot": [], "layers": {}, "chosen": {}, "job_files": []}


def _evaluate(cfg: BenchmarkConfig, base: dict[str, Any], X: dict[str, Any], manifest: pd.DataFrame, out: Path, *,
              progress: bool) -> tuple[dict[str, Any], dict[str, int], list[str]]:  # fmt: skip
    """Splits, jobs (cached) and scores of one target; the notes name the folds not scored."""
    counts = {"total": 0, "reused": 0, "computed": 0, "skipped": 0}
    splits = _splits(cfg, manifest) if len(manifest) else pd.DataFrame()
    if splits.empty:
        return _empty_results(), counts, []
    jobs, counts = _run_jobs(cfg, X, manifest, splits, out, base, progress=progress)
    scored = [j for j in jobs if "skipped" not in j]
    results = _score(cfg, scored) if scored else _empty_results()
    results["job_files"] = [j["file"] for j in jobs]
    return results, counts, [j["skipped"] for j in jobs if "skipped" in j]


def _check_layers(cfg: BenchmarkConfig, streams: dict[str, Any]) -> None:
    """A layer index must exist in every layered stream (with none, only layer 0 exists)."""
    if cfg.layers in ("select", "all"):
        return
    pooled = {k: X for k, X in streams.items() if not isinstance(X, Frames) and X.ndim == 3 and len(X)}
    layered = {k: X for k, X in pooled.items() if X.shape[1] > 1} or pooled
    for name, X in layered.items():
        n = X.shape[1]
        if not -n <= int(cfg.layers) < n:
            raise ConfigError(f"layers {cfg.layers}: out of range; {name} has {n} layers, 0..{n - 1}")


def _own_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of emolingua's own warnings; other libraries' are handed back to the warning
    filters (the command line hides them unless --debug)."""
    package = Path(__file__).parent
    own = []
    for w in caught:
        if Path(w.filename).is_relative_to(package) and not issubclass(w.category, DeprecationWarning):
            own.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return list(dict.fromkeys(own))


def load_rows(cfg: BenchmarkConfig, *, progress: bool = True) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """The labelled rows of ``cfg``'s corpora with every feature stream (extracted into the store
    when it lacks them), and notes naming the rows left out: what other evaluations build on.

    >>> X, manifest, notes = load_rows(BenchmarkConfig(corpora="data", output="runs/x", features="egemaps"))  # doctest: +SKIP
    """
    cfg = _checked(cfg).resolved()
    extractors = _check(cfg)
    manifest, notes = _manifest(cfg, Path(cfg.output))
    X, manifest, left_out = _features(cfg, extractors, manifest[_scorable("label", manifest)].reset_index(drop=True),
                                      progress=progress)  # fmt: skip
    return X, manifest, notes + left_out


def feature_extractors(cfg: BenchmarkConfig) -> list[FeatureExtractor]:
    """The extractors of ``cfg``'s streams, as :func:`load_rows` builds them (the config checked first)."""
    return _check(_checked(cfg).resolved())


def run_benchmark(cfg: BenchmarkConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a benchmark and write results.json, report.md and the figures to ``cfg.output``.

    The whole configuration is validated first (:meth:`BenchmarkConfig.validate`), before anything
    is scanned or extracted. ``results["jobs"]`` counts the fold jobs reused and computed.
    """
    start = time.perf_counter()
    cfg = _checked(cfg).resolved()
    extractors = _check(cfg)
    out = Path(cfg.output)
    import yaml

    with atomic_write(out / "config.yaml", "w") as f:
        f.write(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))  # tuples as lists
    # one Ray session, if any, for the extraction and the fold jobs
    with executor_session(executor=cfg.executor, address=cfg.ray_address), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest, notes = _manifest(cfg, out)
        languages = manifest.groupby("corpus")["language"].first().astype(str).to_dict()
        without = _without_categories(cfg, manifest)
        on_intensity = manifest["corpus"].isin(without).to_numpy()
        if cfg.joint and without:  # one model for all: BAVED's levels become its own label set
            levels = manifest.loc[on_intensity, "intensity"].fillna("").astype(str)
            manifest.loc[on_intensity, "label"] = [f"level {v}" if v else "" for v in levels]
            notes.append(f"joint: {', '.join(without)} joined with intensity levels as labels")
            without, on_intensity = [], np.zeros(len(manifest), dtype=bool)
        keep = (_scorable(cfg.target, manifest) & ~on_intensity) | (_scorable("intensity", manifest) & on_intensity)
        X, manifest, left_out = _features(cfg, extractors, manifest[keep].reset_index(drop=True), progress=progress)
        _check_layers(cfg, X)
        notes += left_out
        base = _job_base(cfg, extractors)
        main = ~manifest["corpus"].isin(without).to_numpy()
        results, counts, skipped = _evaluate(cfg, base, _take(X, np.flatnonzero(main)), manifest[main].reset_index(drop=True), out,
                                             progress=progress)  # fmt: skip
        notes += skipped
        if without:  # e.g. BAVED: no categories, so its intensity levels are the classes
            sub = dataclasses.replace(cfg, target="intensity", only_corpora=tuple(without))
            extra, more, skipped = _evaluate(sub, _job_base(sub, extractors), _take(X, np.flatnonzero(~main)),
                                             manifest[~main].reset_index(drop=True), out, progress=progress)  # fmt: skip
            for r in extra["corpora"]:
                r["corpus"] = f"{r['corpus']} (intensity)"
            results["corpora"] += extra["corpora"]
            results["layers"].update({f"{k} (intensity)": v for k, v in extra["layers"].items()})
            results["job_files"] += extra["job_files"]
            counts = {k: counts[k] + more[k] for k in counts}
            notes += [*skipped, f"scored on intensity levels (no emotion categories): {', '.join(without)}"]
    notes = _own_warnings(caught) + notes
    seconds = time.perf_counter() - start
    results.update({"config": cfg.to_dict(), "jobs": counts, "notes": notes, "seconds": seconds,
                    "emobox_reference": _emobox_reference(cfg)})  # fmt: skip
    with atomic_write(out / "results.json", "w") as f:
        f.write(json.dumps(results, indent=1, default=str))
    _plots(cfg, results, out)
    _write_report(cfg, results, languages, out, seconds)
    return results
