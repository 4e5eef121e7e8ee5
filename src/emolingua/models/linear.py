"""Linear models over pooled features: logistic regression, a linear SVM and ridge regression.

Each fits its whole regularisation grid on ``train`` and keeps the value that scores best on
valid; the learned coefficients are plain arrays, so a loaded model gives the same numbers.

>>> get_model("logreg", C=(0.01, 0.1), class_weight="balanced").fit(train, valid=valid)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from emolingua.errors import ConfigError
from emolingua.metrics import ccc, r_squared
from emolingua.models.contract import Model, ModelConfig, Prepared, RegressionModel, _better, check_class_weight
from emolingua.system import limited_threads

__all__ = ["LinearSVM", "LogReg", "Ridge"]


def _dot(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``X @ coef`` in float64 by numpy's own loops: BLAS picks kernels by memory alignment, so the
    same model loaded elsewhere in memory could differ in the last bit; these loops do not."""
    return np.einsum("nd,d...->n...", X.astype(np.float64), coef, optimize=False)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_grid(name: str, what: str, grid: tuple[float, ...]) -> None:
    if not grid or any(float(v) <= 0 for v in grid):
        raise ConfigError(f"{name}: {what} must be a non-empty tuple of positive values, got {grid!r}")


def _grid_for(grid: tuple[float, ...], fallback: float, valid: Prepared | None) -> list[float]:
    """The values to fit, ascending; without valid, the single grid value or else the fallback."""
    values = sorted({float(v) for v in grid})
    if valid is None and len(values) > 1:
        return [float(fallback)]
    return values


# ----------------------------------------------------------------------------- linear baselines
@dataclass(frozen=True)
class LinearConfig(ModelConfig):
    """``C``: the grid searched on valid (ties go to the smaller C); ``fallback_C``: used instead when
    ``fit`` gets no valid rows and the grid has several values; ``class_weight``: None or "balanced"."""

    C: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    fallback_C: float = 0.01
    class_weight: str | None = None
    max_iter: int = 300
    tol: float = 1e-3

    def __post_init__(self) -> None:
        _check_grid("linear model", "C", self.C)
        check_class_weight(self.class_weight)


class _LinearClassifier(Model):
    """A linear model fitted by sklearn for each C of the grid, kept as (coef, intercept) arrays.

    Probabilities are computed here from those arrays (not by the sklearn object), so a loaded
    model gives exactly the same numbers.
    """

    Config = LinearConfig
    config: LinearConfig
    #: binary decision d -> scores of (class 0, class 1): "logistic" [0, d], "symmetric" [-d, d]
    binary: ClassVar[str] = "logistic"

    @abstractmethod
    def _estimator(self) -> Any:
        """A fresh sklearn estimator with ``C``, ``coef_`` and ``intercept_``."""

    def _proba(self, coef: np.ndarray, intercept: np.ndarray, X: np.ndarray) -> np.ndarray:
        scores = _dot(X, coef.T) + intercept
        if coef.shape[0] == 1:
            d = scores[:, 0]
            scores = np.stack([np.zeros_like(d), d] if self.binary == "logistic" else [-d, d], axis=1)
        return _softmax(scores)

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        from sklearn.exceptions import ConvergenceWarning

        est = self._estimator()
        X = train.flat
        best: tuple[float, float, np.ndarray, np.ndarray] | None = None
        stalled = []
        for C in _grid_for(self.config.C, self.config.fallback_C, valid):
            est.set_params(C=C)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with limited_threads(1):  # BLAS threads change lbfgs's sums: one thread, so --threads never changes a result
                    est.fit(X, train.y_index)
            converged = True
            for w in caught:
                if issubclass(w.category, ConvergenceWarning):
                    converged = False
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if not converged:
                stalled.append(C)
            coef = np.ascontiguousarray(est.coef_, dtype=np.float64)  # the layout a loaded model has
            intercept = np.atleast_1d(np.array(est.intercept_, dtype=np.float64))
            record: dict[str, Any] = {"C": C, "converged": converged}
            score = np.nan
            if valid is not None:
                score = self._valid_score(valid, self._proba(coef, intercept, valid.flat))
                record["valid_ua"] = score
            self.history.append(record)
            if _better(score, None if best is None else best[0]):
                best = (score, C, coef, intercept)
        assert best is not None
        if stalled:
            warnings.warn(f"{self.name}: stopped at max_iter={self.config.max_iter} before tol for C in {stalled}",
                          ConvergenceWarning, stacklevel=3)  # fmt: skip
        _, C, self.coef_, self.intercept_ = best
        self.selected = {"C": C}

    def _predict_proba(self, data: Prepared) -> np.ndarray:
        return self._proba(self.coef_, self.intercept_, data.flat)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"coef": self.coef_, "intercept": self.intercept_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]


