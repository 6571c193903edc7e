"""Our BlockFlow scoring against BlockFlow's published results (tests/data/blockflow, vendored with
their provenance), and the contract's on-chain reduction against the Python one, in fixed point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from din_lab.chain import connect
from din_lab.scoring import blockflow_scores, blockflow_scores_fixed, to_fixed
from tests.helpers import BACKENDS

CONFORMANCE = Path(__file__).resolve().parent / "data" / "blockflow"
MATRICES = sorted(CONFORMANCE.glob("**/score_matrix_dp_round_*.csv"))


def _load(path: Path) -> np.ndarray:
    return np.atleast_1d(np.loadtxt(path, delimiter=","))


def _published(matrix_path: Path) -> tuple[np.ndarray, ...]:
    r = matrix_path.stem.rsplit("_", 1)[1]
    d = matrix_path.parent
    return tuple(_load(d / f"{kind}_dp_round_{r}.csv") for kind in ("model_scores", "auditor_scores", "overall_scores"))


def test_conformance_data_is_present():
    assert len(MATRICES) >= 102, f"expected BlockFlow's published matrices under {CONFORMANCE}"


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_reproduces_blockflow_published_scores(path):
    s = np.atleast_2d(np.loadtxt(path, delimiter=","))
    model, auditor, overall = _published(path)
    got = blockflow_scores(s)
    np.testing.assert_allclose(got.model, model, atol=1e-9, rtol=0)
    np.testing.assert_allclose(got.evaluator, auditor, atol=1e-9, rtol=0)
    np.testing.assert_allclose(got.overall, overall, atol=1e-9, rtol=0)
    # the fixed-point reduction agrees with the float one to within the 1e-18 grid (well inside 1e-9)
    m, a, o = blockflow_scores_fixed(to_fixed(s))
    np.testing.assert_allclose(np.array(m) / 1e18, model, atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.array(a) / 1e18, auditor, atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.array(o) / 1e18, overall, atol=1e-9, rtol=0)


def test_consensus_scores_track_ground_truth():
    """BlockFlow reports mean |model score - ground truth| < 0.67% on income data; check ours."""
    diffs = []
    for path in MATRICES:
        if "adult" not in str(path) or "dishonest" in str(path):
            continue
        r = path.stem.rsplit("_", 1)[1]
        truth = _load(path.parent / f"ground_truth_dp_round_{r}.csv")
        diffs.append(np.abs(blockflow_scores(np.loadtxt(path, delimiter=",", ndmin=2)).model - truth).mean())
    assert np.mean(diffs) < 0.0067


def _deployed_reference(url: str):
    chain = connect(url, accounts=1)
    return chain, chain.deploy("BlockFlowReference", sender=chain.accounts[0])


@pytest.fixture(scope="module")
def reference():
    return _deployed_reference("embedded")


@pytest.fixture(scope="module")
def anvil_reference(anvil_url):
    return _deployed_reference(anvil_url)


ROWS = {p: np.atleast_2d(np.loadtxt(p, delimiter=",")).shape[0] for p in MATRICES}
ON_CHAIN = [p for p in MATRICES if ROWS[p] <= 50]
"""Every published matrix whose reduction fits a 30M-gas call (up to 50 x 50; the 100 x 100 ones run out
of gas)."""


def _reduces_like_python(chain, ref, path: Path) -> None:
    fixed = to_fixed(np.loadtxt(path, delimiter=",", ndmin=2))
    on_chain = chain.call(ref.functions.scores(fixed))
    m, a, o = blockflow_scores_fixed(fixed)
    assert list(on_chain[0]) == m and list(on_chain[1]) == a and list(on_chain[2]) == o


@pytest.mark.skipif("anvil" not in BACKENDS, reason="DIN_LAB_TEST_BACKENDS leaves anvil out")
@pytest.mark.parametrize("path", ON_CHAIN, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_contract_reduction_equals_python_on_published_matrices(anvil_reference, path):
    """Every published matrix that fits a call, reduced by the contract on anvil (about 0.05 s each:
    py-evm takes 12-17 s for a 50 x 50 one, so the embedded chain runs one, below, and the property
    test's small matrices)."""
    _reduces_like_python(*anvil_reference, path)


@pytest.mark.slow
def test_contract_reduction_on_the_embedded_chain_at_full_size(reference):
    """The same bytecode on py-evm: one 50 x 50 published matrix, to the wei."""
    _reduces_like_python(*reference, max(ON_CHAIN, key=lambda p: (ROWS[p], str(p))))


scores = st.integers(0, 10**18)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9).flatmap(lambda r: st.integers(1, 12).flatmap(
    lambda c: st.lists(st.lists(scores, min_size=c, max_size=c), min_size=r, max_size=r))))
def test_contract_reduction_equals_python_property(reference, matrix):
    chain, ref = reference
    model, evaluator, overall = chain.call(ref.functions.scores(matrix))
    m, a, o = blockflow_scores_fixed(matrix)
    assert list(model) == m and list(evaluator) == a
    assert list(overall) == (o if o is not None else [])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 15), st.integers(1, 15)), elements=st.floats(0, 1)))
def test_scoring_invariants(s):
    got = blockflow_scores(s)
    # a model score is one of the reported scores and lies between the column's extremes
    assert np.all(got.model >= s.min(axis=0)) and np.all(got.model <= s.max(axis=0))
    assert np.all((got.evaluator >= 0) & (got.evaluator <= 1))
    # an evaluator whose every report equals the median scores 1
    exact = np.all(s == got.model[None, :], axis=1)
    assert np.all(got.evaluator[exact] == 1.0)


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 15).flatmap(lambda n: st.tuples(
    arrays(np.float64, (n, 4), elements=st.floats(0.4, 0.6)), st.integers(0, (n - 1) // 2 - 0))))
def test_minority_extreme_scorers_cannot_move_the_median_outside_the_honest_range(args):
    """Paper section 6: with strictly fewer than half malicious evaluators reporting 1.0/0.0,
    each median stays between the honest evaluators' min and max."""
    honest, k = args
    n = honest.shape[0]
    k = min(k, (n - 1) // 2)
    s = honest.copy()
    s[:k, :2] = 1.0
    s[:k, 2:] = 0.0
    m = blockflow_scores(s).model
    h = honest[k:]
    assert np.all(m >= h.min(axis=0) - 1e-12) and np.all(m <= h.max(axis=0) + 1e-12)
