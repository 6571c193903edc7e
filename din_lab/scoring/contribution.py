"""Task-wide contribution: every participant valued in one game, on one scale (issue 17).

Why not each subgroup's own game: a participant's Shapley value in a 5-player subgroup game,
divided by its subgroup's best value, depends on who else was drawn into the subgroup (the best
of every subgroup scored 1 whatever its worth; a subgroup of poisoners still paid). Here the
game is the whole task's final round:

- **players**: every participant whose final-round update is in an accepted subgroup's sum and
  survives :func:`screen_outputs`;
- **utility** of a coalition: the quality, on the owner's test set, of the previous global model
  moved by the coalition's sample-weighted mean update (FedAvg), the empty coalition being the
  previous global model itself: the same game in every subgroup, so values are on one scale;
- **values**: the scorer's (Shapley by default; TMC with antithetic permutations for more than
  :data:`~din_lab.scoring.scorers.EXACT_THRESHOLD` players), mapped to on-chain scores by
  :func:`~din_lab.scoring.scorers.onchain_scores` over *all* players: the task's best
  contributor scores 1, a participant with a value <= 0 scores 0. The contract pays the pool in
  proportion to the scores, so pay is proportional to positive task-wide value.

For a model whose outputs are affine in its parameters (logistic regression) a coalition's
outputs are the sample-weighted mean of its players' own outputs, so the game needs only the
previous model's outputs and each player's (``n + 1`` model evaluations, :class:`MixtureGame`).
That is what makes the game computable under encrypted evaluation: each committee evaluates its
subgroup's players on the encrypted test set, and the owner, who decrypts, sees every
subgroup's outputs and plays the task-wide game on them.

Screening in prediction space (:func:`screen_outputs`, paper section 9): a player whose change of
the test-set outputs points away from the task's coordinate-wise median change is left out of the
game (it scores 0). Random-data and label-flipping updates fail it; honest updates on skewed data
pass it (measured on digits in ``benchmarks/fairness.py``). Without it, a random-data update
earns a positive Shapley value on skewed data: pulling over-confident models towards uniform
outputs lowers the test loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from din_lab.errors import ConfigError
from din_lab.scoring.scorers import make_scorer, onchain_scores
from din_lab.scoring.utility import Coalition

MIN_PLAYERS_TO_SCREEN = 3
"""Fewer players than this are not screened: a median of one or two is no reference."""

COSINE_FRACTION = 0.5
"""A player is screened when its output change's cosine with the median change is below this
fraction of the players' median cosine (and below 0 always)."""

MIN_NORM_FRACTION = 0.1
"""A player whose output change is below this fraction of the median change's norm moved nothing
(a free rider resubmitting the model) and is screened."""

MAX_NORM_FACTOR = 3.0
"""A player whose output change is above this multiple of the median change's norm is screened (a
boosted update), as updates above 3x the median norm are screened in the plaintext aggregation."""


def screen_outputs(changes: np.ndarray) -> np.ndarray:
    """Which players to keep (a boolean mask) from their output changes on the test set.

    ``changes[i]`` is player ``i``'s change of the test-set outputs (its model's outputs minus the
    previous global model's, flattened). Kept: cosine with the coordinate-wise median change at
    least ``max(0, COSINE_FRACTION * median cosine)`` and norm between ``MIN_NORM_FRACTION`` and
    ``MAX_NORM_FACTOR`` times the median norm. Fewer than :data:`MIN_PLAYERS_TO_SCREEN` players are all kept.
    """
    c = np.asarray(changes, dtype=np.float64)
    if c.ndim != 2 or not np.all(np.isfinite(c)):
        raise ConfigError(f"output changes must be a finite 2-D array, got shape {c.shape}")
    n = c.shape[0]
    keep = np.ones(n, dtype=bool)
    if n < MIN_PLAYERS_TO_SCREEN:
        return keep
    median = np.median(c, axis=0)
    norms = np.linalg.norm(c, axis=1)
    ref = float(np.linalg.norm(median))
    median_norm = float(np.median(norms))
    if ref == 0.0 or median_norm == 0.0:
        return keep
    cosines = np.where(norms > 0, c @ median / np.maximum(norms, 1e-300) / ref, 0.0)
    floor = max(0.0, COSINE_FRACTION * float(np.median(cosines)))
    return (cosines >= floor) & (norms >= MIN_NORM_FRACTION * median_norm) & (norms <= MAX_NORM_FACTOR * median_norm)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(frozen=True, eq=False)
