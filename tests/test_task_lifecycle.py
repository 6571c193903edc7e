"""A whole task on each backend: balances move exactly as the contract says."""

from din_lab.chain import assignment as assign
from din_lab.chain.din import WAD, Phase
from tests.helpers import cid


def test_full_task_pays_out_the_deposit_exactly(net):
    task = net.started_task(n_participants=6)
    F = task.functions
    owner_before = net.balance(net.owner.address)
    net.run_to_finished(task)
    assert net.call(F.phase()) == Phase.FINISHED
    p = net.params
    public_goods = p.reward_deposit * p.public_goods_bps // 10_000
    pool = p.reward_deposit - public_goods
    shares = [net.call(F.rewardOf(a.address)) for a in net.registered(task)]
    assert sum(shares) == pool  # cumulative split: no dust
    assert net.call(F.claimable(net.fund.address)) == public_goods
    fees = sum(e.args["amount"] for e in net.chain.events.where("FeePaid", address=task.address))
    assert net.call(F.claimable(net.owner.address)) == p.fee_budget - fees
    for a in [net.owner, net.fund, *net.registered(task), *net.staked]:
        if net.call(F.claimable(a.address)) or net.call(F.rewardOf(a.address)):
            net.tx(F.claim(), a)
    for e in net.staked:  # bonds come back once the task is over
        net.tx(F.withdrawBond(), e)
        assert net.call(F.bondOf(e.address)) == 0
    assert net.balance(task.address) == 0
    assert net.balance(net.owner.address) == owner_before + p.fee_budget - fees
    net.tx(F.publishGlobalModel(net.call(F.finalRound()), cid("final").to_chain()), net.owner)


def test_assignment_is_recomputable_off_chain(net):
    task = net.started_task(n_participants=7)
    info = net.round_info(task, 0)
    seed, groups = info[0], info[4]
    assert groups == 2
    seen = []
    for g in range(groups):
        on_chain = net.call(task.functions.subgroupMembers(0, g))
        idx = assign.subgroup_members(g, seed=seed, participants=7, subgroup_size=3)
        assert on_chain == [net.call(task.functions.participantAt(i)) for i in idx]
        seen += idx
    assert sorted(seen) == list(range(7))  # a partition; the last subgroup takes the remainder
    evaluators = net.call(task.functions.evaluators())
    cseed = assign.committee_seed(seed)
    for g in range(groups):
        expect = assign.draw_committee(evaluators=evaluators, size=3, seed=cseed, offset=3 * g)
        assert net.call(task.functions.committee(0, g, 0)) == expect
        assert len(set(expect)) == 3


def test_total_supply_unchanged(net):
    supply = net.call(net.din.token.functions.totalSupply())
    task = net.started_task()
    net.run_to_finished(task, silent={net.staked[0].address})
    assert net.call(net.din.token.functions.totalSupply()) == supply == 10**9 * WAD
