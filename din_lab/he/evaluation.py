"""Encrypted evaluation: a model (:class:`HEModel`) applied to an encrypted test set by an evaluator
that holds only the public context.

Models are layers: :class:`Linear` (plaintext weights ``in x out`` and bias) and :class:`Square`
(x^2, the CryptoNets activation). Logistic regression is depth 1; an MLP with one hidden square
layer is depth 3. Anything else (ReLU, convolutions) has no CKKS evaluation here: the lab refuses
such a model when the task is configured.

Determinism, so a committee can agree by digest: every operation is a plaintext-scalar multiply,
a ciphertext addition or a ciphertext square, applied in a fixed order; none draws randomness.
One trap (NOTES.md): TenSEAL replaces a product with the zero plaintext by a FRESH encryption of
zero, which is random. A weight whose magnitude is below the parameters'
:attr:`~din_lab.he.HEParams.min_weight` (2^-18 with the depth-1 parameters, which encodes as 1 at
the weights' scale 2^18; 2^-30 at scale 2^40) is therefore evaluated as ``+-min_weight``: that
logit moves by at most ``min_weight * |x|`` per such weight, no more than the weights' rounding
already does, and every evaluator gets the same bytes.

Precision: at scale 2^40 the square-activation MLP keeps about 6e-6 of relative precision, so the
encrypted logits agree with plaintext within 1e-3 while they stay below about 150 in magnitude
(the lab's models: a few tens); larger outputs need a larger scale (e.g. 2^50 with 50-bit primes).
Logistic regression (inputs at 2^31, weights at 2^18, :mod:`din_lab.he.params`) decrypts
correctly while its logits stay below 1,024, within the weights' rounding plus the encryption
noise, which grows with the weights: about 2e-6 per unit of a column's ``sum |w|`` (1e-5 for the
lab's trained models).

The last linear layer is not rescaled: its products stay at the product of the two scales, which
saves the costliest step of each multiply (a rescale is about three quarters of it) and one level.
A plain bias cannot be added at that scale, so it is folded into the input of the column's largest
weight: ``(h_k + b / w_k) * w_k``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import tenseal as ts

from din_lab.errors import ConfigError
from din_lab.he.ciphertexts import EncryptedTable, table_from_cells
from din_lab.he.params import HEDepthError, HEError, HEParams, params_for_depth

__all__ = ["HEModel", "Linear", "Square", "check_model", "evaluate"]

_EVALUATING = threading.Lock()


@dataclass(frozen=True, eq=False)
class Linear:
    """``y = x @ weight + bias`` with ``weight`` of shape ``(inputs, outputs)``."""

    weight: npt.NDArray[np.float64] = field(repr=False)
    bias: npt.NDArray[np.float64] = field(repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float64)
        b = np.asarray(self.bias, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ConfigError(f"a linear layer needs weight (inputs, outputs) and bias (outputs,), got {w.shape} "
                              f"and {b.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ConfigError("a linear layer's weights and bias must be finite")
        w, b = w.copy(), b.copy()  # validated once, then frozen: nobody edits a layer afterwards
        w.flags.writeable = False
        b.flags.writeable = False
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)


@dataclass(frozen=True)
class Square:
    """``y = x * x``: a polynomial activation CKKS evaluates with one ciphertext product."""


@dataclass(frozen=True, eq=False)
class HEModel:
    """A sequence of :class:`Linear` and :class:`Square` layers, ending in a linear layer."""

    layers: tuple[Linear | Square, ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers or not isinstance(layers[-1], Linear):
            raise ConfigError("an HE model ends with a linear layer (its outputs are the logits)")
        width = None
        for layer in layers:
            if not isinstance(layer, Linear | Square):
                raise ConfigError(f"an HE model has Linear and Square layers only, got {type(layer).__name__}: "
                                  "use the square-activation MLP or logistic regression")
            if isinstance(layer, Linear):
                if width is not None and layer.weight.shape[0] != width:
                    raise ConfigError(f"a linear layer takes {layer.weight.shape[0]} inputs after a layer of {width}")
                width = layer.weight.shape[1]

    @property
    def inputs(self) -> int:
        return next(layer for layer in self.layers if isinstance(layer, Linear)).weight.shape[0]

    @property
    def outputs(self) -> int:
        return self.layers[-1].weight.shape[1]

    @property
    def depth(self) -> int:
        """Multiplicative depth: one per layer."""
        return len(self.layers)

    def plaintext(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The same computation in float64 (the reference the encrypted one is tested against)."""
        h = np.asarray(x, dtype=np.float64)
        for layer in self.layers:
            h = h @ layer.weight + layer.bias if isinstance(layer, Linear) else h * h
        return h


