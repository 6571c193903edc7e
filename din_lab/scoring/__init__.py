"""Contribution scorers: BlockFlow median scoring (the contract's rule); more in later issues."""

from din_lab.scoring.blockflow import BlockFlowScores, blockflow_scores, blockflow_scores_fixed, to_fixed

__all__ = ["BlockFlowScores", "blockflow_scores", "blockflow_scores_fixed", "to_fixed"]
