"""From audio files to a saved model's answers: the features it was trained on, then its predictions.

>>> model = Model.load("runs/m")                                               # doctest: +SKIP
>>> predict_files(model=model, paths=["a.wav", "b.flac"])                        # doctest: +SKIP
      path  label     score  p:angry  p:happy ...

A saved model records each stream's extractor (spec, options, fingerprint); the same
extractors are rebuilt here, the files go through the feature store (so a second call reads
what the first computed), and the model predicts from the rows as it did in training. A file
that cannot be read gets one row with its error and no prediction; the other files go on.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from emolingua.errors import ConfigError
from emolingua.features import FeatureExtractor, get_extractor
from emolingua.features.extract import default_store_dir, extract_to_store
from emolingua.features.store import FeatureStore
from emolingua.fileio import content_keys, path_list
from emolingua.models import Dataset, Model

__all__ = ["dataset_from_audio", "extractors_of", "predict_files"]


def extractors_of(*, model: Model) -> list[FeatureExtractor]:
    """The extractors that made the model's streams, rebuilt from its saved description.

    A rebuilt extractor whose fingerprint differs from the training one (another emolingua
    version, another precision on another CPU) is used, with a warning: its numbers may differ.
    """
    if not model.features_:
        raise ConfigError(f"model {model.name}: it does not say how its features were made (trained on arrays, "
                          "not on a feature store); predict from a Dataset instead")  # fmt: skip
    out: dict[str, FeatureExtractor] = {}
    for stream, info in model.features_.items():
        spec = info["spec"]
        if spec in out:
            continue
        identity = info.get("identity", {})
        extractor = get_extractor(spec, **identity.get("options", {}))
        if extractor.fingerprint() != info["fingerprint"]:
            warnings.warn(f"{spec}: the features are computed differently here than when the model was trained "
                          f"(fingerprint {extractor.fingerprint()} vs {info['fingerprint']}); predictions may differ",
                          stacklevel=2)  # fmt: skip
        out[spec] = extractor
    return list(out.values())


def dataset_from_audio(*, model: Model, paths: Sequence[str | os.PathLike], store: str | os.PathLike | None = None,
                       language: str = "", progress: bool = False) -> tuple[Dataset, dict[str, str]]:  # fmt: skip
    """The rows of ``paths`` with the streams ``model`` reads, and ``{path: reason}`` for files left out.

    >>> rows, failed = dataset_from_audio(model=model, paths=["a.wav"])        # doctest: +SKIP
    """
    paths = [os.fspath(p) for p in path_list(paths, "paths")]
    extractors = extractors_of(model=model)
    feature_store = FeatureStore(root=store or default_store_dir())
    keys = content_keys(paths)
    failed: dict[str, str] = {p: "file not found or not readable" for p, k in zip(paths, keys) if k is None}
    for extractor in extractors:
        summary = extract_to_store(paths=paths, keys=keys, extractor=extractor, store=feature_store, progress=progress)
        failed.update({p: why for p, why in summary.failures if p not in failed})
    frames = any("/" in s for s in model.streams_)
    manifest = pd.DataFrame({"path": paths, "language": language, "corpus": "", "speaker": ""})
    rows, found = Dataset.from_store(manifest=manifest, store=feature_store, extractors=extractors, targets=(),
                                     frames=frames, keys=keys)  # fmt: skip
    for p in np.asarray(paths)[~found]:
        failed.setdefault(str(p), "no features after extraction")
    return rows.select(streams=[s for s in model.streams_]), failed


def predict_files(*, model: Model, paths: Sequence[str | os.PathLike], store: str | os.PathLike | None = None,
                  language: str = "", progress: bool = False) -> pd.DataFrame:  # fmt: skip
    """One row per file: ``path``, ``label`` and ``score`` (classifiers: the top class and its probability,
    then ``p:<class>`` for every class) or ``value`` (regression), and ``error`` for files left out."""
    rows, failed = dataset_from_audio(model=model, paths=paths, store=store, language=language, progress=progress)
    table = pd.DataFrame({"path": rows.ids})
    if len(rows) and model.task == "classification":
        proba = model.predict_proba(rows)
        assert model.classes_ is not None
        table["label"] = model.classes_[proba.argmax(axis=1)]
        table["score"] = proba.max(axis=1)
        for i, c in enumerate(model.classes_):
            table[f"p:{c}"] = proba[:, i]
    elif len(rows):
        table["value"] = model.predict(rows)
    table["error"] = ""
    errors = pd.DataFrame({"path": list(failed), "error": list(failed.values())})
    order = {os.fspath(p): i for i, p in enumerate(paths)}
    out = pd.concat([table, errors], ignore_index=True)
    return out.sort_values("path", key=lambda s: s.map(lambda p: order.get(p, len(order)))).reset_index(drop=True)
