"""Every public contract function, its success path and each revert path, on every backend.

Each bad input must raise the Python exception named after its Solidity custom error and leave
state unchanged (no transaction is mined: the chain pre-flights every call).
"""

from __future__ import annotations

import pytest

from din_lab.chain import reverts
from din_lab.chain.din import WAD, Phase, SubgroupStatus, cid_arg, result_commitment, scores_commitment, sign_update
from din_lab.cid import Cid
from tests.helpers import STAKE, cid, expect_revert, salt

# ------------------------------------------------------------------ token


def test_token_fixed_supply_and_transfer_errors(net):
    T = net.din.token.functions
    assert net.call(T.totalSupply()) == 10**9 * WAD
    assert net.call(T.symbol()) == "DIN"
    expect_revert(net, T.transfer(net.owner.address, 1), net.stranger, reverts.ERC20InsufficientBalance)


# ------------------------------------------------------------------ registry


def test_opt_in_bond_opt_out_and_withdraw(net):
    task = net.make_task()
    F = net.din.token.functions
    ev = net.evaluators[6]
    expect_revert(net, task.functions.optIn(), ev, reverts.ERC20InsufficientAllowance)
    expect_revert(net, task.functions.optOut(), ev, reverts.NotOptedIn)
    net.tx(F.approve(task.address, 2 * STAKE), ev)
    balance = net.balance(ev.address)
    receipt = net.tx(task.functions.optIn(), ev)
    assert receipt.event("EvaluatorOptedIn").args["bond"] == STAKE
    assert net.balance(ev.address) == balance - STAKE
    assert net.call(task.functions.bondOf(ev.address)) == STAKE
    assert net.call(task.functions.evaluators()) == [ev.address]
    expect_revert(net, task.functions.optIn(), ev, reverts.AlreadyOptedIn)
    expect_revert(net, task.functions.withdrawBond(), ev, reverts.WrongPhase)  # locked until the task ends
    net.tx(task.functions.optOut(), ev)  # before training: leaves with everything
    assert net.balance(ev.address) == balance
    assert net.call(task.functions.evaluatorCount()) == 0
    assert net.call(task.functions.liabilities()) == net.balance(task.address)


def test_bond_is_locked_until_the_task_ends(net):
    task = net.started_task()
    ev = net.staked[0]
    expect_revert(net, task.functions.optOut(), ev, reverts.WrongPhase)
    expect_revert(net, task.functions.withdrawBond(), ev, reverts.WrongPhase)
    net.run_to_finished(task)
    balance = net.balance(ev.address)
    bond = net.call(task.functions.bondOf(ev.address))
    net.tx(task.functions.withdrawBond(), ev)
    assert net.balance(ev.address) == balance + bond
    expect_revert(net, task.functions.withdrawBond(), ev, reverts.NothingToClaim)


def test_opt_in_cap(net):
    task = net.make_task(max_evaluators=3)
    net.opt_in(task, net.staked[:3])
    net.tx(net.din.token.functions.approve(task.address, STAKE), net.staked[3])
    expect_revert(net, task.functions.optIn(), net.staked[3], reverts.EvaluatorLimit, limit=3)


def test_evaluator_publishes_its_x25519_key(net):
    R = net.din.registry.functions
    ev = net.staked[0]
    assert net.call(R.publicKeyOf(ev.address)) == b"\x00" * 32
    expect_revert(net, R.setPublicKey(b"\x00" * 32), ev, reverts.InvalidPublicKey)
    receipt = net.tx(R.setPublicKey(b"\x07" * 32), ev)
    assert receipt.event("PublicKeySet").args["publicKey"] == b"\x07" * 32
    assert net.call(R.publicKeyOf(ev.address)) == b"\x07" * 32
    net.tx(R.setPublicKey(b"\x08" * 32), ev)  # rotation
    assert net.call(R.publicKeyOf(ev.address)) == b"\x08" * 32


def test_slashed_evaluator_is_banned_in_this_task_only(net):
    task = net.started_task()
    lazy = net.committee(task, 0, 0)[0]
    net.submit_all(task, 0)
    net.vote_round(task, 0, silent={lazy.address})
    slashed = sum(e.args["amount"] for e in net.chain.events.where("EvaluatorSlashed", evaluator=lazy.address))
    assert slashed == net.params.slash_amount
    assert net.call(task.functions.bannedAt(lazy.address)) > 0
    assert net.call(task.functions.bondOf(lazy.address)) == STAKE - slashed
    assert net.call(task.functions.claimable(net.fund.address)) == slashed
    assert net.call(task.functions.activeEvaluators()) == len(net.staked) - 1


