"""Stateful property test of the economy (issue 18): random sequences of licence trades and tax
settlements, quadratic-funding rounds, credit grants, DPPs, quadratic votes, token transfers and
mining, by random actors (verified or not, with or without credits, rich or poor), with the
issue's properties checked after every step:

- licences: the tax paid plus the deposits left plus what was refunded equals what was deposited,
  to the wei, and the licence contract holds exactly the deposits left; every licence has one holder,
  an account holds at most one, and only a holder in good standing is licensed;
- the fund: each finalized round paid out as matches exactly min(its pool, its projects' total
  weight), to the wei (the whole pool whenever the weights reach it; nothing when no project had two
  contributors), and the fund always holds at least what it owes;
- credits: credits spent on a proposal are the square of the votes cast and never exceed the
  credits the voter held at the proposal's snapshot; an account's credits are exactly what it was
  granted;
- votes: the outcome of every proposal equals the outcome computed from the ballots alone (so no
  token balance, moved at random between voters, changes it).

The network (with one finished task whose owner, participants and evaluators can be granted
credits) is deployed once per process; each example starts from a snapshot that is reverted after.
A Panic or an unnamed revert is a contract bug; named reverts are part of the game.
"""

from __future__ import annotations

import functools
import math

import eth  # noqa: F401 - py-evm raises the recursion limit on import: let it before hypothesis runs
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from din_lab.chain import connect
from din_lab.chain.din import WAD, opt_in
from din_lab.errors import ContractRevert, Panic
from tests.helpers import ECONOMY, Net, cid, deploy_economy_network, in_fresh_thread

pytestmark = pytest.mark.stateful

KEYS = [b"publicGoodsBps", b"minBond", b"feeCap", b"harbergerRate", b"licenceSupply", b"evaluatorFee"]
KEYS = [k.ljust(32, b"\0") for k in KEYS]
ACTORS = [1, 3, 4, 5, 6, 7, 8, 23, 24, 25, 26, 27, 33, 34, 37, 38, 39]  # 37..39 are not verified
LICENCES = st.integers(0, ECONOMY.licence_supply - 1)
PRICES = st.sampled_from([1, 10**15, WAD, 25 * WAD, 50 * WAD, 300 * WAD, 10**30])
DEPOSITS = st.sampled_from([1, 10**14, WAD, 5 * WAD, 40 * WAD])


@functools.cache
def network():
    """The economy network and one finished task in it (licences bought by its evaluators)."""
    chain = connect("embedded", accounts=40)
    din = deploy_economy_network(chain)
    net = Net(chain=chain, din=din, backend="embedded")
    licence = din.economy.licence
    task = net.make_task()
    net.register(task)
    for i, e in enumerate(net.staked):
        net.tx(din.token.functions.approve(licence.address, ECONOMY.reserve_price + 100 * WAD), e)
        net.tx(licence.functions.buy(i, ECONOMY.reserve_price, 100 * WAD, 100 * WAD), e)
        opt_in(chain, task, evaluator=e)
    net.tx(task.functions.startTraining(), net.owner)
    net.draw(task)
    net.run_to_finished(task)
    return chain, din, task


class EconomyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain, self.din, self.task = network()
        self.snap = self.chain.snapshot()
        self.A = self.chain.accounts
        e = self.din.economy
        self.L, self.F, self.C, self.P = (e.licence.functions, e.fund.functions, e.credits.functions,
                                          e.proposals.functions)
        self.token = self.din.token.functions
        self.deposited = self.chain.call(self.L.totalDeposited()) + self.chain.call(self.L.totalTaxPaid())
        self.refunded = 0
        self.granted: dict[str, list[tuple[int, int]]] = {}  # account -> [(block, credits)]
        self.ballots: dict[int, dict[str, tuple[bool, int]]] = {}  # proposal -> voter -> (support, votes)
        self.snapshots: dict[int, int] = {}
        self.rounds_checked = 0

    def teardown(self) -> None:
        self.chain.revert(self.snap)

    def send(self, fn, who: int):
        try:
            return self.chain.transact(fn, sender=self.A[who])
        except Panic:
            raise
        except ContractRevert as e:
            assert type(e) is not ContractRevert, f"unnamed revert: {e}"
            return None

    def give(self, who: int, spender: str, amount: int) -> None:
        self.send(self.token.approve(spender, amount), who)

    # ------------------------------------------------------------------ licences
    @rule(who=st.sampled_from(ACTORS), lid=LICENCES, offer=st.sampled_from(["exact", "below", "above"]),
          price=PRICES, deposit=DEPOSITS)
    def buy(self, who, lid, offer, price, deposit):
        current = self.chain.call(self.L.licenceInfo(lid))[1]  # what a buyer pays now
        offered = {"exact": current, "below": current - 1, "above": current + WAD}[offer]
        self.give(who, self.din.economy.licence.address, offered + deposit)
        receipt = self.send(self.L.buy(lid, offered, price, deposit), who)
        if receipt is not None:  # a buyer never pays above its offer (below it only if the price fell
            # in the block it was mined: a foreclosure found by the buy's own settlement)
            paid = receipt.event("Bought").args["price"]
            assert paid <= offered
            assert offer != "below" or any(ev.event == "Foreclosed" for ev in receipt.events)
            self.deposited += deposit
            self.refunded += sum(ev.args["refund"] for ev in receipt.events if ev.event == "Returned")

    @rule(who=st.sampled_from(ACTORS), lid=LICENCES, price=PRICES)
    def set_price(self, who, lid, price):
        self.send(self.L.setPrice(lid, price), who)

    @rule(who=st.sampled_from(ACTORS), lid=LICENCES, amount=DEPOSITS)
    def top_up(self, who, lid, amount):
        self.give(who, self.din.economy.licence.address, amount)
        if self.send(self.L.topUp(lid, amount), who) is not None:
            self.deposited += amount

    @rule(who=st.sampled_from(ACTORS), lid=LICENCES, amount=DEPOSITS)
    def withdraw(self, who, lid, amount):
        if self.send(self.L.withdraw(lid, amount), who) is not None:
            self.refunded += amount

    @rule(who=st.sampled_from(ACTORS), lid=LICENCES)
    def give_back(self, who, lid):
        receipt = self.send(self.L.giveBack(lid), who)
        if receipt is not None:
            self.refunded += receipt.event("Returned").args["refund"]

    @rule(who=st.sampled_from(ACTORS), lid=LICENCES)
    def settle(self, who, lid):
        self.send(self.L.settle(lid), who)

    @rule(n=st.sampled_from([1, 3, 10, 60, 400]))
    def mine(self, n):
        self.chain.mine(n)

    # ------------------------------------------------------------------ fund
    @rule(who=st.sampled_from(ACTORS), recipient=st.sampled_from(ACTORS))
    def register_project(self, who, recipient):
        self.send(self.F.registerProject(self.A[recipient].address, cid(f"p{recipient}").to_chain()), who)

    @rule(who=st.sampled_from(ACTORS))
    def start_round(self, who):
        self.send(self.F.startRound(), who)

    @rule(who=st.sampled_from(ACTORS), project=st.integers(0, 3), amount=st.sampled_from([1, 7, WAD, 9 * WAD]))
    def contribute(self, who, project, amount):
        self.give(who, self.din.economy.fund.address, amount)
        self.send(self.F.contribute(project, amount), who)

    @rule(who=st.sampled_from(ACTORS))
    def finalize_round(self, who):
        self.send(self.F.finalizeRound(2), who)

    @rule(who=st.sampled_from(ACTORS))
    def claim(self, who):
        self.send(self.F.claim(), who)

    @rule(amount=st.sampled_from([1, 3 * WAD, 1_000 * WAD + 1]))
    def donate(self, amount):
        self.send(self.token.transfer(self.din.economy.fund.address, amount), 0)

    @rule(who=st.sampled_from(ACTORS))
    def collect(self, who):
        self.send(self.F.collect(self.task.address), who)

    # ------------------------------------------------------------------ credits, DPPs, votes
    @rule(who=st.sampled_from(ACTORS), account=st.sampled_from(ACTORS))
    def grant(self, who, account):
        receipt = self.send(self.C.grant(self.task.address, self.A[account].address), who)
        if receipt is not None:
            total = sum(ev.args["credits"] for ev in receipt.events if ev.event == "CreditsGranted")
            self.granted.setdefault(self.A[account].address, []).append((receipt.block, total))

    @rule()
    def grant_everyone(self):
        """Everyone who took part in the finished task is granted its credits (a macro step)."""
        for account in ACTORS:
            self.grant(who=33, account=account)

    @rule(who=st.sampled_from(ACTORS), pid=st.integers(0, 3), support=st.booleans())
    def vote_all_in(self, who, pid, support):
        """A voter spends its whole budget on one side."""
        if pid not in self.snapshots:
            return
        budget = sum(c for b, c in self.granted.get(self.A[who].address, []) if b <= self.snapshots[pid])
        spent = self.ballots[pid].get(self.A[who].address, (support, 0))[1]
        if math.isqrt(budget) > spent:
            self.vote(who=who, pid=pid, support=support, votes=math.isqrt(budget) - spent)

    @rule(who=st.sampled_from(ACTORS), economic=st.booleans(), key=st.sampled_from(KEYS),
          value=st.sampled_from([0, 1, 500, 2_000, 5_001, 10**14, 9, 16, 300]))
    def propose(self, who, economic, key, value):
        receipt = self.send(self.P.propose(int(economic), "a DPP", cid("dpp").to_chain(),
                                           key if economic else b"\0" * 32, value if economic else 0), who)
        if receipt is not None:
            args = receipt.event("ProposalFiled").args
            self.ballots[args["id"]] = {}
            self.snapshots[args["id"]] = args["snapshot"]

    @rule(who=st.sampled_from(ACTORS), pid=st.integers(0, 3), support=st.booleans(),
          votes=st.sampled_from([1, 2, 3, 5, 10, 40]))
    def vote(self, who, pid, support, votes):
        receipt = self.send(self.P.castVote(pid, support, votes), who)
        if receipt is not None:
            address = self.A[who].address
            before = self.ballots[pid].get(address, (support, 0))
            assert before[0] == support
            self.ballots[pid][address] = (support, before[1] + votes)

    @rule(who=st.sampled_from(ACTORS), pid=st.integers(0, 3))
    def queue(self, who, pid):
        self.send(self.P.queue(pid), who)

    @rule(who=st.sampled_from(ACTORS), pid=st.integers(0, 3), wait=st.booleans())
    def execute(self, who, pid, wait):
        if wait and pid in self.ballots:
            try:
                ready = self.chain.call(self.din.economy.timelock.functions.getTimestamp(
                    self.chain.call(self.P.operationOf(pid))))
            except ContractRevert:
                ready = 0
            if ready > 1:
                self.chain.mine_until_time(ready)
        self.send(self.P.execute(pid), who)

    @rule(src=st.sampled_from([0, 3, 23]), dst=st.sampled_from(ACTORS), amount=st.sampled_from([WAD, 10**6 * WAD]))
    def move_tokens(self, src, dst, amount):
        """Token balances move between voters: they must never change an outcome."""
        self.send(self.token.transfer(self.A[dst].address, amount), src)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def licence_ledger(self):
        held = self.chain.call(self.token.balanceOf(self.din.economy.licence.address))
        left, paid = self.chain.call(self.L.totalDeposited()), self.chain.call(self.L.totalTaxPaid())
        assert left == held
        assert paid + left + self.refunded == self.deposited
        holders = [self.chain.call(self.L.ownerOf(i)) for i in range(self.chain.call(self.L.supply()))]
        fund = self.din.economy.fund.address
        people = [h for h in holders if h != fund]
        assert len(people) == len(set(people))
        for i, h in enumerate(holders):
            info = self.chain.call(self.L.licenceInfo(i))
            if h != fund:
                assert self.chain.call(self.L.isLicensed(h)) == (not info[3])

    @invariant()
    def fund_pays_its_pool(self):
        n = self.chain.call(self.F.roundCount())
        for r in range(self.rounds_checked, n):
            end, finalized, contributions, pool, matched, projects, weight, settled = \
                self.chain.call(self.F.roundInfo(r))
            if not finalized:
                break
            event("a QF round finalized with matches" if matched else "a QF round finalized without matches")
            weights = sum(self.chain.call(self.F.tally(r, p))[2] for p in projects)
            assert weights == weight and settled == len(projects)
            assert sum(self.chain.call(self.F.matchOf(r, p)) for p in projects) == matched
            assert matched == min(pool, weights)
            self.rounds_checked = r + 1
        held = self.chain.call(self.token.balanceOf(self.din.economy.fund.address))
        assert held >= self.chain.call(self.F.liabilities())

    @invariant()
    def credits_and_votes(self):
        for address, grants in self.granted.items():
            assert self.chain.call(self.C.creditsOf(address)) == sum(c for _, c in grants)
        for pid, ballots in self.ballots.items():
            snapshot = self.snapshots[pid]
            for voter, (_, votes) in ballots.items():
                budget = sum(c for b, c in self.granted.get(voter, []) if b <= snapshot)
                spent = self.chain.call(self.P.creditsSpent(pid, voter))
                assert spent == votes * votes <= budget
            proposal = self.chain.call(self.P.proposal(pid))
            yes = sum(v for s, v in ballots.values() if s)
            no = sum(v for s, v in ballots.values() if not s)
            assert (proposal[8], proposal[9]) == (yes, no)
            state = self.chain.call(self.P.state(pid))
            if proposal[1] == 0:
                assert state == 0
            elif self.chain.block_number > proposal[6]:
                passed = yes > no and yes >= ECONOMY.quorum_votes
                assert (state == 2) == (not passed), (state, yes, no)
                event(f"a DPP ended {['Recorded', 'Active', 'Defeated', 'Succeeded', 'Queued', 'Executed', 'Expired'][state]}")


SETTINGS = settings(max_examples=8, stateful_step_count=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_economy_invariants_under_random_calls():
    in_fresh_thread(lambda: run_state_machine_as_test(EconomyMachine, settings=SETTINGS))

