"""Where the agents run, for the clock: ``local`` (in this process) or ``ray`` (over Ray actors).

A runtime gives agents their turns and hands the clock what they did; it never decides for one.

- :class:`LocalRuntime`: every agent in this process; turns are taken in agent order; the
  participants' local training is one batched computation (each participant hands its data to the
  shared trainer for the call and gets only its own result back).
- :class:`RayRuntime`: the agents are spread over ``workers`` Ray actors (:class:`AgentHost`), in
  contiguous runs of the agent order. An agent moves there with its own secrets and without its
  handle; in the actor it joins the network with a handle of that process: its own JSON-RPC
  connection to the node (events read from the node's logs), its own IPFS client, its own public
  view, and a replica of the public board, which catches up with the others' posts before each of
  its turns. The actors take a turn one after another, so the chain sees the same transactions in
  the same order as under the local runtime: the contract's draws come from block hashes, and a
  seeded run gives the same summary on both. In ``train`` the actors in turn have their
  participants fetch and check the published model (a refusal is a transaction); then all actors
  train at once, each its own participants as one batched computation.

The clock sees only what agents did (their events), whether they wait, and the public board; the
experimenter's questions to an agent about its own state (``ask``) are answered where it lives.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from din_lab.chain import Chain, join
from din_lab.config import ExperimentConfig
from din_lab.errors import MissingDependencyError, ProtocolError
from din_lab.protocol.services import ServiceProcess, start_anvil, start_ipfs_daemon
from din_lab.roles.agent import Agent
from din_lab.roles.network import Board, LabEvent, PublicView, TaskSpec, Wait
from din_lab.roles.participant import BatchedTrainer, Participant
from din_lab.storage import ContentStore, open_store

Outcomes = dict[str, Wait | None]
Post = tuple[str, str, Any]  # topic, sender, CID
Jobs = list[tuple[Participant, Any]]
READY_SECONDS = 120  # for the actors to start and join the network


def take_turn(agents: dict[str, Agent], active: Sequence[str], phase: str, round_: int | None,
              timed_out: bool) -> tuple[Outcomes, list[LabEvent]]:
    """One turn of the ``active`` agents, in order: each one's outcome, and what they did."""
    outcomes: Outcomes = {}
    events: list[LabEvent] = []
    for address in active:
        agent = agents[address]
        outcomes[address] = agent.act(phase, round_, timed_out=timed_out)
        events += agent.take_events()
    return outcomes, events


def ask_agents(agents: dict[str, Agent], method: str, args: tuple, addresses: Sequence[str]) -> dict[str, Any]:
    """``agent.method(*args)`` of each agent in ``addresses``: the experimenter's question."""
    return {a: getattr(agents[a], method)(*args) for a in addresses}


def training_jobs(participants: Sequence[Agent], round_: int) -> tuple[Jobs, list[LabEvent]]:
    """Each participant's training job: the model it fetched and verified, and its data (a
    participant that finds the published model wrong refuses it on chain here, and has no job)."""
    jobs = [(p, job) for p in participants if isinstance(p, Participant) and (job := p.training_job(round_))]
    return jobs, [e for p in participants for e in p.take_events()]


def train_jobs(jobs: Jobs, trainer: BatchedTrainer, round_: int) -> list[LabEvent]:
    """The jobs trained as one batched computation; each participant gets only its own result."""
    if jobs:
        for (p, _), params in zip(jobs, trainer.train([j for _, j in jobs], round_=round_), strict=True):
            p.trained(round_, params)
    return [e for p, _ in jobs for e in p.take_events()]


class LocalRuntime:
    """Every agent in this process."""

    name = "local"

    def __init__(self, agents: Sequence[Agent], *, board: Board, spec: TaskSpec) -> None:
        self.board = board
        self._agents = {a.address: a for a in agents}
        self._trainer: BatchedTrainer | None = None
        self._spec = spec

    @property
    def addresses(self) -> list[str]:
        return list(self._agents)

    def turn(self, phase: str, round_: int | None, *, active: Sequence[str],
             timed_out: bool) -> tuple[Outcomes, list[LabEvent]]:
        return take_turn(self._agents, active, phase, round_, timed_out)

    def train(self, round_: int) -> tuple[int, list[LabEvent]]:
        if self._trainer is None:
            self._trainer = BatchedTrainer(self._spec)
        jobs, events = training_jobs(list(self._agents.values()), round_)
        return len(jobs), events + train_jobs(jobs, self._trainer, round_)

    def ask(self, method: str, *args: Any, addresses: Sequence[str]) -> dict[str, Any]:
        return ask_agents(self._agents, method, args, addresses)

    def close(self) -> None:
        pass