# ------------------------------------------------------------------ factory and initialize


def test_create_task_pulls_the_deposit(net):
    before = net.balance(net.owner.address)
    task = net.make_task()
    p = net.params
    assert net.balance(task.address) == p.reward_deposit + p.fee_budget
    assert net.balance(net.owner.address) == before - p.reward_deposit - p.fee_budget
    assert net.call(task.functions.owner()) == net.owner.address
    assert net.call(task.functions.phase()) == Phase.REGISTRATION
    assert net.call(net.din.factory.functions.taskCount()) == 1
    assert net.call(task.functions.liabilities()) == p.reward_deposit + p.fee_budget


def test_deposit_above_allowance_or_balance(net):
    F = net.din.factory.functions
    p = net.default_params()
    T = net.din.token.functions
    net.tx(T.approve(net.din.factory.address, p.reward_deposit), net.owner)
    expect_revert(net, F.createTask(p.to_chain()), net.owner, reverts.InsufficientAllowance,
                  allowance=p.reward_deposit, needed=p.reward_deposit + p.fee_budget)
    net.tx(T.approve(net.din.factory.address, 10**30), net.stranger)
    expect_revert(net, F.createTask(p.to_chain()), net.stranger, reverts.InsufficientBalance, balance=0)


@pytest.mark.parametrize("field,value,reason", [
    ("reward_deposit", 0, "rewardDeposit is zero"),
    ("rounds", 0, "rounds outside 1..64"),
    ("rounds", 65, "rounds outside 1..64"),
    ("subgroup_size", 0, "subgroupSize is zero"),
    ("evaluators_per_subgroup", 0, "committee not odd in 1..15"),
    ("evaluators_per_subgroup", 4, "committee not odd in 1..15"),
    ("evaluators_per_subgroup", 17, "committee not odd in 1..15"),
    ("max_participants", 2, "maxParticipants outside subgroupSize..2000"),
    ("max_participants", 2_001, "maxParticipants outside subgroupSize..2000"),
    ("max_evaluators", 2, "maxEvaluators outside committee..200"),
    ("public_goods_bps", 10_001, "publicGoodsBps above 10000"),
    ("evaluator_bond", 99 * WAD, "evaluatorBond below minBond"),
    ("slash_amount", 0, "slashAmount outside 1..evaluatorBond"),
    ("slash_amount", 2**255, "slashAmount outside 1..evaluatorBond"),
    ("commit_window", 9, "a window is shorter than minWindow"),
    ("submission_window", 1, "a window is shorter than minWindow"),
    ("share_window", 3, "a window is shorter than minWindow"),
    ("publish_window", 0, "a window is shorter than minWindow"),
    ("registration_window", 1, "a window is shorter than minWindow"),
])
def test_invalid_task_parameters(net, field, value, reason):
    p = net.default_params(**{field: value})
    net.tx(net.din.token.functions.approve(net.din.factory.address, 10**30), net.owner)
    expect_revert(net, net.din.factory.functions.createTask(p.to_chain()), net.owner, reverts.InvalidParameters,
                  reason=reason)


def test_malformed_genesis_cid(net):
    p = net.default_params().to_chain()
    bad = (((b"\x11" * 32), 0x0171),) + p[1:]
    net.tx(net.din.token.functions.approve(net.din.factory.address, 10**30), net.owner)
    expect_revert(net, net.din.factory.functions.createTask(bad), net.owner, reverts.MalformedCid, kind=0x0171)


def test_clone_and_implementation_cannot_be_reinitialised(net):
    task = net.make_task()
    args = (net.owner.address, net.params.to_chain(), net.din.token.address, net.din.registry.address,
            net.stranger.address, net.stranger.address)
    expect_revert(net, task.functions.initialize(*args), net.stranger, reverts.AlreadyInitialized)
    expect_revert(net, net.din.implementation.functions.initialize(*args), net.stranger, reverts.AlreadyInitialized)


# ------------------------------------------------------------------ registration


