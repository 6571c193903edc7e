"""Shapley values (exact and TMC) and leave-one-out against brute force and the Shapley axioms.

Games are utilities over coalitions given as tables indexed by bitmask (bit i = participant i).
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.errors import ConfigError
from din_lab.scoring import (
    MAX_EXACT_PARTICIPANTS,
    TMC_TOLERANCE,
    TMC_TRUNCATION,
    TMC_Z,
    CachedUtility,
    exact_shapley,
    leave_one_out,
    tmc_shapley,
)

# ---------------------------------------------------------------------------------------------
# games


def mask_of(coalition: tuple[int, ...]) -> int:
    return sum(1 << i for i in coalition)


def table_game(values) -> callable:
    """A utility from a table of 2**n values indexed by coalition bitmask."""
    table = [float(v) for v in values]
    return lambda c: table[mask_of(c)]


def brute_force_shapley(utility, n: int) -> np.ndarray:
    """The permutation definition: the mean marginal contribution over all n! join orders."""
    phi = np.zeros(n)
    perms = 0
    for perm in itertools.permutations(range(n)):
        prefix: list[int] = []
        previous = utility(())
        for i in perm:
            prefix.append(i)
            current = utility(tuple(sorted(prefix)))
            phi[i] += current - previous
            previous = current
        perms += 1
    return phi / perms


def weighted_majority(weights, quota):
    """1 if the coalition's weight reaches the quota, else 0 (a voting game: all-or-nothing marginals)."""
    return lambda c: 1.0 if sum(weights[i] for i in c) >= quota else 0.0


def saturating(strengths, *, chance=0.1, ceiling=0.9):
    """An accuracy-like curve: chance level for nobody, saturating towards the ceiling with data."""
    return lambda c: chance + (ceiling - chance) * (1.0 - math.exp(-sum(strengths[i] for i in c)))


def averaged_models(*, seed: int = 1, dim: int = 10, noise=(0.5, 0.8, 1.0, 1.5, 2.0, 0.7), target=None):
    """Accuracy of the average of the coalition's model vectors, by its alignment with the truth.

    Honest participants hold truth + noise; then a free-rider (zero update: it only rescales the
    average, so it never changes the accuracy) and a poisoner (-2 * truth). Not monotone.
    """
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=dim)
    models = [truth + rng.normal(scale=s, size=dim) for s in noise] + [np.zeros(dim), -2.0 * truth]
    goal = truth if target is None else target(truth)

    def utility(c):
        if not c:
            return 0.1
        mean = np.mean([models[i] for i in c], axis=0)
        norm = np.linalg.norm(mean)
        cos = float(mean @ goal / (norm * np.linalg.norm(goal))) if norm > 0 else 0.0
        return 0.1 + 0.85 * max(cos, 0.0) ** 2

    return utility, len(models)


GAMES = {
    "weighted-majority": (weighted_majority([4, 3, 2, 2, 1, 1, 1, 0], 8), 8, True),
    "saturating": (saturating([0.8, 0.5, 0.3, 0.3, 0.2, 0.1, 0.0, 0.05]), 8, True),
    "averaged-models": (*averaged_models(), False),
}


@st.composite
def games(draw, min_n=1, max_n=5):
    n = draw(st.integers(min_n, max_n))
    values = draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1 << n, max_size=1 << n))
    return n, values


# ---------------------------------------------------------------------------------------------
# exact


@settings(max_examples=60, deadline=None)
@given(games())
def test_exact_matches_brute_force_permutations(game):
    n, values = game
    u = table_game(values)
    np.testing.assert_allclose(exact_shapley(u, n), brute_force_shapley(u, n), rtol=0, atol=1e-9)


