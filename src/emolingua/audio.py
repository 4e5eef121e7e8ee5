"""Audio loading: any file soundfile reads, to float32 mono at one rate.

>>> from emolingua.audio import load_audio
>>> clip = load_audio("speech.flac", sample_rate=16000)        # doctest: +SKIP
>>> clip.samples.shape, clip.original_rate, clip.duration       # doctest: +SKIP

Every failure (missing, empty, corrupt, not audio, non-finite samples, absurd amplitude)
raises :class:`AudioError`, which carries the path and a human reason.

Absurd amplitudes are rejected, not normalised. Samples are expected in -1..1: integer
formats cannot leave that range, and float files (float WAV, AIFF-C, ...) normally stay in
it. A float file may go a little over full scale (kept as it is), but one whose peak exceeds
:data:`MAX_PEAK` (100, i.e. 40 dB over full scale; one seen in the wild reached 1e19) is
broken or wrongly scaled: no extractor is calibrated for it (whisper's int8 path raises,
MFCCs overflow to NaN), and silently rescaling it would hide the defect and make its
features depend on a guess. Such a file fails with a reason naming its peak, so the user
can rescale it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "Clip",
    "is_audio_path",
    "load_audio",
    "probe_audio",
]

#: Largest finite sample magnitude accepted (40 dB over full scale); see the module docstring.
MAX_PEAK = 100.0

#: File endings treated as audio when scanning folders (what libsndfile decodes).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd", ".mp3", ".w64", ".caf"}
)


class AudioError(Exception):
    """A file that cannot be used as audio; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header (and a check of its last samples) says."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Clip:
    """Decoded audio: mono float32 ``samples`` at ``sample_rate``, and what the file was."""

    samples: np.ndarray
    sample_rate: int
    original_rate: int
    original_channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def is_audio_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in an audio extension (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:  # not audio, unknown format, broken header
        raise AudioError(path, f"not readable as audio ({exc.error_string})") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(path, f"not readable as audio ({exc})") from None


def probe_audio(path: str | os.PathLike, *, check_tail: bool = True) -> AudioInfo:
    """Read a file's header; with ``check_tail`` also decode its last samples.

    Decoding the tail catches truncated files at a fraction of a full decode.

    >>> probe_audio("speech.wav").duration                           # doctest: +SKIP
    """
    p = Path(path)
    with _open(p) as f:
        frames, rate, channels = f.frames, f.samplerate, f.channels
        if frames <= 0:
            raise AudioError(p, "no samples (zero-length audio)")
        if rate <= 0:
            raise AudioError(p, f"invalid sample rate {rate}")
        if check_tail:
            tail = min(frames, 4096)
            try:
                f.seek(frames - tail)
                got = f.read(tail, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(p, f"corrupt or truncated audio ({exc})") from None
            if len(got) < tail:
                raise AudioError(p, f"truncated: header promises {frames} samples, data ends early")
    return AudioInfo(path=str(p), sample_rate=rate, channels=channels, frames=frames)


def load_audio(path: str | os.PathLike, *, sample_rate: int | None = 16000, mono: bool = True) -> Clip:
    """Decode a file to float32 (mono by default), resampled with soxr to ``sample_rate``.

    ``sample_rate=None`` keeps the file's own rate. The whole file is read: long files are
    never cut.

    >>> clip = load_audio("speech.wav", sample_rate=16000)          # doctest: +SKIP
    """
    p = Path(path)
    with _open(p) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(p, f"corrupt or truncated audio ({exc})") from None
    if len(data) == 0:
        raise AudioError(p, "no samples (zero-length audio)")
    if frames > 0 and len(data) < frames:
        raise AudioError(p, f"truncated: header promises {frames} samples, decoded {len(data)}")
    if not np.isfinite(data).all():
        raise AudioError(p, "audio contains NaN or infinite samples")
    peak = max(float(data.max()), -float(data.min()))
    if peak > MAX_PEAK:
        raise AudioError(p, f"absurd amplitude: peak {peak:.3g}; float samples are expected in -1..1 "
                            f"(this is over 40 dB above full scale): rescale the file")  # fmt: skip
    samples = data.mean(axis=1) if mono else data
    out_rate = rate if sample_rate is None else int(sample_rate)
    if out_rate != rate:
        samples = soxr.resample(samples, rate, out_rate, quality="HQ")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    return Clip(samples=samples, sample_rate=out_rate, original_rate=rate, original_channels=channels)
