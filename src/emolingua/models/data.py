"""The rows a model receives: named feature streams, named targets, and each row's metadata.

A :class:`Dataset` is built from a manifest and a feature store in one call, or from arrays:

>>> data, found = Dataset.from_store(manifest=m, store=store, extractors=[get_extractor("whisper-base"),
...                                  get_extractor("egemaps")], targets=("label", "arousal"))  # doctest: +SKIP
>>> data.streams["whisper-base"].shape, data.streams["egemaps"].shape       # (N, 7, 1024), (N, 1, 88)  # doctest: +SKIP
>>> Dataset(X=np.zeros((4, 7, 1024)), y=["ang", "hap", "ang", "sad"]).streams["x"].shape
(4, 7, 1024)

Streams are pooled arrays ``(N, ...)`` or :class:`Frames` (variable-length sequences, stored
end to end). Targets are ``(N,)`` arrays, text for categories (``""`` where a row has none) or
floats (``NaN`` where a row has none): :meth:`Dataset.mask` says which rows carry one. The
metadata (corpus, language, speaker, id) travel with the rows, and ``features`` records how
each stream was made (extractor spec and fingerprint), so a model fitted on it can say so.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # the features layer is only needed to load from a store
    import pandas as pd

    from emolingua.features.base import FeatureExtractor
    from emolingua.features.store import FeatureStore

__all__ = ["Dataset", "Frames", "Stream", "describe_streams", "frame_streams"]

_META = ("corpus", "language", "speaker", "ids")


@dataclass(frozen=True, eq=False)
class Frames:
    """Frame sequences of N rows, end to end: ``values`` (sum of T, D) and ``offsets`` (N + 1,).

    >>> f = Frames.from_list([np.ones((3, 2)), np.zeros((5, 2))])
    >>> len(f), f.lengths.tolist(), f[1].shape
    (2, [3, 5], (5, 2))
    """

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_list(cls, sequences: Sequence[np.ndarray], *, dim: int | None = None) -> Frames:
        """From one (T_i, D) array per row; ``dim`` is needed only when there are no rows."""
        seqs = [np.asarray(s) for s in sequences]
        for i, s in enumerate(seqs):
            if s.ndim != 2 or (seqs and s.shape[1] != seqs[0].shape[1]):
                raise ValueError(f"frames: row {i} has shape {s.shape}; every row must be (T, {seqs[0].shape[1]})")
        d = seqs[0].shape[1] if seqs else int(dim or 0)
        dtype = seqs[0].dtype if seqs else np.float32
        values = np.concatenate(seqs) if seqs else np.zeros((0, d), dtype=dtype)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        return cls(values=values, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, D): the row count and the frame width (the length varies by row)."""
        return (len(self), self.dim)

    def take(self, idx: np.ndarray) -> Frames:
        return Frames.from_list([self[int(i)] for i in idx], dim=self.dim)

    def map(self, fn: Any) -> Frames:
        """The same sequences with ``fn`` applied to the stacked values (a per-frame transform)."""
        return Frames(values=fn(self.values), offsets=self.offsets)

    def pooled(self, step: int) -> Frames:
        """Each row's frames averaged over consecutive windows of ``step`` (the last window may be
        shorter): a coarser frame rate that, unlike keeping every n-th frame, loses no frame.

        >>> Frames.from_list([np.arange(5.0)[:, None]]).pooled(2)[0].ravel().tolist()
        [0.5, 2.5, 4.0]
        """
        if step == 1 or not len(self):
            return self
        lengths = self.lengths
        windows = -(-lengths // step)  # ceil
        starts = np.concatenate([o + np.arange(0, n, step) for o, n in zip(self.offsets[:-1], lengths)]).astype(np.int64)
        if not len(starts):
            return Frames(values=self.values[:0], offsets=np.zeros(len(self) + 1, dtype=np.int64))
        sums = np.add.reduceat(self.values.astype(np.float32), starts, axis=0)
        counts = np.diff(np.append(starts, self.offsets[-1]))
        values = (sums / counts[:, None]).astype(self.values.dtype)
        return Frames(values=values, offsets=np.concatenate([[0], np.cumsum(windows)]).astype(np.int64))

    def padded(self, *, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """(N, T_max, D) zero-padded values and the (N,) lengths."""
        lengths = self.lengths
        out = np.zeros((len(self), int(lengths.max(initial=0)), self.dim), dtype=dtype)
        for i in range(len(self)):
            out[i, : lengths[i]] = self[i]
        return out, lengths


Stream = np.ndarray | Frames


def frame_streams(*, spec: str, rows: Sequence[dict[str, np.ndarray] | None], idx: np.ndarray) -> dict[str, Frames]:
    """The frame sequences a store loaded (one dict per row), for the rows at ``idx``, named
    ``"<spec>/<frame stream>"`` as a model reads them."""
    if not len(idx):
        return {}
    names = sorted(rows[idx[0]] or {})
    return {f"{spec}/{name}": Frames.from_list([rows[i][name] for i in idx]) for name in names}  # type: ignore[index]


def describe_streams(*, extractors: Sequence[FeatureExtractor], streams: Iterable[str]) -> dict[str, dict[str, Any]]:
    """How each stream was made (extractor spec, fingerprint, identity): what a saved model keeps so
    that the same features can be computed again for new audio. Frame streams are ``spec/name``."""
    out: dict[str, dict[str, Any]] = {}
    by_spec = {ex.spec: ex for ex in extractors}
    for name in streams:
        # a spec may hold slashes itself (whisper:/models/x): the frame suffix is what follows a known spec
        spec = name if name in by_spec else next((s for s in by_spec if name.startswith(f"{s}/")), None)
        if spec is None:
            continue
        ex, frames = by_spec[spec], name[len(spec) + 1 :]
        out[name] = {"spec": ex.spec, "fingerprint": ex.fingerprint(), "identity": ex.identity(),
                     "streams": list(ex.streams), **({"frames": frames} if frames else {})}  # fmt: skip
    return out


def _take(stream: Stream, idx: np.ndarray) -> Stream:
    return stream.take(idx) if isinstance(stream, Frames) else stream[idx]


def _text(value: Any) -> str:
    missing = value is None or (isinstance(value, float) and np.isnan(value))  # pandas' missing text is NaN
    return "" if missing else str(value)


def _texts(values: Any, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=object).astype(str)
    arr = np.array([_text(v) for v in np.asarray(values, dtype=object).tolist()], dtype=str)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {np.shape(values)}")
    return arr


def _target(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"target {name} must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    return _texts(arr, n, f"target {name}")


class Dataset:
    """Rows of named streams and named targets with their corpus, language, speaker and id.

    ``X`` and ``y`` are shorthands for one pooled stream named ``"x"`` and one target named
    ``"y"``: ``Dataset(X=X, y=y)`` equals ``Dataset(streams={"x": X}, targets={"y": y})``.
    A 2-D pooled stream is read as one layer: ``(N, D)`` becomes ``(N, 1, D)``.
    """

    def __init__(self, *, streams: Mapping[str, Any] | None = None, targets: Mapping[str, Any] | None = None,
                 X: Any = None, y: Any = None, corpus: Any = None, language: Any = None, speaker: Any = None,
                 ids: Any = None, features: Mapping[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
        streams = dict(streams or {})
        targets = dict(targets or {})
        if X is not None:
            streams["x"] = X
        if y is not None:
            targets["y"] = y
        if not streams:
            raise ValueError("a dataset needs at least one stream (streams= or X=)")
        self.streams: dict[str, Stream] = {}
        for name, s in streams.items():
            if not isinstance(s, Frames):
                s = np.asarray(s, dtype=np.float32)
                s = s[:, None, :] if s.ndim == 2 else s
                if s.ndim < 2:
                    raise ValueError(f"stream {name}: expected (N, ...) rows, got shape {s.shape}")
            self.streams[name] = s
        sizes = {name: len(s) for name, s in self.streams.items()}
        n = next(iter(sizes.values()))
        if len(set(sizes.values())) > 1:
            raise ValueError(f"streams must have the same number of rows, got {sizes}")
        self.targets: dict[str, np.ndarray] = {name: _target(v, n, name) for name, v in targets.items()}
        self.corpus, self.language, self.speaker, self.ids = (
            _texts(v, n, what) for v, what in ((corpus, "corpus"), (language, "language"), (speaker, "speaker"), (ids, "ids"))
        )  # fmt: skip
        self.features: dict[str, dict[str, Any]] = dict(features or {})

    # -- shorthands ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(next(iter(self.streams.values())))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape[1:]) if not isinstance(v, Frames) else ' frames'}" for k, v in self.streams.items())
        return f"Dataset({len(self)} rows; streams {shapes}; targets {', '.join(self.targets) or 'none'})"

    @property
    def X(self) -> np.ndarray:
        """The pooled stream, when there is exactly one."""
        pooled = [k for k, v in self.streams.items() if not isinstance(v, Frames)]
        if len(pooled) != 1:
            raise AttributeError(f"X: the dataset has {len(pooled)} pooled streams ({', '.join(pooled)}); use .streams[name]")
        return self.streams[pooled[0]]  # type: ignore[return-value]

    @property
    def y(self) -> np.ndarray | None:
        """The target, when there is exactly one (None when there is none)."""
        if not self.targets:
            return None
        if len(self.targets) > 1:
            raise AttributeError(f"y: the dataset has targets {', '.join(self.targets)}; use .targets[name]")
        return next(iter(self.targets.values()))

    def mask(self, target: str) -> np.ndarray:
        """Which rows carry ``target`` (not ``""`` / not NaN)."""
        values = self.targets[target]
        return ~np.isnan(values) if values.dtype.kind == "f" else values != ""

    def is_categorical(self, target: str) -> bool:
        return self.targets[target].dtype.kind != "f"

    def label_sets(self, *, target: str = "label", by: str = "language") -> dict[str, list[str]]:
        """The sorted classes of ``target`` per language (or corpus): each may have its own set."""
        keep = self.mask(target)
        groups = getattr(self, by)
        return {g: sorted(set(self.targets[target][keep & (groups == g)].tolist())) for g in sorted(set(groups[keep].tolist()))}

    def summary(self) -> dict[str, Any]:
        """Counts by corpus, language and target value: what a saved model says it was trained on."""
        out: dict[str, Any] = {"rows": len(self), "corpora": dict(sorted(Counter(self.corpus.tolist()).items())),
                               "languages": dict(sorted(Counter(self.language.tolist()).items())),
                               "speakers": len(set(self.speaker.tolist()) - {""})}  # fmt: skip
        for name, values in self.targets.items():
            keep = self.mask(name)
            if self.is_categorical(name):
                out[f"target.{name}"] = dict(sorted(Counter(values[keep].tolist()).items()))
            else:
                out[f"target.{name}"] = {"rows": int(keep.sum()), "mean": float(values[keep].mean()) if keep.any() else None}
        return out

    # -- rows ---------------------------------------------------------------------------------
    def subset(self, idx: Sequence[int] | np.ndarray) -> Dataset:
        """The rows at ``idx`` (indices or a boolean mask): ``d.subset(d.corpus == "emodb")``."""
        idx = np.asarray(idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.intp)  # an empty list is float
        return Dataset(streams={k: _take(v, idx) for k, v in self.streams.items()},
                       targets={k: v[idx] for k, v in self.targets.items()},
                       **{m: getattr(self, m)[idx] for m in _META}, features=self.features)  # fmt: skip

    def select(self, *, streams: Iterable[str] | None = None, targets: Iterable[str] | None = None) -> Dataset:
        """The same rows with only the named streams and targets (None: all of them)."""
        keep_s = list(self.streams) if streams is None else list(streams)
        keep_t = list(self.targets) if targets is None else list(targets)
        for kind, names, have in (("stream", keep_s, self.streams), ("target", keep_t, self.targets)):
            if missing := [n for n in names if n not in have]:
                raise KeyError(f"no {kind} {missing[0]!r}; the dataset has {kind}s {', '.join(have) or 'none'}")
        return Dataset(streams={k: self.streams[k] for k in keep_s}, targets={k: self.targets[k] for k in keep_t},
                       **{m: getattr(self, m) for m in _META},
                       features={k: v for k, v in self.features.items() if k in keep_s})  # fmt: skip

    @classmethod
    def concat(cls, datasets: Sequence[Dataset]) -> Dataset:
        """Rows of several datasets with the same streams and targets, in order."""
        if not datasets:
            raise ValueError("nothing to concatenate")
        first = datasets[0]

        def join(parts: list[Stream]) -> Stream:
            if isinstance(parts[0], Frames):
                return Frames.from_list([p[i] for p in parts for i in range(len(p))], dim=parts[0].dim)  # type: ignore[union-attr]
            return np.concatenate(parts)

        return cls(streams={k: join([d.streams[k] for d in datasets]) for k in first.streams},
                   targets={k: np.concatenate([d.targets[k] for d in datasets]) for k in first.targets},
                   **{m: np.concatenate([getattr(d, m) for d in datasets]) for m in _META},
                   features=first.features)  # fmt: skip

    # -- from a manifest and a feature store ----------------------------------------------------
    @classmethod
    def from_store(cls, *, manifest: pd.DataFrame, store: FeatureStore, extractors: Sequence[FeatureExtractor],
                   targets: Sequence[str] = ("label",), frames: bool = False, keys: Sequence[str | None] | None = None
                   ) -> tuple[Dataset, np.ndarray]:  # fmt: skip
        """The manifest's rows with every extractor's features, and the mask of rows found for all.

        Pooled streams are named by the extractor's spec (``"whisper-base"``), frame streams
        ``"<spec>/<frame stream>"`` (``"whisper-base/layer6"``). Rows not found in the store
        are left out (``found`` says which); missing target columns are missing targets.
        """
        paths = [os.fspath(p) for p in manifest["path"].tolist()]
        if keys is not None:
            loaded = {ex.spec: store.load(keys=keys, extractor=ex, frames=frames) for ex in extractors}
        else:
            loaded = {spec: tuple(got) for spec, got in
                      store.load_streams(paths=paths, extractors=extractors, frames=frames).items()}  # fmt: skip
        found = np.ones(len(paths), dtype=bool)
        for pooled, ok, rows in loaded.values():
            found &= ok
            if frames:
                found &= np.array([r is not None for r in rows], dtype=bool)
        idx = np.flatnonzero(found)
        streams: dict[str, Stream] = {}
        for ex in extractors:
            pooled, _, rows = loaded[ex.spec]
            streams[ex.spec] = pooled[idx]
            if frames:
                streams.update(frame_streams(spec=ex.spec, rows=rows, idx=idx))
        features = describe_streams(extractors=extractors, streams=streams)
        rows_m = manifest.iloc[idx]

        def column(name: str) -> Any:
            return rows_m[name].to_numpy() if name in rows_m.columns else None

        values = {}
        for t in targets:
            col = column(t)
            values[t] = np.full(len(idx), np.nan) if col is None else col
        return cls(streams=streams, targets=values, corpus=column("corpus"), language=column("language"),
                   speaker=column("speaker"), ids=np.asarray(paths, dtype=object)[idx], features=features), found  # fmt: skip
