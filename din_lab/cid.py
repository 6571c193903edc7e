"""Content identifiers as the chain stores them: a SHA-256 digest plus a 16-bit kind.

A :class:`Cid` converts between the text form IPFS prints (``Qm...`` for CIDv0, ``bafy...`` /
``bafk...`` base32 for CIDv1), its binary form, and the compact on-chain form
``(bytes32 digest, uint16 kind)`` where kind is ``0x0070`` (CIDv0 dag-pb), ``0x0170`` (CIDv1
dag-pb) or ``0x0155`` (CIDv1 raw). Only sha2-256 multihashes are supported, which is what
``ipfs add`` produces. This is a value type shared by ``chain`` and ``storage``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from din_lab.errors import MalformedCidError

V0_DAG_PB = 0x0070
V1_DAG_PB = 0x0170
V1_RAW = 0x0155
KINDS = (V0_DAG_PB, V1_DAG_PB, V1_RAW)

_SHA2_256 = 0x12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise MalformedCidError(f"invalid base58 character {c!r} in {text!r}")
        n = n * 58 + _B58_INDEX[c]
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


@dataclass(frozen=True, slots=True)
class Cid:
    """A sha2-256 CID (v0 dag-pb, v1 dag-pb or v1 raw)."""

    digest: bytes
    kind: int = V0_DAG_PB

    def __post_init__(self) -> None:
        if not isinstance(self.digest, (bytes, bytearray)) or len(self.digest) != 32:
            raise MalformedCidError("a CID digest must be 32 bytes")
        if self.kind not in KINDS:
            raise MalformedCidError(f"unsupported CID kind {self.kind:#06x}; expected one of {[hex(k) for k in KINDS]}")
        if not any(self.digest):
            raise MalformedCidError("a CID digest of all zeros is reserved for 'no CID'")

    @property
    def version(self) -> int:
        return 0 if self.kind == V0_DAG_PB else 1

    @property
    def codec(self) -> int:
        return self.kind & 0xFF

    def to_bytes(self) -> bytes:
        """The binary CID (multihash for v0; version, codec, multihash for v1)."""
        multihash = bytes([_SHA2_256, 32]) + bytes(self.digest)
        if self.kind == V0_DAG_PB:
            return multihash
        return bytes([1, self.codec]) + multihash

    def __str__(self) -> str:
        return _text(bytes(self.digest), self.kind)

    def to_chain(self) -> tuple[bytes, int]:
        """The compact on-chain form ``(bytes32 digest, uint16 kind)``."""
        return (bytes(self.digest), self.kind)

    @classmethod
    def from_chain(cls, value: tuple[bytes, int] | list) -> Cid | None:
        """Inverse of :meth:`to_chain`; ``None`` for the empty CID ``(0, 0)``."""
        digest, kind = bytes(value[0]), int(value[1])
        if kind == 0 and not any(digest):
            return None
        return cls(digest=digest, kind=kind)

    @classmethod
    def of_raw_block(cls, data: bytes) -> Cid:
        """The CIDv1 (raw codec) of one block of ``data``: its sha2-256 digest, by definition of
        the raw codec. What ``ipfs add --cid-version=1`` prints for content under one chunk."""
        return cls(digest=hashlib.sha256(data).digest(), kind=V1_RAW)

    @classmethod
    def from_bytes(cls, data: bytes) -> Cid:
        data = bytes(data)
        if len(data) == 34 and data[0] == _SHA2_256 and data[1] == 32:
            return cls(digest=data[2:], kind=V0_DAG_PB)
        if len(data) == 36 and data[0] == 1 and data[2] == _SHA2_256 and data[3] == 32:
            kind = 0x0100 | data[1]
            if kind not in (V1_DAG_PB, V1_RAW):
                raise MalformedCidError(f"unsupported CIDv1 codec {data[1]:#x}")
            return cls(digest=data[4:], kind=kind)
        raise MalformedCidError(f"not a sha2-256 CID: {data.hex()}")

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse ``Qm...`` (CIDv0) or ``b...`` (CIDv1, base32) text."""
        if not isinstance(text, str) or not text:
            raise MalformedCidError(f"not a CID: {text!r}")
        if cls is Cid:
            return _parsed(text)
        return cls._parse_text(text)

    @classmethod
    def _parse_text(cls, text: str) -> Cid:
        if text.startswith("Qm") and len(text) == 46:
            return cls.from_bytes(_b58decode(text))
        if text[0] == "b":
            body = text[1:].upper()
            try:
                raw = base64.b32decode(body + "=" * (-len(body) % 8))
            except ValueError as e:
                raise MalformedCidError(f"invalid base32 CID {text!r}") from e
            return cls.from_bytes(raw)
        raise MalformedCidError(f"unsupported CID text {text!r} (expected Qm... or base32 b...)")

    @classmethod
    def coerce(cls, value: Cid | str | bytes) -> Cid:
        if isinstance(value, Cid):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls.from_bytes(value)


@functools.lru_cache(maxsize=1 << 16)
def _text(digest: bytes, kind: int) -> str:
    """A CID's text (the base encodings are slow and the lab prints and compares the same CIDs often)."""
    cid = Cid(digest=digest, kind=kind)
    if kind == V0_DAG_PB:
        return _b58encode(cid.to_bytes())
    return "b" + base64.b32encode(cid.to_bytes()).decode().lower().rstrip("=")


@functools.lru_cache(maxsize=1 << 16)
def _parsed(text: str) -> Cid:
    return Cid._parse_text(text)


EMPTY_CHAIN_CID: tuple[bytes, int] = (b"\0" * 32, 0)