def test_register_and_its_errors(net):
    task = net.make_task()
    F = task.functions
    p = net.participants[0]
    expect_revert(net, F.register(b"\0" * 32), p, reverts.InvalidPublicKey)
    net.tx(F.register(b"\x01" * 32), p)
    assert net.call(F.publicKeyOf(p.address)) == b"\x01" * 32
    assert net.call(F.participantIndex(p.address)) == 0
    expect_revert(net, F.register(b"\x02" * 32), p, reverts.AlreadyRegistered, account=p.address)
    expect_revert(net, F.participantIndex(net.stranger.address), net.stranger, reverts.NotRegistered)


def test_identity_registry_gates_registration(net):
    allow = net.chain.deploy("Allowlist", net.owner.address, sender=net.owner)
    task = net.make_task(identity_registry=allow.address)
    p, q = net.participants[:2]
    net.tx(allow.functions.setVerified(p.address, True), net.owner)
    expect_revert(net, allow.functions.setVerified(q.address, True), q, reverts.NotCurator)
    net.tx(task.functions.register(b"\x01" * 32), p)
    expect_revert(net, task.functions.register(b"\x01" * 32), q, reverts.NotAllowed, account=q.address)


def test_start_training_conditions(net):
    task = net.make_task(subgroup_size=3)
    F = task.functions
    net.register(task, net.participants[:2])
    expect_revert(net, F.startTraining(), net.stranger, reverts.NotOwner)
    expect_revert(net, F.startTraining(), net.owner, reverts.NotEnoughParticipants, have=2, need=3)
    net.register(task, net.participants[2:3])
    net.opt_in(task, net.staked[:2])
    expect_revert(net, F.startTraining(), net.owner, reverts.NotEnoughEvaluators, have=2, need=3)
    net.opt_in(task, net.staked[2:3])
    net.tx(F.startTraining(), net.owner)
    assert net.call(F.phase()) == Phase.TRAINING
    expect_revert(net, F.optIn(), net.staked[3], reverts.WrongPhase)  # the evaluators are fixed
    expect_revert(net, F.startTraining(), net.owner, reverts.WrongPhase, expected=Phase.REGISTRATION,
                  actual=Phase.TRAINING)
    expect_revert(net, F.register(b"\x01" * 32), net.participants[5], reverts.WrongPhase)
    expect_revert(net, F.cancel(), net.owner, reverts.WrongPhase)


def test_not_enough_evaluators(net):
    task = net.make_task(evaluators_per_subgroup=7)
    net.register(task)
    net.opt_in(task)  # 5 opt in
    expect_revert(net, task.functions.startTraining(), net.owner, reverts.NotEnoughEvaluators, have=5, need=7)


def test_cancel_refunds_everything(net):
    task = net.make_task()
    F = task.functions
    expect_revert(net, F.cancel(), net.stranger, reverts.DeadlineNotPassed)
    net.tx(F.cancel(), net.owner)
    assert net.call(F.phase()) == Phase.CANCELLED
    before = net.balance(net.owner.address)
    net.tx(F.claim(), net.owner)
    assert net.balance(net.owner.address) == before + net.params.reward_deposit + net.params.fee_budget
    expect_revert(net, F.claim(), net.owner, reverts.NothingToClaim)


# ------------------------------------------------------------------ submissions


def test_submit_update_and_its_errors(net):
    task = net.started_task()
    F = task.functions
    p = net.registered(task)[0]
    upd = cid("update").to_chain()
    probe = lambda: net.call(F.roundInfo(0))  # noqa: E731
    expect_revert(net, F.submitUpdate(1, upd, cid_arg(None)), p, reverts.WrongRound, expected=0, given=1, probe=probe)
    expect_revert(net, F.submitUpdate(0, upd, cid_arg(None)), net.stranger, reverts.NotRegistered, probe=probe)
    expect_revert(net, F.submitUpdate(0, (b"\0" * 32, 0x55), cid_arg(None)), p, reverts.MalformedCid, probe=probe)
    expect_revert(net, F.submitUpdate(0, upd, (b"\x01" * 32, 0)), p, reverts.MalformedCid, probe=probe)
    receipt = net.tx(F.submitUpdate(0, upd, cid("aux").to_chain()), p)
    ev = receipt.event("UpdateSubmitted").args
    assert ev["participant"] == p.address and ev["update"] == upd and ev["aux"] == cid("aux").to_chain()
    assert net.call(F.hasSubmitted(0, p.address))
    expect_revert(net, F.submitUpdate(0, upd, cid_arg(None)), p, reverts.AlreadySubmitted, participant=p.address,
                  round=0, probe=probe)
    net.chain.mine_to(net.round_info(task, 0)[3] + 1)
    expect_revert(net, F.submitUpdate(0, upd, cid_arg(None)), net.registered(task)[1], reverts.WindowClosed)


