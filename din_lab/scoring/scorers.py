"""The one ``Scorer`` interface: from an evaluator's utility to a score in [0, 1] per participant.

An evaluator turns what it can measure (a :data:`~din_lab.scoring.utility.Utility` over
coalitions of participants) into one score per participant in [0, 1]; the contract reduces
the evaluators' score matrix with BlockFlow's median rule and pays participants in proportion
to the reduced scores.

Mapping values to on-chain scores (:func:`onchain_scores`): Shapley and leave-one-out values
are in utility units and may be negative (a poisoner lowers accuracy). They are mapped by
``score_i = max(v_i, 0) / max_j max(v_j, 0)`` (all zeros when no value is positive): in [0, 1],
a harmful or free-riding participant (value <= 0) gets 0, the best contributor gets 1, and
among participants with positive values the payout proportions of one evaluator equal the
value proportions. Scaling by the best contributor rather than by ``U(N) - U(empty)`` keeps
each evaluator's scores on the same [0, 1] range whatever its test set, which is what the
median rule and its agreement penalty compare.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from din_lab.errors import ConfigError
from din_lab.scoring.shapley import (
    MAX_EXACT_PARTICIPANTS,
    TMC_TOLERANCE,
    TMC_TRUNCATION,
    ShapleyEstimate,
    exact_shapley,
    leave_one_out,
    tmc_shapley,
)
from din_lab.scoring.utility import Utility, cached, check_int, check_number

logger = logging.getLogger(__name__)

EXACT_THRESHOLD = 10
""":class:`ShapleyScorer` computes exact values up to this many participants, TMC beyond."""


def onchain_scores(values: object) -> np.ndarray:
    """Contribution values (any real numbers) as on-chain scores in [0, 1].

    ``max(v, 0) / max(max(v), 0)``, and all zeros when no value is positive: negatives and
    zeros (harmful and free-riding participants) score 0, the best contributor scores 1.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ConfigError(f"values must be a finite 1-D array, got shape {v.shape}")
    positive = np.maximum(v, 0.0)
    top = positive.max() if positive.size else 0.0
    if top <= 0.0:
        return np.zeros_like(positive)
    return np.minimum(positive / top, 1.0)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, kw_only=True)
class ScoreReport:
    """What a scorer produced: ``scores`` in [0, 1] (what goes on chain), ``raw`` values before
    the mapping (accuracies, Shapley or leave-one-out values), the utility evaluations spent,
    and for Shapley the full :class:`ShapleyEstimate`. Arrays are read-only."""

    scorer: str
    scores: np.ndarray
    raw: np.ndarray
    utility_calls: int
    shapley: ShapleyEstimate | None = None


class Scorer(ABC):
    """Maps a utility over ``participants`` participants to one score in [0, 1] each.

    Scorers only ever call the utility, so where its value comes from (a plaintext test set, a
    CKKS-encrypted one evaluated homomorphically, a remote evaluator) is the caller's business.
    """

    name: ClassVar[str]

    @abstractmethod
    def report(self, *, utility: Utility, participants: int, seed: int = 0) -> ScoreReport:
        """Scores with their raw values and cost; ``seed`` fixes any sampling (bit for bit)."""

    def score(self, *, utility: Utility, participants: int, seed: int = 0) -> np.ndarray:
        """The on-chain scores in [0, 1], one per participant (a writable copy)."""
        return np.array(self.report(utility=utility, participants=participants, seed=seed).scores)


@dataclass(frozen=True, kw_only=True)
class AccuracyScorer(Scorer):
    """BlockFlow's own scheme: participant ``j`` scores ``utility((j,))`` (its model's accuracy on
    the evaluator's data), clipped to [0, 1]. ``n`` utility evaluations; deterministic."""

    name: ClassVar[str] = "accuracy"

    def report(self, *, utility: Utility, participants: int, seed: int = 0) -> ScoreReport:
        u = cached(utility, participants)
        check_int("seed", seed, minimum=0)
        before = u.calls
        raw = np.array([u.value((j,)) for j in range(u.participants)])
        if np.any((raw < 0.0) | (raw > 1.0)):
            logger.warning("accuracy scorer: utility values outside [0, 1] clipped: %s", raw)
        return ScoreReport(scorer=self.name, scores=_frozen(np.clip(raw, 0.0, 1.0)), raw=_frozen(raw),
                           utility_calls=u.calls - before)


