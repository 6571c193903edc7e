"""The Lab: the clock and the switchboard of one DIN task.

It sets up the network (:mod:`din_lab.protocol.network`: chain, store, contracts, funding, agents)
and then only keeps time. A round is a sequence of phases with the paper's names (section 5.1):
``assign`` ``train`` ``submit`` ``aggregate`` ``commit`` ``reveal`` ``finalize`` ``publish``, then
after the last round ``score`` ``reward`` ``release`` ``claim``. :meth:`Lab.step` runs one phase: every agent
takes turns (its handler of that name: :mod:`din_lab.roles.model_owner`,
:mod:`~din_lab.roles.participant`, :mod:`~din_lab.roles.evaluator`) until each is done; an agent
that waits for a block gets it when everyone is waiting (the clock mines), and one that waits for
the others' actions gets another turn after them, or a time-out turn once the network is quiet.
The Lab never decides for an agent and never hands one agent another's secrets: agents see the
chain, the store and the public board, and their own keys and data. Where they run is the
runtime's business (:mod:`din_lab.protocol.runtime`): in this process, or spread over Ray actors
(``runtime="ray"``: :meth:`Lab.create` then starts anvil and ``din-lab ipfs daemon`` itself,
unless given URLs, and :meth:`Lab.close` stops them).

The environment is the Lab's too: with ``dropout`` a seeded fraction of participants loses the
network in ``submit`` (they trained and advertised, and never submit). And it observes: ``events``
(every agent's transactions and notes, for the widgets) and ``rounds`` (each round's public
record, read from the chain).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from din_lab.chain import Chain, connect
from din_lab.chain.din import WAD, Phase
from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError, ProtocolError
from din_lab.protocol.network import RELAY_BATCH, Network, account_count, agents_of, build
from din_lab.protocol.record import Readings, Recorder, RoundRecord, setup_notes
from din_lab.protocol.runtime import RayRuntime, Runtime, ray_endpoints, shut_down, start_runtime
from din_lab.protocol.services import ServiceProcess
from din_lab.roles.agent import Agent
from din_lab.roles.network import LabEvent
from din_lab.storage import ContentStore, KuboStore, open_store

log = logging.getLogger(__name__)

__all__ = ["FINAL_PHASES", "RELAY_BATCH", "ROUND_PHASES", "Lab", "LabEvent", "RoundRecord", "StepReport"]
ROUND_PHASES = ("assign", "train", "submit", "aggregate", "commit", "reveal", "finalize", "publish")
FINAL_PHASES = ("score", "reward", "release", "claim")
MAX_TURNS = 10_000


@dataclass(frozen=True)
class StepReport:
    """What :meth:`Lab.step` did."""

    phase: str
    round: int | None
    events: tuple[LabEvent, ...]
    seconds: float
    done: bool


def take_turns(runtime: Runtime, *, phase: str, round_: int | None, chain: Chain,
               collect: Callable[[list[LabEvent]], None], offline: set[str] | frozenset[str] = frozenset()) -> None:
    """Give every agent of ``runtime`` turns in ``phase`` until none has anything left to do in it:
    those waiting for the others go again after a turn in which anyone acted (a transaction, a
    note, a post); when everyone waits, the chain is mined to the earliest block asked for, or, if
    nobody waits for a block, each gets one time-out turn. ``collect`` takes each turn's events;
    ``offline`` agents lose the network after their first turn."""
    active, timed_out = runtime.addresses, False
    for turn in range(MAX_TURNS):
        posts = runtime.board.version
        outcomes, events = runtime.turn(phase, round_, active=active, timed_out=timed_out)
        collect(events)
        progress = turn == 0 or bool(events) or runtime.board.version != posts
        waits = {a: w for a, w in outcomes.items() if w is not None and not (turn == 0 and a in offline)}
        if not waits or (timed_out and not progress and all(w.block is None for w in waits.values())):
            return
        active, timed_out = list(waits), False
        if progress:
            continue
        blocks = [w.block for w in waits.values() if w.block is not None]
        if blocks:
            if chain.block_number < min(blocks):
                chain.mine_to(min(blocks))
        else:
            timed_out = True
    raise ProtocolError(f"phase {phase!r} did not settle in {MAX_TURNS} turns")


class Lab(Readings):
    """Chain + store + agents for one task. Build with :meth:`Lab.create`; drive with
    :meth:`step` (one phase) or :meth:`run` (the whole task)."""

    def __init__(self, *, config: ExperimentConfig, chain: Chain, store: ContentStore, progress: bool = False,
                 services: Sequence[ServiceProcess] = (), own_store: bool = False, din: Any = None) -> None:
        from din_lab.protocol.checks import check_config

        check_config(config)
        if config.runtime == "ray" and not (chain.backend.startswith("http") and isinstance(store, KuboStore)):
            raise ConfigError("runtime: the ray runtime's agents reach the chain and the store from other processes: "
                              "give a node's URL and a Kubo RPC store, or use Lab.create, which starts both")
        self.config, self.chain, self.store, self.progress = config, chain, store, progress
        self._services = list(services)
        started = {s.url: s.name for s in services}
        self.chain_name = f"{started[chain.backend]} (started by the lab)" if chain.backend in started else chain.backend
        self.notes: list[str] = setup_notes(config)
        self._failed: tuple[str, str] | None = None
        # the experiment's randomness; unseeded, the account keys came from the operating system
        self.seed = config.seed if config.seed is not None else secrets.randbits(32)
        self.network: Network = build(config, chain=chain, store=store, seed=self.seed, din=din)
        del chain.accounts[1:]  # each agent holds its own key: the Lab keeps only its funder's
        net = self.network
        self.din, self.task, self.task_params, self.model = net.din, net.task, net.task_params, net.model
        self.owner, self.participants, self.evaluators, self.fund = net.owner, net.participants, net.evaluators, net.fund
        self.auditor, self.dataset, self.genesis_cid, self.spec = net.auditor, net.dataset, net.genesis_cid, net.spec
        self.num_train = net.spec.max_samples
        self._names = net.names
        self.events: list[LabEvent] = list(net.setup_events)
        agents = agents_of(net)
        for agent in agents:
            self._collect(agent.take_events(), round_=None)
        self.runtime = self._start_runtime(agents)
        # close() (or garbage collection) stops what this Lab started: its runtime, the store it
        # opened (Lab.create), the servers it started
        self._closer = weakref.finalize(self, shut_down, self.runtime, self._services, store if own_store else None)
        self.balances_raw_before = net.balances_raw_before
        self.balances_before = {self._names[a]: v / WAD for a, v in net.balances_raw_before.items()}
        self.record = Recorder(lab=self)
        self.rounds: list[RoundRecord] = self.record.rounds
        self._plan: Iterator[tuple[str, int | None]] = self._phases()
        self._next: tuple[str, int | None] | None = next(self._plan)

    @classmethod
    def create(cls, config: ExperimentConfig | None = None, *, progress: bool = False, **overrides: Any) -> Lab:
        """Check ``config`` fully (before anything is deployed), connect the chain and the store,
        then set up the network (deploy, fund, create the agents, create the task, register)."""
        from din_lab.protocol.checks import check_config

        if config is not None and overrides:
            raise ProtocolError("give either a config or keyword settings, not both")
        config = config or ExperimentConfig(**overrides)
        check_config(config)
        chain_spec, store_spec, services = config.chain, config.store, []
        try:
            if config.runtime == "ray":  # the agents' processes reach a node and a store by URL
                chain_spec, store_spec, services = ray_endpoints(chain=chain_spec, store=store_spec)
            chain = connect(chain_spec, accounts=account_count(config), seed=config.seed)
            return cls(config=config, chain=chain, store=open_store(store_spec), progress=progress, services=services,
                       own_store=True)
        except BaseException:
            shut_down(None, services)
            raise

    def next_task(self, config: ExperimentConfig | None = None, **overrides: Any) -> Lab:
        """A follow-on task in this lab's network (same chain, store and contracts; with the economy,
        under the parameters as governance left them): new agents with new accounts (keys from the
        new config's seed, gas money from the funder), ``config`` or this lab's config with
        ``overrides``. This lab must be done; it keeps its records."""
        from din_lab.chain import lab_accounts
        from din_lab.protocol.checks import check_config

        if not self.done:
            raise ProtocolError("this lab's task is still running: run it to the end before the next task")
        if config is not None and overrides:
            raise ProtocolError("give either a config or keyword settings, not both")
        config = config or dataclasses.replace(self.config, **overrides)
        if config.runtime != "local" or config.chain != self.config.chain:
            raise ConfigError("a follow-on task runs locally on this lab's chain")
        check_config(config)
        funder = self.chain.accounts[0]
        seed = None if config.seed is None else config.seed
        keys = lab_accounts(account_count(config) - 1, seed=seed, domain=f"din-lab/next-task/{self.task.address}")
        taken = set(self.names)
        if any(k.address in taken for k in keys):
            raise ProtocolError("the next task's accounts would reuse this lab's: choose another seed")
        for key in keys:
            self.chain.send_eth(to=key.address, amount=100 * 10**18, sender=funder)
        self.chain.accounts[1:] = keys
        return Lab(config=config, chain=self.chain, store=self.store, progress=self.progress, din=self.din)

    def _start_runtime(self, agents: list[Agent]) -> Runtime:
        runtime = start_runtime(self.config, agents=agents, network=self.network, chain=self.chain, store=self.store)
        if isinstance(runtime, RayRuntime):  # the agents live in the actors: the Lab keeps handles on them
            remote = {p.address: p for p in runtime.proxies}
            self.owner, self.fund = remote[self.owner.address], remote[self.fund.address]
            self.participants = [remote[p.address] for p in self.participants]
            self.evaluators = [remote[e.address] for e in self.evaluators]
        return runtime

    def close(self) -> None:
        """Stop what this Lab started: the Ray actors, and the node and store it started (by PID)."""
        self._closer()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the clock

    def _phases(self) -> Iterator[tuple[str, int | None]]:
        r = 0
        while True:
            for phase in ROUND_PHASES:
                yield phase, r
                if self._ended():  # e.g. the participants refused the owner's model: everyone claims
                    yield from (("release", None), ("claim", None))
                    return
            if self.network.view.phase() != Phase.TRAINING:
                break
            r += 1
        for phase in FINAL_PHASES:
            yield phase, None
            if phase in ("score", "reward") and self._ended():
                yield from (("release", None), ("claim", None))
                return

    def _ended(self) -> bool:
        """Has the task ended before its final phases (cancelled or abandoned)?"""
        return self.network.view.phase() in (Phase.CANCELLED, Phase.ABANDONED)

    @property
    def next_phase(self) -> tuple[str, int | None] | None:
        """The phase :meth:`step` runs next (``None`` when the task is over)."""
        return self._next

    @property
    def done(self) -> bool:
        return self._next is None

    def step(self) -> StepReport:
        """Run one phase: every agent acts until it is done with it; returns the phase's events."""
        if self._failed is not None:
            raise ProtocolError(f"the lab stopped when phase {self._failed[0]!r} failed ({self._failed[1]}); "
                                "its chain state is kept for inspection, start a new Lab to run again")
        if self._next is None:
            raise ProtocolError("the task is over: nothing left to step")
        phase, round_ = self._next
        before, started = len(self.events), time.perf_counter()
        try:
            if phase == "assign":
                self.rounds.append(RoundRecord(started=started))
            self._train(round_) if phase == "train" else self._turns(phase, round_)
            self.record.observe(phase, round_)
        except BaseException as e:
            self._failed = (phase, f"{type(e).__name__}: {e}")
            self.events.append(LabEvent(phase=phase, round=round_, actor="lab", action="phase failed",
                                        detail=self._failed[1]))
            raise
        self._next = next(self._plan, None)
        return StepReport(phase=phase, round=round_, events=tuple(self.events[before:]),
                          seconds=time.perf_counter() - started, done=self._next is None)

    def run(self, *, on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
        """Run the task to the end."""
        reports = []
        total = len(ROUND_PHASES) * self.config.rounds + len(FINAL_PHASES)
        with tqdm(total=total, desc="DIN task", unit="phase", disable=not self.progress) as bar:
            while not self.done:
                phase, round_ = self._next
                bar.set_description(f"round {round_}: {phase}" if round_ is not None else phase)
                reports.append(self.step())
                bar.update(1)
                if on_step:
                    on_step(reports[-1])
        return reports

    def _turns(self, phase: str, r: int | None) -> None:
        offline = self._vanishing(r) if phase == "submit" else set()
        take_turns(self.runtime, phase=phase, round_=r, chain=self.chain,
                   collect=lambda events: self._collect(events, round_=r), offline=offline)

    def _train(self, r: int) -> None:
        """Each participant hands its data and the model it verified to its process's trainer and
        gets its own result back (the participants' devices, simulated as one batched computation
        per process)."""
        trained, events = self.runtime.train(r)
        self._collect(events, round_=r)
        where = "" if self.runtime.name == "local" else " in each Ray actor"
        self.events.append(LabEvent(phase="train", round=r, actor="participants", action="trained locally",
                                    detail=f"{trained} participants, one batched computation{where}"))

    def _vanishing(self, r: int) -> set[str]:
        """Who loses the network this round after advertising (the configured fraction, seeded)."""
        count = int(round(self.config.dropout * len(self.participants)))
        if not count:
            return set()
        rng = np.random.default_rng([self.seed, r, 29])
        gone = {self.participants[i].address for i in rng.choice(len(self.participants), size=count, replace=False)}
        self.rounds[r].vanished = gone
        for p in self.participants:
            if p.address in gone:
                self.events.append(LabEvent(phase="submit", round=r, actor=p.name,
                                            action="vanished mid-round: trained, never submitted"))
        return gone

    def _collect(self, events: list[LabEvent], *, round_: int | None) -> None:
        seen = set()
        for e in events:
            actor = self._names.get(e.actor, e.actor)
            self.events.append(e if actor == e.actor else dataclasses.replace(e, actor=actor))
            if e.tx_hash and e.gas and e.tx_hash not in seen and round_ is not None and round_ < len(self.rounds):
                seen.add(e.tx_hash)
                self.rounds[round_].gas += e.gas
