"""Classifiers and regressors over pooled features: one interface, one registry.

>>> from emolingua.models import Dataset, Model, get_model
>>> train = Dataset(X=X, y=y, corpus=corpus, language=language, speaker=speaker)   # doctest: +SKIP
>>> model = get_model("logreg", layers=(3,), stat="mean").fit(train, valid=valid)   # doctest: +SKIP
>>> model.selected, model.predict(test)[:3]           # {'C': 0.01}, ['angry' ...]   # doctest: +SKIP
>>> model.save("runs/fold0"); Model.load("runs/fold0").predict_proba(test)          # doctest: +SKIP

Rows (:class:`Dataset`) carry their features ``X`` (N, streams, dim), label, corpus, language
and speaker. Every model first takes a :class:`FeatureView` of ``X`` (which streams, which
half of each pooled vector) and normalises it:

``normalise="corpus"`` (default)
    z-score every feature per corpus, with the mean and standard deviation of that corpus's
    *training* rows. At predict time, a corpus never seen in training is normalised with its
    own statistics, taken from the rows being predicted (transductive per-corpus
    normalisation, standard in cross-corpus SER: it needs no labels, only the unlabelled test
    rows of that corpus, so predictions for an unseen corpus depend on which of its rows are
    predicted together; pass the whole test corpus at once). An unseen corpus with a single
    row falls back to the statistics of all training rows.
``normalise="speaker"``
    z-score per (corpus, speaker), with each speaker's own rows, the same at train and predict
    time (so also transductive for test speakers). Rows without a speaker id (empty string)
    form one group per corpus; a group of a single row uses its corpus's statistics as above.
``normalise="none"``
    the features as stored.

The fitted statistics are part of the model state and are saved with it.

Model selection (C, alpha, the number of epochs) uses ``valid`` only, by unweighted accuracy
(UA, the mean of per-class recalls = balanced accuracy) for classification and CCC or R² for
regression; the final model is the one trained on ``train`` (never refitted on train+valid),
and test rows are never seen by ``fit``. Without ``valid`` (None or no rows) nothing is
selected: a grid of one value is used as is, a longer grid falls back to ``fallback_C`` /
``fallback_alpha``, torch models train for ``max_epochs``; ``validated_`` is then False.

Models (:func:`model_names`): ``logreg``, ``linear-svm``, ``mlp``, ``layer-weights``
(classification) and ``ridge`` (regression). New models subclass :class:`Model` (sklearn-like
or closed-form) or :class:`TorchModel` (nets whose ``forward(x, language_ids)`` gets every
row's language id, so per-language gates or towers can be added) and register under ``name``.

Saved models are a folder: ``model.json`` (name, config, classes, languages, chosen
hyper-parameters, selection history) and ``state.npz`` (normaliser statistics, coefficient
arrays, torch ``state_dict`` tensors as numpy arrays), read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from emolingua.errors import UnknownNameError
from emolingua.metrics import ccc, r_squared, unweighted_accuracy
from emolingua.registry import Registry

__all__ = [
    "Dataset",
    "FeatureView",
    "LayerWeights",
    "LinearSVM",
    "LogReg",
    "MLP",
    "Model",
    "ModelConfig",
    "Normaliser",
    "Prepared",
    "Ridge",
    "RegressionModel",
    "TorchConfig",
    "TorchModel",
    "get_model",
    "model_names",
]

#: Bump when the saved layout changes.
MODEL_FORMAT = 1
STATS = ("all", "mean+std", "mean", "std")
NORMALISE = ("corpus", "speaker", "none")
_EPS = 1e-8


# ----------------------------------------------------------------------------- data
def _strings(values: Any, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=str)
    arr = np.asarray(values).astype(str)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows of pooled features with their label, corpus, language and speaker.

    ``X`` is float32 (N, streams, dim) (a 2-D array is read as one stream); ``y`` holds class
    labels (read as strings) or floats for regression, or None for unlabelled rows;
    ``corpus``, ``language`` and ``speaker`` are (N,) strings (None: all empty strings).

    >>> d = Dataset(X=np.zeros((4, 7, 1024)), y=["ang", "hap", "ang", "sad"], corpus=["c"] * 4)
    >>> len(d.subset([0, 2]))
    2
    """

    X: np.ndarray
    y: np.ndarray | None = None
    corpus: np.ndarray | None = None
    language: np.ndarray | None = None
    speaker: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=np.float32)
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3:
            raise ValueError(f"X must be (N, streams, dim), got shape {X.shape}")
        n = len(X)
        object.__setattr__(self, "X", X)
        if self.y is not None:
            y = np.asarray(self.y)
            if y.shape != (n,):
                raise ValueError(f"y must have shape ({n},), got {y.shape}")
            object.__setattr__(self, "y", y)
        for name in ("corpus", "language", "speaker"):
            object.__setattr__(self, name, _strings(getattr(self, name), n, name))

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Dataset:
        """The rows at ``idx`` (integer indices or a boolean mask): ``d.subset(d.corpus == "crema-d")``."""
        idx = np.asarray(idx)
        if idx.dtype != bool:
            idx = idx.astype(np.intp)  # an empty list is float
        return Dataset(
            X=self.X[idx], y=None if self.y is None else self.y[idx], corpus=self.corpus[idx],
            language=self.language[idx], speaker=self.speaker[idx],
        )  # fmt: skip

    @classmethod
    def concat(cls, datasets: Sequence[Dataset]) -> Dataset:
        """Rows of several datasets, in order: ``Dataset.concat([crema, emodb])``."""
        if not datasets:
            raise ValueError("nothing to concatenate")
        ys = [d.y for d in datasets]
        return cls(
            X=np.concatenate([d.X for d in datasets]),
            y=None if any(y is None for y in ys) else np.concatenate(ys),
            corpus=np.concatenate([d.corpus for d in datasets]),
            language=np.concatenate([d.language for d in datasets]),
            speaker=np.concatenate([d.speaker for d in datasets]),
        )


