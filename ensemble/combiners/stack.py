"""Stacking: multinomial logistic regression (scikit-learn's) on the members' log-probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ensemble.combiners._base import Combiner, as_floats, one_blas_thread
from ensemble.combiners._logreg import (
    embed_classes,
    fit_logreg,
    logits,
    mean_log_loss,
    softmax_columns,
    stratified_subsample,
)
from ensemble.crossfit import stratified_folds
from members.infra.errors import UserError

MAX_ITER = 200
"""L-BFGS iteration cap of the CV fits (and of the final fit when it is not capped by ``refit_max_iter``)."""

CV_TOL = 1e-3
"""L-BFGS gradient tolerance while choosing C."""

FINAL_TOL = 1e-6
"""L-BFGS gradient tolerance of the final fit."""

MIN_CV_ROWS = 4
"""Below this many fit rows ``C`` is not cross-validated: the smallest (strongest) ``C`` is used."""


def stack_features(P: np.ndarray, eps: float) -> np.ndarray:
    """The members' clipped log-probabilities, feature-major: (m*k, n) float32.

    Row ``j*k + c`` is ``log(max(P[j, :, c], eps))``.
    """
    m, n, k = P.shape
    XT = np.empty((m, k, n), dtype=np.float32)
    XT[...] = P.transpose(0, 2, 1)  # one pass: transpose (and cast to float32)
    np.maximum(XT, np.float32(eps), out=XT)
    np.log(XT, out=XT)
    return XT.reshape(m * k, n)


class Stacking(Combiner):
    """L2-regularised multinomial logistic regression on clipped member log-probabilities.

    The regression is scikit-learn's ``LogisticRegression`` (L-BFGS); only its fitted
    coefficients are kept, so the JSON holds plain numbers and no scikit-learn object.

    The features are the members' log-probabilities ``log(max(p, eps))``,
    (n, m*k), standardised with the fit data's column means and deviations;
    the fitted model is folded back into ``coef_`` (k, m*k) and ``intercept_``
    (k,) that act on the raw log-probabilities. ``predict_proba`` is plain
    numpy on those stored numbers, so a JSON round-trip reproduces it bit for
    bit.

    ``C`` is chosen from ``Cs`` by stratified cross-validation (mean held-out
    log-loss; ties go to the smaller ``C``) on the fit data, warm-started along
    the ``C`` path and from fold to fold. The number of folds is
    ``min(cv, rows of the smallest class)``, at least 2 (with fewer than 4
    rows the CV is skipped and the smallest ``C`` used). For speed the CV runs
    on a class-proportional random subsample of at most ``cv_max_rows`` rows;
    when the fit data is larger than that, the final fit on all rows starts
    from the folds' mean solution and stops after ``refit_max_iter`` L-BFGS
    iterations (early stopping: on the 50,000-row benchmark its held-out
    log-loss equals the fully converged fit's); otherwise it runs to convergence.

    Args:
        Cs: candidate inverse regularisation strengths (sklearn's ``C``).
        cv: number of CV folds (reduced for rare classes).
        seed: seed of the fold split and the CV subsample.
        eps: probabilities are clipped to at least ``eps`` before the log.
        cv_max_rows: cap on the rows used to choose ``C``.
        refit_max_iter: L-BFGS iterations of the final fit when the data exceeds ``cv_max_rows``.
        thresholds: also fit grade thresholds on the stacker's fitted probabilities.

    Example:
        >>> import numpy as np
        >>> y = np.arange(60) % 3
        >>> good = np.eye(3)[y] * 0.8 + 0.2 / 3
        >>> P = np.stack([np.roll(good, 1, axis=1), np.full((60, 3), 1 / 3)])
        >>> float((Stacking().fit(P, y).predict(P) == y).mean())
        1.0
    """

    method = "stack"
    _param_names = ("Cs", "cv", "seed", "eps", "cv_max_rows", "refit_max_iter", "thresholds")

    def __init__(
        self,
        *,
        Cs: Sequence[float] = (0.001, 0.01, 0.1, 1.0),
        cv: int = 5,
        seed: int = 0,
        eps: float = 1e-6,
        cv_max_rows: int = 2000,
        refit_max_iter: int = 10,
        thresholds: bool = False,
    ) -> None:
        self.Cs = Cs
        self.cv = cv
        self.seed = seed
        self.eps = eps
        self.cv_max_rows = cv_max_rows
        self.refit_max_iter = refit_max_iter
        self.thresholds = thresholds

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        Cs = self._check_params()
        k, n = self.n_classes_, P.shape[1]
        XT = stack_features(P, self.eps)
        mean = XT.mean(axis=1).astype(np.float64)
        scale = XT.std(axis=1).astype(np.float64)
        scale[scale < 1e-12] = 1.0  # a constant column (e.g. always clipped) stays as it is
        XT -= mean.astype(np.float32)[:, None]
        XT /= scale.astype(np.float32)[:, None]
        rng = np.random.default_rng(self.seed)
        import sklearn.linear_model  # noqa: F401  (load its BLAS before limiting the threads)

        with one_blas_thread():
            if len(Cs) == 1 or n < MIN_CV_ROWS:  # nothing to choose, or too few rows to split
                self.C_, self.cv_scores_, self.n_folds_, start = Cs[0], np.zeros(0), 0, None
            else:
                self.C_, self.cv_scores_, self.n_folds_, start = self._choose_C(XT, y, Cs, rng)
            capped = start is not None and n > int(self.cv_max_rows)
            max_iter = self.refit_max_iter if capped else MAX_ITER
            model = fit_logreg(XT, y, self.C_, init=start, max_iter=max_iter, tol=FINAL_TOL)
        self.n_iter_ = int(np.max(model.n_iter_))
        coef, intercept = embed_classes(model, k)
        self.Cs_ = np.asarray(Cs, dtype=np.float64)
        self.coef_ = coef / scale  # acts on the raw log-probabilities
        self.intercept_ = intercept - coef @ (mean / scale)

    def _check_params(self) -> list[float]:
        try:
            Cs = sorted(float(c) for c in np.atleast_1d(np.asarray(self.Cs, dtype=np.float64)))
        except (TypeError, ValueError):
            Cs = []
        if not Cs or not all(np.isfinite(c) and c > 0 for c in Cs):
            raise UserError(f"Cs must be positive numbers; got {self.Cs!r}.")
        if int(self.cv) < 2:
            raise UserError(f"cv must be at least 2 folds; got {self.cv}.")
        if not 0 < float(self.eps) < 1:
            raise UserError(f"eps must be between 0 and 1; got {self.eps}.")
        if int(self.cv_max_rows) < 2 * int(self.cv):
            raise UserError(f"cv_max_rows must be at least 2 * cv = {2 * int(self.cv)}; got {self.cv_max_rows}.")
        if int(self.refit_max_iter) < 1:
            raise UserError(f"refit_max_iter must be at least 1; got {self.refit_max_iter}.")
        return Cs

    def _choose_C(self, XT: np.ndarray, y: np.ndarray, Cs: list[float], rng: np.random.Generator):
        """Stratified CV over ``Cs``: best C, mean held-out log-loss per C, folds, start theta."""
        k = self.n_classes_
        if y.shape[0] > int(self.cv_max_rows):
            rows = stratified_subsample(y, int(self.cv_max_rows), rng)
            XT, y = XT[:, rows], y[rows]
        smallest = int(np.bincount(y)[np.unique(y)].min())
        n_folds = max(2, min(int(self.cv), smallest))
        folds = stratified_folds(y, n_folds, rng)
        losses = np.zeros(len(Cs))
        sums: list[list] = [[] for _ in Cs]
        previous: list[tuple | None] = [None] * len(Cs)
        every_class = np.unique(y)
        for f in range(n_folds):
            train, held = folds != f, folds == f
            X_train, y_train, X_held, last = XT[:, train], y[train], XT[:, held], None
            for i, C in enumerate(Cs):
                # warm start: the previous fold at this C, else the previous C of this fold
                start = previous[i] if previous[i] is not None else last
                model = fit_logreg(X_train, y_train, C, init=start, max_iter=MAX_ITER, tol=CV_TOL)
                previous[i] = last = (model.coef_, model.intercept_, model.classes_)
                losses[i] += mean_log_loss(X_held, y[held], *embed_classes(model, k)) * held.sum()
                if np.array_equal(model.classes_, every_class):
                    sums[i].append(last)
        losses /= y.shape[0]
        best = int(np.argmin(losses))  # the first minimum: the smaller C on ties
        found = sums[best]
        start = None if not found else (np.mean([c for c, _, _ in found], axis=0),
                                        np.mean([b for _, b, _ in found], axis=0), every_class)
        return Cs[best], losses, n_folds, start

    def _proba(self, P: np.ndarray) -> np.ndarray:
        X = stack_features(P, self.eps)
        return np.ascontiguousarray(softmax_columns(logits(X, self.coef_, self.intercept_)).T)

    def _state(self) -> dict[str, Any]:
        return {
            "C": self.C_,
            "Cs": as_floats(self.Cs_),
            "cv_scores": as_floats(self.cv_scores_),
            "n_folds": self.n_folds_,
            "n_iter": self.n_iter_,
            "coef": as_floats(self.coef_),
            "intercept": as_floats(self.intercept_),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.C_ = float(state["C"])
        self.Cs_ = np.asarray(state["Cs"], dtype=np.float64)
        self.cv_scores_ = np.asarray(state["cv_scores"], dtype=np.float64)
        self.n_folds_, self.n_iter_ = int(state["n_folds"]), int(state["n_iter"])
        self.coef_ = np.asarray(state["coef"], dtype=np.float64).reshape(self.n_classes_, -1)
        self.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
