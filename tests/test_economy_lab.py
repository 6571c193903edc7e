"""The economy in the lab (issue 18): a task whose evaluators buy licences before they opt in, then a
quadratic-funding round and an economic DPP played by that task's agents (din_lab.protocol.economy),
checked against the chain and against the reference rules."""

from __future__ import annotations

import math

import pytest

from din_lab.chain import reverts
from din_lab.chain.din import WAD
from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.experiment import tabulate
from din_lab.protocol import economy
from din_lab.protocol.lab import Lab


@pytest.fixture(scope="module")
def lab():
    lab = Lab.create(ExperimentConfig(participants=6, evaluators=4, rounds=2, economy=True, seed=1,
                                      evaluation="plaintext", secagg=False))
    lab.run()
    yield lab
    lab.close()


def test_a_task_with_licences_runs_and_its_tokens_are_accounted_for(lab):
    summary = tabulate(lab, seconds=1.0).summary
    assert summary["tokens"]["conserved"] is True
    table = economy.licence_table(lab)
    assert len(table) == 4 and {row["holder"] for row in table} == {e.name for e in lab.evaluators}
    L = lab.din.economy.licence.functions
    assert all(lab.chain.call(L.isLicensed(e.address)) for e in lab.evaluators)
    assert lab.chain.call(lab.task.functions.publicGoodsFund()) == lab.din.economy.fund.address


def test_evaluators_without_a_licence_stay_out(tmp_path):
    """Three licences for four evaluators: the fourth finds none at or below its valuation."""
    lab = Lab.create(ExperimentConfig(participants=6, evaluators=4, rounds=1, economy=True, licence_supply=3,
                                      seed=2, evaluation="plaintext", secagg=False))
    try:
        assert lab.chain.call(lab.task.functions.evaluatorCount()) == 3
        assert any("stays out" in e.action for e in lab.events)
    finally:
        lab.close()


def test_a_qf_round_over_the_tasks_agents_pays_the_contract_rule_and_refuses_sybils(lab):
    fund = lab.din.economy.fund
    before = lab.chain.call(fund.functions.matchingPool())
    result = economy.qf_round(lab, seed=3, sybil_split=3)
    assert result.pool == pytest.approx(before / WAD)
    assert len(result.refused) == 2 and all("NotVerified" in r for r in result.refused)
    # the contract paid the reference rule, to the wei
    r = result.round
    gifts = {}
    for p in result.order:  # the order the contract credited the projects in
        gifts[p] = {}
        for agent in (lab.owner, *lab.participants, *lab.evaluators):
            c = lab.chain.call(fund.functions.contributionOf(r, p, agent.address))
            if c:
                gifts[p][agent.address] = c
    expected = economy.quadratic_match(gifts, pool=before)
    assert {p: lab.chain.call(fund.functions.matchOf(r, p)) for p in gifts} == expected
    assert sum(expected.values()) == min(before, sum(
        max(0, sum(math.isqrt(c) for c in by.values()) ** 2 - sum(by.values())) for by in gifts.values()))
    for project in result.projects:  # every maintainer claimed its payout
        assert project.paid == pytest.approx(project.contributions + project.match)
    # the task's own token flows still balance, net of the round's gifts and payouts
    assert tabulate(lab, seconds=1.0).summary["tokens"]["conserved"] is True


def test_an_economic_dpp_voted_by_the_agents_changes_what_new_tasks_must_use(lab):
    vote = economy.dpp_vote(lab, value=1_500, support=1.0, seed=4)
    assert vote.state == "Executed" and (vote.before, vote.after) == (500, 1_500)
    assert vote.votes_for == sum(v for side, v, _ in vote.ballots.values() if side)
    for name, (_, votes, spent) in vote.ballots.items():
        assert spent == votes * votes <= sum(vote.credits[name].values())
    assert vote.credits["owner"]["owner"] == lab.din.economy.settings.owner_credits
    params = lab.chain.call(lab.din.economy.parameters.functions.publicGoodsBps())
    assert params == 1_500
    # the old share is now refused by the factory (its check is a view anyone can call)
    old = list(lab.task_params.to_chain())
    with pytest.raises(reverts.InvalidParameters):
        lab.chain.call(lab.din.factory.functions.checkParams(tuple(old)))
    old[11] = 1_500
    lab.chain.call(lab.din.factory.functions.checkParams(tuple(old)))


def test_bad_qf_gifts_are_refused_before_anything_is_sent(lab):
    fund = lab.din.economy.fund.functions
    rounds, block = lab.chain.call(fund.roundCount()), lab.chain.block_number
    for gifts in ({"owner": {7: 1.0}}, {"nobody": {0: 1.0}}, {"owner": {0: 10**9}}, {"owner": {0: -1.0}}):
        with pytest.raises(ConfigError):
            economy.qf_round(lab, gifts=gifts)
    with pytest.raises(ConfigError):
        economy.qf_round(lab, projects=[f"p{i}" for i in range(200)])  # more gifts than a round has blocks
    with pytest.raises(ConfigError):
        economy.dpp_vote(lab, support=1.5)
    assert (lab.chain.call(fund.roundCount()), lab.chain.block_number) == (rounds, block)


def test_economy_apis_refuse_a_lab_without_an_economy():
    with pytest.raises(ConfigError):
        ExperimentConfig(economy=True, public_goods_bps=6_000)
    with pytest.raises(ConfigError, match="licence_price"):
        ExperimentConfig(licence_price=10.0)  # an economy setting without the economy
    lab = Lab.create(ExperimentConfig(participants=3, evaluators=3, subgroup_size=3, rounds=1, seed=5,
                                      evaluation="plaintext", secagg=False))
    try:
        with pytest.raises(ConfigError):
            economy.licence_table(lab)
    finally:
        lab.close()


def test_a_follow_on_task_runs_under_the_governed_share(lab):
    """After a DPP changed the share (the test above), the next task in the same network is created
    with it by its owner, and its tokens are accounted for; its new evaluators buy licences from the
    fund (a licenceSupply DPP grows the supply first)."""
    grown = economy.dpp_vote(lab, parameter="licenceSupply", value=8, support=1.0, seed=6)
    assert grown.state == "Executed" and grown.after == 8
    share = lab.chain.call(lab.din.economy.parameters.functions.publicGoodsBps())
    nxt = lab.next_task(seed=7)
    try:
        assert nxt.din.factory.address == lab.din.factory.address and nxt.task.address != lab.task.address
        assert lab.chain.call(nxt.task.functions.params())[11] == share
        nxt.run()
        summary = tabulate(nxt, seconds=1.0).summary
        assert summary["tokens"]["conserved"] is True
        deposit = nxt.task_params.reward_deposit
        assert summary["tokens"]["public_goods"] == pytest.approx(deposit * share / 10_000 / WAD)
    finally:
        nxt.close()
    with pytest.raises(ConfigError):
        nxt.next_task(economy=False)
