"""z-scoring of feature streams with statistics that are part of the fitted model.

>>> norm = Normaliser(mode="train").fit(streams, corpus=train.corpus)                # doctest: +SKIP
>>> z = norm.transform(streams_test, corpus=test.corpus, speaker=test.speaker)       # doctest: +SKIP

Modes (:data:`MODES`):

``"train"`` (default)
    one mean and standard deviation per feature, from all training rows. A prediction for one
    utterance never depends on the other utterances in the call.
``"corpus"``
    per training corpus, from its training rows; a corpus unseen in training gets the
    statistics of all training rows. Still independent of the other rows in a call.
``"adapt-corpus"`` (transductive)
    as ``"corpus"``, but a corpus unseen in training is z-scored with its own rows' statistics
    (labels unused): cross-corpus adaptation. Its predictions depend on which rows of that
    corpus are predicted together: pass the whole corpus at once. Reports say when it is used.
``"adapt-speaker"`` (transductive)
    per (corpus, speaker), each speaker by their own rows, in training and prediction alike.
``"none"``
    the features as stored.

A group of a single row cannot give its own statistics: it falls back to its corpus's (or the
training) statistics.

``twins`` (any mode): pooled streams that are given twice, z-scored as the mode says under their
own name and per speaker under ``name~speaker`` (:data:`TWIN`; a stream split into layers,
``name@i``, is twinned as ``name``). The twin is transductive in every mode: each (corpus,
speaker) by their own rows of the call, labels unused; a row without a speaker, or the only row of
its speaker, gets the mode's value (no speaker information). What it is for: a model sees both
what an utterance is and how it differs from the same speaker's other utterances.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from emolingua.errors import ConfigError
from emolingua.models.data import Frames, Stream

__all__ = ["MODES", "TRANSDUCTIVE", "TWIN", "Normaliser", "twin_of"]

MODES = ("train", "corpus", "adapt-corpus", "adapt-speaker", "none")
TRANSDUCTIVE = ("adapt-corpus", "adapt-speaker")
_EPS = 1e-8
TWIN = "~speaker"


def twin_of(name: str, twins: Sequence[str]) -> str | None:
    """The twin's name of stream ``name`` (``None``: not twinned): ``twin_of("egemaps", ["egemaps"])``."""
    return f"{name}{TWIN}" if name.split("@")[0] in twins else None


def _values(stream: Stream) -> np.ndarray:
    """The rows statistics are taken over: pooled rows, or every frame of a sequence stream."""
    return stream.values if isinstance(stream, Frames) else stream


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < _EPS] = 1.0
    return mean, std


def _rows(stream: Stream, rows: np.ndarray) -> np.ndarray:
    return stream.take(rows).values if isinstance(stream, Frames) else stream[rows]


