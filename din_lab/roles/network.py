"""What a role agent is given: a handle to the network, and the public state it reads through it.

An agent holds its own keys and secrets and nothing of anyone else's. What it may see is public:

- :class:`Handle`: the chain connection, the content store, the agent's own account, the task's
  contracts and the public task description (:class:`TaskSpec`);
- :class:`PublicView`: the task's events and the store's objects, read once and cached (every
  object is verified against its CID before it is cached), so that many agents in one process
  reading the same public round cost what one reader costs;
- :class:`Board`: the public announcement channel of the peer-to-peer network (the paper's
  participants announce their secure-aggregation keys to their subgroup, sign updates for a
  relayer, reveal sealed contributions to their committee): anyone posts a CID under a topic,
  under its own address; everyone may read every post.

An agent reports what it did as :class:`LabEvent` records, which the Lab (the clock) collects
after each turn; it asks the clock for time with :class:`Wait`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from din_lab.chain import Chain
from din_lab.chain.din import Phase, SubgroupStatus
from din_lab.cid import Cid
from din_lab.errors import DinLabError, IntegrityError
from din_lab.learning import TrainingConfig
from din_lab.storage import ContentStore, ImportParams, cid_of

CACHE_BYTES = 512 * 2**20  # verified objects kept in memory by a PublicView
DECODED_MAX = 20_000  # decoded objects kept (a round of 1,000 participants reads about 2,000)


@dataclass(frozen=True)
class LabEvent:
    """One thing that happened: a transaction, an upload, a payment, a refusal."""

    phase: str
    round: int | None
    actor: str
    action: str
    tx_hash: str | None = None
    gas: int = 0
    block: int | None = None
    cid: str | None = None
    amount: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Wait:
    """An agent's answer to its turn when it has more to do in this phase: ``block`` the first block
    at which it can act again (the clock mines up to it), or ``None`` for another turn as soon as
    the others have acted."""

    block: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """The task as the owner announces it: what every role needs to take part (all public)."""

    model: str
    num_features: int
    num_classes: int
    dimension: int
    max_samples: int
    subgroup_size: int
    evaluators_per_subgroup: int
    training: TrainingConfig
    scorer: str
    secagg: bool
    secagg_plus: bool
    evaluation: str
    relayed_submissions: bool
    relay_batch: int
    seed: int  # the experiment's seed: shared randomness of a reproducible run (see README)
    contribution: str = "subgroup"  # "task": one game over all final-round contributors; "subgroup": each its own


class Board:
    """The public announcement channel: posts ``(sender, CID)`` under a topic, in order. A post is
    filed under the poster's own address (the handle posts for its account); later posts of the
    same sender on the same topic replace earlier ones."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, Cid]] = {}
        self._log: list[tuple[str, str, Cid]] = []
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """The number of posts so far."""
        return len(self._log)

    def post(self, topic: str, *, sender: str, cid: Cid) -> None:
        with self._lock:
            self._topics.setdefault(topic, {})[sender] = cid
            self._log.append((topic, sender, cid))

    def posts_since(self, version: int) -> list[tuple[str, str, Cid]]:
        """The posts ``(topic, sender, CID)`` made after the board had ``version`` posts, in order
        (how a replica of the board in another process catches up)."""
        with self._lock:
            return self._log[version:]

    def read(self, topic: str) -> dict[str, Cid]:
        with self._lock:
            return dict(self._topics.get(topic, {}))


