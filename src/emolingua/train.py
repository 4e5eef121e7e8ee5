"""Train a pipeline on everything: the folder ``emolingua predict`` and :func:`emolingua.pipeline` load.

>>> cfg = TrainConfig(corpora="../shared/corpora", output="runs/my-model")        # doctest: +SKIP
>>> train_pipeline(cfg)                                  # runs/my-model/pipeline.json  # doctest: +SKIP

Rows and features come as the benchmark gets them (scan or manifest, cached extraction, rows
left out with a note). In every corpus about ``valid_fraction`` of the speakers are held out as
validation rows, chosen as the benchmark's folds choose them; the model makes every choice it
has (layer, C, epochs) on them and is trained on the other speakers. Nothing is scored on test
rows here: the scores a pipeline's model card quotes come from the benchmark of the same recipe.

Heads: ``emotion`` (the ``model`` on the ``label`` column) and, with ``affect``, ``arousal`` and
``valence`` (``affect_model``, by default ridge regression, on the manifest's values: ratings
where a corpus has them, else the taxonomy's priors of each label shifted by the intensity).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emolingua import __version__
from emolingua.benchmark import BenchmarkConfig, _resolve_paths, dataset_rows, feature_extractors, load_rows
from emolingua.config import load_config, runtime, to_dict
from emolingua.errors import ConfigError
from emolingua.fileio import atomic_write, check_writable
from emolingua.models import get_model, model_class, model_names
from emolingua.models.data import describe_streams
from emolingua.pipelines import PIPELINE_FILE, PIPELINE_FORMAT
from emolingua.protocols import valid_speakers
from emolingua.segments import SegmentOptions

__all__ = ["TrainConfig", "train_pipeline"]


@dataclass(frozen=True)
class TrainConfig:
    """One pipeline's recipe; ``TrainConfig.from_file`` reads it from YAML/TOML/JSON.

    corpora: a folder to scan or a manifest file; only_corpora / drop_labels: as in the benchmark.
    model / model_options: the emotion head (any registered classifier); layers / normalise: its
    feature view (``normalise: train``: one z-scoring from all training rows, the only mode that
    treats an unseen recording exactly as it treated the training rows).
    affect: also train arousal and valence heads (``affect_model``) on the same features.
    segments: the pipeline's default segmentation (:class:`~emolingua.segments.SegmentOptions`).
    """

    corpora: str
    output: str = runtime()
    model: str = "logreg"
    model_options: dict[str, Any] = field(default_factory=dict)
    features: str = "whisper-base"
    feature_options: dict[str, Any] = field(default_factory=dict)
    layers: str = "select"
    normalise: str = "train"
    only_corpora: tuple[str, ...] = ()
    drop_labels: tuple[str, ...] = ()
    valid_fraction: float = 0.2
    affect: bool = True
    affect_model: str = "ridge"
    affect_options: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    store: str | None = runtime(None)
    workers: int = runtime(1)
    threads: int | None = runtime(None)

    def __post_init__(self) -> None:
        for name in ("only_corpora", "drop_labels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        known = model_names()
        for what, name in (("model", self.model), ("affect_model", self.affect_model)):
            if name not in known:
                raise ConfigError(f"{what}: {name!r} is not a registered model; known: {', '.join(known)}")
        if model_class(self.model).task != "classification":
            raise ConfigError(f"model: {self.model} is a {model_class(self.model).task} model; the emotion head "
                              "needs a classifier")  # fmt: skip
        if self.affect and model_class(self.affect_model).task != "regression":
            raise ConfigError(f"affect_model: {self.affect_model} is not a regression model")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction={self.valid_fraction!r}: must be between 0 and 1")
        SegmentOptions(**self.segments)  # a bad default segmentation fails now, not at the first prediction

    @classmethod
    def from_file(cls, path: str | Path | None, *, overrides: Sequence[str] = (), **values: Any) -> TrainConfig:
        """A config file (paths against its folder), then ``values``, then dotted ``overrides``."""
        values = {k: v for k, v in values.items() if v is not None}
        return load_config(cls, path, overrides=overrides, prepare=_resolve_paths, **values)


def _fit_head(name: str, options: dict[str, Any], X: dict[str, Any], manifest: pd.DataFrame, roles: np.ndarray,
              target: str, features: dict[str, Any]) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    keep = (manifest[target].notna() & (manifest[target].astype(str) != "")).to_numpy()
    train = dataset_rows(X, manifest, np.flatnonzero(keep & (roles == "train")), target, features=features)
    valid = dataset_rows(X, manifest, np.flatnonzero(keep & (roles == "valid")), target, features=features)
    start = time.perf_counter()
    model = get_model(name, target=target, **options).fit(train, valid=valid if len(valid) else None)
    info = {"model": name, "train_rows": len(train), "valid_rows": len(valid), "selected": model.selected,
            "valid_score": model.score(valid) if len(valid) else None,
            "valid_metric": "UA" if model.task == "classification" else "CCC",
            "fit_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    return model, info


def train_pipeline(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Train every head of ``cfg`` and write the pipeline folder ``cfg.output``; returns it."""
    out = check_writable(cfg.output, what="output")
    bench = BenchmarkConfig(corpora=cfg.corpora, output=str(out), features=cfg.features,
                            feature_options=cfg.feature_options, model=cfg.model, only_corpora=cfg.only_corpora,
                            drop_labels=cfg.drop_labels, store=cfg.store, workers=cfg.workers, threads=cfg.threads,
                            seed=cfg.seed)  # fmt: skip
    X, manifest, notes = load_rows(bench, progress=progress)
    (out / "manifest.parquet").unlink(missing_ok=True)  # the scan's table of the user's files stays out of the pipeline
    if manifest.empty:
        raise ConfigError(f"{cfg.corpora}: no labelled rows with features to train on")
    features = describe_streams(extractors=feature_extractors(bench), streams=X)
    roles = valid_speakers(manifest, fraction=cfg.valid_fraction, seed=cfg.seed)
    layers: Any = cfg.layers if cfg.layers in ("select", "all") else (int(cfg.layers),)
    view = {"layers": layers, "normalise": cfg.normalise}
    heads: dict[str, Any] = {}
    emotion, info = _fit_head(cfg.model, {**view, "seed": cfg.seed, "threads": cfg.threads, **cfg.model_options},
                              X, manifest, roles, "label", features)  # fmt: skip
    heads["emotion"] = (emotion, info)
    if cfg.affect:
        for dim in ("arousal", "valence"):
            if dim in manifest and manifest[dim].notna().any():
                heads[dim] = _fit_head(cfg.affect_model, {**view, "seed": cfg.seed, "threads": cfg.threads,
                                                          **cfg.affect_options}, X, manifest, roles, dim, features)  # fmt: skip
    for name, (model, _) in heads.items():
        model.save(out / name)
    spec = {
        "format": PIPELINE_FORMAT, "task": "emotion", "emolingua": __version__,
        "labels": [str(c) for c in emotion.classes_], "heads": {k: v[1] for k, v in heads.items()},
        "languages": sorted(set(manifest["language"].astype(str))),
        "corpora": {c: int(n) for c, n in manifest["corpus"].value_counts().sort_index().items()},
        "speakers": int(manifest.groupby("corpus")["speaker"].nunique().sum()),
        "segments": to_dict(SegmentOptions(**cfg.segments)), "recipe": to_dict(cfg), "notes": notes,
    }  # fmt: skip
    for runtime_field in ("output", "store", "workers", "threads"):
        spec["recipe"].pop(runtime_field, None)
    with atomic_write(out / PIPELINE_FILE, "w") as f:
        f.write(json.dumps(spec, indent=1, default=str))
    return out
