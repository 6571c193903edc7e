"""Deterministic serialization: identical values always give identical bytes.

Everything the lab stores in IPFS is addressed by the hash of its bytes (its CID), and those CIDs
are what the contracts record and compare. If two honest parties serialize the same model update
and get different bytes, they get different CIDs and the protocol sees two different objects. So
every encoder here is canonical: the bytes depend only on the *value*, never on dict insertion
order, memory layout (strides, Fortran order), byte order, the array library (numpy or torch), the
process (no hash-randomized ordering) or the platform.

Three encodings:

- **tensors** (:func:`tensors_to_bytes` / :func:`tensors_from_bytes`): the safetensors format,
  written here rather than by the ``safetensors`` package so its layout is fully pinned down:
  an 8-byte little-endian ``u64`` header length ``N``, ``N`` bytes of UTF-8 JSON header (padded
  with spaces to a multiple of 8), then the data buffer. The header maps each tensor name to
  ``{"data_offsets": [begin, end], "dtype": ..., "shape": [...]}`` with offsets relative to the
  data buffer, plus an optional ``"__metadata__"`` ``str -> str`` map. Tensors are laid out in
  sorted name order, the JSON has sorted keys and compact separators, and every array is written
  C-contiguous and little-endian. The bytes are a valid safetensors file: ``safetensors.numpy.load``
  / ``safetensors.torch.load`` / ``safe_open`` read them. (``safetensors.numpy.save`` itself is
  *not* byte-identical to this writer: it orders tensors by dtype alignment and does not sort
  JSON keys, and in 0.8.0 its ``__metadata__`` order varies between processes.)
- **JSON** (:func:`json_to_bytes` / :func:`json_from_bytes`): canonical JSON (sorted keys, compact
  separators, UTF-8, no NaN/infinity, string keys only). ``1`` and ``1.0`` stay distinct.
- **raw** (:func:`raw_to_bytes`): bytes as they are, with a type check.

Tensors may be numpy arrays, numpy scalars, anything ``numpy.asarray`` accepts, or torch tensors
(duck-typed through ``.detach()``: this module does not import torch). Floating-point values are
written bit for bit, so ``-0.0`` and NaNs with different payloads give different bytes.

Every failure, on bad input or bad bytes, raises :class:`~din_lab.errors.SerializationError`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from din_lab.errors import SerializationError

__all__ = [
    "MAX_HEADER_SIZE",
    "MAX_JSON_DEPTH",
    "SAFETENSORS_DTYPES",
    "json_from_bytes",
    "json_to_bytes",
    "metadata_from_bytes",
    "raw_to_bytes",
    "tensors_from_bytes",
    "tensors_to_bytes",
]

logger = logging.getLogger(__name__)

#: safetensors dtype name -> little-endian numpy dtype, for the dtypes this module reads and writes.
SAFETENSORS_DTYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "F64": np.dtype("<f8"),
        "F32": np.dtype("<f4"),
        "F16": np.dtype("<f2"),
        "I64": np.dtype("<i8"),
        "I32": np.dtype("<i4"),
        "I16": np.dtype("<i2"),
        "I8": np.dtype("i1"),
        "U64": np.dtype("<u8"),
        "U32": np.dtype("<u4"),
        "U16": np.dtype("<u2"),
        "U8": np.dtype("u1"),
        "BOOL": np.dtype("?"),
    }
)

#: The largest header accepted (the ``safetensors`` library's own limit).
MAX_HEADER_SIZE = 100_000_000

#: The deepest nesting of JSON arrays/objects written or read. A limit is needed because importing
#: py-evm / py_ecc (``din_lab.chain``) raises ``sys.getrecursionlimit()`` to 100000, and at that
#: limit the C JSON codec overflows the C stack (a segfault) on deeply nested input instead of
#: raising ``RecursionError``.
MAX_JSON_DEPTH = 256

_METADATA_KEY = "__metadata__"
_TENSOR_INFO_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_NAME_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in SAFETENSORS_DTYPES.items()}
_SUPPORTED_NUMPY = ", ".join(str(dt.newbyteorder("=")) for dt in SAFETENSORS_DTYPES.values())
_U64 = struct.Struct("<Q")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


# --------------------------------------------------------------------------- tensors


def tensors_to_bytes(
    tensors: Mapping[str, npt.ArrayLike],
    *,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """Serialize named tensors to safetensors bytes, canonically (same values -> same bytes).

    ``tensors`` maps non-empty names (not ``"__metadata__"``) to numpy arrays, torch tensors or
    other array-likes; 0-d and empty tensors are allowed. Supported dtypes: float64/32/16,
    int64/32/16/8, uint64/32/16/8 and bool. ``metadata`` is an optional ``str -> str`` map stored
    as the header's ``"__metadata__"``; an empty map is the same as ``None`` (nothing is written).

    Raises :class:`SerializationError` for a bad name, an unsupported dtype (bfloat16, complex,
    object, strings, ...) or a value that cannot be converted to an array.
    """
    if not isinstance(tensors, Mapping):
        raise SerializationError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
    for name in tensors:
        _check_name(name)
    header: dict[str, Any] = {}
    if metadata:
        header[_METADATA_KEY] = _check_metadata(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = _to_numpy(name, tensors[name])
        dtype_name = _NAME_BY_KIND_SIZE.get((array.dtype.kind, array.dtype.itemsize))
        if dtype_name is None:
            raise SerializationError(
                f"tensor {name!r} has unsupported dtype {array.dtype}; convert it to one of: {_SUPPORTED_NUMPY}"
            )
        data = array.astype(SAFETENSORS_DTYPES[dtype_name], copy=False).tobytes(order="C")
        header[name] = {"dtype": dtype_name, "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header_bytes = _encode_json(header, what="safetensors header")
    header_bytes += b" " * (-len(header_bytes) % 8)
    if len(header_bytes) > MAX_HEADER_SIZE:
        raise SerializationError(f"safetensors header is {len(header_bytes)} bytes, above the {MAX_HEADER_SIZE} limit")
    logger.debug("serialized %d tensors: header %d bytes, data %d bytes", len(tensors), len(header_bytes), offset)
    return b"".join([_U64.pack(len(header_bytes)), header_bytes, *chunks])


def tensors_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into ``{name: array}`` (native-endian, writable copies).

    The whole file is validated: header length, JSON, dtypes, shapes against byte sizes, offsets
    covering the data buffer exactly with no overlap or gap, and bool bytes being 0 or 1. Anything
    wrong raises :class:`SerializationError`. Tensors are returned in sorted name order.
    """
    buffer, _, entries = _parse(data)
    view = memoryview(buffer)  # slices without copying; each array is copied once, by astype
    out: dict[str, np.ndarray] = {}
    for name in sorted(entries):
        dtype, shape, begin, end = entries[name]
        try:
            raw = np.frombuffer(view[begin:end], dtype=dtype).reshape(shape)
            array = raw.astype(dtype.newbyteorder("="), copy=True)
        except (ValueError, TypeError, MemoryError) as e:
            raise SerializationError(f"tensor {name!r}: cannot build array of shape {list(shape)}: {e}") from e
        if dtype.kind == "b" and raw.size and not np.all(np.frombuffer(view[begin:end], dtype=np.uint8) <= 1):
            raise SerializationError(f"tensor {name!r}: BOOL data holds bytes other than 0 and 1")
        out[name] = array
    return out


