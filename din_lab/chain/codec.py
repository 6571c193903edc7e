"""A lean ABI codec for contract calls: what web3 does per call, done once per function.

web3's ``ContractFunction.call`` resolves the function in the ABI on every call (hashing every
function signature to find the selector), validates it, runs the request through five
middlewares (one of which asks the node for its chain id) and normalizes the result through a
generic tree walk. Measured on the lab's views: about 3 ms of Python per call whatever the
backend, and 3.5 HTTP requests per call on anvil. :class:`FunctionCodec` resolves a function
once (selector, input and output types, an address-checksumming decoder built for its output
types) and :meth:`Chain.call <din_lab.chain.core.Chain.call>` sends the bare ``eth_call``.

The result has exactly web3's shape (checksummed addresses; arrays as lists, structs as tuples;
a single output unwrapped, several as a list), which ``tests/test_chain_codec.py`` checks against web3 itself.
Functions this codec does not cover (overloaded names, keyword arguments) go through web3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.grammar import ABIType, TupleType, parse
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from eth_utils.abi import get_abi_input_types, get_abi_output_types

Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _converter(t: ABIType) -> Converter | None:
    """A function that turns eth-abi's decoding of ``t`` into web3's: every address
    checksummed, every array a list, every struct a tuple (None: nothing to change)."""
    if t.is_array:
        inner = _converter(t.item_type)
        if inner is None:
            return list
        return lambda values: [inner(v) for v in values]
    if isinstance(t, TupleType):
        parts = [_converter(c) for c in t.components]
        if all(p is None for p in parts):
            return None
        fns = [p or _identity for p in parts]
        return lambda values: tuple(f(v) for f, v in zip(fns, values, strict=True))
    if t.base == "address":
        return to_checksum_address
    return None


@dataclass(frozen=True)
class FunctionCodec:
    """One contract function's selector, argument encoder and result decoder."""

    name: str
    selector: bytes
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    converters: tuple[Converter | None, ...]

    @classmethod
    def of(cls, abi: dict[str, Any]) -> FunctionCodec:
        outputs = tuple(get_abi_output_types(abi))
        return cls(
            name=abi["name"],
            selector=function_abi_to_4byte_selector(abi),
            input_types=tuple(get_abi_input_types(abi)),
            output_types=outputs,
            converters=tuple(_converter(parse(t)) for t in outputs),
        )

    def encode(self, args: tuple[Any, ...]) -> bytes:
        return self.selector + abi_encode(self.input_types, args)

    def decode(self, data: bytes) -> Any:
        values = abi_decode(self.output_types, data)
        out = [v if c is None else c(v) for v, c in zip(values, self.converters, strict=True)]
        return out[0] if len(out) == 1 else out


class CodecCache:
    """Codecs by (ABI, function name), for names that are not overloaded."""

    def __init__(self) -> None:
        # id(abi) -> (the abi itself, kept alive so its id stays unique; name -> codec or None)
        self._by_abi: dict[int, tuple[Any, dict[str, FunctionCodec | None]]] = {}

    def lookup(self, abi: Any, name: str) -> FunctionCodec | None:
        entry = self._by_abi.get(id(abi))
        if entry is None or entry[0] is not abi:
            functions: dict[str, list[dict[str, Any]]] = {}
            for item in abi:
                if item.get("type") == "function":
                    functions.setdefault(item["name"], []).append(item)
            codecs = {n: FunctionCodec.of(items[0]) if len(items) == 1 else None for n, items in functions.items()}
            entry = (abi, codecs)
            self._by_abi[id(abi)] = entry
        return entry[1].get(name)
