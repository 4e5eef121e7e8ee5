"""Tests for emolingua.taxonomy: priors from the NRC VAD Lexicon v1, labels, intensity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emolingua import taxonomy as tx
from emolingua.taxonomy import (
    CANONICAL_LABELS,
    CORE_LABELS,
    NRC_VAD_EXCERPT,
    PRIORS,
    canonical,
    normalise_intensity,
    prior,
    rating_to_unit,
    taxonomy_table,
)

CORE = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom")


def test_table_covers_core_labels_in_unit_range():
    table = taxonomy_table()
    assert list(table.columns) == ["label", "arousal", "valence", "dominance", "source_word", "source"]
    assert set(CORE) <= set(table["label"])
    assert tuple(CORE_LABELS) == CORE
    assert list(table["label"]) == list(CANONICAL_LABELS)
    assert table["label"].is_unique
    for col in ("arousal", "valence", "dominance"):
        assert table[col].between(0.0, 1.0).all(), col
    assert table["source"].str.contains("NRC VAD").all()


@pytest.mark.parametrize(
    ("word", "vad"),
    [
        ("anger", (0.167, 0.865, 0.657)),
        ("disgust", (0.052, 0.775, 0.317)),
        ("fear", (0.073, 0.840, 0.293)),
        ("sadness", (0.052, 0.288, 0.164)),
    ],
)
def test_known_v1_values(word, vad):
    assert NRC_VAD_EXCERPT[word] == vad


@pytest.mark.parametrize(
    ("label", "word"), [("angry", "anger"), ("disgust", "disgust"), ("fear", "fear"), ("sad", "sadness")]
)
def test_known_values_reach_the_priors(label, word):
    v, a, d = NRC_VAD_EXCERPT[word]
    p = PRIORS[label]
    assert p.source_word == word
    assert (p.arousal, p.valence, p.dominance) == (a, v, d)
    assert prior(label) == (a, v)


def test_every_prior_is_its_source_words_entry():
    for label, p in PRIORS.items():
        assert p.label == label
        assert NRC_VAD_EXCERPT[p.source_word] == (p.valence, p.arousal, p.dominance)


def test_priors_are_frozen():
    with pytest.raises(AttributeError):
        PRIORS["happy"].arousal = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        PRIORS["new"] = PRIORS["happy"]  # type: ignore[index]


def test_ordering_sanity():
    assert PRIORS["angry"].arousal > PRIORS["sad"].arousal
    assert PRIORS["happy"].valence > PRIORS["sad"].valence
    assert PRIORS["calm"].arousal < PRIORS["angry"].arousal
    assert PRIORS["calm"].valence > PRIORS["angry"].valence
    assert PRIORS["boredom"].arousal < PRIORS["surprise"].arousal
    assert PRIORS["neutral"].arousal < PRIORS["fear"].arousal


def test_unknown_or_empty_label_gives_nan():
    for label in ("", "  ", "xyzzy", "oth"):
        a, v = prior(label)
        assert math.isnan(a) and math.isnan(v)
    a, v = prior("xyzzy", intensity="high")
    assert math.isnan(a) and math.isnan(v)


def test_prior_accepts_synonyms():
    assert prior("Anger") == prior("angry")
    assert prior("sadness") == prior("sad")


def test_intensity_shift_moves_arousal_only():
    a, v = prior("sad")
    assert prior("sad", intensity="normal") == (a, v)
    assert prior("sad", intensity=None) == (a, v)
    assert prior("sad", intensity="XX") == (a, v)
    lo, hi = prior("sad", intensity="low"), prior("sad", intensity="high")
    assert lo[0] == pytest.approx(a - 0.1)
    assert hi[0] == pytest.approx(a + 0.1)
    assert lo[1] == hi[1] == v


def test_intensity_shift_is_clipped():
    # "calm" arousal 0.100 -> low gives 0.0; "excited" 0.931 -> high gives 1.0 (not 1.031)
    assert prior("calm", intensity="low")[0] == pytest.approx(0.0)
    assert prior("excited", intensity="high")[0] == 1.0
    assert prior("sleepy", intensity="weak")[0] == pytest.approx(0.025)
    for label in CANONICAL_LABELS:
        for level in ("low", "high"):
            a, _ = prior(label, intensity=level)
            assert 0.0 <= a <= 1.0


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("low", "low"), ("LO", "low"), ("weak", "low"), ("faible", "low"), ("0", "low"),
        ("normal", "normal"), ("MD", "normal"), ("medium", "normal"), ("01", "normal"), ("1", "normal"),
        ("high", "high"), ("HI", "high"), ("strong", "high"), ("Fort", "high"), ("02", "high"), ("2", "high"),
        ("XX", None), ("", None), (None, None), ("unspecified", None), (" hi ", "high"),
    ],
)  # fmt: skip
def test_normalise_intensity(raw, level):
    assert normalise_intensity(raw) == level


def test_normalise_intensity_rejects_unknown():
    with pytest.raises(ValueError, match="unknown intensity"):
        normalise_intensity("extreme")
    with pytest.raises(ValueError):
        prior("happy", intensity="3")


def test_intensity_shift_table():
    assert dict(tx.INTENSITY_SHIFT) == {"low": -0.1, "normal": 0.0, "high": 0.1}


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("anger", "angry"), ("angry", "angry"), ("ANGRY", "angry"), ("ang", "angry"),
        ("happiness", "happy"), ("joy", "happy"), ("happy", "happy"),
        ("sadness", "sad"), ("sad", "sad"),
        ("fearful", "fear"), ("fear", "fear"),
        ("surprised", "surprise"), ("ps", "surprise"), ("pleasant_surprise", "surprise"),
        ("neutrality", "neutral"), (" Neutral ", "neutral"),
        ("disgusted", "disgust"), ("bored", "boredom"), ("boredom", "boredom"),
        ("frustration", "frustrated"), ("excitement", "excited"), ("anxiety", "anxious"),
        ("concern", "concerned"), ("calm", "calm"),
    ],
)  # fmt: skip
def test_canonical_synonyms(raw, label):
    assert canonical(raw) == label


def test_canonical_is_identity_on_canonical_labels():
    for label in CANONICAL_LABELS:
        assert canonical(label) == label


def test_canonical_unknown_lists_known_labels():
    with pytest.raises(KeyError) as err:
        canonical("xyzzy")
    message = str(err.value)
    assert "xyzzy" in message
    for label in CORE:
        assert label in message
    with pytest.raises(KeyError):
        canonical("")


def test_rating_to_unit():
    assert rating_to_unit(1) == 0.0
    assert rating_to_unit(5) == 1.0
    assert rating_to_unit(3) == 0.5
    assert rating_to_unit(4.0, low=0.0, high=8.0) == 0.5
    assert isinstance(rating_to_unit(2), float)
    np.testing.assert_allclose(rating_to_unit(np.array([1.0, 2.0, np.nan])), [0.0, 0.25, np.nan])
    with pytest.raises(ValueError):
        rating_to_unit(3, low=5.0, high=1.0)
