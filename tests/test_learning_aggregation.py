"""din_lab.learning.aggregation: FedAvg, hierarchical, robust rules, finiteness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from din_lab.errors import ConfigError
from din_lab.learning import aggregate, coordinate_median, fedavg, finite_mask, hierarchical, trimmed_mean

FLOATS = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def stacks(draw, min_rows=1):
    n = draw(st.integers(min_rows, 12))
    d = draw(st.integers(1, 20))
    return draw(arrays(np.float32, (n, d), elements=FLOATS))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.integers(1, 30), elements=FLOATS), st.integers(1, 8))
def test_identical_vectors_aggregate_to_themselves(v, n):
    m = np.tile(v, (n, 1))
    w = np.arange(1, n + 1)
    assert np.allclose(fedavg(m, weights=w), v, rtol=1e-6, atol=1e-4)
    assert np.array_equal(coordinate_median(m), v)
    assert np.array_equal(trimmed_mean(m, beta=0.2), v)
    assert np.allclose(hierarchical([m[: n // 2], m[n // 2 :]] if n > 1 else [m]), v, atol=1e-4)


@settings(max_examples=100, deadline=None)
@given(stacks(), st.data())
def test_fedavg_weights(m, data):
    n = m.shape[0]
    w = np.array(data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n).filter(lambda x: sum(x) > 0)))
    expected = (w[:, None] * m.astype(np.float64)).sum(axis=0) / w.sum()
    out = fedavg(m, weights=w)
    assert out.dtype == np.float32
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-3)
    # scaling all weights changes nothing; an integer weight k equals k copies of the row
    assert np.allclose(fedavg(m, weights=3 * w), out, rtol=1e-6, atol=1e-4)
    assert np.allclose(fedavg(np.repeat(m, w, axis=0)), out, rtol=1e-5, atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(stacks(min_rows=2), st.data())
def test_hierarchical_equals_flat_fedavg_with_sample_weights(m, data):
    n = m.shape[0]
    w = np.array(data.draw(st.lists(st.integers(1, 200), min_size=n, max_size=n)))
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1)))
    groups = np.split(m, cuts)
    weights = np.split(w, cuts)
    assert np.allclose(hierarchical(groups, weights=weights), fedavg(m, weights=w), rtol=1e-5, atol=1e-3)


def test_hierarchical_uneven_groups_differs_from_mean_of_means():
    a = np.zeros((1, 2), dtype=np.float32)
    b = np.ones((3, 2), dtype=np.float32)
    assert np.allclose(hierarchical([a, b]), 0.75)  # weighted by subgroup size, not 0.5
    assert np.allclose(hierarchical([a, b], weights=[[0], [1, 1, 1]]), 1.0)  # a zero-weight subgroup drops out


def test_robust_rules_resist_one_huge_outlier():
    rng = np.random.default_rng(0)
    honest = rng.normal(0.0, 0.1, size=(9, 50)).astype(np.float32)
    m = np.vstack([honest, np.full((1, 50), 1e9, dtype=np.float32)])
    assert np.abs(fedavg(m)).max() > 1e7
    assert np.abs(coordinate_median(m)).max() < 0.3
    assert np.abs(trimmed_mean(m, beta=0.1)).max() < 0.3
    assert np.abs(aggregate(m, rule="trimmed_mean:0.1")).max() < 0.3
    assert np.array_equal(aggregate(m, rule="median"), coordinate_median(m))
    assert np.array_equal(aggregate(m, rule="fedavg", weights=np.ones(10)), fedavg(m))


def test_median_and_trimmed_mean_definitions():
    m = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, -50.0]], dtype=np.float32)
    assert np.array_equal(coordinate_median(m), [2.5, 15.0])
    assert np.array_equal(trimmed_mean(m, beta=0.25), [2.5, 15.0])
    assert np.array_equal(trimmed_mean(m, beta=0.0), m.mean(axis=0))


def test_finite_mask_and_errors():
    m = np.array([[1.0, 2.0], [np.nan, 0.0], [np.inf, 1.0], [0.0, 0.0]])
    assert finite_mask(m).tolist() == [True, False, False, True]
    assert np.array_equal(fedavg(m[finite_mask(m)]), [0.5, 1.0])
    with pytest.raises(ConfigError, match="weights"):
        fedavg(np.ones((2, 3)), weights=[0, 0])
    with pytest.raises(ConfigError, match="weights"):
        fedavg(np.ones((2, 3)), weights=[1, -1])
    with pytest.raises(ConfigError, match="2 weights"):
        fedavg(np.ones((2, 3)), weights=[1, 1, 1])
    with pytest.raises(ConfigError, match="beta"):
        trimmed_mean(np.ones((4, 2)), beta=0.5)
    assert np.array_equal(trimmed_mean(np.ones((1, 2)), beta=0.49), [1.0, 1.0])  # beta < 0.5 always keeps a row
    with pytest.raises(ConfigError, match="rule"):
        aggregate(np.ones((2, 2)), rule="krum")
    with pytest.raises(ConfigError, match="rule"):
        aggregate(np.ones((2, 2)), rule="trimmed_mean:0.7")
    with pytest.raises(ConfigError, match="empty"):
        fedavg([])
