"""Fixed-point encoding of float vectors into Z_(2^k), k = 64 (default) or 32 (:class:`FixedPoint`).

A value ``x`` is clipped to ``[-clip, clip]``, scaled by ``2^frac_bits``, rounded to the nearest
integer (ties to even, ``numpy.rint``) and stored as that integer's k-bit two's complement, i.e.
an element of Z_(2^k) held in a ``uint64`` (``uint32``) (numpy's unsigned arithmetic wraps, which is
exactly arithmetic mod 2^k). Masks live in the same ring, so masking and unmasking are unsigned adds.

Exactness: every encoded value has magnitude at most ``M = rint(clip * 2^frac_bits)``, so the sum of
``count`` encoded vectors, read back as signed, is the exact integer sum whenever
``count * M <= 2^(k-1) - 1``: :attr:`FixedPoint.max_summands`. Z_(2^32) halves the bytes every mask,
masked vector and unmasking pass moves (the committee's unmasking cost is dominated by mask
regeneration) at the price of precision: e.g. ``clip=2^10``, ``frac_bits=14`` allows 127 summands
at a resolution of 6e-5.
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

_SIGNED = {32: np.dtype("<i4"), 64: np.dtype("<i8")}
_UNSIGNED = {32: np.dtype("<u4"), 64: np.dtype("<u8")}


@dataclass(frozen=True, kw_only=True)
class FixedPoint:
    """Clip to ``[-clip, clip]``, scale by ``2^frac_bits``, round, wrap into Z_(2^bits): ``bits`` 64
    (``uint64`` arrays) or 32 (``uint32``); the masking layer works in the ring of the encoded dtype."""

    clip: float = 8.0
    frac_bits: int = 32
    bits: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or self.bits not in (32, 64):
            raise ConfigError(f"FixedPoint.bits must be 32 or 64 (masks live in Z_(2^32) or Z_(2^64)), got {self.bits}")
        top = self.bits - 2
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= top:
            raise ConfigError(f"FixedPoint.frac_bits must be an integer in [0, {top}], got {self.frac_bits!r}")
        if not isinstance(self.clip, int | float) or not math.isfinite(self.clip) or self.clip <= 0:
            raise ConfigError(f"FixedPoint.clip must be a positive finite number, got {self.clip!r}")
        if self.max_abs_encoded < 1:
            raise ConfigError(f"clip {self.clip} * 2^{self.frac_bits} rounds to 0: every value would encode as 0")
        if self.max_abs_encoded > self._int_max:
            raise ConfigError(f"clip {self.clip} * 2^{self.frac_bits} does not fit in {self.bits - 1} bits: lower clip "
                              "or frac_bits")

    @property
    def _int_max(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def dtype(self) -> np.dtype:
        """The ring's array dtype: ``uint64`` or ``uint32``."""
        return _UNSIGNED[self.bits]

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
        """The most vectors whose encoded sum is still exact: floor((2^(bits-1) - 1) / M)."""
        return self._int_max // self.max_abs_encoded

    def encode(self, values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Clip, scale, round and wrap ``values`` (any shape) into a :attr:`dtype` array of the same shape.
        ``+-inf`` clip to ``+-clip``; NaN raises :class:`SecAggError`."""
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SecAggError(f"cannot encode values as float64: {e}") from e
        if np.isnan(x).any():
            raise SecAggError("cannot encode NaN")
        scaled = np.rint(np.clip(x, -float(self.clip), float(self.clip)) * self.scale)
        return scaled.astype(_SIGNED[self.bits]).view(self.dtype)

    def decode(self, encoded: npt.NDArray[np.uint64], *, count: int = 1) -> npt.NDArray[np.float64]:
        """Floats from an encoded vector or from the sum of ``count`` encoded vectors: read as signed
        (two's complement), divide by 2^frac_bits. ``encoded.view(np.int64)`` is the exact integer
        sum (64-bit ring); the float64 conversion rounds magnitudes above 2^53. Raises :class:`SecAggError` if
        ``count`` exceeds :attr:`max_summands` (the sum may have wrapped)."""
        arr = np.asarray(encoded)
        if arr.dtype != self.dtype:
            raise MaskedVectorError(f"decode expects a {self.dtype.name} array (a {self.bits}-bit ring), got {arr.dtype}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SecAggError(f"count must be a non-negative integer, got {count!r}")
        if count > self.max_summands:
            raise SecAggError(f"a sum of {count} vectors may have wrapped: this FixedPoint is exact for at most "
                              f"{self.max_summands} (lower clip or frac_bits)")
        return arr.view(_SIGNED[self.bits]).astype(np.float64) / self.scale