def test_glove_game_closed_form():
    # participant 0 holds a left glove, 1 and 2 right gloves; a pair is worth 1
    u = lambda c: 1.0 if 0 in c and (1 in c or 2 in c) else 0.0  # noqa: E731
    np.testing.assert_allclose(exact_shapley(u, 3), [2 / 3, 1 / 6, 1 / 6], atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(games(min_n=2))
def test_symmetry(game):
    n, base = game
    # make 0 and 1 interchangeable: the value depends on the coalition only up to swapping them

    def swap(m):
        b0, b1 = m & 1, (m >> 1) & 1
        return (m & ~3) | (b0 << 1) | b1

    values = [base[min(m, swap(m))] for m in range(1 << n)]
    phi = exact_shapley(table_game(values), n)
    assert phi[0] == pytest.approx(phi[1], abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(min_n=2), st.data())
def test_null_player_gets_zero(game, data):
    n, base = game
    k = data.draw(st.integers(0, n - 1))
    values = [base[m & ~(1 << k)] for m in range(1 << n)]  # k never changes the value
    phi = exact_shapley(table_game(values), n)
    assert phi[k] == 0.0


@settings(max_examples=60, deadline=None)
@given(games())
def test_efficiency(game):
    n, values = game
    phi = exact_shapley(table_game(values), n)
    assert phi.sum() == pytest.approx(values[-1] - values[0], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(games(), st.data())
def test_additivity(game, data):
    n, a = game
    b = data.draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1 << n, max_size=1 << n))
    both = [x + y for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(exact_shapley(table_game(both), n),
                               exact_shapley(table_game(a), n) + exact_shapley(table_game(b), n), atol=1e-9)


def test_additive_game_at_the_limit():
    w = np.arange(1.0, MAX_EXACT_PARTICIPANTS + 1)
    u = CachedUtility(lambda c: float(sum(w[i] for i in c)), participants=MAX_EXACT_PARTICIPANTS)
    np.testing.assert_allclose(exact_shapley(u, MAX_EXACT_PARTICIPANTS), w, atol=1e-9)
    assert u.calls == 1 << MAX_EXACT_PARTICIPANTS


def test_exact_refuses_too_many_participants_without_evaluating():
    calls = []
    with pytest.raises(ConfigError, match="participants"):
        exact_shapley(lambda c: calls.append(c) or 0.0, MAX_EXACT_PARTICIPANTS + 1)
    assert calls == []


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3"])
def test_bad_participant_counts(n):
    with pytest.raises(ConfigError, match="participants"):
        exact_shapley(lambda c: 0.0, n)


def test_each_coalition_is_evaluated_once():
    seen = []
    u = CachedUtility(lambda c: seen.append(c) or float(len(c)), participants=4)
    exact_shapley(u, 4)
    exact_shapley(u, 4)
    leave_one_out(u, 4)
    assert len(seen) == len(set(seen)) == 16 == u.calls
    assert all(list(c) == sorted(c) for c in seen)


# ---------------------------------------------------------------------------------------------
# TMC


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(GAMES))
def test_tmc_converges_to_exact_within_stated_tolerance(name, seed):
    """Untruncated: sampling error only, and the stated tolerance bounds it."""
    utility, n, _ = GAMES[name]
    exact = exact_shapley(utility, n)
    est = tmc_shapley(utility, n, seed=seed, truncation=0.0, max_permutations=50_000)
    scale = abs(utility(tuple(range(n))) - utility(()))
    assert est.converged and est.method == "tmc"
    assert est.tolerance == pytest.approx(TMC_TOLERANCE * scale)
    assert np.all(TMC_Z * est.std_errors <= est.tolerance)
    assert np.max(np.abs(est.values - exact)) <= est.tolerance
    assert est.values.sum() == pytest.approx(exact.sum(), abs=1e-9)  # efficiency holds per permutation


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", [g for g, (_, _, monotone) in GAMES.items() if monotone])
def test_tmc_with_truncation_within_tolerance_plus_truncation_on_monotone_games(name, seed):
    utility, n, _ = GAMES[name]
    exact = exact_shapley(utility, n)
    est = tmc_shapley(utility, n, seed=seed, max_permutations=50_000)
    scale = abs(est.total)
    assert est.converged
    assert np.max(np.abs(est.values - exact)) <= (TMC_TOLERANCE + TMC_TRUNCATION) * scale


def test_tmc_coverage_matches_the_stated_confidence():
    """Over many seeds, a converged estimate is within the tolerance for (nearly) every participant."""
    utility, n, _ = GAMES["saturating"]
    exact = exact_shapley(utility, n)
    u = CachedUtility(utility, participants=n)
    inside = []
    for seed in range(40):
        est = tmc_shapley(u, n, seed=seed, tolerance=0.05, truncation=0.0, min_permutations=20)
        assert est.converged
        inside.extend(np.abs(est.values - exact) <= est.tolerance)
    assert np.mean(inside) >= 0.99


def test_tmc_is_reproducible_from_its_seed():
    utility, n, _ = GAMES["averaged-models"]
    a = tmc_shapley(utility, n, seed=7, tolerance=0.05)
    b = tmc_shapley(utility, n, seed=7, tolerance=0.05)
    c = tmc_shapley(utility, n, seed=8, tolerance=0.05)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.std_errors, b.std_errors)
    assert a.permutations == b.permutations
    assert not np.array_equal(a.values, c.values)


@settings(max_examples=60, deadline=None)
@given(games(min_n=1, max_n=6), st.floats(0.0, 0.9), st.integers(0, 2**32 - 1))
def test_tmc_efficiency_within_truncation(game, truncation, seed):
    n, values = game
    est = tmc_shapley(table_game(values), n, seed=seed, truncation=truncation, min_permutations=2,
                      max_permutations=20)
    total = values[-1] - values[0]
    assert est.total == total
    assert abs(est.values.sum() - total) <= truncation * abs(total) + 1e-9


@settings(max_examples=30, deadline=None)
@given(games(min_n=2, max_n=6), st.data())
def test_tmc_null_player_gets_exactly_zero(game, data):
    n, base = game
    k = data.draw(st.integers(0, n - 1))
    values = [base[m & ~(1 << k)] for m in range(1 << n)]
    est = tmc_shapley(table_game(values), n, seed=data.draw(st.integers(0, 1000)), min_permutations=2,
                      max_permutations=30)
    assert est.values[k] == 0.0 and est.std_errors[k] == 0.0


