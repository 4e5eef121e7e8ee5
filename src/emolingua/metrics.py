"""Scores for emotion recognition: classification (UA, WA, macro F1, bootstrap CI) and regression.

>>> from emolingua.metrics import score_classification, score_regression
>>> r = score_classification(["a", "b", "b"], ["a", "b", "a"], protocol="loso", speaker_independent=True)
>>> round(r.ua, 3), round(r.wa, 3)
(0.75, 0.667)
>>> score_regression([1, 2, 3, 4], [1, 3, 2, 4], protocol="loso", speaker_independent=True).ccc
0.8

Conventions
-----------
*UA* (unweighted accuracy) is the mean per-class recall over the classes that occur in
``y_true`` -- scikit-learn's ``balanced_accuracy_score``. A class absent from ``y_true`` has no
recall and is not averaged (predicting it is still an error for the true class). *WA*
(weighted accuracy) is plain accuracy. *Macro F1* averages the per-class F1 over the labels;
a label that occurs in neither ``y_true`` nor ``y_pred`` has F1 = 0/0 and is skipped (scikit-
learn would count it as 0), a label only predicted scores 0.

``labels`` fixes the class order (rows / columns of the confusion matrix). When given it must
cover every value of ``y_true`` and ``y_pred``: an unknown value raises ``ValueError`` rather
than being dropped silently. When omitted it is the sorted union of both. Labels may be
strings or numbers.

Degenerate regression inputs: :func:`ccc` of a constant prediction is **0** (it follows from
the formula: no covariance, and the denominator stays positive while ``y_true`` varies or the
means differ -- the convention of the AVEC challenges); it is ``nan`` only when both vectors
are the same constant (0/0). :func:`pearson_r` is ``nan`` when either vector is constant (the
correlation is undefined; 0 would read as "no linear relation"). :func:`r_squared` is ``nan``
when ``y_true`` is constant. No warning is emitted in these cases.

Empty input raises ``ValueError`` everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ClassificationResult",
    "RegressionResult",
    "adjusted_r2",
    "bootstrap_ua_ci",
    "ccc",
    "confusion",
    "macro_f1",
    "pearson_r",
    "r_squared",
    "score_classification",
    "score_regression",
    "unweighted_accuracy",
    "weighted_accuracy",
]

ArrayLike = Sequence[Any] | np.ndarray | pd.Series

#: Elements of one resample-by-group weight matrix built at a time (bounds memory).
_BOOT_CHUNK = 1_000_000


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class _Coded:
    """``y_true`` / ``y_pred`` as integer codes into ``labels``."""

    true: np.ndarray
    pred: np.ndarray
    labels: list


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=object if isinstance(values, (list, tuple)) else None)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} != {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: nothing to score")


def _encode(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[Any] | None) -> _Coded:
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_pair(t, p)
    for name, values in (("y_true", t), ("y_pred", p)):
        if pd.isna(values).any():
            raise ValueError(f"{name} contains missing values (None / NaN)")
    if labels is None:
        try:
            cats = sorted(set(t.tolist()) | set(p.tolist()))
        except TypeError as error:
            raise ValueError(f"labels of mixed types cannot be ordered; pass labels= explicitly ({error})") from None
    else:
        cats = np.asarray(labels, dtype=object).tolist()
        if len(cats) == 0:
            raise ValueError("labels is empty")
        if len(set(cats)) != len(cats):
            raise ValueError(f"labels has duplicates: {cats}")
    index = pd.Index(cats, dtype=object)
    codes = []
    for name, values in (("y_true", t), ("y_pred", p)):
        code = index.get_indexer(values.astype(object)).astype(np.int64)
        if (code < 0).any():
            unknown = sorted({str(v) for v in values[code < 0].tolist()})
            raise ValueError(f"{name} has values not in labels {cats}: {unknown[:10]}")
        codes.append(code)
    return _Coded(codes[0], codes[1], cats)


def _counts(coded: _Coded) -> np.ndarray:
    k = len(coded.labels)
    return np.bincount(coded.true * k + coded.pred, minlength=k * k).reshape(k, k)


def _ua(matrix: np.ndarray) -> float:
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def _macro_f1(matrix: np.ndarray) -> float:
    tp = np.diag(matrix)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted count)
    denom = matrix.sum(axis=1) + matrix.sum(axis=0)
    seen = denom > 0
    return float(np.mean(2 * tp[seen] / denom[seen]))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[Any]) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, both in ``labels`` order.

    >>> confusion(["a", "b", "b"], ["a", "a", "b"], labels=["a", "b"]).tolist()
    [[1, 0], [1, 1]]
    """
    return _counts(_encode(y_true, y_pred, labels))


