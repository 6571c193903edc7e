"""Stateful property test (issue 14): random sequences of calls by random actors (owners,
participants, evaluators, strangers, a hostile task creator) on two DIN tasks that share one
deployment (token, evaluator registry, factory), with the issue's properties checked after every
step:

- conservation: the token supply never changes and every token is held by someone;
- isolation: each task holds exactly its liabilities (plus what was sent to it directly, until
  ``sweepExcess``), its ``bondOf`` ledger moves only with its own opt-ins, opt-outs, withdrawals
  and ``EvaluatorSlashed`` events (so a slash in one task never touches the other's bonds), slashes
  never exceed the bond and always go to the factory's public-goods fund;
- stake at risk: opt-out only in Registration, withdrawal only once the task ended, so while a
  task trains or scores every evaluator's bond plus what it was slashed equals the task's bond;
  a slashed evaluator never votes, reveals or earns again in that task;
- no double claim: what each account claimed plus what it can still claim equals what the events
  credited it (fees, refunds, slashes, public goods, sweeps) plus the reward share it took once;
- every task can end: at the end of each example (and in a rule, at random points) each task is
  driven to Finished, Cancelled or Abandoned by a stranger alone (mining past deadlines, then
  only permissionless calls), after which everyone withdraws and claims what they are owed and
  the task is left holding nothing but tokens sent to it directly.

The network is deployed once per process; every example creates its two tasks from a snapshot
that is reverted afterwards. Calls that revert raise a ContractRevert subclass and are part of
the game, except a Panic (overflow, bounds) or an unnamed revert, which is a contract bug. Macro
rules play the protocol (plaintext or encrypted scoring, with or without share reveals, some
committee slots silent, dissenting or mis-revealing; relayed batches) so that many examples reach
Scoring and the end with the random calls interleaved; the owner of either task may leave for good.

Profiles: the CI default (25 examples of up to 40 steps); ``DIN_LAB_FUZZ=1`` (``make fuzz``) runs
10,000 (``DIN_LAB_FUZZ_EXAMPLES`` overrides the count).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import eth  # noqa: F401 - py-evm raises the recursion limit on import: let it before hypothesis runs
import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, event, settings
from hypothesis import Phase as HPhase
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from hypothesis.statistics import collector as statistics_collector

from din_lab.chain import CallFailed, Chain
from din_lab.chain.din import (
    WAD,
    DinDeployment,
    Phase,
    SubgroupStatus,
    TaskParams,
    cid_arg,
    create_task,
    outputs_commitment,
    result_commitment,
    scores_commitment,
    sign_update,
)
from din_lab.cid import Cid
from din_lab.errors import ContractRevert, Panic
from tests.helpers import MIN_BOND, MIN_WINDOW, cid, deploy_network, in_fresh_thread, salt

pytestmark = pytest.mark.stateful

DEPLOYER, OWNER, FUND = 0, 1, 2
ZERO = "0x0000000000000000000000000000000000000000"
PARTICIPANTS = list(range(3, 9))
EVALUATORS = list(range(23, 33))  # 1,000 DIN each (deploy_network)
STRANGERS = list(range(33, 40))  # no tokens (unless a rule gives them some)
CREATORS = [STRANGERS[4], EVALUATORS[9], OWNER]  # who creates task B (funded when needed)
DRIVER = STRANGERS[6]  # the stranger who drives tasks to their end
REGISTRANTS = PARTICIPANTS + STRANGERS[:2]
VOTERS = EVALUATORS[:8] + [STRANGERS[2], PARTICIPANTS[0]]
BONDERS = EVALUATORS + [STRANGERS[3], PARTICIPANTS[1]]
EVERYONE = [OWNER, FUND] + PARTICIPANTS + EVALUATORS + STRANGERS[:4] + [STRANGERS[4]]
# the task's owner (most often), a stranger, a participant, the other task's owner
WHO_OWNERISH = st.sampled_from(["owner", "owner", "owner", "stranger", "participant", "creator"])
TASK = st.sampled_from([0, 0, 1])  # task A a bit more often than task B
HE_PARAMS = '{"poly_modulus_degree":8192}'

R, T, S, FIN, C, A_ = (Phase.REGISTRATION, Phase.TRAINING, Phase.SCORING, Phase.FINISHED, Phase.CANCELLED,
                     Phase.ABANDONED)
ENDED = set(Phase.ENDED)
# phases reachable within one step (a macro rule may cross several)
REACHABLE = {R: {R, T, S, FIN, C, A_}, T: {T, S, FIN, A_}, S: {S, FIN, A_}, FIN: {FIN}, C: {C}, A_: {A_}}

# roundInfo / subgroupInfo tuple positions
SUBMISSION_DEADLINE, NUM_SUBGROUPS, PENDING, GLOBAL_MODEL = 3, 4, 5, 7
COMMIT_START, COMMIT_DEADLINE, REVEAL_DEADLINE, STATUS, COHORT, _RESULT, SEED_BLOCK, _OPENED, _ABORTED, HELD = range(10)


# what the examples did, for the fuzz report (benchmarks/fuzz.py): examples, steps, transactions,
# reverts by name, phases each task reached, how each task ended
FIGURES: Counter = Counter()
BACKEND = {"url": "embedded"}  # set by the test before the machine runs


def note(label: str) -> None:
    """Count ``label`` in the report and in Hypothesis' statistics."""
    FIGURES[label] += 1
    event(label)


@functools.cache
def _network(url: str) -> tuple[Chain, DinDeployment]:
    from din_lab.chain import connect

    chain = connect(url, accounts=40)
    return chain, deploy_network(chain)


def network() -> tuple[Chain, DinDeployment]:
    """Deployed once per process and backend (module-level cache), shared by every example."""
    return _network(BACKEND["url"])


@functools.cache
def _initial_balances(url: str) -> dict[str, int]:
    chain, din = _network(url)
    holders = {a.address for a in chain.accounts} | {e.args["to"] for e in chain.events.where("Transfer")}
    balances = {h: chain.call(din.token.functions.balanceOf(h)) for h in holders}
    assert sum(balances.values()) == chain.call(din.token.functions.totalSupply())
    return balances


def initial_balances() -> dict[str, int]:
    """Every token holder's balance in the deployed network (what each example starts from)."""
    return _initial_balances(BACKEND["url"])


def _cid(c: Cid | tuple) -> tuple:
    return tuple(c.to_chain()) if isinstance(c, Cid) else (bytes(c[0]), int(c[1]))


def good_result(r: int, g: int) -> Cid:
    return cid(f"result r{r} g{g}")


def other_result(r: int, g: int) -> Cid:
    return cid(f"other result r{r} g{g}")


def out_digest(label) -> bytes:
    return hashlib.sha256(repr(label).encode()).digest()


class TaskState:
    """What the machine knows about one task, mostly replayed from its own events."""

    def __init__(self, name: str, contract, params: TaskParams, owner: int, n_target: int) -> None:
        self.name, self.contract, self.params, self.owner, self.n_target = name, contract, params, owner, n_target
        self.address = contract.address
        self.F = contract.functions
        self.absent = False  # the owner left for good
        self.donated = 0  # tokens sent straight to the task
        self.events: list = []  # this task's events, in order
        self.reward_paid: dict[str, int] = {}  # participant -> reward share claim() paid
        self.checked = -1  # fingerprint at the last invariant run
        self.prev_phase, self.last_started = R, -1
        self.committees: dict[tuple[int, int, int], list[str]] = {}
        self.members: dict[tuple[int, int], list[str]] = {}
        self.chose_other: set[tuple[int, int, int, str]] = set()
        self.score_choice: dict[tuple[int, str], list[int]] = {}
        self.output_choice: dict[tuple[int, str], tuple] = {}
        # replayed
        self.started = self.ended = False
        self.ledger: Counter = Counter()  # evaluator -> bond left, by this task's events
        self.slashed: Counter = Counter()
        self.banned: dict[str, int] = {}  # evaluator -> block of its first slash here
        self.opted: set[str] = set()
        self.credits: Counter = Counter()
        self.claimed: Counter = Counter()
        self.fees = 0
        self.swept = 0
        self.settled = None
        self.opened_at: dict[tuple[int, int], int] = {}
        self.dispute_seed_block: dict[tuple[int, int], int] = {}  # the latest (a re-scheduled draw moves it)
        self.committed: set[tuple] = set()
        self.revealed: dict[tuple[int, int, int], list[tuple]] = defaultdict(list)
        self.score_committed: set[tuple[int, str]] = set()
        self.score_revealed: dict[tuple[int, str], list[int]] = {}
        self.outputs_revealed: dict[tuple[int, str], bytes] = {}

    def where(self, name: str, **match) -> list:
        return [e for e in self.events if e.event == name and all(e.args.get(k) == v for k, v in match.items())]


class DinTaskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain, self.din = network()
        self.snap = self.chain.snapshot()
        self.first_block = self.chain.block_number
        self.A = self.chain.accounts
        self.tasks: list[TaskState] = []
        self.by_address: dict[str, TaskState] = {}
        self.index_of = {a.address: i for i, a in enumerate(self.A)}
        self.supply = self.chain.call(self.din.token.functions.totalSupply())
        self.cursor = len(self.chain.events)
        self.balances: dict[str, int] = dict(initial_balances())  # replayed from Transfer events
        self.touched: set[str] = set()  # accounts whose balance moved since the last check
        self._reads: dict[tuple, object] = {}  # view results at chain state _read_version
        self._read_version = -1
        self._working_set: dict[tuple, object] = {}  # the views read since the last prefetch

    def teardown(self) -> None:
        FIGURES["examples"] += 1
        FIGURES["blocks before teardown"] += self.chain.block_number - self.first_block
        try:
            if self.tasks:
                self._sync_events()
                for t in self.tasks:  # every task can end, from wherever the example left it
                    FIGURES[f"teardown: {t.name} left in {Phase.NAMES[self.phase(t)]}"] += 1
                    self._drive_to_end(t)
                    FIGURES[f"ended: {t.name} {Phase.NAMES[self.phase(t)]}"] += 1
                for t in self.tasks:
                    self._drain(t)
                self._check_all()
        finally:
            FIGURES["blocks"] += self.chain.block_number - self.first_block
            self.chain.revert(self.snap)
            write_report()

    # ------------------------------------------------------------------ plumbing
    def addr(self, who: int) -> str:
        return self.A[who].address

    def v(self, fn):
        """A view's result, read once per chain state (the chain moves only by this machine's own
        transactions and mining: Chain.state_version). On a JSON-RPC node the views the invariants
        read in the previous check are fetched together, in one round trip."""
        key = (fn.address, fn.fn_name, repr(fn.args))
        self._forget_stale_reads()
        if key not in self._reads:
            self._reads[key] = self.chain.call_many([fn])[0]
        self._working_set[key] = fn
        value = self._reads[key]
        if isinstance(value, CallFailed):
            raise value.error
        return value

    def _forget_stale_reads(self) -> None:
        if self._read_version != self.chain.state_version:
            self._reads.clear()
            self._read_version = self.chain.state_version

    def _prefetch(self) -> None:
        """Before the invariants: read last check's views in one batch (JSON-RPC nodes only)."""
        if self.chain.backend == "embedded":
            return
        self._forget_stale_reads()
        wanted = [(k, fn) for k, fn in self._working_set.items() if k not in self._reads]
        self._working_set = {}
        for (k, _), value in zip(wanted, self.chain.call_many([fn for _, fn in wanted]), strict=True):
            self._reads[k] = value

    def send(self, fn, who: int):
        """(receipt, None) or (None, the ContractRevert); a Panic or an unnamed revert is a contract bug."""
        try:
            receipt = self.chain.transact(fn, sender=self.A[who])
        except Panic:
            raise
        except ContractRevert as e:
            assert type(e) is not ContractRevert, f"unnamed revert: {e}"
            FIGURES[f"revert {type(e).__name__}"] += 1
            return None, e
        FIGURES["transactions"] += 1
        if fn.fn_name in ("drawRound", "drawDispute") and any(
                e.event in ("SeedScheduled", "DisputeOpened") for e in receipt.events):
            FIGURES["draws rescheduled (seed block older than 256)"] += 1
        return receipt, None

    def acts(self, t: TaskState, who: int) -> bool:
        """An absent owner never sends anything to its task again."""
        return not (t.absent and who == t.owner)

    def ownerish(self, t: TaskState, which: str) -> int:
        other = self.tasks[1 - self.tasks.index(t)]
        return {"owner": t.owner, "stranger": STRANGERS[5], "participant": PARTICIPANTS[1],
                "creator": other.owner}[which]

    def view_or(self, fn, default):
        try:
            return self.v(fn)
        except Panic:
            raise
        except ContractRevert:
            return default

    def phase(self, t: TaskState) -> int:
        return self.v(t.F.phase())

    def next_block(self) -> int:
        return self.chain.block_number + 1  # the block the next transaction lands in

    def registered(self, t: TaskState) -> list[str]:
        return [e.args["participant"] for e in t.where("ParticipantRegistered")]

    def committee(self, t: TaskState, r: int, g: int, cohort: int) -> list[str]:
        key = (r, g, cohort)
        if key not in t.committees:
            members = list(self.v(t.F.committee(r, g, cohort)))
            if not members:
                return []  # not drawn yet: do not cache
            t.committees[key] = members
        return t.committees[key]

    def final_round(self, t: TaskState) -> int:
        return self.v(t.F.finalRound())

    def _draw_pending(self, F) -> bool:
        """Draw the pending round once its seed block is mined (anyone may); False when none is pending."""
        seed = self.v(F.seedBlock())
        if not seed:
            return False
        self._mine_past(seed)
        rc, err = self.send(F.drawRound(), DRIVER)
        assert rc is not None, f"drawRound past its seed block: {err}"
        return True

    def _mine_past(self, block: int) -> None:
        """Mine so that the next transaction lands after ``block``."""
        self.chain.mine_to(block)

    # ------------------------------------------------------------------ setup
    def _create(self, name, creator, params, n_target, preset, evaluators) -> TaskState:
        contract = create_task(self.chain, self.din, params, owner=self.A[creator])
        t = TaskState(name, contract, params, creator, n_target)
        self.tasks.append(t)
        self.by_address[t.address] = t
        if preset != "none":
            for who in PARTICIPANTS[:n_target]:
                self.chain.transact(t.F.register(cid(f"pk {who}").digest), sender=self.A[who])
            for who in evaluators:
                self._opt_in(t, who)
        if preset == "training":
            self.chain.transact(t.F.startTraining(), sender=self.A[creator])
            self._mine_past(self.v(t.F.seedBlock()))
            self.chain.transact(t.F.drawRound(), sender=self.A[DRIVER])
        return t

    @initialize(
        n_target=st.integers(4, 6),
        subgroup=st.integers(2, 3),
        rounds=st.integers(1, 2),
        window=st.sampled_from([MIN_WINDOW, MIN_WINDOW + 3]),
        deposit=st.sampled_from([1_000 * WAD, 999_999]),
        fee=st.sampled_from([2 * WAD, 7 * WAD, 0]),  # hypothesis favours the first value
        fee_budget=st.sampled_from([100 * WAD, 10 * WAD, 0]),
        bond=st.sampled_from([300 * WAD, MIN_BOND]),
        slash=st.sampled_from([50 * WAD, "bond"]),
        bps=st.sampled_from([1_000, 0, 10_000]),
        encrypted=st.sampled_from([False, False, True]),
        share_window=st.sampled_from([0, 0, MIN_WINDOW]),
        n_evaluators=st.integers(4, 6),
        preset=st.sampled_from(["training", "training", "registered", "none"]),
        creator=st.sampled_from(CREATORS),
        hostile=st.booleans(),
        encrypted_b=st.booleans(),
        n_evaluators_b=st.integers(1, 5),
        preset_b=st.sampled_from(["training", "registered", "none"]),
    )
    def create(self, n_target, subgroup, rounds, window, deposit, fee, fee_budget, bond, slash, bps, encrypted,
               share_window, n_evaluators, preset, creator, hostile, encrypted_b, n_evaluators_b, preset_b):
        """Two tasks on the shared deployment: A by the owner, B by a random creator, possibly with
        hostile (but accepted) parameters; evaluators 25..(24+n) opt in to both."""
        pa = TaskParams(
            genesis_model=cid("genesis"), reward_deposit=deposit, fee_budget=fee_budget, evaluator_fee=fee,
            evaluator_bond=bond, slash_amount=bond if slash == "bond" else slash, rounds=rounds,
            subgroup_size=subgroup, evaluators_per_subgroup=3, max_participants=8, max_evaluators=8,
            public_goods_bps=bps, encrypted_scoring=encrypted, registration_window=window,
            submission_window=window, share_window=share_window, commit_window=window, reveal_window=window,
            publish_window=window,
        )
        self._create("A", OWNER, pa, n_target, preset, EVALUATORS[:n_evaluators])
        if creator != OWNER:
            self.chain.transact(self.din.token.functions.transfer(self.addr(creator), 2_000 * WAD),
                                sender=self.A[DEPLOYER])
        k = 1 if hostile else 3
        pb = TaskParams(
            genesis_model=cid("genesis B"), reward_deposit=1 if hostile else 500 * WAD,
            fee_budget=0 if hostile else 20 * WAD, evaluator_fee=0 if hostile else WAD,
            evaluator_bond=MIN_BOND if hostile else 200 * WAD, slash_amount=MIN_BOND if hostile else 20 * WAD,
            rounds=2 if hostile else 1, subgroup_size=2, evaluators_per_subgroup=k,
            max_participants=4 if hostile else 8, max_evaluators=k if hostile else 5,
            public_goods_bps=10_000 if hostile else 500, encrypted_scoring=encrypted_b,
            registration_window=MIN_WINDOW, submission_window=MIN_WINDOW,
            share_window=0 if hostile else MIN_WINDOW, commit_window=MIN_WINDOW, reveal_window=MIN_WINDOW,
            publish_window=MIN_WINDOW,
        )
        n_b = min(max(n_evaluators_b, k), pb.max_evaluators)
        self._create("B", creator, pb, 4, preset_b, EVALUATORS[2:2 + n_b])
        note(f"B {'hostile' if hostile else 'plain'}, k={k}")

    # ------------------------------------------------------------------ bonds
    def _opt_in(self, t: TaskState, who: int, allowance: int | None = None):
        bond = t.params.evaluator_bond
        rc, _ = self.send(self.din.token.functions.approve(t.address, bond if allowance is None else allowance), who)
        assert rc is not None  # approve never reverts
        ph = self.phase(t)
        rc, err = self.send(t.F.optIn(), who)
        if rc is not None:
            assert ph == R, f"optIn accepted in phase {ph}"
        return rc, err

    @rule(t=TASK, who=st.sampled_from(BONDERS), allowance=st.sampled_from(["bond", "bond", "less", "zero"]))
    def opt_in(self, t, who, allowance):
        t = self.tasks[t]
        bond = t.params.evaluator_bond
        self._opt_in(t, who, {"bond": bond, "less": bond - 1, "zero": 0}[allowance])

    @rule(t=TASK, who=st.sampled_from(BONDERS))
    def opt_out(self, t, who):
        t = self.tasks[t]
        ph = self.phase(t)
        rc, _ = self.send(t.F.optOut(), who)
        if rc is not None:
            assert ph == R, f"optOut accepted in phase {ph}"

    @rule(t=TASK, who=st.sampled_from(BONDERS))
    def withdraw_bond(self, t, who):
        t = self.tasks[t]
        ph = self.phase(t)
        rc, _ = self.send(t.F.withdrawBond(), who)
        if rc is not None:
            assert ph in ENDED, f"withdrawBond accepted in phase {ph}"

    @rule(who=st.sampled_from(VOTERS), zero=st.sampled_from([False, False, True]))
    def set_public_key(self, who, zero):
        self.send(self.din.registry.functions.setPublicKey(bytes(32) if zero else cid(f"x25519 {who}").digest), who)

    # ------------------------------------------------------------------ registration
    @rule(t=TASK, who=st.sampled_from(REGISTRANTS), bad_key=st.sampled_from([False, False, False, True]))
    def register(self, t, who, bad_key):
        t = self.tasks[t]
        key = bytes(32) if bad_key else cid(f"pk {who}").digest
        self.send(t.F.register(key), who)

    @rule(t=TASK, which=WHO_OWNERISH)
    def start_training(self, t, which):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if self.acts(t, who):
            self.send(t.F.startTraining(), who)

    @rule(t=TASK, which=WHO_OWNERISH)
    def cancel(self, t, which):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if self.acts(t, who):
            self.send(t.F.cancel(), who)

    # ------------------------------------------------------------------ draws, submissions
    @rule(t=TASK, who=st.sampled_from(EVERYONE))
    def draw_round(self, t, who):
        self.send(self.tasks[t].F.drawRound(), who)

    @rule(t=TASK, g=st.integers(0, 2), delta=st.sampled_from([0, 0, -1]))
    def draw_dispute(self, t, g, delta):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        self.send(t.F.drawDispute(r, g), DRIVER)

    @rule(t=TASK, who=st.sampled_from(REGISTRANTS + [STRANGERS[5]]), delta=st.sampled_from([0, 0, 0, 1, -1]),
          bad_cid=st.sampled_from([False, False, False, True]))
    def submit_update(self, t, who, delta, bad_cid):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        update = (bytes(32), 0x55) if bad_cid else cid(f"update r{r} by {who}").to_chain()
        self.send(t.F.submitUpdate(r, update, cid_arg(None)), who)

    def _relay(self, t: TaskState, signers: list[int], relayer: int, r: int, forge: bool = False):
        """A relayed batch (duplicates allowed); checks that exactly the entries not yet recorded are."""
        batch = [sign_update(participant=self.A[w], task=t.contract, chain_id=self.chain.chain_id, round_=r,
                             update=cid(f"update r{r} by {w}")) for w in signers]
        if forge and batch:
            p, _, aux, rs, vs = batch[-1]
            batch[-1] = (p, cid("forged").to_chain(), aux, rs, vs)
        before = {w: self.v(t.F.hasSubmitted(r, self.addr(w))) for w in set(signers)}
        rc, err = self.send(t.F.submitUpdatesRelayed(r, batch), relayer)
        if rc is None:
            return None, err
        recorded = [e.args["participant"] for e in rc.events if e.event == "UpdateSubmitted"]
        fresh = []
        for w in signers:
            if not before[w] and self.addr(w) not in fresh:
                fresh.append(self.addr(w))
        assert recorded == fresh, f"relayed batch recorded {recorded}, expected the unrecorded entries {fresh}"
        return rc, None

    @rule(t=TASK, signers=st.lists(st.sampled_from(REGISTRANTS), max_size=5), relayer=st.sampled_from(EVERYONE),
          lift=st.booleans(), forge=st.sampled_from([False, False, False, True]),
          delta=st.sampled_from([0, 0, 0, 1, -1]))
    def relay_batch(self, t, signers, relayer, lift, forge, delta):
        """A relayer sends a batch; sometimes one entry was lifted and submitted on its own first."""
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        if lift and signers:
            w = signers[0]
            self.send(t.F.submitUpdate(r, cid(f"update r{r} by {w}").to_chain(), cid_arg(None)), w)
        self._relay(t, signers, relayer, r, forge)

    @rule(n=st.sampled_from([1, 1, 2, 3, 4, 5, 8, 10, 11, 20, 300]))
    def mine(self, n):
        """Mostly a few blocks (windows are 10-13 blocks); sometimes past a seed block's 256-block horizon."""
        self.chain.mine(n)

    # ------------------------------------------------------------------ aggregation
    def _commit_result(self, t: TaskState, who: int, r: int, g: int, res: Cid):
        cohort = self.v(t.F.subgroupInfo(r, g))[COHORT]
        s = salt(("result", t.name, r, g, cohort, who))
        rc, err = self.send(t.F.commitResult(r, g, result_commitment(res, s, self.addr(who))), who)
        if rc is not None and res != good_result(r, g):
            t.chose_other.add((r, g, cohort, self.addr(who)))
        return rc, err

    def _reveal_result(self, t: TaskState, who: int, r: int, g: int, tamper: str | None = None):
        cohort = self.v(t.F.subgroupInfo(r, g))[COHORT]
        s = salt(("result", t.name, r, g, cohort, who))
        res = other_result(r, g) if (r, g, cohort, self.addr(who)) in t.chose_other else good_result(r, g)
        if tamper == "salt":
            s = salt(("wrong salt", r, g, who))
        elif tamper == "result":
            res = other_result(r, g) if res == good_result(r, g) else good_result(r, g)
        return self.send(t.F.revealResult(r, g, res.to_chain(), s), who)

    def _reveal_shares(self, t: TaskState, who: int, r: int, g: int, bad: bool = False):
        shares = (bytes(32), 7) if bad else cid(f"shares {t.name} r{r} g{g} by {who}").to_chain()
        return self.send(t.F.revealShares(r, g, shares), who)

    @rule(t=TASK, who=st.sampled_from(VOTERS), g=st.integers(0, 2), delta=st.sampled_from([0, 0, 0, -1]),
          bad=st.sampled_from([False, False, False, True]))
    def reveal_shares(self, t, who, g, delta, bad):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        self._reveal_shares(t, who, r, g, bad)

    @rule(t=TASK, who=st.sampled_from(VOTERS), g=st.integers(0, 2), delta=st.sampled_from([0, 0, 0, -1]),
          honest=st.sampled_from([True, True, False]))
    def commit_result(self, t, who, g, delta, honest):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        self._commit_result(t, who, r, g, good_result(r, g) if honest else other_result(r, g))

    @rule(t=TASK, who=st.sampled_from(VOTERS), g=st.integers(0, 2), delta=st.sampled_from([0, 0, 0, -1]),
          tamper=st.sampled_from([None, None, None, "salt", "result"]))
    def reveal_result(self, t, who, g, delta, tamper):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        self._reveal_result(t, who, r, g, tamper)

    @rule(t=TASK, who=st.sampled_from(EVERYONE), g=st.integers(0, 2), delta=st.sampled_from([0, 0, 0, -1]))
    def finalize_subgroup(self, t, who, g, delta):
        t = self.tasks[t]
        r = max(0, self.v(t.F.currentRound()) + delta)
        self.send(t.F.finalizeSubgroup(r, g), who)

    @rule(t=TASK, which=WHO_OWNERISH, round_=st.sampled_from(["current", "current", "previous", "next", "final"]),
          bad_cid=st.sampled_from([False, False, False, True]))
    def publish_global_model(self, t, which, round_, bad_cid):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if not self.acts(t, who):
            return
        cur = self.v(t.F.currentRound())
        r = {"current": cur, "previous": max(0, cur - 1), "next": cur + 1, "final": self.final_round(t)}[round_]
        model = (bytes(32), 0) if bad_cid else cid(f"global {r}").to_chain()
        self.send(t.F.publishGlobalModel(r, model), who)

    @rule(t=TASK, which=WHO_OWNERISH)
    def signal_final_round(self, t, which):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if self.acts(t, who):
            self.send(t.F.signalFinalRound(), who)

    # ------------------------------------------------------------------ scoring
    def _publish_evaluation_set(self, t: TaskState, who: int, wrong_mode: bool = False):
        encrypted = t.params.encrypted_scoring != wrong_mode
        if encrypted:
            fn = t.F.publishEncryptedEvaluationSet(cid("enc test set").to_chain(), cid("context").to_chain(),
                                                   HE_PARAMS)
        else:
            fn = t.F.publishEvaluationSet(cid("test set").to_chain(), cid("context").to_chain())
        return self.send(fn, who)

    @rule(t=TASK, which=WHO_OWNERISH, wrong_mode=st.sampled_from([False, False, False, True]))
    def publish_evaluation_set(self, t, which, wrong_mode):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if self.acts(t, who):
            rc, _ = self._publish_evaluation_set(t, who, wrong_mode)
            assert rc is None or not wrong_mode, "the scoring mode changed after creation"

    def _subgroup_size(self, t: TaskState, g: int) -> int | None:
        final = self.final_round(t)
        if (final, g) not in t.members:  # the shuffle is costly on py-evm: read each subgroup once
            members = self.view_or(t.F.subgroupMembers(final, g), None)
            if members is None:
                return None
            t.members[(final, g)] = members
        return len(t.members[(final, g)])

    def _scores(self, t: TaskState, g: int, style: str) -> list[int]:
        n = self._subgroup_size(t, g)
        if n is None:  # no such subgroup (yet): any length will do
            return [WAD // 2] * 2
        if style == "outlier":
            return [WAD] * n  # 1/2 or more from the honest median: slashed at finalizeScores
        if style == "short":
            return [WAD // 2] * (n - 1)
        return [(50 + 5 * q) * WAD // 100 for q in range(n)]

    def _outputs(self, t: TaskState, g: int, who: int, style: str) -> tuple[bytes, Cid, bytes]:
        label = ("honest", g) if style == "honest" else ("odd", g, who)
        return out_digest(label), cid(repr(("outputs", t.name, label))), salt(("outputs", t.name, g, who))

    def _commit_scores(self, t: TaskState, who: int, g: int, style: str = "honest"):
        a = self.addr(who)
        if t.params.encrypted_scoring:
            d, out, s = self._outputs(t, g, who, "honest" if style == "honest" else "odd")
            rc, err = self.send(t.F.commitScores(g, outputs_commitment(d, out, s, a)), who)
            if rc is not None:
                t.output_choice[(g, a)] = (d, out, s)
            return rc, err
        scores = self._scores(t, g, style)
        s = salt(("scores", t.name, g, who))
        rc, err = self.send(t.F.commitScores(g, scores_commitment(scores, s, a)), who)
        if rc is not None:
            t.score_choice[(g, a)] = scores
        return rc, err

    def _reveal_scores(self, t: TaskState, who: int, g: int, tamper: str | None = None, wrong_mode: bool = False):
        a = self.addr(who)
        if t.params.encrypted_scoring != wrong_mode:
            d, out, s = t.output_choice.get((g, a), self._outputs(t, g, who, "honest"))
            if tamper == "salt":
                s = salt(("wrong salt", g, who))
            elif tamper is not None:
                d = bytes(32) if tamper == "range" else out_digest(("tampered", g))
            return self.send(t.F.revealOutputs(g, d, out.to_chain(), s), who)
        scores = list(t.score_choice.get((g, a), self._scores(t, g, "honest")))
        s = salt(("scores", t.name, g, who))
        if tamper == "salt":
            s = salt(("wrong salt", g, who))
        elif tamper == "scores" and scores:
            scores[0] = scores[0] + 1 if scores[0] < WAD else scores[0] - 1
        elif tamper == "range" and scores:
            scores[0] = WAD + 1
        return self.send(t.F.revealScores(g, scores, s), who)

    def _reports(self, t: TaskState, g: int) -> list[list[int]]:
        final = self.final_round(t)
        return [t.score_revealed.get((g, a), []) for a in self.committee(t, final, g, 0)]

    def _majority_digest(self, t: TaskState, g: int) -> bytes | None:
        n = len(self.committee(t, self.final_round(t), g, 0))
        counts = Counter(d for (gg, _), d in t.outputs_revealed.items() if gg == g)
        return next((d for d, c in counts.items() if 2 * c > n), None)

    def _publish_scores(self, t: TaskState, g: int, who: int, digest: bytes | None = None):
        n = self._subgroup_size(t, g) or 2
        digest = digest if digest is not None else (self._majority_digest(t, g) or out_digest("none"))
        scores = [(30 + 10 * q) * WAD // 100 for q in range(n)]
        return self.send(t.F.publishScores(g, scores, digest, cid("audit").to_chain()), who)

    @rule(t=TASK, who=st.sampled_from(VOTERS), g=st.integers(0, 2),
          style=st.sampled_from(["honest", "honest", "honest", "outlier", "short"]))
    def commit_scores(self, t, who, g, style):
        self._commit_scores(self.tasks[t], who, g, style)

    @rule(t=TASK, who=st.sampled_from(VOTERS), g=st.integers(0, 2),
          tamper=st.sampled_from([None, None, None, "salt", "scores", "range"]),
          wrong_mode=st.sampled_from([False, False, False, True]))
    def reveal_scores(self, t, who, g, tamper, wrong_mode):
        self._reveal_scores(self.tasks[t], who, g, tamper, wrong_mode)

    @rule(t=TASK, who=st.sampled_from(EVERYONE), g=st.integers(0, 2), corrupt=st.sampled_from([False, False, True]),
          wrong_mode=st.sampled_from([False, False, False, True]))
    def finalize_scores(self, t, who, g, corrupt, wrong_mode):
        """Plaintext: finalizeScores with the revealed reports (or corrupted ones); encrypted: the
        permissionless closeUnresolvedScores (both are refused in the other mode)."""
        t = self.tasks[t]
        if t.params.encrypted_scoring != wrong_mode:
            self.send(t.F.closeUnresolvedScores(g), who)
            return
        reports = self._reports(t, g)
        if corrupt:
            if reports and any(reports):
                k = next(i for i, row in enumerate(reports) if row)
                reports[k] = [0] * len(reports[k])
            else:
                reports.append([])
        self.send(t.F.finalizeScores(g, reports), who)

    @rule(t=TASK, which=WHO_OWNERISH, g=st.integers(0, 2), wrong=st.sampled_from([False, False, True]))
    def publish_scores(self, t, which, g, wrong):
        t = self.tasks[t]
        who = self.ownerish(t, which)
        if self.acts(t, who):
            self._publish_scores(t, g, who, out_digest(("odd", g)) if wrong else None)

    # ------------------------------------------------------------------ ends, claims, excess
    @rule(t=TASK, who=st.sampled_from(EVERYONE))
    def abandon(self, t, who):
        t = self.tasks[t]
        if not self.acts(t, who):
            return
        ph, deadline, seed = self.phase(t), self.v(t.F.ownerDeadline()), self.v(t.F.seedBlock())
        if ph == T and seed:  # a draw left pending: its seed block's 256-block horizon plus the owner's window
            deadline = seed + 256 + t.params.publish_window
        rc, err = self.send(t.F.abandon(), who)
        landed = self.chain.block_number + (0 if rc else 1)  # the block it ran in (a refused call: the next one)
        allowed = ph in (T, S) and bool(deadline) and landed > deadline and not (ph == S and self.v(t.F.evaluationSet())[1] != 0)
        assert (rc is not None) == allowed, f"abandon by {who} in {Phase.NAMES[ph]} (deadline {deadline}): {err}"
        if rc is not None:
            note(f"{t.name} abandoned {'(a draw left pending)' if ph == T and seed else '(owner deadline)'}")

    @rule(t=TASK)
    def owner_leaves(self, t):
        """The task's owner stops acting, forever."""
        self.tasks[t].absent = True

    def _claim(self, t: TaskState, who: int) -> bool:
        if not self.acts(t, who):
            return False
        a = self.addr(who)
        before = self.v(t.F.claimable(a))
        share = self.v(t.F.rewardOf(a))
        rc, err = self.send(t.F.claim(), who)
        if rc is None:
            assert before + share == 0, f"claim by {a} reverted ({err}) with {before} + {share} owed"
            assert err.error_name == "NothingToClaim", err
            return False
        paid = rc.event("Claimed").args["amount"]
        assert paid == before + share, f"claim paid {paid}, owed claimable {before} + reward share {share}"
        if share:
            assert a not in t.reward_paid, f"reward of {a} paid twice"
            t.reward_paid[a] = share
        assert self.v(t.F.rewardOf(a)) == 0 and self.v(t.F.claimable(a)) == 0
        return True

    @rule(t=TASK, who=st.sampled_from(EVERYONE))
    def claim(self, t, who):
        self._claim(self.tasks[t], who)

    @rule(t=TASK, who=st.sampled_from([DEPLOYER, OWNER] + EVALUATORS[:2]), amount=st.sampled_from([1, 7 * WAD]))
    def donate(self, t, who, amount):
        """Tokens sent straight to a task (not through a function): excess, until swept."""
        t = self.tasks[t]
        rc, _ = self.send(self.din.token.functions.transfer(t.address, amount), who)
        if rc is not None:
            t.donated += amount

    @rule(t=TASK, who=st.sampled_from(EVERYONE))
    def sweep_excess(self, t, who):
        t = self.tasks[t]
        rc, _ = self.send(t.F.sweepExcess(), who)
        if rc is not None:
            assert self.v(self.din.token.functions.balanceOf(t.address)) == self.v(t.F.liabilities())

    # ------------------------------------------------------------------ the final model's hold
    @rule(t=TASK, who=st.sampled_from(EVERYONE), g=st.integers(0, 2), guess=st.booleans())
    def release_final_model(self, t, who, g, guess):
        """The machine's committees reveal arbitrary CIDs, never a sealed result's envelope, so no
        key opens any accepted result: every release is refused, by name, whoever sends it."""
        t = self.tasks[t]
        ph, final = self.phase(t), self.v(t.F.finalRound())
        groups = self.v(t.F.roundInfo(final))[NUM_SUBGROUPS]
        held = g < groups and self.v(t.F.subgroupInfo(final, g))[HELD]
        key = keccak(b"a guessed key") if guess else bytes(32)
        rc, err = self.send(t.F.releaseFinalModel(g, cid("sealed").to_chain(), key), who)
        assert rc is None, f"{t.name}: a key that opens no envelope was accepted for subgroup {g}"
        expected = ("WrongPhase" if ph not in (FIN, A_) else "UnknownSubgroup" if g >= groups
                    else "WrongFinalKey" if held else "NotHeld")
        assert err.error_name == expected, f"release in {Phase.NAMES[ph]}: {err} (expected {expected})"

    @rule(t=TASK, who=st.sampled_from(EVERYONE), g=st.integers(0, 2))
    def slash_withholders(self, t, who, g):
        """Only past the release deadline of an ended task, only a result still sealed, only once:
        then its backers are slashed (replayed from the events like any slash) and may leave."""
        t = self.tasks[t]
        ph, final = self.phase(t), self.v(t.F.finalRound())
        groups = self.v(t.F.roundInfo(final))[NUM_SUBGROUPS]
        held = g < groups and self.v(t.F.subgroupInfo(final, g))[HELD]
        deadline = self.v(t.F.releaseDeadline())
        rc, err = self.send(t.F.slashWithholders(g), who)
        landed = self.chain.block_number + (0 if rc else 1)
        allowed = ph in (FIN, A_) and landed > deadline and held
        assert (rc is not None) == allowed, f"slashWithholders({g}) in {Phase.NAMES[ph]}, deadline {deadline}: {err}"
        if rc is not None:
            assert not self.v(t.F.subgroupInfo(final, g))[HELD]
            note(f"{t.name} subgroup {g}: withholders slashed")

    # ------------------------------------------------------------------ protocol macro steps
    def _mine_until(self, boundaries: list[int]) -> bool:
        """Mine so the next transaction lands in the earliest future boundary block."""
        nb = self.next_block()
        future = [b for b in boundaries if b > nb]
        if not future:
            return False
        self.chain.mine_to(min(future) - 1)
        return True

    def _training_tick(self, t: TaskState, silent=frozenset(), wrong=frozenset(), mismatch=frozenset()) -> bool:
        """One window of the current round played by the protocol: draw, submit (directly or by a
        relay), reveal shares, commit, reveal, draw a dispute or finalize whatever is due now, else
        mine to the next window. Committee slot k in ``silent`` never reveals; in ``wrong`` it
        commits to another result; in ``mismatch`` its reveal does not match its commitment."""
        F = t.F
        if self._draw_pending(F):
            return True
        r = self.v(F.currentRound())
        info = self.v(F.roundInfo(r))
        acted = False
        if self.next_block() <= info[SUBMISSION_DEADLINE]:
            todo = [self.index_of[a] for a in self.registered(t) if not self.v(F.hasSubmitted(r, a))]
            if todo:
                direct, relayed = todo[: len(todo) // 2], todo[len(todo) // 2:]
                for who in direct:
                    self.send(F.submitUpdate(r, cid(f"update r{r} by {who}").to_chain(), cid_arg(None)), who)
                self._relay(t, relayed, STRANGERS[5], r)
                return True
        subs = {g: self.v(F.subgroupInfo(r, g)) for g in range(info[NUM_SUBGROUPS])}
        pending = {g: s for g, s in subs.items() if s[STATUS] == SubgroupStatus.PENDING}
        if not pending:
            return False
        nb = self.next_block()
        todo: list[tuple[int, int, str]] = []  # (committee slot, subgroup, action)
        for g, s in pending.items():
            if s[SEED_BLOCK]:
                todo.append((98, g, "dispute"))
                continue
            for k, ev in enumerate(self.committee(t, r, g, s[COHORT])):
                key = (r, g, s[COHORT], ev)
                if ev in t.banned:
                    continue
                if (s[COHORT] == 0 and info[SUBMISSION_DEADLINE] < nb <= s[COMMIT_START]
                        and not self.v(F.sharesRevealed(r, g, ev))):
                    todo.append((k, g, "shares"))
                elif s[COMMIT_START] < nb <= s[COMMIT_DEADLINE] and key not in t.committed:
                    todo.append((k, g, "commit"))
                elif (s[COMMIT_DEADLINE] < nb <= s[REVEAL_DEADLINE] and key in t.committed and k not in silent
                      and all(x[0] != ev for x in t.revealed[(r, g, s[COHORT])])):
                    todo.append((k, g, "reveal"))
            if nb > s[REVEAL_DEADLINE]:
                todo.append((99, g, "finalize"))
        for k, g, action in sorted(todo):  # round robin over subgroups: a majority of each first
            cohort = pending[g][COHORT]
            if action == "finalize":
                self.send(F.finalizeSubgroup(r, g), DRIVER)
            elif action == "dispute":
                self._mine_past(pending[g][SEED_BLOCK])
                rc, err = self.send(F.drawDispute(r, g), DRIVER)
                assert rc is not None, f"drawDispute past its seed block: {err}"
            else:
                who = self.index_of[self.committee(t, r, g, cohort)[k]]
                if action == "shares":
                    self._reveal_shares(t, who, r, g)
                elif action == "commit":
                    self._commit_result(t, who, r, g, other_result(r, g) if k in wrong else good_result(r, g))
                else:
                    self._reveal_result(t, who, r, g, "salt" if k in mismatch else None)
            self._sync_events()
            acted = True
        if acted:
            return True
        return self._mine_until([b + 1 for s in pending.values()
                                 for b in (info[SUBMISSION_DEADLINE], s[COMMIT_START], s[COMMIT_DEADLINE],
                                           s[REVEAL_DEADLINE])])

    def _scoring_tick(self, t: TaskState, silent=frozenset(), outliers=frozenset(), mismatch=frozenset()) -> bool:
        """One window of the scoring phase (evaluation set, commit, reveal, finalize or publish)."""
        F = t.F
        if self.v(F.evaluationSet())[1] == 0:
            if not self.acts(t, t.owner):
                return False
            rc, _ = self._publish_evaluation_set(t, t.owner)
            return rc is not None
        final = self.final_round(t)
        groups = self.v(F.roundInfo(final))[NUM_SUBGROUPS]
        commit_deadline = self.v(F.scoreCommitDeadline())
        reveal_deadline = self.v(F.scoreRevealDeadline())
        encrypted = t.params.encrypted_scoring
        nb = self.next_block()
        todo = []
        for g in range(groups):
            if self.v(F.scoresFinal(g)):
                continue
            for k, ev in enumerate(self.committee(t, final, g, 0)):
                if ev in t.banned:
                    continue
                if nb <= commit_deadline and (g, ev) not in t.score_committed:
                    todo.append((k, g, "commit"))
                elif (commit_deadline < nb <= reveal_deadline and (g, ev) in t.score_committed and k not in silent
                      and (g, ev) not in t.score_revealed and (g, ev) not in t.outputs_revealed):
                    todo.append((k, g, "reveal"))
            if nb > reveal_deadline:
                todo.append((99, g, "finalize"))
        acted = False
        for k, g, action in sorted(todo):
            if action == "finalize":
                if not encrypted:
                    rc, _ = self.send(F.finalizeScores(g, self._reports(t, g)), DRIVER)
                elif self._majority_digest(t, g) is not None and self.acts(t, t.owner):
                    rc, _ = self._publish_scores(t, g, t.owner)
                else:
                    rc, _ = self.send(F.closeUnresolvedScores(g), DRIVER)
                acted |= rc is not None
            else:
                who = self.index_of[self.committee(t, final, g, 0)[k]]
                if action == "commit":
                    self._commit_scores(t, who, g, "outlier" if k in outliers else "honest")
                else:
                    self._reveal_scores(t, who, g, ("salt" if encrypted else "scores") if k in mismatch else None)
                acted = True
            self._sync_events()
        if acted:
            return True
        bounds = [commit_deadline + 1, reveal_deadline + 1]
        if encrypted:
            bounds.append(self.v(F.scorePublishDeadline()) + 1)
        return self._mine_until(bounds)

    def _tick(self, t: TaskState, silent=frozenset(), wrong=frozenset(), mismatch=frozenset()) -> bool:
        """One protocol step of ``t`` from its current phase; False when nothing could be done.
        Without its owner, the task moves on by its deadlines (``_stranger_tick``)."""
        ph = self.phase(t)
        acted = False
        if ph == R:
            have = set(self.registered(t))
            for who in PARTICIPANTS[: t.n_target]:
                if self.addr(who) not in have:
                    self.send(t.F.register(cid(f"pk {who}").digest), who)
            if self.acts(t, t.owner):
                rc, _ = self.send(t.F.startTraining(), t.owner)
                acted = rc is not None
        elif ph == T:
            if self._training_tick(t, silent, wrong, mismatch):
                return True
            r = self.v(t.F.currentRound())
            if (self.phase(t) == T and r < self.final_round(t) and not self.v(t.F.seedBlock())
                    and self.acts(t, t.owner)):
                rc, _ = self.send(t.F.publishGlobalModel(r, cid(f"global {r}").to_chain()), t.owner)
                acted = rc is not None
        elif ph == S:
            acted = self._scoring_tick(t, silent, wrong, mismatch)
        elif ph in ENDED:
            for who in [t.owner, FUND, *PARTICIPANTS, *EVALUATORS]:
                a = self.addr(who)
                if self.v(t.F.claimable(a)) or self.v(t.F.rewardOf(a)):
                    acted |= self._claim(t, who)
            if ph == FIN:
                final = self.final_round(t)
                if self.v(t.F.roundInfo(final))[GLOBAL_MODEL][1] == 0 and self.acts(t, t.owner):
                    rc, _ = self.send(t.F.publishGlobalModel(final, cid("final model").to_chain()), t.owner)
                    acted |= rc is not None
            return acted
        if not acted and t.absent:
            return self._stranger_tick(t)
        return acted

    @rule(t=TASK, silent=st.frozensets(st.integers(0, 2), max_size=2),
          wrong=st.frozensets(st.integers(0, 2), max_size=1), mismatch=st.frozensets(st.integers(0, 2), max_size=1))
    def protocol_step(self, t, silent, wrong, mismatch):
        """One window of the protocol, some committee slots silent, dissenting or mis-revealing."""
        self._tick(self.tasks[t], silent, wrong, mismatch)

    @rule(t=TASK, steps=st.integers(1, 6))
    def protocol_steps(self, t, steps):
        for _ in range(steps):
            if not self._tick(self.tasks[t]):
                return

    @rule(t=TASK)
    def honest_to_end(self, t):
        for _ in range(80):
            if not self._tick(self.tasks[t]):
                return

    # ------------------------------------------------------------------ every task can end
    def _stranger_tick(self, t: TaskState) -> bool:
        """One step that needs nobody but a stranger (and the passing of blocks); False once the
        task has ended. Fails if a deadline passed and no permissionless call moves the task on."""
        F = t.F
        ph = self.phase(t)
        if ph in ENDED:
            return False
        if ph == R:
            deadline = self.v(F.registrationDeadline())
            if self.next_block() <= deadline:
                self._mine_past(deadline)
                return True
            rc, err = self.send(F.startTraining(), DRIVER)
            if rc is None:
                rc, err2 = self.send(F.cancel(), DRIVER)
                assert rc is not None, f"past registration, neither start ({err}) nor cancel ({err2})"
            return True
        if ph == T:
            if self._draw_pending(F):
                return True
            r = self.v(F.currentRound())
            info = self.v(F.roundInfo(r))
            if info[PENDING] == 0:
                deadline = self.v(F.ownerDeadline())
                assert deadline, "a closed round without an owner deadline"
                if self.next_block() <= deadline:
                    self._mine_past(deadline)
                    return True
                rc, err = self.send(F.abandon(), DRIVER)
                assert rc is not None, f"abandon past the owner's deadline: {err}"
                return True
            subs = [(g, self.v(F.subgroupInfo(r, g))) for g in range(info[NUM_SUBGROUPS])]
            subs = [(g, s) for g, s in subs if s[STATUS] == SubgroupStatus.PENDING]
            for g, s in subs:
                if s[SEED_BLOCK]:
                    self._mine_past(s[SEED_BLOCK])
                    rc, err = self.send(F.drawDispute(r, g), DRIVER)
                    assert rc is not None, f"drawDispute past its seed block: {err}"
                    return True
            g, s = min(subs, key=lambda x: x[1][REVEAL_DEADLINE])
            self._mine_past(s[REVEAL_DEADLINE])
            rc, err = self.send(F.finalizeSubgroup(r, g), DRIVER)
            assert rc is not None, f"finalizeSubgroup past its reveal deadline: {err}"
            return True
        # Scoring
        if self.v(F.evaluationSet())[1] == 0:
            deadline = self.v(F.ownerDeadline())
            if self.next_block() <= deadline:
                self._mine_past(deadline)
                return True
            rc, err = self.send(F.abandon(), DRIVER)
            assert rc is not None, f"abandon past the evaluation-set deadline: {err}"
            return True
        self._mine_past(self.v(F.scoreRevealDeadline()))
        final = self.final_round(t)
        for g in range(self.v(F.roundInfo(final))[NUM_SUBGROUPS]):
            if self.v(F.scoresFinal(g)):
                continue
            if not t.params.encrypted_scoring:
                rc, err = self.send(F.finalizeScores(g, self._reports(t, g)), DRIVER)
            else:
                rc, err = self.send(F.closeUnresolvedScores(g), DRIVER)
                if rc is None and err.error_name == "OutputsAgreed":
                    self._mine_past(self.v(F.scorePublishDeadline()))
                    rc, err = self.send(F.closeUnresolvedScores(g), DRIVER)
            assert rc is not None, f"scores of subgroup {g} cannot be closed past the deadlines: {err}"
            self._sync_events()
            return True
        raise AssertionError("Scoring with every subgroup's scores final")

    def _drive_to_end(self, t: TaskState) -> None:
        """Every task can end without its owner: only a stranger's permissionless calls."""
        t.absent = True
        for _ in range(200):
            self._sync_events()
            if not self._stranger_tick(t):
                break
        assert self.phase(t) in ENDED, f"task {t.name} still in phase {self.phase(t)} after 200 stranger steps"

    def _settle_holds(self, t: TaskState) -> None:
        """The machine's committees reveal arbitrary CIDs, never a sealed result's envelope, so no key
        can open a held final-round result: past the release deadline anyone slashes its backers,
        which frees what is left of their bonds (a task always ends for its evaluators too)."""
        F = t.F
        if self.phase(t) not in (Phase.FINISHED, Phase.ABANDONED):
            return
        final = self.v(F.finalRound())
        for g in range(self.v(F.roundInfo(final))[NUM_SUBGROUPS]):
            if not self.v(F.subgroupInfo(final, g))[HELD]:
                continue
            self._mine_past(self.v(F.releaseDeadline()))
            rc, err = self.send(F.slashWithholders(g), DRIVER)
            assert rc is not None, f"a held result nobody released cannot be settled past the deadline: {err}"
            self._sync_events()
            assert not self.v(F.subgroupInfo(final, g))[HELD]

    def _drain(self, t: TaskState) -> None:
        """After the end everyone takes what it is owed; the task keeps only tokens sent to it directly."""
        assert self.phase(t) in ENDED
        self._sync_events()
        self._settle_holds(t)
        accounts = set(t.ledger) | set(t.credits) | set(self.registered(t)) | {self.addr(t.owner)}
        for a in sorted(accounts):
            who = self.index_of[a]
            if t.ledger[a]:
                rc, err = self.send(t.F.withdrawBond(), who)
                assert rc is not None, f"{a} cannot withdraw its bond after the end: {err}"
            if self.v(t.F.claimable(a)) or self.v(t.F.rewardOf(a)):
                assert self._claim(t, who) or not self.acts(t, who)
        self._sync_events()
        liabilities = self.v(t.F.liabilities())
        owner_owed = self.v(t.F.claimable(self.addr(t.owner)))
        assert liabilities == owner_owed, f"task {t.name} still owes {liabilities} after every claim"

    @rule(t=TASK, now=st.sampled_from([False, False, True]))
    def drive_to_end_without_owner(self, t, now):
        """The owner leaves and a stranger alone ends the task by its deadlines (now and then:
        teardown does it for every task anyway)."""
        if now:
            self._drive_to_end(self.tasks[t])

    # ------------------------------------------------------------------ event replay
    def _sync_events(self) -> None:
        """Replay new events in order, per task (the checks that need the order are made here)."""
        events = self.chain.events
        while self.cursor < len(events):
            e = events[self.cursor]
            self.cursor += 1
            if e.event == "Transfer" and e.address == self.din.token.address:
                src, dst, amount = e.args["from"], e.args["to"], e.args["value"]
                assert ZERO not in (src, dst), "tokens minted or burnt"
                self.balances[src] -= amount
                assert self.balances[src] >= 0
                self.balances[dst] = self.balances.get(dst, 0) + amount
                self.touched |= {src, dst}
                continue
            t = self.by_address.get(e.address)
            if t is None:
                continue
            t.events.append(e)
            self._replay(t, e)

    def _replay(self, t: TaskState, e) -> None:
        a, p, name = e.args, t.params, e.event
        fund = self.din.public_goods_fund
        ev = a.get("evaluator")
        if name in ("ResultCommitted", "ResultRevealed", "SharesRevealed", "ScoresCommitted", "ScoresRevealed",
                    "OutputsRevealed", "FeePaid"):
            assert ev not in t.banned, f"{name} by {ev}, slashed in task {t.name} at block {t.banned[ev]}"
        if name == "EvaluatorOptedIn":
            assert not t.started and a["bond"] == p.evaluator_bond
            assert t.ledger[ev] == 0
            t.ledger[ev] += a["bond"]
            t.opted.add(ev)
        elif name == "EvaluatorOptedOut":
            assert not t.started, f"{ev} opted out of task {t.name} after training started"
            assert a["bond"] == t.ledger[ev] == p.evaluator_bond
            t.ledger[ev] = 0
            t.opted.discard(ev)
        elif name == "BondWithdrawn":
            assert t.ended, f"{ev} withdrew its bond from task {t.name} before the end"
            assert a["amount"] == t.ledger[ev]
            t.ledger[ev] = 0
        elif name == "EvaluatorSlashed":
            assert ev in t.opted, f"task {t.name} slashed {ev}, who never opted in to it"
            t.ledger[ev] -= a["amount"]
            t.slashed[ev] += a["amount"]
            assert t.ledger[ev] >= 0 and t.slashed[ev] <= p.evaluator_bond
            assert a["amount"] <= p.slash_amount
            t.banned.setdefault(ev, e.block)
            t.credits[fund] += a["amount"]
        elif name == "TrainingStarted":
            t.started = True
        elif name == "RoundStarted":
            assert a["round"] == t.last_started + 1, f"round {a['round']} started after {t.last_started}"
            t.last_started = a["round"]
        elif name == "CommitteeDrawn":
            r, g, cohort = a["round"], a["subgroup"], a["cohort"]
            members = [to_checksum_address(m) for m in a["members"]]
            assert members == self.committee(t, r, g, cohort), "CommitteeDrawn differs from task.committee"
            assert len(set(members)) == len(members), f"duplicate committee member in {members}"
            assert set(members) <= t.opted, f"evaluator drawn without a bond: {set(members) - t.opted}"
            k = p.evaluators_per_subgroup
            if cohort == 0:
                assert not set(members) & set(t.banned), "a slashed evaluator drawn"
                assert len(members) == k
            else:
                first = set(self.committee(t, r, g, 0))
                # candidates: not on the first committee, not slashed before the seed block existed
                # (the latest one: a draw re-scheduled after 256 blocks moves it, and the set with it)
                known = t.dispute_seed_block[(r, g)] - 1
                eligible = {x for x in t.opted if x not in first and not (x in t.banned and t.banned[x] <= known)}
                assert not set(members) & first, "a dispute committee member sat on the first committee"
                assert set(members) <= eligible, f"ineligible dispute member: {set(members) - eligible}"
                assert len(members) == min(2 * k + 1, len(eligible))
        elif name == "DisputeOpened":
            t.opened_at.setdefault((a["round"], a["subgroup"]), e.block)
            t.dispute_seed_block[(a["round"], a["subgroup"])] = a["seedBlock"]
        elif name in ("ResultCommitted", "ResultRevealed", "SharesRevealed"):
            r, g = a["round"], a["subgroup"]
            cohort = 0 if name == "SharesRevealed" else int((r, g) in t.opened_at)
            assert ev in self.committee(t, r, g, cohort), f"{name} by non-member {ev} of ({r},{g},{cohort})"
            if name == "ResultCommitted":
                assert (r, g, cohort, ev) not in t.committed, f"{ev} committed twice"
                t.committed.add((r, g, cohort, ev))
            elif name == "ResultRevealed":
                assert (r, g, cohort, ev) in t.committed, f"{ev} revealed without commitment"
                assert all(x[0] != ev for x in t.revealed[(r, g, cohort)]), f"{ev} revealed twice"
                t.revealed[(r, g, cohort)].append((ev, _cid(a["result"])))
        elif name == "SubgroupFinalized":
            r, g = a["round"], a["subgroup"]
            cohort = int((r, g) in t.opened_at)
            if a["status"] == SubgroupStatus.ACCEPTED:
                votes = sum(1 for _, res in t.revealed[(r, g, cohort)] if res == _cid(a["result"]))
                n = len(self.committee(t, r, g, cohort))
                assert 2 * votes > n, f"({r},{g}) accepted with {votes} of {n} member votes"
        elif name in ("ScoresCommitted", "ScoresRevealed", "OutputsRevealed", "EvaluatorScored"):
            g = a["subgroup"]
            assert ev in self.committee(t, self.final_round(t), g, 0), f"{name} by non-member {ev} of subgroup {g}"
            if name == "ScoresCommitted":
                assert (g, ev) not in t.score_committed, f"{ev} committed scores twice"
                t.score_committed.add((g, ev))
            elif name in ("ScoresRevealed", "OutputsRevealed"):
                assert (g, ev) in t.score_committed, f"{ev} revealed scores without commitment"
                if name == "ScoresRevealed":
                    t.score_revealed[(g, ev)] = list(a["scores"])
                else:
                    t.outputs_revealed[(g, ev)] = bytes(a["digest"])
        elif name == "FeePaid":
            assert any(ev in m for m in t.committees.values()), "fee paid to a non-member"
            t.credits[ev] += a["amount"]
            t.fees += a["amount"]
            assert t.fees <= p.fee_budget
        elif name == "RewardsSettled":
            assert not t.ended
            t.ended, t.settled = True, a
            t.credits[fund] += a["publicGoods"]
            t.credits[self.addr(t.owner)] += a["ownerRefund"]
            assert a["participantPool"] + a["publicGoods"] + a["ownerRefund"] + t.fees == p.reward_deposit + p.fee_budget
        elif name == "TaskCancelled":
            assert not t.ended and not t.started and t.fees == 0
            t.ended = True
            t.credits[self.addr(t.owner)] += p.reward_deposit + p.fee_budget
        elif name == "TaskAbandoned":
            assert not t.ended and t.started
            t.ended = True
            public_goods = p.reward_deposit * p.public_goods_bps // 10_000
            pool = p.reward_deposit - public_goods
            total, unit = a["contributions"], a["perContribution"]
            assert unit == (pool // total if total else 0)
            refund = p.fee_budget - t.fees + (pool if total == 0 else 0)
            public_goods += pool - unit * total if total else 0
            t.credits[fund] += public_goods
            t.credits[self.addr(t.owner)] += refund
        elif name == "ExcessSwept":
            t.swept += a["amount"]
            t.credits[fund] += a["amount"]
        elif name == "Claimed":
            t.claimed[a["account"]] += a["amount"]

    # ------------------------------------------------------------------ invariants
    def _fresh(self, t: TaskState) -> bool:
        """A task's state only changes with its own events (or a token sent to it): skip otherwise."""
        key = (len(t.events), t.donated)
        if t.checked == key:
            return False
        t.checked = key
        return True

    def _check_all(self) -> None:
        for t in self.tasks:
            t.checked = -1
        self._sync_events()
        self.touched = set(self.balances)
        self.supply_is_conserved()
        self.tasks_are_isolated()

    @invariant()
    def supply_is_conserved(self):
        """Conservation: the supply is constant and every token is held by someone."""
        FIGURES["checks"] += 1  # one per step, plus one after the set-up
        self._prefetch()
        self._sync_events()
        if not self.touched:  # no Transfer event, no balance moved
            return
        token = self.din.token.functions
        assert self.v(token.totalSupply()) == self.supply
        # the replayed balances add up to the supply (transfers only move tokens) and every balance
        # a transfer moved is what the token says: so every token is held by someone known
        assert sum(self.balances.values()) == self.supply
        for h in sorted(self.touched):
            assert self.v(token.balanceOf(h)) == self.balances[h], f"balance of {h} differs from its transfers"
        self.touched = set()
        assert self.balances.get(self.din.registry.address, 0) == 0  # the registry holds keys only

    @invariant()
    def tasks_are_isolated(self):
        """Per task: balance = liabilities (+ unswept excess); bonds move only with the task's own
        events and stay at risk while it trains or scores; claims never exceed what was credited."""
        self._sync_events()
        for t in self.tasks:
            if not self._fresh(t):
                continue
            self._check_accounts(t)
            self._check_bonds(t)
            self._check_claims(t)
            self._check_rounds(t)

    def _check_accounts(self, t: TaskState) -> None:
        balance = self.v(self.din.token.functions.balanceOf(t.address))
        liabilities = self.v(t.F.liabilities())
        assert balance == liabilities + t.donated - t.swept, (
            f"task {t.name}: balance {balance} != liabilities {liabilities} + unswept excess {t.donated - t.swept}")

    def _check_bonds(self, t: TaskState) -> None:
        F, p = t.F, t.params
        escrow = 0
        for ev, left in t.ledger.items():
            bond = self.v(F.bondOf(ev))
            assert bond == left, f"task {t.name}: bondOf({ev}) = {bond}, its own events say {left}"
            escrow += bond
        for ev in set().union(*(u.banned for u in self.tasks)):  # a ban is local to the task that slashed
            banned_at = self.v(F.bannedAt(ev))
            assert banned_at == t.banned.get(ev, 0), f"task {t.name}: bannedAt({ev}) = {banned_at}"
        assert self.v(F.bondEscrow()) == escrow
        ph = self.phase(t)
        listed = list(self.v(F.evaluators()))
        assert set(listed) == {ev for ev in t.opted}, f"task {t.name}: evaluators() {listed} != opted {t.opted}"
        if ph in (T, S):  # stake at risk: nothing left before the end
            for ev in listed:
                assert t.ledger[ev] + t.slashed[ev] == p.evaluator_bond, f"{ev}'s bond left task {t.name} early"
        active = sum(1 for ev in listed if ev not in t.banned)
        assert self.v(F.activeEvaluators()) == active

    def _check_claims(self, t: TaskState) -> None:
        F, p = t.F, t.params
        total_claimed = sum(t.claimed.values())
        assert total_claimed <= p.reward_deposit + p.fee_budget + sum(t.slashed.values()) + t.swept
        owed = 0
        for a in set(t.credits) | set(t.claimed) | {self.addr(t.owner), self.din.public_goods_fund}:
            c = self.v(F.claimable(a))
            owed += c
            reward = t.reward_paid.get(a, 0)
            assert c + t.claimed[a] == t.credits[a] + reward, (
                f"task {t.name}, {a}: claimable {c} + claimed {t.claimed[a]} != credited {t.credits[a]} + reward {reward}")
        assert owed == self.v(F.totalClaimable())
        assert not (set(t.reward_paid) - set(t.claimed)), "a reward recorded without a Claimed event"
        for a in t.reward_paid:
            assert self.v(F.rewardOf(a)) == 0, f"{a} can claim its reward again"
        ph = self.phase(t)
        if ph in (FIN, A_):
            pool = self.v(F.participantPool())
            if ph == FIN:
                assert pool == t.settled["participantPool"]
            else:
                assert pool == self.v(F.perContribution()) * self.v(F.totalContributions())
            shares = sum(self.v(F.allocationOf(a)) for a in self.registered(t))
            assert shares == pool, f"task {t.name}: the participants' shares add up to {shares}, the pool is {pool}"
            assert self.v(F.participantPoolRemaining()) == pool - sum(t.reward_paid.values())
        else:
            assert not t.reward_paid and self.v(F.participantPoolRemaining()) == 0

    def _check_rounds(self, t: TaskState) -> None:
        F = t.F
        ph, final = self.phase(t), self.final_round(t)
        assert ph in REACHABLE[t.prev_phase], f"task {t.name}: phase went {t.prev_phase} -> {ph}"
        assert final < t.params.rounds
        started = t.last_started
        for r in range(started):  # every round before the last started one closed and was published
            info = self.v(F.roundInfo(r))
            assert info[PENDING] == 0 and info[GLOBAL_MODEL][1] != 0, f"round {r + 1} started early"
        if ph in (S, FIN):
            assert final == started and self.v(F.roundInfo(final))[PENDING] == 0
        if ph == FIN:
            assert self.v(F.pendingScoreSubgroups()) == 0
        if ph != t.prev_phase:
            note(f"{t.name} reached {Phase.NAMES[ph]}{' (owner absent)' if t.absent else ''}")
        t.prev_phase = ph


FUZZ = os.environ.get("DIN_LAB_FUZZ", "") not in ("", "0")
# anvil's block hashes differ after every snapshot revert (it draws each block's prevrandao at
# random), so a sequence replayed there can draw other committees: the slow profile reports a
# failing sequence as found, without shrinking it (shrinking replays it); the embedded chain's
# blocks are reproducible (pinned timestamps, prevrandao = keccak(seed, number)) and shrink
REPLAYABLE = os.environ.get("DIN_LAB_FUZZ_CHAIN", "embedded") == "embedded"
SETTINGS = settings(
    max_examples=int(os.environ.get("DIN_LAB_FUZZ_EXAMPLES", 10_000)) if FUZZ else 25,
    stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # no explain phase: it replays the failing example under a tracer, which is slow on py-evm
    # (hypothesis caps shrinking at five minutes by itself)
    phases=[HPhase.explicit, HPhase.generate, HPhase.target] + ([HPhase.shrink] if REPLAYABLE else []),
)


@pytest.mark.slow
@pytest.mark.timeout(0 if FUZZ else 600)
def test_task_invariants_under_random_calls(request):
    """The CI profile on the embedded chain; ``make fuzz`` (benchmarks/fuzz.py) runs the slow
    profile on anvil (``DIN_LAB_FUZZ_CHAIN=anvil``) in several processes and merges their reports
    (``DIN_LAB_FUZZ_REPORT``: this process's figures, as JSON)."""
    backend = os.environ.get("DIN_LAB_FUZZ_CHAIN", "embedded")
    BACKEND["url"] = request.getfixturevalue("anvil_pruned_url") if backend == "anvil" else backend
    FIGURES.clear()
    REPORT["started"] = time.monotonic()
    REPORT["backend"] = backend
    outer = statistics_collector.value  # pytest's --hypothesis-show-statistics, if asked for

    def collect(stats) -> None:
        """Hypothesis' own count of the sequences it ran, by status: "valid" ones count towards
        max_examples; an "overrun" one ran out of generated data part way and is not counted."""
        for phase in stats.values():
            if isinstance(phase, dict):
                for case in phase.get("test-cases", ()):
                    FIGURES[f"sequences {case['status']}"] += 1
        if outer is not None:
            outer(stats)

    def run() -> None:
        with statistics_collector.with_value(collect):
            run_state_machine_as_test(DinTaskMachine, settings=SETTINGS)

    try:
        in_fresh_thread(run)
    finally:
        write_report(final=True)


REPORT: dict = {"started": 0.0, "backend": "embedded", "written": 0.0}


def write_report(*, final: bool = False) -> None:
    """This process's figures as JSON at ``DIN_LAB_FUZZ_REPORT`` (every 10 s while it runs, so the
    runner can show progress, and at the end with ``"done": true``)."""
    path = os.environ.get("DIN_LAB_FUZZ_REPORT")
    now = time.monotonic()
    if not path or (not final and now - REPORT["written"] < 10):
        return
    REPORT["written"] = now
    doc = {"backend": REPORT["backend"], "seconds": round(now - REPORT["started"], 1), "done": final,
           "max_examples": SETTINGS.max_examples, "stateful_step_count": SETTINGS.stateful_step_count,
           "figures": dict(sorted(FIGURES.items()))}
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)  # never a half-written report