def test_tmc_symmetric_players_agree_within_tolerance():
    utility, n, _ = GAMES["weighted-majority"]  # participants 2 and 3 (weight 2), 4-6 (weight 1) are symmetric
    est = tmc_shapley(utility, n, seed=0, tolerance=0.02, truncation=0.0, max_permutations=50_000)
    assert abs(est.values[2] - est.values[3]) <= 2 * est.tolerance
    assert np.ptp(est.values[4:7]) <= 2 * est.tolerance
    assert est.values[7] == 0.0


def test_truncation_saves_utility_evaluations():
    n = 12
    utility = lambda c: min(1.0, len(c) / 3)  # noqa: E731 - saturates after three participants
    plain = tmc_shapley(utility, n, seed=0, truncation=0.0, max_permutations=300)
    truncated = tmc_shapley(utility, n, seed=0, truncation=0.01, max_permutations=300)
    assert truncated.utility_calls < plain.utility_calls / 4
    assert truncated.utility_calls <= sum(math.comb(n, k) for k in range(4))


def test_tmc_reports_non_convergence(caplog):
    utility, n, _ = GAMES["weighted-majority"]
    with caplog.at_level(logging.WARNING, logger="din_lab.scoring.shapley"):
        est = tmc_shapley(utility, n, seed=0, tolerance=1e-6, min_permutations=10, max_permutations=10)
    assert not est.converged and est.permutations == 10
    assert "NOT converged" in caplog.text


def test_tmc_counts_only_new_evaluations():
    utility, n, _ = GAMES["saturating"]
    u = CachedUtility(utility, participants=n)
    exact_shapley(u, n)
    assert tmc_shapley(u, n, seed=0, tolerance=0.05).utility_calls == 0
    fresh = tmc_shapley(utility, n, seed=0, tolerance=0.05)
    assert 0 < fresh.utility_calls <= 1 << n


def test_tmc_handles_zero_total_value():
    # U(N) == U(empty) but participants matter: truncation must not cut every permutation at once
    u = table_game([0.0, 1.0, 1.0, 0.0])  # either alone is worth 1, together 0
    est = tmc_shapley(u, 2, seed=0, truncation=0.5, min_permutations=10, max_permutations=10)
    assert est.total == 0.0 and est.utility_calls == 4  # every permutation scanned to the end
    assert est.values.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.abs(est.values) > 0)  # marginals of +1 and -1 were credited, not truncated to 0


@pytest.mark.parametrize(("option", "value"), [
    ("tolerance", 0.0), ("tolerance", float("nan")), ("truncation", 1.0), ("truncation", -0.1),
    ("min_permutations", 1), ("max_permutations", 50), ("seed", -1), ("seed", 1.5),
])
def test_tmc_rejects_bad_options(option, value):
    with pytest.raises(ConfigError, match=option):
        tmc_shapley(lambda c: 0.0, 3, **{option: value})


# ---------------------------------------------------------------------------------------------
# leave-one-out


def test_leave_one_out_of_an_additive_game_is_the_weights():
    w = [0.3, -0.2, 0.0, 1.5]
    u = CachedUtility(lambda c: float(sum(w[i] for i in c)), participants=4)
    np.testing.assert_allclose(leave_one_out(u, 4), w, atol=1e-12)
    assert u.calls == 5


def test_leave_one_out_is_blind_to_redundancy_where_shapley_is_not():
    u = lambda c: 1.0 if 0 in c or 1 in c else 0.0  # noqa: E731 - participants 0 and 1 hold the same data
    np.testing.assert_allclose(leave_one_out(u, 3), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(exact_shapley(u, 3), [0.5, 0.5, 0.0])


def test_leave_one_out_single_participant():
    np.testing.assert_allclose(leave_one_out(lambda c: 0.1 + 0.7 * len(c), 1), [0.7])


# ---------------------------------------------------------------------------------------------
# CachedUtility


def test_cached_utility_normalises_and_validates_coalitions():
    seen = []
    u = CachedUtility(lambda c: seen.append(c) or 0.5, participants=3)
    assert u([2, 0]) == u((0, 2)) == 0.5
    assert seen == [(0, 2)] and u.calls == 1 and len(u) == 1
    for bad in ([0, 0], [3], [-1], ["x"], 5):
        with pytest.raises(ConfigError):
            u(bad)
    with pytest.raises(ConfigError, match="finite"):
        CachedUtility(lambda c: float("nan"), participants=2)(())
    with pytest.raises(ConfigError, match="not a number"):
        CachedUtility(lambda c: "high", participants=2)(())
    with pytest.raises(ConfigError, match="callable"):
        CachedUtility(0.5, participants=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="participants"):
        exact_shapley(CachedUtility(lambda c: 0.0, participants=2), 3)