def metadata_from_bytes(data: bytes) -> dict[str, str]:
    """The ``"__metadata__"`` map of safetensors bytes (``{}`` if there is none).

    The header is fully validated against the data size (as in :func:`tensors_from_bytes`), but the
    tensors are not decoded.
    """
    _, metadata, _ = _parse(data)
    return metadata


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise SerializationError(f"tensor names must be str, got {type(name).__name__} {name!r}")
    if not name:
        raise SerializationError("tensor names must be non-empty")
    if name == _METADATA_KEY:
        raise SerializationError(f"{_METADATA_KEY!r} is reserved for the metadata and cannot name a tensor")


def _check_metadata(metadata: object) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise SerializationError(f"metadata must be a mapping of str -> str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SerializationError(
                f"metadata must map str -> str, got {type(key).__name__} {key!r} -> {type(value).__name__}"
            )
    return dict(metadata)


def _to_numpy(name: str, value: object) -> np.ndarray:
    try:
        if isinstance(value, np.ma.MaskedArray):
            raise SerializationError(f"tensor {name!r} is a masked array; its mask would be lost (fill it first)")
        if hasattr(value, "detach"):  # a torch tensor, without importing torch
            if "bfloat16" in str(getattr(value, "dtype", "")):
                raise SerializationError(
                    f"tensor {name!r} has unsupported dtype {value.dtype}; convert it to float32 first"
                )
            return np.asarray(value.detach().cpu().numpy())
        return np.asarray(value)
    except SerializationError:
        raise
    except Exception as e:  # any conversion failure (torch bf16, ragged lists, ...) is a bad input
        raise SerializationError(f"tensor {name!r} cannot be converted to an array: {e}") from e


