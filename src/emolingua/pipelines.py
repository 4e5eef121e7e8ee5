"""From recordings to emotions: a pipeline folder and the Python API over it.

>>> from emolingua import pipeline
>>> ser = pipeline("emotion")                       # the shipped default model    # doctest: +SKIP
>>> ser("talk.wav")                                 # [{'label': 'angry', 'score': 0.81}, ...]  # doctest: +SKIP
>>> ser(["a.wav", "b.flac"], segments="vad")        # per-segment results         # doctest: +SKIP
>>> ser({"array": samples, "sampling_rate": 44100})                                 # doctest: +SKIP
>>> ser.embed("a.wav").shape                        # (dim,)                        # doctest: +SKIP

A pipeline folder (written by ``emolingua train``) holds ``pipeline.json`` (its heads, labels,
languages and default segmentation) and one saved model per head: ``emotion/`` (classes) and,
when trained, ``arousal/`` and ``valence/`` (values on the 0..1 scale of
:mod:`emolingua.taxonomy`, 0.5 neutral). Each saved model says which extractors made its
features, so the same ones are rebuilt here and fed from memory, with no feature store.

Every recording is processed on its own: segments are found (:mod:`emolingua.segments`), their
features computed a few at a time, and every head scores each segment. A file's answer does not
depend on which other files are processed with it, and a long file never sits in memory whole.
The per-file summary weighs each segment's probabilities and values by its duration.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from emolingua.audio import AudioError
from emolingua.errors import ConfigError, InputFileError
from emolingua.features import FeatureExtractor, Features, get_extractor
from emolingua.features.whisper import WhisperExtractor
from emolingua.inference import extractors_of
from emolingua.models import Dataset, Model
from emolingua.models.data import Frames
from emolingua.segments import RATE, SegmentOptions, Source, open_source, segment_times
from emolingua.system import limited_threads

__all__ = ["FileResult", "Pipeline", "default_model_dir", "pipeline", "resolve_model"]

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = 1
HEADS = ("emotion", "arousal", "valence")
TASKS = ("emotion", "audio-classification", "speech-emotion-recognition")
#: Audio seconds whose features are computed together (bounds memory on long recordings).
BATCH_SECONDS = 60.0
#: Inputs a pipeline call accepts.
Input = str | os.PathLike | bytes | np.ndarray | dict


def default_model_dir() -> Path:
    """The pipeline folder shipped inside the package (see its MODEL_CARD.md)."""
    return Path(__file__).parent / "data" / "default"


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A pipeline folder from ``None`` / ``"default"`` (the shipped one), a folder, or ``hf:<repo id>``.

    ``hf:<repo id>`` downloads the repository once (huggingface_hub's cache; offline, the
    cached copy is used) and must hold a ``pipeline.json``.

    >>> resolve_model("default").name
    'default'
    """
    if model is None or model == "default":
        folder = default_model_dir()
        if not (folder / PIPELINE_FILE).is_file():
            raise InputFileError(f"{folder}: the shipped default model is missing from this installation; "
                                 "rebuild it with `bash scripts/build_default_model.sh`")  # fmt: skip
        return folder
    text = os.fspath(model)
    if text.startswith("hf:"):
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(repo_id=text[3:]))
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, no access: one line with the reason
            raise InputFileError(f"{text}: could not fetch the pipeline from the Hugging Face hub ({exc})") from None
    else:
        folder = Path(text)
    if not (folder / PIPELINE_FILE).is_file():
        if (folder / "model.json").is_file():
            raise InputFileError(f"{folder}: a saved model, not a pipeline folder (no {PIPELINE_FILE}); "
                                 "write one with `emolingua train`")  # fmt: skip
        raise InputFileError(f"{text}: not a pipeline folder (no {PIPELINE_FILE}); give 'default', a folder "
                             "written by `emolingua train`, or hf:<repo id>")  # fmt: skip
    return folder


