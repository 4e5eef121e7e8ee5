"""Classic acoustic features: MFCC, log-mel, GE2E speaker embeddings, openSMILE functionals.

>>> ex = get_extractor("mfcc", deltas=2, frames=True, frame_stride=2)   # doctest: +SKIP
>>> f = ex.extract([samples])[0]                                          # doctest: +SKIP
>>> f.pooled.shape, f.frames["mfcc"].shape     # (1, 2 * 72), (T // 2, 72)  # doctest: +SKIP

* ``mfcc`` / ``logmel`` (librosa, a core dependency): frame-level features on 25 ms Hann
  windows every 10 ms; ``pooled`` is their mean then standard deviation over frames, one row;
  frame sequences on request (``frames=True``).
* ``ge2e``: Resemblyzer's GE2E speaker encoder, a 256-d L2-normalised utterance embedding;
  ``pooled`` is the embedding itself, shape (1, 256). Optional extra ``speaker``.
* ``egemaps`` / ``compare``: openSMILE functionals (eGeMAPSv02, 88-d; ComParE_2016, 6373-d);
  ``pooled`` is the functionals vector, shape (1, dim). Optional extra ``opensmile``, whose
  licence allows non-commercial use only (``licence_note``).

Every clip is processed on its own, so a batch gives exactly the one-at-a-time result. An
empty clip raises ``ValueError``. Optional backends are imported at first use; a missing one
raises ``ImportError`` naming the install line.
"""

from __future__ import annotations

from abc import abstractmethod

import functools
import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from emolingua.errors import ConfigError
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, pool_frames
from emolingua.fileio import file_sha256
from emolingua.system import limited_threads

__all__ = [
    "CompareExtractor",
    "EgemapsExtractor",
    "Ge2eConfig",
    "Ge2eExtractor",
    "LogMelConfig",
    "LogMelExtractor",
    "MfccConfig",
    "MfccExtractor",
    "OpenSmileConfig",
    "SpectralConfig",
    "log_mel_frames",
    "mfcc_frames",
]

SAMPLE_RATE = 16000

#: How to install each optional backend (shown in the ImportError).
INSTALL_HINTS = {
    "librosa": 'pip install "librosa>=0.11" (a core dependency: reinstall emolingua with pip install -e .)',
    "speaker": 'pip install -e ".[speaker]" && pip install --no-deps "resemblyzer==0.1.4"',
    "opensmile": 'pip install -e ".[opensmile]"',
}

#: openSMILE returns NaN functionals for clips shorter than 60 ms (its longest analysis window).
OPENSMILE_MIN_SAMPLES = 960


def _import(module: str, extra: str, who: str) -> Any:
    """Import an optional backend, or raise an ImportError that says how to install it."""
    try:
        with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"extractor {who!r} cannot import its backend {module!r} ({exc}); install it with: {INSTALL_HINTS[extra]}",
            name=module,
        ) from exc


def _as_clip(clip: np.ndarray, index: int, who: str) -> np.ndarray:
    x = np.ascontiguousarray(clip, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"{who}: clip {index} must be mono (1-D), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{who}: clip {index} is empty")
    return x


# -- MFCC and log-mel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralConfig(ExtractorConfig):
    """Options shared by ``mfcc`` and ``logmel``.

    n_mels: mel bands (Slaney mel scale and area normalisation, librosa's default).
    win_ms, hop_ms: Hann window length and hop in milliseconds.
    n_fft: FFT size; ``None``: the next power of two >= the window (512 for 25 ms).
    fmin, fmax: mel band range in Hz; ``fmax=None`` is the Nyquist frequency (8 kHz).
    frames: also return the frame sequence (float16) in ``Features.frames``.
    frame_stride: keep every n-th frame of that sequence.
    """

    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    frames: bool = False
    frame_stride: int = 1

    def __post_init__(self) -> None:
        if self.n_mels < 1:
            raise ConfigError(f"n_mels={self.n_mels!r}: must be >= 1")
        if self.win_ms <= 0 or self.hop_ms <= 0:
            raise ConfigError(f"win_ms={self.win_ms!r}, hop_ms={self.hop_ms!r}: both must be > 0")
        if self.win_length < 2 or self.hop_length < 1:
            raise ConfigError(f"win_ms={self.win_ms!r}, hop_ms={self.hop_ms!r}: too short at {SAMPLE_RATE} Hz")
        if self.n_fft is not None and self.n_fft < self.win_length:
            raise ConfigError(f"n_fft={self.n_fft!r}: must be >= the window ({self.win_length} samples)")
        nyquist = SAMPLE_RATE / 2
        top = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= nyquist:
            raise ConfigError(f"fmin={self.fmin!r}, fmax={self.fmax!r}: need 0 <= fmin < fmax <= {nyquist:g} Hz")
        if self.frame_stride < 1:
            raise ConfigError(f"frame_stride={self.frame_stride!r}: must be >= 1")

    @property
    def win_length(self) -> int:
        return int(round(self.win_ms * SAMPLE_RATE / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_ms * SAMPLE_RATE / 1000))

    @property
    def fft_size(self) -> int:
        return self.n_fft if self.n_fft is not None else 1 << (self.win_length - 1).bit_length()