def test_relayed_batch(net):
    task = net.started_task()
    F = task.functions
    parts = net.registered(task)
    batch = [sign_update(participant=p, task=task, chain_id=net.chain.chain_id, round_=0, update=cid(f"u {i}"))
             for i, p in enumerate(parts[:4])]
    # one bad signature: the whole batch reverts naming the entry (documented choice)
    bad = list(batch)
    bad[2] = (bad[2][0], bad[2][1], bad[2][2], bad[2][3], (int.from_bytes(bad[2][4], "big") ^ 1).to_bytes(32, "big"))
    expect_revert(net, F.submitUpdatesRelayed(0, bad), net.stranger, reverts.InvalidSignature, index=2,
                  probe=lambda: net.call(F.roundInfo(0)))
    # a signature for another round does not verify for this one
    other = sign_update(participant=parts[4], task=task, chain_id=net.chain.chain_id, round_=1, update=cid("x"))
    expect_revert(net, F.submitUpdatesRelayed(0, [other]), net.stranger, reverts.InvalidSignature, index=0)
    # an unregistered signer
    rogue = sign_update(participant=net.strangers[1], task=task, chain_id=net.chain.chain_id, round_=0,
                        update=cid("r"))
    expect_revert(net, F.submitUpdatesRelayed(0, [rogue]), net.stranger, reverts.NotRegistered)
    net.tx(F.submitUpdatesRelayed(0, batch), net.stranger)  # anyone may relay
    assert net.call(F.roundInfo(0))[6] == 4
    assert all(net.call(F.hasSubmitted(0, p.address)) for p in parts[:4])
    # an entry already recorded is skipped, not fatal to its batch
    late = sign_update(participant=parts[4], task=task, chain_id=net.chain.chain_id, round_=0, update=cid("u 4"))
    receipt = net.tx(F.submitUpdatesRelayed(0, [batch[0], late]), net.stranger)
    assert [e.args["participant"] for e in receipt.events if e.event == "UpdateSubmitted"] == [parts[4].address]
    assert net.call(F.roundInfo(0))[6] == 5


def test_submissions_digest_is_a_hash_chain_of_the_events(net):
    from eth_abi import encode
    from eth_utils import keccak

    task = net.started_task()
    net.submit_all(task, 0)
    acc = net.round_info(task, 0)[0]  # the chain starts at the round seed
    for e in net.chain.events.where("UpdateSubmitted", address=task.address, round=0):
        a = e.args
        acc = keccak(encode(["bytes32", "address", "bytes32", "uint16", "bytes32", "uint16"],
                            [acc, a["participant"], *a["update"], *a["aux"]]))
    assert net.round_info(task, 0)[1] == acc


# ------------------------------------------------------------------ aggregation votes


def test_reveal_shares_window_and_errors(net):
    """Secure aggregation's share window: after the submissions, before the commit window, first
    committee members only, one reveal each, a well-formed CID; the commit window starts after it."""
    task = net.started_task(share_window=10)
    F = task.functions
    deadline = net.round_info(task, 0)[3]
    assert net.call(F.subgroupInfo(0, 0))[0] == deadline + 10  # commitStart
    c = net.committee(task, 0, 0)
    shares = cid("shares of member 0")
    expect_revert(net, F.revealShares(0, 0, shares.to_chain()), c[0], reverts.WindowNotOpen, opensAfterBlock=deadline)
    net.submit_all(task, 0)
    net.chain.mine_to(deadline + 1)
    outsider = next(e for e in net.staked if e not in c)
    expect_revert(net, F.revealShares(0, 0, shares.to_chain()), outsider, reverts.NotCommitteeMember)
    expect_revert(net, F.revealShares(0, 9, shares.to_chain()), c[0], reverts.UnknownSubgroup, subgroup=9)
    expect_revert(net, F.revealShares(0, 0, (b"\x00" * 32, 7)), c[0], reverts.MalformedCid)
    expect_revert(net, F.commitResult(0, 0, salt(1)), c[0], reverts.WindowNotOpen)  # not during the share window
    receipt = net.tx(F.revealShares(0, 0, shares.to_chain()), c[0])
    event = receipt.event("SharesRevealed")
    assert event.args["evaluator"] == c[0].address and Cid.from_chain(event.args["shares"]) == shares
    assert net.call(F.sharesRevealed(0, 0, c[0].address)) and not net.call(F.sharesRevealed(0, 0, c[1].address))
    expect_revert(net, F.revealShares(0, 0, shares.to_chain()), c[0], reverts.AlreadyRevealedShares)
    net.to_commit(task, 0)
    expect_revert(net, F.revealShares(0, 0, cid("late").to_chain()), c[1], reverts.WindowClosed)
    net.tx(F.commitResult(0, 0, salt(1)), c[0])


