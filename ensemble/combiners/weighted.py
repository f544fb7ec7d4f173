"""Weighted soft voting with weights that minimise log-loss on the fit data."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.combiners._base import Combiner, as_floats, one_blas_thread, weighted_mean
from members.infra.errors import UserError

EPS = 1e-15
"""Floor on the ensemble's probability of the true class inside the log."""


def true_class_probs(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each member's probability of the true class: (m, n) float64."""
    return P[:, np.arange(P.shape[1]), y].astype(np.float64)


def mixture_log_loss(z: np.ndarray, Py: np.ndarray) -> tuple[float, np.ndarray]:
    """Log-loss of ``softmax(z) @ P`` and its gradient with respect to ``z``.

    Only the true-class probabilities ``Py`` (m, n) matter for log-loss, so one
    evaluation costs two (m, n) products.
    """
    w = np.exp(z - z.max())
    w /= w.sum()
    q = np.maximum(w @ Py, EPS)
    loss = -float(np.mean(np.log(q)))
    grad_w = -(Py @ (1.0 / q)) / Py.shape[1]
    return loss, w * (grad_w - w @ grad_w)


class WeightedVote(Combiner):
    """Non-negative member weights summing to one, chosen to minimise log-loss.

    The weights are ``softmax(z)``; ``z`` starts at zero (uniform weights) and
    is optimised with L-BFGS (scipy), so the result is deterministic. The
    problem is convex in the weights (log-loss of a mixture), so the optimum
    is global; uninformative members end with (nearly) zero weight.

    Args:
        max_iter: L-BFGS iteration cap.
        tol: L-BFGS gradient tolerance.
        thresholds: also fit grade thresholds on the weighted probabilities.

    Example:
        >>> import numpy as np
        >>> good = np.array([[.9, .1], [.1, .9], [.8, .2], [.2, .8]])
        >>> P = np.stack([good, np.full((4, 2), .5)])
        >>> WeightedVote().fit(P, [0, 1, 0, 1]).weights_.round(2).tolist()
        [1.0, 0.0]
    """

    method = "weighted"
    _param_names = ("max_iter", "tol", "thresholds")

    def __init__(self, *, max_iter: int = 200, tol: float = 1e-9, thresholds: bool = False) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.thresholds = thresholds

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        from scipy.optimize import minimize

        if int(self.max_iter) < 1:
            raise UserError(f"max_iter must be at least 1; got {self.max_iter}.")
        Py = true_class_probs(P, y)
        with one_blas_thread():  # again: scipy's own BLAS may have loaded just now
            result = minimize(
                mixture_log_loss,
                np.zeros(self.n_members_),
                args=(Py,),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": int(self.max_iter), "gtol": float(self.tol), "ftol": 1e-15},
            )
        z = result.x
        w = np.exp(z - z.max())
        self.weights_ = w / w.sum()
        self.loss_ = float(result.fun)
        self.n_iter_ = int(result.nit)

    def _proba(self, P: np.ndarray) -> np.ndarray:
        return weighted_mean(self.weights_, P)

    def _state(self) -> dict[str, Any]:
        return {"weights": as_floats(self.weights_), "loss": self.loss_, "n_iter": self.n_iter_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        self.loss_ = float(state["loss"])
        self.n_iter_ = int(state["n_iter"])
