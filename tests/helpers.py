"""Test helpers: a deployed DIN network with named actors and steps that drive a task."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_utils import keccak

from din_lab.chain import Chain
from din_lab.chain import assignment as assign
from din_lab.chain.din import (
    WAD,
    DinDeployment,
    EconomySettings,
    TaskParams,
    cid_arg,
    create_task,
    deploy,
    held_envelope,
    mine_past_seed,
    opt_in,
    result_commitment,
    scores_commitment,
)
from din_lab.cid import Cid

BACKENDS = os.environ.get("DIN_LAB_TEST_BACKENDS", "embedded,anvil").split(",")
"""The chain backends the contract tests run on (``DIN_LAB_TEST_BACKENDS``, default both)."""

N_PARTICIPANTS = 20
N_EVALUATORS = 10
N_STAKED = 5
MIN_BOND = 100 * WAD
STAKE = 500 * WAD  # each opted-in evaluator's bond in the default task
MIN_WINDOW = 10


def stop_process(proc) -> None:
    """Stop a server a test started, by its PID: terminate, then kill after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cid(text: str) -> Cid:
    return Cid.of_raw_block(text.encode())


def salt(i: Any) -> bytes:
    return hashlib.sha256(f"salt {i}".encode()).digest()


def deploy_network(chain: Chain) -> DinDeployment:
    """The shared contracts; the public-goods fund is account 2. Evaluators hold tokens and bond
    them to each task they opt in to (``Net.opt_in``)."""
    a = chain.accounts
    din = deploy(chain, deployer=a[0], public_goods_fund=a[2].address, min_bond=MIN_BOND, min_window=MIN_WINDOW)
    T = din.token.functions
    chain.transact(T.transfer(a[1].address, 100_000 * WAD), sender=a[0])
    for e in a[23:23 + N_EVALUATORS]:
        chain.transact(T.transfer(e.address, 1_000 * WAD), sender=a[0])
    return din


ECONOMY = EconomySettings(public_goods_bps=1_000, min_bond=MIN_BOND, timelock_delay=120, voting_blocks=20,
                          quorum_votes=10, qf_round_blocks=100, licence_supply=8)


def deploy_economy_network(chain: Chain) -> DinDeployment:
    """The shared contracts with the economy (ECONOMY): licences, a QF public-goods fund, governed
    parameters, voice credits and DPPs. Tokens as in deploy_network; every actor but the last three
    strangers is verified by the identity registry (an Allowlist the deployer curates)."""
    a = chain.accounts
    din = deploy(chain, deployer=a[0], economy=ECONOMY, min_bond=MIN_BOND, min_window=MIN_WINDOW)
    T = din.token.functions
    chain.transact(T.transfer(a[1].address, 100_000 * WAD), sender=a[0])
    for e in a[3:23] + a[33:40]:
        chain.transact(T.transfer(e.address, 1_000 * WAD), sender=a[0])
    for e in a[23:23 + N_EVALUATORS]:
        chain.transact(T.transfer(e.address, 1_000 * WAD), sender=a[0])
    assert din.economy is not None
    for acct in a[1:37]:
        chain.transact(din.economy.identity.functions.setVerified(acct.address, True), sender=a[0])
    return din


