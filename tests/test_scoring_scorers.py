"""The Scorer interface, the on-chain mapping, the registry, and scorers feeding BlockFlow's median rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import din_lab.scoring as scoring
from din_lab.errors import ConfigError
from din_lab.scoring import (
    EXACT_THRESHOLD,
    SCORERS,
    AccuracyScorer,
    CachedUtility,
    LeaveOneOutScorer,
    Scorer,
    ScoreReport,
    ShapleyScorer,
    blockflow_scores,
    blockflow_scores_fixed,
    exact_shapley,
    make_scorer,
    onchain_scores,
    to_fixed,
)
from tests.test_scoring_shapley import averaged_models, saturating

# ---------------------------------------------------------------------------------------------
# on-chain mapping


@settings(max_examples=200, deadline=None)
@given(arrays(float, st.integers(1, 20), elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)))
def test_onchain_scores_are_in_unit_interval(values):
    s = onchain_scores(values)
    assert s.shape == values.shape
    assert np.all((s >= 0.0) & (s <= 1.0))
    assert np.all(s[values <= 0] == 0.0)
    if np.any(values > 0):
        assert s.max() == 1.0 and s[np.argmax(values)] == 1.0
        pos = values > 0
        # proportions among positive values are kept (the contract pays in proportion to scores)
        np.testing.assert_allclose(s[pos] * values.max(), values[pos], rtol=1e-12, atol=1e-300)
    else:
        assert np.all(s == 0.0)


@pytest.mark.parametrize("bad", [[[0.1, 0.2]], [np.nan, 0.1], [np.inf]])
def test_onchain_scores_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        onchain_scores(bad)


# ---------------------------------------------------------------------------------------------
# scorers


def test_accuracy_scorer_is_each_participants_own_accuracy():
    acc = [0.9, 0.5, 1.2, -0.1]
    u = CachedUtility(lambda c: acc[c[0]] if len(c) == 1 else 0.0, participants=4)
    report = AccuracyScorer().report(utility=u, participants=4)
    np.testing.assert_allclose(report.raw, acc)
    np.testing.assert_allclose(report.scores, [0.9, 0.5, 1.0, 0.0])
    assert report.utility_calls == 4 == u.calls and report.shapley is None and report.scorer == "accuracy"


def test_shapley_scorer_is_exact_up_to_the_threshold_and_tmc_beyond():
    strengths = [0.8, 0.5, 0.3, 0.3, 0.2, 0.1, 0.0, 0.05, 0.4, 0.2, 0.1, 0.3]
    scorer = ShapleyScorer(tolerance=0.05)
    small = scorer.report(utility=saturating(strengths[:EXACT_THRESHOLD]), participants=EXACT_THRESHOLD)
    assert small.shapley.method == "exact" and small.shapley.converged and small.shapley.permutations == 0
    assert small.utility_calls == 1 << EXACT_THRESHOLD
    np.testing.assert_array_equal(small.raw, exact_shapley(saturating(strengths[:EXACT_THRESHOLD]), EXACT_THRESHOLD))
    big = scorer.report(utility=saturating(strengths), participants=len(strengths), seed=3)
    assert big.shapley.method == "tmc" and big.shapley.converged
    exact = exact_shapley(saturating(strengths), len(strengths))
    assert np.max(np.abs(big.raw - exact)) <= big.shapley.tolerance + scorer.truncation * abs(big.shapley.total)
    assert big.scores[6] == 0.0  # zero strength: a null player
    again = scorer.report(utility=saturating(strengths), participants=len(strengths), seed=3)
    np.testing.assert_array_equal(big.scores, again.scores)


def test_free_rider_and_poisoner_score_zero():
    utility, n = averaged_models()
    free_rider, poisoner = n - 2, n - 1
    for scorer in (ShapleyScorer(), LeaveOneOutScorer(), ShapleyScorer(exact_threshold=0, tolerance=0.02)):
        s = scorer.score(utility=utility, participants=n, seed=0)
        assert np.all((s >= 0) & (s <= 1)) and s.max() == 1.0
        # the free-rider only rescales the average: null up to rounding
        assert s[free_rider] == pytest.approx(0.0, abs=1e-12) and s[poisoner] == 0.0, type(scorer).__name__
        assert s[0] > 0.5  # the least noisy honest participant is a top contributor


def test_leave_one_out_scorer():
    w = [0.3, -0.2, 0.0, 0.6]
    report = LeaveOneOutScorer().report(utility=lambda c: float(sum(w[i] for i in c)), participants=4)
    np.testing.assert_allclose(report.raw, w, atol=1e-12)
    np.testing.assert_allclose(report.scores, [0.5, 0.0, 0.0, 1.0], atol=1e-12)
    assert report.utility_calls == 5


def test_reports_are_frozen_and_score_returns_a_copy():
    scorer = ShapleyScorer()
    report = scorer.report(utility=lambda c: float(len(c)), participants=3)
    assert isinstance(report, ScoreReport)
    with pytest.raises(ValueError):
        report.scores[0] = 0.5
    with pytest.raises(AttributeError):
        report.scorer = "x"  # type: ignore[misc]
    s = scorer.score(utility=lambda c: float(len(c)), participants=3)
    s[0] = 0.0  # writable
    np.testing.assert_allclose(report.scores, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize("participants", [0, -2, 1.5, True])
def test_scorers_reject_bad_participant_counts(name, participants):
    with pytest.raises(ConfigError, match="participants"):
        make_scorer(name).score(utility=lambda c: 0.5, participants=participants)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorers_reject_bad_seeds(name):
    with pytest.raises(ConfigError, match="seed"):
        make_scorer(name).score(utility=lambda c: 0.5, participants=3, seed=-1)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_single_participant(name):
    s = make_scorer(name).score(utility=lambda c: 0.8 if c else 0.1, participants=1)
    np.testing.assert_allclose(s, [0.8] if name == "accuracy" else [1.0])


# ---------------------------------------------------------------------------------------------
# registry


def test_registry():
    assert set(SCORERS) == {"accuracy", "shapley", "loo"}
    for name, cls in SCORERS.items():
        scorer = make_scorer(name)
        assert isinstance(scorer, cls) and isinstance(scorer, Scorer) and scorer.name == name
    custom = make_scorer("shapley", tolerance=0.05, exact_threshold=4)
    assert custom == ShapleyScorer(tolerance=0.05, exact_threshold=4)


def test_make_scorer_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="scorer 'median-of-means'"):
        make_scorer("median-of-means")
    with pytest.raises(ConfigError, match="scorer"):
        make_scorer(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scorer 'loo'"):
        make_scorer("loo", tolerance=0.1)


@pytest.mark.parametrize(("option", "value"), [
    ("exact_threshold", scoring.MAX_EXACT_PARTICIPANTS + 1), ("exact_threshold", -1), ("tolerance", 0.0),
    ("truncation", 1.5), ("min_permutations", 1), ("max_permutations", 10),
])
def test_shapley_scorer_validates_its_options(option, value):
    with pytest.raises(ConfigError, match=option):
        make_scorer("shapley", **{option: value})


def test_public_api():
    for name in scoring.__all__:
        assert hasattr(scoring, name), name


# ---------------------------------------------------------------------------------------------
# evaluators' scores through BlockFlow's median rule


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_evaluator_scores_reduce_with_blockflow(name):
    """Five evaluators, each with its own test set (a slightly perturbed truth), score the same
    eight participants; the median rule's model scores give the free-rider and the poisoner
    nothing (Shapley, LOO) or chance level (accuracy), and the contract's fixed-point reduction
    agrees with the float one. (Shapley and LOO scores, scaled by the best contributor, move more
    between test sets than accuracies: with larger perturbations honest evaluators agree less.)"""
    rng = np.random.default_rng(5)
    rows = []
    for e in range(5):
        shift = rng.normal(scale=0.05, size=10)
        utility, n = averaged_models(target=lambda truth, s=shift: truth + s)
        rows.append(make_scorer(name).score(utility=utility, participants=n, seed=e))
    matrix = np.array(rows)
    reduced = blockflow_scores(matrix)
    fixed_model, fixed_evaluator, _ = blockflow_scores_fixed(to_fixed(matrix))
    np.testing.assert_allclose(np.array(fixed_model) / 1e18, reduced.model, atol=1e-15)
    np.testing.assert_allclose(np.array(fixed_evaluator) / 1e18, reduced.evaluator, atol=1e-15)
    assert np.all(reduced.evaluator > 0.6)  # honest evaluators agree
    if name == "accuracy":
        # an individual model: the free-rider's zero model scores 0.1 (cos 0), the poisoner's chance level
        assert reduced.model[-1] == pytest.approx(0.1) and reduced.model[-2] == pytest.approx(0.1)
    else:
        assert reduced.model[-1] == 0.0 and reduced.model[-2] == pytest.approx(0.0, abs=1e-12)
        assert reduced.model[:-2].max() == 1.0
