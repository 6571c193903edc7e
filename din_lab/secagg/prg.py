"""Randomness and key derivation: the byte source (:data:`Rng`, :func:`seeded_rng`), HKDF-SHA256
(:func:`hkdf`) and the mask PRG (:func:`expand`): AES-256-CTR keystream read as little-endian
``uint64`` (or ``uint32``) words, i.e. uniform elements of Z_(2^64) (or Z_(2^32)).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from din_lab.errors import ConfigError

__all__ = ["RING_DTYPES", "MaskStream", "Rng", "expand", "hkdf", "ring_dtype", "seeded_rng", "system_rng"]

RING_DTYPES = (np.dtype("<u4"), np.dtype("<u8"))  # Z_(2^32) and Z_(2^64)


def ring_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The little-endian unsigned dtype of a supported ring (``uint32`` or ``uint64``), or ValueError."""
    d = np.dtype(dtype).newbyteorder("<")
    if d not in RING_DTYPES:
        raise ValueError(f"masks live in Z_(2^32) or Z_(2^64): dtype uint32 or uint64, not {np.dtype(dtype)}")
    return d

Rng = Callable[[int], bytes]
"""A source of random bytes: ``rng(n)`` returns ``n`` bytes. ``os.urandom`` for real keys;
:func:`seeded_rng` for a reproducible lab run."""

system_rng: Rng = os.urandom

_ZERO_IV = bytes(16)
_RNG_DOMAIN = b"din-lab/secagg/v1/seeded-rng"


def seeded_rng(seed: int | bytes | str) -> Rng:
    """A deterministic byte stream for reproducible simulations and tests: the AES-256-CTR keystream
    under ``SHA-256(domain || seed)``. Successive calls continue the stream, so the same seed and the
    same sequence of requests give the same bytes. Cryptographically strong, but whoever knows the
    seed knows every key drawn from it: never use a guessable seed outside the lab."""
    if isinstance(seed, bool) or not isinstance(seed, int | bytes | str):
        raise ConfigError(f"seed must be an int, bytes or str, got {type(seed).__name__}")
    if isinstance(seed, int):
        if seed < 0:
            raise ConfigError("seed must be non-negative")
        material = b"int:" + str(seed).encode()
    elif isinstance(seed, str):
        material = b"str:" + seed.encode()
    else:
        material = b"bytes:" + bytes(seed)
    key = hashlib.sha256(_RNG_DOMAIN + material).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()

    def rng(n: int) -> bytes:
        if n < 0:
            raise ValueError("negative byte count")
        return encryptor.update(bytes(n))

    return rng


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@functools.lru_cache(maxsize=8)
def _zeros(nbytes: int) -> bytes:
    return bytes(nbytes)


def expand(key: bytes, dimension: int, dtype: npt.DTypeLike = np.uint64) -> npt.NDArray[np.uint64]:
    """The PRG: ``dimension`` uniform elements of Z_(2^64) (or Z_(2^32) with ``dtype=uint32``) from a
    32-byte key (AES-256-CTR with a zero IV, so every key must be used for one stream only: callers
    derive a fresh key per use with :func:`hkdf`). The array is read-only (a view of the keystream)."""
    if len(key) != 32:
        raise ValueError("the PRG key must be 32 bytes")
    d = ring_dtype(dtype)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
    return np.frombuffer(encryptor.update(_zeros(d.itemsize * dimension)), dtype=d)


class MaskStream:
    """:func:`expand` into one reusable buffer (no allocation per mask): ``generate(key)`` returns a
    view that the next call overwrites. One per thread."""

    def __init__(self, dimension: int, dtype: npt.DTypeLike = np.uint64) -> None:
        self.dimension = dimension
        self.dtype = ring_dtype(dtype)
        nbytes = self.dtype.itemsize * dimension
        self._zeros = _zeros(nbytes)
        self._buffer = bytearray(nbytes + 15)  # update_into wants room for one more block
        self._view = np.frombuffer(self._buffer, dtype=self.dtype, count=dimension)

    def generate(self, key: bytes) -> npt.NDArray[np.uint64]:
        if len(key) != 32:
            raise ValueError("the PRG key must be 32 bytes")
        encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
        encryptor.update_into(self._zeros, self._buffer)
        return self._view
