"""Splitting a training set among participants: IID, label skew, quantity skew, pathological shards.

``partition(y, num_participants=..., spec=..., seed=...)`` returns one sorted int64 index array per
participant. The arrays are disjoint, together cover every index of ``y`` (no rule drops samples),
and each holds at least ``min_samples`` indices. Same arguments, same arrays.

Specs (:data:`PARTITIONS`):

- ``"iid"``: a random permutation cut into ``num_participants`` parts as equal as possible.
- ``"dirichlet:<alpha>"``: label skew (Hsu et al. 2019). For every class, the shares of its samples
  going to each participant are drawn from ``Dirichlet(alpha, ..., alpha)``; small ``alpha`` (0.1)
  gives each participant few classes, large ``alpha`` (100) approaches IID. Counts are rounded by
  largest remainder. A participant left with fewer than ``min_samples`` then receives random samples
  taken from the currently largest participant until it has enough.
- ``"quantity:<alpha>"``: quantity skew with IID labels. Participant sizes are ``min_samples`` plus
  a ``Dirichlet(alpha, ..., alpha)`` share of the remaining samples (largest-remainder rounding);
  small ``alpha`` gives a few large and many small participants. Samples are assigned from a random
  permutation.
- ``"shards:<k>"``: pathological non-IID (McMahan et al. 2017). Indices are shuffled, stably sorted
  by label, cut into ``k * num_participants`` contiguous shards of (nearly) equal size, and each
  participant receives ``k`` random shards, so it sees at most ``k`` classes (give or take a shard
  straddling two classes).

Randomness comes from ``numpy.random.default_rng(seed)`` only. Invalid specs or infeasible requests
raise :class:`~din_lab.errors.ConfigError` naming ``partition``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from din_lab.errors import ConfigError

__all__ = ["PARTITIONS", "label_counts", "parse_partition", "partition"]

PARTITIONS: tuple[str, ...] = ("iid", "dirichlet:<alpha>", "quantity:<alpha>", "shards:<k>")


def parse_partition(spec: str) -> tuple[str, float | int | None]:
    """``"dirichlet:0.5"`` -> ``("dirichlet", 0.5)``; ``"iid"`` -> ``("iid", None)``; ``"shards:2"`` ->
    ``("shards", 2)``. Raises ConfigError for anything else."""
    usage = "use 'iid', 'dirichlet:<alpha>', 'quantity:<alpha>' or 'shards:<k>'"
    if not isinstance(spec, str):
        raise ConfigError(f"partition: spec must be a string, got {type(spec).__name__}; {usage}")
    kind, _, arg = spec.strip().partition(":")
    if kind == "iid" and not arg:
        return "iid", None
    if kind in ("dirichlet", "quantity"):
        try:
            alpha = float(arg)
        except ValueError:
            alpha = float("nan")
        if not (math.isfinite(alpha) and alpha > 0):
            raise ConfigError(f"partition: {spec!r} needs a positive finite alpha, e.g. '{kind}:0.5'")
        return kind, alpha
    if kind == "shards":
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if k < 1:
            raise ConfigError(f"partition: {spec!r} needs a positive integer number of shards, e.g. 'shards:2'")
        return "shards", k
    raise ConfigError(f"partition: unknown spec {spec!r}; {usage}")


def _round_shares(shares: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integer counts summing to ``total``, proportional to ``shares`` (largest remainder)."""
    raw = shares / shares.sum() * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    if rest:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:rest]] += 1
    return counts


def partition(y: Any, *, num_participants: int, spec: str = "iid", seed: int, min_samples: int = 2) -> list[np.ndarray]:
    """Split ``range(len(y))`` among ``num_participants`` (module docstring)."""
    labels = np.asarray(y)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ConfigError("partition: y must be a 1-D array of integer labels")
    if isinstance(num_participants, bool) or not isinstance(num_participants, int) or num_participants < 1:
        raise ConfigError(f"partition: num_participants must be a positive integer, got {num_participants!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
        raise ConfigError(f"partition: min_samples must be a non-negative integer, got {min_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"partition: seed must be a non-negative integer, got {seed!r}")
    kind, arg = parse_partition(spec)
    n, k = labels.shape[0], num_participants
    if n < k * min_samples:
        raise ConfigError(
            f"partition: {n} samples cannot give {k} participants at least {min_samples} each (spec {spec!r})"
        )
    rng = np.random.default_rng(int(seed))
    parts: list[np.ndarray]
    if kind == "iid":
        parts = list(np.array_split(rng.permutation(n), k))
    elif kind == "quantity":
        sizes = min_samples + _round_shares(rng.dirichlet(np.full(k, arg)), n - k * min_samples)
        parts = list(np.split(rng.permutation(n), np.cumsum(sizes)[:-1]))
    elif kind == "dirichlet":
        buckets: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            counts = _round_shares(rng.dirichlet(np.full(k, arg)), idx.shape[0])
            for p, chunk in enumerate(np.split(idx, np.cumsum(counts)[:-1])):
                buckets[p].append(chunk)
        parts = [np.concatenate(b) if b else np.zeros(0, dtype=np.int64) for b in buckets]
        parts = _top_up(parts, min_samples, rng)
    else:
        assert isinstance(arg, int)
        shards_total = arg * k
        if n < shards_total:
            raise ConfigError(f"partition: {n} samples cannot be cut into {shards_total} shards (spec {spec!r})")
        # checked on the smallest shards, before any draw: whether a spec is valid never depends on the seed
        if (n // shards_total) * arg < min_samples:
            raise ConfigError(
                f"partition: shards of {n // shards_total} samples give fewer than min_samples={min_samples} "
                f"to a participant (spec {spec!r}); use fewer participants or more shards each"
            )
        shuffled = rng.permutation(n)
        order = shuffled[np.argsort(labels[shuffled], kind="stable")]
        shards = np.array_split(order, shards_total)
        assignment = rng.permutation(shards_total).reshape(k, arg)
        parts = [np.concatenate([shards[s] for s in row]) for row in assignment]
    return [np.sort(p).astype(np.int64) for p in parts]


def _top_up(parts: list[np.ndarray], min_samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    parts = [p.copy() for p in parts]
    for p in range(len(parts)):
        while parts[p].shape[0] < min_samples:
            donor = int(np.argmax([q.shape[0] for q in parts]))
            pick = int(rng.integers(parts[donor].shape[0]))
            parts[p] = np.append(parts[p], parts[donor][pick])
            parts[donor] = np.delete(parts[donor], pick)
    return parts


def label_counts(y: Any, parts: list[np.ndarray], *, num_classes: int) -> np.ndarray:
    """``(num_participants, num_classes)`` label histogram of a partition (for plots and skew metrics)."""
    labels = np.asarray(y)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts]).astype(np.int64)