class MixtureGame:
    """The task-wide game of an output-affine model from its outputs alone.

    ``base`` is the previous global model's outputs on the test set (samples x classes),
    ``outputs[i]`` player ``i``'s model's, ``weights[i]`` its sample count, ``y`` the labels. A
    coalition's outputs are ``sum_i w_i outputs[i] / sum_i w_i`` (``base`` when empty); its
    utility is the negative mean cross-entropy (``metric="loss"``) or the accuracy
    (``metric="accuracy"``). Callable as a :data:`~din_lab.scoring.utility.Utility`.
    """

    base: np.ndarray
    outputs: np.ndarray
    weights: np.ndarray
    y: np.ndarray
    metric: str = "loss"

    def __post_init__(self) -> None:
        base = np.asarray(self.base, dtype=np.float64)
        outputs = np.asarray(self.outputs, dtype=np.float64).reshape(-1, *base.shape)
        weights = np.asarray(self.weights, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.int64)
        if base.ndim != 2 or len(y) != base.shape[0] or (len(y) and (y.min() < 0 or y.max() >= base.shape[1])):
            raise ConfigError(f"outputs of shape {base.shape} do not fit {len(y)} labels")
        if len(weights) != len(outputs) or np.any(weights <= 0) or not np.all(np.isfinite(outputs)):
            raise ConfigError("each player needs finite outputs and a positive sample count")
        if self.metric not in ("loss", "accuracy"):
            raise ConfigError(f"metric must be 'loss' or 'accuracy', got {self.metric!r}")
        for name, value in (("base", base), ("outputs", outputs), ("weights", weights), ("y", y)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def players(self) -> int:
        return len(self.weights)

    def logits(self, coalition: Coalition) -> np.ndarray:
        if not coalition:
            return self.base
        idx = list(coalition)
        w = self.weights[idx]
        return np.tensordot(w, self.outputs[idx], axes=1) / w.sum()

    def __call__(self, coalition: Coalition) -> float:
        z = self.logits(coalition)
        if self.metric == "accuracy":
            return float(np.mean(z.argmax(axis=1) == self.y))
        return float(_log_softmax(z)[np.arange(len(self.y)), self.y].mean())

    def changes(self) -> np.ndarray:
        """Each player's output change against the previous model, flattened (for :func:`screen_outputs`)."""
        return (self.outputs - self.base).reshape(self.players, -1)


TASK_SHAPLEY_OPTIONS = {"tolerance": 0.006, "min_permutations": 200, "max_permutations": 10_000, "antithetic": True}
"""The Shapley scorer's options in the task-wide game: exact up to ``EXACT_THRESHOLD`` players, else
TMC with antithetic permutation pairs until every value's standard error is within 0.2% of
``U(N) - U(empty)`` (3 standard errors within 0.6%; with 20 players a typical value is 5% of it, so
about 4% of a value), at most 10,000 pairs (about 5 s for 20 players of an affine model, whose
coalitions cost one mixture of outputs each)."""

SLOW_GAME_SHAPLEY_OPTIONS = {"tolerance": 0.01, "min_permutations": 50, "max_permutations": 300, "antithetic": True}
"""The same for a game whose every coalition is a model evaluation (a non-affine model in plaintext)."""


@dataclass(frozen=True, kw_only=True)
class TaskScores:
    """The task-wide game's outcome, by player: ``kept`` (survived screening), ``values`` (the
    scorer's raw values, 0 for screened players), ``std_errors`` (Monte-Carlo, 0 when exact) and
    ``scores`` in [0, 1] (what goes on chain: positive value over the task's best)."""

    kept: np.ndarray
    values: np.ndarray
    std_errors: np.ndarray
    scores: np.ndarray
    permutations: int
    utility_calls: int


def task_scores(*, utility, players: int, keep: np.ndarray | None = None, scorer: str = "shapley",
                seed: int = 0, shapley_options: dict | None = None) -> TaskScores:
    """Score ``players`` in the task-wide game ``utility`` (over player indexes), leaving out the
    players ``keep`` rejects: they score 0 and are not in any coalition. The scorer's values are
    mapped to [0, 1] over all kept players together (:func:`onchain_scores`). ``shapley_options``
    (default :data:`TASK_SHAPLEY_OPTIONS`) configure the Shapley scorer."""
    keep = np.ones(players, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != (players,):
        raise ConfigError(f"keep must have one entry per player ({players}), got shape {keep.shape}")
    kept = np.flatnonzero(keep)
    values = np.zeros(players)
    errors = np.zeros(players)
    scores = np.zeros(players)
    permutations = calls = 0
    if kept.size:
        def sub(coalition: Coalition) -> float:
            return utility(tuple(int(kept[i]) for i in coalition))

        options = (TASK_SHAPLEY_OPTIONS if shapley_options is None else shapley_options) if scorer == "shapley" else {}
        report = make_scorer(scorer, **options).report(utility=sub, participants=int(kept.size), seed=seed)
        values[kept] = report.raw
        scores[kept] = onchain_scores(report.raw)
        calls = report.utility_calls
        if report.shapley is not None:
            errors[kept] = report.shapley.std_errors
            permutations = report.shapley.permutations
    for a in (keep, values, errors, scores):
        a.setflags(write=False)
    return TaskScores(kept=keep, values=values, std_errors=errors, scores=scores, permutations=permutations,
                      utility_calls=calls)
