"""Aggregation rules over flat parameter vectors.

Every rule takes the participants' vectors stacked as an ``(N, D)`` array (one row per
participant, in the order of :mod:`din_lab.learning.params`) and returns one ``(D,)`` vector. The
arithmetic is done in float64 and the result is returned as float32 (the model's dtype); the same
inputs always give the same bits, so anyone can recompute a published global model.

- :func:`fedavg`: the mean weighted by ``weights`` (FedAvg uses each participant's sample count;
  ``None`` is the plain mean).
- :func:`hierarchical`: DIN's two-level aggregation. Each subgroup's weighted mean (what its
  evaluators compute from the securely aggregated sum), then the mean of the subgroup results
  weighted by each subgroup's total weight. With sample counts as weights this equals flat
  :func:`fedavg` over all participants (up to float rounding): sum_g W_g * (sum_i w_i x_i / W_g)
  / sum_g W_g = sum_i w_i x_i / sum_i w_i.
- :func:`coordinate_median`: the per-coordinate median (the mean of the two middle values for an
  even count); unweighted. Robust to fewer than half of the rows being arbitrary.
- :func:`trimmed_mean`: per coordinate, drop the ``floor(beta * N)`` smallest and as many largest
  values and average the rest; unweighted.
- :func:`aggregate`: one of the above by a rule string (``"fedavg"``, ``"median"``,
  ``"trimmed_mean:<beta>"``), as experiment configs name them (:data:`AGGREGATORS`).

Non-finite inputs are not filtered here (they propagate into the result): callers reject
non-finite updates first, e.g. ``vectors[finite_mask(vectors)]``, and score them 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from din_lab.errors import ConfigError

__all__ = [
    "AGGREGATORS",
    "aggregate",
    "coordinate_median",
    "fedavg",
    "finite_mask",
    "hierarchical",
    "trimmed_mean",
]

AGGREGATORS: tuple[str, ...] = ("fedavg", "median", "trimmed_mean:<beta>")


def _matrix(vectors: Any, *, what: str = "vectors") -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().numpy()
    if isinstance(vectors, Sequence) and not isinstance(vectors, np.ndarray):
        if len(vectors) == 0:
            raise ConfigError(f"aggregation: {what} is empty")
        try:
            vectors = np.stack([np.asarray(v) for v in vectors])
        except ValueError as e:
            raise ConfigError(f"aggregation: {what} must all have the same length") from e
    m = np.asarray(vectors)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ConfigError(f"aggregation: {what} must be a non-empty (N, D) array, got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
        raise ConfigError(f"aggregation: {what} must be numeric, got dtype {m.dtype}")
    return m.astype(np.float64, copy=False)


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ConfigError(f"aggregation: expected {n} weights, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError("aggregation: weights must be finite and non-negative")
    if w.sum() <= 0:
        raise ConfigError("aggregation: weights must not all be zero")
    return w


def finite_mask(vectors: Any) -> np.ndarray:
    """Boolean ``(N,)``: which rows are entirely finite (no NaN, no +-inf)."""
    return np.all(np.isfinite(_matrix(vectors)), axis=1)


def fedavg(vectors: Any, *, weights: Any = None) -> np.ndarray:
    """The ``weights``-weighted mean of the rows (``None``: unweighted)."""
    m = _matrix(vectors)
    w = _weights(weights, m.shape[0])
    return ((w @ m) / w.sum()).astype(np.float32)


def hierarchical(groups: Sequence[Any], *, weights: Sequence[Any] | None = None) -> np.ndarray:
    """Subgroup weighted means, then their mean weighted by subgroup total weight (module docstring).
    ``groups[g]`` is subgroup ``g``'s ``(n_g, D)`` vectors, ``weights[g]`` their ``(n_g,)`` weights
    (``None``: every participant weighs 1, so subgroups weigh their size). A subgroup whose weights
    are all zero is left out."""
    if len(groups) == 0:
        raise ConfigError("aggregation: no subgroups")
    if weights is not None and len(weights) != len(groups):
        raise ConfigError(f"aggregation: {len(weights)} weight lists for {len(groups)} subgroups")
    means, totals = [], []
    for g, group in enumerate(groups):
        m = _matrix(group, what=f"groups[{g}]")
        w = np.ones(m.shape[0]) if weights is None else np.asarray(weights[g], dtype=np.float64)
        if w.shape == (m.shape[0],) and np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() == 0:
            continue
        w = _weights(w, m.shape[0])
        means.append((w @ m) / w.sum())
        totals.append(w.sum())
    if not means:
        raise ConfigError("aggregation: every subgroup has zero weight")
    return fedavg(np.stack(means), weights=np.array(totals))


def coordinate_median(vectors: Any) -> np.ndarray:
    """The per-coordinate median of the rows."""
    return np.median(_matrix(vectors), axis=0).astype(np.float32)


def trimmed_mean(vectors: Any, *, beta: float) -> np.ndarray:
    """Per coordinate, the mean after dropping the ``floor(beta * N)`` smallest and largest values
    (``0 <= beta < 0.5``, so at least one value remains)."""
    m = _matrix(vectors)
    if not (isinstance(beta, int | float) and math.isfinite(beta) and 0.0 <= beta < 0.5):
        raise ConfigError(f"aggregation: trimmed_mean beta must lie in [0, 0.5), got {beta!r}")
    n = m.shape[0]
    k = int(math.floor(beta * n))  # beta < 0.5 keeps n - 2k >= 1 rows
    s = np.sort(m, axis=0)
    return s[k : n - k].mean(axis=0).astype(np.float32)


def aggregate(vectors: Any, *, rule: str = "fedavg", weights: Any = None) -> np.ndarray:
    """Aggregate by a rule string: ``"fedavg"`` (uses ``weights``), ``"median"`` or
    ``"trimmed_mean:<beta>"`` (these two ignore weights)."""
    if rule == "fedavg":
        return fedavg(vectors, weights=weights)
    if rule == "median":
        return coordinate_median(vectors)
    if isinstance(rule, str) and rule.startswith("trimmed_mean:"):
        try:
            beta = float(rule.split(":", 1)[1])
        except ValueError:
            beta = float("nan")
        if not (math.isfinite(beta) and 0.0 <= beta < 0.5):
            raise ConfigError(f"aggregation rule: bad beta in {rule!r}; use trimmed_mean:<beta> with 0 <= beta < 0.5")
        return trimmed_mean(vectors, beta=beta)
    raise ConfigError(f"aggregation rule: unknown rule {rule!r}; valid: 'fedavg', 'median', 'trimmed_mean:<beta>'")