def test_commit_reveal_errors(net):
    task = net.started_task()
    F = task.functions
    net.submit_all(task, 0)
    c = net.committee(task, 0, 0)
    ev = c[0]
    res = cid("r0g0")
    s = salt(1)
    commitment = result_commitment(res, s, ev.address)
    expect_revert(net, F.commitResult(0, 0, commitment), ev, reverts.WindowNotOpen)
    net.to_commit(task, 0)
    outsider = next(e for e in net.staked if e not in c)
    expect_revert(net, F.commitResult(0, 0, commitment), outsider, reverts.NotCommitteeMember)
    expect_revert(net, F.commitResult(0, 9, commitment), ev, reverts.UnknownSubgroup, subgroup=9)
    expect_revert(net, F.commitResult(1, 0, commitment), ev, reverts.WrongRound)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), s), ev, reverts.WindowNotOpen)
    net.tx(F.commitResult(0, 0, commitment), ev)
    expect_revert(net, F.commitResult(0, 0, commitment), ev, reverts.AlreadyCommitted)
    # a copycat that copies the commitment cannot reveal it: the commitment binds the evaluator
    net.tx(F.commitResult(0, 0, commitment), c[1])
    net.to_reveal(task, 0)
    expect_revert(net, F.commitResult(0, 0, commitment), c[2], reverts.WindowClosed)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), s), c[1], reverts.RevealMismatch, evaluator=c[1].address)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), s), c[2], reverts.NotCommitted)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), salt(2)), ev, reverts.RevealMismatch)
    expect_revert(net, F.revealResult(0, 0, (b"\0" * 32, 0), s), ev, reverts.MalformedCid)
    expect_revert(net, F.finalizeSubgroup(0, 0), ev, reverts.WindowNotOpen)
    net.tx(F.revealResult(0, 0, res.to_chain(), s), ev)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), s), ev, reverts.AlreadyRevealed)
    net.to_finalize(task, 0)
    expect_revert(net, F.revealResult(0, 0, res.to_chain(), s), ev, reverts.WindowClosed)


def test_majority_accepts_and_minority_is_slashed(net):
    task = net.started_task()
    net.submit_all(task, 0)
    wrong = net.committee(task, 0, 0)[2]
    results = net.vote_round(task, 0, wrong={wrong.address})
    info = net.call(task.functions.subgroupInfo(0, 0))
    assert info[3] == SubgroupStatus.ACCEPTED and info[5] == results[0].to_chain()
    slashed = net.chain.events.where("EvaluatorSlashed", address=task.address)
    assert [e.args["evaluator"] for e in slashed if e.args["reason"] == "minority result"] == [wrong.address]
    expect_revert(net, task.functions.finalizeSubgroup(0, 0), net.stranger, reverts.SubgroupFinal)


