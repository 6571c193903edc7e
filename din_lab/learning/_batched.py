"""Forward passes of many parameter sets at once (private to :mod:`din_lab.learning`).

``batched_forward(model)`` returns ``f(params, x) -> logits`` where ``params`` maps each parameter
name to a stacked tensor ``(N, *shape)``, ``x`` is ``(N, B, num_features)`` and the logits come back
as ``(N, num_classes, B)`` (classes on dim 1: the layout ``cross_entropy`` is fastest on).

Models that are a ``nn.Sequential`` of ``Linear`` layers and ``ReLU`` / ``Square`` activations (the
lab's logistic regression and MLPs) run on a hand-written path: every layer is one
``torch.baddbmm(bias, W, h)`` with activations kept as ``(N, features, B)``, several times faster
than ``vmap`` on CPU. Any other model runs under ``torch.func.vmap(torch.func.functional_call)``.
Both compute the same function as the model's own ``forward`` (to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from din_lab.learning.models import Square

BatchedForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _linear_plan(model: nn.Module) -> list[tuple[str, str]] | None:
    if not isinstance(model, nn.Sequential):
        return None
    plan: list[tuple[str, str]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Linear) and child.bias is not None:
            plan.append(("linear", name))
        elif isinstance(child, nn.ReLU):
            plan.append(("relu", name))
        elif isinstance(child, Square):
            plan.append(("square", name))
        else:
            return None
    return plan if plan and plan[-1][0] == "linear" else None


def batched_forward(model: nn.Module) -> BatchedForward:
    plan = _linear_plan(model)
    if plan is not None:

        def linear_forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            h = x.transpose(1, 2)
            for kind, name in plan:
                if kind == "linear":
                    h = torch.baddbmm(params[f"{name}.bias"].unsqueeze(2), params[f"{name}.weight"], h)
                elif kind == "relu":
                    h = torch.relu(h)
                else:
                    h = h * h
            return h

        return linear_forward

    def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x,))

    mapped = vmap(one)

    def vmap_forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return mapped(params, x).transpose(1, 2)

    return vmap_forward