@dataclass(frozen=True)
class LogMelConfig(SpectralConfig):
    """Options of ``logmel`` (see :class:`SpectralConfig`); features are ``10 log10(power)`` in dB."""


@dataclass(frozen=True)
class MfccConfig(SpectralConfig):
    """Options of ``mfcc`` (see :class:`SpectralConfig`).

    n_mfcc: cepstral coefficients (c0 included), DCT-II, orthonormal.
    deltas: 0, 1 (append deltas) or 2 (append deltas and delta-deltas); librosa's 9-frame
        Savitzky-Golay derivative, edges extended by the nearest frame (works for any length).
    """

    n_mfcc: int = 24
    n_mels: int = 40
    deltas: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ConfigError(f"n_mfcc={self.n_mfcc!r}: need 1 <= n_mfcc <= n_mels ({self.n_mels})")
        if self.deltas not in (0, 1, 2):
            raise ConfigError(f"deltas={self.deltas!r}: must be 0, 1 or 2")


def log_mel_frames(samples: np.ndarray, cfg: SpectralConfig) -> np.ndarray:
    """Log-mel power spectrogram in dB of one 16 kHz clip: (T, n_mels) float32, T = 1 + len // hop.

    >>> log_mel_frames(samples, LogMelConfig()).shape                    # doctest: +SKIP
    """
    librosa = _import("librosa", "librosa", "logmel")
    with warnings.catch_warnings():  # a clip shorter than n_fft is zero-padded (center=True): fine
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        mel = librosa.feature.melspectrogram(
            y=np.ascontiguousarray(samples, dtype=np.float32), sr=SAMPLE_RATE, n_fft=cfg.fft_size,
            hop_length=cfg.hop_length, win_length=cfg.win_length, window="hann", center=True,
            pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        )  # fmt: skip
    # an absolute reference and no top_db clipping: a frame's value does not depend on the rest of the clip
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)


def mfcc_frames(samples: np.ndarray, cfg: MfccConfig) -> np.ndarray:
    """MFCCs (and deltas) of one 16 kHz clip: (T, n_mfcc * (1 + deltas)) float32.

    >>> mfcc_frames(samples, MfccConfig(deltas=2)).shape                 # doctest: +SKIP
    """
    librosa = _import("librosa", "librosa", "mfcc")
    logmel = log_mel_frames(samples, cfg).T
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho", lifter=0)
    parts = [mfcc] + [librosa.feature.delta(mfcc, width=9, order=k, mode="nearest") for k in range(1, cfg.deltas + 1)]
    return np.concatenate(parts, axis=0).T.astype(np.float32)


class _FrameExtractor(FeatureExtractor):
    """Frame-level features, pooled as mean then standard deviation; one stream."""

    stream: ClassVar[str] = ""
    config: SpectralConfig

    @property
    def streams(self) -> list[str]:
        return [self.stream]

    @abstractmethod
    def _frames(self, samples: np.ndarray) -> np.ndarray:
        """(T, d) frame features of one clip."""

    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        out: list[Features] = []
        for i, clip in enumerate(clips):
            frames = self._frames(_as_clip(clip, i, self.name))
            seq = None
            if self.config.frames:
                seq = {self.stream: frames[:: self.config.frame_stride].astype(np.float16)}
            out.append(Features(pooled=pool_frames(frames)[None, :], frames=seq))
        return out