class PublicView:
    """The task's public state as anyone reads it, cached. Round data is cached only once it is
    final (a window closed, an event emitted); objects are cached once verified against their CID."""

    def __init__(self, *, chain: Chain, store: ContentStore, task: Any, registry: Any) -> None:
        self.chain, self.store, self.task, self.registry = chain, store, task, registry
        self._objects: OrderedDict[Cid, bytes] = OrderedDict()
        self._bytes = 0
        self._decoded: OrderedDict[tuple[Cid, str], Any] = OrderedDict()
        self._participant_keys: dict[str, bytes] = {}
        self._evaluator_keys: dict[str, tuple[bytes, int]] = {}  # key, events seen when read
        self._registered: list[str] | None = None
        self._rounds: dict[int, dict[str, Any]] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- objects

    def cat(self, cid: Cid) -> bytes:
        """The object's bytes, verified against its CID (an IntegrityError if they do not hash to it)."""
        key = Cid.coerce(cid)
        with self._lock:
            if key in self._objects:
                self._objects.move_to_end(key)
                return self._objects[key]
        data = self.store.cat(cid)
        # hashed here, not by the store: a reader trusts no store (nor a round trip to ask it)
        recomputed = Cid.coerce(cid_of(data, params=ImportParams(cid_version=cid.version)))
        if recomputed != Cid.coerce(cid):
            raise IntegrityError(f"the store returned bytes for {cid} that hash to {recomputed}", cid=str(cid))
        self._remember(key, data)
        return data

    def _remember(self, key: Cid, data: bytes) -> None:
        with self._lock:
            if key in self._objects:
                return
            self._objects[key] = data
            self._bytes += len(data)
            while self._bytes > CACHE_BYTES and len(self._objects) > 1:
                _, old = self._objects.popitem(last=False)
                self._bytes -= len(old)

    def decoded(self, cid: Cid, decode: Callable[[bytes], Any], *, kind: str) -> Any:
        """``decode(cat(cid))``, once per CID and kind. A decoding error is cached too (malformed
        content stays malformed); a failed fetch is raised and not cached (it may be temporary).
        Decoded arrays are shared between readers: treat them as read-only."""
        key = (Cid.coerce(cid), kind)
        with self._lock:
            if key in self._decoded:
                self._decoded.move_to_end(key)
                value = self._decoded[key]
            else:
                value = None
        if value is None:
            data = self.cat(cid)
            try:
                value = decode(data)
            except DinLabError as e:
                value = e
            with self._lock:
                self._decoded[key] = value
                while len(self._decoded) > DECODED_MAX:
                    self._decoded.popitem(last=False)
        if isinstance(value, DinLabError):
            raise value
        return value

    # ---------------------------------------------------------------- chain

    def call(self, fn: Any) -> Any:
        return self.chain.call(fn)

    def events(self, name: str, **match: Any) -> list:
        return self.chain.events.where(name, address=self.task.address, **match)

    def phase(self) -> int:
        return int(self.chain.call(self.task.functions.phase()))

    def registered(self) -> list[str]:
        """Participants in registration order (their on-chain index); cached once training started."""
        with self._lock:
            if self._registered is not None:
                return self._registered
        order = [e.args["participant"] for e in sorted(self.events("ParticipantRegistered"),
                                                       key=lambda e: e.args["index"])]
        if self.phase() != Phase.REGISTRATION:
            with self._lock:
                self._registered = order
        return order

    def participant_key(self, address: str) -> bytes:
        """A participant's long-term X25519 key as it registered it with the task."""
        if address not in self._participant_keys:
            value = bytes(self.chain.call(self.task.functions.publicKeyOf(address)))
            if not any(value):
                return value  # not registered (yet): not cached
            self._participant_keys[address] = value
        return self._participant_keys[address]

    def evaluator_key(self, address: str) -> bytes:
        """An evaluator's long-term X25519 key as the registry publishes it."""
        seen = len(self.chain.events)  # re-read after any new transaction (a key may be set or rotated)
        cached = self._evaluator_keys.get(address)
        if cached is None or cached[1] != seen:
            value = bytes(self.chain.call(self.registry.functions.publicKeyOf(address)))
            if not any(value):
                return value  # not published (yet): not cached
            cached = self._evaluator_keys[address] = (value, seen)
        return cached[0]

    def _round(self, r: int) -> dict[str, Any]:
        with self._lock:
            return self._rounds.setdefault(r, {})

    def round_drawn(self, r: int) -> bool:
        return bool(self.events("RoundStarted", round=r))

    def seed(self, r: int) -> bytes:
        cache = self._round(r)
        if "seed" not in cache:
            started = self.events("RoundStarted", round=r)
            if not started:
                raise DinLabError(f"round {r} has not been drawn yet")
            cache["seed"] = bytes(started[0].args["seed"])
            cache["groups"] = int(started[0].args["subgroups"])
            cache["deadline"] = int(started[0].args["submissionDeadline"])
        return cache["seed"]

    def groups(self, r: int) -> int:
        self.seed(r)
        return self._round(r)["groups"]

    def submission_deadline(self, r: int) -> int:
        self.seed(r)
        return self._round(r)["deadline"]

    def members(self, r: int, g: int, *, subgroup_size: int) -> list[str]:
        """Subgroup ``g``'s members in position order, computed from the round's seed as the contract
        does (``DINTask.subgroupMembers``)."""
        from din_lab.chain import assignment

        cache = self._round(r).setdefault("members", {})
        if g not in cache:
            order = self.registered()
            cache[g] = [order[i] for i in assignment.subgroup_members(g, seed=self.seed(r), participants=len(order),
                                                                      subgroup_size=subgroup_size)]
        return cache[g]

    def committee(self, r: int, g: int, cohort: int = 0) -> list[str]:
        """The committee drawn for subgroup ``g`` (cohort 0, or 1: a dispute's), from ``CommitteeDrawn``."""
        cache = self._round(r).setdefault("committees", {})
        if (g, cohort) not in cache:
            drawn = [e for e in self.events("CommitteeDrawn", round=r, subgroup=g) if e.args["cohort"] == cohort]
            if not drawn:
                return []
            cache[(g, cohort)] = list(drawn[-1].args["members"])
        return cache[(g, cohort)]

    def submitted(self, r: int) -> dict[str, tuple[Cid, Cid | None]]:
        """``participant -> (update CID, aux CID or None)`` recorded on chain for round ``r``; cached
        once the submission window has closed."""
        cache = self._round(r)
        if "submitted" in cache:
            return cache["submitted"]
        out = {}
        for e in self.events("UpdateSubmitted", round=r):
            aux = Cid.from_chain(e.args["aux"])
            out[e.args["participant"]] = (Cid.from_chain(e.args["update"]), aux)
        if self.chain.block_number > self.submission_deadline(r):
            cache["submitted"] = out
        return out

    def finalized(self, r: int) -> dict[int, tuple[int, Cid | None]]:
        """``subgroup -> (status, result CID)`` of the subgroups finalized in round ``r``."""
        out = {}
        for e in self.events("SubgroupFinalized", round=r):
            cid = Cid.from_chain(e.args["result"]) if e.args["status"] == SubgroupStatus.ACCEPTED else None
            out[int(e.args["subgroup"])] = (int(e.args["status"]), cid)
        return out

    def global_model_cid(self, r: int) -> Cid | None:
        """The global model the owner published for round ``r`` (``-1``: the genesis model)."""
        if r < 0:
            return Cid.from_chain(self.events("TaskInitialized")[0].args["genesisModel"])
        published = self.events("GlobalModelPublished", round=r)
        return Cid.from_chain(published[-1].args["model"]) if published else None


@dataclass(frozen=True)
class Handle:
    """An agent's only way into the network: the chain, the store, its own account, the task's
    contracts, the public view and board shared by the agents of one process, and the task's public
    description."""

    chain: Chain
    store: ContentStore
    account: LocalAccount
    token: Any
    registry: Any
    view: PublicView | None = None
    board: Board = field(default_factory=Board)
    spec: TaskSpec | None = None

    @property
    def task(self) -> Any:
        if self.view is None:
            raise DinLabError("no task yet: this handle was made before the task was created")
        return self.view.task
