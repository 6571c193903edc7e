"""A model's parameters as one float32 vector, in a fixed, documented order.

Secure aggregation, fixed-point quantization, storage and every aggregation rule work on flat
vectors. The order is: **parameters sorted by name** (Python string order, the order the storage
layer writes tensors), each tensor flattened row-major (C order). For the models of
:mod:`din_lab.learning.models` that is e.g. ``fc0.bias, fc0.weight, fc1.bias, fc1.weight`` for a
one-hidden-layer MLP and ``conv0.bias, conv0.weight, conv1.bias, conv1.weight, fc.bias, fc.weight``
for the CNN. Sorting makes the vector independent of how a state mapping was built (insertion
order of a dict read back from storage, say).

A :class:`ParamLayout` records names, shapes and offsets; :func:`flatten` and :func:`unflatten`
convert between a state (a ``torch.nn.Module``, or a mapping name -> tensor / numpy array) and a
vector. A model's state is its parameters only (the lab's models have no buffers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from din_lab.errors import ConfigError

__all__ = ["ParamLayout", "flatten", "stacked_state", "unflatten"]

State = Mapping[str, Any]


def _state_of(state: nn.Module | State) -> dict[str, np.ndarray]:
    if isinstance(state, nn.Module):
        if any(True for _ in state.buffers()):
            raise ConfigError("params: models with buffers (batch norm, ...) are not supported")
        items = {name: p for name, p in state.named_parameters()}
    elif isinstance(state, Mapping):
        items = dict(state)
    else:
        raise ConfigError(f"params: expected a torch module or a mapping name -> tensor, got {type(state).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in items.items():
        if not isinstance(name, str):
            raise ConfigError(f"params: parameter names must be strings, got {name!r}")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        out[name] = np.asarray(value)
    return out


@dataclass(frozen=True)
class ParamLayout:
    """Names (sorted) and shapes of a model's parameters; ``offsets[i]`` is where parameter ``i``
    starts in the flat vector of length :attr:`size`."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.shapes):
            raise ConfigError("params: a layout needs one shape per name")
        if list(self.names) != sorted(self.names) or len(set(self.names)) != len(self.names):
            raise ConfigError("params: layout names must be unique and sorted")

    @classmethod
    def of(cls, state: nn.Module | State) -> ParamLayout:
        """The layout of a model or a state mapping."""
        arrays = _state_of(state)
        names = tuple(sorted(arrays))
        return cls(names=names, shapes=tuple(tuple(int(d) for d in arrays[n].shape) for n in names))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)[:-1]]))

    @property
    def size(self) -> int:
        return int(sum(self.sizes))


def _layout(like: ParamLayout | nn.Module | State) -> ParamLayout:
    return like if isinstance(like, ParamLayout) else ParamLayout.of(like)


def flatten(state: nn.Module | State, *, layout: ParamLayout | None = None) -> np.ndarray:
    """The parameters as one float32 vector in layout order (sorted names, row-major). With
    ``layout`` the state must have exactly its names and shapes."""
    arrays = _state_of(state)
    layout = layout or ParamLayout.of(arrays)
    if set(arrays) != set(layout.names):
        missing = sorted(set(layout.names) - set(arrays))
        extra = sorted(set(arrays) - set(layout.names))
        raise ConfigError(f"params: state does not match the layout (missing {missing}, unexpected {extra})")
    parts = []
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        a = arrays[name]
        if tuple(a.shape) != shape:
            raise ConfigError(f"params: {name} has shape {tuple(a.shape)}, the layout says {shape}")
        parts.append(np.asarray(a, dtype=np.float32).reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)


def unflatten(vector: Any, *, like: ParamLayout | nn.Module | State) -> dict[str, torch.Tensor]:
    """A state (name -> float32 tensor, in layout order) from a vector; ``like`` gives the layout
    (a :class:`ParamLayout`, a model or a state). ``model.load_state_dict(unflatten(v, like=model))``
    loads it. The tensors own their memory (copies of ``vector``)."""
    layout = _layout(like)
    v = np.asarray(vector.detach().cpu().numpy() if isinstance(vector, torch.Tensor) else vector)
    if v.ndim != 1 or v.shape[0] != layout.size:
        raise ConfigError(f"params: expected a vector of {layout.size} values, got shape {v.shape}")
    v = v.astype(np.float32, copy=True)
    return {
        name: torch.from_numpy(v[o : o + n].reshape(shape).copy())
        for name, shape, o, n in zip(layout.names, layout.shapes, layout.offsets, layout.sizes, strict=True)
    }


def stacked_state(vectors: Any, *, like: ParamLayout | nn.Module | State) -> dict[str, torch.Tensor]:
    """Many vectors ``(N, size)`` as one state of stacked tensors ``name -> (N, *shape)`` (float32
    copies), the form ``torch.func.vmap(torch.func.functional_call)`` consumes."""
    layout = _layout(like)
    m = np.asarray(vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else vectors)
    if m.ndim != 2 or m.shape[1] != layout.size:
        raise ConfigError(f"params: expected vectors of shape (N, {layout.size}), got shape {m.shape}")
    m = np.ascontiguousarray(m, dtype=np.float32)
    n = m.shape[0]
    return {
        name: torch.from_numpy(m[:, o : o + k].reshape(n, *shape).copy())
        for name, shape, o, k in zip(layout.names, layout.shapes, layout.offsets, layout.sizes, strict=True)
    }
