"""Attacks on the economy contracts (EvaluatorLicence, PublicGoodsFund, VoiceCredits, DINProposals),
written as a hostile, rich, patient caller would try them. A test that FAILS shows a defect; a test
that passes shows the contracts resist that attack."""

from __future__ import annotations

import math

from din_lab.chain import reverts
from din_lab.chain.din import WAD
from tests.helpers import ECONOMY, cid
from tests.test_economy import (
    ECONOMIC,
    RESERVE,
    E,
    L,
    approve,
    bal,
    buy,
    contribute,
    expect_revert,
    grant_all,
    ledger,
    licensed_task,
    propose_bps,
    register,
)


def pass_dpp(net, dpp, voters):
    """Every voter with credits at the snapshot votes for ``dpp`` with all it can; mine past the vote."""
    P, C = E(net).proposals.functions, E(net).credits.functions
    snapshot = net.call(P.proposal(dpp))[5]
    for w in voters:
        budget = net.call(C.creditsAt(w.address, snapshot))
        if budget:
            net.tx(P.castVote(dpp, True, math.isqrt(budget)), w)
    net.chain.mine_to(net.call(P.proposal(dpp))[6] + 1)
    assert net.call(P.state(dpp)) == 3  # Succeeded


def queue_and_execute(net, dpp):
    P = E(net).proposals.functions
    net.tx(P.queue(dpp), net.stranger)
    net.chain.mine_until_time(net.call(E(net).timelock.functions.getTimestamp(net.call(P.operationOf(dpp)))))
    net.tx(P.execute(dpp), net.stranger)


# ------------------------------------------------------------------ licences


def test_one_licence_cannot_license_a_whole_task(econ):
    """Fixed (review): the licence used to be checked only at the instant of optIn/commitScores, so
    one licence priced at 1 wei (no tax) could be passed from committee member to committee member.
    Now a member must hold, when it commits, a licence it held when scoring opened: a licence bought
    after that licenses nobody in this task, so one licence lets at most one member score."""
    task = licensed_task(econ)
    econ.train_to_scoring(task)
    econ.publish_evaluation_set(task)
    final = econ.call(task.functions.finalRound())
    first, second = econ.committee(task, final, 0)[:2]
    econ.tx(task.functions.commitScores(0, b"\1" * 32), first)
    # the second member gives its own licence back and buys the first member's, already used
    f = L(econ)
    econ.tx(f.giveBack(econ.call(f.licenceOf(second.address))[0]), second)
    used = econ.call(f.licenceOf(first.address))[0]
    buy(econ, second, used, price=100 * WAD, new_price=100 * WAD, deposit=50 * WAD)
    assert econ.call(f.isLicensed(second.address))
    expect_revert(econ, task.functions.commitScores(0, b"\2" * 32), second, reverts.NotLicensed,
                  evaluator=second.address)


