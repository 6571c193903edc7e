"""``connect(...)`` -> :class:`Chain`: one object over web3 whatever the backend.

Backends:
- ``"embedded"``: py-evm in this process via eth-tester (coincurve makes signature recovery
  native). The lab's accounts are funded in the genesis state, so 1,000 accounts cost well
  under a second. Genesis timestamp is fixed, so runs are reproducible.
- a JSON-RPC URL (``http://127.0.0.1:8545``): anvil (the test target), geth, a testnet.
  On anvil the lab's accounts are funded with ``anvil_setBalance``; elsewhere pass
  ``funder_key`` (a funded private key) and each account receives ``fund_eth``.

Transactions are signed locally, sent with explicit gas, and their receipts decoded into
:attr:`Chain.events`. A reverted transaction raises the exception named after its Solidity
custom error (:mod:`din_lab.chain.reverts`).
"""

from __future__ import annotations

import ast
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from din_lab.chain.artifacts import load_artifact
from din_lab.chain.codec import CodecCache
from din_lab.chain.events import ChainEvent, EventIndex
from din_lab.chain.reverts import decode_revert
from din_lab.chain.rpc import JsonRpcClient
from din_lab.config import ChainConfig
from din_lab.errors import ChainError, ConfigError, ContractRevert

log = logging.getLogger(__name__)

DEFAULT_GAS = 12_000_000
MAX_FEE = 100 * 10**9
PRIORITY_FEE = 10**9
GENESIS_ETH = 10**6
GENESIS_TIMESTAMP = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed so embedded runs reproduce


def lab_accounts(count: int, *, seed: int | None = 0, domain: str = "din-lab") -> list[LocalAccount]:
    """``count`` accounts: deterministic with a seed (private key i = keccak(domain, seed, i): anyone
    who knows the seed knows every key; another ``domain`` gives keys no other domain's seed gives),
    else drawn from the operating system's randomness."""
    if seed is None:
        keys = [os.urandom(32) for _ in range(count)]
    else:
        keys = [keccak(domain.encode() + seed.to_bytes(8, "big") + i.to_bytes(8, "big")) for i in range(count)]
    return [Account.from_key(k) for k in keys]


@dataclass(frozen=True)
class Receipt:
    """A mined transaction: what the ledger widgets and benchmarks read."""

    tx_hash: str
    block: int
    gas_used: int
    sender: str
    to: str | None
    function: str
    events: tuple[ChainEvent, ...]
    contract_address: str | None = None

    def event(self, name: str) -> ChainEvent:
        for e in self.events:
            if e.event == name:
                return e
        raise ChainError(f"transaction {self.tx_hash} emitted no {name} event")