_Entry = tuple[np.dtype[Any], tuple[int, ...], int, int]


def _parse(data: object) -> tuple[bytes, dict[str, str], dict[str, _Entry]]:
    """Validate safetensors bytes; return (data buffer, metadata, name -> (dtype, shape, begin, end))."""
    data = _as_bytes(data, what="safetensors data")
    if len(data) < 8:
        raise SerializationError(f"safetensors data truncated: {len(data)} bytes, need at least 8 for the header length")
    (n,) = _U64.unpack_from(data)
    if n > MAX_HEADER_SIZE:
        raise SerializationError(f"safetensors header length {n} is above the {MAX_HEADER_SIZE} limit")
    if n > len(data) - 8:
        raise SerializationError(f"safetensors header length {n} exceeds the {len(data) - 8} bytes after it (truncated?)")
    header = _decode_json(data[8 : 8 + n], what="safetensors header")
    if not isinstance(header, dict):
        raise SerializationError(f"safetensors header must be a JSON object, got {type(header).__name__}")
    buffer = data[8 + n :]

    metadata: dict[str, str] = {}
    raw_metadata = header.pop(_METADATA_KEY, None)
    if raw_metadata is not None:
        if not isinstance(raw_metadata, dict) or not all(isinstance(v, str) for v in raw_metadata.values()):
            raise SerializationError(f"safetensors {_METADATA_KEY!r} must be an object of str -> str")
        metadata = raw_metadata

    entries: dict[str, _Entry] = {}
    for name, info in header.items():
        if not name:
            raise SerializationError("safetensors header has a tensor with an empty name")
        if not isinstance(info, dict) or set(info) != _TENSOR_INFO_KEYS:
            raise SerializationError(
                f"tensor {name!r}: header entry must be an object with exactly {sorted(_TENSOR_INFO_KEYS)}, got {info!r}"
            )
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in SAFETENSORS_DTYPES:
            raise SerializationError(
                f"tensor {name!r}: unsupported dtype {dtype_name!r}; supported: {sorted(SAFETENSORS_DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise SerializationError(f"tensor {name!r}: shape must be a list of non-negative ints, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise SerializationError(f"tensor {name!r}: data_offsets must be [begin, end] ints, got {offsets!r}")
        begin, end = offsets
        if end < begin:
            raise SerializationError(f"tensor {name!r}: data_offsets {offsets} end before they begin")
        dtype = SAFETENSORS_DTYPES[dtype_name]
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise SerializationError(
                f"tensor {name!r}: {dtype_name} shape {shape} needs {expected} bytes but data_offsets {offsets} "
                f"span {end - begin}"
            )
        entries[name] = (dtype, tuple(shape), begin, end)

    # The tensors must tile the data buffer exactly: no gap, no overlap, nothing out of range or left over.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a gap after byte {position}"
            raise SerializationError(f"tensor {name!r}: data_offsets [{begin}, {end}] {problem}")
        if end > len(buffer):
            raise SerializationError(
                f"tensor {name!r}: data_offsets [{begin}, {end}] run past the {len(buffer)}-byte data buffer (truncated?)"
            )
        position = end
    if position != len(buffer):
        raise SerializationError(
            f"safetensors data buffer is {len(buffer)} bytes but the tensors cover {position} (trailing bytes)"
        )
    return buffer, metadata, entries


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------- JSON


def json_to_bytes(value: Any) -> bytes:
    """Canonical JSON bytes of ``value``: sorted keys, ``","`` / ``":"`` separators, UTF-8 (not ASCII-escaped).

    Only JSON types are accepted (dict with str keys, list/tuple, str, int, float, bool, None); NaN
    and infinity, non-str keys, other types, cyclic structures and nesting deeper than
    :data:`MAX_JSON_DEPTH` raise :class:`SerializationError`.
    """
    _check_json_keys(value, active=set(), depth=0)
    return _encode_json(value, what="value")


def json_from_bytes(data: bytes) -> Any:
    """Parse JSON bytes (UTF-8).

    Invalid UTF-8 or JSON, NaN/infinity, duplicate keys or nesting deeper than :data:`MAX_JSON_DEPTH`
    raise :class:`SerializationError`.
    """
    return _decode_json(_as_bytes(data, what="JSON data"), what="JSON data")


def _check_json_keys(value: Any, *, active: set[int], depth: int) -> None:
    if isinstance(value, dict | list | tuple):
        if id(value) in active:
            raise SerializationError("cannot serialize a cyclic structure to JSON")
        if depth >= MAX_JSON_DEPTH:
            raise SerializationError(f"JSON value is nested deeper than {MAX_JSON_DEPTH} levels")
        active.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SerializationError(
                        f"JSON object keys must be str, got {type(key).__name__} {key!r} (convert keys explicitly)"
                    )
                _check_json_keys(item, active=active, depth=depth + 1)
        else:
            for item in value:
                _check_json_keys(item, active=active, depth=depth + 1)
        active.discard(id(value))


def _encode_json(value: Any, *, what: str) -> bytes:
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise SerializationError(f"cannot serialize {what} to canonical JSON: {e}") from e


def _decode_json(data: bytes, *, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SerializationError(f"{what} is not valid UTF-8: {e}") from e
    _check_json_depth(text, what=what)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except SerializationError:
        raise
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise SerializationError(f"{what} is not valid JSON: {e}") from e


def _check_json_depth(text: str, *, what: str) -> None:
    """Reject nesting deeper than MAX_JSON_DEPTH before the C decoder recurses into it."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper than the number of openers
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode("ascii")
    opens = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((opens == ord("[")) | (opens == ord("{")), 1, -1)
    if steps.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
        raise SerializationError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SerializationError(f"JSON object has duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(token: str) -> Any:
    raise SerializationError(f"JSON contains {token}, which is not valid JSON")


# --------------------------------------------------------------------------- raw


def raw_to_bytes(value: bytes | bytearray | memoryview) -> bytes:
    """``value`` as immutable ``bytes`` (a memoryview is copied in C order)."""
    if isinstance(value, str):
        raise SerializationError("raw_to_bytes takes bytes, not str: encode it (e.g. text.encode('utf-8')) or use json_to_bytes")
    return _as_bytes(value, what="raw value")


def _as_bytes(data: object, *, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise SerializationError(f"{what} must be bytes, bytearray or memoryview, got {type(data).__name__}")