class MfccExtractor(_FrameExtractor):
    """``mfcc``: librosa MFCCs (24 from 40 mel bands by default), pooled mean + std: (1, 2 * dim)."""

    name = "mfcc"
    stream = "mfcc"
    Config = MfccConfig
    config: MfccConfig

    @property
    def dim(self) -> int:
        """Values per frame."""
        return self.config.n_mfcc * (1 + self.config.deltas)

    def _frames(self, samples: np.ndarray) -> np.ndarray:
        return mfcc_frames(samples, self.config)


class LogMelExtractor(_FrameExtractor):
    """``logmel``: librosa log-mel filterbank (80 bands by default) in dB, pooled mean + std: (1, 2 * n_mels)."""

    name = "logmel"
    stream = "logmel"
    Config = LogMelConfig
    config: LogMelConfig

    @property
    def dim(self) -> int:
        """Values per frame."""
        return self.config.n_mels

    def _frames(self, samples: np.ndarray) -> np.ndarray:
        return log_mel_frames(samples, self.config)


# -- GE2E speaker embedding (Resemblyzer) ------------------------------------------------------------


@dataclass(frozen=True)
class Ge2eConfig(ExtractorConfig):
    """Options of ``ge2e``.

    trim_silence: Resemblyzer's ``preprocess_wav`` (volume normalisation to -30 dBFS, increase
        only, then webrtcvad trimming of long silences). When the VAD keeps nothing (no voice
        found: quiet noise, some pure tones, a clip under 30 ms) the volume-normalised, untrimmed
        clip is embedded instead. ``False``: volume normalisation only.
    rate: partial utterances (1.6 s each) per second, as in ``VoiceEncoder.embed_utterance``.
    min_coverage: the last partial is kept when at least this share of it is audio.
    """

    trim_silence: bool = True
    rate: float = 1.3
    min_coverage: float = 0.75

    def __post_init__(self) -> None:
        if not 0.625 <= self.rate <= 100:
            raise ConfigError(f"rate={self.rate!r}: must be within [0.625, 100] partials per second")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"min_coverage={self.min_coverage!r}: must be within (0, 1]")


class Ge2eExtractor(FeatureExtractor):
    """``ge2e``: Resemblyzer's GE2E speaker encoder (weights ship in the wheel), pooled (1, 256).

    Clips shorter than one 1.6 s partial are zero-padded by Resemblyzer and still give a vector;
    digital silence (all zeros) skips the volume normalisation (undefined there) and gives the
    encoder's fixed silence embedding; only an empty clip raises ``ValueError``.
    """

    name = "ge2e"
    Config = Ge2eConfig
    config: Ge2eConfig
    dim = 256

    def __init__(self, argument: str | None = None, **options: Any) -> None:
        super().__init__(argument, **options)
        self._encoder: Any = None
        self._audio: Any = None

    @property
    def streams(self) -> list[str]:
        return ["ge2e"]

    def model_identity(self) -> dict[str, Any]:
        return {"weights_sha256": _resemblyzer_weights_sha256()}

    def _load(self) -> Any:
        if self._encoder is None:
            self._audio = _import("resemblyzer.audio", "speaker", self.name)
            voice_encoder = _import("resemblyzer.voice_encoder", "speaker", self.name)
            self._encoder = voice_encoder.VoiceEncoder("cpu", verbose=False).eval()
        return self._encoder

    def preprocess(self, samples: np.ndarray) -> np.ndarray:
        """The waveform the encoder sees (see :class:`Ge2eConfig`)."""
        self._load()
        audio = self._audio
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if not np.any(x):
            return x
        if self.config.trim_silence:
            wav = audio.preprocess_wav(x)  # no source_sr: the clip is already at 16 kHz
            if len(wav):
                return np.asarray(wav, dtype=np.float32)
        target = self._audio.audio_norm_target_dBFS
        return np.asarray(audio.normalize_volume(x, target, increase_only=True), dtype=np.float32)

    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        import torch

        encoder = self._load()
        out: list[Features] = []
        # the LSTM's many small steps gain little from threads and crawl when a core is busy
        # (OpenMP waits at every step): one thread unless ``threads`` asks for more
        with limited_threads(self.config.threads or 1), torch.inference_mode():
            for i, clip in enumerate(clips):
                wav = self.preprocess(_as_clip(clip, i, self.name))
                emb = encoder.embed_utterance(wav, rate=self.config.rate, min_coverage=self.config.min_coverage)
                out.append(Features(pooled=np.asarray(emb, dtype=np.float32)[None, :]))
        return out


