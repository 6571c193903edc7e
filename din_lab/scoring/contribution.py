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
- **bounded influence**: each player's output change is scaled down to at most the median change
  norm (:meth:`MixtureGame.bounded`), so a boost above the median buys nothing;
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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from din_lab.errors import ConfigError
from din_lab.scoring.scorers import EXACT_THRESHOLD, make_scorer, onchain_scores
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


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits ``z`` (samples x classes), stable."""
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
        outputs = np.asarray(self.outputs, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        labels = np.asarray(self.y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number) and labels.dtype != bool \
                or not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ConfigError(f"labels must be a 1-D array of class indexes, got {labels.dtype} of shape {labels.shape}")
        y = labels.astype(np.int64)
        if base.ndim != 2 or len(y) != base.shape[0] or (len(y) and (y.min() < 0 or y.max() >= base.shape[1])):
            raise ConfigError(f"outputs of shape {base.shape} do not fit {len(y)} labels")
        if not np.all(np.isfinite(base)):
            raise ConfigError("the previous model's outputs must be finite")
        if outputs.ndim != 3 or outputs.shape[1:] != base.shape:
            raise ConfigError(f"each player's outputs must have the previous model's shape {base.shape}, "
                              f"got {outputs.shape}")
        if weights.shape != (len(outputs),) or not np.all(np.isfinite(weights)) or np.any(weights <= 0) \
                or not np.all(np.isfinite(outputs)):
            raise ConfigError("each player needs finite outputs and a finite, positive sample count")
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
        return float(log_softmax(z)[np.arange(len(self.y)), self.y].mean())

    def prefix_utilities(self, players: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """``[b, k]``: the utility of the first ``k + 1`` players of order ``orders[b]`` (indexes into
        ``players``), all prefixes of all orders at once (a cumulative weighted sum of outputs).

        Laid out ``[order, prefix, class, row]``: the reductions over classes (max, sum of exponentials,
        argmax) are then elementwise operations on contiguous rows, about twice as fast as reducing a
        last axis of ten classes; sums and the log-softmax are taken in place (float32 for bandwidth)."""
        outputs = np.ascontiguousarray(np.swapaxes(self.outputs[players], 1, 2))  # [player, class, row]
        weighted = (outputs * self.weights[players, None, None]).astype(np.float32)
        sums = weighted[orders]
        np.cumsum(sums, axis=1, out=sums)
        sums /= np.cumsum(self.weights[players][orders], axis=1).astype(np.float32)[:, :, None, None]
        if self.metric == "accuracy":
            return np.mean(sums.argmax(axis=2) == self.y, axis=2)
        top = sums.max(axis=2)
        log_p = sums[:, :, self.y, np.arange(len(self.y))] - top  # the true class's logit, shifted
        sums -= top[:, :, None, :]
        np.exp(sums, out=sums)
        log_p -= np.log(sums.sum(axis=2))
        return log_p.mean(axis=2, dtype=np.float64)

    def shapley(self, players: np.ndarray, *, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Monte-Carlo Shapley values of ``players`` (indexes; the others are out of the game) and
        their standard errors: ``pairs`` random orders each scanned with its reverse (antithetic),
        every prefix evaluated (no truncation), vectorized over orders. Reproducible from ``seed``."""
        players = np.asarray(players, dtype=np.int64)
        if pairs < 1 or players.ndim != 1 or (players.size and (players.min() < 0 or players.max() >= self.players)):
            raise ConfigError(f"shapley needs at least one permutation pair and players among the game's "
                              f"{self.players}, got {pairs} pairs and {players.tolist()}")
        k = players.size
        rng = np.random.default_rng([seed, 0x5A])
        empty = self(())
        total = np.zeros(k)
        squares = np.zeros(k)
        batch = max(1, min(256, int(1e6 // max(1, k * self.base.size))))  # orders and their reverses: about 8 MB of float32
        done = 0
        while done < pairs:
            b = min(batch, pairs - done)
            orders = np.stack([rng.permutation(k) for _ in range(b)])
            both = np.concatenate([orders, orders[:, ::-1]])
            utilities = self.prefix_utilities(players, both)
            marginals = np.diff(utilities, axis=1, prepend=empty)
            credited = np.empty_like(marginals)
            np.put_along_axis(credited, both, marginals, axis=1)
            paired = (credited[:b] + credited[b:]) / 2.0
            total += paired.sum(axis=0)
            squares += (paired ** 2).sum(axis=0)
            done += b
        mean = total / done
        variance = np.maximum(squares / done - mean ** 2, 0.0) * done / max(done - 1, 1)
        return mean, np.sqrt(variance / done)

    def resampled(self, rows: np.ndarray) -> MixtureGame:
        """The same game on the test rows ``rows`` (a bootstrap resample)."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) \
                or (rows.size and (rows.min() < 0 or rows.max() >= len(self.y))):
            raise ConfigError(f"resampled rows must be indexes of the {len(self.y)} test rows")
        return MixtureGame(base=self.base[rows], outputs=self.outputs[:, rows], weights=self.weights, y=self.y[rows],
                           metric=self.metric)

    def changes(self) -> np.ndarray:
        """Each player's output change against the previous model, flattened (for :func:`screen_outputs`)."""
        return (self.outputs - self.base).reshape(self.players, -1)

    def bounded(self, keep: np.ndarray) -> tuple[MixtureGame, np.ndarray]:
        """The same game with every player's output change scaled down to at most the kept players'
        median change norm, and the scale factors (1 at or below the median). Multiplying an update
        keeps its direction and passes screening below 3x the median; unbounded, it bought a larger
        share (measured: x2.9 took 5 times a fair share of 12). Bounded, a boost above the median buys
        nothing; a player below the median can still gain by boosting up to it (a bounded gain). Scaling
        every change to the median would close that too, but it also erases the honest difference a
        larger step makes: the Spearman correlation with the task-wide reference fell from 0.91 to 0.75
        on dirichlet:0.3."""
        factors = influence_factors(self.changes(), keep)
        outputs = self.base + (self.outputs - self.base) * factors[:, None, None]
        return MixtureGame(base=self.base, outputs=outputs, weights=self.weights, y=self.y, metric=self.metric), factors


def influence_factors(changes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``min(1, median norm / norm)`` per player, the median over the ``keep`` players' change norms."""
    norms = np.linalg.norm(np.asarray(changes, dtype=np.float64), axis=1)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != norms.shape:
        raise ConfigError(f"keep must have one entry per player ({len(norms)}), got shape {keep.shape}")
    kept = norms[keep]
    if kept.size == 0:
        return np.ones(len(norms))
    median = float(np.median(kept))
    return np.where(norms > median, median / np.maximum(norms, 1e-300), 1.0)


TASK_SHAPLEY_OPTIONS = {"tolerance": 0.006, "min_permutations": 200, "max_permutations": 10_000, "antithetic": True}
"""The Shapley scorer's options in a task-wide game given as a plain utility: exact up to
``EXACT_THRESHOLD`` players, else TMC with antithetic permutation pairs until every value's standard
error is within 0.2% of ``U(N) - U(empty)``, at most 10,000 pairs."""

MIXTURE_PAIRS = 1_000
"""Antithetic permutation pairs of :meth:`MixtureGame.shapley` in the task-wide game (more than
``EXACT_THRESHOLD`` players): every prefix of 2,000 orders, vectorized (float32); for 20 players the
standard error is about 4% of a typical value (the reward's own noise is the test set's, which
:func:`shrink_to_signal` measures), about a second of numpy."""

BOOTSTRAP_PAIRS = 100
"""The same in each bootstrap replicate: the first 100 pairs of the same order stream (common random
numbers), so the replicates' spread is the test set's noise, not the Monte-Carlo noise."""

SLOW_GAME_SHAPLEY_OPTIONS = {"tolerance": 0.01, "min_permutations": 50, "max_permutations": 300, "antithetic": True}
"""The same for a game whose every coalition is a model evaluation (a non-affine model in plaintext)."""


BOOTSTRAP_REPLICATES = 10
"""Test-set bootstrap replicates of the game used to measure how much of the spread of values is
the owner's test-set sampling noise (:func:`shrink_to_signal`)."""

BOOTSTRAP_SHAPLEY_OPTIONS = {"tolerance": 0.02, "min_permutations": 100, "max_permutations": 1_000, "antithetic": True}
"""The Shapley scorer's options in a bootstrap replicate given as a plain utility."""


def bootstrap_rows(samples: int, *, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> list[np.ndarray]:
    """``replicates`` resamples (with replacement) of ``samples`` test rows, seeded by ``seed``."""
    if samples < 0 or replicates < 0:
        raise ConfigError(f"bootstrap needs a non-negative number of samples and replicates, got {samples}, {replicates}")
    rng = np.random.default_rng([seed, 0xB007])
    return [rng.integers(0, samples, size=samples) for _ in range(replicates)] if samples else []


def shrink_to_signal(values: np.ndarray, replicates: np.ndarray) -> tuple[np.ndarray, float]:
    """Empirical-Bayes shrinkage of the positive ``values`` towards their mean, and the factor.

    ``replicates[b, i]`` is player ``i``'s value in the game measured on bootstrap resample ``b`` of
    the test set (with the same permutations as ``values``). Over the players with a positive value:
    the noise variance ``sigma^2`` is the mean of the replicates' variances (ddof 1); the signal
    variance ``tau^2`` is the variance of their values (ddof 1) less ``sigma^2``, at least 0; each
    becomes ``mean + lambda (value - mean)`` with ``lambda = tau^2 / (tau^2 + sigma^2)`` (1 when both
    are 0): the expected contribution given a noisy measurement of it (James-Stein). One factor for
    all, so their order and their sum do not change. A value <= 0 is left as it is (a player measured
    as harmful or useless is never lifted towards the others, and it scores 0); with fewer than two
    positive values nothing moves.
    """
    v = np.asarray(values, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)) or not np.all(np.isfinite(reps)) \
            or (reps.size and (reps.ndim != 2 or reps.shape[1] != v.size)):
        raise ConfigError(f"shrinkage needs finite values and replicates with one column per value ({v.size}), "
                          f"got shapes {v.shape} and {reps.shape}")
    positive = v > 0
    if positive.sum() < 2 or reps.ndim != 2 or reps.shape[0] < 2:
        return v.copy(), 1.0
    noise = float(np.mean(reps[:, positive].var(axis=0, ddof=1)))
    signal = max(0.0, float(v[positive].var(ddof=1)) - noise)
    factor = 1.0 if signal + noise == 0 else signal / (signal + noise)
    mean = float(v[positive].mean())
    out = v.copy()
    out[positive] = mean + factor * (v[positive] - mean)  # a convex combination of positives: positive
    return out, factor


@dataclass(frozen=True, kw_only=True)
class TaskScores:
    """The task-wide game's outcome, by player: ``kept`` (survived screening), ``values`` (the
    scorer's raw values, 0 for screened players), ``std_errors`` (Monte-Carlo, 0 when exact),
    ``estimates`` (the values after :func:`shrink_to_signal`, by ``shrinkage``; the raw values when
    no replicates were given) and ``scores`` in [0, 1] (what goes on chain: positive estimate over
    the task's best)."""

    kept: np.ndarray
    values: np.ndarray
    std_errors: np.ndarray
    estimates: np.ndarray
    scores: np.ndarray
    shrinkage: float
    permutations: int
    utility_calls: int


def task_scores(*, utility, players: int, keep: np.ndarray | None = None, scorer: str = "shapley",
                seed: int = 0, shapley_options: dict | None = None, replicates: Sequence = ()) -> TaskScores:
    """Score ``players`` in the task-wide game ``utility`` (over player indexes), leaving out the
    players ``keep`` rejects: they score 0 and are not in any coalition. ``replicates`` are the same
    game measured on bootstrap resamples of the test set (see :func:`bootstrap_rows`): with them
    (and a value scorer: ``shapley`` or ``loo``) the values are shrunk to their signal
    (:func:`shrink_to_signal`). The estimates are mapped to [0, 1] over all kept players together
    (:func:`onchain_scores`). ``shapley_options`` (default :data:`TASK_SHAPLEY_OPTIONS`) configure
    the Shapley scorer."""
    if players < 0:
        raise ConfigError(f"players must be at least 0, got {players}")
    keep = np.ones(players, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != (players,):
        raise ConfigError(f"keep must have one entry per player ({players}), got shape {keep.shape}")
    kept = np.flatnonzero(keep)
    values = np.zeros(players)
    errors = np.zeros(players)
    estimates = np.zeros(players)
    scores = np.zeros(players)
    permutations = calls = 0
    shrinkage = 1.0
    if kept.size:
        def on_kept(game):
            return lambda coalition: game(tuple(int(kept[i]) for i in coalition))

        def report(game, options):
            opts = options if scorer == "shapley" else {}
            return make_scorer(scorer, **opts).report(utility=on_kept(game), participants=int(kept.size), seed=seed)

        fast = scorer == "shapley" and kept.size > EXACT_THRESHOLD and isinstance(utility, MixtureGame) \
            and all(isinstance(r, MixtureGame) for r in replicates)

        def measure(game, *, pairs: int, options) -> tuple[np.ndarray, np.ndarray, int]:
            if fast:
                v, se = game.shapley(kept, pairs=pairs, seed=seed)
                return v, se, 2 * pairs * int(kept.size)
            r = report(game, options)
            se = r.shapley.std_errors if r.shapley is not None else np.zeros(kept.size)
            return r.raw, se, r.utility_calls

        raw, se, calls = measure(utility, pairs=MIXTURE_PAIRS,
                                 options=TASK_SHAPLEY_OPTIONS if shapley_options is None else shapley_options)
        values[kept] = raw
        estimates[kept] = raw
        errors[kept] = se
        permutations = MIXTURE_PAIRS if fast else 0
        if replicates and scorer in ("shapley", "loo"):
            reps = [measure(r, pairs=BOOTSTRAP_PAIRS, options=BOOTSTRAP_SHAPLEY_OPTIONS) for r in replicates]
            calls += sum(r[2] for r in reps)
            # the replicates share the permutations (same seed: common random numbers), so their
            # spread is the test set's, not the Monte-Carlo's
            estimates[kept], shrinkage = shrink_to_signal(raw, np.array([r[0] for r in reps]))
        scores[kept] = onchain_scores(estimates[kept])
    for a in (keep, values, errors, estimates, scores):
        a.setflags(write=False)
    return TaskScores(kept=keep, values=values, std_errors=errors, estimates=estimates, scores=scores,
                      shrinkage=shrinkage, permutations=permutations, utility_calls=calls)