class AgentHost:
    """One Ray actor's agents, in their own process: own chain connection (events from the node's
    logs), own IPFS client, own public view, a replica of the board. Built by :class:`RayRuntime`."""

    def __init__(self, *, chain_url: str, store_url: str, contracts: dict[str, str], spec: TaskSpec,
                 agents: list[Agent]) -> None:
        self.chain = join(chain_url, accounts=())
        self.chain.hold_head = True  # nobody else moves the chain during this actor's calls: they take turns
        self.store = open_store(store_url)
        task = self.chain.at("DINTask", contracts["task"])
        registry = self.chain.at("EvaluatorRegistry", contracts["registry"])
        token = self.chain.at("DINToken", contracts["token"])
        self.view = PublicView(chain=self.chain, store=self.store, task=task, registry=registry)
        self.board = Board()
        self.agents = {a.address: a for a in agents}
        for a in agents:
            a.connect(chain=self.chain, store=self.store, token=token, registry=registry, view=self.view,
                      board=self.board, spec=spec)
        self.trainer = BatchedTrainer(spec)
        self._jobs: Jobs = []

    def turn(self, phase: str, round_: int | None, active: list[str], timed_out: bool,
             posts: list[Post]) -> tuple[Outcomes, list[LabEvent], list[Post]]:
        """The board's news since this actor's last turn, then each active agent's turn; returns
        the outcomes, the events and this actor's new posts."""
        self.chain.refresh()
        for topic, sender, cid in posts:
            self.board.post(topic, sender=sender, cid=cid)
        mark = self.board.version
        outcomes, events = take_turn(self.agents, active, phase, round_, timed_out)
        return outcomes, events, self.board.posts_since(mark)

    def prepare_training(self, round_: int) -> tuple[int, list[LabEvent]]:
        """Its participants' jobs (a refusal of the published model is a transaction: the actors
        do this in turn, in agent order); kept here for :meth:`train`."""
        self.chain.refresh()
        self._jobs, events = training_jobs(list(self.agents.values()), round_)
        return len(self._jobs), events

    def train(self, round_: int) -> list[LabEvent]:
        """The prepared jobs, trained (no chain, no store: every actor at once)."""
        jobs, self._jobs = self._jobs, []
        return train_jobs(jobs, self.trainer, round_)

    def ask(self, method: str, args: tuple, addresses: list[str]) -> dict[str, Any]:
        self.chain.refresh()
        return ask_agents(self.agents, method, args, addresses)

    def execute(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(self, *args)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("the ray runtime needs Ray: pip install 'din-lab[ray]'") from None
    return ray


def ray_endpoints(*, chain: str, store: str) -> tuple[str, str, list[ServiceProcess]]:
    """The chain and store URLs the Ray runtime's actors reach: ``chain`` and ``store`` when they
    are URLs, otherwise an anvil and a ``din-lab ipfs daemon`` (over ``store``: ``memory`` or a
    directory) started here, returned to be stopped by PID. Ray missing: one clear error before
    anything starts."""
    import_ray()
    services: list[ServiceProcess] = []
    try:
        if not chain.startswith(("http://", "https://")):
            services.append(start_anvil(prune_history=256))
            chain = services[-1].url
        if not store.startswith(("http://", "https://")):
            services.append(start_ipfs_daemon(store))
            store = services[-1].url
    except BaseException:
        for service in services:
            service.stop()
        raise
    return chain, store, services


class RemoteAgent:
    """The experimenter's handle on an agent that lives in a Ray actor: its public particulars
    (name, address, index, behaviour, number of samples, registered), and its methods, called where
    it lives."""

    def __init__(self, agent: Agent, *, runtime: RayRuntime) -> None:
        self.name, self.address = agent.name, agent.address
        self.index = getattr(agent, "index", None)
        self.behaviour = getattr(agent, "behaviour", None)
        self.samples = getattr(agent, "samples", None)
        self.registered = getattr(agent, "registered", None)  # settled at set-up, before the agent moved
        self._runtime = runtime
        self._methods = frozenset(n for n in dir(type(agent))
                                  if not n.startswith("_") and callable(getattr(type(agent), n, None)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(f"{name!r}: a RemoteAgent forwards the agent's methods only (its data stays in "
                                 "its actor)")
        return lambda *args: self._runtime.ask(name, *args, addresses=[self.address])[self.address]

    def __repr__(self) -> str:
        return f"RemoteAgent({self.name!r}, {self.address})"


class RayRuntime:
    """The agents spread over ``workers`` Ray actors in contiguous runs of the agent order.
    ``chain_url`` and ``store_url`` must be reachable from the actors' processes (a node and a Kubo
    RPC API). Ray is started here (and stopped by :meth:`close`) unless it already runs."""

    name = "ray"

    def __init__(self, agents: Sequence[Agent], *, board: Board, spec: TaskSpec, workers: int, chain_url: str,
                 store_url: str, contracts: dict[str, str]) -> None:
        ray = self._ray = import_ray()
        self.board = board
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
            self._started_ray = True
        host_class = ray.remote(num_cpus=1)(AgentHost)
        self._order = {a.address: i for i, a in enumerate(agents)}
        size = -(-len(agents) // workers)  # contiguous: an actor's turn is a run of the agent order
        groups = [list(agents[k:k + size]) for k in range(0, len(agents), size)]
        self._members = [{a.address for a in g} for g in groups]
        self.proxies = [RemoteAgent(a, runtime=self) for a in agents]
        self._hosts: list[Any] = []
        self._sent = [0] * len(groups)  # how much of the board each actor has been sent
        self.closed = False
        try:
            for g in groups:
                self._hosts.append(host_class.remote(chain_url=chain_url, store_url=store_url, contracts=contracts,
                                                     spec=spec, agents=g))
            try:
                self._ray.get([h.__ray_ready__.remote() for h in self._hosts], timeout=READY_SECONDS)
            except self._ray.exceptions.GetTimeoutError:
                raise ProtocolError(f"the {len(groups)} Ray actors did not start within {READY_SECONDS} s (does the "
                                    f"Ray cluster have {len(groups)} free CPUs?)") from None
            except self._ray.exceptions.RayActorError as e:
                raise ProtocolError(f"a Ray actor failed to start its agents: {e}") from e
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> list[str]:
        return list(self._order)

    def _check_open(self) -> None:
        if self.closed:
            raise ProtocolError("this Lab was closed: its Ray actors are gone (start a new Lab)")

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as e:  # the agent's own error, raised here
            raise e.as_instanceof_cause() from None
        except self._ray.exceptions.RayActorError as e:
            raise ProtocolError(f"a Ray actor running agents died: {e}") from e

    def turn(self, phase: str, round_: int | None, *, active: Sequence[str],
             timed_out: bool) -> tuple[Outcomes, list[LabEvent]]:
        """The actors take the turn one after another, in agent order, each first catching up with
        the board: the chain sees the transactions of the local runtime in the same order (the
        contract draws subgroups and committees from block hashes, so any reordering would change
        every later draw)."""
        self._check_open()
        outcomes: Outcomes = {}
        events: list[LabEvent] = []
        for k, host in enumerate(self._hosts):
            mine = [a for a in active if a in self._members[k]]
            if not mine:
                continue
            news = self.board.posts_since(self._sent[k])
            (result,) = self._get([host.turn.remote(phase, round_, mine, timed_out, news)])
            outcomes.update(result[0])
            events += result[1]
            for topic, sender, cid in result[2]:
                self.board.post(topic, sender=sender, cid=cid)
            self._sent[k] = self.board.version  # its own posts it has
        return outcomes, events

    def train(self, round_: int) -> tuple[int, list[LabEvent]]:
        """Each actor prepares its participants' jobs in turn (checks that may refuse the model on
        chain), then all train at once."""
        self._check_open()
        trained, events = 0, []
        for host in self._hosts:
            ((count, prepared),) = self._get([host.prepare_training.remote(round_)])
            trained, events = trained + count, events + prepared
        for done in self._get([h.train.remote(round_) for h in self._hosts]):
            events += done
        return trained, events

    def ask(self, method: str, *args: Any, addresses: Sequence[str]) -> dict[str, Any]:
        self._check_open()
        if unknown := [a for a in addresses if a not in self._order]:
            raise ProtocolError(f"no agent has the account(s) {', '.join(unknown)}")
        calls = []
        for k, host in enumerate(self._hosts):
            mine = [a for a in addresses if a in self._members[k]]
            if mine:
                calls.append(host.ask.remote(method, args, mine))
        merged: dict[str, Any] = {}
        for part in self._get(calls):
            merged.update(part)
        return {a: merged[a] for a in addresses}

    def on_actors(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """``fn(host, *args)`` in every actor (its :class:`AgentHost`), e.g. to instrument the
        actors' processes in a benchmark; the results in actor order."""
        return self._get([h.execute.remote(fn, args) for h in self._hosts])

    def close(self) -> None:
        self.closed = True
        for host in self._hosts:
            self._ray.kill(host)
        self._hosts = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False


Runtime = LocalRuntime | RayRuntime


def start_runtime(config: ExperimentConfig, *, agents: list[Agent], network: Any, chain: Chain,
                  store: ContentStore) -> Runtime:
    """The runtime ``config`` names, given the network's agents (moved to Ray actors for ``ray``:
    from then on the chain is read from the node's logs, since the agents send from elsewhere)."""
    if config.runtime == "local":
        return LocalRuntime(agents, board=network.board, spec=network.spec)
    chain.follow_logs()
    return RayRuntime(agents, board=network.board, spec=network.spec, workers=config.workers,
                      chain_url=chain.backend, store_url=store.url,  # type: ignore[attr-defined]
                      contracts={"task": network.task.address, "registry": network.din.registry.address,
                                 "token": network.din.token.address})


def shut_down(runtime: Runtime | None, services: Sequence[ServiceProcess], store: ContentStore | None = None) -> None:
    """Stop a runtime's actors, close the store's connection, then stop the servers started for it (by PID)."""
    if runtime is not None:
        runtime.close()
    if store is not None:
        store.close()
    for service in services:
        service.stop()
