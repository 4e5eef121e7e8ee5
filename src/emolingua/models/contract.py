"""The contract every model follows: options, fit on train with choices on valid, predict, save, load.

>>> model = get_model("logreg", layers="select").fit(train, valid=valid)     # doctest: +SKIP
>>> model.selected                                   # {'layers': (3,), 'C': 0.01}  # doctest: +SKIP
>>> model.save("runs/m"); Model.load("runs/m").predict_proba(test)               # doctest: +SKIP

A model sees the pooled streams of a :class:`~emolingua.models.data.Dataset` (all of them, or
those named in ``streams``) through a :class:`FeatureView` (which layers of layered streams,
which half of a mean/std vector) and a :class:`~emolingua.models.normalisation.Normaliser`,
and learns one target (``target``; by default the dataset's only one).

Choices are made on ``valid`` only: a model lists the candidates it wants compared
(:meth:`Model.search_grid`, e.g. each single layer when ``layers="select"``), its own
hyper-parameters (C, alpha, epochs) inside ``_fit``. The model kept is trained on ``train``
alone; test rows never reach ``fit``. Without valid rows nothing is chosen: documented
fallbacks are used and ``validated_`` is False.

A saved model is a folder: ``model.json`` (its name and config, target, classes and the label
set of each training language, the streams it reads and how their features were made, the
normaliser, what it chose on valid, a summary of its training rows, the emolingua version)
and ``weights.safetensors`` (normaliser statistics and the learned arrays; no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emolingua import __version__
from emolingua.config import build_config, runtime, to_dict
from emolingua.errors import ConfigError, UnknownNameError
from emolingua.fileio import atomic_write
from emolingua.metrics import ccc, unweighted_accuracy
from emolingua.models.data import Dataset, Frames, Stream, _take
from emolingua.models.normalisation import MODES, Normaliser
from emolingua.registry import Registry
from emolingua.system import limited_threads

__all__ = ["FeatureView", "Model", "ModelConfig", "Prepared", "RegressionModel", "get_model", "model_names"]

#: Bump when the saved layout changes.
MODEL_FORMAT = 2
STATS = ("all", "mean+std", "mean", "std")


@dataclass(frozen=True)
class FeatureView:
    """Which part of each layered stream a model sees, and how every stream is normalised.

    Layered streams are pooled ``(N, layers, dim)`` arrays with more than one layer (the hidden
    states of a speech model); single-vector streams (eGeMAPS, GE2E) are always used whole.
    ``layers``: ``"all"``, ``"select"`` (each single layer is a candidate, chosen on valid) or a
    tuple of layer indices. ``stat``: ``"mean"`` / ``"std"`` (the first / second half of each
    pooled mean+std vector), ``"mean+std"`` or ``"all"`` (the whole vector). ``normalise``: a
    :data:`~emolingua.models.normalisation.MODES` value. ``speaker_twins``: pooled streams also given
    z-scored per speaker, as ``name~speaker`` (transductive; see
    :mod:`~emolingua.models.normalisation`).

    >>> FeatureView(layers=(2, 3), stat="mean").apply(np.zeros((5, 7, 1024))).shape
    (5, 2, 512)
    """

    layers: str | tuple[int, ...] = "all"
    stat: str = "all"
    normalise: str = "train"
    speaker_twins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "speaker_twins", tuple(str(t) for t in self.speaker_twins))
        if isinstance(self.layers, str):
            if self.layers not in ("all", "select"):
                raise ConfigError(f"layers: expected 'all', 'select' or a list of layer indices, got {self.layers!r}")
        else:
            layers = tuple(int(i) for i in self.layers)
            if not layers:
                raise ConfigError("layers: the list of layer indices is empty")
            object.__setattr__(self, "layers", layers)
        if self.stat not in STATS:
            raise ConfigError(f"stat: {self.stat!r} is not one of {', '.join(STATS)}")
        if self.normalise not in MODES:
            raise ConfigError(f"normalise: {self.normalise!r} is not one of {', '.join(MODES)}")

    def layer_indices(self, n_layers: int) -> tuple[int, ...]:
        if not isinstance(self.layers, tuple):
            return tuple(range(n_layers))
        if bad := [i for i in self.layers if not -n_layers <= i < n_layers]:
            raise ValueError(f"layers {bad} out of range for {n_layers} layers")
        return tuple(i % n_layers for i in self.layers)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """A layered stream (N, layers, dim) -> (N, chosen layers, dim or dim / 2); others unchanged."""
        if x.ndim != 3 or x.shape[1] < 2:
            return np.asarray(x, dtype=np.float32)
        x = x[:, list(self.layer_indices(x.shape[1]))]
        if self.stat in ("mean", "std"):
            dim = x.shape[2]
            if dim % 2:
                raise ValueError(f"stat={self.stat!r} needs mean/std pairs (an even dim), got dim {dim}; use 'all'")
            x = x[:, :, : dim // 2] if self.stat == "mean" else x[:, :, dim // 2 :]
        return np.ascontiguousarray(x, dtype=np.float32)


@dataclass(frozen=True)
class ModelConfig:
    """Options every model has: the feature ``view``; the ``streams`` it reads (empty: every pooled
    stream); the ``target`` it learns (None: the dataset's only target); a ``seed``; and a thread
    cap (a runtime setting: it never changes the numbers)."""

    view: FeatureView = FeatureView()
    streams: tuple[str, ...] = ()
    target: str | None = None
    seed: int = 0
    threads: int | None = runtime(None)


@dataclass(frozen=True)
class Prepared:
    """What a model's ``_fit`` / ``_predict*`` get: the viewed, normalised ``streams``; ``y`` (the
    target; text labels or floats; None when unlabelled), ``y_index`` (position in ``classes_``, -1
    for a class unseen in training), ``language_ids`` (0 = a language unseen in training, 1.. =
    ``languages_``), and the source rows ``data``."""

    streams: dict[str, Stream]
    y: np.ndarray | None
    y_index: np.ndarray | None
    language_ids: np.ndarray
    data: Dataset

    def __len__(self) -> int:
        return len(self.data)

    def subset(self, keep: np.ndarray) -> Prepared:
        """The rows where ``keep`` (a boolean mask) holds, every stream and target with them."""
        idx = np.flatnonzero(keep)
        return Prepared(streams={k: _take(v, idx) for k, v in self.streams.items()},
                        y=None if self.y is None else self.y[idx], y_index=None if self.y_index is None else self.y_index[idx],
                        language_ids=self.language_ids[idx], data=self.data.subset(idx))  # fmt: skip

    @property
    def X(self) -> np.ndarray:
        """The pooled streams side by side, as (N, layers, dim) when there is one, else flattened (N, 1, D)."""
        pooled = [v for _, v in sorted(self.streams.items()) if not isinstance(v, Frames)]
        if len(pooled) == 1:
            return pooled[0]  # type: ignore[return-value]
        return np.concatenate([p.reshape(len(p), -1) for p in pooled], axis=1)[:, None, :]  # type: ignore[union-attr]

    @property
    def flat(self) -> np.ndarray:
        """Every pooled stream flattened and concatenated in name order: (N, features)."""
        return self.X.reshape(len(self.data), -1)


#: Modules that define the built-in models; imported on the first registry lookup.
_BUILTIN_MODULES = ("emolingua.models.linear", "emolingua.models.torch_model", "emolingua.models.multigate",
                     "emolingua.models.metric_ae")
_REGISTRY: Registry[Model] = Registry("model", group="emolingua.models", builtins=_BUILTIN_MODULES)
_VIEW_OPTIONS = tuple(f.name for f in dataclasses.fields(FeatureView))


def check_class_weight(value: str | None) -> None:
    if value not in (None, "balanced"):
        raise ConfigError(f"class_weight: expected null or 'balanced', got {value!r}")


def _better(score: float, best: float | None) -> bool:
    """Strictly better (ties keep the earlier, more regularised candidate); NaN never wins."""
    return best is None or (not np.isnan(score) and (np.isnan(best) or score > best))


class Model(ABC):
    """Base class. Set ``name``, ``task`` and ``Config``; implement ``_fit``, ``_predict_proba`` (or
    ``_predict`` for regression), ``_state`` and ``_set_state``. Options are the ``Config``
    fields; the view's fields may be given directly: ``LogReg(layers=(3,))``.

    Fitted attributes: ``target_``, ``classes_`` (sorted labels; None for regression),
    ``label_sets_`` (the labels each training language has), ``languages_``, ``streams_`` (the
    streams read, with their shapes), ``features_`` (how they were made), ``selected`` (what was
    chosen on valid), ``history``, ``validated_``, ``normaliser_``, ``training_`` (row counts).
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = "classification"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: whether the model reads frame-sequence streams (the benchmark then loads them)
    uses_frames: ClassVar[bool] = False
    #: options that make a fit on a few hundred rows take about a second (the contract test suite)
    quick_options: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):  # a subclass that inherits a name does not replace its parent
            _REGISTRY.register(cls.name, cls)

    def __init__(self, **options: Any) -> None:
        for key in [k for k in options if "." in k]:  # dotted names, as `models list` shows nested options
            head, _, rest = key.partition(".")
            node = options.setdefault(head, {})
            if dataclasses.is_dataclass(node):
                node = options[head] = to_dict(node)
            if not isinstance(node, dict):
                raise ConfigError(f"model {self.name}: {head} is not a mapping of options; give {head}=VALUE")
            node[rest] = options.pop(key)
        view = {k: options.pop(k) for k in _VIEW_OPTIONS if k in options}
        if view:
            if "view" in options:
                raise ConfigError(f"{self.name}: give either view= or {', '.join(sorted(view))}, not both")
            options["view"] = view
        if isinstance(options.get("view"), FeatureView):
            options["view"] = to_dict(options["view"])
        defaults = to_dict(self.Config())
        for key, value in options.items():  # a nested mapping changes only the fields it names
            if isinstance(value, dict) and isinstance(defaults.get(key), dict):
                options[key] = {**defaults[key], **value}
        self.config = build_config(self.Config, options, what=f"model {self.name}")
        self._reset()

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, task, summary and every option with its type and default, for ``emolingua models list``."""
        defaults = cls.Config()
        options = []
        for f in dataclasses.fields(cls.Config):
            value = getattr(defaults, f.name)
            if dataclasses.is_dataclass(value):  # nested options are shown by their dotted names
                options += [{"name": g.name if f.name == "view" else f"{f.name}.{g.name}", "type": str(g.type),
                             "default": to_dict(value)[g.name]} for g in dataclasses.fields(value)]  # fmt: skip
            else:
                options.append({"name": f.name, "type": str(f.type), "default": to_dict(defaults)[f.name]})
        summary = (cls.__doc__ or "").strip().split("\n")[0].removeprefix(f"``{cls.name}``:").strip()
        return {"name": cls.name, "task": cls.task, "summary": summary, "options": options}

    def _reset(self) -> None:
        self.target_: str | None = None
        self.classes_: np.ndarray | None = None
        self.label_sets_: dict[str, list[str]] = {}
        self.languages_: tuple[str, ...] = ()
        self.streams_: dict[str, list[int]] = {}
        self.features_: dict[str, dict[str, Any]] = {}
        self.normaliser_: Normaliser | None = None
        self.training_: dict[str, Any] = {}
        self.selected: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.validated_ = False

    def __repr__(self) -> str:
        default, mine = to_dict(self.Config()), to_dict(self.config)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in mine.items() if v != default[k])})"

    def options(self) -> dict[str, Any]:
        """The options that rebuild this model unfitted: ``get_model(m.name, **m.options())``."""
        return to_dict(self.config)

    # -- choices on valid ---------------------------------------------------------------------
    def search_grid(self, train: Dataset) -> list[dict[str, Any]]:
        """Option sets to compare on valid (each fitted separately); ``[{}]`` when there is nothing to compare.

        By default: each single layer of the layered streams when ``layers="select"`` (with no
        layered stream, nothing: the single vectors are used whole).
        """
        if self.config.view.layers != "select":
            return [{}]
        counts = {s.shape[1] for k, s in train.streams.items() if k in self._stream_names(train)
                  and not isinstance(s, Frames) and s.ndim == 3 and s.shape[1] > 1}  # fmt: skip
        if not counts:  # single-vector streams only: nothing to choose
            return [{}]
        if len(counts) > 1:
            raise ConfigError(f"model {self.name}: layers='select' needs layered streams with one layer count, "
                              f"found {sorted(counts)}; give layers='all' or a list")  # fmt: skip
        return [{"layers": (i,)} for i in range(counts.pop())]

    def with_options(self, **changes: Any) -> Model:
        """A fresh, unfitted copy with some options changed (view fields may be given directly)."""
        options = self.options()
        for k, v in changes.items():
            if k in _VIEW_OPTIONS:
                options["view"] = {**options["view"], k: v}
            else:
                options[k] = v
        return type(self)(**options)

    def score(self, data: Dataset) -> float:
        """The number choices are made by on ``data``: UA for classes, CCC for values (higher is better)."""
        assert self.target_ is not None
        keep = data.mask(self.target_)
        if not keep.any():
            return float("nan")
        rows = data.subset(keep)
        truth = rows.targets[self.target_]
        if self.task == "classification":
            return unweighted_accuracy(truth, self.predict(rows))
        return ccc(truth, self.predict(rows))

    # -- public API ---------------------------------------------------------------------------
    def fit(self, train: Dataset, *, valid: Dataset | None = None) -> Model:
        """Train on ``train``; choose on ``valid`` only. Returns ``self``.

        >>> model = get_model("logreg").fit(train, valid=valid)                      # doctest: +SKIP
        """
        self._reset()
        target = self._target_name(train)
        train = train.subset(train.mask(target))
        if valid is not None:
            valid = valid.subset(valid.mask(target)) if target in valid.targets else None
        valid = valid if valid is not None and len(valid) else None
        if len(train) == 0:
            raise ValueError(f"{self.name}: no training rows carry target {target!r}")
        if (self.task == "classification") != train.is_categorical(target):
            raise ValueError(f"{self.name}: a {self.task} model cannot learn target {target!r} "
                             f"({'categories' if train.is_categorical(target) else 'values'})")  # fmt: skip
        grid = self.search_grid(train)
        if len(grid) > 1:
            return self._select(grid, train, valid)
        self.target_ = target
        if self.task == "classification":
            self.classes_ = np.unique(train.targets[target])
            if len(self.classes_) < 2:
                raise ValueError(f"{self.name}: training rows hold a single class {self.classes_.tolist()}")
            self.label_sets_ = train.label_sets(target=target)
        self.languages_ = tuple(sorted(set(train.language.tolist())))
        names = self._stream_names(train)
        self.streams_ = {k: list(train.streams[k].shape[1:]) for k in names}
        self.features_ = {k: train.features[k] for k in names if k in train.features}
        self.training_ = train.summary()
        viewed = self._view(train)
        view = self.config.view
        self.normaliser_ = Normaliser(view.normalise, twins=view.speaker_twins).fit(viewed, corpus=train.corpus)
        with limited_threads(self.config.threads):
            self._fit(self._prepared(train, viewed), None if valid is None else self._prepare(valid))
        self.validated_ = valid is not None
        return self

    def predict_proba(self, data: Dataset) -> np.ndarray:
        """Class probabilities, (N, len(classes_)), float64: ``model.predict_proba(test)``."""
        if self.task != "classification":
            raise TypeError(f"{self.name} is a {self.task} model: use predict()")
        prepared = self._prepare(data, labels=False)
        with limited_threads(self.config.threads):
            return self._predict_proba(prepared)

    def predict(self, data: Dataset) -> np.ndarray:
        """Predicted class labels (or values for regression): ``model.predict(test)``."""
        assert self.classes_ is not None
        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]

    def embed(self, data: Dataset) -> np.ndarray:
        """One vector per row, the utterance embedding: by default the viewed, normalised pooled
        features the model reads; models that learn a representation return it instead.

        >>> model.embed(test).shape                          # (rows, dim)  # doctest: +SKIP
        """
        return np.asarray(self._prepare(data, labels=False).flat, dtype=np.float32)

    # -- saving ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model folder (``model.json``, ``weights.safetensors``): ``model.save("runs/m")``."""
        if self.normaliser_ is None:
            raise RuntimeError(f"{self.name}: fit the model before saving it")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        norm_meta, arrays = self.normaliser_.state()
        model_meta, model_arrays = self._state()
        if clash := set(arrays) & set(model_arrays):
            raise RuntimeError(f"state array names clash: {sorted(clash)}")
        arrays.update(model_arrays)
        meta = {
            "format": MODEL_FORMAT, "emolingua": __version__, "model": self.name, "task": self.task,
            "config": to_dict(self.config), "target": self.target_,
            "classes": None if self.classes_ is None else self.classes_.tolist(), "label_sets": self.label_sets_,
            "languages": list(self.languages_), "streams": self.streams_, "features": self.features_,
            "normaliser": norm_meta, "selected": self.selected, "validated": self.validated_,
            "history": self.history, "training": self.training_, "state": model_meta,
        }  # fmt: skip
        with atomic_write(folder / "weights.safetensors") as f:
            f.write(_safetensors_bytes(arrays))
        with atomic_write(folder / "model.json", "w") as f:
            f.write(json.dumps(meta, indent=1, default=_json_default))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """A model written by :meth:`save`, in any process: ``Model.load("runs/m")``."""
        from safetensors.numpy import load_file

        folder = Path(path)
        try:
            meta = json.loads((folder / "model.json").read_text())
        except FileNotFoundError:
            raise UnknownNameError(f"{folder}: not a saved model (no model.json)") from None
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"{folder}: model format {meta.get('format')}, this version reads {MODEL_FORMAT}")
        try:
            model_cls = _REGISTRY.get(meta["model"])
        except UnknownNameError as exc:
            raise UnknownNameError(f"{folder}: {exc}") from None
        if not issubclass(model_cls, cls):
            raise TypeError(f"{folder} holds a {model_cls.__name__}, not a {cls.__name__}")
        arrays = load_file(str(folder / "weights.safetensors"))
        model = model_cls(**meta["config"])
        model.target_ = meta["target"]
        model.classes_ = None if meta["classes"] is None else np.asarray(meta["classes"], dtype=str)
        model.label_sets_, model.languages_ = meta["label_sets"], tuple(meta["languages"])
        model.streams_, model.features_, model.training_ = meta["streams"], meta["features"], meta["training"]
        model.selected, model.history, model.validated_ = meta["selected"], meta["history"], meta["validated"]
        model.normaliser_ = Normaliser.from_state(meta["normaliser"], arrays)
        model._set_state(meta["state"], arrays)
        return model

    # -- shared machinery -----------------------------------------------------------------------
    def _target_name(self, data: Dataset) -> str:
        if self.config.target is not None:
            if self.config.target not in data.targets:
                raise ValueError(f"{self.name}: no target {self.config.target!r}; the rows have "
                                 f"{', '.join(data.targets) or 'no targets'}")  # fmt: skip
            return self.config.target
        if len(data.targets) != 1:
            raise ValueError(f"{self.name}: the rows have targets {', '.join(data.targets) or 'none'}; "
                             "say which to learn with target=")  # fmt: skip
        return next(iter(data.targets))

    def _stream_names(self, data: Dataset) -> list[str]:
        if self.config.streams:
            if missing := [s for s in self.config.streams if s not in data.streams]:
                raise ValueError(f"{self.name}: no stream {missing[0]!r}; the rows have {', '.join(data.streams)}")
            return list(self.config.streams)
        names = [k for k, v in data.streams.items() if self.uses_frames or not isinstance(v, Frames)]
        if not names:
            raise ValueError(f"{self.name}: the rows have no pooled stream (only frames: {', '.join(data.streams)})")
        return sorted(names)

    def _view(self, data: Dataset) -> dict[str, Stream]:
        names = list(self.streams_) if self.streams_ else self._stream_names(data)
        return {k: v if isinstance(v := data.streams[k], Frames) else self.config.view.apply(v) for k in names}

    def _select(self, grid: list[dict[str, Any]], train: Dataset, valid: Dataset | None) -> Model:
        """Fit every candidate of ``grid``, keep the best on valid. Without valid rows nothing can be
        compared: a grid of single layers falls back to all layers, any other grid to its first candidate."""
        tried: list[dict[str, Any]] = []
        if valid is None:
            chosen = {"layers": "all"} if all(set(c) == {"layers"} for c in grid) else grid[0]
            best = self.with_options(**chosen).fit(train)
        else:
            best, best_score, chosen = None, None, {}
            for cand in grid:
                model = self.with_options(**cand).fit(train, valid=valid)
                score = model.score(valid)
                tried.append({**cand, "valid_score": score})
                if _better(score, best_score):
                    best, best_score, chosen = model, score, cand
        assert best is not None
        self.__dict__.update(best.__dict__)  # the chosen candidate's config (e.g. its layer) is what predicts
        self.selected = {**chosen, **best.selected}
        self.history = [{"candidates": tried}, *best.history]
        return self

    def _valid_score(self, valid: Prepared, proba: np.ndarray) -> float:
        """UA of class probabilities on valid rows (what classifiers choose their hyper-parameters by)."""
        assert self.classes_ is not None and valid.y is not None
        return unweighted_accuracy(valid.y, self.classes_[np.argmax(proba, axis=1)])

    def _language_ids(self, language: np.ndarray) -> np.ndarray:
        index = {lang: i + 1 for i, lang in enumerate(self.languages_)}
        return np.array([index.get(lang, 0) for lang in language.tolist()], dtype=np.int64)

    def _prepared(self, data: Dataset, viewed: dict[str, Stream], *, labels: bool = True) -> Prepared:
        assert self.normaliser_ is not None and self.target_ is not None
        streams = self.normaliser_.transform(viewed, corpus=data.corpus, speaker=data.speaker)
        y = data.targets.get(self.target_) if labels else None
        y_index = None
        if y is not None and self.task == "classification":
            assert self.classes_ is not None
            pos = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            y_index = np.where(self.classes_[pos] == y, pos, -1).astype(np.int64)
        return Prepared(streams=streams, y=y, y_index=y_index, language_ids=self._language_ids(data.language), data=data)

    def _prepare(self, data: Dataset, *, labels: bool = True) -> Prepared:
        if self.normaliser_ is None:
            raise RuntimeError(f"{self.name}: the model is not fitted")
        for k, shape in self.streams_.items():
            if k not in data.streams:
                raise ValueError(f"{self.name}: the rows lack stream {k!r} (they have {', '.join(data.streams)})")
            if list(data.streams[k].shape[1:]) != shape:
                raise ValueError(f"{self.name}: stream {k!r} has shape {tuple(data.streams[k].shape[1:])}, "
                                 f"trained on {tuple(shape)}")  # fmt: skip
        return self._prepared(data, self._view(data), labels=labels)

    def explain(self, data: Dataset) -> dict[str, Any]:
        """What a fitted model can tell about itself on ``data``, JSON-able (benchmark jobs keep it
        for reports: e.g. multigate's gate weights per language and mask densities); ``{}`` by default."""
        return {}

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


class RegressionModel(Model):
    """Base of models for continuous targets (``task = "regression"``): ``predict`` only."""

    task = "regression"

    def predict(self, data: Dataset) -> np.ndarray:
        """Predicted values, (N,) float64: ``model.predict(test)``."""
        prepared = self._prepare(data, labels=False)
        with limited_threads(self.config.threads):
            return self._predict(prepared)

    @abstractmethod
    def _predict(self, data: Prepared) -> np.ndarray:
        """Predicted values."""


def _safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def model_names() -> list[str]:
    """Registered model names: ``['logreg', 'linear-svm', 'ridge', 'mlp', 'layer-weights']``."""
    return _REGISTRY.names()


def model_class(name: str) -> type[Model]:
    """The registered class of ``name`` (the error lists the known names)."""
    return _REGISTRY.get(name)


def get_model(name: str, **options: Any) -> Model:
    """A fresh model from its name and options: ``get_model("logreg", C=(0.01, 0.1), normalise="corpus")``."""
    return _REGISTRY.get(name)(**options)