class Chain:
    """A connected chain: accounts, deployment, transactions, events and time travel."""

    def __init__(self, w3: Web3, *, backend: str, accounts: Sequence[LocalAccount], tester: Any = None,
                 rpc: JsonRpcClient | None = None) -> None:
        self.w3 = w3
        self.backend = backend
        self.accounts: list[LocalAccount] = list(accounts)
        self._index = EventIndex()
        self._following: int | None = None  # the last block whose logs were read (follow_logs), else None
        # hold_head: the head is read once until this object changes the chain or refresh() is
        # called; for a process that knows nobody else moves the chain in between (a Ray actor
        # during its turn: the actors take turns)
        self.hold_head = False
        self._head: tuple[int, int] | None = None  # (state_version, head)
        self.receipts: list[Receipt] = []
        self._tester = tester
        if rpc is None and tester is None and getattr(w3.provider, "endpoint_uri", None):
            rpc = JsonRpcClient(str(w3.provider.endpoint_uri))
        self._rpc = rpc
        self._send_sync = rpc is not None  # try eth_sendRawTransactionSync first (a node; not eth-tester)
        self.state_version = 0  # bumped whenever this object changes the chain (transactions, mining, reverts)
        self._nonces: dict[str, int] = {}
        self._codecs = CodecCache()
        self.chain_id = int(w3.eth.chain_id)
        # web3's validation middleware asks the node for its chain id before every call and
        # transaction; the lab signs every transaction itself with ``self.chain_id``
        for name in ("validation", "gas_price_strategy", "gas_estimate", "ens_name_to_address"):
            if name in w3.middleware_onion:
                w3.middleware_onion.remove(name)
        if self.accounts:
            w3.eth.default_account = self.accounts[0].address  # calls come from a funded account
        self._snapshots: dict[Any, tuple[int, int, int | None]] = {}

    # ----------------------------------------------------------- events
    @property
    def events(self) -> EventIndex:
        """Every decoded event of the chain so far: from the receipts of this object's own
        transactions, or, once :meth:`follow_logs` was called, from the node's logs (``eth_getLogs``)
        up to the current head."""
        if self._following is not None:
            self._read_logs()
        return self._index

    def follow_logs(self, *, after: int | None = None) -> None:
        """Read events from the node's logs from now on: the way to see a chain that other
        processes also send to (each with its own connection). ``after``: the last block whose
        events are already indexed (default: the head, for an index that holds this object's own
        transactions so far; ``-1`` reads the chain from its genesis)."""
        if self._rpc is None:
            raise ChainError("only a chain reached by JSON-RPC can follow a node's logs (the embedded chain has no "
                             "other senders)")
        self._following = self.block_number if after is None else after

    def _read_logs(self) -> None:
        head = self.block_number
        if head <= self._following:
            return
        logs = self._request("eth_getLogs", [{"fromBlock": hex(self._following + 1), "toBlock": hex(head)}],
                             context="read logs")
        self._index.ingest_logs([_log_from_json(entry) for entry in logs])
        self._following = head

    # ----------------------------------------------------------- contracts
    def deploy(self, name: str, *args: Any, sender: LocalAccount, gas: int = DEFAULT_GAS) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        data = factory.constructor(*args).data_in_transaction
        receipt = self._send(sender=sender, to=None, data=data, gas=gas, function=f"deploy {name}")
        assert receipt.contract_address is not None
        self._index.names[receipt.contract_address] = name
        # the constructor's events were decoded before the name was known
        return self.at(name, receipt.contract_address)

    def at(self, name: str, address: str) -> Contract:
        address = to_checksum_address(address)
        self._index.names.setdefault(address, name)
        return self.w3.eth.contract(address=address, abi=load_artifact(name).abi)

    def transact(
        self, fn: ContractFunction, *, sender: LocalAccount, gas: int = DEFAULT_GAS, value: int = 0
    ) -> Receipt:
        """Send ``fn`` from ``sender``; raise the named revert if it fails."""
        _, data = self._encode(fn)  # the lab's codec (web3 normalises every argument tree: slow for batches)
        if data is None:
            data = fn._encode_transaction_data()
        return self._send(sender=sender, to=fn.address, data=data, gas=gas, value=value, function=fn.fn_name)

    def call(self, fn: ContractFunction, *, sender: LocalAccount | str | None = None, block: int | str = "latest") -> Any:
        """``fn``'s result at ``block`` (a view, or a transaction run without mining it) as web3
        returns it; a revert raises its named error."""
        (result,) = self.call_many([fn], sender=sender, block=block)
        if isinstance(result, CallFailed):
            raise result.error
        return result

    def call_many(self, fns: Sequence[ContractFunction], *, sender: LocalAccount | str | None = None,
                  block: int | str = "latest") -> list[Any]:
        """The results of ``fns`` at ``block``, read in one round trip on a JSON-RPC node. A call
        that reverted yields ``CallFailed(error)`` in its place (``error`` is the named revert)."""
        if sender is None:  # a view: from the first account, or (an account-less follower) from nobody
            frm = self.accounts[0].address if self.accounts else "0x" + "00" * 20
        else:
            frm = sender if isinstance(sender, str) else sender.address
        results: list[Any] = [None] * len(fns)
        pending: list[tuple[int, ContractFunction, Any, bytes]] = []
        for i, fn in enumerate(fns):
            codec, data = self._encode(fn)
            if codec is None or data is None:  # what the codec does not cover: web3's own path
                try:
                    results[i] = fn.call({"from": frm}, block_identifier=block)
                except Exception as e:  # web3 revert errors, or eth-tester's TransactionFailed
                    results[i] = CallFailed(self._revert_from_exception(e, context=fn.fn_name))
                continue
            pending.append((i, fn, codec, data))
        if self._rpc is not None and len(pending) > 1:
            responses = self._rpc.batch([self._call_request(to=fn.address, data=data, sender=frm, block=block)
                                         for _, fn, _, data in pending])
            outs: list[bytes | ChainError] = []
            for (_, fn, _, _), response in zip(pending, responses, strict=True):
                try:
                    outs.append(self._call_result(response, function=fn.fn_name))
                except ChainError as e:
                    outs.append(e)
        else:
            outs = []
            for _, fn, _, data in pending:
                try:
                    outs.append(self.eth_call(to=fn.address, data=data, sender=frm, block=block, function=fn.fn_name))
                except ChainError as e:
                    outs.append(e)
        for (i, fn, codec, _), out in zip(pending, outs, strict=True):
            if isinstance(out, ChainError):
                results[i] = CallFailed(out)
                continue
            try:
                results[i] = codec.decode(out)
            except Exception as e:  # noqa: BLE001 - eth-abi's decoding errors
                results[i] = CallFailed(ChainError(
                    f"{fn.fn_name}: could not decode {len(out)} bytes returned by {fn.address} "
                    f"(is the contract deployed at that address?): {e}"))
        return results

    def _encode(self, fn: ContractFunction) -> tuple[Any, bytes | None]:
        codec = self._codecs.lookup(fn.contract_abi, fn.fn_name) if fn.contract_abi and not fn.kwargs else None
        if codec is None or len(codec.input_types) != len(fn.args):
            return None, None
        try:
            return codec, codec.encode(tuple(fn.args))
        except Exception:  # noqa: BLE001 - an argument eth-abi will not take as is: web3 normalizes it
            return None, None

    def eth_call(self, *, to: str | None, data: bytes, sender: str, block: int | str = "latest", value: int = 0,
                 gas: int | None = None, function: str = "call") -> bytes:
        """A bare ``eth_call`` (no web3 middleware): the returned bytes, or the named revert raised."""
        if self._tester is not None:
            tx: dict[str, Any] = {"from": sender, "data": "0x" + bytes(data).hex(), "value": value}
            if gas is not None:
                tx["gas"] = gas
            if to is not None:
                tx["to"] = to
            try:
                out = self._tester.call(tx, block)
            except Exception as e:  # eth-tester's TransactionFailed and validation errors
                raise self._revert_from_exception(e, context=function) from e
            return bytes.fromhex(out[2:]) if isinstance(out, str) else bytes(out)
        method, params = self._call_request(to=to, data=data, sender=sender, block=block, value=value, gas=gas)
        return self._call_result(self._raw_request(method, params), function=function)

    def _raw_request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """One JSON-RPC request to the node (not the embedded chain): its response object."""
        if self._rpc is not None:
            return self._rpc.request(method, params)
        return dict(self.w3.provider.make_request(method, params))  # type: ignore[arg-type]

    def _request(self, method: str, params: list[Any], *, context: str) -> Any:
        """One JSON-RPC request's ``result``; its ``error`` raised as a ChainError."""
        response = self._raw_request(method, params)
        if response.get("error") is not None:
            raise ChainError(f"{context}: the node answered {method} with {response['error']}")
        return response.get("result")

    @staticmethod
    def _call_request(*, to: str | None, data: bytes, sender: str, block: int | str, value: int = 0,
                      gas: int | None = None) -> tuple[str, list[Any]]:
        tx: dict[str, Any] = {"from": sender, "data": "0x" + bytes(data).hex(), "value": hex(value)}
        if gas is not None:
            tx["gas"] = hex(gas)
        if to is not None:
            tx["to"] = to
        return "eth_call", [tx, hex(block) if isinstance(block, int) else block]

    @staticmethod
    def _call_result(response: Any, *, function: str) -> bytes:
        error = response.get("error")
        if error is None:
            return bytes.fromhex(str(response["result"])[2:])
        revert = error.get("data") if isinstance(error, dict) else None
        if isinstance(revert, dict):
            revert = revert.get("data")
        if isinstance(revert, str) and revert.startswith("0x"):
            return _raise(decode_revert(bytes.fromhex(revert[2:]), context=function))
        message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        if "revert" in message.lower():
            return _raise(decode_revert(b"", context=function))
        raise ChainError(f"{function}: the node refused the call: {message}")

    def transaction_call(self, tx_hash: str, *, contract: Contract) -> tuple[str, dict[str, Any]]:
        """What a mined transaction called on ``contract``: the function's name and its decoded
        arguments, read from the chain (anyone can read any transaction's input)."""
        tx = self._request("eth_getTransactionByHash", [tx_hash], context="read a transaction")
        if tx is None:
            raise ChainError(f"no transaction {tx_hash} on this chain")
        if str(tx.get("to", "")).lower() != contract.address.lower():
            raise ChainError(f"transaction {tx_hash} did not call {contract.address}")
        fn, args = contract.decode_function_input(tx.get("input") or tx["data"])  # eth-tester: "data"
        return fn.fn_name, dict(args)

    # ----------------------------------------------------------- transactions
    def nonce(self, address: str) -> int:
        if address not in self._nonces:
            if self._tester is not None:
                self._nonces[address] = int(self.w3.eth.get_transaction_count(address, "pending"))
            else:
                self._nonces[address] = int(self._request("eth_getTransactionCount", [address, "pending"],
                                                          context="nonce"), 16)
        return self._nonces[address]

    def sign(self, *, sender: LocalAccount, to: str | None, data: bytes | str, gas: int, value: int = 0) -> bytes:
        """Sign a transaction with the next nonce of ``sender`` (advances the local nonce)."""
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": self.nonce(sender.address),
            "gas": gas,
            "maxFeePerGas": MAX_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
            "value": value,
            "data": data,
        }
        if to is not None:
            tx["to"] = to
        signed = sender.sign_transaction(tx)
        self._nonces[sender.address] += 1
        return bytes(signed.raw_transaction)

    def _send(
        self, *, sender: LocalAccount, to: str | None, data: bytes | str, gas: int, function: str, value: int = 0,
        preflight: bool = True,
    ) -> Receipt:
        undo = None
        if preflight and self._tester is not None:
            # the embedded chain: send it at once, and on a revert return to the state before it, so
            # a revert raises its named error and nothing is mined (one EVM run, not two)
            undo = self._tester.take_snapshot()
        elif preflight:
            # a node: run it as a call on the pending state first: a revert then raises its named
            # error with exact data (block-dependent checks included) and nothing is mined
            self._preflight(sender=sender, to=to, data=data, value=value, gas=gas, function=function)
        try:
            return self._send_signed(sender=sender, to=to, data=data, gas=gas, function=function, value=value,
                                     replay=undo is None)
        except ChainError:  # refused or reverted (a mined, successful transaction is never undone)
            if undo is None:
                raise
            self._tester.revert_to_snapshot(undo)
            self._nonces.pop(sender.address, None)
            # the named error as the transaction met it: the same call on the same pending block
            self._preflight(sender=sender, to=to, data=data, value=value, gas=gas, function=function)
            raise

    def _send_signed(self, *, sender: LocalAccount, to: str | None, data: bytes | str, gas: int, function: str,
                     value: int, replay: bool = True) -> Receipt:
        """Sign, send and wait for the receipt. A failed transaction raises its named revert, read by
        replaying it on its parent state; ``replay=False`` (the caller undoes the block and reads the
        revert itself) raises a bare ContractRevert instead."""
        raw = self.sign(sender=sender, to=to, data=data, gas=gas, value=value)
        synced = None
        try:
            if self._send_sync:
                tx_hash, synced = self._send_raw_sync(raw, function=function)
            else:
                tx_hash = self._send_raw(raw, function=function)
        except ContractRevert:
            self._nonces.pop(sender.address, None)
            raise
        except (ContractLogicError, Web3RPCError, ValueError) as e:
            self._nonces.pop(sender.address, None)
            raise self._revert_from_exception(e, context=function) from e
        except Exception as e:  # eth-tester validation and transport errors
            self._nonces.pop(sender.address, None)
            raise ChainError(f"{function}: could not send transaction: {e}") from e
        self.state_version += 1  # sent: mined or pending, the chain moved
        raw_receipt = synced if synced is not None else self._wait_for_receipt(tx_hash, function=function)
        hx = "0x" + bytes(tx_hash).hex()
        if raw_receipt["status"] != 1:
            if not replay:
                raise ContractRevert(f"{function}: transaction {hx} failed (out of gas?)")
            raise self._replay_revert(sender=sender, to=to, data=data, value=value, gas=gas,
                                      block=int(raw_receipt["blockNumber"]), tx_hash=hx, function=function)
        # following a node's logs, the index reads this receipt's events with everyone else's
        events = self._index.ingest(raw_receipt, keep=self._following is None)
        created = raw_receipt.get("contractAddress")
        receipt = Receipt(
            tx_hash=hx,
            block=int(raw_receipt["blockNumber"]),
            gas_used=int(raw_receipt["gasUsed"]),
            sender=sender.address,
            to=to,
            function=function,
            events=events,
            contract_address=to_checksum_address(created) if created else None,
        )
        self.receipts.append(receipt)
        log.debug("%s by %s: gas %d, block %d", function, sender.address, receipt.gas_used, receipt.block)
        return receipt

    def _send_raw_sync(self, raw: bytes, *, function: str) -> tuple[bytes, dict[str, Any] | None]:
        """Send and get the receipt in one request (``eth_sendRawTransactionSync``, EIP-7966, which
        anvil answers as soon as it has mined the transaction); a node without it is asked the old
        way from then on. Returns the hash and the receipt (None: not mined within the node's own
        timeout, so the caller polls)."""
        response = self._raw_request("eth_sendRawTransactionSync", ["0x" + raw.hex()])
        error = response.get("error")
        tx_hash = keccak(raw)
        if error is None:
            return tx_hash, _receipt_from_json(response["result"])
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        if code == -32601 or "method not found" in message.lower() or "does not exist" in message.lower():
            self._send_sync = False  # an older node: eth_sendRawTransaction and a poll for the receipt
            return self._send_raw(raw, function=function), None
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
            raise decode_revert(bytes.fromhex(data[2:]), context=function)
        if code == 4:  # EIP-7966: sent, not yet mined within the node's timeout
            return tx_hash, None
        raise ChainError(f"{function}: the node refused the transaction: {error}")

    def _send_raw(self, raw: bytes, *, function: str) -> bytes:
        if self._tester is not None:
            return bytes(self.w3.eth.send_raw_transaction(raw))
        response = self._raw_request("eth_sendRawTransaction", ["0x" + raw.hex()])
        error = response.get("error")
        if error is not None:
            data = error.get("data") if isinstance(error, dict) else None
            if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
                raise decode_revert(bytes.fromhex(data[2:]), context=function)
            raise ChainError(f"{function}: the node refused the transaction: {error}")
        return bytes.fromhex(str(response["result"])[2:])

    def _wait_for_receipt(self, tx_hash: Any, *, function: str, timeout: float = 120.0) -> Any:
        """The receipt of ``tx_hash``, polled from 0.5 ms up (an automining node such as anvil
        mines within a millisecond or two; web3's fixed 10 ms poll would dominate a lab step)."""
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                if self._tester is not None:
                    return self.w3.eth.get_transaction_receipt(tx_hash)
                raw = self._request("eth_getTransactionReceipt", ["0x" + bytes(tx_hash).hex()], context=function)
                if raw is None:
                    raise TransactionNotFound(f"no receipt yet for 0x{bytes(tx_hash).hex()}")
                return _receipt_from_json(raw)
            except TransactionNotFound:
                if time.monotonic() > deadline:
                    raise ChainError(f"{function}: transaction 0x{bytes(tx_hash).hex()} was not mined "
                                     f"within {timeout:.0f} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _preflight(self, *, sender: LocalAccount, to: str | None, data: Any, value: int, gas: int,
                   function: str) -> None:
        self.eth_call(to=to, data=_as_bytes(data), sender=sender.address, block="pending", value=value, gas=gas,
                      function=function)

    def _replay_revert(self, *, sender: LocalAccount, to: str | None, data: Any, value: int, gas: int,
                       block: int, tx_hash: str, function: str) -> ContractRevert:
        """Re-run a failed transaction as a call on its parent state to read the revert data."""
        tx: dict[str, Any] = {"from": sender.address, "data": data, "value": value, "gas": gas}
        if to is not None:
            tx["to"] = to
        try:
            self.w3.eth.call(tx, block - 1)
        except Exception as e:
            err = self._revert_from_exception(e, context=function)
            err.tx_hash = tx_hash
            return err
        return ContractRevert(f"{function}: transaction {tx_hash} failed (out of gas?)", tx_hash=tx_hash)

    @staticmethod
    def _revert_from_exception(e: BaseException, *, context: str) -> ChainError:
        raw = _tester_revert_bytes(e)
        if raw is not None:
            return decode_revert(raw, context=context)
        data = getattr(e, "data", None)
        if isinstance(data, dict):
            data = data.get("data")
        if data is None and isinstance(e, Web3RPCError) and isinstance(e.rpc_response, dict):
            data = (e.rpc_response.get("error") or {}).get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return decode_revert(bytes.fromhex(data[2:]), context=context)
        if isinstance(data, (bytes, bytearray)):
            return decode_revert(bytes(data), context=context)
        if isinstance(e, ContractLogicError):
            return decode_revert(b"", context=context)
        return ChainError(f"{context}: {e}")

    # ----------------------------------------------------------- blocks and time travel
    @property
    def block_number(self) -> int:
        if self._tester is not None:
            return int(self.w3.eth.block_number)
        if self._head is not None and self._head[0] == self.state_version:
            return self._head[1]
        head = int(self._request("eth_blockNumber", [], context="block number"), 16)
        if self.hold_head:
            self._head = (self.state_version, head)
        return head

    def refresh(self) -> None:
        """Forget the head held by ``hold_head`` (the others may have moved the chain)."""
        self._head = None

    def mine(self, blocks: int = 1) -> int:
        """Mine ``blocks`` empty blocks; returns the new block number."""
        if blocks < 0:
            raise ConfigError("cannot mine a negative number of blocks")
        if blocks:
            self.state_version += 1
            if self._tester is not None:
                self._tester.mine_blocks(blocks)
            else:
                self._request("anvil_mine", [hex(blocks)], context="mine")
        return self.block_number

    def mine_to(self, block: int) -> int:
        """Mine until the chain head is ``block`` (no-op if already past it)."""
        return self.mine(max(0, block - self.block_number))

    @property
    def timestamp(self) -> int:
        """The head block's timestamp (seconds)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def mine_until_time(self, timestamp: int) -> int:
        """Mine until the head block's timestamp is at least ``timestamp`` (what a timelock counts):
        the embedded chain's blocks are BLOCK_TIME seconds apart; on a node the next block is
        stamped ``timestamp``. Returns the new block number."""
        now = self.timestamp
        if now >= timestamp:
            return self.block_number
        if self._tester is not None:
            return self.mine(-(-(timestamp - now) // BLOCK_TIME))
        self._request("evm_setNextBlockTimestamp", [hex(timestamp)], context="set the next block's time")
        return self.mine(1)

    def snapshot(self) -> Any:
        if self._tester is not None:
            sid = self._tester.take_snapshot()
        else:
            sid = self._request("evm_snapshot", [], context="snapshot")
        if self._following is not None:
            self._read_logs()  # the index complete up to the snapshot's head
        self._snapshots[sid] = (len(self._index), len(self.receipts), self._following)
        return sid

    def revert(self, snapshot_id: Any) -> None:
        """Return to a snapshot (events and receipts after it are forgotten)."""
        if snapshot_id not in self._snapshots:
            raise ChainError(f"unknown snapshot {snapshot_id!r}")
        if self._tester is not None:
            self._tester.revert_to_snapshot(snapshot_id)
        else:
            ok = self._request("evm_revert", [snapshot_id], context="revert")
            if not ok:
                raise ChainError(f"the node refused to revert to snapshot {snapshot_id!r}")
        self.state_version += 1
        n_events, n_receipts, followed = self._snapshots[snapshot_id]
        self._index.truncate(n_events)
        if self._following is not None:  # read on from the snapshot's head (other followers must be rebuilt)
            self._following = followed if followed is not None else self.block_number
        del self.receipts[n_receipts:]
        self._nonces.clear()

    def send_eth(self, *, to: str, amount: int, sender: LocalAccount) -> Receipt:
        """Send ``amount`` wei of ether (gas money for a new account)."""
        if amount <= 0:
            raise ConfigError("send a positive amount of ether")
        return self._send(sender=sender, to=to_checksum_address(to), data=b"", gas=21_000, value=amount,
                          function="send ether")

    def eth_balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(address))


def _tester_revert_bytes(e: BaseException | None) -> bytes | None:
    """eth-tester raises TransactionFailed(bytes) then re-raises it as text: find the bytes."""
    seen = 0
    while e is not None and seen < 5:
        if type(e).__name__ == "TransactionFailed" and e.args:
            arg = e.args[0]
            if isinstance(arg, (bytes, bytearray)):
                return bytes(arg)
            if isinstance(arg, str):
                text = arg.removeprefix("execution reverted: ")
                if text.startswith(("b'", 'b"')):
                    try:
                        value = ast.literal_eval(text)
                    except (ValueError, SyntaxError):
                        return None
                    return bytes(value) if isinstance(value, bytes) else None
                if text in ("", "execution reverted"):
                    return b""
        e = e.__context__ or e.__cause__
        seen += 1
    return None


def connect(
    backend: str | None = None,
    *,
    accounts: int = 20,
    seed: int = 0,
    funder_key: str | None = None,
    fund_eth: int = 100,
    block_gas_limit: int = 30_000_000,
) -> Chain:
    """Connect to a chain. ``backend`` is ``"embedded"`` or a JSON-RPC URL; by default the
    ``DIN_LAB_CHAIN`` environment variable, else ``"embedded"``."""
    config = ChainConfig.from_env(backend=backend, accounts=accounts, seed=seed, block_gas_limit=block_gas_limit)
    keys = lab_accounts(config.accounts, seed=config.seed)
    if config.backend == "embedded":
        block_seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(7), "big")
        return _connect_embedded(keys, seed=block_seed, block_gas_limit=config.block_gas_limit)
    return _connect_rpc(config.backend, keys, funder_key=funder_key, fund_eth=fund_eth)


def join(url: str, *, accounts: Sequence[LocalAccount]) -> Chain:
    """Join a running node (a JSON-RPC URL) with ``accounts``, already funded, as one of several
    processes sending to it: nothing is funded, and events are read from the node's logs from its
    genesis on (:meth:`Chain.follow_logs`)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"join needs a node's http(s):// JSON-RPC URL, got {url!r}")
    chain, _ = _rpc_chain(url, list(accounts))
    chain.follow_logs(after=-1)
    return chain