def _safe(w: float, least: float) -> float:
    return float(w) if abs(w) >= least else float(np.copysign(least, w) if w else least)


def _linear(h: Sequence[ts.CKKSVector], layer: Linear, *, last: bool, params: HEParams) -> list[ts.CKKSVector]:
    out = []
    scale, factor = 2.0 ** params.weight_scale_bits, params.value_scale
    for j in range(layer.weight.shape[1]):
        w = [_safe(v, params.min_weight) for v in layer.weight[:, j]]
        if last:
            # the products stay at scale^2, where a plain bias cannot be added: fold it into the
            # largest weight's input instead, (h_k + b / w_k) * w_k, added at the usual scale. w_k is
            # multiplied as round(w_k * scale) / scale, so divide by that, or a small w_k magnifies
            # the rounding into the bias
            k = int(np.argmax(np.abs(w)))
            stored = round(w[k] * scale) / scale
            acc = h[k].add(factor * float(layer.bias[j]) / stored).mul(w[k])
            for f in range(len(w)):
                if f != k:
                    acc.add_(h[f].mul(w[f]))
        else:
            acc = h[0].mul(w[0])
            for f in range(1, len(w)):
                acc.add_(h[f].mul(w[f]))
            acc.add_(factor * float(layer.bias[j]))
        out.append(acc)
    return out


def check_model(model: HEModel, test_set: EncryptedTable) -> None:
    """:class:`HEDepthError` if ``model`` is deeper than ``test_set``'s parameters allow (naming the
    parameters it needs); :class:`HEError` if its input width is not the test set's."""
    params = test_set.params
    if model.depth > params.max_depth:
        need = params_for_depth(model.depth)
        raise HEDepthError(f"the model has depth {model.depth}, these parameters (N = {params.poly_modulus_degree}, "
                           f"primes {list(params.coeff_mod_bit_sizes)}) evaluate depth {params.max_depth} at most: "
                           f"it needs N = {need.poly_modulus_degree}, primes {list(need.coeff_mod_bit_sizes)}")
    if model.inputs != test_set.columns:
        raise HEError(f"the model reads {model.inputs} features, the encrypted test set has {test_set.columns}")


def evaluate(model: HEModel, test_set: EncryptedTable, *, context: ts.Context) -> EncryptedTable:
    """The encrypted outputs (logits) of ``model`` on ``test_set``, whose ciphertexts are linked to
    ``context`` (the public one). :class:`HEDepthError` before any work if the model is deeper than
    the parameters allow; :class:`HEError` if its input width is not the test set's."""
    check_model(model, test_set)
    params = test_set.params
    rows = []
    # auto_rescale is state of the context the ciphertexts are linked to (the one they were loaded
    # with, whatever ``context`` is): switch it there, one evaluation at a time per process
    contexts = [context, test_set.cells[0][0].context()]
    with _EVALUATING:
        saved = [c.auto_rescale for c in contexts]
        try:
            for row in test_set.cells:
                h = list(row)
                for i, layer in enumerate(model.layers):
                    last = i == len(model.layers) - 1
                    for c in contexts:
                        c.auto_rescale = not last  # the last layer stays at scale^2
                    h = (_linear(h, layer, last=last, params=params) if isinstance(layer, Linear)
                         else [v.square() for v in h])
                rows.append(h)
        except (ValueError, RuntimeError) as e:
            raise HEError(f"encrypted evaluation failed: {e}") from e
        finally:
            for c, value in zip(contexts, saved, strict=True):
                c.auto_rescale = value
    return table_from_cells(rows, like=test_set, kind="outputs")
