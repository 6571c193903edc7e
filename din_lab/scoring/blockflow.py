"""BlockFlow's median scoring (Mugunthan, Rahman, Kagal 2020), as DIN's default scorer.

Row ``i`` of a score matrix holds the scores evaluator ``i`` gave; column ``j`` is
participant ``j``'s model. With ``d_ij = |S_ij - m_j|``:

- model score ``m_j``: the *lower* median of column ``j`` (sorted, index ``(n-1)//2``);
- agreement ``a_ij = (1/2 - d_ij) / (1/2 + d_ij)``, and 0 when ``d_ij >= 1/2``;
- evaluator score ``A_i = min_j a_ij`` (an evaluator is as good as its worst report);
- overall score ``O_j = min(m_j / max m, A_j / max A)`` where every agent is both a
  participant and an evaluator (BlockFlow's square case).

:func:`blockflow_scores` reproduces the published BlockFlow results exactly
(``shared/conformance/blockflow``); :func:`blockflow_scores_fixed` is the same reduction in the
18-decimal integer arithmetic of ``contracts/src/lib/BlockFlowScoring.sol``, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from din_lab.errors import ConfigError

WAD = 10**18
HALF = WAD // 2


@dataclass(frozen=True)
class BlockFlowScores:
    model: np.ndarray  # per participant (column)
    evaluator: np.ndarray  # per evaluator (row)
    overall: np.ndarray | None  # per agent, square matrices only


def _matrix(score_matrix: object) -> np.ndarray:
    s = np.atleast_2d(np.asarray(score_matrix, dtype=float))
    if s.ndim != 2 or s.size == 0:
        raise ConfigError(f"a score matrix must be a non-empty 2-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0:
        raise ConfigError("scores must be finite and within [0, 1]")
    return s


def blockflow_scores(score_matrix: object) -> BlockFlowScores:
    """Model, evaluator and (square matrices) overall scores as float arrays."""
    s = _matrix(score_matrix)
    n = s.shape[0]
    model = np.sort(s, axis=0)[(n - 1) // 2, :]
    d = np.abs(s - model[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.where(d >= 0.5, 0.0, (0.5 - d) / (0.5 + d))
    evaluator = agreement.min(axis=1)
    overall = None
    if s.shape[0] == s.shape[1]:
        mmax, emax = model.max(), evaluator.max()
        a = model / mmax if mmax > 0 else np.zeros_like(model)
        b = evaluator / emax if emax > 0 else np.zeros_like(evaluator)
        overall = np.minimum(a, b)
    return BlockFlowScores(model=model, evaluator=evaluator, overall=overall)


def to_fixed(score_matrix: object) -> list[list[int]]:
    """Float scores in [0, 1] as 18-decimal integers (rounded to nearest)."""
    s = _matrix(score_matrix)
    return [[round(float(x) * WAD) for x in row] for row in s]


def blockflow_scores_fixed(matrix: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int] | None]:
    """The contract's integer reduction (BlockFlowScoring.reduce / overall), exactly."""
    rows = [list(map(int, r)) for r in matrix]
    if not rows or not rows[0]:
        raise ConfigError("a score matrix must be non-empty")
    cols = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != cols:
            raise ConfigError(f"row {i} has {len(r)} scores, expected {cols}")
        if any(x < 0 or x > WAD for x in r):
            raise ConfigError(f"row {i} has a score outside [0, 1e18]")
    n = len(rows)
    model = [sorted(r[j] for r in rows)[(n - 1) // 2] for j in range(cols)]

    def agreement(x: int, m: int) -> int:
        d = abs(x - m)
        return 0 if d >= HALF else (HALF - d) * WAD // (HALF + d)

    evaluator = [min([WAD] + [agreement(r[j], model[j]) for j in range(cols)]) for r in rows]
    overall = None
    if n == cols:
        mmax, emax = max(model), max(evaluator)
        overall = [min(m * WAD // mmax if mmax else 0, e * WAD // emax if emax else 0)
                   for m, e in zip(model, evaluator, strict=True)]
    return model, evaluator, overall