def test_licence_ledger_holds_through_buys_foreclosures_and_returns(econ):
    """Resists: deposited (net of refunds) == deposits held, and tokens in == tokens out, through
    a hostile sequence (buy-outs, a foreclosure inside a buy, top-ups, withdrawals, give-backs)."""
    f, fund = L(econ), E(econ).fund.address
    a, b, c = econ.evaluators[:3]
    actors = (a, b, c)
    start = {x.address: bal(econ, x) for x in actors}
    fund_start = bal(econ, fund)
    buy(econ, a, 0, price=RESERVE, new_price=1_000 * WAD, deposit=WAD // 5)  # 0.1 token/block
    econ.chain.mine(3)
    buy(econ, b, 0, price=1_000 * WAD, new_price=40 * WAD, deposit=7 * WAD)  # a's deposit is exhausted:
    assert econ.call(f.ownerOf(0)) == b.address  # foreclosed inside buy, sold at the reserve
    ledger(econ)
    approve(econ, b, E(econ).licence.address, 3 * WAD)
    econ.tx(f.topUp(0, 3 * WAD), b)
    econ.chain.mine(2)
    econ.tx(f.withdraw(0, 2 * WAD), b)
    buy(econ, c, 0, price=40 * WAD, new_price=60 * WAD, deposit=WAD)
    buy(econ, a, 1, price=RESERVE, new_price=10 * WAD, deposit=WAD)
    econ.chain.mine(4)
    econ.tx(f.giveBack(1), a)
    ledger(econ)
    held = bal(econ, E(econ).licence.address)
    spent = sum(start[x.address] - bal(econ, x) for x in actors)
    assert spent == (bal(econ, fund) - fund_start) + held  # no token created or lost


def test_a_raised_price_in_front_of_a_buyer_is_refused(econ):
    """Resists: a holder (or a front-runner that bought first) cannot make a buyer pay more than
    its maxPrice; the refused buy changes nothing."""
    a, b, front = econ.evaluators[:3]
    buy(econ, a, 2, price=RESERVE, new_price=100 * WAD, deposit=10 * WAD)
    buy(econ, front, 2, price=100 * WAD, new_price=150 * WAD, deposit=10 * WAD)  # the front-runner
    approve(econ, b, E(econ).licence.address, 10**24)
    expect_revert(econ, L(econ).buy(2, 100 * WAD, 100 * WAD, WAD), b, reverts.PriceAboveOffer,
                  probe=lambda: (bal(econ, b), econ.call(L(econ).ownerOf(2))), price=150 * WAD)


# ------------------------------------------------------------------ quadratic funding


def test_a_round_cannot_be_filled_with_dust_to_lock_out_honest_projects(econ):
    """Fixed (review): a round used to take at most 32 projects, so 32 dust gifts locked honest
    projects out. A round now takes any number; finalization is paid in chunks of projects."""
    F = E(econ).fund.functions
    attacker, honest_donor = econ.participants[0], econ.participants[1]
    honest = register(econ, econ.strangers[1], econ.strangers[1].address)
    dummies = [register(econ, attacker, attacker.address) for _ in range(40)]
    econ.tx(F.startRound(), attacker)
    approve(econ, attacker, E(econ).fund.address, len(dummies))
    for p in dummies:
        econ.tx(F.contribute(p, 1), attacker)
    assert econ.call(F.roundInfo(0))[2] == 40  # 40 wei in all
    approve(econ, honest_donor, E(econ).fund.address, 10 * WAD)
    econ.tx(F.contribute(honest, 10 * WAD), honest_donor)
    econ.chain.mine_to(econ.call(F.roundInfo(0))[0] + 1)
    while not econ.call(F.roundInfo(0))[1]:
        econ.tx(F.finalizeRound(16), econ.stranger)
    assert econ.call(F.claimable(econ.strangers[1].address)) == 10 * WAD


def test_two_dust_contributions_cannot_take_the_whole_matching_pool(econ):
    """Fixed (review): the pool used to be paid out in full, scaled UP when the total QF weight was below it.
    Two verified accounts (colluding, or one person with two identities) give 1 wei each to their
    own project in a quiet round: weight 2 wei, match = the entire pool (1000 tokens). Quadratic
    funding pays a project at most its weight w_p = (sum sqrt c)^2 - sum c."""
    F = E(econ).fund.functions
    fund = E(econ).fund.address
    econ.tx(econ.din.token.functions.transfer(fund, 1_000 * WAD), econ.deployer)
    a, b = econ.participants[:2]
    mine = register(econ, a, a.address)
    econ.tx(F.startRound(), a)
    contribute(econ, a, mine, 1)
    contribute(econ, b, mine, 1)
    weight = econ.call(F.tally(0, mine))[2]
    econ.chain.mine_to(econ.call(F.roundInfo(0))[0] + 1)
    econ.tx(F.finalizeRound(100), a)
    match = econ.call(F.matchOf(0, mine))
    assert weight == 2
    assert match <= weight, f"2 wei of contributions (weight {weight}) were matched with {match} wei"


def test_splitting_gifts_within_one_account_adds_no_weight(econ):
    """Resists: many small gifts from one account count as one contribution of their total."""
    F = E(econ).fund.functions
    a, b = econ.participants[:2]
    p = register(econ, a, a.address)
    q = register(econ, b, b.address)
    econ.tx(F.startRound(), a)
    for _ in range(10):
        contribute(econ, a, p, WAD)
    contribute(econ, a, q, 10 * WAD)
    assert econ.call(F.tally(0, p)) == econ.call(F.tally(0, q))
    assert econ.call(F.tally(0, p))[2] == 0


# ------------------------------------------------------------------ credits and DPPs


def test_a_one_wei_task_does_not_buy_its_owner_a_quorum(econ):
    """Fixed (review): an owner used to earn ownerCredits (100 = 10 votes = the whole quorum) for any
    finished task, even one with a 1-wei reward. Owner credits now need a reward deposit of at least
    ownerMinReward (paid to verified participants), and only identity-gated tasks earn credits."""
    task = licensed_task(econ, reward_deposit=1, fee_budget=0, evaluator_fee=0)
    econ.run_to_finished(task)
    assert econ.call(task.functions.phase()) == 3  # Finished
    C = E(econ).credits.functions
    assert econ.call(C.creditsFrom(task.address, econ.owner.address)) == [0, 0, 0]
    expect_revert(econ, C.grant(task.address, econ.owner.address), econ.stranger, reverts.NoActivity)
    # a task that does not admit participants through the network's identity registry earns nothing
    open_task = econ.make_task(identity_registry="0x" + "00" * 20)
    expect_revert(econ, C.grant(open_task.address, econ.owner.address), econ.stranger, reverts.TaskNotVerified)


def test_a_stale_passed_dpp_cannot_override_a_later_decision(econ, finished_task):
    """Fixed (review): a Succeeded DPP used to never expire. DPP A (share 20 %) passes but is left
    unqueued; later DPP B (share 3 %) passes and is executed. A can no longer be queued: it expired
    (not queued within votingBlocks of its vote's end), and its parameter changed after it was filed."""
    people = grant_all(econ, finished_task)
    params = E(econ).parameters.functions
    old = propose_bps(econ, econ.stranger, 2_000)
    pass_dpp(econ, old, people)
    econ.chain.mine(50)  # the community moves on
    new = propose_bps(econ, econ.stranger, 300)
    pass_dpp(econ, new, people)
    queue_and_execute(econ, new)
    assert econ.call(params.publicGoodsBps()) == 300
    # the attacker tries to resurrect the stale decision
    assert econ.call(E(econ).proposals.functions.state(old)) == 6  # Expired
    expect_revert(econ, E(econ).proposals.functions.queue(old), econ.stranger, reverts.WrongState)
    assert econ.call(params.publicGoodsBps()) == 300


def test_a_queued_dpp_expires_when_a_later_one_changes_its_parameter_first(econ, finished_task):
    """Two DPPs on one parameter, both queued: the one executed first makes the other expire."""
    grant_all(econ, finished_task)
    P, params = E(econ).proposals.functions, E(econ).parameters.functions
    a = propose_bps(econ, econ.stranger, 2_000)
    b = propose_bps(econ, econ.stranger, 300)
    budget = econ.call(E(econ).credits.functions.creditsOf(econ.owner.address))
    assert math.isqrt(budget) >= ECONOMY.quorum_votes
    for dpp in (a, b):  # both pass, on the owner's votes alone
        econ.tx(P.castVote(dpp, True, math.isqrt(budget)), econ.owner)
    econ.chain.mine_to(econ.call(P.proposal(b))[6] + 1)
    econ.tx(P.queue(a), econ.stranger)
    econ.tx(P.queue(b), econ.stranger)
    econ.chain.mine_until_time(econ.call(E(econ).timelock.functions.getTimestamp(econ.call(P.operationOf(b)))))
    econ.tx(P.execute(b), econ.stranger)
    assert econ.call(P.state(a)) == 6  # Expired
    expect_revert(econ, P.execute(a), econ.stranger, reverts.WrongState,
                  probe=lambda: econ.call(params.publicGoodsBps()))
    assert econ.call(params.publicGoodsBps()) == 300


def test_an_identity_revoked_after_earning_credits_cannot_vote(econ, finished_task):
    """Fixed (review): castVote now asks the identity registry, so an account whose identity was
    revoked (found to be a Sybil) cannot vote with the credits it earned."""
    P = E(econ).proposals.functions
    grant_all(econ, finished_task)
    sybil = econ.owner
    econ.tx(E(econ).identity.functions.setVerified(sybil.address, False), econ.deployer)
    dpp = propose_bps(econ, econ.stranger, 2_000)
    expect_revert(econ, P.castVote(dpp, True, 1), sybil, reverts.NotVerified)


def test_votes_cannot_be_bought_with_tokens_or_moved_between_accounts(econ, finished_task):
    """Resists: credits earned at the snapshot are the only budget; tokens and a second account
    add nothing, and an account's votes on a DPP cost the square of their total."""
    P, C = E(econ).proposals.functions, E(econ).credits.functions
    grant_all(econ, finished_task)
    dpp = propose_bps(econ, econ.stranger, 2_000)
    budget = econ.call(C.creditsOf(econ.owner.address))
    n = math.isqrt(budget)
    for _ in range(n):  # one vote at a time still costs total^2
        econ.tx(P.castVote(dpp, True, 1), econ.owner)
    expect_revert(econ, P.castVote(dpp, True, 1), econ.owner, reverts.InsufficientCredits)
    # the owner's tokens go to a fresh account: it has no credits
    fresh = econ.strangers[2]
    econ.tx(econ.din.token.functions.transfer(fresh.address, 10_000 * WAD), econ.owner)
    expect_revert(econ, P.castVote(dpp, True, 1), fresh, reverts.InsufficientCredits, budget=0)
    # nor can the same activity be granted twice
    expect_revert(econ, C.grant(finished_task.address, econ.owner.address), econ.stranger, reverts.AlreadyGranted)


def test_a_dpp_cannot_target_anything_but_a_governed_parameter(econ):
    """Resists: no key reaches the timelock itself (updateDelay, roles) or any contract but the
    governed ones; the timelock has no admin to bypass it."""
    P, T = E(econ).proposals.functions, E(econ).timelock.functions
    for key in (b"minDelay".ljust(32, b"\0"), b"\0" * 32, b"evaluatorFee".ljust(32, b"\0")):
        expect_revert(econ, P.propose(ECONOMIC, "t", cid("x").to_chain(), key, 1), econ.stranger,
                      reverts.NotGovernable, probe=lambda: econ.call(P.proposalCount()))
    for who in (econ.deployer, econ.owner):
        for role in ("DEFAULT_ADMIN_ROLE", "PROPOSER_ROLE", "EXECUTOR_ROLE", "CANCELLER_ROLE"):
            assert not econ.call(T.hasRole(econ.call(getattr(T, role)()), who.address))
    assert econ.call(T.hasRole(econ.call(T.EXECUTOR_ROLE()), "0x" + "00" * 20)) is False  # no open execution


def test_voting_against_cannot_make_a_proposal_pass(econ, finished_task):
    """Fixed (review): the quorum used to count for + against votes, so 4 votes against could lift
    6 votes for (quorum 10) to Succeeded. The quorum now counts votes for only."""
    P, C = E(econ).proposals.functions, E(econ).credits.functions
    people = grant_all(econ, finished_task)
    dpp = propose_bps(econ, econ.stranger, 2_000)
    econ.tx(P.castVote(dpp, True, 6), econ.owner)
    opponent = next(w for w in people if w != econ.owner and econ.call(C.creditsOf(w.address)) >= 16)
    snap = econ.chain.snapshot()
    econ.chain.mine_to(econ.call(P.proposal(dpp))[6] + 1)
    assert econ.call(P.state(dpp)) == 2  # Defeated when the opponent stays home
    econ.chain.revert(snap)
    econ.tx(P.castVote(dpp, False, 4), opponent)
    econ.chain.mine_to(econ.call(P.proposal(dpp))[6] + 1)
    assert econ.call(P.state(dpp)) != 3, "4 votes against turned a Defeated DPP into a Succeeded one"