# ----------------------------------------------------------------------------- view + normaliser
@dataclass(frozen=True)
class FeatureView:
    """Which part of ``X`` a model sees, and how it is normalised.

    ``layers``: ``"all"`` or a tuple of stream indices (e.g. Whisper hidden states).
    ``stat``: ``"mean"`` (first half of each pooled vector), ``"std"`` (second half),
    ``"mean+std"`` or ``"all"`` (the whole vector; use ``"all"`` for pooled vectors that are
    not mean/std pairs, e.g. ``egemaps`` functionals or ``ge2e`` embeddings).
    ``normalise``: ``"corpus"``, ``"speaker"`` or ``"none"`` (see the module docstring).

    >>> FeatureView(layers=(2, 3), stat="mean").select(np.zeros((5, 7, 1024))).shape
    (5, 2, 512)
    """

    layers: str | tuple[int, ...] = "all"
    stat: str = "all"
    normalise: str = "corpus"

    def __post_init__(self) -> None:
        if isinstance(self.layers, str):
            if self.layers != "all":
                raise ValueError(f"layers must be 'all' or a tuple of stream indices, got {self.layers!r}")
        else:
            layers = tuple(int(i) for i in self.layers)
            if not layers:
                raise ValueError("layers must not be empty")
            object.__setattr__(self, "layers", layers)
        if self.stat not in STATS:
            raise ValueError(f"stat must be one of {STATS}, got {self.stat!r}")
        if self.normalise not in NORMALISE:
            raise ValueError(f"normalise must be one of {NORMALISE}, got {self.normalise!r}")

    def stream_indices(self, n_streams: int) -> tuple[int, ...]:
        """The selected stream indices, checked against ``n_streams``."""
        if self.layers == "all":
            return tuple(range(n_streams))
        bad = [i for i in self.layers if not -n_streams <= i < n_streams]
        if bad:
            raise ValueError(f"layers {bad} out of range for {n_streams} streams")
        return tuple(i % n_streams for i in self.layers)

    def select(self, X: np.ndarray) -> np.ndarray:
        """(N, streams, dim) -> (N, len(layers), dim or dim / 2), float32."""
        X = np.asarray(X, dtype=np.float32)
        X = X[:, list(self.stream_indices(X.shape[1]))]
        if self.stat in ("mean", "std"):
            dim = X.shape[2]
            if dim % 2:
                raise ValueError(f"stat={self.stat!r} needs mean/std pairs (an even dim), got dim {dim}; use 'all'")
            X = X[:, :, : dim // 2] if self.stat == "mean" else X[:, :, dim // 2 :]
        return np.ascontiguousarray(X)


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = X.astype(np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std < _EPS] = 1.0
    return mean, std


class Normaliser:
    """Per-corpus or per-speaker z-scoring of viewed features; its statistics are model state.

    >>> norm = Normaliser("corpus").fit(Xv, corpus=train.corpus)                  # doctest: +SKIP
    >>> Z = norm.transform(Xv_test, corpus=test.corpus, speaker=test.speaker)     # doctest: +SKIP
    """

    def __init__(self, mode: str = "corpus") -> None:
        if mode not in NORMALISE:
            raise ValueError(f"normalise must be one of {NORMALISE}, got {mode!r}")
        self.mode = mode
        self.corpora: list[str] = []
        self.mean: np.ndarray | None = None  # (corpora, ...) float64
        self.std: np.ndarray | None = None
        self.global_mean: np.ndarray | None = None
        self.global_std: np.ndarray | None = None

    def fit(self, X: np.ndarray, *, corpus: np.ndarray) -> Normaliser:
        """Statistics of every training corpus (and of all rows, for fallbacks)."""
        if self.mode == "none":
            return self
        self.corpora = sorted(set(corpus.tolist()))
        stats = [_moments(X[corpus == c]) for c in self.corpora]
        self.mean = np.stack([m for m, _ in stats])
        self.std = np.stack([s for _, s in stats])
        self.global_mean, self.global_std = _moments(X)
        return self

    def _corpus_stats(self, c: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if c in self.corpora:
            k = self.corpora.index(c)
            return self.mean[k], self.std[k]  # type: ignore[index]
        if len(rows) >= 2:  # unseen corpus: its own statistics (transductive)
            return _moments(rows)
        return self.global_mean, self.global_std  # type: ignore[return-value]

    def transform(self, X: np.ndarray, *, corpus: np.ndarray, speaker: np.ndarray) -> np.ndarray:
        """z-scored float32 copy of ``X`` (rows in any order, any mix of corpora and speakers)."""
        if self.mode == "none":
            return np.array(X, dtype=np.float32)
        if self.mean is None:
            raise RuntimeError("normaliser is not fitted")
        out = np.empty(X.shape, dtype=np.float32)
        for c in np.unique(corpus):
            in_c = np.flatnonzero(corpus == c)
            c_stats = self._corpus_stats(str(c), X[in_c])
            if self.mode == "corpus":
                groups = [(in_c, c_stats)]
            else:
                groups = []
                for s in np.unique(speaker[in_c]):
                    rows = in_c[speaker[in_c] == s]
                    groups.append((rows, _moments(X[rows]) if len(rows) >= 2 else c_stats))
            for rows, (mean, std) in groups:
                out[rows] = ((X[rows] - mean) / std).astype(np.float32)
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"mode": self.mode, "corpora": self.corpora}
        if self.mode == "none":
            return meta, {}
        arrays = {"norm.mean": self.mean, "norm.std": self.std, "norm.global_mean": self.global_mean,
                  "norm.global_std": self.global_std}  # fmt: skip
        return meta, arrays  # type: ignore[return-value]

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Normaliser:
        norm = cls(meta["mode"])
        norm.corpora = list(meta["corpora"])
        if norm.mode != "none":
            norm.mean, norm.std = arrays["norm.mean"], arrays["norm.std"]
            norm.global_mean, norm.global_std = arrays["norm.global_mean"], arrays["norm.global_std"]
        return norm


# ----------------------------------------------------------------------------- helpers
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- the interface
@dataclass(frozen=True)
class ModelConfig:
    """Options every model has: the feature ``view``, a ``seed`` and a thread cap (None: leave as is)."""

    view: FeatureView = FeatureView()
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.view, dict):  # read back from JSON
            object.__setattr__(self, "view", FeatureView(**self.view))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))


