"""The final model's hold on chain (paper 5.1 step 5d, 5.2 step 6b): each accepted result of the
final round is voted on as an envelope that commits to its sealed bytes and to the hash of the key;
nobody can release a key before rewards settle, only the right key opens the envelope, one release
frees all of the result's backers, and backers who all withhold it are slashed. Every refusal is a
named revert that leaves the chain unchanged."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from din_lab.chain import reverts
from din_lab.chain.din import WAD, Phase, held_envelope, parse_held_envelope
from din_lab.cid import Cid
from tests.helpers import STAKE, cid, expect_revert
from tests.test_attacks import score


def _slashes(net, task):
    return [(e.args["evaluator"], e.args["amount"], e.args["reason"])
            for e in net.chain.events.where("EvaluatorSlashed", address=task.address)]


def _settled(net):
    """A one-round task trained and scored: its only round is the final one, so its results are held."""
    task = net.started_task(n_participants=3, rounds=1)
    net.run_to_finished(task, release=False)
    assert net.call(task.functions.phase()) == Phase.FINISHED
    return task


def test_the_envelope_commits_to_the_sealed_result_and_the_keys_hash():
    sealed, key = cid("sealed"), keccak(b"a key")
    envelope = held_envelope(sealed, key)
    assert len(envelope) == 128
    assert parse_held_envelope(envelope) == (sealed, keccak(key))
    assert parse_held_envelope(b"\x00" * 128) is None and parse_held_envelope(envelope[:-1]) is None


def test_the_owner_signals_the_final_round_only_while_its_submissions_are_open(net):
    task = net.started_task(n_participants=3, rounds=3)
    F = task.functions
    net.submit_all(task, 0)
    net.vote_round(task, 0)
    net.publish(task, 0, draw=False)  # round 1's draw is pending: the owner may make it the last
    expect_revert(net, F.signalFinalRound(), net.stranger, reverts.NotOwner)
    net.tx(F.signalFinalRound(), net.owner)
    assert net.call(F.finalRound()) == 1
    net.draw(task)
    net.tx(F.signalFinalRound(), net.owner)  # submissions open: still allowed (and idempotent)
    deadline = net.round_info(task, 1)[3]
    net.chain.mine_to(deadline + 1)
    # once submissions close, committees may have aggregated: too late to hold the round's results
    expect_revert(net, F.signalFinalRound(), net.owner, reverts.WindowClosed, closedAtBlock=deadline,
                  probe=lambda: net.call(F.finalRound()))


def test_nothing_is_released_before_rewards_settle_and_only_the_right_key_opens(net):
    task = net.started_task(n_participants=3, rounds=1)
    F = task.functions
    net.submit_all(task, 0)
    net.vote_round(task, 0)
    info = net.call(F.subgroupInfo(0, 0))
    assert info[9] is True  # held
    sealed, key = net.held[0]
    member = net.committee(task, 0, 0)[0]
    # scoring has not even started: the key stays with the committee
    expect_revert(net, F.releaseFinalModel(0, sealed.to_chain(), key), member, reverts.WrongPhase,
                  expected=Phase.FINISHED, actual=Phase.SCORING)
    net.publish_evaluation_set(task)
    net.score_all(task)
    assert net.call(F.phase()) == Phase.FINISHED
    probe = lambda: (net.call(F.finalKeys(0)), net.call(F.subgroupInfo(0, 0))[9])  # noqa: E731
    expect_revert(net, F.releaseFinalModel(0, sealed.to_chain(), keccak(b"a guess")), member,
                  reverts.WrongFinalKey, subgroup=0, probe=probe)
    expect_revert(net, F.releaseFinalModel(0, cid("other bytes").to_chain(), key), member,
                  reverts.WrongFinalKey, subgroup=0, probe=probe)
    expect_revert(net, F.releaseFinalModel(1, sealed.to_chain(), key), member, reverts.UnknownSubgroup)
    expect_revert(net, F.withdrawBond(), member, reverts.FinalKeyPending, evaluator=member.address, heldSeats=1)
    receipt = net.tx(F.releaseFinalModel(0, sealed.to_chain(), key), net.stranger)  # whoever holds the key
    released = receipt.event("FinalModelReleased").args
    assert (Cid.from_chain(released["ciphertext"]), released["key"]) == (sealed, key)
    assert net.call(F.finalKeys(0)) == key and net.call(F.subgroupInfo(0, 0))[9] is False
    expect_revert(net, F.releaseFinalModel(0, sealed.to_chain(), key), member, reverts.AlreadyReleased)
    net.chain.mine_to(net.call(F.releaseDeadline()) + 1)
    expect_revert(net, F.slashWithholders(0), net.stranger, reverts.AlreadyReleased)
    for ev in net.committee(task, 0, 0):  # one release freed every backer's bond, unslashed
        before = net.balance(ev.address)
        net.tx(F.withdrawBond(), ev)
        assert net.balance(ev.address) == before + STAKE
    assert not _slashes(net, task)


def test_backers_who_all_withhold_the_key_are_slashed_after_the_deadline(net):
    task = _settled(net)
    F = task.functions
    p = net.params
    deadline = net.call(F.releaseDeadline())
    expect_revert(net, F.slashWithholders(0), net.stranger, reverts.DeadlineNotPassed, deadline=deadline)
    net.chain.mine_to(deadline + 1)
    fund_before = net.call(F.claimable(net.fund.address))
    receipt = net.tx(F.slashWithholders(0), net.stranger)
    committee = net.committee(task, 0, 0)
    assert receipt.event("FinalModelWithheld").args["slashed"] == len(committee)
    assert _slashes(net, task) == [(ev.address, p.slash_amount, "withheld final-model key") for ev in committee]
    assert net.call(F.claimable(net.fund.address)) == fund_before + len(committee) * p.slash_amount
    sealed, key = net.held[0]
    expect_revert(net, F.slashWithholders(0), net.stranger, reverts.NotHeld)  # once
    expect_revert(net, F.releaseFinalModel(0, sealed.to_chain(), key), net.stranger, reverts.NotHeld)
    for ev in committee:  # what is left of the bond comes back
        before = net.balance(ev.address)
        net.tx(F.withdrawBond(), ev)
        assert net.balance(ev.address) == before + STAKE - p.slash_amount
    assert net.call(F.liabilities()) == net.balance(task.address)


@pytest.mark.parametrize("way", ["minority", "silent"])
def test_only_the_results_backers_hold_its_key(net, way):
    """A member outside the accepted result (a minority result, or silent) is slashed for that in
    training and owes no key: it withdraws what is left of its bond without waiting for the release."""
    task = net.started_task(n_participants=3, rounds=1)
    F = task.functions
    net.submit_all(task, 0)
    odd = net.committee(task, 0, 0)[-1]
    net.vote_round(task, 0, **({"wrong": {odd.address}} if way == "minority" else {"silent": {odd.address}}))
    net.publish_evaluation_set(task)
    rows = score(net, task, {(0, ev.address): [WAD // 2] * 3 for ev in net.committee(task, 0, 0) if ev != odd})
    net.tx(F.finalizeScores(0, rows[0]), net.stranger)
    before = net.balance(odd.address)
    net.tx(F.withdrawBond(), odd)
    assert net.balance(odd.address) > before
    backer = net.committee(task, 0, 0)[0]
    expect_revert(net, F.withdrawBond(), backer, reverts.FinalKeyPending, evaluator=backer.address, heldSeats=1)
