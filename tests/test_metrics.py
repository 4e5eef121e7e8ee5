"""Tests for emolingua.metrics: hand-computed values, agreement with scikit-learn, bootstrap behaviour."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, r2_score

from emolingua.metrics import (
    ClassificationResult,
    RegressionResult,
    adjusted_r2,
    bootstrap_ua_ci,
    ccc,
    confusion,
    macro_f1,
    pearson_r,
    r_squared,
    score_classification,
    score_regression,
    unweighted_accuracy,
    weighted_accuracy,
)

# --------------------------------------------------------------------------- a 3-class, 10-sample case
#
#   true:  a  a  a  a  b  b  b  c  c  c        support a=4, b=3, c=3
#   pred:  a  a  a  b  b  b  c  c  a  b
#
#   confusion (rows true, cols pred):   a  b  c
#                                  a  [ 3, 1, 0 ]
#                                  b  [ 0, 2, 1 ]
#                                  c  [ 1, 1, 1 ]
#   recalls: a 3/4, b 2/3, c 1/3  -> UA = (3/4 + 2/3 + 1/3) / 3 = 1.75 / 3 = 7/12
#   WA = (3 + 2 + 1) / 10 = 0.6
#   predicted counts (column sums): a 4, b 4, c 2
#   F1 = 2TP / (support + predicted):  a 6/8 = 3/4,  b 4/7,  c 2/5
#   macro F1 = (105/140 + 80/140 + 56/140) / 3 = 241/420
TRUE = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
PRED = ["a", "a", "a", "b", "b", "b", "c", "c", "a", "b"]
LABELS = ["a", "b", "c"]


def test_hand_computed_classification():
    assert unweighted_accuracy(TRUE, PRED) == pytest.approx(7 / 12)
    assert weighted_accuracy(TRUE, PRED) == pytest.approx(0.6)
    assert macro_f1(TRUE, PRED) == pytest.approx(241 / 420)
    np.testing.assert_array_equal(confusion(TRUE, PRED, labels=LABELS), [[3, 1, 0], [0, 2, 1], [1, 1, 1]])
    # the label order decides rows and columns
    np.testing.assert_array_equal(confusion(TRUE, PRED, labels=["c", "b", "a"]), [[1, 1, 1], [1, 2, 0], [0, 1, 3]])


def test_numeric_labels_and_numpy_inputs_give_the_same():
    code = {"a": 0, "b": 1, "c": 2}
    t, p = np.array([code[v] for v in TRUE]), np.array([code[v] for v in PRED])
    assert unweighted_accuracy(t, p) == pytest.approx(7 / 12)
    assert macro_f1(t, p, labels=[0, 1, 2]) == pytest.approx(241 / 420)
    assert unweighted_accuracy(np.array(TRUE), np.array(PRED)) == pytest.approx(7 / 12)


def test_class_absent_from_truth_is_not_averaged_in_ua():
    # an extra label "d" that nobody has and nobody predicts changes nothing
    assert unweighted_accuracy(TRUE, PRED, labels=["a", "b", "c", "d"]) == pytest.approx(7 / 12)
    assert macro_f1(TRUE, PRED, labels=["a", "b", "c", "d"]) == pytest.approx(241 / 420)
    assert confusion(TRUE, PRED, labels=["a", "b", "c", "d"]).shape == (4, 4)
    # true: a a b b ; pred: a c b b  -> "c" is only predicted
    #   UA over present {a, b} = (1/2 + 2/2) / 2 = 0.75
    #   F1: a 2*1/(2+1) = 2/3, b 2*2/(2+2) = 1, c 0/(0+1) = 0 -> macro (2/3 + 1 + 0) / 3 = 5/9
    t, p = ["a", "a", "b", "b"], ["a", "c", "b", "b"]
    assert unweighted_accuracy(t, p) == pytest.approx(0.75)
    assert macro_f1(t, p) == pytest.approx(5 / 9)
    assert weighted_accuracy(t, p) == pytest.approx(0.75)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_agrees_with_sklearn():
    rng = np.random.default_rng(3)
    names = np.array(["angry", "happy", "neutral", "sad", "fear"])
    t = names[rng.choice(5, 500, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    p = np.where(rng.random(500) < 0.55, t, names[rng.integers(0, 4, 500)])   # "fear" rarely predicted
    assert unweighted_accuracy(t, p) == pytest.approx(balanced_accuracy_score(t, p))
    assert weighted_accuracy(t, p) == pytest.approx(accuracy_score(t, p))
    assert macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    labels = list(names)
    np.testing.assert_array_equal(confusion(t, p, labels=labels), confusion_matrix(t, p, labels=labels))
    # predicted-only class: same as sklearn (which warns about it)
    t2, p2 = ["a", "a", "b", "b"], ["a", "c", "b", "b"]
    assert unweighted_accuracy(t2, p2) == pytest.approx(balanced_accuracy_score(t2, p2))
    assert macro_f1(t2, p2) == pytest.approx(f1_score(t2, p2, average="macro", zero_division=0))


def test_classification_input_errors():
    with pytest.raises(ValueError, match="empty"):
        unweighted_accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ua_ci(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="differ in length"):
        weighted_accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="not in labels"):
        confusion(TRUE, PRED, labels=["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        confusion(TRUE, PRED, labels=["a", "b", "b", "c"])
    with pytest.raises(ValueError, match="missing"):
        macro_f1(["a", None], ["a", "a"])
    with pytest.raises(ValueError, match="one-dimensional"):
        unweighted_accuracy(np.zeros((2, 2)), np.zeros((2, 2)))


# --------------------------------------------------------------------------- bootstrap


def _simulate(rng: np.random.Generator, n: int, accuracy: np.ndarray,
              prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A classifier right on class c with probability accuracy[c], otherwise a uniformly wrong class."""
    k = len(accuracy)
    t = rng.choice(k, n, p=prior)
    right = rng.random(n) < accuracy[t]
    return t, np.where(right, t, (t + rng.integers(1, k, n)) % k)


