"""Evaluating models on a test set: one parameter set, or many at once (scoring many participants).

Metrics (:class:`Metrics`): ``accuracy``; ``loss``, the mean cross-entropy; ``f1_macro``, the
unweighted mean of per-class F1 over the classes present in ``y`` or in the predictions (scikit-learn's
``f1_score(average="macro")`` with ``zero_division=0``). Predictions are the arg-max of the logits
(the first maximal class on ties). Parameters that are not finite give a NaN loss; callers reject
such updates before aggregation (:func:`din_lab.learning.aggregation.finite_mask`).

:func:`evaluate_many` runs all parameter sets in one batched forward pass (chunked to bound memory)
and gives the same numbers as :func:`evaluate` on each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from din_lab.errors import ConfigError
from din_lab.learning._batched import batched_forward
from din_lab.learning.params import ParamLayout, flatten, stacked_state
from din_lab.learning.training import torch_threads

__all__ = ["Metrics", "evaluate", "evaluate_many"]


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    loss: float
    f1_macro: float
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _test_set(X: Any, y: Any) -> tuple[torch.Tensor, np.ndarray]:
    X = np.array(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ConfigError(f"evaluation: need X (n, features) and y (n,) with n >= 1, got {X.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ConfigError("evaluation: labels must be non-negative integers")
    return torch.from_numpy(X), y.astype(np.int64)


def _f1_macro(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro F1 for each row of ``pred`` (N, n) against ``y`` (n,)."""
    n_sets = pred.shape[0]
    cells = (np.arange(n_sets)[:, None] * num_classes + y[None, :]) * num_classes + pred
    confusion = np.bincount(cells.reshape(-1), minlength=n_sets * num_classes * num_classes).reshape(
        n_sets, num_classes, num_classes
    )
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(np.float64)
    true_count = confusion.sum(axis=2)
    pred_count = confusion.sum(axis=1)
    present = (true_count + pred_count) > 0
    denom = (true_count + pred_count).astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return (f1 * present).sum(axis=1) / present.sum(axis=1)


def evaluate_many(
    model: nn.Module, X: Any, y: Any, *, params: Any, max_batch: int = 64, num_threads: int | None = 1
) -> list[Metrics]:
    """Metrics of every parameter vector (rows of ``params``, ``(N, size)`` in layout order) on
    ``(X, y)``; ``max_batch`` parameter sets per forward pass."""
    layout = ParamLayout.of(model)
    P = np.asarray(params.detach().cpu().numpy() if isinstance(params, torch.Tensor) else params)
    if P.ndim != 2 or P.shape[1] != layout.size:
        raise ConfigError(f"evaluation: params must have shape (N, {layout.size}), got {P.shape}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"evaluation: max_batch must be a positive integer, got {max_batch!r}")
    Xt, y_np = _test_set(X, y)
    yt = torch.from_numpy(y_np)
    forward = batched_forward(model)
    losses, preds = [], []
    num_classes = 0
    with torch_threads(num_threads), torch.no_grad():
        for lo in range(0, P.shape[0], max_batch):
            chunk = P[lo : lo + max_batch]
            n = chunk.shape[0]
            logits = forward(stacked_state(chunk, like=layout), Xt.expand(n, *Xt.shape))  # (n, C, samples)
            num_classes = int(logits.shape[1])
            if y_np.max() >= num_classes:
                raise ConfigError(f"evaluation: labels must lie in [0, {num_classes})")
            ce = nn.functional.cross_entropy(logits, yt.expand(n, -1), reduction="none")
            losses.append(ce.double().mean(dim=1).numpy())
            preds.append(logits.argmax(dim=1).numpy())
    if not losses:
        return []
    loss = np.concatenate(losses)
    pred = np.concatenate(preds).astype(np.int64)
    accuracy = (pred == y_np[None, :]).mean(axis=1)
    f1 = _f1_macro(y_np, pred, num_classes)
    return [
        Metrics(accuracy=float(a), loss=float(l_), f1_macro=float(f), num_samples=int(y_np.shape[0]))
        for a, l_, f in zip(accuracy, loss, f1, strict=True)
    ]


def evaluate(model: nn.Module, X: Any, y: Any, *, params: Any = None, num_threads: int | None = 1) -> Metrics:
    """Metrics of one parameter set on ``(X, y)``; ``params`` is a flat vector, a state mapping, or
    ``None`` for ``model``'s own parameters."""
    layout = ParamLayout.of(model)
    if params is None or isinstance(params, dict | nn.Module) or hasattr(params, "keys"):
        vector = flatten(model if params is None else params, layout=layout)
    else:
        vector = np.asarray(params.detach().cpu().numpy() if isinstance(params, torch.Tensor) else params)
    return evaluate_many(model, X, y, params=vector.reshape(1, -1), num_threads=num_threads)[0]
