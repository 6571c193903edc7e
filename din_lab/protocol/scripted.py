"""A scripted DIN task lifecycle on a chain: every contract step of the paper's section 5, in
order, with stand-in content (``din-lab demo``; ``make demo`` runs the real thing, ``din-lab run``).

The updates, aggregates and test set here are short byte strings whose CIDs are real CIDv1
raw identifiers of those bytes, not trained models: a walk through the contracts alone (the Lab,
:mod:`din_lab.protocol.lab`, runs real training, secure aggregation and encrypted evaluation).
Everything on chain is real: deposits, stakes, committees drawn from the round seed, commit-reveal
votes, the BlockFlow median reduction, slashing and pull payments.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from din_lab.chain import Chain, connect
from din_lab.chain import assignment as assign
from din_lab.chain.din import (
    WAD,
    DinDeployment,
    Phase,
    TaskParams,
    cid_arg,
    create_task,
    deploy,
    held_envelope,
    mine_past_seed,
    new_salt,
    opt_in,
    result_commitment,
    scores_commitment,
    sign_update,
)
from din_lab.cid import Cid
from din_lab.errors import ConfigError

log = logging.getLogger(__name__)


def stand_in_cid(text: str) -> Cid:
    """The CIDv1 (raw) of ``text``'s bytes: what ``ipfs add --cid-version=1`` gives for them."""
    return Cid.of_raw_block(text.encode())


@dataclass(frozen=True)
class LifecycleReport:
    """Balances (in DIN tokens) before and after, and what happened."""

    task: str
    balances_before: dict[str, float]
    balances_after: dict[str, float]
    stakes_after: dict[str, float]
    scores: dict[str, float]
    slashed: tuple[str, ...]
    transactions: int
    gas_used: int
    rounds: int
    total_supply: float
    notes: tuple[str, ...] = field(default=())


