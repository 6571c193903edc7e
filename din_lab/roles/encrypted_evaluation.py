"""The seam between the roles' PyTorch models and encrypted evaluation (:mod:`din_lab.he`).

:func:`he_model` turns a model the lab trains into the :class:`~din_lab.he.HEModel` an evaluator
runs on the encrypted test set: logistic regression (``Linear``) and the square-activation MLP
(``Linear -> Square -> ... -> Linear``). Any other layer (ReLU, convolution, pooling) has no CKKS
evaluation here and is refused with a :class:`~din_lab.errors.ConfigError` that names the HE-ready
variants, which is what a task configured for encrypted evaluation must train from its start.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from din_lab.errors import ConfigError
from din_lab.he import HEModel, Linear, Square
from din_lab.learning import unflatten
from din_lab.learning.models import Square as TorchSquare

__all__ = ["HE_READY", "he_model"]

HE_READY = "logistic regression (model 'logreg') or the MLP with the square activation (x^2, as in CryptoNets)"


def he_model(module: nn.Module, vector: np.ndarray | None = None) -> HEModel:
    """The HE model of ``module`` (with the parameters of flat ``vector`` if given, in the lab's
    :func:`~din_lab.learning.flatten` order)."""
    params = unflatten(vector, like=module) if vector is not None else dict(module.named_parameters())
    layers: list[Linear | Square] = []
    for name, m in module.named_children() if isinstance(module, nn.Sequential) else [("", module)]:
        if isinstance(m, nn.Linear):
            w = params[f"{name}.weight"].detach().double().numpy()
            b = params[f"{name}.bias"].detach().double().numpy()
            layers.append(Linear(weight=w.T.copy(), bias=b.copy()))
        elif isinstance(m, TorchSquare):
            layers.append(Square())
        else:
            raise ConfigError(f"a {type(m).__name__} layer has no CKKS evaluation: encrypted evaluation needs "
                              f"{HE_READY}")
    return HEModel(layers=tuple(layers))
