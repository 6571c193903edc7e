"""The errors secure aggregation raises: all are :class:`~din_lab.errors.CryptoError` (so a
``DinLabError``), under :class:`SecAggError`.

- :class:`SecAggAbort`: the round cannot be unmasked without breaking its privacy guarantee (too
  few survivors, survivors' mask graph disconnected) or without enough shares (fewer than ``t``
  committee members contribute): the caller marks the round (the subgroup's result) failed.
- :class:`ShareError`: an (encrypted or revealed) share is malformed, tampered with, replayed from
  another round, subgroup, participant or committee member, duplicated, from a non-member, of the
  wrong kind (Bonawitz's rule), or the shares of a secret are inconsistent beyond correction.
- :class:`MaskedVectorError`: a masked vector has the wrong dtype, shape or length, or comes from
  someone outside the round's mask graph.
- :class:`AuxMessageError`: a round's auxiliary message (fresh mask public key, seed commitment)
  is malformed, for another round, or missing for a neighbour.
"""

from __future__ import annotations

from din_lab.errors import CryptoError

__all__ = ["AuxMessageError", "MaskedVectorError", "SecAggAbort", "SecAggError", "ShareError"]


class SecAggError(CryptoError):
    """Base of every secure-aggregation error."""


class SecAggAbort(SecAggError):
    """The round cannot be completed safely: the caller marks it failed (no share is revealed)."""


class ShareError(SecAggError):
    """A secret share is malformed, tampered, replayed, duplicated, from a non-member or inconsistent."""


class MaskedVectorError(SecAggError):
    """A masked vector is malformed (dtype, shape, length) or from outside the round."""


class AuxMessageError(SecAggError):
    """A round auxiliary message is malformed, for another round, or missing."""
