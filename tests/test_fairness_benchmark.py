"""benchmarks/fairness.py's what-if (f): a participation share recomputes pay from measured pay
vectors; it must keep the pool, the order of the paid and the unpaid at 0, and its trade-off table
must read the behaviours it is given."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fairness_benchmark", ROOT / "benchmarks" / "fairness.py")
fairness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fairness)

pays = st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1_000.0)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(pays, st.floats(0.0, 1.0))
def test_a_participation_share_keeps_the_pool_the_order_and_the_unpaid(rewards, share):
    r = np.array(rewards)
    out = fairness.with_participation_share(r, share)
    assert out.sum() == pytest.approx(r.sum(), rel=1e-12, abs=1e-9)
    assert (out[r == 0] == 0).all()
    paid = r > 0
    order = np.argsort(r[paid], kind="stable")
    assert (np.diff(out[paid][order]) >= -1e-9).all()  # never reverses an order
    if paid.any() and share == 1.0:
        np.testing.assert_allclose(out[paid], r.sum() / paid.sum())


def test_the_tradeoff_reads_each_behaviour():
    honest = [10.0, 20.0, 30.0, 40.0]
    def run(reward: list[float], bad: str) -> dict[str, list]:
        return {"reward": reward, "behaviour": [bad] + ["honest"] * (len(reward) - 1)}

    row = {"partition": "iid", "pay": {
        "clean": honest,
        "inverted-labels": run([0.0, 50.0, 50.0, 0.0], "inverted-labels"),
        "random-data": run([5.0, 45.0, 50.0, 0.0], "random-data"),
        "half-flipped-labels": run([1.0, 49.0, 50.0, 0.0], "half-flipped-labels")}}
    table = {t["share"]: t for t in fairness.share_tradeoff([row])}
    none = table[0.0]
    assert none["cv_iid"] == pytest.approx(np.std(honest) / np.mean(honest))
    assert none["lowest_iid_over_mean"] == pytest.approx(10.0 / 25.0)
    assert none["poisoners_inverted-labels_share"] == 0.0  # unpaid stays unpaid
    assert none["poisoners_random-data_share"] == pytest.approx(0.05)
    assert none["half_flipper_vs_honest"] == pytest.approx(1.0 / 33.0)  # the unpaid honest one counts in the mean
    half = table[0.5]
    assert half["cv_iid"] == pytest.approx(np.std(honest) / np.mean(honest) / 2)  # half of the spread around the mean
    assert half["poisoners_random-data_share"] == pytest.approx((0.5 * 100 / 3 + 0.5 * 5) / 100)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=3, max_size=30), st.floats(0.0, 0.5))
def test_the_contribution_cv_takes_out_only_the_reference_noise(values, error):
    v = np.array(values)
    raw, signal = fairness.contribution_cv(v, np.full(len(v), error))
    assert raw == pytest.approx(np.std(v) / np.mean(v))
    assert 0.0 <= signal <= raw + 1e-12
    assert signal == pytest.approx(np.sqrt(max(np.var(v) - error ** 2, 0.0)) / np.mean(v))
    assert fairness.contribution_cv(v, np.zeros(len(v)))[1] == pytest.approx(raw)  # no noise: nothing taken out