class LogReg(_LinearClassifier):
    """``logreg``: L2 logistic regression (sklearn, lbfgs, multinomial), C chosen on valid.

    The grid is fitted from the smallest C up, each fit warm-started from the previous one.

    >>> get_model("logreg", C=(0.01, 0.1), class_weight="balanced").fit(train, valid=valid)  # doctest: +SKIP
    """

    name = "logreg"

    def _estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        cfg = self.config
        return LogisticRegression(solver="lbfgs", max_iter=cfg.max_iter, tol=cfg.tol, class_weight=cfg.class_weight,
                                  warm_start=True, random_state=cfg.seed)  # fmt: skip


@dataclass(frozen=True)
class LinearSVMConfig(LinearConfig):
    max_iter: int = 1000


class LinearSVM(_LinearClassifier):
    """``linear-svm``: one-vs-rest linear SVM (sklearn ``LinearSVC``, squared hinge), C chosen on valid.

    ``predict_proba`` is a softmax of the decision values (binary: of ``[-d, d]``): a monotone
    score with the SVM's argmax, not a calibrated probability.

    >>> get_model("linear-svm", C=(0.001, 0.01)).fit(train, valid=valid)   # doctest: +SKIP
    """

    name = "linear-svm"
    Config = LinearSVMConfig
    binary = "symmetric"

    def _estimator(self) -> Any:
        from sklearn.svm import LinearSVC

        cfg = self.config
        return LinearSVC(dual="auto", max_iter=cfg.max_iter, tol=cfg.tol, class_weight=cfg.class_weight,
                         random_state=cfg.seed)  # fmt: skip


@dataclass(frozen=True)
class RidgeConfig(ModelConfig):
    """``alpha``: the grid searched on valid (ties go to the smaller alpha); ``fallback_alpha``: used
    instead when ``fit`` gets no valid rows and the grid has several values; ``select_by``: "ccc" or "r2"."""

    alpha: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    fallback_alpha: float = 100.0
    select_by: str = "ccc"

    def __post_init__(self) -> None:
        _check_grid("ridge", "alpha", self.alpha)
        if self.select_by not in ("ccc", "r2"):
            raise ConfigError(f"select_by must be 'ccc' or 'r2', got {self.select_by!r}")


class Ridge(RegressionModel):
    """``ridge``: ridge regression with an intercept, alpha chosen on valid by CCC (or R²).

    One SVD of the centred training features serves the whole alpha grid.

    >>> get_model("ridge", select_by="r2").fit(train, valid=valid).predict(test)   # doctest: +SKIP
    """

    name = "ridge"
    Config = RidgeConfig
    config: RidgeConfig

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        assert train.y is not None
        X = train.flat.astype(np.float64)
        x_mean, y_mean = X.mean(axis=0), float(train.y.mean())
        U, s, Vt = np.linalg.svd(X - x_mean, full_matrices=False)
        Uty = U.T @ (train.y - y_mean)
        metric = ccc if self.config.select_by == "ccc" else r_squared
        best: tuple[float, float, np.ndarray, float] | None = None
        for alpha in _grid_for(self.config.alpha, self.config.fallback_alpha, valid):
            coef = Vt.T @ (s / (s**2 + alpha) * Uty)
            intercept = y_mean - float(x_mean @ coef)
            record: dict[str, Any] = {"alpha": alpha}
            score = np.nan
            if valid is not None:
                assert valid.y is not None
                score = metric(valid.y, valid.flat.astype(np.float64) @ coef + intercept)
                record[f"valid_{self.config.select_by}"] = score
            self.history.append(record)
            if _better(score, None if best is None else best[0]):
                best = (score, alpha, coef, intercept)
        assert best is not None
        _, alpha, self.coef_, self.intercept_ = best
        self.selected = {"alpha": alpha}

    def _predict(self, data: Prepared) -> np.ndarray:
        return _dot(data.flat, self.coef_) + self.intercept_

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"coef": self.coef_, "intercept": np.array([self.intercept_])}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], float(arrays["intercept"][0])


