"""Temperature scaling and the calibrated combiner: known answers, log-loss falls, JSON round trip bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.combiners import Calibrated, TemperatureScaling, load_combiner, make_combiner
from ensemble.combiners.temperature import apply_temperature
from members.infra.errors import UserError
from members.scoring import score


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _over_confident(n: int = 300, k: int = 5, scale: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated logits (true class +1.5, unit noise) multiplied by ``scale``: the same argmax, far too sure."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.5
    return _softmax(scale * z), y


def test_apply_temperature_known_values() -> None:
    p = np.array([[0.8, 0.2], [0.5, 0.5]])
    np.testing.assert_allclose(apply_temperature(p, 1.0), p)
    # T = 2 takes the square root before renormalising: 0.8**.5 / (0.8**.5 + 0.2**.5) = 2/3
    np.testing.assert_allclose(apply_temperature(p, 2.0), [[2 / 3, 1 / 3], [0.5, 0.5]])
    assert (apply_temperature(p, 0.3).argmax(1) == p.argmax(1)).all()


def test_temperature_softens_over_confident_probabilities_and_lowers_val_log_loss() -> None:
    p, y = _over_confident(scale=4.0)
    t = TemperatureScaling().fit(p, y)
    assert t.temperature_ == pytest.approx(4.0, rel=0.35)  # it undoes most of the sharpening
    before, after = score(y, p), score(y, t.predict_proba(p))
    assert after["log_loss"] < 0.7 * before["log_loss"]
    assert t.log_loss_after_ == pytest.approx(after["log_loss"], rel=1e-9)
    assert after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]  # ranks within each row do not move


def test_temperature_sharpens_under_confident_probabilities() -> None:
    p, y = _over_confident(scale=0.3)
    assert TemperatureScaling().fit(p, y).temperature_ < 1.0


def test_temperature_json_round_trip_is_bit_for_bit(tmp_path) -> None:
    p, y = _over_confident()
    t = TemperatureScaling().fit(p, y)
    loaded = TemperatureScaling.from_dict(json.loads(json.dumps(t.to_dict())))
    assert loaded.temperature_ == t.temperature_
    new = _over_confident(n=40, seed=7)[0]
    assert loaded.predict_proba(new).tobytes() == t.predict_proba(new).tobytes()


@pytest.mark.parametrize("method, thresholds", [("soft", False), ("stack", True), ("hard", False)])
def test_calibrated_combiner_round_trip_is_bit_for_bit(method, thresholds, tmp_path) -> None:
    members = [_over_confident(scale=s, seed=i) for i, s in enumerate((4.0, 2.0, 0.5))]
    P, y = np.stack([m[0] for m in members]).astype(np.float32), members[0][1]
    temps = [TemperatureScaling().fit(p, y) for p in P]
    scaled = np.stack([t.predict_proba(p) for t, p in zip(temps, P)])
    inner = make_combiner(method, thresholds=thresholds).fit(scaled, y, member_names=["a", "b", "c"])
    output = TemperatureScaling().fit(inner.predict_proba(scaled), y)
    fitted = Calibrated(inner, temps, output)
    path = fitted.save(tmp_path / f"{method}.json")
    loaded = load_combiner(path)
    assert isinstance(loaded, Calibrated) and loaded.member_names_ == ["a", "b", "c"] and loaded.n_classes_ == 5
    assert loaded.temperatures_ == fitted.temperatures_
    new = np.stack([_over_confident(n=50, seed=20 + i)[0] for i in range(3)])
    for data in (P, new):
        assert loaded.predict_proba(data).tobytes() == fitted.predict_proba(data).tobytes()
        np.testing.assert_array_equal(loaded.predict(data), fitted.predict(data))
        np.testing.assert_array_equal(fitted.predict(data), inner.predict(fitted.scale_members(data)))
    np.testing.assert_allclose(fitted.predict_proba(P).sum(axis=1), 1.0)
    assert loaded.save(tmp_path / "again.json").read_text() == path.read_text()


def test_calibrated_checks_member_counts() -> None:
    P, y = np.stack([_over_confident(seed=i)[0] for i in range(2)]), _over_confident()[1]
    inner = make_combiner("soft").fit(P, y)
    t = TemperatureScaling().fit(P[0], y)
    with pytest.raises(UserError, match="2 members but 1 member temperatures"):
        Calibrated(inner, [t], t)
    with pytest.raises(UserError, match="P has 3 members but the calibrated combiner was fitted on 2"):
        Calibrated(inner, [t, t], t).predict_proba(np.concatenate([P, P[:1]]))