@dataclass(frozen=True, kw_only=True)
class ShapleyScorer(Scorer):
    """Shapley values mapped by :func:`onchain_scores`: exact up to ``exact_threshold``
    participants, else :func:`tmc_shapley` with ``tolerance``, ``truncation``,
    ``max_permutations``, ``min_permutations`` and ``antithetic`` (seeded by ``seed``)."""

    name: ClassVar[str] = "shapley"
    exact_threshold: int = EXACT_THRESHOLD
    tolerance: float = TMC_TOLERANCE
    truncation: float = TMC_TRUNCATION
    max_permutations: int = 5000
    min_permutations: int = 100
    antithetic: bool = False

    def __post_init__(self) -> None:
        check_int("exact_threshold", self.exact_threshold, minimum=0)
        if self.exact_threshold > MAX_EXACT_PARTICIPANTS:
            raise ConfigError(f"exact_threshold must be at most {MAX_EXACT_PARTICIPANTS}, got {self.exact_threshold}")
        check_number("tolerance", self.tolerance, low=0.0, high=float("inf"), low_open=True)
        check_number("truncation", self.truncation, low=0.0, high=1.0, low_open=False)
        check_int("min_permutations", self.min_permutations, minimum=2)
        check_int("max_permutations", self.max_permutations, minimum=self.min_permutations)

    def estimate(self, *, utility: Utility, participants: int, seed: int = 0) -> ShapleyEstimate:
        """The Shapley values themselves (exact or TMC, as configured)."""
        u = cached(utility, participants)
        check_int("seed", seed, minimum=0)
        n = u.participants
        if n > self.exact_threshold:
            return tmc_shapley(u, n, seed=seed, tolerance=self.tolerance, truncation=self.truncation,
                               max_permutations=self.max_permutations, min_permutations=self.min_permutations,
                               antithetic=self.antithetic)
        before = u.calls
        values = exact_shapley(u, n)
        total = u.value(tuple(range(n))) - u.value(())
        return ShapleyEstimate(values=values, std_errors=np.zeros(n), permutations=0, utility_calls=u.calls - before,
                               converged=True, tolerance=0.0, total=total, method="exact")

    def report(self, *, utility: Utility, participants: int, seed: int = 0) -> ScoreReport:
        est = self.estimate(utility=utility, participants=participants, seed=seed)
        return ScoreReport(scorer=self.name, scores=_frozen(onchain_scores(est.values)), raw=_frozen(est.values),
                           utility_calls=est.utility_calls, shapley=est)


@dataclass(frozen=True, kw_only=True)
class LeaveOneOutScorer(Scorer):
    """Leave-one-out values ``U(N) - U(N - j)`` mapped by :func:`onchain_scores`; ``n + 1``
    utility evaluations; deterministic. Redundant participants (same data) all score about 0."""

    name: ClassVar[str] = "loo"

    def report(self, *, utility: Utility, participants: int, seed: int = 0) -> ScoreReport:
        u = cached(utility, participants)
        check_int("seed", seed, minimum=0)
        before = u.calls
        raw = leave_one_out(u, u.participants)
        return ScoreReport(scorer=self.name, scores=_frozen(onchain_scores(raw)), raw=_frozen(raw),
                           utility_calls=u.calls - before)


SCORERS: dict[str, type[Scorer]] = {
    AccuracyScorer.name: AccuracyScorer,
    ShapleyScorer.name: ShapleyScorer,
    LeaveOneOutScorer.name: LeaveOneOutScorer,
}
"""Scorer classes by name: ``"accuracy"``, ``"shapley"``, ``"loo"``."""


def make_scorer(name: str, **options: Any) -> Scorer:
    """The scorer registered as ``name`` in :data:`SCORERS`, built with ``options``.

    An unknown name or option raises :class:`ConfigError` naming ``scorer``.
    """
    cls = SCORERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown scorer {name!r}: choose one of {', '.join(sorted(SCORERS))}")
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"scorer {name!r} does not accept options {sorted(options)}: {e}") from e
