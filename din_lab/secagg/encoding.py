"""Fixed-point encoding of float vectors into Z_(2^64) (:class:`FixedPoint`).

A value ``x`` is clipped to ``[-clip, clip]``, scaled by ``2^frac_bits``, rounded to the nearest
integer (ties to even, ``numpy.rint``) and stored as that integer's 64-bit two's complement, i.e.
an element of Z_(2^64) held in a ``uint64`` (numpy's ``uint64`` arithmetic wraps, which is exactly
arithmetic mod 2^64). Masks live in the same ring, so masking and unmasking are ``uint64`` adds.

Exactness: every encoded value has magnitude at most ``M = rint(clip * 2^frac_bits)``, so the sum of
``count`` encoded vectors, read back as signed ``int64``, is the exact integer sum whenever
``count * M <= 2^63 - 1`` (about ``count * clip * 2^frac_bits < 2^63``): :attr:`FixedPoint.max_summands`.
The defaults (``clip=8``, ``frac_bits=32``, ``M = 2^35``) allow 2^28 - 1 summands with a resolution
of 2^-32 (2.3e-10); 10,000 summands would allow up to ``clip * 2^frac_bits < 9.2e14`` (e.g.
``clip=8``, ``frac_bits=46``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from din_lab.errors import ConfigError
from din_lab.secagg.errors import MaskedVectorError, SecAggError

__all__ = ["FixedPoint"]

_INT63 = (1 << 63) - 1


@dataclass(frozen=True, kw_only=True)
class FixedPoint:
    """Clip to ``[-clip, clip]``, scale by ``2^frac_bits``, round, wrap into Z_(2^bits) (``bits`` is 64:
    the masking layer works in Z_(2^64) on ``uint64`` arrays)."""

    clip: float = 8.0
    frac_bits: int = 32
    bits: int = 64

    def __post_init__(self) -> None:
        if self.bits != 64:
            raise ConfigError(f"FixedPoint.bits must be 64 (masks live in Z_(2^64), uint64), got {self.bits}")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 62:
            raise ConfigError(f"FixedPoint.frac_bits must be an integer in [0, 62], got {self.frac_bits!r}")
        if not isinstance(self.clip, int | float) or not math.isfinite(self.clip) or self.clip <= 0:
            raise ConfigError(f"FixedPoint.clip must be a positive finite number, got {self.clip!r}")
        if self.max_abs_encoded < 1:
            raise ConfigError(f"clip {self.clip} * 2^{self.frac_bits} rounds to 0: every value would encode as 0")
        if self.max_abs_encoded > _INT63:
            raise ConfigError(f"clip {self.clip} * 2^{self.frac_bits} does not fit in 63 bits: lower clip or frac_bits")

    @property
    def scale(self) -> float:
        return float(2 ** self.frac_bits)

    @property
    def resolution(self) -> float:
        """The step between encodable values, 2^-frac_bits (round-trip error is at most half of it)."""
        return 2.0 ** -self.frac_bits

    @property
    def max_abs_encoded(self) -> int:
        """``M``: the largest magnitude an encoded value can have, rint(clip * 2^frac_bits)."""
        return int(np.rint(float(self.clip) * self.scale))

    @property
    def max_summands(self) -> int:
        """The most vectors whose encoded sum is still exact: floor((2^63 - 1) / M)."""
        return _INT63 // self.max_abs_encoded

    def encode(self, values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Clip, scale, round and wrap ``values`` (any shape) into a ``uint64`` array of the same shape.
        ``+-inf`` clip to ``+-clip``; NaN raises :class:`SecAggError`."""
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SecAggError(f"cannot encode values as float64: {e}") from e
        if np.isnan(x).any():
            raise SecAggError("cannot encode NaN")
        scaled = np.rint(np.clip(x, -float(self.clip), float(self.clip)) * self.scale)
        return scaled.astype(np.int64).view(np.uint64)

    def decode(self, encoded: npt.NDArray[np.uint64], *, count: int = 1) -> npt.NDArray[np.float64]:
        """Floats from an encoded vector or from the sum of ``count`` encoded vectors: read as signed
        int64 (two's complement), divide by 2^frac_bits. ``encoded.view(np.int64)`` is the exact integer
        sum; the float64 conversion rounds magnitudes above 2^53. Raises :class:`SecAggError` if
        ``count`` exceeds :attr:`max_summands` (the sum may have wrapped)."""
        arr = np.asarray(encoded)
        if arr.dtype != np.uint64:
            raise MaskedVectorError(f"decode expects a uint64 array, got {arr.dtype}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SecAggError(f"count must be a non-negative integer, got {count!r}")
        if count > self.max_summands:
            raise SecAggError(f"a sum of {count} vectors may have wrapped: this FixedPoint is exact for at most "
                              f"{self.max_summands} (lower clip or frac_bits)")
        return arr.view(np.int64).astype(np.float64) / self.scale
