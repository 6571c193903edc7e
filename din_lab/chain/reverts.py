"""Python exceptions named after the contracts' Solidity custom errors.

Every ``error Name(...)`` in the shipped ABIs becomes ``din_lab.chain.reverts.Name``, a
subclass of :class:`din_lab.errors.ContractRevert`, so callers write
``except reverts.WrongPhase as e: e.args_by_name["actual"]``. :func:`decode_revert` turns raw
revert data into the right exception.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from din_lab.chain.artifacts import abi_type, all_abi_entries
from din_lab.errors import ContractRevert, Panic, RevertedWithReason

_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")
PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}

_by_selector: dict[bytes, tuple[type[ContractRevert], list[str], list[str]]] = {}
_classes: dict[str, type[ContractRevert]] = {}


def _build() -> None:
    for contract, entry in all_abi_entries("error"):
        name = entry["name"]
        types = [abi_type(i) for i in entry["inputs"]]
        names = [i["name"] for i in entry["inputs"]]
        selector = keccak(text=f"{name}({','.join(types)})")[:4]
        if selector in _by_selector:
            continue
        cls = _classes.get(name)
        if cls is None:
            cls = type(name, (ContractRevert,), {"error_name": name, "__module__": __name__,
                                                 "__doc__": f"Solidity custom error `{name}` (raised by {contract})."})
            _classes[name] = cls
        _by_selector[selector] = (cls, types, names)


_build()
globals().update(_classes)
__all__ = sorted(_classes) + ["decode_revert", "error_class"]


def error_class(name: str) -> type[ContractRevert]:
    """The exception class of the custom error ``name``."""
    return _classes[name]


def decode_revert(data: bytes, *, tx_hash: str | None = None, context: str = "") -> ContractRevert:
    """The typed exception for raw revert ``data`` (not raised: the caller raises it)."""
    data = bytes(data or b"")
    where = f" in {context}" if context else ""
    selector, body = data[:4], data[4:]
    if selector == _ERROR_SELECTOR:
        (reason,) = abi_decode(["string"], body)
        return RevertedWithReason(f"reverted{where}: {reason}", args_by_name={"reason": reason}, tx_hash=tx_hash, data=data)
    if selector == _PANIC_SELECTOR:
        (code,) = abi_decode(["uint256"], body)
        return Panic(f"panic{where}: {PANIC_CODES.get(code, hex(code))}", args_by_name={"code": code},
                     tx_hash=tx_hash, data=data)
    if selector in _by_selector:
        cls, types, names = _by_selector[selector]
        values = abi_decode(types, body)
        args: dict[str, Any] = {n: _plain(v, t) for n, v, t in zip(names, values, types, strict=True)}
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        return cls(f"{cls.error_name}({shown}){where}", args_by_name=args, tx_hash=tx_hash, data=data)
    if not data:
        return ContractRevert(f"reverted without data{where}", tx_hash=tx_hash, data=data)
    return ContractRevert(f"reverted with unknown error data{where}: 0x{data.hex()}", tx_hash=tx_hash, data=data)


def _plain(v: Any, t: str) -> Any:
    if t == "address":
        return to_checksum_address(v)
    return v


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        return "0x" + v.hex()
    return repr(v)
