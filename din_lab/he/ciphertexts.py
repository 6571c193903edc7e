"""Encrypted test sets and encrypted outputs as deterministic bytes.

Batched layout: samples are packed into the slots of a ciphertext (``N / 2`` per chunk), one
ciphertext per feature and chunk, so a linear layer is plaintext-scalar multiplies and additions
(no rotation, no Galois keys). Outputs have the same layout: one ciphertext per class (or hidden
unit) and chunk.

Bytes: ``DNHE`` | version u8 | kind u8 | header length u32 | header (canonical JSON: parameters,
sample and chunk counts, shape) | per ciphertext, length u32 | TenSEAL serialization, in chunk
then column order. The same ciphertexts always give the same bytes, so committees compare
outputs by digest (:meth:`EncryptedTable.digest`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import tenseal as ts

from din_lab.errors import ConfigError
from din_lab.he.context import check_parameters
from din_lab.he.params import HEError, HEParameterError, HEParams

__all__ = ["EncryptedTable", "encrypt_test_set", "framed", "read_framed"]

_MAGIC = b"DNHE"
_VERSION = 1
KINDS = {"test-set": 1, "outputs": 2}
_HEAD = struct.Struct(">4sBBI")
_LEN = struct.Struct(">I")
_MAX_HEADER = 4096


def framed(blobs: Iterable[bytes]) -> bytes:
    """``blobs`` each prefixed with its length (u32, big-endian): the body of both encrypted
    formats (an :class:`EncryptedTable`'s ciphertexts, and the tables of a subgroup's outputs)."""
    parts = []
    for blob in blobs:
        parts += [_LEN.pack(len(blob)), blob]
    return b"".join(parts)


def read_framed(data: bytes, *, start: int, count: int, what: str) -> list[bytes]:
    """The ``count`` length-prefixed blobs :func:`framed` wrote from ``start`` to the very end of
    ``data``; :class:`HEParameterError` naming ``what`` if they are truncated or bytes trail them."""
    pos, blobs = start, []
    for _ in range(count):
        if pos + _LEN.size > len(data):
            raise HEParameterError(f"{what}: truncated")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise HEParameterError(f"{what}: truncated")
        blobs.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise HEParameterError(f"{what}: {len(data) - pos} trailing bytes")
    return blobs


@dataclass(frozen=True, eq=False)
class EncryptedTable:
    """A ``samples x columns`` table of reals encrypted in the batched layout: ``cells[k][j]`` is
    the ciphertext of column ``j`` for the samples of chunk ``k``."""

    kind: str
    params: HEParams
    samples: int
    columns: int
    cells: tuple[tuple[ts.CKKSVector, ...], ...] = field(repr=False)

    @property
    def chunks(self) -> int:
        return len(self.cells)

    def chunk_sizes(self) -> list[int]:
        slots = self.params.slots
        return [min(slots, self.samples - k * slots) for k in range(self.chunks)]

    def to_bytes(self) -> bytes:
        header = json.dumps({"params": json.loads(self.params.to_json()), "samples": self.samples,
                             "columns": self.columns, "chunks": self.chunks}, sort_keys=True,
                            separators=(",", ":")).encode()
        return (_HEAD.pack(_MAGIC, _VERSION, KINDS[self.kind], len(header)) + header
                + framed(ct.serialize() for row in self.cells for ct in row))

    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`: what committee members compare."""
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes, *, context: ts.Context, kind: str, params: HEParams) -> EncryptedTable:
        """Decode against ``context`` (checked to have ``params``); :class:`HEParameterError` if the
        bytes are malformed, of another kind, or recorded with other parameters."""
        check_parameters(context, params)
        data = bytes(data)
        if len(data) < _HEAD.size:
            raise HEParameterError("encrypted table: too short")
        magic, version, got_kind, hlen = _HEAD.unpack_from(data)
        if magic != _MAGIC or version != _VERSION or got_kind != KINDS.get(kind):
            raise HEParameterError(f"not an encrypted {kind} (format {magic!r} v{version}, kind {got_kind})")
        if hlen > _MAX_HEADER or _HEAD.size + hlen > len(data):
            raise HEParameterError(f"encrypted {kind}: a header of {hlen} bytes")
        try:
            header = json.loads(data[_HEAD.size:_HEAD.size + hlen])
            recorded = HEParams.from_json(json.dumps(header["params"]))
            counts = [header[k] for k in ("samples", "columns", "chunks")]
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError, ConfigError) as e:
            raise HEParameterError(f"encrypted {kind}: malformed header ({e})") from e
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise HEParameterError(f"encrypted {kind}: sample, column and chunk counts must be integers")
        samples, columns, chunks = counts
        if samples < 1 or columns < 1 or chunks != -(-samples // params.slots) \
                or chunks * columns * (_LEN.size + 1) > len(data):
            raise HEParameterError(f"encrypted {kind}: {samples} samples, {columns} columns and {chunks} chunks do "
                                   f"not fit {len(data)} bytes at {params.slots} slots per ciphertext")
        if recorded != params:
            raise HEParameterError(f"encrypted {kind} was made with {recorded.to_json()}, expected {params.to_json()}")
        blobs = read_framed(data, start=_HEAD.size + hlen, count=chunks * columns, what=f"encrypted {kind}")
        cells = []
        for k in range(chunks):
            row = []
            for blob in blobs[k * columns:(k + 1) * columns]:
                try:
                    vector = ts.ckks_vector_from(context, blob)
                    size = vector.size()
                except (ValueError, RuntimeError, TypeError) as e:
                    raise HEParameterError(f"encrypted {kind}: a ciphertext does not load under this context "
                                           f"({e})") from e
                if size != min(params.slots, samples - k * params.slots):
                    raise HEParameterError(f"encrypted {kind}: a ciphertext of chunk {k} holds {size} values")
                row.append(vector)
            cells.append(tuple(row))
        return cls(kind=kind, params=params, samples=samples, columns=columns, cells=tuple(cells))

    def decrypt(self, secret_context: ts.Context) -> npt.NDArray[np.float64]:
        """The ``samples x columns`` plaintext (owner only: needs the secret key), the
        :attr:`~din_lab.he.HEParams.value_scale` factor divided away. Full precision:
        never publish these values as they are. With the public ciphertexts, exact CKKS decryptions
        let anyone recover the secret key (Li and Micciancio, 2021); publish only what is derived from
        them (scores, predicted classes) or values rounded far above the noise."""
        if not secret_context.is_private():
            raise HEError("decrypting needs the owner's secret key")
        out = np.empty((self.samples, self.columns))
        start = 0
        for k, row in enumerate(self.cells):
            size = self.chunk_sizes()[k]
            for j, ct in enumerate(row):  # a copy under the secret context: this table stays as it is
                mine = ts.ckks_vector_from(secret_context, ct.serialize())
                out[start:start + size, j] = np.asarray(mine.decrypt(), dtype=np.float64)[:size] / self.params.value_scale
            start += size
        return out


def encrypt_test_set(x: npt.ArrayLike, *, context: ts.Context, params: HEParams) -> EncryptedTable:
    """The owner encrypts its ``samples x features`` test inputs in the batched layout."""
    check_parameters(context, params)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.all(np.isfinite(arr)):
        raise HEError(f"a test set is a non-empty, finite samples x features array, got shape {arr.shape}")
    slots, weight_scale = params.slots, 2.0 ** params.weight_scale_bits
    cells = []
    for start in range(0, arr.shape[0], slots):
        block = arr[start:start + slots]
        # held at the weights' scale, multiplied by the factor that keeps the inputs' precision
        cells.append(tuple(ts.ckks_vector(context, (block[:, j] * params.value_scale).tolist(), weight_scale)
                           for j in range(arr.shape[1])))
    return EncryptedTable(kind="test-set", params=params, samples=arr.shape[0], columns=arr.shape[1],
                          cells=tuple(cells))


def table_from_cells(cells: Sequence[Sequence[ts.CKKSVector]], *, like: EncryptedTable, kind: str) -> EncryptedTable:
    return EncryptedTable(kind=kind, params=like.params, samples=like.samples, columns=len(cells[0]),
                          cells=tuple(tuple(row) for row in cells))