@dataclass
class Net:
    chain: Chain
    din: DinDeployment
    backend: str
    params: TaskParams | None = None
    revealed_scores: dict = field(default_factory=dict)

    # actors
    @property
    def deployer(self):
        return self.chain.accounts[0]

    @property
    def owner(self):
        return self.chain.accounts[1]

    @property
    def fund(self):
        return self.chain.accounts[2]

    @property
    def participants(self):
        return self.chain.accounts[3:3 + N_PARTICIPANTS]

    @property
    def evaluators(self):
        return self.chain.accounts[23:23 + N_EVALUATORS]

    @property
    def staked(self):
        return self.evaluators[:N_STAKED]

    @property
    def strangers(self):
        return self.chain.accounts[33:40]

    def by_address(self, address: str):
        for a in self.chain.accounts:
            if a.address == address:
                return a
        raise KeyError(address)

    # plumbing
    def tx(self, fn, sender, **kw):
        return self.chain.transact(fn, sender=sender, **kw)

    def call(self, fn):
        return self.chain.call(fn)

    def balance(self, address: str) -> int:
        return self.call(self.din.token.functions.balanceOf(address))

    # task steps
    def default_params(self, **overrides) -> TaskParams:
        p = TaskParams(
            genesis_model=cid("genesis"), reward_deposit=1_000 * WAD, fee_budget=100 * WAD, evaluator_fee=2 * WAD,
            evaluator_bond=STAKE, slash_amount=50 * WAD, rounds=2, max_participants=N_PARTICIPANTS, subgroup_size=3, evaluators_per_subgroup=3,
            public_goods_bps=1_000, registration_window=200, submission_window=30, commit_window=30,
            reveal_window=30, publish_window=30,
        )
        if self.din.economy is not None:  # a governed network's tasks admit verified participants
            p = replace(p, identity_registry=self.din.economy.identity.address)
        return replace(p, **overrides)

    def make_task(self, **overrides):
        self.params = self.default_params(**overrides)
        return create_task(self.chain, self.din, self.params, owner=self.owner)

    def register(self, task, participants=None):
        for p in participants if participants is not None else self.participants[:6]:
            self.tx(task.functions.register(hashlib.sha256(f"pk {p.address}".encode()).digest()), p)

    def opt_in(self, task, evaluators=None):
        for e in evaluators if evaluators is not None else self.staked:
            opt_in(self.chain, task, evaluator=e)

    def draw(self, task):
        """Mine past the pending draw's seed block and draw the round (anyone may)."""
        mine_past_seed(self.chain, task)
        return self.tx(task.functions.drawRound(), self.stranger)

    def started_task(self, n_participants: int = 6, evaluators=None, **overrides):
        task = self.make_task(**overrides)
        self.register(task, self.participants[:n_participants])
        self.opt_in(task, evaluators)
        self.tx(task.functions.startTraining(), self.owner)
        self.draw(task)
        return task

    def round_info(self, task, r):
        return self.call(task.functions.roundInfo(r))

    def submit_all(self, task, r, participants=None):
        for p in participants if participants is not None else self.registered(task):
            self.tx(task.functions.submitUpdate(r, cid(f"u{r}{p.address}").to_chain(), cid_arg(None)), p)

    def registered(self, task):
        n = self.call(task.functions.participantCount())
        return [self.by_address(self.call(task.functions.participantAt(i))) for i in range(n)]

    def committee(self, task, r, g, cohort=0):
        return [self.by_address(a) for a in self.call(task.functions.committee(r, g, cohort))]

    def to_commit(self, task, r, g=0):
        self.chain.mine_to(self.call(task.functions.subgroupInfo(r, g))[0] + 1)

    def to_reveal(self, task, r, g=0):
        self.chain.mine_to(self.call(task.functions.subgroupInfo(r, g))[1] + 1)

    def to_finalize(self, task, r, g=0):
        self.chain.mine_to(self.call(task.functions.subgroupInfo(r, g))[2] + 1)

    def vote_round(self, task, r, *, silent=(), wrong=(), results=None, finalize=True):
        """Every committee member commits and reveals its subgroup's result; ``silent``
        evaluators never reveal, ``wrong`` ones reveal another result."""
        groups = self.round_info(task, r)[4]
        if results is None and r == self.call(task.functions.finalRound()):  # held: envelopes (release_all)
            self.held = {g: (cid(f"sealed r{r}g{g}"), keccak(f"key r{r} g{g}".encode())) for g in range(groups)}
            results = {g: Cid.of_raw_block(held_envelope(*self.held[g])) for g in range(groups)}
        results = results or {g: cid(f"r{r}g{g}") for g in range(groups)}
        votes = []
        self.to_commit(task, r)
        for g in range(groups):
            for ev in self.committee(task, r, g):
                res = cid(f"wrong {ev.address}") if ev.address in wrong else results[g]
                s = salt((r, g, ev.address))
                self.tx(task.functions.commitResult(r, g, result_commitment(res, s, ev.address)), ev)
                votes.append((g, ev, res, s))
        self.to_reveal(task, r)
        for g, ev, res, s in votes:
            if ev.address not in silent:
                self.tx(task.functions.revealResult(r, g, res.to_chain(), s), ev)
        if finalize:
            self.to_finalize(task, r)
            for g in range(groups):
                self.tx(task.functions.finalizeSubgroup(r, g), self.stranger)
        return results

    @property
    def stranger(self):
        return self.strangers[0]

    def publish(self, task, r, *, draw=True):
        receipt = self.tx(task.functions.publishGlobalModel(r, cid(f"global {r}").to_chain()), self.owner)
        if draw:
            self.draw(task)
        return receipt

    def train_to_scoring(self, task):
        rounds = self.call(task.functions.params())[6]
        for r in range(rounds):
            self.submit_all(task, r)
            self.vote_round(task, r)
            if r + 1 < rounds:
                self.publish(task, r)

    def publish_evaluation_set(self, task):
        return self.tx(task.functions.publishEvaluationSet(cid("test set").to_chain(), cid("context").to_chain()),
                       self.owner)

    def score_all(self, task, *, score_fn=None, silent=(), finalize=True):
        """Each final-round committee member commits and reveals scores for its subgroup."""
        final = self.call(task.functions.finalRound())
        groups = self.round_info(task, final)[4]
        score_fn = score_fn or (lambda ev, member, q: (50 + 5 * q) * WAD // 100)
        reveals = []
        for g in range(groups):
            members = self.call(task.functions.subgroupMembers(final, g))
            for ev in self.committee(task, final, g):
                scores = [score_fn(ev, m, q) for q, m in enumerate(members)]
                s = salt(("score", g, ev.address))
                self.tx(task.functions.commitScores(g, scores_commitment(scores, s, ev.address)), ev)
                reveals.append((g, ev, scores, s))
        self.chain.mine_to(self.call(task.functions.scoreCommitDeadline()) + 1)
        revealed = {}
        for g, ev, scores, s in reveals:
            if ev.address not in silent:
                self.tx(task.functions.revealScores(g, scores, s), ev)
                revealed[(g, ev.address)] = scores
        self.revealed_scores = revealed
        if finalize:
            self.chain.mine_to(self.call(task.functions.scoreRevealDeadline()) + 1)
            for g in range(groups):
                self.finalize_scores(task, g)
        return revealed

    def reports(self, task, g):
        final = self.call(task.functions.finalRound())
        return [self.revealed_scores.get((g, a), []) for a in self.call(task.functions.committee(final, g, 0))]

    def finalize_scores(self, task, g):
        return self.tx(task.functions.finalizeScores(g, self.reports(task, g)), self.stranger)

    def run_to_finished(self, task, *, release=True, **score_kw):
        """Train, score and settle; then (``release``) a backer of each held final-round result
        releases its key, which frees the bonds."""
        self.train_to_scoring(task)
        self.publish_evaluation_set(task)
        self.score_all(task, **score_kw)
        if release:
            self.release_all(task)

    def release_all(self, task):
        final = self.call(task.functions.finalRound())
        for g, (sealed, key) in getattr(self, "held", {}).items():
            if self.call(task.functions.subgroupInfo(final, g))[9] and not any(self.call(task.functions.finalKeys(g))):
                self.tx(task.functions.releaseFinalModel(g, sealed.to_chain(), key), self.committee(task, final, g)[0])

    def members(self, task, r, g):
        info = self.round_info(task, r)
        n = self.call(task.functions.participantCount())
        return assign.subgroup_members(g, seed=info[0], participants=n, subgroup_size=self.params.subgroup_size)


def finished(config):
    """A Lab for ``config`` run to the end, and its summary."""
    from din_lab.experiment import tabulate
    from din_lab.protocol.lab import Lab

    lab = Lab.create(config)
    lab.run()
    return lab, tabulate(lab, seconds=1.0).summary


def expect_revert(net, fn, sender, error, probe=None, **args):
    """``fn`` from ``sender`` raises ``error`` with ``args``; no block is mined and ``probe()`` is unchanged."""
    block = net.chain.block_number
    before = probe() if probe else None
    with pytest.raises(error) as info:
        net.tx(fn, sender)
    for k, v in args.items():
        assert info.value.args_by_name[k] == v, (k, info.value.args_by_name)
    assert net.chain.block_number == block
    if probe:
        assert probe() == before
    return info.value


def in_fresh_thread(fn) -> None:
    """Run ``fn`` on a new thread and re-raise what it raised. CPython 3.11 grows the frame
    stack in mmap'ed chunks: at pytest's stack depth py-evm's hot loop straddles a chunk
    boundary and every call maps and unmaps one (measured: twice the run time, most of it
    system time). A new thread starts from an empty frame stack."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # handed to the test's thread below
            raised.append(e)

    worker = threading.Thread(target=target, name="din-invariants")
    worker.start()
    worker.join()
    if raised:
        raise raised[0]
