"""The in-process event index: every log of every receipt, decoded as it arrives.

Never ``get_logs(from_block=0)``: on py-evm history reads slow down as the chain grows
(NOTES.md). The chain decodes each receipt once and appends here, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from din_lab.chain.artifacts import abi_type, all_abi_entries


@dataclass(frozen=True)
class ChainEvent:
    """One decoded contract event."""

    block: int
    tx_hash: str
    log_index: int
    address: str
    contract: str  # contract name, or "unknown"
    event: str
    args: dict[str, Any]


class _Decoder:
    def __init__(self) -> None:
        # one signature can be two events: ERC-20's Transfer(from, to, value) and ERC-721's
        # Transfer(from, to, tokenId) differ only in how many arguments are indexed (topics)
        self._by_topic: dict[tuple[bytes, int], dict[str, Any]] = {}
        for _contract, entry in all_abi_entries("event"):
            types = ",".join(abi_type(i) for i in entry["inputs"])
            topic = keccak(text=f"{entry['name']}({types})")
            indexed = sum(1 for i in entry["inputs"] if i["indexed"])
            self._by_topic.setdefault((topic, indexed), entry)

    def decode(self, log: Any) -> tuple[str, dict[str, Any]] | None:
        topics = [bytes(t) for t in log["topics"]]
        if not topics or (topics[0], len(topics) - 1) not in self._by_topic:
            return None
        entry = self._by_topic[(topics[0], len(topics) - 1)]
        indexed = [i for i in entry["inputs"] if i["indexed"]]
        plain = [i for i in entry["inputs"] if not i["indexed"]]
        args: dict[str, Any] = {}
        for inp, topic in zip(indexed, topics[1:], strict=False):
            t = abi_type(inp)
            if t in ("string", "bytes") or t.endswith("]") or t.startswith("("):
                args[inp["name"]] = topic  # dynamic indexed values are stored as their hash
            else:
                (args[inp["name"]],) = abi_decode([t], topic)
        values = abi_decode([abi_type(i) for i in plain], bytes(log["data"]))
        for inp, v in zip(plain, values, strict=True):
            args[inp["name"]] = v
        return entry["name"], {k: _checksum(v) for k, v in args.items()}


def _checksum(v: Any) -> Any:
    """Checksum every address, also inside lists and tuples (CommitteeDrawn.members)."""
    if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
        return to_checksum_address(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_checksum(x) for x in v)
    return v


class EventIndex:
    """Ordered, append-only (except on snapshot revert) list of decoded events."""

    def __init__(self) -> None:
        self._events: list[ChainEvent] = []
        self._decoder = _Decoder()
        self.names: dict[str, str] = {}  # checksum address -> contract name

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[ChainEvent]:
        return iter(self._events)

    def __getitem__(self, i: int) -> ChainEvent:
        return self._events[i]

    def ingest(self, receipt: Any, *, keep: bool = True) -> tuple[ChainEvent, ...]:
        """A receipt's events, decoded (and appended to the index unless ``keep`` is false)."""
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        decoded = []
        for log in receipt["logs"]:
            d = self._decoder.decode(log)
            if d is None:
                continue
            name, args = d
            if name == "TaskCreated":  # a new task clone: its own events in this receipt come first
                self.names[to_checksum_address(args["task"])] = "DINTask"
            decoded.append((log, name, args))
        out = []
        for log, name, args in decoded:
            address = to_checksum_address(log["address"])
            out.append(ChainEvent(
                block=int(receipt["blockNumber"]),
                tx_hash=tx_hash,
                log_index=int(log["logIndex"]),
                address=address,
                contract=self.names.get(address, "unknown"),
                event=name,
                args=args,
            ))
        if keep:
            self._events.extend(out)
        return tuple(out)

    def ingest_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``eth_getLogs`` entries (each with its block number and transaction hash), in
        chain order, grouped by transaction as receipts are."""
        ordered = sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"]))
        receipts: dict[tuple[int, bytes], list[dict[str, Any]]] = {}
        for log in ordered:
            receipts.setdefault((log["blockNumber"], log["transactionHash"]), []).append(log)
        for (block, tx_hash), tx_logs in receipts.items():
            self.ingest({"transactionHash": tx_hash, "blockNumber": block, "logs": tx_logs})

    def truncate(self, length: int) -> None:
        del self._events[length:]

    def where(self, event: str | None = None, *, address: str | None = None, **match: Any) -> list[ChainEvent]:
        """Events with the given name (and address, and argument values)."""
        out = []
        wanted = to_checksum_address(address) if address is not None else None
        for e in self._events:
            if event is not None and e.event != event:
                continue
            if wanted is not None and e.address != wanted:
                continue
            if any(e.args.get(k) != v for k, v in match.items()):
                continue
            out.append(e)
        return out
