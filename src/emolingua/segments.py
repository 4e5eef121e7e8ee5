"""Recordings of any length in bounded memory: where the speech is, and its samples one segment at a time.

>>> source = open_source("interview.mp3")                                       # doctest: +SKIP
>>> for seg in segments(source=source, how="vad", max_segment=10.0):              # doctest: +SKIP
...     seg.start, seg.end, seg.samples.shape

A source is read twice and never whole: once in blocks to find the segments (silero-vad's
speech probabilities, or fixed windows, need no samples kept), then each segment on its own
(a seek, a read of its span, a resampling to 16 kHz). Peak memory is one block plus one
segment, whatever the recording's length. The same file gives the same segments and the same
samples whether it is processed alone or among others.

Segmenters (``how``):
* ``vad``: silero-vad (weights in its wheel, run with onnxruntime) speech regions, padded by
  ``pad`` seconds, at least ``min_speech`` long, split at pauses of ``min_silence`` or more; a
  region longer than ``max_segment`` is cut where the speech pauses longest, else evenly.
* ``window``: windows of ``window`` seconds every ``hop`` seconds; a last partial window is
  kept when it is at least ``min_speech`` long.
* ``none``: the whole recording as one segment, up to ``max_seconds`` (longer ones fail with
  a reason that names the other segmenters).
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import soundfile as sf
import soxr

from emolingua.audio import MAX_PEAK, AudioError, _open
from emolingua.errors import ConfigError

__all__ = ["ArraySource", "FileSource", "SEGMENTERS", "Segment", "SegmentOptions", "open_source", "segment_times",
           "segments"]  # fmt: skip

RATE = 16000
SEGMENTERS = ("vad", "window", "none")
#: Samples per read in the first pass (about 2 s at 16 kHz, whatever the file's rate).
BLOCK_SECONDS = 2.0
#: silero-vad's frame at 16 kHz.
VAD_FRAME = 512


@dataclass(frozen=True)
class SegmentOptions:
    """How a recording is cut (see the module docstring); times in seconds.

    >>> SegmentOptions(how="window", window=4.0, hop=2.0)
    SegmentOptions(how='window', window=4.0, hop=2.0, max_segment=10.0, min_speech=0.25, min_silence=0.3, pad=0.1, threshold=0.5, max_seconds=600.0)
    """

    how: str = "vad"
    window: float = 4.0
    hop: float | None = None
    max_segment: float = 10.0
    min_speech: float = 0.25
    min_silence: float = 0.3
    pad: float = 0.1
    threshold: float = 0.5
    max_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.how not in SEGMENTERS:
            raise ConfigError(f"segments={self.how!r}: must be one of {', '.join(SEGMENTERS)}")
        if self.hop is None:
            object.__setattr__(self, "hop", self.window)
        for name in ("window", "hop", "max_segment", "max_seconds"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be a positive number of seconds")
        for name in ("min_speech", "min_silence", "pad"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 0 seconds")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold={self.threshold!r}: must be between 0 and 1")


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording: ``start`` and ``end`` in seconds, its 16 kHz mono ``samples``."""

    start: float
    end: float
    samples: np.ndarray


def _check_block(data: np.ndarray, name: str) -> None:
    if not np.isfinite(data).all():
        raise AudioError(name, "audio contains NaN or infinite samples")
    if len(data) and (peak := float(np.abs(data).max())) > MAX_PEAK:
        raise AudioError(name, f"absurd amplitude: peak {peak:.3g}; float samples are expected in -1..1: rescale it")


