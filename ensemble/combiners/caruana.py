"""Greedy forward ensemble selection with replacement (Caruana et al., 2004)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.combiners._base import Combiner, as_floats, weighted_mean
from ensemble.combiners.thresholds import kappa_or_zero
from ensemble.combiners.weighted import EPS, true_class_probs
from members.infra.errors import UserError

METRICS = ("log_loss", "accuracy", "qwk")
"""Selection metrics; log-loss is minimised, the others maximised."""


def candidate_scores(
    metric: str, S: np.ndarray, c: int, P: np.ndarray, y: np.ndarray, buf: np.ndarray | None = None
) -> np.ndarray:
    """The score of ``(S + P[j]) / (c + 1)`` for every member ``j``: shape (m,).

    ``S`` is the running sum of the ``c`` selected members' probabilities. For
    log-loss only the true-class column matters: then ``S`` is that column (n,),
    ``P`` the members' true-class probabilities (m, n), floored at ``EPS`` so
    the log is finite, and ``buf`` an optional (m, n) scratch array: a step
    costs an add, a log and a mean over (m, n) numbers.
    """
    if metric == "log_loss":
        buf = np.add(S, P, out=buf)
        np.log(buf, out=buf)
        return np.log(c + 1.0) - buf.mean(axis=1)
    k = P.shape[2]
    scores = np.empty(P.shape[0])
    for j in range(P.shape[0]):
        pred = (S + P[j]).argmax(axis=1)  # dividing by c + 1 does not move the argmax
        scores[j] = np.mean(pred == y) if metric == "accuracy" else kappa_or_zero(y, pred, k)
    return scores


class CaruanaSelection(Combiner):
    """Greedy forward selection with replacement from the member library.

    Step 1 adds the best single member (``init="best"``; an int ``b`` adds the
    ``b`` best members, one step each). Every later step adds the member whose
    addition gives the best score of the running average, repeats allowed.
    ``weights_ = counts_ / steps``.

    After fit: ``trace_`` (one ``{"step", "added", "score"}`` per step),
    ``candidate_scores_`` (steps, m): the score each member would have given at
    each step, which :meth:`selection_report` uses to say why a member ended
    with zero weight.

    Args:
        steps: total number of selections (the ensemble size, counting repeats).
        metric: ``"log_loss"`` (minimised), ``"accuracy"`` or ``"qwk"`` (maximised).
        init: ``"best"`` or the number of best single members to start with.
        thresholds: also fit grade thresholds on the selected ensemble's probabilities.

    Example:
        >>> import numpy as np
        >>> good = np.array([[.9, .1], [.2, .8], [.7, .3]])
        >>> P = np.stack([np.full((3, 2), .5), good])
        >>> CaruanaSelection(steps=3).fit(P, [0, 1, 0]).trace_[0]["added"]
        1
    """

    method = "caruana"
    _param_names = ("steps", "metric", "init", "thresholds")

    def __init__(self, *, steps: int = 25, metric: str = "log_loss", init: str | int = "best", thresholds: bool = False) -> None:
        self.steps = steps
        self.metric = metric
        self.init = init
        self.thresholds = thresholds

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        steps, n_init = self._check_params()
        m, n, k = P.shape
        buf = None
        if self.metric == "log_loss":
            P, S = np.maximum(true_class_probs(P, y), EPS), np.zeros(n)  # only the true-class column is summed
            buf = np.empty_like(P)
        else:
            S = np.zeros((n, k))
        sign = 1.0 if self.metric == "log_loss" else -1.0  # internally: lower is better
        counts = np.zeros(m, dtype=np.int64)
        cand = np.empty((steps, m))
        trace = []
        order = None
        for step in range(steps):
            scores = candidate_scores(self.metric, S, step, P, y, buf)
            if order is None:
                order = np.argsort(sign * scores, kind="stable")  # the single members, best first
            j = int(order[step]) if step < n_init else int(np.argmin(sign * scores))
            S += P[j]
            counts[j] += 1
            cand[step] = scores
            trace.append({"step": step + 1, "added": j, "score": float(scores[j])})
        self.counts_ = counts
        self.weights_ = counts / float(steps)
        self.trace_ = trace
        self.candidate_scores_ = cand

    def _check_params(self) -> tuple[int, int]:
        if self.metric not in METRICS:
            raise UserError(f"metric must be one of {', '.join(METRICS)}; got {self.metric!r}.")
        steps = int(self.steps)
        if steps < 1:
            raise UserError(f"steps must be at least 1; got {self.steps}.")
        if self.init == "best":
            n_init = 1
        elif isinstance(self.init, int) and not isinstance(self.init, bool) and 1 <= self.init <= min(steps, self.n_members_):
            n_init = self.init
        else:
            raise UserError(
                f"init must be 'best' or a number of members between 1 and {min(steps, self.n_members_)} "
                f"(steps={steps}, {self.n_members_} members); got {self.init!r}."
            )
        return steps, n_init

    def _proba(self, P: np.ndarray) -> np.ndarray:
        return weighted_mean(self.weights_, P)

    def selection_report(self) -> list[dict[str, Any]]:
        """One entry per member: how often it was selected, or why never.

        Returns:
            Dicts with ``member``, ``name``, ``count``, ``weight``, ``best_candidate_score``
            (its best score as a candidate over all steps), ``best_step`` and ``reason``.
        """
        self._require_fitted()
        sign = 1.0 if self.metric == "log_loss" else -1.0
        out = []
        for j, name in enumerate(self.member_names_):
            col = sign * self.candidate_scores_[:, j]
            s = int(np.argmin(col))
            best, count = float(self.candidate_scores_[s, j]), int(self.counts_[j])
            if count:
                reason = f"selected {count} of {len(self.trace_)} times"
            else:
                chosen = self.trace_[s]
                reason = (
                    f"never selected: its best {self.metric} as a candidate was {best:.6g} at step {s + 1}, "
                    f"where {self.member_names_[chosen['added']]} gave {chosen['score']:.6g}"
                )
            out.append({"member": j, "name": name, "count": count, "weight": float(self.weights_[j]),
                        "best_candidate_score": best, "best_step": s + 1, "reason": reason})
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "counts": self.counts_.tolist(),
            "trace": [dict(t) for t in self.trace_],
            "candidate_scores": as_floats(self.candidate_scores_),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.counts_ = np.asarray(state["counts"], dtype=np.int64)
        self.weights_ = self.counts_ / float(self.counts_.sum())
        self.trace_ = [{"step": int(t["step"]), "added": int(t["added"]), "score": float(t["score"])} for t in state["trace"]]
        self.candidate_scores_ = np.asarray(state["candidate_scores"], dtype=np.float64).reshape(len(self.trace_), -1)
