"""The economy and governance contracts (issue 18; paper sections 6 and 8), on the embedded chain
and on anvil: Harberger-taxed evaluator licences, the public-goods fund's quadratic funding rounds,
voice credits from verified activity, and DIN Proposal Protocols voted quadratically and executed
through a timelock. Every bad input is a named revert that leaves balances and state unchanged."""

from __future__ import annotations

import math

import pytest

from din_lab.chain import reverts
from din_lab.chain.din import WAD, ZERO_ADDRESS, create_task, opt_in
from din_lab.protocol.economy import quadratic_match
from tests.helpers import ECONOMY, cid, expect_revert

RATE = ECONOMY.harberger_rate
RESERVE = ECONOMY.reserve_price
KEY_BPS = b"publicGoodsBps".ljust(32, b"\0")
KEY_RATE = b"harbergerRate".ljust(32, b"\0")
KEY_SUPPLY = b"licenceSupply".ljust(32, b"\0")
ECONOMIC, INFRASTRUCTURE = 1, 0


def E(net):
    return net.din.economy


def L(net):
    return E(net).licence.functions


def bal(net, who) -> int:
    address = who if isinstance(who, str) else who.address
    return net.call(net.din.token.functions.balanceOf(address))


def approve(net, who, spender, amount):
    net.tx(net.din.token.functions.approve(spender, amount), who)


def buy(net, who, licence_id, *, price, new_price=100 * WAD, deposit=10 * WAD, max_price=None):
    approve(net, who, E(net).licence.address, price + deposit)
    return net.tx(L(net).buy(licence_id, price if max_price is None else max_price, new_price, deposit), who)


def licensed_task(net, *, start=True, **overrides):
    """A task in the governed network with participants registered and the staked evaluators
    licensed (licence i each, from the fund) and opted in; started and drawn unless ``start`` is false."""
    task = net.make_task(**overrides)
    net.register(task)
    for i, e in enumerate(net.staked):
        buy(net, e, i, price=RESERVE, new_price=100 * WAD, deposit=50 * WAD)
        opt_in(net.chain, task, evaluator=e)
    if start:
        net.tx(task.functions.startTraining(), net.owner)
        net.draw(task)
    return task


def licence_state(net, licence_id):
    return net.call(L(net).licenceInfo(licence_id))


def ledger(net):
    """deposited (net of refunds) == tax paid to the fund + deposits held, to the wei."""
    f = L(net)
    held = bal(net, E(net).licence.address)
    assert net.call(f.totalDeposited()) == held
    return net.call(f.totalDeposited()), net.call(f.totalTaxPaid())


# ------------------------------------------------------------------ licences


def test_licences_start_with_the_fund_and_never_transfer(econ):
    f, fund = L(econ), E(econ).fund.address
    assert econ.call(f.supply()) == ECONOMY.licence_supply
    for i in range(ECONOMY.licence_supply):
        assert econ.call(f.ownerOf(i)) == fund
        assert licence_state(econ, i) == [fund, RESERVE, 0, False] or licence_state(econ, i) == (fund, RESERVE, 0, False)
    a = econ.evaluators[0]
    buy(econ, a, 0, price=RESERVE)
    for fn in (f.transferFrom(a.address, econ.stranger.address, 0),
               f.safeTransferFrom(a.address, econ.stranger.address, 0)):
        expect_revert(econ, fn, a, reverts.TransferDisabled, probe=lambda: econ.call(f.ownerOf(0)))
    expect_revert(econ, f.buy(99, RESERVE, WAD, WAD), a, reverts.ERC721NonexistentToken)


def test_buying_from_the_fund_pays_the_reserve_to_the_fund_and_holds_the_deposit(econ):
    a, fund = econ.evaluators[0], E(econ).fund.address
    before = bal(econ, a), bal(econ, fund)
    buy(econ, a, 3, price=RESERVE, new_price=200 * WAD, deposit=20 * WAD)
    assert bal(econ, a) == before[0] - RESERVE - 20 * WAD
    assert bal(econ, fund) == before[1] + RESERVE
    assert econ.call(L(econ).licenceOf(a.address)) in ([3, True], (3, True))
    assert econ.call(L(econ).isLicensed(a.address))
    assert ledger(econ) == (20 * WAD, 0)
    # one licence per account, and the holder cannot buy its own
    expect_revert(econ, L(econ).buy(4, RESERVE, WAD, WAD), a, reverts.AlreadyLicensed, licence=3)
    expect_revert(econ, L(econ).buy(3, 10**30, WAD, WAD), a, reverts.AlreadyHolder, licence=3)


