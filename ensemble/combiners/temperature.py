"""Temperature scaling: one number that softens (T > 1) or sharpens (T < 1) a probability table.

``p_T = softmax(log p / T)`` keeps every row's ranking of the classes (so the argmax, the
accuracy and QWK do not move) and changes only how confident the probabilities are. ``T``
minimises the log-loss on held-out (val) rows; it is never fitted on test.

:class:`TemperatureScaling` calibrates one ``(n, k)`` table (a member, or a combiner's
output). :class:`Calibrated` wraps a fitted combiner: one temperature per member before
it and one for its output after it; ``vote --calibrate temperature`` saves it as the
combiner's JSON, which ``predict`` applies. Both round-trip through JSON bit for bit
(the temperatures are stored with ``repr``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ensemble.combiners._base import FORMAT_VERSION
from ensemble.combiners._validation import check_labels, check_probs, require_fitted
from members.infra.atomic import write_json
from members.infra.errors import UserError

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
"""The search interval of ``log T``: temperatures from 0.05 to 20."""

EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` row by row, float64; zeros stay (near) zero.

    Example:
        >>> apply_temperature(np.array([[0.9, 0.1]]), 1.0).round(3).tolist()
        [[0.9, 0.1]]
    """
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None)) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _nll(probs: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = apply_temperature(probs, temperature)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p, EPS, None))))


class TemperatureScaling:
    """Fit one temperature on held-out probabilities by minimising their log-loss.

    Args:
        bounds: search interval of ``log T``.

    Attributes:
        temperature_: the fitted ``T``.
        log_loss_before_, log_loss_after_: log-loss of the fitted rows at ``T = 1`` and at ``temperature_``.

    Example:
        >>> y = np.array([0, 1, 0, 1]); p = np.array([[.99, .01], [.02, .98], [.01, .99], [.97, .03]])
        >>> TemperatureScaling().fit(p, y).temperature_ > 1  # over-confident: softened
        True
    """

    method: ClassVar[str] = "temperature"

    def __init__(self, *, bounds: tuple[float, float] = LOG_T_BOUNDS) -> None:
        self.bounds = bounds

    def fit(self, probs: Any, y: Any) -> TemperatureScaling:
        """Fit ``temperature_`` on probabilities ``(n, k)`` and labels ``(n,)`` (val rows, never test)."""
        from scipy.optimize import minimize_scalar

        probs = check_probs(np.asarray(probs)[None])[0].astype(np.float64)
        y = check_labels(y, *probs.shape)
        lo, hi = (float(b) for b in self.bounds)
        if not lo < hi:
            raise UserError(f"bounds must be an increasing pair of log temperatures; got {self.bounds}.")
        found = minimize_scalar(lambda t: _nll(probs, y, math.exp(t)), bounds=(lo, hi), method="bounded",
                                options={"xatol": 1e-6})
        self.temperature_ = float(math.exp(found.x))
        self.log_loss_before_, self.log_loss_after_ = _nll(probs, y, 1.0), _nll(probs, y, self.temperature_)
        if self.log_loss_after_ > self.log_loss_before_:  # the search never loses to T = 1
            self.temperature_, self.log_loss_after_ = 1.0, self.log_loss_before_
        return self

    def predict_proba(self, probs: Any) -> np.ndarray:
        """Calibrated probabilities ``(n, k)``, float64."""
        require_fitted(self, "temperature_", "fit(probs, y)")
        return apply_temperature(probs, self.temperature_)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fitted state."""
        return {"method": self.method, "params": {"bounds": [float(b) for b in self.bounds]},
                "temperature": self.temperature_, "log_loss_before": self.log_loss_before_,
                "log_loss_after": self.log_loss_after_}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemperatureScaling:
        """Rebuild from :meth:`to_dict` output."""
        obj = cls(bounds=tuple(data["params"]["bounds"]))
        obj.temperature_ = float(data["temperature"])
        obj.log_loss_before_, obj.log_loss_after_ = float(data["log_loss_before"]), float(data["log_loss_after"])
        return obj


class Calibrated:
    """A fitted combiner with a temperature per member before it and one for its output.

    ``predict_proba(P)`` = output temperature applied to ``combiner.predict_proba`` of the
    temperature-scaled members; ``predict(P)`` = ``combiner.predict`` of the scaled members
    (its grade thresholds, when it has them, were fitted on those), so the output
    temperature never moves a label.

    Args:
        combiner: a combiner fitted on the temperature-scaled val probabilities.
        members: one fitted :class:`TemperatureScaling` per member, in the combiner's order.
        output: a :class:`TemperatureScaling` fitted on the combiner's out-of-fold val output.
    """

    method: ClassVar[str] = "calibrated"

    def __init__(self, combiner: Any, members: list[TemperatureScaling], output: TemperatureScaling) -> None:
        if len(members) != combiner.n_members_:
            raise UserError(f"The combiner has {combiner.n_members_} members but {len(members)} member "
                            "temperatures were given; pass one per member.")
        self.combiner_, self.members_, self.output_ = combiner, list(members), output

    @property
    def member_names_(self) -> list[str]:
        return self.combiner_.member_names_

    @property
    def n_members_(self) -> int:
        return self.combiner_.n_members_

    @property
    def n_classes_(self) -> int:
        return self.combiner_.n_classes_

    @property
    def temperatures_(self) -> list[float]:
        """The member temperatures, in member order."""
        return [t.temperature_ for t in self.members_]

    def scale_members(self, P: Any) -> np.ndarray:
        """Each member's probabilities ``(m, n, k)`` at its own temperature."""
        P = check_probs(P)
        if P.shape[0] != len(self.members_):
            raise UserError(f"P has {P.shape[0]} members but the calibrated combiner was fitted on "
                            f"{len(self.members_)}; pass the same members in the same order.")
        return np.stack([t.predict_proba(p) for t, p in zip(self.members_, P)])

    def predict_proba(self, P: Any) -> np.ndarray:
        """Calibrated ensemble probabilities ``(n, k)``."""
        return self.output_.predict_proba(self.combiner_.predict_proba(self.scale_members(P)))

    def predict(self, P: Any) -> np.ndarray:
        """Ensemble labels ``(n,)``: the wrapped combiner's labels on the scaled members."""
        return self.combiner_.predict(self.scale_members(P))

    def to_dict(self) -> dict[str, Any]:
        """The wrapped combiner's dict plus the temperatures."""
        return {"method": self.method, "format": FORMAT_VERSION, "calibration": TemperatureScaling.method,
                "member_names": list(self.member_names_),
                "member_temperatures": [t.to_dict() for t in self.members_],
                "output_temperature": self.output_.to_dict(), "combiner": self.combiner_.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrated:
        """Rebuild from :meth:`to_dict` output (the wrapped combiner through ``load``'s dispatch)."""
        from ensemble.combiners import combiner_from_dict

        try:
            inner = combiner_from_dict(data["combiner"])
            members = [TemperatureScaling.from_dict(t) for t in data["member_temperatures"]]
            return cls(inner, members, TemperatureScaling.from_dict(data["output_temperature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"The saved calibrated combiner is incomplete or malformed ({exc!r}); re-run vote.") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return f"Calibrated({self.combiner_!r}, temperatures={self.temperatures_}, output={self.output_.temperature_})"
