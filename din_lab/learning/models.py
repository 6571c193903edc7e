"""Models: what a task trains, described by a :class:`ModelSpec` and built by :func:`build_model`.

- ``"logreg"``: multinomial logistic regression, one ``Linear(num_features, num_classes)``
  (parameters ``fc0.weight``, ``fc0.bias``).
- ``"mlp"``: ``Linear -> activation -> ... -> Linear`` with ``hidden`` widths; ``activation`` is
  ``"relu"`` or ``"square"`` (``x * x``, a polynomial, so the network can be evaluated under CKKS
  homomorphic encryption). Parameters ``fc0.*``, ``fc1.*``, ... from input to output.
- ``"cnn"``: a small CNN for the 8x8 digits (64 features, read row-major as one 8x8 channel):
  ``conv0`` 3x3 1->8, ReLU, 2x2 max-pool, ``conv1`` 3x3 8->16, ReLU, 2x2 max-pool, ``fc``
  64->num_classes. Any other ``num_features`` is refused.

Every model maps a float32 batch ``(batch, num_features)`` to logits ``(batch, num_classes)`` and
holds parameters only (no buffers, no dropout, no batch norm), so a model is exactly its flat
parameter vector (:mod:`din_lab.learning.params`) and trains identically alone or batched.

Initialization is seeded and local: modules are created on the ``meta`` device and filled from a
private ``torch.Generator(seed)`` (weights and biases uniform in +-1/sqrt(fan_in), the PyTorch
default distribution), so building a model never touches torch's global random state and the same
spec and seed give the same parameters bit for bit.

:attr:`ModelSpec.he_ready` says whether the model can be evaluated under homomorphic encryption:
logistic regression and the square-activation MLP can; the ReLU MLP and the CNN cannot.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from din_lab.errors import ConfigError

__all__ = ["ACTIVATIONS", "LAB_MODELS", "MODELS", "ModelSpec", "Square", "build_model", "lab_model_spec"]

MODELS: tuple[str, ...] = ("logreg", "mlp", "cnn")
ACTIVATIONS: tuple[str, ...] = ("relu", "square")
CNN_IMAGE = (8, 8)
CNN_CHANNELS = (8, 16)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Which model to build. ``hidden`` and ``activation`` apply to ``"mlp"`` only (the CNN's
    layout is fixed, see the module docstring)."""

    name: str = "logreg"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ConfigError(f"model.name: unknown model {self.name!r}; valid names: {', '.join(MODELS)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"model.activation: unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        hidden = tuple(self.hidden)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
            raise ConfigError(f"model.hidden: widths must be positive integers, got {self.hidden!r}")
        if self.name == "mlp" and not hidden:
            raise ConfigError("model.hidden: an mlp needs at least one hidden layer")
        object.__setattr__(self, "hidden", hidden)

    @property
    def he_ready(self) -> bool:
        """True when the model is a polynomial of its input (evaluable under CKKS): logistic
        regression, and the MLP with ``activation="square"``."""
        return self.name == "logreg" or (self.name == "mlp" and self.activation == "square")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"model: unknown settings: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "hidden" in data:
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


# the model names a task configuration (and the CLI's --model) uses
LAB_MODELS: dict[str, ModelSpec] = {
    "logreg": ModelSpec(name="logreg"),
    "mlp": ModelSpec(name="mlp"),
    "mlp-square": ModelSpec(name="mlp", activation="square"),
    "cnn": ModelSpec(name="cnn"),
}


def lab_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` a task's ``model`` setting names (``mlp-square``: the MLP with the
    x^2 activation, the HE-ready variant of ``mlp``)."""
    if name not in LAB_MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose from {', '.join(LAB_MODELS)}")
    return LAB_MODELS[name]


class Square(nn.Module):
    """``x * x``: the HE-friendly activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class _Cnn(nn.Module):
    def __init__(self, num_classes: int, *, device: str) -> None:
        super().__init__()
        c0, c1 = CNN_CHANNELS
        self.conv0 = nn.Conv2d(1, c0, 3, padding=1, device=device)
        self.conv1 = nn.Conv2d(c0, c1, 3, padding=1, device=device)
        self.fc = nn.Linear(c1 * (CNN_IMAGE[0] // 4) * (CNN_IMAGE[1] // 4), num_classes, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, *CNN_IMAGE)
        x = nn.functional.max_pool2d(torch.relu(self.conv0(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        return self.fc(x.flatten(1))


def _check_dims(num_features: int, num_classes: int) -> None:
    for field, value, low in (("num_features", num_features, 1), ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"model: {field} must be an integer >= {low}, got {value!r}")


def build_model(spec: ModelSpec, *, num_features: int, num_classes: int, seed: int) -> nn.Module:
    """A freshly initialized model (float32, CPU, parameters only); same arguments, same parameters."""
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"model: expected a ModelSpec, got {type(spec).__name__}")
    _check_dims(num_features, num_classes)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"model: seed must be a non-negative integer, got {seed!r}")
    meta = "meta"
    model: nn.Module
    if spec.name == "logreg":
        model = nn.Sequential(OrderedDict(fc0=nn.Linear(num_features, num_classes, device=meta)))
    elif spec.name == "mlp":
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        widths = (num_features, *spec.hidden)
        for i in range(len(spec.hidden)):
            layers[f"fc{i}"] = nn.Linear(widths[i], widths[i + 1], device=meta)
            layers[f"act{i}"] = nn.ReLU() if spec.activation == "relu" else Square()
        layers[f"fc{len(spec.hidden)}"] = nn.Linear(widths[-1], num_classes, device=meta)
        model = nn.Sequential(layers)
    else:
        if num_features != CNN_IMAGE[0] * CNN_IMAGE[1]:
            raise ConfigError(
                f"model.name: 'cnn' reads 8x8 images (64 features, the digits data set), got {num_features} features"
            )
        model = _Cnn(num_classes, device=meta)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
    return model.float()
