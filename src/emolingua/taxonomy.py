"""emolingua's one emotion taxonomy, with dimensional priors for each label.

Every corpus reader maps its native codes onto the canonical labels below
(:data:`CANONICAL_LABELS`); :func:`canonical` turns common spellings into them.

Dimensional priors
------------------
Each canonical label carries an (arousal, valence, dominance) prior taken verbatim from

    Saif M. Mohammad. "Obtaining Reliable Human Ratings of Valence, Arousal, and Dominance
    for 20,000 English Words." ACL 2018. -- the NRC VAD Lexicon, version 1.

Scale: all three dimensions lie in 0..1, 0.5 being the midpoint (0 = most negative /
calm / submissive, 1 = most positive / excited / dominant), exactly as the lexicon
publishes them. Corpus ratings on other scales are brought onto it with
:func:`rating_to_unit` (IEMOCAP's 1..5 -> 0..1), so real ratings and priors are comparable.

Which lexicon word a label takes (recorded as ``source_word``): the label word itself,
except the three core labels that name a basic emotion by its adjective -- ``angry``,
``happy``, ``sad`` -- which take the emotion's name, ``anger``, ``happiness``,
``sadness``, so that all six basic emotions (anger, happiness, sadness, fear, disgust,
surprise) are rated through their names. No value is interpolated or edited:
:data:`NRC_VAD_EXCERPT` holds every lexicon entry the module uses, copied from the
lexicon file (``NRC-VAD-Lexicon.txt``), and each prior equals its source word's entry.

Intensity
---------
:data:`INTENSITY_SHIFT` moves a prior's arousal (activation) by -0.1 / 0 / +0.1 for low /
normal / high intensity, clipped to [0, 1]. This shift is a design choice of emolingua,
not part of the NRC lexicon, and it applies to priors only, never to real ratings.
:func:`normalise_intensity` maps the corpora's intensity spellings onto those levels.

>>> prior("angry")
(0.865, 0.167)
>>> canonical("Sadness")
'sad'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_LABELS",
    "CORE_LABELS",
    "EXTRA_LABELS",
    "INTENSITY_LEVELS",
    "INTENSITY_SHIFT",
    "NRC_VAD_EXCERPT",
    "PRIORS",
    "SOURCE",
    "EmotionPrior",
    "canonical",
    "normalise_intensity",
    "prior",
    "rating_to_unit",
    "taxonomy_table",
]

SOURCE = "NRC VAD Lexicon v1 (Mohammad, ACL 2018)"

# (valence, arousal, dominance) -- the lexicon's own column order -- for every word used
# below, copied from NRC-VAD-Lexicon.txt (v1, 20,000 words, values 0..1).
NRC_VAD_EXCERPT: Mapping[str, tuple[float, float, float]] = MappingProxyType({
    "amused": (0.942, 0.847, 0.596),
    "amusement": (0.929, 0.837, 0.803),
    "anger": (0.167, 0.865, 0.657),
    "angry": (0.122, 0.830, 0.604),
    "anxiety": (0.146, 0.865, 0.342),
    "anxious": (0.281, 0.875, 0.434),
    "apologetic": (0.479, 0.461, 0.571),
    "assertive": (0.719, 0.412, 0.770),
    "bored": (0.153, 0.167, 0.196),
    "boredom": (0.167, 0.139, 0.255),
    "calm": (0.875, 0.100, 0.282),
    "calmness": (0.934, 0.105, 0.394),
    "concern": (0.250, 0.734, 0.463),
    "concerned": (0.292, 0.698, 0.350),
    "contempt": (0.206, 0.635, 0.396),
    "disgust": (0.052, 0.775, 0.317),
    "disgusted": (0.051, 0.773, 0.274),
    "encouraging": (0.823, 0.583, 0.755),
    "enthusiastic": (0.885, 0.868, 0.848),
    "excited": (0.908, 0.931, 0.709),
    "excitement": (0.896, 0.684, 0.731),
    "fear": (0.073, 0.840, 0.293),
    "fearful": (0.083, 0.482, 0.278),
    "frustrated": (0.080, 0.651, 0.255),
    "frustration": (0.060, 0.730, 0.280),
    "happiness": (0.960, 0.732, 0.850),
    "happy": (1.000, 0.735, 0.772),
    "joy": (0.980, 0.824, 0.794),
    "neutral": (0.469, 0.184, 0.357),
    "neutrality": (0.469, 0.205, 0.434),
    "pain": (0.012, 0.765, 0.395),
    "pleasure": (0.939, 0.740, 0.682),
    "sad": (0.225, 0.333, 0.149),
    "sadness": (0.052, 0.288, 0.164),
    "sleepy": (0.604, 0.125, 0.250),
    "surprise": (0.875, 0.875, 0.562),
    "surprised": (0.784, 0.855, 0.539),
})  # fmt: skip

# canonical label -> the lexicon word its prior is read from
_SOURCE_WORDS: dict[str, str] = {
    # the nine core labels used by the corpus readers
    "neutral": "neutral",
    "calm": "calm",
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "fear": "fear",
    "disgust": "disgust",
    "surprise": "surprise",
    "boredom": "boredom",
    # further labels (IEMOCAP, JL-corpus primary and secondary emotions, ...)
    "excited": "excited",
    "frustrated": "frustrated",
    "anxious": "anxious",
    "contempt": "contempt",
    "concerned": "concerned",
    "apologetic": "apologetic",
    "assertive": "assertive",
    "encouraging": "encouraging",
    "enthusiastic": "enthusiastic",
    "amused": "amused",
    "sleepy": "sleepy",
    "pain": "pain",
    "pleasure": "pleasure",
}

CORE_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
)  # fmt: skip
EXTRA_LABELS: tuple[str, ...] = tuple(k for k in _SOURCE_WORDS if k not in CORE_LABELS)
CANONICAL_LABELS: tuple[str, ...] = CORE_LABELS + EXTRA_LABELS


@dataclass(frozen=True)
class EmotionPrior:
    """Dimensional prior of one canonical label, on the lexicon's 0..1 scale.

    >>> PRIORS["sad"].source_word
    'sadness'
    """

    label: str
    arousal: float
    valence: float
    dominance: float
    source_word: str


def _make_prior(label: str, word: str) -> EmotionPrior:
    valence, arousal, dominance = NRC_VAD_EXCERPT[word]
    return EmotionPrior(label=label, arousal=arousal, valence=valence, dominance=dominance, source_word=word)


PRIORS: Mapping[str, EmotionPrior] = MappingProxyType(
    {label: _make_prior(label, _SOURCE_WORDS[label]) for label in CANONICAL_LABELS}
)

# -- intensity ---------------------------------------------------------------------------

INTENSITY_LEVELS: tuple[str, ...] = ("low", "normal", "high")

# emolingua's design choice (not from the lexicon): arousal shift per intensity level.
INTENSITY_SHIFT: Mapping[str, float] = MappingProxyType({"low": -0.1, "normal": 0.0, "high": 0.1})

_INTENSITY_ALIASES: dict[str, str | None] = {
    # low: English, CREMA-D "LO", French "faible", BAVED level "0"
    "low": "low", "lo": "low", "weak": "low", "faible": "low", "0": "low",
    # normal: CREMA-D "MD", RAVDESS "01" (normal), BAVED level "1", French "moyen"/"normale"
    "normal": "normal", "normale": "normal", "medium": "normal", "md": "normal", "mid": "normal",
    "moyen": "normal", "moyenne": "normal", "01": "normal", "1": "normal",
    # high: CREMA-D "HI", RAVDESS "02" (strong), BAVED level "2", French "fort"/"forte"
    "high": "high", "hi": "high", "strong": "high", "fort": "high", "forte": "high",
    "02": "high", "2": "high",
    # unspecified: CREMA-D "XX"
    "": None, "xx": None, "x": None, "unspecified": None, "unknown": None, "none": None,
}  # fmt: skip


def normalise_intensity(raw: str | None) -> str | None:
    """One of ``"low"``, ``"normal"``, ``"high"``, or ``None`` when unspecified.

    Accepted spellings (case-insensitive): low / lo / weak / faible / 0 (BAVED);
    normal / medium / md / mid / moyen / 01 (RAVDESS) / 1 (BAVED);
    high / hi / strong / fort / 02 (RAVDESS) / 2 (BAVED);
    ``None``, "" / xx (CREMA-D) / unspecified / unknown -> ``None``.
    Anything else raises ``ValueError``.

    >>> normalise_intensity("HI"), normalise_intensity("01"), normalise_intensity("XX")
    ('high', 'normal', None)
    """
    if raw is None:
        return None
    key = str(raw).strip().lower()
    if key not in _INTENSITY_ALIASES:
        known = ", ".join(sorted(k for k in _INTENSITY_ALIASES if k))
        raise ValueError(f"unknown intensity {raw!r}; accepted: {known} (or empty)")
    return _INTENSITY_ALIASES[key]


# -- labels ------------------------------------------------------------------------------

_SYNONYMS: dict[str, str] = {
    "neutrality": "neutral", "neu": "neutral",
    "calmness": "calm",
    "happiness": "happy", "joy": "happy", "joyful": "happy", "hap": "happy",
    "sadness": "sad",
    "anger": "angry", "ang": "angry",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear",
    "disgusted": "disgust", "dis": "disgust",
    "surprised": "surprise", "ps": "surprise", "pleasant surprise": "surprise", "sur": "surprise",
    "bored": "boredom",
    "excitement": "excited", "exc": "excited",
    "frustration": "frustrated", "fru": "frustrated",
    "anxiety": "anxious",
    "contemptuous": "contempt",
    "concern": "concerned",
    "enthusiasm": "enthusiastic",
    "amusement": "amused",
    "sleepiness": "sleepy",
}  # fmt: skip


def canonical(label: str) -> str:
    """The canonical label for a common spelling; ``KeyError`` for an unknown one.

    Case, surrounding blanks, ``_`` and ``-`` are ignored; synonyms include noun/adjective
    pairs (anger/angry, sadness/sad, bored/boredom ...), ``ps`` (TESS "pleasant
    surprise") and IEMOCAP's three-letter codes (ang, hap, exc, fru ...).

    >>> canonical("Anger"), canonical("ps"), canonical("pleasant_surprise")
    ('angry', 'surprise', 'surprise')
    """
    key = " ".join(str(label).strip().lower().replace("_", " ").replace("-", " ").split())
    if key in PRIORS:
        return key
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    raise KeyError(f"unknown emotion label {label!r}; known labels: {', '.join(CANONICAL_LABELS)}")


# -- priors ------------------------------------------------------------------------------


def prior(label: str, *, intensity: str | None = None) -> tuple[float, float]:
    """``(arousal, valence)`` prior of a label, arousal shifted by intensity.

    Unknown or empty labels give ``(nan, nan)`` (nothing is raised); an unrecognised
    intensity spelling raises ``ValueError`` (see :func:`normalise_intensity`).

    >>> prior("sad")
    (0.288, 0.052)
    >>> prior("angry", intensity="high")
    (0.965, 0.167)
    """
    level = normalise_intensity(intensity)
    try:
        p = PRIORS[canonical(label)]
    except KeyError:
        return (math.nan, math.nan)
    arousal = p.arousal
    if level is not None:
        arousal = round(min(1.0, max(0.0, arousal + INTENSITY_SHIFT[level])), 6)
    return (arousal, p.valence)


def rating_to_unit(value: float | np.ndarray, *, low: float = 1.0, high: float = 5.0) -> float | np.ndarray:
    """Map a rating on ``low..high`` linearly onto 0..1 (the priors' scale).

    Values outside ``low..high`` land outside 0..1 (nothing is clipped); NaN stays NaN.

    >>> rating_to_unit(1), rating_to_unit(3), rating_to_unit(5)
    (0.0, 0.5, 1.0)
    """
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    out = (np.asarray(value, dtype=float) - low) / (high - low)
    return float(out) if out.ndim == 0 else out


def taxonomy_table() -> pd.DataFrame:
    """One row per canonical label: label, arousal, valence, dominance, source_word, source.

    >>> t = taxonomy_table()
    >>> print(t.loc[t["label"] == "sad", ["label", "arousal", "valence", "source_word"]].to_string(index=False))
    label  arousal  valence source_word
      sad    0.288    0.052     sadness
    """
    rows = [
        {
            "label": p.label,
            "arousal": p.arousal,
            "valence": p.valence,
            "dominance": p.dominance,
            "source_word": p.source_word,
            "source": SOURCE,
        }
        for p in PRIORS.values()
    ]
    return pd.DataFrame(rows, columns=["label", "arousal", "valence", "dominance", "source_word", "source"])