@dataclass
class FileResult:
    """One recording's answer: a row per segment (``start``, ``end`` in seconds, ``label``, ``score``,
    ``scores`` per label, ``arousal``, ``valence``), or the ``error`` that stopped it."""

    file: str
    duration: float = 0.0
    segments: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def summary(self) -> dict[str, Any]:
        """The whole recording: duration-weighted mean scores over its segments, their top label."""
        out: dict[str, Any] = {"file": self.file, "start": 0.0, "end": round(self.duration, 3),
                               "segments": len(self.segments),
                               "speech": round(sum(s["end"] - s["start"] for s in self.segments), 3)}  # fmt: skip
        if self.error:
            return {**out, "error": self.error}
        if not self.segments:
            return {**out, "label": "", "score": float("nan"), "note": "no speech found"}
        w = np.array([max(s["end"] - s["start"], 1e-3) for s in self.segments])
        labels = list(self.segments[0]["scores"])
        p = np.average(np.array([[s["scores"][c] for c in labels] for s in self.segments]), axis=0, weights=w)
        out.update(label=labels[int(p.argmax())], score=float(p.max()), scores=dict(zip(labels, p.tolist())))
        for dim in ("arousal", "valence"):
            if dim in self.segments[0]:
                out[dim] = float(np.average([s[dim] for s in self.segments], weights=w))
        return out