def test_no_majority_opens_a_dispute_with_a_larger_committee(net):
    task = net.started_task(n_participants=3)
    F = task.functions
    net.submit_all(task, 0)
    c = net.committee(task, 0, 0)
    net.vote_round(task, 0, wrong={c[0].address, c[1].address}, finalize=False)  # three different results
    net.to_finalize(task, 0)
    receipt = net.tx(F.finalizeSubgroup(0, 0), net.stranger)
    seed_block = receipt.event("DisputeOpened").args["seedBlock"]
    assert net.committee(task, 0, 0, cohort=1) == []  # drawn only once its seed block exists
    expect_revert(net, F.commitResult(0, 0, b"\1" * 32), c[0], reverts.WindowNotOpen)
    expect_revert(net, F.drawDispute(0, 0), net.stranger, reverts.WindowNotOpen, opensAfterBlock=seed_block)
    net.chain.mine_to(seed_block + 1)
    net.tx(F.drawDispute(0, 0), net.stranger)
    expect_revert(net, F.drawDispute(0, 0), net.stranger, reverts.NoDrawPending)
    dispute = net.committee(task, 0, 0, cohort=1)
    assert len(dispute) == 2  # min(2*3+1, 5 opted in - the 3 of the first committee)
    assert not set(dispute) & set(c)
    info = net.call(F.subgroupInfo(0, 0))
    assert info[3] == SubgroupStatus.PENDING and info[4] == 1
    truth = cid("r0g0")
    net.to_commit(task, 0)
    for ev in dispute:
        net.tx(F.commitResult(0, 0, result_commitment(truth, salt(ev.address), ev.address)), ev)
    net.to_reveal(task, 0)
    for ev in dispute:
        net.tx(F.revealResult(0, 0, truth.to_chain(), salt(ev.address)), ev)
    net.to_finalize(task, 0)
    net.tx(F.finalizeSubgroup(0, 0), net.stranger)
    assert net.call(F.subgroupInfo(0, 0))[3] == SubgroupStatus.ACCEPTED
    minority = {e.args["evaluator"] for e in net.chain.events.where("EvaluatorSlashed", address=task.address)}
    assert minority == {c[0].address, c[1].address}


def test_publish_and_next_round(net):
    task = net.started_task()
    F = task.functions
    net.submit_all(task, 0)
    expect_revert(net, F.publishGlobalModel(0, cid("g").to_chain()), net.owner, reverts.SubgroupsPending)
    net.vote_round(task, 0)
    expect_revert(net, F.publishGlobalModel(0, cid("g").to_chain()), net.stranger, reverts.NotOwner)
    expect_revert(net, F.publishGlobalModel(0, (b"\0" * 32, 0)), net.owner, reverts.MalformedCid)
    seed0 = net.round_info(task, 0)[0]
    net.publish(task, 0, draw=False)
    expect_revert(net, F.drawRound(), net.stranger, reverts.WindowNotOpen)
    net.draw(task)
    assert net.call(F.currentRound()) == 1
    assert net.round_info(task, 1)[0] != seed0
    expect_revert(net, F.publishGlobalModel(0, cid("g").to_chain()), net.owner, reverts.WrongRound)
    # the final round's model is released only after rewards
    net.submit_all(task, 1)
    net.vote_round(task, 1)
    assert net.call(F.phase()) == Phase.SCORING
    expect_revert(net, F.publishGlobalModel(1, cid("g").to_chain()), net.owner, reverts.WrongPhase,
                  expected=Phase.FINISHED)


def test_signal_final_round(net):
    task = net.started_task(rounds=5)
    F = task.functions
    expect_revert(net, F.signalFinalRound(), net.stranger, reverts.NotOwner)
    net.tx(F.signalFinalRound(), net.owner)
    assert net.call(F.finalRound()) == 0
    net.submit_all(task, 0)
    net.vote_round(task, 0)
    assert net.call(F.phase()) == Phase.SCORING


# ------------------------------------------------------------------ scoring and rewards