def unweighted_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[Any] | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (balanced accuracy).

    >>> unweighted_accuracy(["a", "a", "a", "b"], ["a", "a", "b", "b"])   # (2/3 + 1/1) / 2
    0.8333333333333333
    """
    return _ua(_counts(_encode(y_true, y_pred, labels)))


def weighted_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[Any] | None = None) -> float:
    """Plain accuracy: the fraction of predictions equal to the truth.

    >>> weighted_accuracy(["a", "a", "a", "b"], ["a", "a", "b", "b"])
    0.75
    """
    coded = _encode(y_true, y_pred, labels)
    return float(np.mean(coded.true == coded.pred))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[Any] | None = None) -> float:
    """Unweighted mean of per-class F1 over the labels seen in ``y_true`` or ``y_pred``.

    >>> round(macro_f1(["a", "a", "a", "b"], ["a", "a", "b", "b"]), 4)   # (0.8 + 2/3) / 2
    0.7333
    """
    return _macro_f1(_counts(_encode(y_true, y_pred, labels)))


def _group_codes(groups: ArrayLike, n: int) -> np.ndarray:
    values = _as_1d(groups, "groups")
    if len(values) != n:
        raise ValueError(f"groups has {len(values)} entries for {n} predictions")
    codes, _ = pd.factorize(values)
    if (codes < 0).any():
        raise ValueError("groups contains missing values (None / NaN); every prediction needs a group")
    return codes.astype(np.int64)


def _bootstrap_uas(coded: _Coded, group: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """UA of ``n_boot`` resamples drawing whole groups with replacement."""
    k = len(coded.labels)
    n_groups = int(group.max()) + 1
    # Per-group table: support of each class, then hits of each class  -> (G, 2K).
    hit = coded.true == coded.pred
    cells = np.concatenate([group * (2 * k) + coded.true, group[hit] * (2 * k) + k + coded.true[hit]])
    table = np.bincount(cells, minlength=n_groups * 2 * k).reshape(n_groups, 2 * k).astype(np.float64)
    rng = np.random.default_rng(seed)
    uas = np.empty(n_boot)
    rows = max(1, _BOOT_CHUNK // n_groups)
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        draws = rng.integers(0, n_groups, size=(m, n_groups))
        # How often each group is drawn in each resample -> (m, G).
        times = np.bincount((np.arange(m)[:, None] * n_groups + draws).ravel(), minlength=m * n_groups)
        totals = times.reshape(m, n_groups).astype(np.float64) @ table
        support, hits = totals[:, :k], totals[:, k:]
        present = support > 0
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
        uas[start:start + m] = recall.sum(axis=1) / present.sum(axis=1)
    return uas


def bootstrap_ua_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
    labels: Sequence[Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of the UA.

    Without ``groups`` utterances are resampled with replacement. With ``groups`` (speaker ids,
    usually) whole groups are resampled -- a cluster bootstrap -- and each drawn group brings
    all of its predictions.

    Why groups for speaker-independent results: an SI score claims how the model does on *new
    speakers*, so the test speakers are the sample, not the utterances. Utterances of one
    speaker share a voice, a microphone and a speaking style, and the model's errors on them
    are correlated (it tends to get a speaker mostly right or mostly wrong). Resampling
    utterances treats thousands of them as independent draws and gives an interval far too
    narrow -- it only answers "how would this score move on other sentences from these same
    speakers". Resampling speakers keeps the between-speaker variation in the interval. With
    few groups (under ~10-20) even the cluster bootstrap undercovers; report the count.

    >>> bootstrap_ua_ci(y_true, y_pred, groups=speakers, n_boot=2000, seed=1)   # doctest: +SKIP
    (0.612, 0.701)
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    coded = _encode(y_true, y_pred, labels)
    n = len(coded.true)
    if groups is None:
        group = np.arange(n, dtype=np.int64)
    else:
        group = _group_codes(groups, n)
        if group.max() < 1:
            raise ValueError("groups has a single group: a cluster bootstrap needs at least 2")
    uas = _bootstrap_uas(coded, group, n_boot=int(n_boot), seed=seed)
    alpha = 1 - level
    low, high = np.quantile(uas, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _plain(value: Any) -> Any:
    """JSON-friendly copy: tuples -> lists, numpy scalars -> Python, nan -> None."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class ClassificationResult:
    """Scores of one classification run; ``ci_groups`` is the number of bootstrap clusters
    (``None``: utterances were resampled)."""

    ua: float
    wa: float
    macro_f1: float
    ua_ci: tuple[float, float]
    confusion: list[list[int]]
    labels: list
    n: int
    protocol: str
    speaker_independent: bool
    ci_level: float = 0.95
    ci_groups: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict, ready for ``json.dumps``."""
        return _plain(asdict(self))


def score_classification(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    labels: Sequence[Any] | None = None,
    protocol: str,
    speaker_independent: bool,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> ClassificationResult:
    """UA, WA, macro F1, confusion matrix and a bootstrap CI of the UA, with the protocol.

    Pass the test speakers as ``groups`` for speaker-independent protocols (see
    :func:`bootstrap_ua_ci`).

    >>> score_classification(y, pred, protocol="loso", speaker_independent=True, groups=spk)  # doctest: +SKIP
    ClassificationResult(ua=0.64, wa=0.66, macro_f1=0.63, ua_ci=(0.6, 0.69), ...)
    """
    coded = _encode(y_true, y_pred, labels)
    matrix = _counts(coded)
    ci = bootstrap_ua_ci(coded.true, coded.pred, n_boot=n_boot, level=level, seed=seed, groups=groups,
                         labels=range(len(coded.labels)))
    n_groups = None if groups is None else int(_group_codes(groups, len(coded.true)).max()) + 1
    return ClassificationResult(
        ua=_ua(matrix), wa=float(np.mean(coded.true == coded.pred)), macro_f1=_macro_f1(matrix), ua_ci=ci,
        confusion=matrix.tolist(), labels=list(coded.labels), n=len(coded.true), protocol=str(protocol),
        speaker_independent=bool(speaker_independent), ci_level=float(level), ci_groups=n_groups,
    )


# --------------------------------------------------------------------------- regression


def _floats(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_pair(t, p)
    try:
        t, p = t.astype(np.float64), p.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"regression targets must be numbers ({error})") from None
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true and y_pred must be finite (no NaN / inf)")
    return t, p


def _constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x) == 0)


def ccc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Lin's concordance correlation coefficient, population (1/n) moments.

    ``2 cov / (var_t + var_p + (mean_t - mean_p)^2)``; 0 for a constant prediction.

    >>> ccc([1, 2, 3, 4], [2, 3, 4, 5])   # r = 1, but shifted by 1: 2.5 / 3.5
    0.7142857142857143
    """
    t, p = _floats(y_true, y_pred)
    var_t = 0.0 if _constant(t) else float(np.var(t))
    var_p = 0.0 if _constant(p) else float(np.var(p))
    cov = 0.0 if var_t == 0 or var_p == 0 else float(np.mean((t - t.mean()) * (p - p.mean())))
    denom = var_t + var_p + float(t.mean() - p.mean()) ** 2
    return math.nan if denom == 0 else 2 * cov / denom