@functools.cache  # fingerprints are asked for often; the weights file is 17 MB
def _resemblyzer_weights_sha256() -> str:
    spec = importlib.util.find_spec("resemblyzer")  # finds the package without running its imports
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"extractor 'ge2e' needs resemblyzer; install it with: {INSTALL_HINTS['speaker']}",
                          name="resemblyzer")  # fmt: skip
    weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    return file_sha256(weights)


# -- openSMILE functionals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSmileConfig(ExtractorConfig):
    """Options of ``egemaps`` and ``compare``.

    pad_short: openSMILE gives NaN for clips under 60 ms; ``True`` zero-pads such clips to 60 ms,
        ``False`` (default) raises ``ValueError`` for them.
    """

    pad_short: bool = False


_OPENSMILE_LICENCE = (
    "openSMILE (egemaps, compare) is under audEERING's research licence: free for non-commercial "
    "research, teaching and personal use only; any commercial use needs a licence from audEERING."
)


class _OpenSmileExtractor(FeatureExtractor):
    """openSMILE functionals of one feature set: pooled (1, dim)."""

    feature_set: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    Config = OpenSmileConfig
    config: OpenSmileConfig
    licence_note = _OPENSMILE_LICENCE

    def __init__(self, argument: str | None = None, **options: Any) -> None:
        super().__init__(argument, **options)
        self._smile: Any = None

    @property
    def streams(self) -> list[str]:
        return [self.name]

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's names of the ``dim`` functionals, in order."""
        return list(self._load().feature_names)

    def model_identity(self) -> dict[str, Any]:
        try:
            version = metadata.version("opensmile")
        except metadata.PackageNotFoundError as exc:
            raise ImportError(f"extractor {self.name!r} needs opensmile; install it with: {INSTALL_HINTS['opensmile']}",
                              name="opensmile") from exc  # fmt: skip
        return {"opensmile": version}

    def _load(self) -> Any:
        if self._smile is None:
            opensmile = _import("opensmile", "opensmile", self.name)
            self._smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        return self._smile

    def _functionals(self, x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "Segment too short, filling with NaN": handled by the caller
            warnings.simplefilter("ignore", UserWarning)
            values = self._load().process_signal(x, SAMPLE_RATE).to_numpy(dtype=np.float32)
        return values.reshape(-1)

    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        out: list[Features] = []
        for i, clip in enumerate(clips):
            x = _as_clip(clip, i, self.name)
            if self.config.pad_short and len(x) < OPENSMILE_MIN_SAMPLES:
                x = np.pad(x, (0, OPENSMILE_MIN_SAMPLES - len(x)))
            values = self._functionals(x)
            if values.shape != (self.dim,):
                raise RuntimeError(f"{self.name}: openSMILE returned {values.shape[0]} values, expected {self.dim}")
            if np.isnan(values).any():
                raise ValueError(
                    f"{self.name}: clip {i} ({len(x)} samples) gives NaN functionals; openSMILE needs at "
                    f"least {OPENSMILE_MIN_SAMPLES} samples (60 ms); pass pad_short=True to zero-pad short clips"
                )
            out.append(Features(pooled=values[None, :]))
        return out


class EgemapsExtractor(_OpenSmileExtractor):
    """``egemaps``: openSMILE eGeMAPSv02 functionals, pooled (1, 88)."""

    name = "egemaps"
    feature_set = "eGeMAPSv02"
    dim = 88


class CompareExtractor(_OpenSmileExtractor):
    """``compare``: openSMILE ComParE_2016 functionals, pooled (1, 6373)."""

    name = "compare"
    feature_set = "ComParE_2016"
    dim = 6373
