"""Contribution scorers: how an evaluator turns what it measures into on-chain scores.

After the last round each evaluator scores every participant in [0, 1]; the contract reduces
the evaluators' score matrix (row ``i`` = the scores evaluator ``i`` gave) with BlockFlow's
median rule, :func:`blockflow_scores` (bit for bit on chain: :func:`blockflow_scores_fixed`),
and pays participants in proportion to the reduced model scores.

One interface, :class:`Scorer` (``score(*, utility, participants, seed=0) -> array in [0, 1]``;
``report(...)`` adds raw values and cost), with implementations in :data:`SCORERS` built by
:func:`make_scorer`:

- ``"accuracy"`` :class:`AccuracyScorer`: BlockFlow's scheme, each participant's own model's accuracy;
- ``"shapley"`` :class:`ShapleyScorer`: Shapley values, :func:`exact_shapley` up to 10 participants,
  Truncated Monte-Carlo :func:`tmc_shapley` beyond (stated convergence tolerance: 3 standard errors
  within 1% of ``U(N) - U(empty)`` by default);
- ``"loo"`` :class:`LeaveOneOutScorer`: :func:`leave_one_out`.

Values are mapped to [0, 1] by :func:`onchain_scores` (negatives to 0, divided by the best).

Scorers see only a :data:`Utility`: a callable from a coalition (sorted tuple of participant
indexes) to a number, e.g. the accuracy of the FedAvg of those participants' updates. The
caller supplies it and scoring never trains; this is the hook for encrypted evaluation: a
utility that evaluates the coalition's model on the CKKS-encrypted test set (``din_lab.he``,
wired in by the roles layer) plugs in unchanged. :class:`CachedUtility` evaluates each
coalition once and counts evaluations, since each is a model evaluation.
"""

from din_lab.scoring.blockflow import BlockFlowScores, blockflow_scores, blockflow_scores_fixed, to_fixed
from din_lab.scoring.scorers import (
    EXACT_THRESHOLD,
    SCORERS,
    AccuracyScorer,
    LeaveOneOutScorer,
    Scorer,
    ScoreReport,
    ShapleyScorer,
    make_scorer,
    onchain_scores,
)
from din_lab.scoring.shapley import (
    MAX_EXACT_PARTICIPANTS,
    TMC_TOLERANCE,
    TMC_TRUNCATION,
    TMC_Z,
    ShapleyEstimate,
    exact_shapley,
    leave_one_out,
    tmc_shapley,
)
from din_lab.scoring.utility import CachedUtility, Coalition, Utility

__all__ = [
    "EXACT_THRESHOLD",
    "MAX_EXACT_PARTICIPANTS",
    "SCORERS",
    "TMC_TOLERANCE",
    "TMC_TRUNCATION",
    "TMC_Z",
    "AccuracyScorer",
    "BlockFlowScores",
    "CachedUtility",
    "Coalition",
    "LeaveOneOutScorer",
    "ScoreReport",
    "Scorer",
    "ShapleyEstimate",
    "ShapleyScorer",
    "Utility",
    "blockflow_scores",
    "blockflow_scores_fixed",
    "exact_shapley",
    "leave_one_out",
    "make_scorer",
    "onchain_scores",
    "tmc_shapley",
    "to_fixed",
]