class FileSource:
    """A file (path or seekable binary file object) read in blocks, mono, resampled to 16 kHz on the fly."""

    def __init__(self, file: str | os.PathLike | IO[bytes], *, name: str | None = None) -> None:
        self.name = name or (os.fspath(file) if isinstance(file, (str, os.PathLike)) else "<bytes>")
        self._file = file
        with self._open() as f:
            self.rate, self.channels, self.frames = f.samplerate, f.channels, f.frames
        if self.frames <= 0:
            raise AudioError(self.name, "no samples (zero-length audio)")

    def _open(self) -> sf.SoundFile:
        if isinstance(self._file, (str, os.PathLike)):
            return _open(Path(self._file))
        try:
            self._file.seek(0)
            return sf.SoundFile(self._file)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(self.name, f"not readable as audio ({getattr(exc, 'error_string', exc)})") from None

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """The whole recording at 16 kHz mono, in consecutive blocks (soxr's streaming resampler)."""
        stream = None if self.rate == RATE else soxr.ResampleStream(self.rate, RATE, 1, dtype="float32", quality="HQ")
        size = max(int(seconds * self.rate), 1)
        with self._open() as f:
            read = 0
            while True:
                try:
                    data = f.read(size, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(self.name, f"corrupt or truncated audio ({exc})") from None
                last = len(data) < size
                read += len(data)
                _check_block(data, self.name)
                mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
                out = mono if stream is None else stream.resample_chunk(mono, last=last)
                if len(out):
                    yield out
                if last:
                    break
        if read < self.frames:
            raise AudioError(self.name, f"truncated: header promises {self.frames} samples, decoded {read}")

    def read(self, start: float, end: float) -> np.ndarray:
        """Samples between ``start`` and ``end`` seconds, 16 kHz mono (a margin either side keeps the
        resampler's edges out of the span)."""
        margin = int(0.05 * self.rate) if self.rate != RATE else 0
        first = max(int(round(start * self.rate)) - margin, 0)
        last = min(int(round(end * self.rate)) + margin, self.frames)
        with self._open() as f:
            try:
                f.seek(first)
                data = f.read(last - first, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(self.name, f"corrupt or truncated audio ({exc})") from None
        _check_block(data, self.name)
        mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
        if self.rate != RATE:
            mono = soxr.resample(mono, self.rate, RATE, quality="HQ")
        skip = int(round((start - first / self.rate) * RATE))
        n = int(round((end - start) * RATE))
        return np.ascontiguousarray(mono[skip : skip + n], dtype=np.float32)


class ArraySource:
    """Samples already in memory (any rate, mono or (samples, channels)), resampled once to 16 kHz."""

    def __init__(self, samples: np.ndarray, rate: int, *, name: str = "<array>") -> None:
        self.name = name
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 2:  # (samples, channels); a (channels, samples) array of a few channels is turned
            x = (x.T if x.shape[0] < x.shape[1] and x.shape[0] <= 8 else x).mean(axis=1)
        if x.ndim != 1:
            raise AudioError(name, f"expected mono samples or (samples, channels), got an array of shape {x.shape}")
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise AudioError(name, f"invalid sampling rate {rate!r}")
        if len(x) == 0:
            raise AudioError(name, "no samples (zero-length audio)")
        _check_block(x, name)
        self.rate, self.channels = int(rate), 1
        self._x = x if rate == RATE else np.ascontiguousarray(soxr.resample(x, rate, RATE, quality="HQ"))
        self.frames = len(self._x)

    @property
    def duration(self) -> float:
        return len(self._x) / RATE

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        size = max(int(seconds * RATE), 1)
        for i in range(0, len(self._x), size):
            yield self._x[i : i + size]

    def read(self, start: float, end: float) -> np.ndarray:
        return self._x[int(round(start * RATE)) : int(round(start * RATE)) + int(round((end - start) * RATE))].copy()


Source = FileSource | ArraySource


def open_source(item: str | os.PathLike | bytes | np.ndarray | dict, *, rate: int | None = None,
                name: str | None = None) -> Source:  # fmt: skip
    """A source from a path, encoded bytes, samples with their ``rate``, or ``{"array", "sampling_rate"}``.

    >>> open_source({"array": np.zeros(16000), "sampling_rate": 16000}).duration
    1.0
    """
    if isinstance(item, dict):
        if "array" not in item or ("sampling_rate" not in item and "sample_rate" not in item):
            raise AudioError(name or "<dict>", "a dict input needs 'array' and 'sampling_rate'")
        return ArraySource(np.asarray(item["array"]), item.get("sampling_rate", item.get("sample_rate")),
                           name=name or str(item.get("path") or "<array>"))  # fmt: skip
    if isinstance(item, np.ndarray):
        if rate is None:
            raise AudioError(name or "<array>", "a numpy array needs its sampling rate")
        return ArraySource(item, rate, name=name or "<array>")
    if isinstance(item, (bytes, bytearray, memoryview)):
        if not len(item):
            raise AudioError(name or "<bytes>", "file is empty (0 bytes)")
        return FileSource(io.BytesIO(bytes(item)), name=name or "<bytes>")
    if isinstance(item, (str, os.PathLike)):
        return FileSource(item, name=name)
    raise AudioError(name or repr(item)[:40], f"not an audio input: {type(item).__name__} (expected a path, bytes, "
                                              f"a numpy array with its rate, or a dict)")  # fmt: skip


# ----------------------------------------------------------------------------- voice activity
_VAD_LOCK = threading.Lock()
_VAD = threading.local()  # one model per thread: its recurrent state is per recording, reset for each


def _vad_model() -> object:
    """silero-vad's ONNX model for this thread. Importing silero_vad sets torch to one thread, so
    the caller's thread count is put back."""
    model = getattr(_VAD, "model", None)
    if model is None:
        import warnings

        import torch

        threads = torch.get_num_threads()
        with _VAD_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # silero_vad's use of importlib.resources.path
            from silero_vad import load_silero_vad

            model = _VAD.model = load_silero_vad(onnx=True)
        torch.set_num_threads(threads)
    return model


def speech_probabilities(source: Source) -> np.ndarray:
    """silero-vad's speech probability of every 32 ms frame of ``source`` (one value per 512 samples)."""
    import torch

    model = _vad_model()
    model.reset_states()
    probs: list[float] = []
    rest = np.zeros(0, dtype=np.float32)
    for block in source.blocks():
        x = np.concatenate([rest, block]) if len(rest) else block
        n = len(x) // VAD_FRAME * VAD_FRAME
        for i in range(0, n, VAD_FRAME):
            probs.append(float(model(torch.from_numpy(x[i : i + VAD_FRAME]), RATE)))
        rest = x[n:]
    if len(rest):
        probs.append(float(model(torch.from_numpy(np.pad(rest, (0, VAD_FRAME - len(rest)))), RATE)))
    return np.asarray(probs, dtype=np.float32)


def segment_times(*, source: Source, options: SegmentOptions = SegmentOptions()) -> list[tuple[float, float]]:
    """``(start, end)`` in seconds of each segment of ``source``.

    >>> segment_times(source=open_source(np.zeros(16000 * 9), rate=16000),
    ...               options=SegmentOptions(how="window", window=4.0))
    [(0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]
    """
    duration = source.duration
    if options.how == "none":
        if duration > options.max_seconds:
            raise AudioError(source.name, f"{duration:.0f} s is longer than max_seconds={options.max_seconds:g} "
                                          f"for segments 'none': use segments 'vad' or 'window'")  # fmt: skip
        return [(0.0, duration)]
    if options.how == "window":
        assert options.hop is not None
        out = []
        start = 0.0
        while start < duration:
            end = min(start + options.window, duration)
            if end - start >= min(options.min_speech, options.window) or start == 0.0:
                out.append((round(start, 6), round(end, 6)))
            if end >= duration:
                break
            start += options.hop
        return out
    from silero_vad import get_speech_timestamps_from_probs

    probs = speech_probabilities(source)
    spans = get_speech_timestamps_from_probs(
        probs.tolist(), sampling_rate=RATE, threshold=options.threshold,
        min_speech_duration_ms=int(options.min_speech * 1000), max_speech_duration_s=options.max_segment,
        min_silence_duration_ms=int(options.min_silence * 1000),
        speech_pad_ms=int(options.pad * 1000), audio_length_samples=int(round(duration * RATE)))  # fmt: skip
    return [(round(s["start"] / RATE, 6), round(min(s["end"] / RATE, duration), 6)) for s in spans]


def segments(*, source: Source, options: SegmentOptions = SegmentOptions()) -> Iterator[Segment]:
    """The segments of ``source`` with their samples, one at a time (see the module docstring).

    >>> [s.end for s in segments(source=open_source(np.zeros(32000), rate=16000),
    ...                          options=SegmentOptions(how="none"))]
    [2.0]
    """
    for start, end in segment_times(source=source, options=options):
        yield Segment(start=start, end=end, samples=source.read(start, end))
