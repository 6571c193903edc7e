"""How an evaluator scores the participants of its subgroup at the end of a task.

The game: the participants whose final-round update the evaluator accepted; the utility of a
coalition is the quality on the test set of the previous global model moved by the coalition's
FedAvg update (sample-weighted mean of their deltas). The empty coalition is the previous model,
so a free-rider (zero delta) or a poisoner adds nothing or less than nothing. For ``shapley`` and
``loo`` the quality is the negative test cross-entropy: smooth, so late rounds whose accuracy has
plateaued still tell contributions apart (with accuracy, about half of the honest participants of
a 3-round digits task scored 0); for ``accuracy`` (BlockFlow's own scheme: each participant's
model scored alone) it is the accuracy. The scorer (:mod:`din_lab.scoring`) turns the game into
scores in [0, 1]; a member with no accepted update scores 0.

This is the plaintext path: the evaluator reads the test set. Under encrypted evaluation
(:mod:`din_lab.roles.encrypted_evaluation`) the committee evaluates the same coalition models on the
CKKS-encrypted test set and the owner computes the same game from the decrypted logits; the scorer
does not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from din_lab.learning import unflatten
from din_lab.roles.codec import Update
from din_lab.scoring import CachedUtility, make_scorer


def evaluate_vector(model: nn.Module, vector: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and mean cross-entropy of the parameters ``vector`` (``model``'s layout) on (x, y)."""
    params = unflatten(vector, like=model)
    with torch.no_grad():
        logits = functional_call(model, params, (torch.from_numpy(np.array(x, dtype=np.float32)),))
        target = torch.from_numpy(np.array(y, dtype=np.int64))
        loss = torch.nn.functional.cross_entropy(logits, target).item()
        accuracy = (logits.argmax(dim=1) == target).double().mean().item()
    return {"accuracy": float(accuracy), "loss": float(loss)}


def coalition_vector(base: np.ndarray, deltas: np.ndarray, weights: np.ndarray, coalition: tuple[int, ...]) -> np.ndarray:
    """The coalition's FedAvg model: ``base`` moved by the sample-weighted mean of its players'
    ``deltas`` (``base`` itself for the empty coalition)."""
    if not coalition:
        return base
    idx = list(coalition)
    return base + (weights[idx, None] * deltas[idx]).sum(axis=0) / weights[idx].sum()


def contribution_scores(*, members: Sequence[str], updates: dict[str, Update], previous: np.ndarray,
                        model: nn.Module, x: np.ndarray, y: np.ndarray, scorer: str, seed: int) -> np.ndarray:
    """Scores in [0, 1] for ``members`` (subgroup position order)."""
    players = [m for m in members if m in updates]
    scores = np.zeros(len(members))
    if not players:
        return scores
    deltas = np.stack([updates[m].delta.astype(np.float64) for m in players])
    weights = np.array([updates[m].samples for m in players], dtype=np.float64)
    base = previous.astype(np.float64)

    def utility(coalition: tuple[int, ...]) -> float:
        vector = coalition_vector(base, deltas, weights, coalition)
        metrics = evaluate_vector(model, vector.astype(np.float32), x, y)
        return metrics["accuracy"] if scorer == "accuracy" else -metrics["loss"]

    game = CachedUtility(utility, participants=len(players))
    values = make_scorer(scorer).score(utility=game, participants=len(players), seed=seed & 0x7FFFFFFF)
    position = {m: i for i, m in enumerate(members)}
    for k, m in enumerate(players):
        scores[position[m]] = float(np.clip(values[k], 0.0, 1.0))
    return scores
