"""The byte format of everything secure aggregation sends (deterministic, versioned,
length-prefixed; so the protocol layer can store it on IPFS and get the same CID for the same
value)::

    message = magic "DNSA" | version u8 (1) | type u8 | count u16 | count x (length u32 | bytes)

Integers are big-endian. Each message type has a fixed number of fields and each field a fixed
meaning (see the ``to_bytes`` of :class:`~din_lab.secagg.keys.AuxMessage`,
:class:`~din_lab.secagg.shares.Share` and :func:`~din_lab.secagg.shares.shares_for_committee`);
decoding rejects a wrong magic, version, type, field count, truncated or trailing bytes with the
caller's typed error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["MAGIC", "VERSION", "MessageType", "pack", "u64", "unpack", "unpack_u64"]

MAGIC = b"DNSA"
VERSION = 1
_HEADER = struct.Struct(">4sBBH")
_LEN = struct.Struct(">I")
U64_MAX = (1 << 64) - 1


class MessageType:
    AUX = 1
    SHARES = 2  # the encrypted shares of one participant for one committee member
    SHARE = 3  # one revealed (decrypted) share
    SEALED = 4  # a contribution sealed to a committee (din_lab.secagg.reveal)

    NAMES = {AUX: "aux message", SHARES: "encrypted share bundle", SHARE: "revealed share",
             SEALED: "sealed reveal"}


def u64(value: int) -> bytes:
    return int(value).to_bytes(8, "big")


def unpack_u64(field: bytes, error: type[Exception], what: str) -> int:
    if len(field) != 8:
        raise error(f"{what}: expected an 8-byte integer, got {len(field)} bytes")
    return int.from_bytes(field, "big")


def pack(msg_type: int, fields: Sequence[bytes]) -> bytes:
    parts = [_HEADER.pack(MAGIC, VERSION, msg_type, len(fields))]
    for f in fields:
        parts.append(_LEN.pack(len(f)))
        parts.append(bytes(f))
    return b"".join(parts)


def unpack(data: bytes, msg_type: int, count: int, error: type[Exception]) -> list[bytes]:
    """The fields of a message of ``msg_type`` with exactly ``count`` fields, or ``error``."""
    what = MessageType.NAMES.get(msg_type, "message")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise error(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise error(f"{what}: {len(data)} bytes is too short")
    magic, version, got_type, got_count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise error(f"{what}: not a DIN secure-aggregation message (magic {magic!r})")
    if version != VERSION:
        raise error(f"{what}: unsupported format version {version} (this code reads version {VERSION})")
    if got_type != msg_type:
        raise error(f"{what}: got a {MessageType.NAMES.get(got_type, f'type-{got_type}')} instead")
    if got_count != count:
        raise error(f"{what}: expected {count} fields, got {got_count}")
    fields: list[bytes] = []
    pos = _HEADER.size
    for _ in range(count):
        if pos + _LEN.size > len(data):
            raise error(f"{what}: truncated")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise error(f"{what}: truncated")
        fields.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise error(f"{what}: {len(data) - pos} trailing bytes")
    return fields
