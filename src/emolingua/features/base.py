"""The feature-extractor interface and its registry.

An extractor turns a batch of clips (float32 mono at :attr:`FeatureExtractor.sample_rate`)
into one :class:`Features` per clip: ``pooled`` statistics of every stream (for a frame-level
model: mean and standard deviation over valid frames of each layer, side by side) and, on
request, frame sequences of chosen streams.

>>> from emolingua.features import get_extractor
>>> ex = get_extractor("mfcc")                                   # doctest: +SKIP
>>> feats = ex.extract([clip.samples])                           # doctest: +SKIP
>>> feats[0].pooled.shape        # (streams, 2 * dim)            # doctest: +SKIP

Names: a plain name (``whisper-base``, ``mfcc``) or a family with an argument
(``whisper:<hub id or folder>``, ``hf:<hub id or folder>``). Options go to the extractor's
frozen config dataclass; options marked ``runtime`` (threads, batch size) do not change
the features and so do not enter the store's key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from emolingua.config import check_value, runtime  # runtime is re-exported: extractors mark threads and batch sizes with it
from emolingua.errors import ConfigError, UnknownNameError
from emolingua.registry import Registry

__all__ = [
    "ExtractorConfig",
    "FeatureExtractor",
    "Features",
    "extractor_names",
    "get_extractor",
    "check_layers",
    "pool_frames",
    "runtime",
]

#: Bump when a change alters the numbers every extractor writes (invalidates stores).
FEATURE_FORMAT = 1


@dataclass(frozen=True)
class ExtractorConfig:
    """Base config: subclasses add their own fields."""

    threads: int | None = runtime(None)


@dataclass
class Features:
    """One clip's features: ``pooled`` is (streams, dim) float32; ``frames`` maps a stream to (T, d) float16."""

    pooled: np.ndarray
    frames: dict[str, np.ndarray] | None = None


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over time, side by side: (T, d) -> (2d,)."""
    frames = np.asarray(frames, dtype=np.float64)
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float32)


_BUILTIN_MODULES = ("emolingua.features.whisper", "emolingua.features.hf", "emolingua.features.acoustic")
_REGISTRY: Registry[FeatureExtractor] = Registry("extractor", group="emolingua.extractors", builtins=_BUILTIN_MODULES)


class FeatureExtractor(ABC):
    """Base class. Set ``name`` (and ``takes_argument`` for ``family:arg`` names) and ``Config``.

    Attributes:
        name: registry name.
        takes_argument: the name is used as ``name:<argument>`` (a hub id or a folder).
        Config: the frozen dataclass of this extractor's options.
        licence_note: shown to users before first use when the backend's licence limits use.
    """

    name: ClassVar[str] = ""
    takes_argument: ClassVar[bool] = False
    Config: ClassVar[type[ExtractorConfig]] = ExtractorConfig
    licence_note: ClassVar[str] = ""
    sample_rate: int = 16000

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):  # a subclass that inherits a name does not replace its parent
            _REGISTRY.register(cls.name, cls)

    def __init__(self, argument: str | None = None, **options: Any) -> None:
        if self.takes_argument and not argument:
            raise ConfigError(f"extractor {self.name!r} needs an argument: use {self.name}:<hub id or folder>")
        if not self.takes_argument and argument:
            raise ConfigError(f"extractor {self.name!r} takes no argument (got {argument!r}): use {self.name}")
        self.argument = argument
        fields = {f.name: f for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ConfigError(f"{self.spec}: unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                              f"known options: {', '.join(sorted(fields))}")  # fmt: skip
        hints = typing.get_type_hints(self.Config)
        checked = {key: check_value(f"{self.spec} option {key}", value, hints[key]) for key, value in options.items()}
        try:
            self.config = self.Config(**checked)
        except ConfigError as exc:  # the config does not know which extractor it belongs to
            raise ConfigError(f"{self.spec} option {exc}") from None
        self.check_options()

    def check_options(self) -> None:
        """Reject options that only the model can judge (e.g. a layer index), without loading weights."""

    # -- identity ---------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name

    def identity(self) -> dict[str, Any]:
        """Everything that determines the numbers: name, argument, non-runtime options, format."""
        opts = {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if not f.metadata.get("runtime")
        }
        return {"extractor": self.name, "argument": self.argument, "options": opts, "format": FEATURE_FORMAT,
                "sample_rate": self.sample_rate, **self.model_identity()}  # fmt: skip

    def model_identity(self) -> dict[str, Any]:
        """Extra identity of loaded weights (e.g. a checksum); subclasses may override."""
        return {}

    @property
    def keeps_frames(self) -> bool:
        """Whether ``extract`` returns frame sequences (``frames=True`` or some ``frame_layers``)."""
        return bool(getattr(self.config, "frames", False) or getattr(self.config, "frame_layers", ()))

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- what subclasses implement ------------------------------------------------------------
    @property
    @abstractmethod
    def streams(self) -> list[str]:
        """Names of the pooled streams, in the order of ``Features.pooled`` rows."""

    @abstractmethod
    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        """Features of each clip (float32 mono at ``sample_rate``); batching is the extractor's business."""


def check_layers(option: str, layers: Sequence[int], n_states: int, *, who: str) -> None:
    """Raise :class:`ConfigError` unless every index is a hidden state ``0 .. n_states - 1``."""
    bad = [i for i in layers if not 0 <= i < n_states]
    if bad:
        raise ConfigError(f"{who} option {option}={list(layers)}: layer {bad[0]} is out of range; "
                          f"valid layers are 0..{n_states - 1} ({n_states} hidden states)")  # fmt: skip


def extractor_names() -> list[str]:
    """Registered names; families taking an argument are shown as ``name:<arg>``."""
    return [f"{n}:<hub id or folder>" if c.takes_argument else n for n, c in _REGISTRY.items()]


def get_extractor(spec: str, **options: Any) -> FeatureExtractor:
    """An extractor from its name, e.g. ``whisper-base``, ``whisper:openai/whisper-small``, ``hf:/models/wavlm``.

    >>> get_extractor("whisper-base", input="fitted")               # doctest: +SKIP
    """
    name, _, argument = spec.partition(":")
    try:
        cls = _REGISTRY.get(name)
    except UnknownNameError:  # the message shows the whole spec and how families take their argument
        raise UnknownNameError(f"unknown extractor {spec!r}; known extractors: {', '.join(extractor_names())}") from None
    return cls(argument or None, **options)