def test_bootstrap_is_deterministic_with_a_seed():
    rng = np.random.default_rng(0)
    t, p = _simulate(rng, 300, np.array([0.8, 0.6, 0.5]), np.array([0.5, 0.3, 0.2]))
    a = bootstrap_ua_ci(t, p, seed=7)
    assert a == bootstrap_ua_ci(t, p, seed=7)
    assert a != bootstrap_ua_ci(t, p, seed=8)
    low, high = a
    assert low < unweighted_accuracy(t, p) < high
    spk = np.arange(300) % 12
    assert bootstrap_ua_ci(t, p, groups=spk, seed=7) == bootstrap_ua_ci(t, p, groups=spk, seed=7)


def test_a_group_per_utterance_is_the_plain_bootstrap():
    rng = np.random.default_rng(1)
    t, p = _simulate(rng, 200, np.array([0.7, 0.5]), np.array([0.6, 0.4]))
    assert bootstrap_ua_ci(t, p, seed=3) == bootstrap_ua_ci(t, p, seed=3, groups=[f"u{i}" for i in range(200)])


def test_bootstrap_coverage_matches_the_level():
    # true per-class accuracies 0.8 / 0.6 / 0.5 -> true UA = 1.9 / 3 whatever the class priors
    accuracy, prior = np.array([0.8, 0.6, 0.5]), np.array([0.5, 0.3, 0.2])
    true_ua = accuracy.mean()
    rng = np.random.default_rng(2024)
    covered = 0
    for i in range(200):
        t, p = _simulate(rng, 200, accuracy, prior)
        low, high = bootstrap_ua_ci(t, p, n_boot=1000, level=0.95, seed=i)
        covered += low <= true_ua <= high
    assert 0.90 <= covered / 200 <= 0.99


