"""What every role agent shares: its own account and X25519 key, its journal, its turn.

An agent is driven by the clock (:class:`~din_lab.protocol.lab.Lab`) one turn at a time:
``act(phase, round)`` runs the agent's handler named after that phase of the paper (a role
without one has nothing to do in it) and returns ``None`` when it is done with the phase, or a
:class:`~din_lab.roles.network.Wait` when it must wait for a block or for the others' actions. A
handler decides from the public state and the agent's own secrets only, and remembers what it did
so that another turn never repeats an action.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account

from din_lab.chain import Chain, Receipt
from din_lab.chain.din import WAD
from din_lab.cid import Cid
from din_lab.errors import ProtocolError
from din_lab.roles.network import Board, Handle, LabEvent, PublicView, TaskSpec, Wait
from din_lab.secagg.prg import Rng, seeded_rng
from din_lab.storage import ContentStore

SIDE_EFFECTS = {"EvaluatorSlashed": "slashed", "FeePaid": "fee paid", "Claimed": "claimed"}


def x25519_from(secret: bytes) -> tuple[X25519PrivateKey, bytes]:
    key = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"din-lab x25519 " + secret).digest())
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Agent:
    """One party of the protocol: a name, a handle to the network, and its own secrets."""

    def __init__(self, *, name: str, handle: Handle) -> None:
        self.name = name
        self.handle = handle
        self._account = handle.account
        self._key, self.public_key = x25519_from(bytes(handle.account.key))
        self._journal: list[LabEvent] = []
        self.timed_out = False  # this turn: the network has gone quiet (no one else has anything to do)

    @property
    def address(self) -> str:
        return self._account.address

    @property
    def view(self) -> PublicView:
        if self.handle is None:
            raise ProtocolError(f"{self.name} has not joined the network in this process (Agent.connect)")
        if self.handle.view is None:
            raise ProtocolError(f"{self.name} has no task to act in yet")
        return self.handle.view

    @property
    def spec(self) -> TaskSpec:
        if self.handle.spec is None:
            raise ProtocolError(f"{self.name} has not been told the task")
        return self.handle.spec

    @property
    def F(self) -> Any:  # the task contract's functions
        return self.handle.task.functions

    def join(self, handle: Handle) -> None:
        """Take a new handle (the same account): once the task exists, or in a new process."""
        if handle.account.address != self.address:
            raise ProtocolError(f"{self.name}: a handle for another account")
        self.handle = handle

    def connect(self, *, chain: Chain, store: ContentStore, token: Any, registry: Any, view: PublicView,
                board: Board, spec: TaskSpec) -> None:
        """Join the network from the process it now lives in, with a handle for its own account."""
        self.handle = Handle(chain=chain, store=store, account=self._account, token=token, registry=registry,
                             view=view, board=board, spec=spec)

    # an agent moves to another process (the Ray runtime) with its own secrets and without its
    # handle: the connections are this process's; it joins the network there with a new handle
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["handle"], state["_key"]
        state["_account"] = bytes(self._account.key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        key = state["_account"]
        self._account = Account.from_key(key)
        self._key, _ = x25519_from(key)
        self.handle = None  # type: ignore[assignment]  # until join()

    # ---------------------------------------------------------------- turns

    def act(self, phase: str, round_: int | None, *, timed_out: bool = False) -> Wait | None:
        """This agent's turn in ``phase``; ``timed_out``: the network has gone quiet, so a handler
        waiting for the others' actions (``Wait()``) must now do what it can without them."""
        handler = getattr(self, phase, None)
        if handler is None:
            return None
        self.timed_out = timed_out
        try:
            return handler(round_)
        finally:
            self.timed_out = False

    def take_events(self) -> list[LabEvent]:
        """What the agent did since it was last asked (the clock collects it after every turn)."""
        events, self._journal = self._journal, []
        return events

    # ---------------------------------------------------------------- acting

    def _tx(self, phase: str, round_: int | None, fn: Any, action: str, *, cid: Cid | None = None,
            amount: float | None = None, detail: str = "") -> Receipt:
        receipt = self.handle.chain.transact(fn, sender=self.handle.account)
        self._journal.append(LabEvent(phase=phase, round=round_, actor=self.name, action=action,
                                      tx_hash=receipt.tx_hash, gas=receipt.gas_used, block=receipt.block,
                                      cid=str(cid) if cid else None, amount=amount, detail=detail))
        for ev in receipt.events:  # money the contract moved as a side effect (actor: the address)
            if ev.event in SIDE_EFFECTS:
                who = ev.args.get("evaluator") or ev.args.get("account")
                self._journal.append(LabEvent(phase=phase, round=round_, actor=who, action=SIDE_EFFECTS[ev.event],
                                              tx_hash=receipt.tx_hash, block=receipt.block,
                                              amount=ev.args["amount"] / WAD, detail=ev.args.get("reason", "")))
        return receipt

    def _note(self, phase: str, round_: int | None, action: str, **kw: Any) -> None:
        self._journal.append(LabEvent(phase=phase, round=round_, actor=kw.pop("actor", self.name), action=action, **kw))

    def _add(self, data: bytes) -> Cid:
        return Cid.coerce(self.handle.store.add(data, cid_version=1))

    def _post(self, topic: str, cid: Cid) -> None:
        self.handle.board.post(topic, sender=self.address, cid=cid)

    def _secret_rng(self, label: str) -> Rng:
        """Randomness only this agent can reproduce: seeded from its own private key (a lab run is
        reproducible from its seed, yet nobody without the key can derive it)."""
        return seeded_rng(hashlib.sha256(b"din-lab/agent-rng" + bytes(self.handle.account.key)
                                         + label.encode()).digest())

    def _salt(self, label: str) -> bytes:
        return self._secret_rng(label)(32)

    def _wait_past(self, block: int) -> Wait | None:
        """``None`` if ``block`` has passed, else a Wait for the block after it."""
        return None if self.handle.chain.block_number > block else Wait(block + 1)