class Normaliser:
    """Per-feature z-scores of every stream; see the module docstring for the modes."""

    def __init__(self, mode: str = "train", *, twins: Sequence[str] = ()) -> None:
        if mode not in MODES:
            raise ConfigError(f"normalise: {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.twins = list(twins)
        self.corpora: list[str] = []
        self.stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # stream -> group -> (mean, std)

    @property
    def transductive(self) -> bool:
        return self.mode in TRANSDUCTIVE

    def fit(self, streams: Mapping[str, Stream], *, corpus: np.ndarray) -> Normaliser:
        """Statistics of all training rows ("*") and, except in mode train, of each training corpus."""
        bases = {name.split("@")[0] for name in streams}
        if missing := [t for t in self.twins if t not in bases]:
            raise ConfigError(f"speaker_twins: no stream {missing[0]!r}; the rows have {', '.join(streams)}")
        if frames := [k for k, v in streams.items() if twin_of(k, self.twins) and isinstance(v, Frames)]:
            raise ConfigError(f"speaker_twins: {frames[0]!r} is a frame stream; only pooled streams have twins")
        if self.mode == "none":
            return self
        self.corpora = [] if self.mode == "train" else sorted(set(corpus.tolist()))
        for name, s in streams.items():
            groups = {"*": _moments(_values(s))}
            for c in self.corpora:
                groups[c] = _moments(_rows(s, np.flatnonzero(corpus == c)))
            self.stats[name] = groups
        return self

    def _stats(self, name: str, s: Stream, rows: np.ndarray, corpus: str, speaker: np.ndarray) -> list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
        """(rows, (mean, std)) groups of one corpus's rows."""
        fitted = self.stats[name]
        base = fitted.get(corpus, fitted["*"])
        if corpus not in fitted and self.transductive and len(rows) >= 2:
            base = _moments(_rows(s, rows))
        if self.mode != "adapt-speaker":
            return [(rows, base)]
        groups = []
        for spk in np.unique(speaker[rows]):
            part = rows[speaker[rows] == spk]
            groups.append((part, _moments(_rows(s, part)) if len(part) >= 2 else base))
        return groups

    def transform(self, streams: Mapping[str, Stream], *, corpus: np.ndarray, speaker: np.ndarray) -> dict[str, Stream]:
        """z-scored float32 copies of ``streams`` (rows in any order, any mix of corpora)."""
        if self.mode == "none":
            out = {k: v.map(lambda a: a.astype(np.float32)) if isinstance(v, Frames) else np.asarray(v, np.float32)
                   for k, v in streams.items()}  # fmt: skip
            for name in list(out):
                if twin := twin_of(name, self.twins):
                    out[twin] = _by_speaker(streams[name], out[name], corpus, speaker)
            return out
        if not self.stats:
            raise RuntimeError("normaliser is not fitted")
        out: dict[str, Stream] = {}
        for name, s in streams.items():
            if name not in self.stats:
                raise KeyError(f"normaliser: no statistics of stream {name!r}; fitted on {', '.join(self.stats)}")
            if isinstance(s, Frames):  # each row's frames take that row's group statistics
                mean = np.zeros((len(s), s.dim))
                std = np.ones((len(s), s.dim))
                for c in np.unique(corpus):
                    for rows, (m, d) in self._stats(name, s, np.flatnonzero(corpus == c), str(c), speaker):
                        mean[rows], std[rows] = m, d
                lengths = s.lengths
                z = (s.values - np.repeat(mean, lengths, axis=0)) / np.repeat(std, lengths, axis=0)
                out[name] = Frames(values=z.astype(np.float32), offsets=s.offsets)
                continue
            z = np.empty(s.shape, dtype=np.float32)
            for c in np.unique(corpus):
                for rows, (mean, std) in self._stats(name, s, np.flatnonzero(corpus == c), str(c), speaker):
                    z[rows] = ((s[rows] - mean) / std).astype(np.float32)
            out[name] = z
            if twin := twin_of(name, self.twins):
                out[twin] = _by_speaker(s, z, corpus, speaker)
        return out

    # -- saving ---------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able metadata and named arrays (``norm/<stream>/<group>/mean``)."""
        arrays = {f"norm/{s}/{g}/{k}": v for s, groups in self.stats.items() for g, mv in groups.items()
                  for k, v in zip(("mean", "std"), mv)}  # fmt: skip
        return {"mode": self.mode, "corpora": self.corpora, "streams": list(self.stats), "twins": self.twins}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Normaliser:
        norm = cls(meta["mode"], twins=meta.get("twins", ()))
        norm.corpora = list(meta["corpora"])
        for s in meta["streams"]:
            norm.stats[s] = {g: (arrays[f"norm/{s}/{g}/mean"], arrays[f"norm/{s}/{g}/std"]) for g in ["*", *norm.corpora]}
        return norm


def _by_speaker(raw: np.ndarray, fallback: np.ndarray, corpus: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """Each (corpus, speaker) group of two or more rows z-scored by its own moments; other rows: ``fallback``."""
    out = fallback.copy()
    named = speaker != ""
    keys = np.char.add(np.char.add(corpus.astype(str), "\x00"), speaker.astype(str))
    grouped = 0
    for key in np.unique(keys[named]):
        rows = np.flatnonzero(named & (keys == key))
        if len(rows) >= 2:
            mean, std = _moments(raw[rows])
            out[rows] = ((raw[rows] - mean) / std).astype(np.float32)
            grouped += len(rows)
    if grouped < len(raw):
        # not an error (a lone utterance is legitimate), but the predictions are then those of a
        # model whose twin streams say nothing: worth one line
        warnings.warn(f"speaker twins: {len(raw) - grouped} of {len(raw)} rows have no speaker with another row "
                      "in this call; their twins carry no speaker information", stacklevel=3)
    return out
