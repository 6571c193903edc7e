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
  seeded run gives the same summary on both. The participants' local training, which sends
  nothing, runs in all actors at once, each training its own participants as one batched
  computation.

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

log = logging.getLogger(__name__)

Outcomes = dict[str, Wait | None]
Post = tuple[str, str, Any]  # topic, sender, CID


def train_participants(participants: Sequence[Agent], trainer: BatchedTrainer, round_: int) -> tuple[int, list[LabEvent]]:
    """Each participant hands its data and the model it verified to ``trainer`` and gets its own
    result back; returns how many trained and what they did."""
    jobs = [(p, job) for p in participants if isinstance(p, Participant) and (job := p.training_job(round_))]
    if jobs:
        for (p, _), params in zip(jobs, trainer.train([j for _, j in jobs], round_=round_), strict=True):
            p.trained(round_, params)
    events = [e for p in participants for e in p.take_events()]
    return len(jobs), events


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

    def agent(self, address: str) -> Agent:
        return self._agents[address]

    def turn(self, phase: str, round_: int | None, *, active: Sequence[str],
             timed_out: bool) -> tuple[Outcomes, list[LabEvent]]:
        outcomes: Outcomes = {}
        events: list[LabEvent] = []
        for address in active:
            agent = self._agents[address]
            outcomes[address] = agent.act(phase, round_, timed_out=timed_out)
            events += agent.take_events()
        return outcomes, events

    def train(self, round_: int) -> tuple[int, list[LabEvent]]:
        if self._trainer is None:
            self._trainer = BatchedTrainer(self._spec)
        return train_participants(list(self._agents.values()), self._trainer, round_)

    def ask(self, method: str, *args: Any, addresses: Sequence[str]) -> dict[str, Any]:
        """``agent.method(*args)`` of each agent in ``addresses``: the experimenter's question."""
        return {a: getattr(self._agents[a], method)(*args) for a in addresses}

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

    def turn(self, phase: str, round_: int | None, active: list[str], timed_out: bool,
             posts: list[Post]) -> tuple[Outcomes, list[tuple[str, list[LabEvent]]], list[Post]]:
        """The board's news since this actor's last turn, then each active agent's turn; returns
        the outcomes, the events and this actor's new posts."""
        self.chain.refresh()
        for topic, sender, cid in posts:
            self.board.post(topic, sender=sender, cid=cid)
        mark = self.board.version
        outcomes: Outcomes = {}
        events: list[tuple[str, list[LabEvent]]] = []
        for address in active:
            agent = self.agents[address]
            outcomes[address] = agent.act(phase, round_, timed_out=timed_out)
            events.append((address, agent.take_events()))
        return outcomes, events, self.board.posts_since(mark)

    def train(self, round_: int) -> tuple[int, list[LabEvent]]:
        self.chain.refresh()
        return train_participants(list(self.agents.values()), self.trainer, round_)

    def ask(self, method: str, args: tuple, addresses: list[str]) -> dict[str, Any]:
        self.chain.refresh()
        return {a: getattr(self.agents[a], method)(*args) for a in addresses}

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

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
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
        try:
            self._hosts = [host_class.remote(chain_url=chain_url, store_url=store_url, contracts=contracts,
                                             spec=spec, agents=g) for g in groups]
            self._get([h.__ray_ready__.remote() for h in self._hosts])
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> list[str]:
        return list(self._order)

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
        outcomes: Outcomes = {}
        events: list[LabEvent] = []
        for k, host in enumerate(self._hosts):
            mine = [a for a in active if a in self._members[k]]
            if not mine:
                continue
            news = self.board.posts_since(self._sent[k])
            (result,) = self._get([host.turn.remote(phase, round_, mine, timed_out, news)])
            outcomes.update(result[0])
            events += [e for _, agent_events in result[1] for e in agent_events]
            for topic, sender, cid in result[2]:
                self.board.post(topic, sender=sender, cid=cid)
            self._sent[k] = self.board.version  # its own posts it has
        return outcomes, events

    def train(self, round_: int) -> tuple[int, list[LabEvent]]:
        results = self._get([h.train.remote(round_) for h in self._hosts])
        return sum(n for n, _ in results), [e for _, events in results for e in events]

    def ask(self, method: str, *args: Any, addresses: Sequence[str]) -> dict[str, Any]:
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


def shut_down(runtime: Runtime | None, services: Sequence[ServiceProcess]) -> None:
    """Stop a runtime's actors, then the servers started for it (by PID)."""
    if runtime is not None:
        runtime.close()
    for service in services:
        service.stop()