class Pipeline:
    """A loaded pipeline folder: ``Pipeline("runs/my-model")`` or :func:`pipeline`.

    ``language``: the ISO code of the speech, for models with per-language parts (others ignore
    it); ``threads``: torch/BLAS threads while scoring (None: as the process has them).
    """

    def __init__(self, folder: str | os.PathLike, *, backend: str = "torch", threads: int | None = None,
                 language: str = "", precision: str | None = None) -> None:  # fmt: skip
        self.folder = Path(folder)
        try:
            self.spec: dict[str, Any] = json.loads((self.folder / PIPELINE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{self.folder / PIPELINE_FILE}: not readable ({exc})") from None
        if self.spec.get("format") != PIPELINE_FORMAT:
            raise InputFileError(f"{self.folder}: pipeline format {self.spec.get('format')}, this version reads "
                                 f"{PIPELINE_FORMAT}")  # fmt: skip
        self.labels: list[str] = [str(c) for c in self.spec["labels"]]
        self.threads = threads
        self.language = language
        self.segment_options = SegmentOptions(**self.spec.get("segments", {}))
        self.backend = backend
        self.heads: dict[str, Model] = {}
        self._extractors: list[FeatureExtractor] = []
        self._onnx: Any = None
        if backend == "onnx":
            from emolingua.export import OnnxRunner

            self._onnx = OnnxRunner(self.folder, threads=threads)
            return
        if backend != "torch":
            raise ConfigError(f"backend={backend!r}: must be torch or onnx")
        self.heads = {h: Model.load(self.folder / h) for h in HEADS if (self.folder / h).is_dir()}
        if "emotion" not in self.heads:
            hint = " (an ONNX export: use backend onnx)" if (self.folder / "model.onnx").is_file() else ""
            raise InputFileError(f"{self.folder}: the pipeline has no emotion/ model{hint}")
        for model in self.heads.values():
            for ex in extractors_of(model=model):
                if ex.spec in {x.spec for x in self._extractors}:
                    continue
                if precision is not None and "precision" in ex.identity().get("options", {}):
                    # an explicit choice (e.g. fp32 to compare with the ONNX graph): no warning
                    ex = get_extractor(ex.spec, **{**ex.identity()["options"], "precision": precision})
                self._extractors.append(ex)
        self._up_to = {ex.spec: self._last_state_read(ex) for ex in self._extractors}

    def __repr__(self) -> str:
        return f"Pipeline({str(self.folder)!r}, heads={list(self.heads)}, labels={self.labels})"

    def _last_state_read(self, ex: FeatureExtractor) -> int | None:
        """The last Whisper hidden state any head reads (the encoder can stop there: the default
        model reads layer 3 of 6), or None to compute them all."""
        if not isinstance(ex, WhisperExtractor):
            return None
        top = -1
        for head in self.heads.values():
            for stream, shape in head.streams_.items():
                if stream.startswith(f"{ex.spec}/"):
                    return None  # frame sequences: their layers are the extractor's own option
                if stream == ex.spec:
                    layers = head.config.view.layers
                    if not isinstance(layers, tuple):
                        return None
                    top = max(top, *(i % shape[0] for i in layers))
        return top if top >= 0 else None

    # -- scoring --------------------------------------------------------------------------------
    def _rows(self, clips: Sequence[np.ndarray], language: str | None = None) -> Dataset:
        """The streams every head reads, computed from the clips in memory."""
        streams: dict[str, Any] = {}
        for ex in self._extractors:
            up_to = self._up_to.get(ex.spec)
            feats: list[Features] = ex.extract(list(clips)) if up_to is None else ex.extract(list(clips), up_to=up_to)  # type: ignore[call-arg]
            streams[ex.spec] = np.stack([f.pooled for f in feats])
            for name in sorted(feats[0].frames or {}):
                streams[f"{ex.spec}/{name}"] = Frames.from_list([f.frames[name] for f in feats])  # type: ignore[index]
        return Dataset(streams=streams, language=[self.language if language is None else language] * len(clips))

    def score(self, clips: Sequence[np.ndarray], *, language: str | None = None) -> dict[str, np.ndarray]:
        """``proba`` (N, labels), and ``arousal`` / ``valence`` (N,) where the pipeline has them, of
        16 kHz mono clips in ``language`` (None: the pipeline's): ``ser.score([samples])["proba"]``."""
        if not clips:
            return {"proba": np.zeros((0, len(self.labels)))}
        with limited_threads(self.threads):
            if self._onnx is not None:
                return self._onnx.score(clips)
            rows = self._rows(clips, language)
            out = {"proba": self.heads["emotion"].predict_proba(rows.select(streams=list(self.heads["emotion"].streams_)))}
            for dim in ("arousal", "valence"):
                if dim in self.heads:
                    head = self.heads[dim]
                    out[dim] = np.clip(head.predict(rows.select(streams=list(head.streams_))), 0.0, 1.0)
            return out

    def analyse(self, source: Source, *, options: SegmentOptions | None = None, language: str | None = None,
                on_progress: Callable[[float], None] | None = None) -> FileResult:  # fmt: skip
        """One recording, segment by segment: ``ser.analyse(open_source("talk.wav"))``; ``language``
        overrides the pipeline's for this call; ``on_progress`` gets the position reached (seconds
        into the recording) after each batch of segments."""
        options = options or self.segment_options
        result = FileResult(file=source.name, duration=source.duration)
        times = segment_times(source=source, options=options)
        i = 0
        while i < len(times):
            batch, seconds = [], 0.0
            while i < len(times) and (not batch or seconds + times[i][1] - times[i][0] <= BATCH_SECONDS):
                batch.append(times[i])
                seconds += times[i][1] - times[i][0]
                i += 1
            clips = [source.read(s, e) for s, e in batch]
            scores = self.score(clips, language=language)
            if on_progress is not None:
                on_progress(batch[-1][1])
            for j, (start, end) in enumerate(batch):
                p = scores["proba"][j]
                row: dict[str, Any] = {"start": round(start, 3), "end": round(end, 3),
                                       "label": self.labels[int(p.argmax())], "score": float(p.max()),
                                       "scores": {c: float(v) for c, v in zip(self.labels, p)}}  # fmt: skip
                for dim in ("arousal", "valence"):
                    if dim in scores:
                        row[dim] = float(scores[dim][j])
                result.segments.append(row)
        return result

    def options(self, segments: str | None = None, **changes: Any) -> SegmentOptions:
        """The segmentation of a call: the pipeline's defaults, with ``segments`` (vad | window | none)
        and any of window, hop, max_segment, ... changed."""
        base = dict(vars(self.segment_options))
        if segments is not None:
            base["how"] = segments
        base.update({k: v for k, v in changes.items() if v is not None})
        if "window" in changes and changes["window"] is not None and changes.get("hop") is None:
            base["hop"] = None  # a new window without a hop: windows side by side
        return SegmentOptions(**base)

    def predict(self, inputs: Iterable[Input], *, segments: str | None = None,
                on_progress: Callable[[str, float], None] | None = None, **options: Any) -> Iterator[FileResult]:  # fmt: skip
        """A :class:`FileResult` per input, in order; an input that fails gets its ``error`` and the
        rest go on: ``for r in ser.predict(paths, segments="vad"): print(r.summary)``.
        ``on_progress(file, seconds)``: how far into ``file`` scoring has come (for progress bars)."""
        opts = self.options(segments, **options)
        for k, item in enumerate(inputs):
            name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<input {k}>"
            try:
                # a bare array is taken as 16 kHz mono, as transformers' audio pipelines take it
                source = open_source(item, rate=RATE if isinstance(item, np.ndarray) else None,
                                     name=None if isinstance(item, (str, os.PathLike)) else name)  # fmt: skip
                report = None if on_progress is None else (lambda at, file=source.name: on_progress(file, at))
                yield self.analyse(source, options=opts, on_progress=report)
            except AudioError as exc:
                yield FileResult(file=exc.path, error=exc.reason)

    # -- the transformers-style call ------------------------------------------------------------
    def __call__(self, inputs: Input | list[Input], *, segments: str | None = None, top_k: int | None = None,
                 **options: Any) -> Any:  # fmt: skip
        """Labels with scores, best first (``segments=None``: the whole input as one segment), or with
        ``segments="vad"|"window"`` a list of segment dicts per input. A list gives a list. Inputs:
        a path, encoded bytes, a numpy array (16 kHz), ``{"array", "sampling_rate"}`` (any rate,
        mono or stereo). A bad input raises :class:`~emolingua.audio.AudioError` naming it
        (``predict`` goes on instead)."""
        many = isinstance(inputs, list)
        items = inputs if many else [inputs]
        out = []
        for result in self.predict(items, segments=segments or "none", **options):
            if result.error:
                raise AudioError(result.file, result.error)
            if segments in (None, "none"):
                scores = result.segments[0]["scores"]
                ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]
                out.append([{"label": c, "score": v} for c, v in ranked])
            else:
                out.append(result.segments)
        return out if many else out[0]

    def embed(self, inputs: Input | list[Input]) -> np.ndarray | list[np.ndarray]:
        """The utterance embedding (what the emotion head reads) of a whole input: (dim,) float32; a
        list gives a list: ``ser.embed("a.wav")``."""
        if self._onnx is not None:
            raise ConfigError("embed: use the torch backend (the ONNX graph ends in the scores)")
        many = isinstance(inputs, list)
        vectors = []
        for k, item in enumerate(inputs if many else [inputs]):
            source = open_source(item, rate=RATE if isinstance(item, np.ndarray) else None)
            (start, end), = segment_times(source=source, options=self.options("none"))
            with limited_threads(self.threads):
                rows = self._rows([source.read(start, end)])
                head = self.heads["emotion"]
                vectors.append(head.embed(rows.select(streams=list(head.streams_)))[0])
        return vectors if many else vectors[0]


def pipeline(task: str = "emotion", model: str | os.PathLike | None = None, *, backend: str = "torch",
             threads: int | None = None, language: str = "") -> Pipeline:  # fmt: skip
    """A ready pipeline, in the spirit of transformers' ``pipeline``.

    ``pipeline("emotion")`` loads the shipped default; ``pipeline("emotion", model="runs/m")`` a
    folder written by ``emolingua train``; ``model="hf:org/name"`` one from the Hugging Face hub.
    A folder may also be given as the first argument: ``pipeline("runs/m")``.

    >>> ser = pipeline("emotion")                                                  # doctest: +SKIP
    """
    if task not in TASKS:
        if model is None and (Path(task) / PIPELINE_FILE).is_file() or task.startswith("hf:"):
            task, model = "emotion", task
        else:
            raise ConfigError(f"pipeline task {task!r}: unknown; tasks: {', '.join(TASKS)} (or give a pipeline folder)")
    return Pipeline(resolve_model(model), backend=backend, threads=threads, language=language)