def _speaker_data(rng: np.random.Generator, n_speakers: int,
                  per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 classes, accuracies 0.7 / 0.6 / 0.5 shifted by +-0.2 per speaker: errors correlate within speakers.
    True UA = 0.6 (the shifts average to 0 over the population of speakers)."""
    accuracy = np.array([0.7, 0.6, 0.5])
    shift = rng.choice([-0.2, 0.2], n_speakers)
    speaker = np.repeat(np.arange(n_speakers), 3 * per_class)
    t = np.tile(np.repeat(np.arange(3), per_class), n_speakers)
    right = rng.random(len(t)) < accuracy[t] + shift[speaker]
    return t, np.where(right, t, (t + rng.integers(1, 3, len(t))) % 3), speaker


def test_grouped_ci_is_wider_when_errors_correlate_within_groups():
    rng = np.random.default_rng(5)
    t, p, speaker = _speaker_data(rng, 30, 10)
    plain = bootstrap_ua_ci(t, p, seed=0)
    grouped = bootstrap_ua_ci(t, p, seed=0, groups=speaker)
    assert grouped[1] - grouped[0] > 1.5 * (plain[1] - plain[0])
    # and it is the grouped one that keeps its promise over repeated experiments
    covered = {"plain": 0, "grouped": 0}
    for i in range(100):
        t, p, speaker = _speaker_data(rng, 30, 10)
        for kind, groups in (("plain", None), ("grouped", speaker)):
            low, high = bootstrap_ua_ci(t, p, n_boot=500, seed=i, groups=groups)
            covered[kind] += low <= 0.6 <= high
    assert covered["grouped"] >= 85
    assert covered["plain"] <= covered["grouped"] - 15


def test_bootstrap_argument_errors():
    t, p = TRUE, PRED
    with pytest.raises(ValueError, match="level"):
        bootstrap_ua_ci(t, p, level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ua_ci(t, p, n_boot=0)
    with pytest.raises(ValueError, match="entries"):
        bootstrap_ua_ci(t, p, groups=["s1"] * 3)
    with pytest.raises(ValueError, match="single group"):
        bootstrap_ua_ci(t, p, groups=["s1"] * 10)
    with pytest.raises(ValueError, match="missing"):
        bootstrap_ua_ci(t, p, groups=["s1"] * 9 + [None])


def test_score_classification():
    speakers = ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4", "s5", "s5"]
    r = score_classification(TRUE, PRED, protocol="loso", speaker_independent=True, groups=speakers, n_boot=200)
    assert isinstance(r, ClassificationResult)
    assert r.ua == pytest.approx(7 / 12) and r.wa == pytest.approx(0.6) and r.macro_f1 == pytest.approx(241 / 420)
    assert r.confusion == [[3, 1, 0], [0, 2, 1], [1, 1, 1]]
    assert r.labels == LABELS and r.n == 10 and r.ci_groups == 5 and r.ci_level == 0.95
    assert r.ua_ci == bootstrap_ua_ci(TRUE, PRED, groups=speakers, n_boot=200)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["protocol"] == "loso" and d["speaker_independent"] is True and d["ua_ci"] == list(r.ua_ci)
    with pytest.raises(AttributeError):
        r.ua = 1.0   # frozen
    plain = score_classification(TRUE, PRED, labels=["c", "b", "a"], protocol="random:70/10/20",
                                 speaker_independent=False)
    assert plain.labels == ["c", "b", "a"] and plain.confusion[0] == [1, 1, 1] and plain.ci_groups is None


# --------------------------------------------------------------------------- regression
#
#   y = [1, 2, 3, 4]:  mean 2.5, population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
Y = [1.0, 2.0, 3.0, 4.0]


def test_hand_computed_regression():
    # shifted by +1: cov = 1.25, var_p = 1.25, (2.5 - 3.5)^2 = 1
    #   CCC = 2 * 1.25 / (1.25 + 1.25 + 1) = 2.5 / 3.5 = 5/7 ; r = 1
    assert ccc(Y, [2, 3, 4, 5]) == pytest.approx(5 / 7)
    assert pearson_r(Y, [2, 3, 4, 5]) == pytest.approx(1.0)
    # scaled by 2: mean 5, var_p = 5, cov = 2 * 1.25 = 2.5
    #   CCC = 2 * 2.5 / (1.25 + 5 + (2.5 - 5)^2) = 5 / 12.5 = 0.4
    assert ccc(Y, [2, 4, 6, 8]) == pytest.approx(0.4)
    # pred = [1, 3, 2, 4]: deviations (-1.5, 0.5, -0.5, 1.5) vs (-1.5, -0.5, 0.5, 1.5)
    #   cov = (2.25 - 0.25 - 0.25 + 2.25) / 4 = 1 ; r = 1 / sqrt(1.25 * 1.25) = 0.8
    #   CCC = 2 * 1 / (1.25 + 1.25 + 0) = 0.8
    #   SS_res = 0 + 1 + 1 + 0 = 2, SS_tot = 4 * 1.25 = 5 -> R^2 = 1 - 2/5 = 0.6
    #   adjusted, n = 4: p = 1 -> 1 - 0.4 * 3/2 = 0.4 ; p = 2 -> 1 - 0.4 * 3/1 = -0.2 ; p = 0 -> R^2
    pred = [1, 3, 2, 4]
    assert pearson_r(Y, pred) == pytest.approx(0.8)
    assert ccc(Y, pred) == pytest.approx(0.8)
    assert r_squared(Y, pred) == pytest.approx(0.6)
    assert adjusted_r2(Y, pred, n_predictors=1) == pytest.approx(0.4)
    assert adjusted_r2(Y, pred, n_predictors=2) == pytest.approx(-0.2)
    assert adjusted_r2(Y, pred, n_predictors=0) == pytest.approx(0.6)
    assert ccc(Y, Y) == pytest.approx(1.0) and ccc(Y, [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_regression_agrees_with_numpy_and_sklearn():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    p = 0.6 * t + rng.normal(scale=0.7, size=200) + 0.3
    assert pearson_r(t, p) == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert r_squared(t, p) == pytest.approx(r2_score(t, p))
    # CCC = r * 2 s_t s_p / (s_t^2 + s_p^2 + (m_t - m_p)^2), population s
    st, sp = t.std(), p.std()
    expected = np.corrcoef(t, p)[0, 1] * 2 * st * sp / (st**2 + sp**2 + (t.mean() - p.mean()) ** 2)
    assert ccc(t, p) == pytest.approx(expected)


def test_constant_inputs():
    # constant prediction: no covariance, denominator 1.25 + 0 + (2.5 - 3)^2 > 0 -> CCC = 0; r undefined -> nan
    assert ccc(Y, [3, 3, 3, 3]) == 0.0
    assert math.isnan(pearson_r(Y, [3, 3, 3, 3]))
    assert ccc([0.1] * 50, [0.1] * 49 + [0.2]) == 0.0          # constant truth, varying prediction
    assert ccc([2, 2, 2], [5, 5, 5]) == 0.0                    # two different constants
    assert math.isnan(ccc([2, 2, 2], [2, 2, 2]))               # 0 / 0
    assert math.isnan(r_squared([2, 2, 2], [1, 2, 3]))
    assert math.isnan(ccc([0.1] * 7, [0.1] * 7))               # float noise in np.var never leaks through


def test_regression_input_errors():
    with pytest.raises(ValueError, match="empty"):
        ccc([], [])
    with pytest.raises(ValueError, match="empty"):
        score_regression([], [], protocol="loso", speaker_independent=True)
    with pytest.raises(ValueError, match="finite"):
        pearson_r([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="n > n_predictors"):
        adjusted_r2(Y, [1, 3, 2, 4], n_predictors=3)
    with pytest.raises(ValueError, match="non-negative"):
        adjusted_r2(Y, [1, 3, 2, 4], n_predictors=-1)
    with pytest.raises(ValueError, match="numbers"):
        ccc(["a", "b"], [1, 2])


def test_score_regression():
    r = score_regression(Y, [1, 3, 2, 4], protocol="speaker-kfold:5", speaker_independent=True, n_predictors=1)
    assert isinstance(r, RegressionResult)
    assert (r.ccc, r.pearson, r.r2, r.adjusted_r2, r.n) == pytest.approx((0.8, 0.8, 0.6, 0.4, 4))
    assert r.to_dict()["protocol"] == "speaker-kfold:5"
    flat = score_regression(Y, [3, 3, 3, 3], protocol="loso", speaker_independent=True)
    assert flat.adjusted_r2 is None and flat.ccc == 0.0
    d = flat.to_dict()
    assert d["pearson"] is None                                # nan -> None
    json.dumps(d, allow_nan=False)