def run_lifecycle(
    chain: Chain | None = None,
    *,
    participants: int = 6,
    evaluators: int = 4,
    rounds: int = 2,
    subgroup_size: int = 3,
    evaluators_per_subgroup: int = 3,
    lazy_evaluator: bool = True,
    relayed: bool = True,
) -> LifecycleReport:
    """Run one complete task; the last evaluator is lazy (commits, never reveals) when asked."""
    if participants < subgroup_size:
        raise ConfigError("need at least one full subgroup of participants")
    if evaluators < evaluators_per_subgroup:
        raise ConfigError("need at least evaluators_per_subgroup evaluators")
    needed = 3 + participants + evaluators
    chain = chain or connect("embedded", accounts=needed)
    if len(chain.accounts) < needed:
        raise ConfigError(f"the chain has {len(chain.accounts)} accounts, {needed} are needed")
    deployer, owner, fund = chain.accounts[0], chain.accounts[1], chain.accounts[2]
    parts = chain.accounts[3:3 + participants]
    evals = chain.accounts[3 + participants:3 + participants + evaluators]
    din = deploy(chain, deployer=deployer, public_goods_fund=fund.address, min_bond=100 * WAD)
    T = din.token.functions
    for acct, amount in [(owner, 10_000 * WAD)] + [(e, 1_000 * WAD) for e in evals]:
        chain.transact(T.transfer(acct.address, amount), sender=deployer)

    names = {owner.address: "owner", fund.address: "public-goods fund"}
    names.update({p.address: f"participant {i}" for i, p in enumerate(parts)})
    names.update({e.address: f"evaluator {i}" for i, e in enumerate(evals)})

    def balances() -> dict[str, float]:
        return {names[a]: chain.call(T.balanceOf(a)) / WAD for a in names}

    before = balances()
    # 1. setup: the owner creates the task with its deposit, evaluators opt in with a bond only this
    # task can slash, participants register
    votes = max(10, 2 * evaluators * (participants // subgroup_size) + 4)
    params = TaskParams(
        genesis_model=stand_in_cid("genesis model"), reward_deposit=1_000 * WAD, fee_budget=200 * WAD,
        evaluator_fee=5 * WAD, evaluator_bond=500 * WAD, slash_amount=100 * WAD, rounds=rounds,
        subgroup_size=subgroup_size, evaluators_per_subgroup=evaluators_per_subgroup, max_participants=participants,
        max_evaluators=evaluators, public_goods_bps=500,
        # windows in blocks: the embedded chain mines one block per transaction
        registration_window=participants + 2 * evaluators + 10, submission_window=max(10, participants + 4),
        commit_window=votes, reveal_window=votes, publish_window=10,
    )
    task = create_task(chain, din, params, owner=owner)
    F = task.functions
    for e in evals:
        opt_in(chain, task, evaluator=e)
    for i, p in enumerate(parts):
        chain.transact(F.register(hashlib.sha256(f"x25519 key {i}".encode()).digest()), sender=p)
    chain.transact(F.startTraining(), sender=owner)
    lazy = evals[-1] if lazy_evaluator else None

    held: dict[int, tuple[Cid, bytes, LocalAccount]] = {}
    for r in range(rounds):
        held = _training_round(chain, task, r, parts, evals, lazy=lazy, relayed=relayed, owner=owner)
    _scoring(chain, din, task, parts, evals, lazy=lazy, owner=owner)
    # 7. rewards settled: a backer of each sealed final-round result releases its key (bonds stay
    # locked until then), and the owner publishes the final model it can now rebuild
    for g, (sealed, key, backer) in held.items():
        chain.transact(F.releaseFinalModel(g, sealed.to_chain(), key), sender=backer)

    claimants = [owner, fund, *parts, *evals]
    for a in claimants:
        if chain.call(F.claimable(a.address)) or chain.call(F.rewardOf(a.address)):
            chain.transact(F.claim(), sender=a)
    for e in evals:
        if chain.call(F.bondOf(e.address)):
            chain.transact(F.withdrawBond(), sender=e)
    final = stand_in_cid(f"global model after round {rounds - 1}")
    chain.transact(F.publishGlobalModel(rounds - 1, final.to_chain()), sender=owner)

    slashed = tuple(names[e.args["evaluator"]] for e in chain.events.where("EvaluatorSlashed", address=task.address))
    scores = {names[e.args["participant"]]: e.args["score"] / WAD
              for e in chain.events.where("ParticipantScored", address=task.address)}
    stakes = {names[e.address]: chain.call(F.bondOf(e.address)) / WAD for e in evals}
    return LifecycleReport(
        task=task.address, balances_before=before, balances_after=balances(), stakes_after=stakes, scores=scores,
        slashed=slashed, transactions=len(chain.receipts), gas_used=sum(r.gas_used for r in chain.receipts),
        rounds=rounds, total_supply=chain.call(T.totalSupply()) / WAD,
        notes=("stand-in content: updates, aggregates and the test set are byte strings with real CIDs",),
    )


def _training_round(chain: Chain, task, r: int, parts: list[LocalAccount], evals: list[LocalAccount], *,
                    lazy: LocalAccount | None, relayed: bool, owner: LocalAccount
                    ) -> dict[int, tuple[Cid, bytes, LocalAccount]]:
    """One round; for the final round, each subgroup's sealed result, its key and a backer."""
    F = task.functions
    # 1b. the round is drawn from the hash of a block mined after it was scheduled (anyone may draw)
    mine_past_seed(chain, task)
    chain.transact(F.drawRound(), sender=owner)
    info = chain.call(F.roundInfo(r))
    groups = info[4]
    # 2-3. participants train (stand-in), upload and record their update CIDs
    updates = {p.address: stand_in_cid(f"round {r} update of {p.address}") for p in parts}
    if relayed:
        batch = [sign_update(participant=p, task=task, chain_id=chain.chain_id, round_=r, update=updates[p.address])
                 for p in parts]
        chain.transact(F.submitUpdatesRelayed(r, batch), sender=owner)
    else:
        for p in parts:
            chain.transact(F.submitUpdate(r, updates[p.address].to_chain(), cid_arg(None)), sender=p)
    chain.mine_to(info[3] + 1)
    # 4. each committee member aggregates its subgroup, commits, then reveals
    seed = info[0]
    by_address = {e.address: e for e in evals}
    params = chain.call(F.params())  # TaskParams tuple: [6] rounds, [7] subgroupSize
    votes = []
    held = {}
    for g in range(groups):
        members = assign.subgroup_members(g, seed=seed, participants=len(parts), subgroup_size=params[7])
        result = stand_in_cid(f"round {r} subgroup {g} sum of {members}")
        committee = chain.call(F.committee(r, g, 0))
        if r == chain.call(F.finalRound()):  # the final round's result is voted on sealed (an envelope)
            key = hashlib.sha256(f"key of round {r} subgroup {g} sum of {members}".encode()).digest()
            sealed = stand_in_cid(f"sealed round {r} subgroup {g} sum of {members}")
            result = Cid.of_raw_block(held_envelope(sealed, key))
            held[g] = (sealed, key, by_address[committee[0]])
        for addr in committee:
            ev = by_address[addr]
            salt = new_salt()
            chain.transact(F.commitResult(r, g, result_commitment(result, salt, ev.address)), sender=ev)
            votes.append((g, ev, result, salt))
    sub = chain.call(F.subgroupInfo(r, 0))
    chain.mine_to(sub[1] + 1)
    for g, ev, result, salt in votes:
        if ev is not lazy:
            chain.transact(F.revealResult(r, g, result.to_chain(), salt), sender=ev)
    chain.mine_to(sub[2] + 1)
    # 5. the contract accepts majority results; the silent are slashed
    for g in range(groups):
        chain.transact(F.finalizeSubgroup(r, g), sender=owner)
    # 6. the owner publishes the global model (the final one only after rewards)
    if r + 1 < params[6]:
        chain.transact(F.publishGlobalModel(r, stand_in_cid(f"global model after round {r}").to_chain()),
                       sender=owner)
    return held


def _scoring(chain: Chain, din: DinDeployment, task, parts: list[LocalAccount], evals: list[LocalAccount], *,
             lazy: LocalAccount | None, owner: LocalAccount) -> None:
    F = task.functions
    assert chain.call(F.phase()) == Phase.SCORING
    # 7. the owner publishes its (encrypted) test set and evaluation context
    chain.transact(F.publishEvaluationSet(stand_in_cid("encrypted test set").to_chain(),
                                          stand_in_cid("public CKKS context").to_chain()), sender=owner)
    final = chain.call(F.finalRound())
    groups = chain.call(F.roundInfo(final))[4]
    by_address = {e.address: e for e in evals}
    index = {p.address: i for i, p in enumerate(parts)}
    reveals = []
    for g in range(groups):
        members = chain.call(F.subgroupMembers(final, g))
        for k, addr in enumerate(chain.call(F.committee(final, g, 0))):
            ev = by_address[addr]
            if chain.call(F.bannedAt(addr)):
                continue  # evaluators slashed in this task have nothing more to say
            scores = [int((0.55 + 0.05 * (index[m] % 5) + 0.01 * k) * WAD) for m in members]
            salt = new_salt()
            chain.transact(F.commitScores(g, scores_commitment(scores, salt, ev.address)), sender=ev)
            reveals.append((g, ev, scores, salt))
    chain.mine_to(chain.call(F.scoreCommitDeadline()) + 1)
    revealed: dict[tuple[int, str], list[int]] = {}
    for g, ev, scores, salt in reveals:
        if ev is not lazy:
            chain.transact(F.revealScores(g, scores, salt), sender=ev)
            revealed[(g, ev.address)] = scores
    chain.mine_to(chain.call(F.scoreRevealDeadline()) + 1)
    # 8. anyone reduces the reports (BlockFlow median rule); rewards settle
    for g in range(groups):
        committee = chain.call(F.committee(final, g, 0))
        rows = [revealed.get((g, a), []) for a in committee]
        chain.transact(F.finalizeScores(g, rows), sender=owner)