def test_buying_below_the_price_or_with_bad_terms_is_refused_and_changes_nothing(econ):
    a, b = econ.evaluators[:2]
    buy(econ, a, 0, price=RESERVE, new_price=300 * WAD)
    approve(econ, b, E(econ).licence.address, 10**24)

    def probe():
        return (licence_state(econ, 0), bal(econ, a), bal(econ, b), ledger(econ))

    f = L(econ)
    expect_revert(econ, f.buy(0, 300 * WAD - 1, 100 * WAD, WAD), b, reverts.PriceAboveOffer, probe=probe,
                  price=300 * WAD, offered=300 * WAD - 1)
    expect_revert(econ, f.buy(0, 300 * WAD, 0, WAD), b, reverts.InvalidPrice, probe=probe)
    expect_revert(econ, f.buy(0, 300 * WAD, WAD, 0), b, reverts.InvalidDeposit, probe=probe)
    expect_revert(econ, f.buy(1, RESERVE - 1, WAD, WAD), b, reverts.PriceAboveOffer, price=RESERVE)
    poor = econ.strangers[6]  # verified nowhere, no tokens
    expect_revert(econ, f.buy(1, RESERVE, WAD, WAD), poor, reverts.ERC20InsufficientAllowance, probe=probe)


def test_tax_accrues_per_block_on_the_self_assessed_price_and_goes_to_the_fund(econ):
    a, fund = econ.evaluators[0], E(econ).fund.address
    price, deposit = 400 * WAD, 30 * WAD
    buy(econ, a, 2, price=RESERVE, new_price=price, deposit=deposit)
    bought_at = econ.chain.block_number
    econ.chain.mine(9)
    fund_before = bal(econ, fund)
    econ.tx(L(econ).settle(2), econ.stranger)  # anyone settles
    blocks = econ.chain.block_number - bought_at
    tax = price * RATE * blocks // WAD
    assert bal(econ, fund) == fund_before + tax
    assert econ.call(L(econ).taxPaidOn(2)) == tax
    assert ledger(econ) == (deposit - tax, tax)
    # a price change applies from its block on: the setPrice block is taxed at the old price
    settled = econ.chain.block_number
    changed = econ.tx(L(econ).setPrice(2, price // 4), a).block
    econ.chain.mine(5)
    end = econ.tx(L(econ).settle(2), econ.stranger).block
    tax2 = price * RATE * (changed - settled) // WAD
    tax3 = (price // 4) * RATE * (end - changed) // WAD
    assert econ.call(L(econ).totalTaxPaid()) == tax + tax2 + tax3
    assert sum(ledger(econ)) == deposit


def test_a_buyer_pays_the_holder_its_price_and_the_holder_gets_its_unused_deposit(econ):
    a, b = econ.evaluators[:2]
    buy(econ, a, 5, price=RESERVE, new_price=120 * WAD, deposit=40 * WAD)
    start = econ.chain.block_number
    econ.chain.mine(3)
    a_before = bal(econ, a)
    buy(econ, b, 5, price=120 * WAD, new_price=150 * WAD, deposit=15 * WAD)
    tax = 120 * WAD * RATE * (econ.chain.block_number - start) // WAD
    assert bal(econ, a) == a_before + 120 * WAD + 40 * WAD - tax
    assert econ.call(L(econ).ownerOf(5)) == b.address
    assert not econ.call(L(econ).isLicensed(a.address))
    assert econ.call(L(econ).isLicensed(b.address))
    assert econ.call(L(econ).licenceOf(a.address))[1] is False
    assert ledger(econ) == (15 * WAD, tax)


def test_a_licence_whose_deposit_runs_out_is_foreclosed_to_the_fund_and_sold_again(econ):
    a, b, fund = econ.evaluators[0], econ.evaluators[1], E(econ).fund.address
    price = 1_000 * WAD
    per_block = price * RATE // WAD  # 0.1 token
    buy(econ, a, 1, price=RESERVE, new_price=price, deposit=5 * per_block)
    assert econ.call(L(econ).isLicensed(a.address))
    econ.chain.mine(5)
    assert not econ.call(L(econ).isLicensed(a.address))  # lapsed before anyone settles
    assert licence_state(econ, 1)[3] is True
    fund_before = bal(econ, fund)
    receipt = econ.tx(L(econ).settle(1), econ.stranger)
    assert receipt.event("Foreclosed").args["holder"] == a.address
    assert econ.call(L(econ).ownerOf(1)) == fund
    assert bal(econ, fund) == fund_before + 5 * per_block  # the whole deposit, no more
    assert ledger(econ) == (0, 5 * per_block)
    # the holder's own actions cannot undo a foreclosure it owes
    expect_revert(econ, L(econ).topUp(1, WAD), a, reverts.NotHolder)
    buy(econ, b, 1, price=RESERVE)  # the fund sells it again at the reserve
    assert econ.call(L(econ).ownerOf(1)) == b.address


def test_only_the_holder_manages_a_licence_and_cannot_take_more_than_its_deposit(econ):
    a, b = econ.evaluators[:2]
    buy(econ, a, 0, price=RESERVE, new_price=100 * WAD, deposit=10 * WAD)
    f = L(econ)
    probe = lambda: (licence_state(econ, 0), bal(econ, a), bal(econ, b))  # noqa: E731
    for fn in (f.setPrice(0, WAD), f.withdraw(0, 1), f.giveBack(0), f.topUp(0, WAD)):
        expect_revert(econ, fn, b, reverts.NotHolder, probe=probe, caller=b.address)
    expect_revert(econ, f.withdraw(0, 10 * WAD), a, reverts.InsufficientDeposit)
    expect_revert(econ, f.setPrice(0, 0), a, reverts.InvalidPrice)
    approve(econ, a, E(econ).licence.address, 5 * WAD)
    econ.tx(f.topUp(0, 5 * WAD), a)
    before = bal(econ, a)
    econ.tx(f.withdraw(0, 3 * WAD), a)
    assert bal(econ, a) == before + 3 * WAD
    deposited, paid = ledger(econ)
    before = bal(econ, a)
    receipt = econ.tx(f.giveBack(0), a)
    refund = receipt.event("Returned").args["refund"]
    assert bal(econ, a) == before + refund
    deposited_after, paid_after = ledger(econ)
    assert deposited_after == 0 and deposited + paid == refund + paid_after
    assert econ.call(f.ownerOf(0)) == E(econ).fund.address


def test_tasks_require_a_licence_to_opt_in_and_to_score(econ):
    task = econ.make_task()
    econ.register(task)
    unlicensed = econ.staked[0]
    bond = econ.params.evaluator_bond
    approve(econ, unlicensed, task.address, bond)
    expect_revert(econ, task.functions.optIn(), unlicensed, reverts.NotLicensed, evaluator=unlicensed.address,
                  probe=lambda: econ.call(task.functions.evaluatorCount()))
    for i, e in enumerate(econ.staked):
        buy(econ, e, i, price=RESERVE, new_price=100 * WAD, deposit=50 * WAD)
        opt_in(econ.chain, task, evaluator=e)
    econ.tx(task.functions.startTraining(), econ.owner)
    econ.draw(task)
    econ.train_to_scoring(task)
    econ.publish_evaluation_set(task)
    final = econ.call(task.functions.finalRound())
    member = econ.committee(task, final, 0)[0]
    licence_id = econ.call(L(econ).licenceOf(member.address))[0]
    econ.tx(L(econ).giveBack(licence_id), member)  # gives up its right to score
    expect_revert(econ, task.functions.commitScores(0, b"\1" * 32), member, reverts.NotLicensed,
                  evaluator=member.address)


# ------------------------------------------------------------------ quadratic funding


def register(net, who, recipient):
    return net.tx(E(net).fund.functions.registerProject(recipient, cid(f"project {recipient}").to_chain()),
                  who).event("ProjectRegistered").args["project"]


def contribute(net, who, project, amount):
    approve(net, who, E(net).fund.address, amount)
    net.tx(E(net).fund.functions.contribute(project, amount), who)


@pytest.mark.parametrize("pool", [500 * WAD + 7, 5_000 * WAD])
def test_quadratic_funding_pays_the_pool_to_the_wei_and_favours_broad_support(econ, pool):
    """A pool below the total weight (about 900 tokens) is paid out in full, to the wei; a larger
    one pays every project its weight and keeps the rest for the next round. Finalized one project
    per call, the matches are the reference rule's."""
    F = E(econ).fund.functions
    fund = E(econ).fund.address
    econ.tx(econ.din.token.functions.transfer(fund, pool), econ.deployer)  # the matching pool
    broad, narrow, lone = (register(econ, econ.strangers[i], econ.strangers[i].address) for i in range(3))
    econ.tx(F.startRound(), econ.stranger)
    gifts = {broad: {p.address: 10 * WAD + i for i, p in enumerate(econ.participants[:10])},
             narrow: {econ.participants[10].address: 100 * WAD, econ.participants[11].address: 3},
             lone: {econ.participants[12].address: 200 * WAD}}
    by_address = {a.address: a for a in econ.participants}
    for p, by in gifts.items():
        for who, amount in by.items():
            contribute(econ, by_address[who], p, amount)
    assert econ.call(F.matchingPool()) == pool
    expect_revert(econ, F.finalizeRound(3), econ.stranger, reverts.RoundNotOver)
    econ.chain.mine_to(econ.call(F.roundInfo(0))[0] + 1)
    expect_revert(econ, F.contribute(broad, WAD), econ.participants[0], reverts.RoundOver)
    for _ in gifts:  # one project per call
        assert not econ.call(F.roundInfo(0))[1]
        econ.tx(F.finalizeRound(1), econ.stranger)
    assert econ.call(F.roundInfo(0))[1]
    expect_revert(econ, F.finalizeRound(1), econ.stranger, reverts.NoOpenRound)
    expected = quadratic_match(gifts, pool=pool)  # the rule in exact integers
    matched = {p: econ.call(F.matchOf(0, p)) for p in gifts}
    assert matched == expected
    total_weight = econ.call(F.roundInfo(0))[6]
    assert sum(matched.values()) == min(pool, total_weight)  # the whole pool when it binds, to the wei
    assert matched[lone] == 0  # one contributor: no match however much it gives
    assert matched[broad] > 50 * matched[narrow]  # ten small gifts beat one large one
    for p, who in zip((broad, narrow, lone), econ.strangers[:3], strict=True):
        before = bal(econ, who)
        econ.tx(F.claim(), who)
        assert bal(econ, who) == before + matched[p] + sum(gifts[p].values())
    assert bal(econ, fund) == econ.call(F.matchingPool()) == pool - min(pool, total_weight)


def test_fund_refuses_the_unverified_and_bad_rounds(econ):
    F = E(econ).fund.functions
    unverified = econ.strangers[5]
    expect_revert(econ, F.registerProject(unverified.address, cid("x").to_chain()), unverified,
                  reverts.NotVerified, probe=lambda: econ.call(F.projectCount()))
    p = register(econ, econ.stranger, econ.stranger.address)
    expect_revert(econ, F.registerProject(ZERO_ADDRESS, cid("x").to_chain()), econ.stranger, reverts.InvalidRecipient)
    approve(econ, econ.participants[0], E(econ).fund.address, 10 * WAD)
    expect_revert(econ, F.contribute(p, WAD), econ.participants[0], reverts.NoOpenRound)
    econ.tx(F.startRound(), econ.stranger)
    expect_revert(econ, F.startRound(), econ.stranger, reverts.RoundOpen)
    expect_revert(econ, F.contribute(p + 1, WAD), econ.participants[0], reverts.UnknownProject)
    expect_revert(econ, F.contribute(p, 0), econ.participants[0], reverts.InvalidAmount)
    econ.tx(econ.din.token.functions.transfer(unverified.address, 10 * WAD), econ.deployer)
    approve(econ, unverified, E(econ).fund.address, 10 * WAD)
    expect_revert(econ, F.contribute(p, WAD), unverified, reverts.NotVerified,
                  probe=lambda: (bal(econ, unverified), econ.call(F.tally(0, p))))
    expect_revert(econ, F.claim(), econ.stranger, reverts.NothingToClaim)


def test_a_sybil_split_buys_matching_only_without_the_identity_registry(econ):
    """One contributor splitting 100 tokens over k accounts multiplies its project's weight by
    about k; gated by the identity registry the extra accounts cannot contribute at all."""
    # open fund (no identity registry): deploy one beside the network's
    open_fund = econ.chain.deploy("PublicGoodsFund", econ.din.token.address, ZERO_ADDRESS, 20, sender=econ.deployer)
    gated = E(econ).fund
    sybils = econ.strangers[3:7]  # the last three are not verified
    for s in sybils:
        econ.tx(econ.din.token.functions.transfer(s.address, 25 * WAD), econ.participants[0])
    for fund in (open_fund, gated):
        econ.tx(fund.functions.registerProject(econ.stranger.address, cid("sybil").to_chain()), econ.stranger)
        econ.tx(fund.functions.startRound(), econ.stranger)
    for s in sybils:
        approve(econ, s, open_fund.address, 25 * WAD)
        econ.tx(open_fund.functions.contribute(0, 25 * WAD), s)
    assert econ.call(open_fund.functions.tally(0, 0))[2] == (4 * math.isqrt(25 * WAD)) ** 2 - 100 * WAD
    gated_project = econ.call(gated.functions.projectCount()) - 1
    approve(econ, sybils[0], gated.address, 25 * WAD)
    econ.tx(gated.functions.contribute(gated_project, 25 * WAD), sybils[0])  # the one verified identity
    for s in sybils[1:]:
        approve(econ, s, gated.address, 25 * WAD)
        expect_revert(econ, gated.functions.contribute(gated_project, 25 * WAD), s, reverts.NotVerified)
    assert econ.call(gated.functions.tally(0, gated_project))[2] == 0


def test_the_fund_collects_a_finished_tasks_public_goods_share_into_the_pool(econ):
    task = licensed_task(econ)
    econ.run_to_finished(task)
    fund = E(econ).fund
    owed = econ.call(task.functions.claimable(fund.address))
    assert owed >= econ.params.reward_deposit * 1_000 // 10_000
    pool = econ.call(fund.functions.matchingPool())
    econ.tx(fund.functions.collect(task.address), econ.stranger)
    assert econ.call(fund.functions.matchingPool()) == pool + owed
    expect_revert(econ, fund.functions.collect(task.address), econ.stranger, reverts.NothingToClaim)


# ------------------------------------------------------------------ credits and DPPs


def grant_all(net, task):
    C = E(net).credits.functions
    people = [net.owner, *net.registered(task), *net.staked]
    for who in people:
        net.tx(C.grant(task.address, who.address), net.stranger)
    return people


def test_credits_come_from_verified_activity_by_participant_type(econ, finished_task):
    task, C = finished_task, E(econ).credits.functions
    s = ECONOMY
    expect_revert(econ, C.grant(econ.stranger.address, econ.owner.address), econ.stranger, reverts.NotATask)
    people = grant_all(econ, task)
    for who in people:
        kinds = [econ.call(C.creditsByKind(who.address, k)) for k in range(3)]
        assert kinds[0] == (s.owner_credits if who == econ.owner else 0)
        assert kinds[1] == s.participant_credits * econ.call(task.functions.contributionsOf(who.address))
        assert kinds[2] == s.evaluator_credits * econ.call(task.functions.majorityVotesOf(who.address))
        assert econ.call(C.creditsOf(who.address)) == sum(kinds)
    assert any(econ.call(C.creditsByKind(e.address, 2)) > 0 for e in econ.staked)
    expect_revert(econ, C.grant(task.address, econ.owner.address), econ.stranger, reverts.AlreadyGranted)
    expect_revert(econ, C.grant(task.address, econ.strangers[1].address), econ.stranger, reverts.NoActivity)
    unfinished = econ.make_task()
    expect_revert(econ, C.grant(unfinished.address, econ.owner.address), econ.stranger, reverts.TaskNotFinished)


def propose_bps(net, who, value):
    P = E(net).proposals.functions
    receipt = net.tx(P.propose(ECONOMIC, "raise the public-goods share", cid("dpp text").to_chain(), KEY_BPS, value),
                     who)
    return receipt.event("ProposalFiled").args["id"]


def test_proposals_are_recorded_or_refused_by_name(econ):
    P = E(econ).proposals.functions
    count = lambda: econ.call(P.proposalCount())  # noqa: E731
    r = econ.tx(P.propose(INFRASTRUCTURE, "IPFS pinning service", cid("infra").to_chain(), b"\0" * 32, 0),
                econ.stranger)
    infra = r.event("ProposalFiled").args["id"]
    assert econ.call(P.state(infra)) == 0  # Recorded: no vote
    expect_revert(econ, P.castVote(infra, True, 1), econ.owner, reverts.NotEconomic)
    expect_revert(econ, P.propose(ECONOMIC, "t", cid("x").to_chain(), b"evaluatorFee".ljust(32, b"\0"), 1),
                  econ.stranger, reverts.NotGovernable, probe=count)
    expect_revert(econ, P.propose(ECONOMIC, "t", cid("x").to_chain(), KEY_BPS, 5_001), econ.stranger,
                  reverts.ParameterOutOfRange, probe=count, value=5_001)
    expect_revert(econ, P.propose(ECONOMIC, "t", cid("x").to_chain(), KEY_SUPPLY, ECONOMY.licence_supply - 1),
                  econ.stranger, reverts.ParameterOutOfRange, probe=count)
    expect_revert(econ, P.propose(INFRASTRUCTURE, "t", cid("x").to_chain(), KEY_BPS, 1), econ.stranger,
                  reverts.NotGovernable, probe=count)
    expect_revert(econ, P.propose(ECONOMIC, "", cid("x").to_chain(), KEY_BPS, 1), econ.stranger,
                  reverts.InvalidTitle, probe=count)
    expect_revert(econ, P.propose(ECONOMIC, "t", cid("x").to_chain(), KEY_BPS, 1), econ.strangers[6],
                  reverts.NotVerified, probe=count)
    # nobody but the timelock sets a parameter
    expect_revert(econ, E(econ).parameters.functions.set(KEY_BPS, 0), econ.deployer, reverts.NotTimelock)
    expect_revert(econ, L(econ).set(KEY_RATE, 0), econ.deployer, reverts.NotTimelock)
    T = E(econ).timelock.functions
    assert not econ.call(T.hasRole(econ.call(T.DEFAULT_ADMIN_ROLE()), econ.deployer.address))


def test_an_economic_dpp_votes_quadratically_waits_for_the_timelock_and_changes_new_tasks(econ, finished_task):
    P = E(econ).proposals.functions
    people = grant_all(econ, finished_task)
    credits = {w.address: econ.call(E(econ).credits.functions.creditsOf(w.address)) for w in people}
    dpp = propose_bps(econ, econ.stranger, 2_000)
    owner_budget = credits[econ.owner.address]
    n = math.isqrt(owner_budget)
    spent = lambda: econ.call(P.creditsSpent(dpp, econ.owner.address))  # noqa: E731
    expect_revert(econ, P.castVote(dpp, True, n + 1), econ.owner, reverts.InsufficientCredits,
                  budget=owner_budget, cost=(n + 1) ** 2, probe=spent)
    econ.tx(P.castVote(dpp, True, n - 1), econ.owner)
    econ.tx(P.castVote(dpp, True, 1), econ.owner)  # adding votes: the total costs its square
    assert spent() == n * n
    expect_revert(econ, P.castVote(dpp, True, 1), econ.owner, reverts.InsufficientCredits)
    expect_revert(econ, P.castVote(dpp, False, 1), econ.owner, reverts.CannotSwitchSides)
    # a rich account without credits has no voice: tokens buy nothing here
    rich = econ.strangers[1]  # verified, no credits
    econ.tx(econ.din.token.functions.transfer(rich.address, 10**8 * WAD), econ.deployer)
    expect_revert(econ, P.castVote(dpp, False, 1), rich, reverts.InsufficientCredits, budget=0, cost=1)
    against = econ.staked[0]
    m = math.isqrt(credits[against.address])
    econ.tx(P.castVote(dpp, False, m), against)
    proposal = econ.call(P.proposal(dpp))
    assert (proposal[8], proposal[9]) == (n, m)
    for p in econ.registered(finished_task):
        econ.tx(P.castVote(dpp, True, math.isqrt(credits[p.address])), p)
    expect_revert(econ, P.queue(dpp), econ.stranger, reverts.WrongState)
    econ.chain.mine_to(econ.call(P.proposal(dpp))[6] + 1)
    expect_revert(econ, P.castVote(dpp, True, 1), econ.staked[1], reverts.VotingClosed)
    assert econ.call(P.state(dpp)) == 3  # Succeeded
    econ.tx(P.queue(dpp), econ.stranger)
    assert econ.call(P.state(dpp)) == 4  # Queued
    expect_revert(econ, P.execute(dpp), econ.stranger, reverts.TimelockUnexpectedOperationState,
                  probe=lambda: econ.call(E(econ).parameters.functions.publicGoodsBps()))
    ready = econ.call(E(econ).timelock.functions.getTimestamp(econ.call(P.operationOf(dpp))))
    econ.chain.mine_until_time(ready)
    econ.tx(P.execute(dpp), econ.stranger)
    assert econ.call(P.state(dpp)) == 5  # Executed
    assert econ.call(E(econ).parameters.functions.publicGoodsBps()) == 2_000
    # new tasks must use the new share; the old one is refused
    approve(econ, econ.owner, econ.din.factory.address, 10**24)
    with pytest.raises(reverts.InvalidParameters):
        econ.tx(econ.din.factory.functions.createTask(econ.default_params().to_chain()), econ.owner)
    task = create_task(econ.chain, econ.din, econ.default_params(public_goods_bps=2_000), owner=econ.owner)
    assert econ.call(task.functions.params())[11] == 2_000


def test_credits_earned_after_a_proposal_do_not_count_in_its_vote(econ, finished_task):
    P, C = E(econ).proposals.functions, E(econ).credits.functions
    dpp = propose_bps(econ, econ.stranger, 0)
    econ.tx(C.grant(finished_task.address, econ.owner.address), econ.stranger)
    assert econ.call(C.creditsOf(econ.owner.address)) == ECONOMY.owner_credits
    expect_revert(econ, P.castVote(dpp, True, 1), econ.owner, reverts.InsufficientCredits, budget=0)
    later = propose_bps(econ, econ.stranger, 0)
    econ.tx(P.castVote(later, True, 10), econ.owner)


def test_a_defeated_or_unquorate_dpp_cannot_be_queued(econ, finished_task):
    P = E(econ).proposals.functions
    grant_all(econ, finished_task)
    dpp = propose_bps(econ, econ.stranger, 0)
    econ.tx(P.castVote(dpp, True, 3), econ.owner)  # 9 credits: 3 votes, below the quorum of 10
    econ.chain.mine_to(econ.call(P.proposal(dpp))[6] + 1)
    assert econ.call(P.state(dpp)) == 2  # Defeated
    expect_revert(econ, P.queue(dpp), econ.stranger, reverts.WrongState)
    expect_revert(econ, P.execute(dpp), econ.stranger, reverts.WrongState)


def test_governance_changes_the_harberger_rate_from_its_block_on(econ, finished_task):
    P, f = E(econ).proposals.functions, L(econ)
    people = grant_all(econ, finished_task)
    holder = econ.staked[0]
    licence_id = econ.call(f.licenceOf(holder.address))[0]
    r = econ.tx(P.propose(ECONOMIC, "double the tax", cid("t").to_chain(), KEY_RATE, 2 * RATE), econ.stranger)
    dpp = r.event("ProposalFiled").args["id"]
    for w in people:
        budget = econ.call(E(econ).credits.functions.creditsOf(w.address))
        if budget:
            econ.tx(P.castVote(dpp, True, math.isqrt(budget)), w)
    econ.chain.mine_to(econ.call(P.proposal(dpp))[6] + 1)
    econ.tx(P.queue(dpp), econ.stranger)
    econ.chain.mine_until_time(econ.call(E(econ).timelock.functions.getTimestamp(econ.call(P.operationOf(dpp)))))
    settled = econ.tx(f.settle(licence_id), econ.stranger).block
    before = econ.call(f.taxPaidOn(licence_id))
    price = licence_state(econ, licence_id)[1]
    changed = econ.tx(P.execute(dpp), econ.stranger).block
    assert econ.call(f.taxRate()) == 2 * RATE
    econ.chain.mine(4)
    end = econ.tx(f.settle(licence_id), econ.stranger).block
    expected = price * (RATE * (changed - settled) + 2 * RATE * (end - changed)) // WAD
    assert econ.call(f.taxPaidOn(licence_id)) - before == expected