BLOCK_TIME = 12


def _reproducible_backend(seed: int, **kwargs: Any) -> Any:
    """A PyEVMBackend whose blocks are reproducible: eth-tester draws each block's
    ``prevrandao`` from os.urandom and its timestamp from the wall clock; here prevrandao is
    keccak(seed, number) and blocks are BLOCK_TIME seconds apart from the fixed genesis."""
    from eth.constants import GENESIS_PARENT_HASH
    from eth.vm.forks import ParisVM, PragueVM
    from eth_tester import PyEVMBackend

    class ReproduciblePyEVMBackend(PyEVMBackend):  # type: ignore[misc]
        def _pin_pending_timestamp(self) -> None:
            head = self.chain.get_canonical_head()
            self.chain.header = self.chain.header.copy(timestamp=head.timestamp + BLOCK_TIME)

        def revert_to_snapshot(self, snapshot: Any) -> None:
            header = self.chain.chaindb.get_block_header_by_hash(snapshot)
            if header.block_number == 0:
                super().revert_to_snapshot(snapshot)
            else:
                # eth-tester re-imports the snapshot's block, running every transaction in it again,
                # only to rebuild the pending header: the block and its state are already stored, so
                # making it the head and opening the next block on it is the same state, ~100x faster
                chaindb = self.chain.chaindb
                chaindb._set_as_canonical_chain_head(chaindb.db, header, GENESIS_PARENT_HASH)
                self.chain.header = self.chain.create_header_from_parent(header)
            self._pin_pending_timestamp()

        def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = b"\0" * 20) -> tuple[bytes, ...]:
            hashes = []
            for _ in range(num_blocks):
                kwargs: dict[str, Any] = {"coinbase": coinbase}
                number = self.chain.header.block_number
                if isinstance(self.chain.get_vm(), ParisVM):
                    kwargs["mix_hash"] = keccak(seed.to_bytes(8, "big") + number.to_bytes(8, "big"))
                if isinstance(self.chain.get_vm(), PragueVM):
                    kwargs["blob_gas_used"] = 0  # the lab sends no blob transactions
                hashes.append(self.chain.mine_block(**kwargs).hash)
                self._pin_pending_timestamp()
            return tuple(hashes)

    backend = ReproduciblePyEVMBackend(**kwargs)
    backend._pin_pending_timestamp()
    return backend


