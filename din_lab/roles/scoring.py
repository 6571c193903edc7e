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

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from din_lab.learning import unflatten
from din_lab.roles.codec import Update
from din_lab.scoring import CachedUtility, make_scorer
from din_lab.scoring.contribution import (
    SLOW_GAME_SHAPLEY_OPTIONS,
    MixtureGame,
    bootstrap_rows,
    screen_outputs,
    task_scores,
)


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


# ---------------------------------------------------------------------- the task-wide game (issue 17)

def is_affine(model: nn.Module) -> bool:
    """Are ``model``'s outputs affine in its parameters (one linear layer: logistic regression)? Then a
    coalition's FedAvg model's outputs are the sample-weighted mean of its players' outputs."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    return len(layers) == 1 and isinstance(layers[0], nn.Linear)


def outputs_of(model: nn.Module, vector: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The outputs (logits, float64) of the parameters ``vector`` (``model``'s layout) on ``x``."""
    params = unflatten(np.asarray(vector, dtype=np.float32), like=model)
    with torch.no_grad():
        return functional_call(model, params, (torch.from_numpy(np.array(x, dtype=np.float32)),)).double().numpy()


def task_seed(task: str, final: int) -> int:
    """The Monte-Carlo seed of the task-wide game: fixed by the task's address and its final round,
    the same for every scorer, and independent of the subgroup draw (so the draw moves no score)."""
    digest = hashlib.sha256(f"din-lab/task-contribution/{task.lower()}/{final}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def task_game(*, updates: dict[str, Update], previous: np.ndarray, model: nn.Module, x: np.ndarray, y: np.ndarray,
              metric: str = "loss") -> tuple[list[str], MixtureGame, np.ndarray]:
    """The task-wide game of plaintext ``updates`` made on the model ``previous``: its players in address
    order, the game on their outputs on ``x`` (exact for an output-affine model) and which players
    survive :func:`screen_outputs` (the game is not yet bounded)."""
    players = sorted(updates, key=str.lower)
    base = previous.astype(np.float64)
    outputs = np.stack([outputs_of(model, base + updates[p].delta.astype(np.float64), x) for p in players])
    weights = np.array([updates[p].samples for p in players], dtype=np.float64)
    game = MixtureGame(base=outputs_of(model, base, x), outputs=outputs, weights=weights, y=y, metric=metric)
    return players, game, screen_outputs(game.changes())


def task_contribution(*, updates: dict[str, Update], previous: np.ndarray, model: nn.Module, x: np.ndarray,
                      y: np.ndarray, scorer: str, seed: int) -> dict[str, float]:
    """Scores in [0, 1] of every player of the task-wide game (address -> score), from the
    plaintext updates of all of the final round's contributors (:mod:`din_lab.scoring.contribution`):
    screened in prediction space, valued in one game, the task's best scoring 1. Players are taken in
    address order, so the scores depend on the contributions, not on how they were grouped."""
    if not updates:
        return {}
    players, game, keep = task_game(updates=updates, previous=previous, model=model, x=x, y=y,
                                    metric="accuracy" if scorer == "accuracy" else "loss")
    factors = np.ones(len(players))
    if scorer != "accuracy":  # the accuracy scorer measures each player's own model, as it is
        game, factors = game.bounded(keep)
    options = None
    replicates: list = []
    if is_affine(model) or scorer == "accuracy":
        utility = game  # exact: the FedAvg model's outputs are the mixture of the players' (or singletons only)
        if scorer != "accuracy":  # the test set's noise, for the shrinkage of values
            replicates = [game.resampled(rows) for rows in bootstrap_rows(len(y), seed=seed)]
    else:  # each bounded player's update scaled by its factor
        base, weights = previous.astype(np.float64), game.weights
        deltas = np.stack([updates[p].delta.astype(np.float64) for p in players]) * factors[:, None]

        def utility(coalition: tuple[int, ...]) -> float:
            metrics = evaluate_vector(model, coalition_vector(base, deltas, weights, coalition).astype(np.float32), x, y)
            return -metrics["loss"]

        options = SLOW_GAME_SHAPLEY_OPTIONS
    result = task_scores(utility=utility, players=len(players), keep=keep, scorer=scorer, seed=seed,
                         shapley_options=options, replicates=replicates)
    return {p: float(s) for p, s in zip(players, result.scores, strict=True)}