@dataclass(frozen=True)
class Prepared:
    """What a model's hooks get: the viewed, normalised ``X`` (N, layers, dim) float32; ``y`` as given
    (class labels as strings, or floats); ``y_index`` (position in ``classes_``, -1 for a class unseen
    in training; None for regression or unlabelled rows); ``language_ids`` (0 = a language unseen in
    training, 1.. = ``languages_``); and the source rows ``data``."""

    X: np.ndarray
    y: np.ndarray | None
    y_index: np.ndarray | None
    language_ids: np.ndarray
    data: Dataset

    @property
    def flat(self) -> np.ndarray:
        """``X`` as (N, layers * dim)."""
        return self.X.reshape(len(self.X), -1)


#: Modules that define more models; imported on the first registry lookup.
_BUILTIN_MODULES: tuple[str, ...] = ()
_REGISTRY: Registry[Model] = Registry("model", group="emolingua.models", builtins=_BUILTIN_MODULES)
_VIEW_OPTIONS = tuple(f.name for f in dataclasses.fields(FeatureView))


class Model(ABC):
    """Base class. Set ``name``, ``task`` and ``Config``; implement ``_fit``, ``_predict_proba`` (or
    ``_predict`` for regression), ``_state`` and ``_set_state``.

    Options are the ``Config`` fields; the view's fields (``layers``, ``stat``, ``normalise``) may be
    given directly: ``LogReg(layers=(3,), stat="mean")`` equals ``LogReg(view=FeatureView(...))``.

    Attributes after ``fit``: ``classes_`` (sorted class labels, None for regression),
    ``languages_`` (sorted training languages), ``selected`` (hyper-parameters chosen on valid),
    ``history`` (one record per grid value or epoch, with its valid score), ``validated_`` (False
    when fitted without valid: fallback values were used), ``normaliser_``.
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = "classification"
    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):  # a subclass that inherits a name does not replace its parent
            _REGISTRY.register(cls.name, cls)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, task, summary and every option with its type and default, for ``emolingua models list``.

        The view's fields are listed in its place, as they may be given directly (``stat="mean"``).
        """
        defaults = cls.Config()
        options = []
        for f in dataclasses.fields(cls.Config):
            owner, fields = (defaults.view, dataclasses.fields(FeatureView)) if f.name == "view" else (defaults, [f])
            options += [{"name": g.name, "type": str(g.type), "default": getattr(owner, g.name)} for g in fields]
        summary = (cls.__doc__ or "").strip().split("\n")[0].removeprefix(f"``{cls.name}``:").strip()
        return {"name": cls.name, "task": cls.task, "summary": summary, "options": options}

    def __init__(self, **options: Any) -> None:
        view_options = {k: options.pop(k) for k in _VIEW_OPTIONS if k in options}
        if view_options:
            if "view" in options:
                raise TypeError(f"{self.name}: give either view= or {sorted(view_options)}, not both")
            options["view"] = FeatureView(**view_options)
        known = {f.name for f in dataclasses.fields(self.Config)}
        unknown = set(options) - known
        if unknown:
            known |= set(_VIEW_OPTIONS)
            raise TypeError(f"{self.name}: unknown options {sorted(unknown)}; known: {sorted(known)}")
        self.config = self.Config(**options)
        self._reset()

    def _reset(self) -> None:
        self.classes_: np.ndarray | None = None
        self.languages_: tuple[str, ...] = ()
        self.input_shape_: tuple[int, int] | None = None
        self.normaliser_: Normaliser | None = None
        self.selected: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.validated_ = False

    def __repr__(self) -> str:
        default = self.Config()
        changed = [f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config)
                   if getattr(self.config, f.name) != getattr(default, f.name)]  # fmt: skip
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- public API ---------------------------------------------------------------------------
    def fit(self, train: Dataset, *, valid: Dataset | None = None) -> Model:
        """Train on ``train``; choose hyper-parameters on ``valid`` only. Returns ``self``.

        >>> model = get_model("logreg").fit(train, valid=valid)                      # doctest: +SKIP
        """
        self._reset()
        if valid is not None and len(valid) == 0:
            valid = None
        for what, d in (("train", train), ("valid", valid)):
            if d is not None and d.y is None:
                raise ValueError(f"{self.name}: {what} rows need labels")
        assert train.y is not None
        if len(train) == 0:
            raise ValueError(f"{self.name}: no training rows")
        if self.task == "classification":
            self.classes_ = np.unique(train.y.astype(str))
            if len(self.classes_) < 2:
                raise ValueError(f"{self.name}: training rows hold a single class {self.classes_.tolist()}")
        self.languages_ = tuple(sorted(set(train.language.tolist())))
        self.input_shape_ = (int(train.X.shape[1]), int(train.X.shape[2]))
        viewed = self.config.view.select(train.X)
        self.normaliser_ = Normaliser(self.config.view.normalise).fit(viewed, corpus=train.corpus)
        prepared = self._prepared(train, viewed)
        with self._limits():
            self._fit(prepared, None if valid is None else self._prepare(valid))
        self.validated_ = valid is not None
        return self

    def predict_proba(self, data: Dataset) -> np.ndarray:
        """Class probabilities, (N, len(classes_)), float64: ``model.predict_proba(test)``."""
        if self.task != "classification":
            raise TypeError(f"{self.name} is a {self.task} model: use predict()")
        prepared = self._prepare(data, labels=False)
        with self._limits():
            return self._predict_proba(prepared)

    def predict(self, data: Dataset) -> np.ndarray:
        """Predicted class labels (or values for regression): ``model.predict(test)``."""
        assert self.classes_ is not None
        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path/model.json`` and ``path/state.npz`` (the folder is created): ``model.save("runs/f0")``."""
        if self.normaliser_ is None:
            raise RuntimeError(f"{self.name}: fit the model before saving it")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        norm_meta, arrays = self.normaliser_.state()
        model_meta, model_arrays = self._state()
        clash = set(arrays) & set(model_arrays)
        if clash:
            raise RuntimeError(f"state array names clash: {sorted(clash)}")
        arrays.update(model_arrays)
        meta = {
            "format": MODEL_FORMAT, "model": self.name, "task": self.task,
            "config": dataclasses.asdict(self.config),
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "languages": list(self.languages_), "input_shape": list(self.input_shape_ or ()),
            "selected": self.selected, "validated": self.validated_, "history": self.history,
            "normaliser": norm_meta, "state": model_meta,
        }  # fmt: skip
        tmp = folder / "state.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, folder / "state.npz")
        tmp = folder / "model.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, default=_json_default))
        os.replace(tmp, folder / "model.json")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """A model written by :meth:`save`: ``Model.load("runs/f0")``."""
        folder = Path(path)
        meta = json.loads((folder / "model.json").read_text())
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"{folder}: model format {meta.get('format')}, this version reads {MODEL_FORMAT}")
        try:
            model_cls = _REGISTRY.get(meta["model"])
        except UnknownNameError as exc:
            raise UnknownNameError(f"{folder}: {exc}") from None
        if not issubclass(model_cls, cls):
            raise TypeError(f"{folder} holds a {model_cls.__name__}, not a {cls.__name__}")
        with np.load(folder / "state.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model = model_cls(**meta["config"])
        model.classes_ = None if meta["classes"] is None else np.asarray(meta["classes"], dtype=str)
        model.languages_ = tuple(meta["languages"])
        model.input_shape_ = tuple(meta["input_shape"])  # type: ignore[assignment]
        model.selected, model.history, model.validated_ = meta["selected"], meta["history"], meta["validated"]
        model.normaliser_ = Normaliser.from_state(meta["normaliser"], arrays)
        model._set_state(meta["state"], arrays)
        return model

    # -- shared machinery -----------------------------------------------------------------------
    def _language_ids(self, language: np.ndarray) -> np.ndarray:
        index = {lang: i + 1 for i, lang in enumerate(self.languages_)}
        return np.array([index.get(lang, 0) for lang in language.tolist()], dtype=np.int64)

    def _prepared(self, data: Dataset, viewed: np.ndarray, *, labels: bool = True) -> Prepared:
        assert self.normaliser_ is not None
        X = self.normaliser_.transform(viewed, corpus=data.corpus, speaker=data.speaker)
        y, y_index = (data.y if labels else None), None
        if y is not None and self.task == "classification":
            assert self.classes_ is not None
            y = y.astype(str)
            pos = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            y_index = np.where(self.classes_[pos] == y, pos, -1).astype(np.int64)
        elif y is not None:
            y = y.astype(np.float64)
        return Prepared(X=X, y=y, y_index=y_index, language_ids=self._language_ids(data.language), data=data)

    def _prepare(self, data: Dataset, *, labels: bool = True) -> Prepared:
        if self.normaliser_ is None:
            raise RuntimeError(f"{self.name}: the model is not fitted")
        if tuple(data.X.shape[1:]) != tuple(self.input_shape_ or ()):
            raise ValueError(f"{self.name}: X has (streams, dim) {data.X.shape[1:]}, trained on {self.input_shape_}")
        return self._prepared(data, self.config.view.select(data.X), labels=labels)

    @contextmanager
    def _limits(self) -> Iterator[None]:
        if not self.config.threads:
            yield
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.config.threads, user_api="blas"):
            yield

    def _valid_score(self, valid: Prepared, proba: np.ndarray) -> float:
        assert self.classes_ is not None and valid.y is not None
        return unweighted_accuracy(valid.y, self.classes_[np.argmax(proba, axis=1)])

    # -- what subclasses implement ------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        """Train; set ``selected`` and ``history``."""

    def _predict_proba(self, data: Prepared) -> np.ndarray:
        """Class probabilities; regression models have none (their ``predict_proba`` raises)."""
        raise TypeError(f"{self.name} gives no class probabilities")

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able metadata and named arrays that :meth:`_set_state` reads back."""

    @abstractmethod
    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` wrote."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _check_grid(name: str, what: str, grid: tuple[float, ...]) -> None:
    if not grid or any(float(v) <= 0 for v in grid):
        raise ValueError(f"{name}: {what} must be a non-empty tuple of positive values, got {grid!r}")


def _check_class_weight(value: str | None) -> None:
    if value not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', got {value!r}")


def _grid_for(grid: tuple[float, ...], fallback: float, valid: Prepared | None) -> list[float]:
    """The values to fit, ascending; without valid, the single grid value or else the fallback."""
    values = sorted({float(v) for v in grid})
    if valid is None and len(values) > 1:
        return [float(fallback)]
    return values


def _better(score: float, best: float | None) -> bool:
    """Strictly better (ties keep the earlier, more regularised candidate); NaN never wins."""
    return best is None or (not np.isnan(score) and (np.isnan(best) or score > best))


# ----------------------------------------------------------------------------- linear baselines
@dataclass(frozen=True)
class LinearConfig(ModelConfig):
    """``C``: the grid searched on valid (ties go to the smaller C); ``fallback_C``: used instead when
    ``fit`` gets no valid rows and the grid has several values; ``class_weight``: None or "balanced"."""

    C: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    fallback_C: float = 0.01
    class_weight: str | None = None
    max_iter: int = 300
    tol: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_grid("linear model", "C", self.C)
        _check_class_weight(self.class_weight)


class _LinearClassifier(Model):
    """A linear model fitted by sklearn for each C of the grid, kept as (coef, intercept) arrays.

    Probabilities are computed here from those arrays (not by the sklearn object), so a loaded
    model gives exactly the same numbers.
    """

    Config = LinearConfig
    config: LinearConfig
    #: binary decision d -> scores of (class 0, class 1): "logistic" [0, d], "symmetric" [-d, d]
    binary: ClassVar[str] = "logistic"

    @abstractmethod
    def _estimator(self) -> Any:
        """A fresh sklearn estimator with ``C``, ``coef_`` and ``intercept_``."""

    def _proba(self, coef: np.ndarray, intercept: np.ndarray, X: np.ndarray) -> np.ndarray:
        scores = X.astype(np.float64) @ coef.T + intercept
        if coef.shape[0] == 1:
            d = scores[:, 0]
            scores = np.stack([np.zeros_like(d), d] if self.binary == "logistic" else [-d, d], axis=1)
        return _softmax(scores)

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        from sklearn.exceptions import ConvergenceWarning

        est = self._estimator()
        X = train.flat
        best: tuple[float, float, np.ndarray, np.ndarray] | None = None
        stalled = []
        for C in _grid_for(self.config.C, self.config.fallback_C, valid):
            est.set_params(C=C)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est.fit(X, train.y_index)
            converged = True
            for w in caught:
                if issubclass(w.category, ConvergenceWarning):
                    converged = False
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if not converged:
                stalled.append(C)
            coef = np.array(est.coef_, dtype=np.float64)
            intercept = np.atleast_1d(np.array(est.intercept_, dtype=np.float64))
            record: dict[str, Any] = {"C": C, "converged": converged}
            score = np.nan
            if valid is not None:
                score = self._valid_score(valid, self._proba(coef, intercept, valid.flat))
                record["valid_ua"] = score
            self.history.append(record)
            if _better(score, None if best is None else best[0]):
                best = (score, C, coef, intercept)
        assert best is not None
        if stalled:
            warnings.warn(f"{self.name}: stopped at max_iter={self.config.max_iter} before tol for C in {stalled}",
                          ConvergenceWarning, stacklevel=3)  # fmt: skip
        _, C, self.coef_, self.intercept_ = best
        self.selected = {"C": C}

    def _predict_proba(self, data: Prepared) -> np.ndarray:
        return self._proba(self.coef_, self.intercept_, data.flat)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"coef": self.coef_, "intercept": self.intercept_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]


class LogReg(_LinearClassifier):
    """``logreg``: L2 logistic regression (sklearn, lbfgs, multinomial), C chosen on valid.

    The grid is fitted from the smallest C up, each fit warm-started from the previous one.

    >>> get_model("logreg", C=(0.01, 0.1), class_weight="balanced").fit(train, valid=valid)  # doctest: +SKIP
    """

    name = "logreg"

    def _estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        cfg = self.config
        return LogisticRegression(solver="lbfgs", max_iter=cfg.max_iter, tol=cfg.tol, class_weight=cfg.class_weight,
                                  warm_start=True, random_state=cfg.seed)  # fmt: skip


@dataclass(frozen=True)
class LinearSVMConfig(LinearConfig):
    max_iter: int = 1000


class LinearSVM(_LinearClassifier):
    """``linear-svm``: one-vs-rest linear SVM (sklearn ``LinearSVC``, squared hinge), C chosen on valid.

    ``predict_proba`` is a softmax of the decision values (binary: of ``[-d, d]``): a monotone
    score with the SVM's argmax, not a calibrated probability.

    >>> get_model("linear-svm", C=(0.001, 0.01)).fit(train, valid=valid)   # doctest: +SKIP
    """

    name = "linear-svm"
    Config = LinearSVMConfig
    binary = "symmetric"

    def _estimator(self) -> Any:
        from sklearn.svm import LinearSVC

        cfg = self.config
        return LinearSVC(dual="auto", max_iter=cfg.max_iter, tol=cfg.tol, class_weight=cfg.class_weight,
                         random_state=cfg.seed)  # fmt: skip


# ----------------------------------------------------------------------------- regression
class RegressionModel(Model):
    """Base of models for continuous targets (``task = "regression"``): ``predict`` only."""

    task = "regression"

    def predict(self, data: Dataset) -> np.ndarray:
        """Predicted values, (N,) float64: ``model.predict(test)``."""
        prepared = self._prepare(data, labels=False)
        with self._limits():
            return self._predict(prepared)

    @abstractmethod
    def _predict(self, data: Prepared) -> np.ndarray:
        """Predicted values."""


@dataclass(frozen=True)
class RidgeConfig(ModelConfig):
    """``alpha``: the grid searched on valid (ties go to the smaller alpha); ``fallback_alpha``: used
    instead when ``fit`` gets no valid rows and the grid has several values; ``select_by``: "ccc" or "r2"."""

    alpha: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    fallback_alpha: float = 100.0
    select_by: str = "ccc"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_grid("ridge", "alpha", self.alpha)
        if self.select_by not in ("ccc", "r2"):
            raise ValueError(f"select_by must be 'ccc' or 'r2', got {self.select_by!r}")


class Ridge(RegressionModel):
    """``ridge``: ridge regression with an intercept, alpha chosen on valid by CCC (or R²).

    One SVD of the centred training features serves the whole alpha grid.

    >>> get_model("ridge", select_by="r2").fit(train, valid=valid).predict(test)   # doctest: +SKIP
    """

    name = "ridge"
    Config = RidgeConfig
    config: RidgeConfig

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        assert train.y is not None
        X = train.flat.astype(np.float64)
        x_mean, y_mean = X.mean(axis=0), float(train.y.mean())
        U, s, Vt = np.linalg.svd(X - x_mean, full_matrices=False)
        Uty = U.T @ (train.y - y_mean)
        metric = ccc if self.config.select_by == "ccc" else r_squared
        best: tuple[float, float, np.ndarray, float] | None = None
        for alpha in _grid_for(self.config.alpha, self.config.fallback_alpha, valid):
            coef = Vt.T @ (s / (s**2 + alpha) * Uty)
            intercept = y_mean - float(x_mean @ coef)
            record: dict[str, Any] = {"alpha": alpha}
            score = np.nan
            if valid is not None:
                assert valid.y is not None
                score = metric(valid.y, valid.flat.astype(np.float64) @ coef + intercept)
                record[f"valid_{self.config.select_by}"] = score
            self.history.append(record)
            if _better(score, None if best is None else best[0]):
                best = (score, alpha, coef, intercept)
        assert best is not None
        _, alpha, self.coef_, self.intercept_ = best
        self.selected = {"alpha": alpha}

    def _predict(self, data: Prepared) -> np.ndarray:
        return data.flat.astype(np.float64) @ self.coef_ + self.intercept_

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"coef": self.coef_, "intercept": np.array([self.intercept_])}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], float(arrays["intercept"][0])


# ----------------------------------------------------------------------------- torch models
@dataclass(frozen=True)
class TorchConfig(ModelConfig):
    """Training options of torch models.

    ``batch_size`` None trains full-batch; ``max_epochs`` is the budget, the epoch kept is the
    best by valid UA (early stopping after ``patience`` epochs without improvement);
    ``class_weight="balanced"`` weights the cross-entropy by inverse class frequency.
    """

    hidden: int = 256
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int | None = 64
    max_epochs: int = 60
    patience: int = 10
    class_weight: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_class_weight(self.class_weight)
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("max_epochs and patience must be >= 1")


def _torch() -> Any:
    import torch

    return torch


class TorchModel(Model):
    """Base of torch classifiers: seeded, CPU, minibatch AdamW, early stopping on valid UA.

    Subclasses implement :meth:`build_net`; the net's ``forward(x, language_ids)`` gets a float
    batch shaped like :meth:`_inputs` and every row's language id (0 = unseen language,
    1.. = ``languages_``). Override :meth:`loss` for extra terms (e.g. reconstruction) and
    :meth:`logits` if the net returns more than logits.
    Weight decay applies to weight matrices only (not biases or 1-D parameters).
    """

    Config = TorchConfig
    config: TorchConfig

    @abstractmethod
    def build_net(self, *, input_shape: tuple[int, ...], n_classes: int, n_languages: int) -> Any:
        """A fresh ``torch.nn.Module`` (built under the model's seed)."""

    def _inputs(self, data: Prepared) -> np.ndarray:
        """The array fed to the net: (N, layers * dim) by default."""
        return data.flat

    def param_groups(self, net: Any) -> list[dict[str, Any]]:
        """AdamW parameter groups: weight decay on weight matrices only (not biases or 1-D parameters)."""
        params = [p for p in net.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.config.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]  # fmt: skip

    def logits(self, net: Any, x: Any, language_ids: Any) -> Any:
        return net(x, language_ids)

    def loss(self, net: Any, x: Any, y: Any, language_ids: Any, *, class_weight: Any) -> Any:
        """Training loss of one batch: class-weighted cross-entropy by default."""
        torch = _torch()
        return torch.nn.functional.cross_entropy(self.logits(net, x, language_ids), y, weight=class_weight)

    @contextmanager
    def _limits(self) -> Iterator[None]:
        torch = _torch()
        old = torch.get_num_threads()
        try:
            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            with super()._limits():
                yield
        finally:
            torch.set_num_threads(old)

    def _net_proba(self, net: Any, data: Prepared, *, chunk: int = 4096) -> np.ndarray:
        torch = _torch()
        X = torch.from_numpy(np.ascontiguousarray(self._inputs(data)))
        lang = torch.from_numpy(data.language_ids)
        net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(X), chunk):
                z = self.logits(net, X[start : start + chunk], lang[start : start + chunk])
                out.append(torch.softmax(z, dim=1).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0 if self.classes_ is None else len(self.classes_)))

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        torch = _torch()
        cfg = self.config
        assert self.classes_ is not None and train.y_index is not None
        X = torch.from_numpy(np.ascontiguousarray(self._inputs(train)))
        y = torch.from_numpy(train.y_index)
        lang = torch.from_numpy(train.language_ids)
        n, n_classes = len(X), len(self.classes_)
        class_weight = None
        if cfg.class_weight == "balanced":
            counts = np.bincount(train.y_index, minlength=n_classes).astype(np.float64)
            class_weight = torch.tensor(n / (n_classes * counts), dtype=torch.float32)
        batch = n if not cfg.batch_size else min(cfg.batch_size, n)
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's RNG alone
            torch.manual_seed(cfg.seed)
            self._net_meta = {"input_shape": list(X.shape[1:]), "n_classes": n_classes,
                              "n_languages": len(self.languages_) + 1}  # fmt: skip
            net = self.build_net(input_shape=tuple(X.shape[1:]), n_classes=n_classes,
                                 n_languages=len(self.languages_) + 1)  # fmt: skip
            opt = torch.optim.AdamW(self.param_groups(net), lr=cfg.lr)
            gen = torch.Generator().manual_seed(cfg.seed)
            best_score: float | None = None
            best_epoch, best_state = cfg.max_epochs, None
            for epoch in range(1, cfg.max_epochs + 1):
                net.train()
                total = 0.0
                for idx in torch.randperm(n, generator=gen).split(batch):
                    loss = self.loss(net, X[idx], y[idx], lang[idx], class_weight=class_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                record: dict[str, Any] = {"epoch": epoch, "train_loss": total / n}
                self.history.append(record)
                if valid is None:
                    continue
                score = self._valid_score(valid, self._net_proba(net, valid))
                record["valid_ua"] = score
                if _better(score, best_score):
                    best_score, best_epoch = score, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                elif epoch - best_epoch >= cfg.patience:
                    break
            if best_state is not None:
                net.load_state_dict(best_state)
        self.net_ = net
        self.selected = {"epochs": best_epoch}

    def _predict_proba(self, data: Prepared) -> np.ndarray:
        return self._net_proba(self.net_, data)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        return {"net": self._net_meta}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        torch = _torch()
        self._net_meta = meta["net"]
        net = self.build_net(input_shape=tuple(meta["net"]["input_shape"]), n_classes=meta["net"]["n_classes"],
                             n_languages=meta["net"]["n_languages"])  # fmt: skip
        state = {k[len("net.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        net.eval()
        self.net_ = net


@functools.cache
def _nets() -> Any:
    """The torch modules, defined on first use so that importing this module does not import torch."""
    torch = _torch()
    from torch import nn

    class MLPNet(nn.Module):
        """Linear -> ReLU -> dropout -> linear, on the flattened input; ignores ``language_ids``."""

        def __init__(self, d_in: int, hidden: int, n_out: int, dropout: float) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

        def forward(self, x: Any, language_ids: Any) -> Any:
            return self.body(x.flatten(1))

    class LayerWeightsNet(nn.Module):
        """Softmax weights over layers, the weighted sum of per-layer vectors, then :class:`MLPNet`."""

        def __init__(self, n_layers: int, d_in: int, hidden: int, n_out: int, dropout: float) -> None:
            super().__init__()
            self.layer_logits = nn.Parameter(torch.zeros(n_layers))
            self.head = MLPNet(d_in, hidden, n_out, dropout)

        def layer_weights(self) -> Any:
            return torch.softmax(self.layer_logits, dim=0)

        def forward(self, x: Any, language_ids: Any) -> Any:
            pooled = (x * self.layer_weights()[None, :, None]).sum(dim=1)
            return self.head(pooled, language_ids)

    return type("Nets", (), {"MLPNet": MLPNet, "LayerWeightsNet": LayerWeightsNet})


class MLP(TorchModel):
    """``mlp``: one hidden layer (256, ReLU, dropout 0.2) on the flattened view, AdamW, early stopping.

    >>> get_model("mlp", layers=(4,), class_weight="balanced", threads=2).fit(train, valid=valid)  # doctest: +SKIP
    """

    name = "mlp"

    def build_net(self, *, input_shape: tuple[int, ...], n_classes: int, n_languages: int) -> Any:
        return _nets().MLPNet(int(np.prod(input_shape)), self.config.hidden, n_classes, self.config.dropout)


@dataclass(frozen=True)
class LayerWeightsConfig(TorchConfig):
    """``layer_lr``: learning rate of the layer-weight logits (higher than ``lr``: few steps on small data)."""

    layer_lr: float = 1e-2


class LayerWeights(TorchModel):
    """``layer-weights``: the frozen-SSL probe, softmax weights over streams, weighted sum, then an MLP.

    Trains on all corpora of ``train`` at once (shuffled minibatches mixing corpora); the learned
    weights are in ``layer_weights_``, aligned with the stream indices ``layers_``.

    >>> m = get_model("layer-weights", stat="mean").fit(train, valid=valid)         # doctest: +SKIP
    >>> dict(zip(m.layers_, m.layer_weights_.round(2)))                            # doctest: +SKIP
    """

    name = "layer-weights"
    Config = LayerWeightsConfig
    config: LayerWeightsConfig

    def param_groups(self, net: Any) -> list[dict[str, Any]]:
        groups = super().param_groups(net)
        groups[1]["params"] = [p for p in groups[1]["params"] if p is not net.layer_logits]
        return [*groups, {"params": [net.layer_logits], "weight_decay": 0.0, "lr": self.config.layer_lr}]

    def _inputs(self, data: Prepared) -> np.ndarray:
        return data.X

    def build_net(self, *, input_shape: tuple[int, ...], n_classes: int, n_languages: int) -> Any:
        n_layers, dim = input_shape
        return _nets().LayerWeightsNet(n_layers, dim, self.config.hidden, n_classes, self.config.dropout)

    @property
    def layers_(self) -> tuple[int, ...]:
        """The stream indices the weights refer to."""
        assert self.input_shape_ is not None
        return self.config.view.stream_indices(self.input_shape_[0])

    @property
    def layer_weights_(self) -> np.ndarray:
        """The learned softmax weights over ``layers_`` (sum to 1)."""
        torch = _torch()
        with torch.no_grad():
            return self.net_.layer_weights().numpy().astype(np.float64)


# ----------------------------------------------------------------------------- registry
def model_names() -> list[str]:
    """Registered model names: ``['logreg', 'linear-svm', 'ridge', 'mlp', 'layer-weights']``."""
    return _REGISTRY.names()


def get_model(name: str, **options: Any) -> Model:
    """A fresh model from its name and options: ``get_model("logreg", C=(0.01, 0.1), normalise="speaker")``."""
    return _REGISTRY.get(name)(**options)