def _connect_embedded(keys: list[LocalAccount], *, seed: int, block_gas_limit: int) -> Chain:
    try:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider
    except ImportError as e:  # pragma: no cover - part of the pinned stack
        raise ChainError("the embedded chain needs eth-tester[py-evm]: pip install 'eth-tester[py-evm]'") from e
    genesis_state = {
        bytes.fromhex(a.address[2:]): {"balance": GENESIS_ETH * 10**18, "nonce": 0, "code": b"", "storage": {}}
        for a in keys
    }
    params = PyEVMBackend.generate_genesis_params(overrides={"timestamp": GENESIS_TIMESTAMP, "gas_limit": block_gas_limit})
    backend = _reproducible_backend(seed, genesis_parameters=params, genesis_state=genesis_state)
    tester = EthereumTester(backend=backend)
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(w3, backend="embedded", accounts=keys, tester=tester)


def _rpc_chain(url: str, keys: list[LocalAccount]) -> tuple[Chain, str]:
    """A Chain over the node at ``url``, and the node's client version."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    try:
        client = str(w3.client_version)
    except Exception as e:
        raise ChainError(f"no JSON-RPC node answers at {url}: {e}") from e
    return Chain(w3, backend=url, accounts=keys, rpc=JsonRpcClient(url, timeout=60)), client


def _connect_rpc(url: str, keys: list[LocalAccount], *, funder_key: str | None, fund_eth: int) -> Chain:
    chain, client = _rpc_chain(url, keys)
    w3 = chain.w3
    if "anvil" in client.lower():
        amount = hex(GENESIS_ETH * 10**18)
        for a in keys:
            w3.provider.make_request("anvil_setBalance", [a.address, amount])
    elif funder_key is not None:
        funder = Account.from_key(funder_key)
        for a in keys:
            chain._send(sender=funder, to=a.address, data=b"", gas=21_000, value=fund_eth * 10**18,
                        function="fund account")
    else:
        log.warning("%s is not anvil and no funder_key was given: the lab's accounts are not funded", client)
    return chain


def _receipt_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of a JSON-RPC receipt the lab reads, as web3 would format them."""
    created = raw.get("contractAddress")
    return {
        "transactionHash": bytes.fromhex(raw["transactionHash"][2:]),
        "blockNumber": int(raw["blockNumber"], 16),
        "status": int(raw["status"], 16),
        "gasUsed": int(raw["gasUsed"], 16),
        "contractAddress": to_checksum_address(created) if created else None,
        "logs": [_log_from_json(log) for log in raw["logs"]],
    }


def _log_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    """One log (of a receipt, or of ``eth_getLogs``) with the fields the event index reads."""
    return {"address": to_checksum_address(raw["address"]), "topics": [bytes.fromhex(t[2:]) for t in raw["topics"]],
            "data": bytes.fromhex(raw["data"][2:]), "logIndex": int(raw["logIndex"], 16),
            "blockNumber": int(raw["blockNumber"], 16), "transactionHash": bytes.fromhex(raw["transactionHash"][2:])}


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return bytes.fromhex(data.removeprefix("0x"))
    return bytes(data)


@dataclass(frozen=True)
class CallFailed:
    """In :meth:`Chain.call_many`'s results: a call that failed with ``error`` (its named revert)."""

    error: ChainError


Chain.Failed = CallFailed  # type: ignore[attr-defined]


def _raise(error: ChainError) -> bytes:
    raise error