def test_scoring_errors(net):
    task = net.started_task()
    F = task.functions
    expect_revert(net, F.publishEvaluationSet(cid("t").to_chain(), cid("c").to_chain()), net.owner,
                  reverts.WrongPhase, expected=Phase.SCORING)
    net.train_to_scoring(task)
    expect_revert(net, F.commitScores(0, b"\1" * 32), net.staked[0], reverts.EvaluationSetMissing)
    expect_revert(net, F.publishEvaluationSet(cid("t").to_chain(), cid("c").to_chain()), net.stranger,
                  reverts.NotOwner)
    expect_revert(net, F.publishEvaluationSet((b"\0" * 32, 7), cid("c").to_chain()), net.owner, reverts.MalformedCid)
    net.publish_evaluation_set(task)
    expect_revert(net, F.publishEvaluationSet(cid("t").to_chain(), cid("c").to_chain()), net.owner,
                  reverts.EvaluationSetAlreadyPublished)
    final = net.call(F.finalRound())
    c = net.committee(task, final, 0)
    members = net.call(F.subgroupMembers(final, 0))
    scores = [WAD // 2] * len(members)
    s = salt("s")
    outsider = next((e for e in net.staked if e not in c), None)
    if outsider is not None:
        expect_revert(net, F.commitScores(0, scores_commitment(scores, s, outsider.address)), outsider,
                      reverts.NotCommitteeMember)
    expect_revert(net, F.commitScores(7, b"\1" * 32), c[0], reverts.UnknownSubgroup)
    net.tx(F.commitScores(0, scores_commitment(scores, s, c[0].address)), c[0])
    expect_revert(net, F.commitScores(0, b"\1" * 32), c[0], reverts.AlreadyCommitted)
    too_high = [WAD + 1] * len(members)
    net.tx(F.commitScores(0, scores_commitment(too_high, s, c[1].address)), c[1])
    expect_revert(net, F.revealScores(0, scores, s), c[0], reverts.WindowNotOpen)
    net.chain.mine_to(net.call(F.scoreCommitDeadline()) + 1)
    expect_revert(net, F.commitScores(0, b"\1" * 32), c[2], reverts.WindowClosed)
    expect_revert(net, F.revealScores(0, scores[:-1], s), c[0], reverts.ScoresLengthMismatch)
    expect_revert(net, F.revealScores(0, scores, salt("x")), c[0], reverts.RevealMismatch)
    expect_revert(net, F.revealScores(0, too_high, s), c[1], reverts.ScoreOutOfRange)
    expect_revert(net, F.revealScores(0, scores, s), c[2], reverts.NotCommitted)
    net.tx(F.revealScores(0, scores, s), c[0])
    expect_revert(net, F.revealScores(0, scores, s), c[0], reverts.AlreadyRevealed)
    expect_revert(net, F.finalizeScores(0, [scores, [], []]), net.stranger, reverts.WindowNotOpen)
    net.chain.mine_to(net.call(F.scoreRevealDeadline()) + 1)
    expect_revert(net, F.finalizeScores(0, [scores, []]), net.stranger, reverts.ScoresLengthMismatch)
    expect_revert(net, F.finalizeScores(0, [[1] * len(scores), [], []]), net.stranger, reverts.ReportMismatch, slot=0)
    net.tx(F.finalizeScores(0, [scores, [], []]), net.stranger)
    silent = {e.args["evaluator"] for e in net.chain.events.where("EvaluatorSlashed", reason="silent")}
    assert {c[1].address, c[2].address} <= silent
    expect_revert(net, F.finalizeScores(0, [scores, [], []]), net.stranger, reverts.SubgroupFinal)


def test_rewards_follow_the_median_scores(net):
    task = net.started_task(n_participants=6)
    F = task.functions
    # evaluator k gives participant at position q the score (40 + 10q + k)/100: medians are known
    net.run_to_finished(task, score_fn=lambda ev, m, q: (40 + 10 * q) * WAD // 100)
    final = net.call(F.finalRound())
    total = 0
    for g in range(net.round_info(task, final)[4]):
        for q, m in enumerate(net.call(F.subgroupMembers(final, g))):
            assert net.call(F.scoreOf(m)) == (40 + 10 * q) * WAD // 100
            total += (40 + 10 * q) * WAD // 100
    assert net.call(F.totalScore()) == total
    pool = net.call(F.participantPool())
    for a in net.registered(task):
        share = net.call(F.rewardOf(a.address))
        assert abs(share - pool * net.call(F.scoreOf(a.address)) // total) <= 1
        before = net.balance(a.address)
        net.tx(F.claim(), a)
        assert net.balance(a.address) == before + share
        expect_revert(net, F.claim(), a, reverts.NothingToClaim)  # no double claim
        assert net.call(F.rewardOf(a.address)) == 0
    assert net.call(F.participantPoolRemaining()) == 0


def test_extreme_scorer_is_slashed(net):
    task = net.started_task(n_participants=3)
    F = task.functions
    net.train_to_scoring(task)
    net.publish_evaluation_set(task)
    final = net.call(F.finalRound())
    extreme = net.committee(task, final, 0)[0]
    net.score_all(task, score_fn=lambda ev, m, q: (WAD if q == 0 else 0) if ev == extreme else 6 * WAD // 10)
    slashed = [e.args["evaluator"] for e in net.chain.events.where("EvaluatorSlashed", address=task.address)]
    assert slashed == [extreme.address]
    assert all(net.call(F.scoreOf(a.address)) == 6 * WAD // 10 for a in net.registered(task))


def test_all_zero_scores_pay_the_contributors_equally(net):
    """No scoring can hand the participant pool back to the owner while there were accepted
    submissions: all-zero scores pay the pool per accepted submission over all rounds (as when an
    owner abandons), the indivisible remainder to the fund."""
    task = net.started_task(n_participants=3)
    F = task.functions
    net.run_to_finished(task, score_fn=lambda ev, m, q: 0)
    p = net.params
    public_goods = p.reward_deposit * p.public_goods_bps // 10_000
    pool = p.reward_deposit - public_goods
    total = net.call(F.totalContributions())
    assert total == 3 * p.rounds  # everyone submitted in every round, every subgroup accepted
    unit = net.call(F.perContribution())
    assert unit == pool // total and net.call(F.participantPool()) == unit * total
    fees = sum(e.args["amount"] for e in net.chain.events.where("FeePaid", address=task.address))
    assert net.call(F.claimable(net.owner.address)) == p.fee_budget - fees
    assert net.call(F.claimable(net.fund.address)) == public_goods + pool - unit * total
    shares = [net.call(F.rewardOf(a.address)) for a in net.registered(task)]
    assert shares == [unit * p.rounds] * 3 and sum(shares) == unit * total


def test_scores_of_non_contributors_are_recorded_as_zero(net):
    """A participant that did not submit in the final round cannot be paid by any report."""
    task = net.started_task(n_participants=3)
    F = task.functions
    parts = net.registered(task)
    for r in range(2):
        net.submit_all(task, r, participants=parts if r == 0 else parts[1:])  # parts[0] skips the final round
        net.vote_round(task, r)
        if r == 0:
            net.publish(task, r)
    net.publish_evaluation_set(task)
    net.score_all(task, score_fn=lambda ev, m, q: WAD)  # the committee reports 1.0 for everyone
    assert net.call(F.scoreOf(parts[0].address)) == 0
    assert net.call(F.rewardOf(parts[0].address)) == 0
    assert all(net.call(F.scoreOf(a.address)) == WAD for a in parts[1:])


def test_an_accepted_abort_counts_no_contribution(net):
    """A secure-aggregation abort is a result of its own (revealAbortedResult, committed with a
    trailing true): accepted only when a majority revealed the same abort, it marks the subgroup
    aborted and counts none of its submissions as contributions; the same CID revealed as a plain
    result is another vote (minority: slashed)."""
    task = net.started_task(n_participants=3)
    F = task.functions
    net.submit_all(task, 0)
    c = net.committee(task, 0, 0)
    abort = cid("aborted r0g0")
    net.to_commit(task, 0)
    for i, ev in enumerate(c):
        net.tx(F.commitResult(0, 0, result_commitment(abort, salt(ev.address), ev.address, aborted=i < 2)), ev)
    net.to_reveal(task, 0)
    # opening an abort commitment as a plain result (or the reverse) does not match
    expect_revert(net, F.revealResult(0, 0, abort.to_chain(), salt(c[0].address)), c[0], reverts.RevealMismatch)
    expect_revert(net, F.revealAbortedResult(0, 0, abort.to_chain(), salt(c[2].address)), c[2],
                  reverts.RevealMismatch)
    for ev in c[:2]:
        net.tx(F.revealAbortedResult(0, 0, abort.to_chain(), salt(ev.address)), ev)
    net.tx(F.revealResult(0, 0, abort.to_chain(), salt(c[2].address)), c[2])
    net.to_finalize(task, 0)
    receipt = net.tx(F.finalizeSubgroup(0, 0), net.stranger)
    info = net.call(F.subgroupInfo(0, 0))
    assert info[3] == SubgroupStatus.ACCEPTED and info[8] is True  # aborted
    assert [e.args["evaluator"] for e in receipt.events if e.event == "EvaluatorSlashed"] == [c[2].address]
    assert net.call(F.totalContributions()) == 0
    assert all(net.call(F.contributionsOf(p.address)) == 0 for p in net.registered(task))
