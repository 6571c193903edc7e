"""Shamir t-of-n secret sharing of 256-bit secrets over the prime field GF(p), p = 2^521 - 1 (a
Mersenne prime, comfortably above 2^256; a field element is 66 bytes big-endian).

The share held by committee member ``h`` (0-based) is ``f(h + 1)`` for a random polynomial ``f`` of
degree ``t - 1`` with ``f(0) = secret``. Any ``t`` shares determine ``f`` and so the secret; fewer
reveal nothing about it. Reconstruction (:func:`interpolate_at`) is Lagrange interpolation, which
gives the same value from every ``t``-subset of consistent shares.
"""

from __future__ import annotations

from collections.abc import Sequence

from din_lab.secagg.prg import Rng

__all__ = ["FIELD_BYTES", "PRIME", "SECRET_BYTES", "interpolate_at", "split"]

PRIME = (1 << 521) - 1
FIELD_BYTES = 66
SECRET_BYTES = 32
_SAMPLE_BYTES = FIELD_BYTES + 16  # 128 extra bits make the reduction mod p statistically uniform


def split(secret: bytes, *, threshold: int, holders: int, rng: Rng) -> list[int]:
    """The ``holders`` shares ``f(1), ..., f(holders)`` of a 32-byte ``secret`` with threshold ``threshold``."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secrets are {SECRET_BYTES} bytes")
    if not 1 <= threshold <= holders:
        raise ValueError(f"threshold {threshold} must be in [1, {holders}]")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [int.from_bytes(rng(_SAMPLE_BYTES), "big") % PRIME for _ in range(threshold - 1)]
    shares = []
    for x in range(1, holders + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append(y)
    return shares


def interpolate_at(points: Sequence[tuple[int, int]], x: int = 0) -> int:
    """The value at ``x`` of the polynomial of degree ``len(points) - 1`` through ``points``
    (``(x_j, y_j)`` with distinct nonzero ``x_j``); ``x = 0`` reconstructs the secret."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        num = 1
        den = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * (x - xm) % PRIME
                den = den * (xj - xm) % PRIME
        total = (total + yj * num * pow(den, -1, PRIME)) % PRIME
    return total
