"""The economy around a finished task (paper sections 6 and 8; issue 18): quadratic-funding rounds of
the public-goods fund and DIN Proposal Protocol votes, played by the task's own agents from what
they did in it (their voice credits) and their own tokens.

The Lab is the clock here as in a task: it creates the public-goods projects' agents, mines blocks
and lets each agent act; every transaction is the agent's own. Results are frozen dataclasses; the
QF rule itself is :func:`quadratic_match` (the contract's, in exact integers), so a learner can ask
what a round would have paid under other contributions (a Sybil split without the identity registry).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from din_lab.chain import lab_accounts
from din_lab.chain.din import WAD, Phase
from din_lab.errors import ConfigError, ContractRevert, ProtocolError
from din_lab.roles import economy as act
from din_lab.roles.agent import Agent
from din_lab.roles.network import Handle, LabEvent

if TYPE_CHECKING:
    from din_lab.protocol.lab import Lab

log = logging.getLogger(__name__)

__all__ = ["DPPVote", "ProjectResult", "QFRound", "dpp_vote", "fund_flows", "licence_table", "quadratic_match",
           "qf_round"]


def quadratic_match(contributions: Mapping[Any, Mapping[Any, int]], *, pool: int) -> dict[Any, int]:
    """The fund's rule in exact integers (wei): project p's weight is (sum of isqrt(c))^2 - sum of c
    over its contributors' totals c; every project is matched its weight when the pool covers the
    total weight, else the pool is split by cumulative floors in the order of ``contributions``,
    adding up to the pool exactly. Given the projects in the order the contract credits them
    (``roundInfo(r)`` projects: the order of their first contributions), PublicGoodsFund.finalizeRound
    pays the same, to the wei (tests/test_economy.py, tests/test_economy_lab.py)."""
    weights = {}
    for p, by in contributions.items():
        s = sum(math.isqrt(int(c)) for c in by.values())
        weights[p] = max(0, s * s - sum(int(c) for c in by.values()))
    total = sum(weights.values())
    if total <= pool:
        return weights
    out, cumulative, paid = {}, 0, 0
    for p, w in weights.items():
        cumulative += w
        upto = pool * cumulative // total
        out[p], paid = upto - paid, upto
    return out


def _economy(lab: Lab) -> Any:
    if lab.din.economy is None:
        raise ConfigError("this lab's network has no economy: create it with ExperimentConfig(economy=True)")
    return lab.din.economy


def _agents(lab: Lab) -> list[Agent]:
    if lab.config.runtime != "local":
        raise ConfigError("QF rounds and DPP votes are played by the task's agents in this process: "
                          "runtime='local' (the default)")
    return [lab.owner, *lab.participants, *lab.evaluators]


def _collect(lab: Lab, agents: Sequence[Agent]) -> None:
    for a in agents:
        lab.events.extend(a.take_events())


def licence_table(lab: Lab) -> list[dict[str, Any]]:
    """Every licence: holder (by name), the price a buyer pays now, deposit left, foreclosable, tax
    paid over its life (DIN)."""
    economy = _economy(lab)
    if economy.licence is None:
        return []
    names = dict(lab.names)
    return [{"licence": v.licence, "holder": names.get(v.holder, v.holder), "price": v.price,
             "deposit": v.deposit, "foreclosable": v.foreclosable, "tax_paid": v.tax_paid}
            for v in act.licences(lab.chain, licence=economy.licence)]


def fund_flows(lab: Lab) -> dict[str, float]:
    """Where the public-goods fund's tokens came from and went (DIN), from the token's Transfer
    events: tasks' dues (public-goods share and slashed stake), licence sales and tax, contributions
    to QF rounds, donations; paid to projects; and the matching pool now."""
    economy = _economy(lab)
    fund = economy.fund.address
    licence = economy.licence.address if economy.licence is not None else None
    tasks = {e.args["task"] for e in lab.chain.events.where("TaskCreated", address=lab.din.factory.address)}
    flows = {"tasks' dues": 0, "licence sales and tax": 0, "QF contributions": 0, "donations": 0,
             "paid to projects": 0}
    contributions = {(e.tx_hash) for e in lab.chain.events.where("Contributed", address=fund)}
    for e in lab.chain.events.where("Transfer", address=lab.din.token.address):
        src, dst, value = e.args["from"], e.args["to"], e.args["value"]
        if dst == fund:
            if src in tasks:
                flows["tasks' dues"] += value
            elif src == licence:
                flows["licence sales and tax"] += value
            elif e.tx_hash in contributions:
                flows["QF contributions"] += value
            else:
                flows["donations"] += value
        elif src == fund:
            flows["paid to projects"] += value
    out = {k: v / WAD for k, v in flows.items()}
    out["matching pool now"] = lab.chain.call(economy.fund.functions.matchingPool()) / WAD
    return out


def _new_agents(lab: Lab, names: Sequence[str], *, domain: str, seed: int, verify: bool) -> list[act.ProjectMaintainer]:
    """New people with fresh accounts (keys from ``seed`` in their own ``domain``, so they are never
    the lab's own), gas money from the lab's funder, verified by the identity provider (the network's
    deployer) when ``verify``."""
    economy = _economy(lab)
    funder = lab.chain.accounts[0]
    keys = lab_accounts(len(names), seed=seed, domain=domain)
    taken = set(lab.names)
    agents = []
    for name, key in zip(names, keys, strict=True):
        if key.address in taken:
            raise ProtocolError(f"account {key.address} for {name} is already in this lab")
        if lab.chain.eth_balance(key.address) < 10 * 10**18:  # gas money (a transaction reserves gas x fee cap)
            lab.chain.send_eth(to=key.address, amount=100 * 10**18, sender=funder)
        if verify:
            lab.chain.transact(economy.identity.functions.setVerified(key.address, True), sender=funder)
        agents.append(act.ProjectMaintainer(name=name, handle=Handle(chain=lab.chain, store=lab.store, account=key,
                                                                     token=lab.din.token, registry=lab.din.registry)))
        lab.names[key.address] = name
    return agents


@dataclass(frozen=True, kw_only=True)
class ProjectResult:
    project: int
    name: str
    contributors: int
    contributions: float  # DIN
    weight: float  # (sum of sqrt c)^2 - sum c, in DIN
    match: float
    paid: float  # contributions + match, claimed by the project


@dataclass(frozen=True, kw_only=True)
class QFRound:
    """One quadratic-funding round: the pool at finalization, each project's result, and what each
    agent gave (name -> project -> DIN)."""

    round: int
    pool: float
    matched: float
    projects: tuple[ProjectResult, ...]
    order: tuple[int, ...] = ()  # project ids in the order the contract credited them (first contributions)
    gifts: dict[str, dict[int, float]] = field(default_factory=dict)
    refused: tuple[str, ...] = ()  # contributors the fund refused (not verified)


def qf_round(lab: Lab, *, projects: Sequence[str] = ("IPFS pinning", "client library", "docs"),
             budget: float = 20.0, seed: int = 0, gifts: Mapping[str, Mapping[int, float]] | None = None,
             sybil_split: int = 0) -> QFRound:
    """Run one quadratic-funding round over a finished task's agents. Each project gets a maintainer
    (a new account, verified) who registers it. ``gifts`` (agent name -> project index -> DIN) says
    who gives what; by default each agent gives ``budget`` DIN spread over the projects by seeded
    preferences. ``sybil_split`` k > 1: the first participant also gives 1 DIN through each of k - 1
    extra accounts it controls (not verified by the identity registry, which refuses them). Then the
    fund keeper finalizes the round and every maintainer claims its payout. Everything is checked
    before the first transaction; a round that fails part-way is still finalized."""
    economy = _economy(lab)
    people = {a.name: a for a in _agents(lab)}
    if lab.chain.call(lab.task.functions.phase()) not in Phase.ENDED:
        raise ProtocolError("the task has not ended: run it first (lab.run())")
    if not projects or len(set(projects)) != len(projects) or not all(isinstance(p, str) and p for p in projects):
        raise ConfigError(f"projects must be distinct non-empty names, got {list(projects)!r}")
    if not (isinstance(sybil_split, int) and 0 <= sybil_split <= 20):
        raise ConfigError(f"sybil_split must be 0 or a number of accounts up to 20, got {sybil_split!r}")
    if not (isinstance(budget, int | float) and 0 <= budget < 1e12):
        raise ConfigError(f"budget must be an amount of DIN >= 0, got {budget!r}")
    fund = economy.fund
    F = fund.functions
    rng = np.random.default_rng([seed, 0xF0])
    if gifts is None:
        gifts = {}
        for name in people:
            weights = rng.dirichlet(np.ones(len(projects)) * 0.7)
            gifts[name] = {i: round(float(budget * w), 6) for i, w in enumerate(weights) if budget * w >= 0.01}
    unknown = set(gifts) - set(people)
    if unknown:
        raise ConfigError(f"gifts from agents this lab does not have: {', '.join(sorted(unknown))}")
    token = lab.din.token.functions
    for name, by in gifts.items():
        bad = [i for i, amount in by.items() if not (isinstance(i, int) and 0 <= i < len(projects))
               or not (isinstance(amount, int | float) and amount >= 0)]
        if bad:
            raise ConfigError(f"gifts of {name}: project indices must be in 0..{len(projects) - 1} and amounts >= 0")
        need = sum(by.values()) + (sybil_split - 1 if sybil_split > 1 and name == lab.participants[0].name else 0)
        have = lab.chain.call(token.balanceOf(people[name].address)) / WAD
        if need > have:
            raise ConfigError(f"gifts of {name}: {need:g} DIN but it holds {have:g}")
    transactions = 2 * sum(1 for by in gifts.values() for a in by.values() if a > 0) + 3 * max(0, sybil_split - 1)
    round_blocks = int(lab.chain.call(F.roundBlocks()))
    if transactions + 2 > round_blocks:
        raise ConfigError(f"these gifts take {transactions} transactions (one block each here) but a round lasts "
                          f"{round_blocks} blocks: fewer projects or givers")
    round_ = int(lab.chain.call(F.roundCount()))
    maintainers = _new_agents(lab, [f"project: {p}" for p in projects], domain="din-lab/qf-maintainer",
                              seed=1_000 * seed + round_, verify=True)
    ids = [m.register_project(fund, title=title) for m, title in zip(maintainers, projects, strict=True)]
    keeper = lab.fund
    act.start_round(keeper, fund)
    refused: list[str] = []
    sybils: list[act.ProjectMaintainer] = []
    try:
        for name, by in gifts.items():
            for i, amount in by.items():
                if amount > 0:
                    act.contribute(people[name], fund, project=ids[i], amount=amount)
        if sybil_split > 1:
            sybils = _new_agents(lab, [f"sybil {j + 1}" for j in range(sybil_split - 1)], domain="din-lab/qf-sybil",
                                 seed=1_000 * seed + round_, verify=False)
            donor = lab.participants[0]
            for s in sybils:
                act.transfer(donor, to=s.address, amount=1.0, why=f"fund its Sybil account {s.name}")
                try:
                    act.contribute(s, fund, project=ids[0], amount=1.0)
                except ContractRevert as e:  # the fund refuses unverified accounts: NotVerified
                    refused.append(f"{s.name}: {type(e).__name__}")
    finally:  # whatever happened, the round ends and is finalized: the fund is never left with it open
        lab.chain.mine_to(int(lab.chain.call(F.roundInfo(round_))[0]) + 1)
        act.finalize_round(keeper, fund)
        _collect(lab, [*people.values(), keeper, *maintainers, *sybils])
    info = lab.chain.call(F.roundInfo(round_))
    results = []
    for agent, title, p in zip(maintainers, projects, ids, strict=True):
        total, _, weight = lab.chain.call(F.tally(round_, p))
        match = lab.chain.call(F.matchOf(round_, p))
        paid = agent.claim_payout(fund)
        contributors = sum(1 for by in gifts.values() if by.get(ids.index(p), 0) > 0)
        results.append(ProjectResult(project=p, name=title, contributors=contributors, contributions=total / WAD,
                                     weight=weight / WAD, match=match / WAD, paid=paid))
    _collect(lab, maintainers)
    return QFRound(round=round_, pool=info[3] / WAD, matched=info[4] / WAD, projects=tuple(results),
                   order=tuple(int(p) for p in info[5]), gifts={k: dict(v) for k, v in gifts.items()},
                   refused=tuple(refused))


@dataclass(frozen=True, kw_only=True)
class DPPVote:
    """One economic DPP from filing to its end: the agents' credits (name -> by kind), their ballots
    (name -> (for?, votes, credits spent)), the tally, the final state, and the parameter before and
    after."""

    proposal: int
    title: str
    parameter: str
    value: int
    credits: dict[str, dict[str, int]]
    ballots: dict[str, tuple[bool, int, int]]
    votes_for: int
    votes_against: int
    state: str
    before: int
    after: int


def dpp_vote(lab: Lab, *, parameter: str = "publicGoodsBps", value: int = 1_000,
             title: str | None = None, support: Mapping[str, bool] | float = 0.7,
             seed: int = 0, proposer: str = "owner", execute: bool = True) -> DPPVote:
    """An economic DPP voted by a finished task's agents. Every agent first records its voice
    credits from the task (owner, participant, evaluator activity); ``proposer`` files the DPP (text
    on IPFS); each agent votes with all its credits at the snapshot, for or against per ``support``
    (name -> bool, or the chance each votes for, drawn with ``seed``). The Lab mines past the vote;
    a passed DPP is queued on the timelock and, with ``execute``, executed once the delay passed."""
    economy = _economy(lab)
    title = title or f"Set {parameter} to {value}"
    P, C = economy.proposals.functions, economy.credits
    people = {a.name: a for a in _agents(lab)}
    if proposer not in people:
        raise ConfigError(f"no agent named {proposer!r}")
    if isinstance(support, Mapping):
        unknown = set(support) - set(people)
        if unknown:
            raise ConfigError(f"support from agents this lab does not have: {', '.join(sorted(unknown))}")
    elif isinstance(support, bool) or not (isinstance(support, int | float) and 0.0 <= support <= 1.0):
        raise ConfigError(f"support must be a chance in [0, 1] or a mapping of agent names to sides, got {support!r}")
    voting = int(lab.chain.call(P.votingBlocks()))
    if len(people) + 1 > voting:
        raise ConfigError(f"{len(people)} voters take {len(people)} blocks here but a vote lasts {voting} blocks")
    key = act.parameter_key(parameter)
    target = economy.parameters if lab.chain.call(economy.parameters.functions.governs(key)) else economy.licence
    if target is not None and not lab.chain.call(target.functions.governs(key)):
        target = None
    if target is None:
        raise ConfigError(f"{parameter!r} is not a governed parameter of this network")
    before = int(lab.chain.call(target.functions.valueOf(act.parameter_key(parameter))))
    task = lab.task.address
    credits: dict[str, dict[str, int]] = {}
    for name, agent in people.items():
        act.claim_credits(agent, C, task=task)
        credits[name] = {kind: int(lab.chain.call(C.functions.creditsByKind(agent.address, k)))
                         for k, kind in enumerate(("owner", "participant", "evaluator"))}
    lab.chain.mine(1)  # the credits are in a block before the proposal's snapshot
    pid = act.propose(people[proposer], economy.proposals, title=title,
                      text=f"{title}\n\nSet {parameter} from {before} to {value}.".encode(),
                      parameter=parameter, value=value)
    rng = np.random.default_rng([seed, 0xD9])
    ballots: dict[str, tuple[bool, int, int]] = {}
    for name, agent in people.items():
        side = support[name] if isinstance(support, Mapping) and name in support else \
            bool(rng.random() < support) if not isinstance(support, Mapping) else True
        votes = act.vote(agent, economy.proposals, C, proposal=pid, support=side)
        if votes:
            ballots[name] = (side, votes, int(lab.chain.call(P.creditsSpent(pid, agent.address))))
    proposal = lab.chain.call(P.proposal(pid))
    lab.chain.mine_to(int(proposal[6]) + 1)
    state = act.STATES[lab.chain.call(P.state(pid))]
    if state == "Succeeded":  # the fund keeper queues and executes it (anyone may)
        act.queue_dpp(lab.fund, economy.proposals, proposal=pid)
        if execute:
            ready = lab.chain.call(economy.timelock.functions.getTimestamp(lab.chain.call(P.operationOf(pid))))
            lab.chain.mine_until_time(int(ready))
            act.execute_dpp(lab.fund, economy.proposals, proposal=pid)
        state = act.STATES[lab.chain.call(P.state(pid))]
    proposal = lab.chain.call(P.proposal(pid))
    after = int(lab.chain.call(target.functions.valueOf(act.parameter_key(parameter))))
    _collect(lab, [*people.values(), lab.fund])
    lab.events.append(LabEvent(phase="economy", round=None, actor="lab", action=f"DPP {pid} {state}",
                               detail=f"{parameter}: {before} -> {after}"))
    return DPPVote(proposal=pid, title=title, parameter=parameter, value=value, credits=credits, ballots=ballots,
                   votes_for=int(proposal[8]), votes_against=int(proposal[9]), state=state, before=before,
                   after=after)