def pearson_r(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pearson correlation; ``nan`` when either vector is constant.

    >>> pearson_r([1, 2, 3, 4], [1, 3, 2, 4])
    0.8
    """
    t, p = _floats(y_true, y_pred)
    if _constant(t) or _constant(p):
        return math.nan
    return float(stats.pearsonr(t, p).statistic)


def r_squared(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``; ``nan`` when ``y_true`` is constant.

    >>> r_squared([1, 2, 3, 4], [1, 3, 2, 4])   # 1 - 2/5
    0.6
    """
    t, p = _floats(y_true, y_pred)
    if _constant(t):
        return math.nan
    return float(1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2))


def adjusted_r2(y_true: ArrayLike, y_pred: ArrayLike, *, n_predictors: int) -> float:
    """``1 - (1 - R^2)(n - 1)/(n - p - 1)`` for predictions of a model with ``p`` predictors.

    Meant for in-sample fits; on held-out predictions plain R^2 is already honest.

    >>> round(adjusted_r2([1, 2, 3, 4], [1, 3, 2, 4], n_predictors=1), 6)   # 1 - 0.4 * 3/2
    0.4
    """
    if not isinstance(n_predictors, (int, np.integer)) or n_predictors < 0:
        raise ValueError(f"n_predictors must be a non-negative integer, got {n_predictors!r}")
    t, p = _floats(y_true, y_pred)
    n = len(t)
    if n - n_predictors - 1 <= 0:
        raise ValueError(f"adjusted R^2 needs n > n_predictors + 1, got n={n}, n_predictors={n_predictors}")
    return 1 - (1 - r_squared(t, p)) * (n - 1) / (n - n_predictors - 1)


@dataclass(frozen=True)
class RegressionResult:
    """Scores of one regression run (e.g. arousal); ``adjusted_r2`` is ``None`` when the
    number of predictors was not given."""

    ccc: float
    pearson: float
    r2: float
    adjusted_r2: float | None
    n: int
    protocol: str
    speaker_independent: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict, ready for ``json.dumps`` (``nan`` becomes ``None``)."""
        return _plain(asdict(self))


def score_regression(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    protocol: str,
    speaker_independent: bool,
    n_predictors: int | None = None,
) -> RegressionResult:
    """CCC, Pearson r, R^2 and (with ``n_predictors``) adjusted R^2, with the protocol.

    >>> score_regression(arousal, predicted, protocol="loso", speaker_independent=True)  # doctest: +SKIP
    RegressionResult(ccc=0.52, pearson=0.58, r2=0.31, adjusted_r2=None, n=812, ...)
    """
    t, p = _floats(y_true, y_pred)
    return RegressionResult(
        ccc=ccc(t, p), pearson=pearson_r(t, p), r2=r_squared(t, p),
        adjusted_r2=None if n_predictors is None else adjusted_r2(t, p, n_predictors=n_predictors),
        n=len(t), protocol=str(protocol), speaker_independent=bool(speaker_independent),
    )
