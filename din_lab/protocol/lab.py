"""The Lab: one DIN task run for real, phase by phase, on a chain and a content store.

A round is a state machine whose phases carry the paper's names (section 5.1):

``assign`` the round's seed fixes subgroups and committees (on chain); ``train`` participants train
locally from the global model; ``submit`` each uploads its update to IPFS and records the CID on
chain; ``aggregate`` every committee member fetches its subgroup's updates and computes their sum;
``commit`` and ``reveal`` the members vote on the result's CID by commit-reveal; ``finalize`` the
contract accepts a majority result, pays its backers and slashes the rest (no majority: a dispute
with a fresh committee of 2E+1, capped at the eligible evaluators); ``publish`` the owner publishes the next global model, the
weighted mean of the accepted results, which anyone can recompute (:meth:`Lab.verify_round`).

After the last round: ``score`` the owner publishes the evaluation set and the final round's
committees score the participants of their subgroups (commit); ``reward`` they reveal, the
contract reduces the scores with BlockFlow's median rule and settles the deposit; ``claim``
everyone pulls what it is owed and the owner publishes the final model.

Updates travel in plaintext by default. With ``secagg=True`` (``--secagg on``) they are masked
(:mod:`din_lab.roles.secure_aggregation`): in ``submit`` participants first advertise fresh round
keys and committee-sealed shares (aux objects on IPFS, no transaction), then mask and submit
``(masked CID, aux CID)``; in ``aggregate`` each committee member records its share reveal on chain
(``revealShares``, in the share window before the commit window) and unmasks the subgroup's sum
from the reveals recorded there (a quorum failure becomes an accepted, aborted result); in ``score`` participants reveal their final-round update to their own committee only.
Scoring reads the owner's test set in plaintext by default. With ``evaluation="he"``
(``--evaluation he``, paper section 5.2) the owner publishes it CKKS-encrypted in ``score``
(``publishEncryptedEvaluationSet``: CIDs and parameters on chain); each committee member evaluates
its subgroup's contributions on it and commits to its outputs' digest; in ``reward`` members reveal
the digests (``revealOutputs``), the owner decrypts the outputs a majority agreed on and publishes
the scores (``publishScores``, accepted for that digest only), and a subgroup without a majority is
closed with nothing paid on its scores (``closeUnresolvedScores``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from din_lab.chain import Chain, Receipt, connect
from din_lab.chain import assignment as assign
from din_lab.chain.din import (
    WAD,
    Phase,
    SubgroupStatus,
    TaskParams,
    cid_arg,
    deploy,
    mine_past_seed,
    outputs_commitment,
    result_commitment,
    scores_commitment,
    sign_update,
    to_wad,
)
from din_lab.cid import Cid
from din_lab.config import MIN_STAKE, ExperimentConfig
from din_lab.errors import ContractRevert, DinLabError, ProtocolError
from din_lab.he import (
    EncryptedTable,
    EvaluationPool,
    HEParams,
    OwnerKeys,
    encrypt_test_set,
    load_public_context,
    params_for_depth,
)
from din_lab.learning import TrainingConfig, build_model, flatten, lab_model_spec, load_dataset, partition
from din_lab.roles import codec
from din_lab.roles import encrypted_evaluation as ee
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agents import Evaluator, ModelOwner, Participant
from din_lab.roles.behaviours import assign_behaviours, evaluator_behaviour, participant_behaviour
from din_lab.roles.scoring import contribution_scores, evaluate_vector
from din_lab.secagg import Committee, SecAggError
from din_lab.storage import ContentStore, open_store
from din_lab.storage.serialization import json_to_bytes, tensors_to_bytes

log = logging.getLogger(__name__)

RELAY_BATCH = 100  # signed updates per relayed transaction (about 1.5M gas; see benchmarks/gas.py)
ROUND_PHASES = ("assign", "train", "submit", "aggregate", "commit", "reveal", "finalize", "publish")
FINAL_PHASES = ("score", "reward", "claim")
BASELINE_NOTE = ("baseline: updates travel in plaintext (secure aggregation: --secagg on); evaluators screen each "
                 "update for poisoning before aggregating")
SECAGG_NOTE = ("secure aggregation: evaluators see only each subgroup's sum of masked updates, never one update; "
               "they cannot screen individual updates for poisoning while aggregating, and at scoring each "
               "participant reveals its final-round update to its own committee only, sealed to the members' keys "
               "(the committee learns it; nobody else does)")
HE_NOTE = ("encrypted evaluation: the owner's test inputs are published CKKS-encrypted (labels stay with the owner); "
           "committees evaluate the contributions on them and agree on the outputs by digest; the owner, the key "
           "holder, decrypts the agreed outputs and publishes the scores, which the contract accepts for the agreed "
           "digest only. Trust assumption: " + ee.TRUST_NOTE)
PLAINTEXT_EVALUATION_NOTE = "plaintext evaluation: evaluators receive the owner's test set in plaintext (--evaluation he encrypts it)"


def _is_abort(data: bytes) -> bool:
    """Is this stored subgroup result a secure-aggregation abort?"""
    try:
        return bool(codec.decode_result(data).aborted)
    except DinLabError:
        return False


@dataclass(frozen=True)
class LabEvent:
    """One thing that happened: a transaction, an upload, a payment, a refusal."""

    phase: str
    round: int | None
    actor: str
    action: str
    tx_hash: str | None = None
    gas: int = 0
    block: int | None = None
    cid: str | None = None
    amount: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class StepReport:
    """What :meth:`Lab.step` did."""

    phase: str
    round: int | None
    events: tuple[LabEvent, ...]
    seconds: float
    done: bool


@dataclass
class _RoundState:
    seed: bytes = b""
    groups: int = 0
    members: dict[int, list[str]] = field(default_factory=dict)
    committees: dict[int, list[str]] = field(default_factory=dict)
    updates: dict[str, codec.Update] = field(default_factory=dict)
    results: dict[tuple[int, str], tuple[Cid, bytes]] = field(default_factory=dict)  # (g, evaluator) -> cid, salt
    votes: dict[tuple[int, str], bytes] = field(default_factory=dict)  # commitments by (g, evaluator)
    accepted: dict[int, Cid] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    disputes: int = 0
    global_model: np.ndarray | None = None
    global_cid: Cid | None = None
    started: float = 0.0
    gas: int = 0
    reference: tuple[codec.RoundReference | None] | None = None
    submitted: dict[str, Cid] | None = None
    submitted_aux: dict[str, Cid | None] | None = None
    sent: set[str] = field(default_factory=set)
    vanished: set[str] = field(default_factory=set)
    # secure aggregation: announced aux CIDs (subgroup -> position -> CID), each subgroup's view as
    # the committee reads it, the committee's published share reveals, aborted subgroups
    aux_cids: dict[int, dict[int, Cid]] = field(default_factory=dict)
    views: dict[int, sa.SubgroupView] = field(default_factory=dict)
    share_reveals: dict[int, dict[int, Cid]] = field(default_factory=dict)
    share_pools: dict[int, list] = field(default_factory=dict)
    committee_keys: dict[int, Committee] = field(default_factory=dict)
    aborted: dict[int, str] = field(default_factory=dict)
    sealed: dict[str, Cid] = field(default_factory=dict)
    abort_votes: set[tuple[int, str]] = field(default_factory=set)  # (g, member) whose result is an abort


class Lab:
    """Chain + store + roles for one task. Build with :meth:`Lab.create`; drive with
    :meth:`step` (one phase) or :meth:`run` (the whole task)."""

    def __init__(self, *, config: ExperimentConfig, chain: Chain, store: ContentStore, progress: bool = False) -> None:
        from din_lab.protocol.checks import check_config

        check_config(config)
        self.config = config
        self.chain = chain
        self.store = store
        self.progress = progress
        self.events: list[LabEvent] = []
        self.rounds: list[_RoundState] = []
        self.notes: list[str] = [SECAGG_NOTE if config.secagg else BASELINE_NOTE,
                                 HE_NOTE if config.evaluation == "he" else PLAINTEXT_EVALUATION_NOTE]
        self._names: dict[str, str] = {}
        self._participant_keys: dict[str, bytes] = {}
        self._invalid_secure: set[tuple[int, int]] = set()
        self._failed: tuple[str, str] | None = None
        self._invalid_results: set[str] = set()
        # encrypted evaluation: the recorded parameters and test-set digest, each member's outputs
        # report (subgroup, member, digest, CID, salt), and the first honest member's opening
        self._he_params: HEParams | None = None
        self._he_test_set: str | None = None
        self._output_reports: list[tuple[int, Evaluator, bytes, Cid, bytes]] = []
        self._honest_outputs: dict[int, tuple[bytes, Cid, bytes]] = {}
        self._plan: Iterator[tuple[str, int | None]] = self._phases()
        self._next: tuple[str, int | None] | None = next(self._plan)
        self._setup()

    # ------------------------------------------------------------------ set-up

    @classmethod
    def create(cls, config: ExperimentConfig | None = None, *, progress: bool = False, **overrides: Any) -> Lab:
        """Check ``config`` fully (before anything is deployed), connect the chain and the store,
        deploy the contracts, fund and create the roles, create the task and register."""
        from din_lab.protocol.checks import check_config

        if config is not None and overrides:
            raise ProtocolError("give either a config or keyword settings, not both")
        config = config or ExperimentConfig(**overrides)
        check_config(config)
        chain = connect(config.chain, accounts=3 + config.participants + config.evaluators, seed=config.seed)
        return cls(config=config, chain=chain, store=open_store(config.store), progress=progress)

    def _setup(self) -> None:
        cfg, chain = self.config, self.chain
        accounts = chain.accounts
        deployer, owner_acct, fund = accounts[0], accounts[1], accounts[2]
        rng = np.random.default_rng(cfg.seed)
        self.dataset = load_dataset(cfg.dataset, seed=cfg.seed)
        self.model_spec = lab_model_spec(cfg.model)
        self.model = build_model(self.model_spec, num_features=self.dataset.num_features,
                                 num_classes=self.dataset.num_classes, seed=cfg.seed)
        self.training = TrainingConfig(epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.learning_rate,
                                       optimizer=cfg.optimizer)
        self.owner = ModelOwner(name="owner", account=owner_acct, tampers=cfg.owner_tampers)
        self.fund = fund
        p_beh = assign_behaviours(cfg.participants, cfg.malicious_participants, make=participant_behaviour, rng=rng,
                                  field="malicious_participants")
        e_beh = assign_behaviours(cfg.evaluators, cfg.malicious_evaluators, make=evaluator_behaviour, rng=rng,
                                  field="malicious_evaluators")
        self.participants = [Participant(name=f"participant {i}", account=accounts[3 + i], index=i, behaviour=b)
                             for i, b in enumerate(p_beh)]
        self.evaluators = [Evaluator(name=f"evaluator {i}", account=accounts[3 + cfg.participants + i], index=i,
                                     behaviour=b) for i, b in enumerate(e_beh)]
        parts = partition(self.dataset.y_train, num_participants=cfg.participants, spec=cfg.partition, seed=cfg.seed)
        for p, idx in zip(self.participants, parts, strict=True):
            p.receive_data(self.dataset.X_train[idx].copy(), self.dataset.y_train[idx].copy())
        # from here on the training data exists only inside the participants
        self.num_train = self.dataset.num_train
        self.dataset = dataclasses.replace(self.dataset, X_train=self.dataset.X_train[:0], y_train=self.dataset.y_train[:0])
        self._names = {deployer.address: "deployer", owner_acct.address: "owner", fund.address: "public-goods fund"}
        self._names.update({r.address: r.name for r in (*self.participants, *self.evaluators)})
        self._by_address = {r.address: r for r in (*self.participants, *self.evaluators)}

        self.din = deploy(chain, deployer=deployer, public_goods_fund=fund.address, min_bond=self._wad(MIN_STAKE))
        token = self.din.token.functions
        self._tx("setup", None, deployer, token.transfer(owner_acct.address, self._wad(cfg.owner_tokens)),
                 "fund owner", amount=cfg.owner_tokens)
        for e in self.evaluators:
            self._tx("setup", None, deployer, token.transfer(e.address, self._wad(cfg.evaluator_stake)),
                     "fund evaluator", amount=cfg.evaluator_stake)
        self.balances_before = self.balances()
        addresses = [owner_acct.address, fund.address, *(r.address for r in (*self.participants, *self.evaluators))]
        self.balances_raw_before = {a: chain.call(token.balanceOf(a)) for a in addresses}
        if cfg.secagg:  # participants seal their share bundles and reveals to these keys
            for e in self.evaluators:
                self._tx("setup", None, e.account, self.din.registry.functions.setPublicKey(e.public_key),
                         "publish X25519 key")
        self.global_vector = flatten(self.model)
        genesis = self._add(codec.encode_model(self.global_vector, round_=-1, model=cfg.model))
        n, s, k = cfg.participants, cfg.subgroup_size, cfg.evaluators_per_subgroup
        groups = n // s
        # windows in blocks, sized to the transactions each needs (the embedded chain and anvil mine
        # one block per transaction): every member's vote, plus a dispute's finalize and larger committee;
        # never below the factory's minimum window
        least = int(chain.call(self.din.factory.functions.minWindow()))
        votes = max(least, groups * (2 * k + 2) + 4)
        batches = -(-n // RELAY_BATCH) if cfg.relayed_submissions else n
        share_reveals = max(least, groups * k + 2) if cfg.secagg else 0  # one revealShares per committee member
        self.task_params = TaskParams(
            genesis_model=genesis, reward_deposit=self._wad(cfg.reward_deposit), fee_budget=self._wad(cfg.fee_budget),
            evaluator_fee=self._wad(cfg.evaluator_fee), evaluator_bond=self._wad(cfg.evaluator_stake),
            slash_amount=self._wad(cfg.slash_amount), rounds=cfg.rounds, subgroup_size=s,
            evaluators_per_subgroup=k, max_participants=n, max_evaluators=cfg.evaluators,
            public_goods_bps=cfg.public_goods_bps, encrypted_scoring=cfg.evaluation == "he",
            registration_window=n + 2 * cfg.evaluators + 10, submission_window=max(least, batches + 4),
            share_window=share_reveals, commit_window=votes, reveal_window=votes, publish_window=max(least, 10))
        approve = token.approve(self.din.factory.address, self.task_params.reward_deposit + self.task_params.fee_budget)
        self._tx("setup", None, owner_acct, approve, "approve deposit")
        receipt = self._tx("setup", None, owner_acct, self.din.factory.functions.createTask(self.task_params.to_chain()),
                           "create task", cid=genesis, amount=cfg.reward_deposit + cfg.fee_budget)
        self.task = chain.at("DINTask", receipt.event("TaskCreated").args["task"])
        bond = self.task_params.evaluator_bond
        for e in self.evaluators:  # each evaluator bonds to this task, which alone may slash that bond
            self._tx("setup", None, e.account, token.approve(self.task.address, bond), "approve bond")
            self._tx("setup", None, e.account, self.task.functions.optIn(), "opt in with a bond",
                     amount=cfg.evaluator_stake)
        for p in self.participants:
            self._tx("setup", None, p.account, self.task.functions.register(p.public_key), "register")
        self.genesis_cid = genesis

    @staticmethod
    def _wad(amount: float) -> int:
        return int(round(amount * 1e6)) * 10**12

    # ------------------------------------------------------------------ plumbing

    def _tx(self, phase: str, round_: int | None, sender: Any, fn: Any, action: str, *, cid: Cid | None = None,
            amount: float | None = None, detail: str = "") -> Receipt:
        receipt = self.chain.transact(fn, sender=sender)
        self.events.append(LabEvent(phase=phase, round=round_, actor=self._names.get(sender.address, sender.address),
                                    action=action, tx_hash=receipt.tx_hash, gas=receipt.gas_used, block=receipt.block,
                                    cid=str(cid) if cid else None, amount=amount, detail=detail))
        for ev in receipt.events:  # money the contract moved as a side effect
            if ev.event in ("EvaluatorSlashed", "FeePaid", "Claimed"):
                who = ev.args.get("evaluator") or ev.args.get("account")
                self.events.append(LabEvent(
                    phase=phase, round=round_, actor=self._names.get(who, who),
                    action={"EvaluatorSlashed": "slashed", "FeePaid": "fee paid", "Claimed": "claimed"}[ev.event],
                    tx_hash=receipt.tx_hash, block=receipt.block, amount=ev.args["amount"] / WAD,
                    detail=ev.args.get("reason", "")))
        if round_ is not None and round_ < len(self.rounds):
            self.rounds[round_].gas += receipt.gas_used
        return receipt

    def _note(self, phase: str, round_: int | None, actor: str, action: str, **kw: Any) -> None:
        self.events.append(LabEvent(phase=phase, round=round_, actor=actor, action=action, **kw))

    def _add(self, data: bytes) -> Cid:
        return self.store.add(data, cid_version=1)

    def _bar(self, items: list, desc: str) -> Any:
        return tqdm(items, desc=desc, leave=False, disable=not self.progress or len(items) < 2)

    def _mine_past(self, block: int) -> None:
        if self.chain.block_number <= block:
            self.chain.mine_to(block + 1)

    def balances(self) -> dict[str, float]:
        token = self.din.token.functions
        addresses = [self.owner.address, self.fund.address, *(r.address for r in (*self.participants, *self.evaluators))]
        return {self._names[a]: self.chain.call(token.balanceOf(a)) / WAD for a in addresses}

    def stakes(self) -> dict[str, float]:
        """What is left of each evaluator's bond in this task."""
        F = self.task.functions
        return {e.name: self.chain.call(F.bondOf(e.address)) / WAD for e in self.evaluators}

    # ------------------------------------------------------------------ driving

    def _phases(self) -> Iterator[tuple[str, int | None]]:
        r = 0
        while True:
            for phase in ROUND_PHASES:
                yield phase, r
            if self.chain.call(self.task.functions.phase()) != Phase.TRAINING:
                break
            r += 1
        for phase in FINAL_PHASES:
            yield phase, None

    @property
    def next_phase(self) -> tuple[str, int | None] | None:
        """The phase :meth:`step` runs next (``None`` when the task is over)."""
        return self._next

    @property
    def done(self) -> bool:
        return self._next is None

    def step(self) -> StepReport:
        """Run one phase; returns its events."""
        if self._failed is not None:
            raise ProtocolError(f"the lab stopped when phase {self._failed[0]!r} failed ({self._failed[1]}); "
                                "its chain state is kept for inspection, start a new Lab to run again")
        if self._next is None:
            raise ProtocolError("the task is over: nothing left to step")
        phase, round_ = self._next
        before = len(self.events)
        started = time.perf_counter()
        try:
            getattr(self, f"_phase_{phase}")(round_)
        except BaseException as e:
            self._failed = (phase, f"{type(e).__name__}: {e}")
            self._note(phase, round_, "lab", "phase failed", detail=self._failed[1])
            raise
        self._next = next(self._plan, None)
        return StepReport(phase=phase, round=round_, events=tuple(self.events[before:]),
                          seconds=time.perf_counter() - started, done=self._next is None)

    def run(self, *, on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
        """Run the task to the end."""
        reports = []
        total = len(ROUND_PHASES) * self.config.rounds + len(FINAL_PHASES)
        with tqdm(total=total, desc="DIN task", unit="phase", disable=not self.progress) as bar:
            while not self.done:
                phase, round_ = self._next
                bar.set_description(f"round {round_}: {phase}" if round_ is not None else phase)
                report = self.step()
                reports.append(report)
                bar.update(1)
                if on_step:
                    on_step(report)
        return reports

    # ------------------------------------------------------------------ round phases

    def _phase_assign(self, r: int) -> None:
        F = self.task.functions
        state = _RoundState(started=time.perf_counter())
        if r == 0:
            self._tx("assign", r, self.owner.account, F.startTraining(), "start training")
        # the seed is the hash of a block mined after the draw was scheduled: wait for it, then
        # anyone draws (here the owner's account sends the transaction)
        while int(self.chain.call(F.seedBlock())):
            mine_past_seed(self.chain, self.task)
            self._tx("assign", r, self.owner.account, F.drawRound(), "draw round")
        self.rounds.append(state)
        info = self.chain.call(F.roundInfo(r))
        state.seed, state.groups = bytes(info[0]), int(info[4])
        order = [p.address for p in self.participants]  # registration order = on-chain index
        size = self.config.subgroup_size
        for g in range(state.groups):
            # recomputed off chain from the seed (DINTask.subgroupMembers, without 100 shuffles in the EVM)
            state.members[g] = [order[i] for i in assign.subgroup_members(g, seed=state.seed, participants=len(order),
                                                                          subgroup_size=size)]
            state.committees[g] = list(self.chain.call(F.committee(r, g, 0)))
        if state.groups and state.members[0] != list(self.chain.call(F.subgroupMembers(r, 0))):
            raise ProtocolError("the off-chain subgroup assignment disagrees with the contract's")
        self._note("assign", r, "contract", "subgroups drawn",
                   detail=f"{state.groups} subgroups, seed {state.seed.hex()[:16]}...")

    def _phase_train(self, r: int) -> None:
        state = self.rounds[r]
        # participants fetch the global model by its CID
        cid = self.genesis_cid if r == 0 else self.rounds[r - 1].global_cid
        global_vector = codec.decode_model(self.store.cat(cid))
        state.updates = Participant.train_cohort(self.participants, model=self.model, global_vector=global_vector,
                                                 config=self.training, round_=r, seed=self.config.seed,
                                                 num_classes=self.dataset.num_classes)
        self._note("train", r, "participants", "trained locally",
                   detail=f"{len(self.participants)} participants, one batched computation")

    def _phase_submit(self, r: int) -> None:
        F = self.task.functions
        state = self.rounds[r]
        state.vanished = self._vanishing(r)
        for p in self.participants:
            if p.address in state.vanished:
                self._note("submit", r, p.name, "vanished mid-round: trained, never submitted")
        if self.config.secagg:
            self._advertise(r)
        senders = [p for p in self.participants if p.address in state.updates and p.address not in state.vanished]
        if self.config.secagg:
            cids, aux = self._mask(r, senders)
        else:
            cids, aux = {}, {}
            for p in self._bar(senders, f"round {r} submit"):
                cids[p.address] = self._add(codec.encode_update(state.updates[p.address]))
                self._note("submit", r, p.name, "uploaded update", cid=str(cids[p.address]))
        state.sent = set(cids)
        if self.config.relayed_submissions and cids:
            signed = [sign_update(participant=self._by_address[a].account, task=self.task, chain_id=self.chain.chain_id,
                                  round_=r, update=c, aux=aux.get(a)) for a, c in cids.items()]
            for start in range(0, len(signed), RELAY_BATCH):
                batch = signed[start:start + RELAY_BATCH]
                self._tx("submit", r, self.owner.account, F.submitUpdatesRelayed(r, batch), "relay signed updates",
                         detail=f"{len(batch)} updates in one transaction")
        else:
            for a, c in cids.items():
                p = self._by_address[a]
                self._tx("submit", r, p.account, F.submitUpdate(r, c.to_chain(), cid_arg(aux.get(a))),
                         "submit masked update" if self.config.secagg else "submit update", cid=c)
        self._mine_past(int(self.chain.call(F.roundInfo(r))[3]))

    def _vanishing(self, r: int) -> set[str]:
        """Who trains this round and then never submits: ``dropout`` behaviours, plus the configured
        fraction of participants drawn afresh each round (seeded)."""
        gone = {p.address for p in self.participants if not p.behaviour.submits(r)}
        count = int(round(self.config.dropout * len(self.participants)))
        if count:
            rng = np.random.default_rng([self.config.seed, r, 29])
            gone |= {self.participants[i].address for i in rng.choice(len(self.participants), size=count,
                                                                       replace=False)}
        return gone

    # ------------------------------------------------------------------ secure aggregation

    def _context(self, r: int, g: int) -> sa.RoundContext:
        return sa.round_context(task=self.task.address, round_=r, subgroup=g)

    def _committee(self, r: int, g: int) -> Committee:
        """Subgroup ``g``'s first committee with the members' long-term X25519 keys as the registry
        publishes them (read once per round); a DinLabError if a key is missing or unusable."""
        state = self.rounds[r]
        if g not in state.committee_keys:
            reg = self.din.registry.functions
            keys = tuple(bytes(self.chain.call(reg.publicKeyOf(a))) for a in state.committees[g])
            state.committee_keys[g] = Committee(public_keys=keys)
        return state.committee_keys[g]

    def _participant_key(self, address: str) -> bytes:
        """A participant's long-term X25519 key as it registered it with the task."""
        if address not in self._participant_keys:
            self._participant_keys[address] = bytes(self.chain.call(self.task.functions.publicKeyOf(address)))
        return self._participant_keys[address]

    def _advertise(self, r: int) -> None:
        """Every participant of a subgroup draws fresh round keys, shares them with the subgroup's
        committee and announces the aux object's CID to its subgroup (off chain: no transaction)."""
        state = self.rounds[r]
        for g in range(state.groups):
            context = self._context(r, g)
            announced = state.aux_cids.setdefault(g, {})
            try:
                committee = self._committee(r, g)
            except DinLabError as e:  # a member published no key, a duplicate or a malformed one
                self._note("submit", r, "participants", f"subgroup {g}'s committee keys are unusable: no shares, "
                           "no secure aggregation for it this round", detail=str(e))
                continue
            for pos, addr in enumerate(state.members[g]):
                if addr not in state.updates:
                    continue
                p = self._by_address[addr]
                try:
                    aux = p.advertise(round_=r, position=pos, context=context, committee=committee)
                except DinLabError as e:  # e.g. a member's key is a low-order point
                    self._note("submit", r, p.name, "cannot share its round secrets with the committee", detail=str(e))
                    continue
                announced[pos] = self._add(aux)
                self._note("submit", r, p.name, f"advertised round keys, shares sealed to subgroup {g}'s committee",
                           cid=str(announced[pos]))

    def _mask(self, r: int, senders: list[Participant]) -> tuple[dict[str, Cid], dict[str, Cid]]:
        """Each sender masks its update against its subgroup's announced aux objects and stores it."""
        state = self.rounds[r]
        where = {a: (g, pos) for g, ms in state.members.items() for pos, a in enumerate(ms)}
        peers: dict[int, dict[int, tuple[Cid, sa.AuxObject]]] = {}
        cids: dict[str, Cid] = {}
        aux: dict[str, Cid] = {}
        for p in self._bar(senders, f"round {r} mask"):
            if p.address not in where:
                self._note("submit", r, p.name, "in no subgroup this round: nothing to mask")
                continue
            g, pos = where[p.address]
            if g not in peers:  # every member of g reads the same announced, content-addressed objects
                peers[g] = sa.read_peers(state.aux_cids.get(g, {}), fetch=self.store.cat, context=self._context(r, g),
                                         members=state.members[g])
            if pos not in peers[g]:
                self._note("submit", r, p.name, "no usable aux object of its own: cannot take part this round")
                continue
            try:
                data = p.mask(state.updates[p.address], round_=r, position=pos, peers=peers[g],
                              secagg_plus=self.config.secagg_graph == "secagg+", seed=sa.graph_seed(state.seed, g))
            except SecAggError as e:
                self._note("submit", r, p.name, "cannot mask its update: does not submit", detail=str(e))
                continue
            cids[p.address] = self._add(data)
            aux[p.address] = state.aux_cids[g][pos]
            self._note("submit", r, p.name, "uploaded masked update", cid=str(cids[p.address]))
        return cids, aux

    def _secure_view(self, r: int, g: int) -> sa.SubgroupView:
        """Subgroup ``g`` as every committee member reads it from the CIDs on chain (deterministic:
        the lab reads it once)."""
        state = self.rounds[r]
        if g not in state.views:
            self._submitted(r)
            submitted = {m: (state.submitted[m], state.submitted_aux.get(m)) for m in state.members[g]
                         if m in state.submitted}
            state.views[g] = view = sa.read_subgroup(
                context=self._context(r, g), members=state.members[g], submitted=submitted, fetch=self.store.cat,
                dimension=self.global_vector.shape[0] + 1, secagg_plus=self.config.secagg_graph == "secagg+",
                seed=sa.graph_seed(state.seed, g))
            for pos, why in sorted(view.rejected.items()):
                self._note("aggregate", r, self.name_of(state.members[g][pos]), f"treated as a dropout in subgroup {g}",
                           detail=why)
            if view.abort:
                self._note("aggregate", r, "committee", f"secure aggregation of subgroup {g} aborts", detail=view.abort)
        return state.views[g]

    def _reveal_shares(self, r: int, g: int) -> None:
        """Each member of subgroup ``g``'s first committee opens the share bundles addressed to it,
        stores its share reveal (Bonawitz's rule) on IPFS and records the CID on chain
        (``revealShares``), inside the share window between the submissions and the commit window."""
        state = self.rounds[r]
        view = self._secure_view(r, g)
        if view.abort is not None:
            return  # the quorum fails: nobody reveals anything
        keys = {m: self._participant_key(m) for m in state.members[g]}
        for h, addr in enumerate(state.committees[g]):
            ev = self._by_address[addr]
            if not ev.behaviour.reveals:  # a silent member reveals nothing; t of the others suffice
                self._note("aggregate", r, ev.name, f"stays silent: reveals no shares for subgroup {g}")
                continue
            shares, problems = ev.reveal_shares(view, holder=h, participant_keys=keys)
            for pos, why in sorted(problems.items()):
                self._note("aggregate", r, ev.name, f"cannot open the shares of {self.name_of(state.members[g][pos])}",
                           detail=why)
            cid = self._add(sa.encode_share_reveal(shares, holder=h, evaluator=addr, context=view.context))
            self._tx("aggregate", r, ev.account, self.task.functions.revealShares(r, g, cid.to_chain()),
                     f"reveal {len(shares)} shares for subgroup {g}", cid=cid)

    def _share_pool(self, r: int, g: int) -> list:
        """The shares subgroup ``g``'s first committee revealed, as recorded on chain (``SharesRevealed``)
        by the end of the share window: every member, and a dispute committee, unmasks from exactly
        these. Each holder's reveal is checked whole before it is pooled."""
        state = self.rounds[r]
        if g in state.share_pools:  # every member reads the same events and objects: check them once
            return state.share_pools[g]
        view = self._secure_view(r, g)
        holders = state.committees[g]
        pool = state.share_pools[g] = []
        for event in self.chain.events.where("SharesRevealed", address=self.task.address, round=r, subgroup=g):
            who = event.args["evaluator"]
            holder = holders.index(who)  # the contract admits members only
            cid = Cid.from_chain(event.args["shares"])
            state.share_reveals.setdefault(g, {})[holder] = cid
            try:
                pool += sa.decode_share_reveal(self.store.cat(cid), holder=holder, view=view)
            except DinLabError as e:
                self._note("aggregate", r, self.name_of(who), f"share reveal for subgroup {g} refused", detail=str(e))
        return pool

    def _aggregate_secure(self, r: int, g: int) -> codec.SubgroupResult:
        """The unmasked sum every honest committee member computes for subgroup ``g``."""
        state = self.rounds[r]
        view = self._secure_view(r, g)
        try:
            committee = self._committee(r, g)
        except DinLabError as e:
            return sa.aborted_result(f"the committee's keys are unusable ({e})", members=state.members[g], round_=r,
                                     subgroup=g, dimension=self.global_vector.shape[0])
        return sa.unmask(view, shares=self._share_pool(r, g), committee=committee, round_=r, subgroup=g,
                         max_samples=self.num_train)

    def _submitted(self, r: int) -> dict[str, Cid]:
        """The update CIDs recorded on chain for round ``r`` (read once the submission window closed)."""
        state = self.rounds[r]
        if state.submitted is None:
            events = self.chain.events.where("UpdateSubmitted", address=self.task.address, round=r)
            state.submitted = {e.args["participant"]: Cid.from_chain(e.args["update"]) for e in events}
            state.submitted_aux = {e.args["participant"]: Cid.from_chain(e.args["aux"]) for e in events}
        return state.submitted

    def _aggregate(self, r: int, g: int, evaluator: Evaluator) -> bytes:
        """What ``evaluator`` computes for subgroup ``g``: fetch each member's update by its CID
        on chain, reject missing/malformed/non-finite ones, sum the rest in member order. Under secure
        aggregation: the unmasked sum of the subgroup's masked updates (:meth:`_aggregate_secure`)."""
        if self.config.secagg:
            return self._corrupt(r, g, evaluator, self._aggregate_secure(r, g))
        state = self.rounds[r]
        submitted = self._submitted(r)
        accepted, rejected = [], []
        for member in state.members[g]:
            cid = submitted.get(member)
            reason = "no update" if cid is None else None
            if cid is not None:
                try:
                    update = codec.decode_update(self.store.cat(cid))
                    reason = codec.check_update(update, dimension=self.global_vector.shape[0], round_=r,
                                                participant=member, max_samples=self.num_train)
                except DinLabError as e:
                    reason = str(e)
            if reason is None:
                accepted.append((member, update))
            else:
                rejected.append(member)
        reference = self._reference(r)
        screened = {a for a, u in accepted if codec.screen_update(u, reference) is not None}
        rejected += [a for a, _ in accepted if a in screened]
        accepted = [(a, u) for a, u in accepted if a not in screened]
        result = codec.aggregate_subgroup(accepted, round_=r, subgroup=g, rejected=rejected,
                                          dimension=self.global_vector.shape[0])
        return self._corrupt(r, g, evaluator, result)

    def _corrupt(self, r: int, g: int, evaluator: Evaluator, result: codec.SubgroupResult) -> bytes:
        """The result ``evaluator`` publishes: the honest one, unless its behaviour corrupts it."""
        rng = np.random.default_rng([self.config.seed, r, g, evaluator.index, 11])
        corrupted = evaluator.behaviour.result(result.weighted_sum, rng=rng)
        if corrupted is not result.weighted_sum:
            result = dataclasses.replace(result, weighted_sum=corrupted)
        return codec.encode_result(result)

    def _phase_aggregate(self, r: int) -> None:
        state = self.rounds[r]
        if self.config.secagg:
            for g in range(state.groups):
                self._reveal_shares(r, g)
            self._mine_past(int(self.chain.call(self.task.functions.subgroupInfo(r, 0))[0]))  # the share window
        for g in self._bar(list(range(state.groups)), f"round {r} aggregate"):
            self._aggregate_cohort(r, g, state.committees[g])

    def _aggregate_cohort(self, r: int, g: int, committee: list[str]) -> None:
        state = self.rounds[r]
        for addr in committee:
            ev = self._by_address[addr]
            data = self._aggregate(r, g, ev)
            cid = self._add(data)
            state.results[(g, addr)] = (cid, np.random.default_rng([self.config.seed, r, g, ev.index, 13]).bytes(32))
            if self.config.secagg and _is_abort(data):  # voted as an abort: nobody's update is in it
                state.abort_votes.add((g, addr))
            self._note("aggregate", r, ev.name, f"published subgroup {g} result", cid=str(cid))

    def _phase_commit(self, r: int) -> None:
        state = self.rounds[r]
        for g in range(state.groups):
            self._commit_cohort(r, g, state.committees[g])

    def _commit_cohort(self, r: int, g: int, committee: list[str]) -> None:
        F = self.task.functions
        state = self.rounds[r]
        honest_commitment = None
        members = [self._by_address[a] for a in committee]
        for ev in sorted(members, key=lambda e: e.behaviour.copies):  # copycats act after the others
            cid, salt = state.results[(g, ev.address)]
            commitment = result_commitment(cid, salt, ev.address, aborted=(g, ev.address) in state.abort_votes)
            if ev.behaviour.copies and honest_commitment is not None:
                commitment = honest_commitment  # read from an honest member's transaction
            elif not ev.behaviour.malicious:
                honest_commitment = honest_commitment or commitment
            state.votes[(g, ev.address)] = commitment
            self._tx("commit", r, ev.account, F.commitResult(r, g, commitment), f"commit subgroup {g} vote")

    def _phase_reveal(self, r: int) -> None:
        state = self.rounds[r]
        self._mine_past(int(self.chain.call(self.task.functions.subgroupInfo(r, 0))[1]))
        for g in range(state.groups):
            self._reveal_cohort(r, g, state.committees[g])

    def _reveal_cohort(self, r: int, g: int, committee: list[str]) -> None:
        F = self.task.functions
        state = self.rounds[r]
        members = [self._by_address[a] for a in committee]
        revealed: list[tuple[Cid, bytes, bool]] = []
        for ev in sorted(members, key=lambda e: e.behaviour.copies):
            if not ev.behaviour.reveals:
                self._note("reveal", r, ev.name, f"stays silent on subgroup {g}")
                continue
            cid, salt = state.results[(g, ev.address)]
            aborted = (g, ev.address) in state.abort_votes
            if ev.behaviour.copies and revealed:
                cid, salt, aborted = revealed[0]  # an honest member's revealed result and salt
            try:
                reveal = F.revealAbortedResult if aborted else F.revealResult
                self._tx("reveal", r, ev.account, reveal(r, g, cid.to_chain(), salt),
                         f"reveal subgroup {g} vote" + (" (an abort)" if aborted else ""), cid=cid)
                if not ev.behaviour.malicious:
                    revealed.append((cid, salt, aborted))
            except ContractRevert as e:
                self._note("reveal", r, ev.name, f"reveal refused ({e.error_name})", detail=str(e))

    def _phase_finalize(self, r: int) -> None:
        F = self.task.functions
        state = self.rounds[r]
        self._mine_past(int(self.chain.call(F.subgroupInfo(r, 0))[2]))
        pending = list(range(state.groups))
        while pending:
            disputed = []
            for g in pending:
                receipt = self._tx("finalize", r, self.owner.account, F.finalizeSubgroup(r, g), f"finalize subgroup {g}")
                if any(ev.event == "DisputeOpened" for ev in receipt.events):
                    disputed.append(g)
                    state.disputes += 1
                    continue
                fin = receipt.event("SubgroupFinalized")
                if fin.args["status"] == SubgroupStatus.ACCEPTED:
                    state.accepted[g] = Cid.from_chain(fin.args["result"])
                    self._note_abort(r, g, state.accepted[g])
                else:
                    state.failed.append(g)
            if not disputed:
                break
            # a dispute: a fresh, larger committee (cohort 1), drawn from the hash of a block mined
            # after the dispute opened, aggregates and votes again
            self._mine_past(max(int(self.chain.call(F.subgroupInfo(r, g))[6]) for g in disputed))
            for g in disputed:
                while int(self.chain.call(F.subgroupInfo(r, g))[6]):
                    mine_past_seed(self.chain, self.task, round_=r, subgroup=g)
                    self._tx("finalize", r, self.owner.account, F.drawDispute(r, g), f"draw dispute committee {g}")
            for g in disputed:
                committee = list(self.chain.call(F.committee(r, g, 1)))
                self._note("finalize", r, "contract", f"dispute on subgroup {g}",
                           detail=f"fresh committee of {len(committee)}")
                self._aggregate_cohort(r, g, committee)
                self._commit_cohort(r, g, committee)
            # each dispute's windows start at its own finalizeSubgroup block: wait for the latest
            self._mine_past(max(int(self.chain.call(F.subgroupInfo(r, g))[1]) for g in disputed))
            for g in disputed:
                self._reveal_cohort(r, g, list(self.chain.call(F.committee(r, g, 1))))
            self._mine_past(max(int(self.chain.call(F.subgroupInfo(r, g))[2]) for g in disputed))
            pending = disputed
        if not state.accepted:
            self.notes.append(f"round {r}: no subgroup result was accepted; the global model does not change")

    def _note_abort(self, r: int, g: int, cid: Cid) -> None:
        """An accepted secure-aggregation result that records an abort: the subgroup failed cleanly."""
        if not self.config.secagg:
            return
        try:
            reason = codec.decode_result(self.store.cat(cid)).aborted
        except DinLabError:
            return
        if reason:
            self.rounds[r].aborted[g] = reason
            self.notes.append(f"round {r}: secure aggregation of subgroup {g} aborted ({reason}); the committee "
                              "accepted the abort (nobody slashed, no participant paid for it); its participants' "
                              "updates are left out of this round's global model and they train again next round")

    def _phase_publish(self, r: int) -> None:
        F = self.task.functions
        state = self.rounds[r]
        previous = codec.decode_model(self.store.cat(self.genesis_cid if r == 0 else self.rounds[r - 1].global_cid))
        vector = self.global_model_from_chain(r, previous=previous)
        if self.owner.tampers:
            vector = (vector + np.float32(0.5)).astype(np.float32)
        state.global_model = vector
        state.global_cid = self._add(codec.encode_model(vector, round_=r, model=self.config.model))
        self.global_vector = vector
        if self.chain.call(F.phase()) != Phase.TRAINING:
            self._note("publish", r, "owner", "holds the final model until rewards settle", cid=str(state.global_cid))
            return
        eligible = self.chain.call(F.activeEvaluators())
        if r + 1 < self.config.rounds and eligible < self.config.evaluators_per_subgroup:
            self.notes.append(f"after round {r} only {eligible} evaluators remain eligible: training ends early")
            self._tx("publish", r, self.owner.account, F.signalFinalRound(), "signal final round")
            return
        self._tx("publish", r, self.owner.account, F.publishGlobalModel(r, state.global_cid.to_chain()),
                 "publish global model", cid=state.global_cid)

    def global_model_from_chain(self, r: int, *, previous: np.ndarray) -> np.ndarray:
        """The global model of round ``r`` as anyone recomputes it: the accepted results' CIDs
        from ``SubgroupFinalized`` events, fetched, decoded and averaged by sample weight."""
        events = self.chain.events.where("SubgroupFinalized", address=self.task.address, round=r)
        results = []
        for e in events:
            if e.args["status"] != SubgroupStatus.ACCEPTED:
                continue
            cid = Cid.from_chain(e.args["result"])
            try:
                result = codec.decode_result(self.store.cat(cid))
                reason = codec.check_result(result, dimension=previous.shape[0], round_=r, subgroup=e.args["subgroup"])
            except DinLabError as err:
                reason = str(err)
            if reason is None:
                results.append(result)
            elif f"{r}/{e.args['subgroup']}" not in self._invalid_results:
                self._invalid_results.add(f"{r}/{e.args['subgroup']}")
                self.notes.append(f"round {r}: accepted result {cid} of subgroup {e.args['subgroup']} is unusable "
                                  f"({reason}); it is left out of the global model")
        return codec.next_global_model(previous, results)

    def verify_round(self, r: int) -> bool:
        """Recompute round ``r``'s global model from the chain and compare its CID with the one the
        owner published. False (and a note) when the owner published anything else."""
        published = self.chain.events.where("GlobalModelPublished", address=self.task.address, round=r)
        if not published:
            raise ProtocolError(f"no global model has been published for round {r}")
        prev_cid = self.genesis_cid if r == 0 else Cid.from_chain(
            self.chain.events.where("GlobalModelPublished", address=self.task.address, round=r - 1)[0].args["model"])
        recomputed = self.global_model_from_chain(r, previous=codec.decode_model(self.store.cat(prev_cid)))
        expected = Cid.coerce(self.store.add(codec.encode_model(recomputed, round_=r, model=self.config.model),
                                             cid_version=1, only_hash=True))
        actual = Cid.from_chain(published[0].args["model"])
        if expected != actual:
            self.notes.append(f"round {r}: the owner published {actual}, the accepted results give {expected}")
            return False
        return True

    # ------------------------------------------------------------------ scoring, rewards, claims

    def _phase_score(self, _: None) -> None:
        F = self.task.functions
        final = int(self.chain.call(F.finalRound()))
        state = self.rounds[final]
        if self.config.evaluation == "he":
            return self._score_encrypted(final)
        test_set = self._add(tensors_to_bytes({"X": self.dataset.X_test, "y": self.dataset.y_test},
                                              metadata={"kind": "din-lab/test-set/plaintext"}))
        context = self._add(json_to_bytes({"evaluation": "plaintext", "note": PLAINTEXT_EVALUATION_NOTE,
                                           "scorer": self.config.scorer}))
        self._tx("score", None, self.owner.account, F.publishEvaluationSet(test_set.to_chain(), context.to_chain()),
                 "publish evaluation set", cid=test_set)
        if self.config.secagg:
            self._reveal_contributions(final)
        previous = self._previous_model(final)
        allies = {p.address for p in self.participants if p.behaviour.malicious}
        self._score_reports: list[tuple[int, Evaluator, list[int], bytes]] = []
        self._honest_openings: dict[int, tuple[list[int], bytes]] = {}
        for g in self._bar(list(range(state.groups)), "score"):
            members = state.members[g]
            honest = None
            honest_commitment = None
            committee = sorted((self._by_address[a] for a in state.committees[g]), key=lambda e: e.behaviour.copies)
            for ev in committee:
                addr = ev.address
                if self.chain.call(F.bannedAt(addr)):
                    self._note("score", None, ev.name, "slashed in this task: no longer scores")
                    continue
                if honest is None:  # every honest evaluator computes the same scores (deterministic)
                    honest = contribution_scores(
                        members=members, updates=self._accepted_updates(final, members, g=g, evaluator=ev),
                        previous=previous,
                        model=self.model, x=self.dataset.X_test, y=self.dataset.y_test, scorer=self.config.scorer,
                        seed=int.from_bytes(state.seed[:8], "big") ^ g)
                rng = np.random.default_rng([self.config.seed, g, ev.index, 17])
                scores = ev.behaviour.scores(honest, allies=np.array([m in allies for m in members]), rng=rng)
                wads = [to_wad(float(np.clip(s, 0.0, 1.0))) for s in scores]
                salt = rng.bytes(32)
                commitment = scores_commitment(wads, salt, ev.address)
                if ev.behaviour.copies and honest_commitment is not None:
                    commitment = honest_commitment  # copied from an honest member's transaction
                elif not ev.behaviour.malicious and honest_commitment is None:
                    honest_commitment = commitment
                    self._honest_openings[g] = (wads, salt)
                self._tx("score", None, ev.account, F.commitScores(g, commitment), f"commit scores of subgroup {g}")
                self._score_reports.append((g, ev, wads, salt))

    def _reveal_contributions(self, r: int) -> None:
        """Secure aggregation's price for individual rewards: each participant whose update entered
        an accepted sum reveals it to its own committee only, sealed to the members' keys."""
        state = self.rounds[r]
        for g in range(state.groups):
            result = self._secure_result(r, g)
            if result is None:
                continue
            keys = self._committee(r, g).public_keys
            for addr in result.included:
                p = self._by_address[addr]
                state.sealed[addr] = self._add(p.seal_contribution(
                    state.updates[addr], round_=r, position=state.members[g].index(addr), committee=keys))
                self._note("score", None, p.name, f"revealed its round {r} update to subgroup {g}'s committee only "
                           "(sealed to the members' keys)", cid=str(state.sealed[addr]))

    def _secure_result(self, r: int, g: int) -> codec.SubgroupResult | None:
        """Subgroup ``g``'s accepted sum, if participants may reveal to its committee: not aborted, and
        including exactly the survivors every honest member reads from the chain (an accepted result
        naming anyone else, e.g. a dropout, would make them reveal an update that never entered a sum)."""
        state = self.rounds[r]
        cid = state.accepted.get(g)
        if cid is None or g in state.aborted:
            return None
        try:
            result = codec.decode_result(self.store.cat(cid))
        except DinLabError:
            return None
        if result.aborted or result.included != sa.included(self._secure_view(r, g)):
            if not result.aborted and (r, g) not in self._invalid_secure:
                self._invalid_secure.add((r, g))
                self.notes.append(f"round {r}: the accepted result of subgroup {g} does not include exactly the "
                                  "participants whose masked updates survived; nobody reveals to its committee")
            return None
        return result

    def _accepted_updates_secure(self, r: int, members: list[str], *, g: int,
                                 evaluator: Evaluator) -> dict[str, codec.Update]:
        """What a committee member scores under secure aggregation: the revealed updates of the
        accepted sum's participants that open (sealed to it, matching the commitment in their masked
        update) and pass the checks and the screening, among the subgroup's revealed updates."""
        state = self.rounds[r]
        result = self._secure_result(r, g)
        if result is None:
            return {}
        view = self._secure_view(r, g)
        holder = state.committees[g].index(evaluator.address)
        out = {}
        for addr in result.included:
            pos = members.index(addr)
            if addr not in state.sealed:
                self._note("score", None, self.name_of(addr), "revealed nothing: scores 0")
                continue
            try:
                update = evaluator.open_contribution(self.store.cat(state.sealed[addr]), context=view.context,
                                                     position=pos, participant=addr, holder=holder,
                                                     participant_public_key=self._participant_key(addr),
                                                     commitment=view.commitments[pos])
            except DinLabError as e:
                self._note("score", None, self.name_of(addr), "reveal refused: scores 0", detail=str(e))
                continue
            reason = codec.check_update(update, dimension=self.global_vector.shape[0], round_=r, participant=addr,
                                        max_samples=self.num_train)
            if reason is not None:
                self._note("score", None, self.name_of(addr), "revealed update refused: scores 0", detail=reason)
                continue
            out[addr] = update
        if len(out) == len(result.included) and result.encoded_sum is not None \
                and not sa.revealed_sum_matches(list(out.values()), result.encoded_sum):
            self.notes.append(f"round {r}: the updates revealed in subgroup {g} do not add up to the sum its "
                              "committee agreed on: someone revealed another update than it masked")
        reference = codec.RoundReference.of(list(out.values()))
        return {m: u for m, u in out.items() if codec.screen_update(u, reference) is None}

    def _accepted_updates(self, r: int, members: list[str], *, g: int, evaluator: Evaluator) -> dict[str, codec.Update]:
        """The members' updates an evaluator accepts (fetched by CID, checked as in aggregation)."""
        if self.config.secagg:
            return self._accepted_updates_secure(r, members, g=g, evaluator=evaluator)
        submitted = self._submitted(r)
        out = {}
        for m in members:
            if m not in submitted:
                continue
            try:
                update = codec.decode_update(self.store.cat(submitted[m]))
            except DinLabError:
                continue
            if codec.check_update(update, dimension=self.global_vector.shape[0], round_=r, participant=m,
                                  max_samples=self.num_train) is None:
                out[m] = update
        reference = self._reference(r)
        return {m: u for m, u in out.items() if codec.screen_update(u, reference) is None}

    def _reference(self, r: int) -> codec.RoundReference | None:
        """The round's screening reference: every evaluator computes the same one from the same
        CIDs on chain, so the lab computes it once per round."""
        state = self.rounds[r]
        if state.reference is None:
            updates = []
            for member, cid in self._submitted(r).items():
                try:
                    update = codec.decode_update(self.store.cat(cid))
                except DinLabError:
                    continue
                if codec.check_update(update, dimension=self.global_vector.shape[0], round_=r, participant=member,
                                      max_samples=self.num_train) is None:
                    updates.append(update)
            state.reference = (codec.RoundReference.of(updates),)
        return state.reference[0]

    def _phase_reward(self, _: None) -> None:
        if self.config.evaluation == "he":
            return self._reward_encrypted()
        F = self.task.functions
        self._mine_past(int(self.chain.call(F.scoreCommitDeadline())))
        revealed: dict[tuple[int, str], list[int]] = {}
        for g, ev, wads, salt in sorted(self._score_reports, key=lambda rep: rep[1].behaviour.copies):
            if not ev.behaviour.reveals:
                self._note("reward", None, ev.name, f"does not reveal scores of subgroup {g}")
                continue
            if ev.behaviour.copies:  # tries the honest member's opening: bound to that member's address
                if g in self._honest_openings:
                    wads, salt = self._honest_openings[g]
                try:
                    self._tx("reward", None, ev.account, F.revealScores(g, wads, salt), f"reveal scores of subgroup {g}")
                    revealed[(g, ev.address)] = wads
                except ContractRevert as e:
                    self._note("reward", None, ev.name, f"reveal refused ({e.error_name})", detail=str(e))
                continue
            self._tx("reward", None, ev.account, F.revealScores(g, wads, salt), f"reveal scores of subgroup {g}")
            revealed[(g, ev.address)] = wads
        self._mine_past(int(self.chain.call(F.scoreRevealDeadline())))
        final = int(self.chain.call(F.finalRound()))
        for g in range(self.rounds[final].groups):
            committee = self.chain.call(F.committee(final, g, 0))
            rows = [revealed.get((g, a), []) for a in committee]
            self._tx("reward", None, self.owner.account, F.finalizeScores(g, rows), f"reduce scores of subgroup {g}")

    # ------------------------------------------------------------------ encrypted evaluation (paper 5.2)

    def _previous_model(self, final: int) -> np.ndarray:
        return codec.decode_model(self.store.cat(self.genesis_cid if final == 0 else self.rounds[final - 1].global_cid))

    def _score_encrypted(self, final: int) -> None:
        """The owner encrypts its test inputs (CKKS, samples packed into slots) and publishes them with
        the public evaluation context (no secret key) and the parameters; each committee member of
        the final round loads them by the CIDs on chain, evaluates its subgroup's contributions on
        them and commits to the digest of its encrypted outputs."""
        F = self.task.functions
        cfg, state = self.config, self.rounds[final]
        params = params_for_depth(ee.he_model(self.model).depth)
        self.owner.he_keys = OwnerKeys(params)
        public = self.owner.he_keys.public_context()
        encrypted = encrypt_test_set(self.dataset.X_test, context=self.owner.he_keys.context, params=params)
        test_cid, ctx_cid = self._add(encrypted.to_bytes()), self._add(public)
        receipt = self._tx("score", None, self.owner.account,
                           F.publishEncryptedEvaluationSet(test_cid.to_chain(), ctx_cid.to_chain(), params.to_json()),
                           "publish encrypted test set", cid=test_cid,
                           detail=f"{encrypted.samples} samples x {encrypted.columns} features, N = "
                                  f"{params.poly_modulus_degree}, primes {list(params.coeff_mod_bit_sizes)}; public "
                                  f"context {ctx_cid} ({len(public) / 1e6:.1f} MB, no secret key); labels stay "
                                  "with the owner")
        if cfg.secagg:
            self._reveal_contributions(final)
        # every evaluator reads the same published bytes by the CIDs and parameters on chain: loaded once
        published = receipt.event("EncryptedEvaluationSetPublished").args
        recorded = HEParams.from_json(published["params"])
        context = load_public_context(self.store.cat(Cid.from_chain(published["context"])), params=recorded)
        table = EncryptedTable.from_bytes(self.store.cat(Cid.from_chain(published["testSet"])), context=context,
                                          kind="test-set", params=recorded)
        self._he_params, self._he_test_set = recorded, table.digest().hex()
        previous = self._previous_model(final)
        # an evaluator's cores: worker processes holding the public context and test set (same bytes)
        pool = EvaluationPool(context=context, test_set=table, workers=cfg.he_workers) if cfg.he_workers > 1 else None
        try:
            for g in self._bar(list(range(state.groups)), "encrypted evaluation"):
                members = state.members[g]
                honest: ee.EncryptedOutputs | None = None
                honest_commitment = None
                committee = sorted((self._by_address[a] for a in state.committees[g]), key=lambda e: e.behaviour.copies)
                for ev in committee:
                    if self.chain.call(F.bannedAt(ev.address)):
                        self._note("score", None, ev.name, "slashed in this task: no longer scores")
                        continue
                    if honest is None:  # every honest member computes byte-identical outputs (deterministic CKKS)
                        started = time.perf_counter()
                        honest = ee.evaluate_contributions(
                            module=self.model, members=members,
                            updates=self._accepted_updates(final, members, g=g, evaluator=ev), previous=previous,
                            test_set=table, context=context, scorer=cfg.scorer, subgroup=g, pool=pool)
                        self._note("score", None, "committee", f"evaluated subgroup {g} on the encrypted test set",
                                   detail=f"{len(honest.coalitions)} models, {time.perf_counter() - started:.2f} s")
                    rng = np.random.default_rng([cfg.seed, g, ev.index, 23])
                    outputs = ee.tampered(honest, rng=rng) if ev.behaviour.tampers_outputs else honest
                    data = outputs.to_bytes()
                    cid, digest, salt = self._add(data), hashlib.sha256(data).digest(), rng.bytes(32)
                    commitment = outputs_commitment(digest, cid, salt, ev.address)
                    if ev.behaviour.copies and honest_commitment is not None:
                        commitment = honest_commitment  # copied from an honest member's transaction
                    elif not ev.behaviour.malicious and honest_commitment is None:
                        honest_commitment = commitment
                        self._honest_outputs[g] = (digest, cid, salt)
                    self._tx("score", None, ev.account, F.commitScores(g, commitment),
                             f"commit encrypted outputs of subgroup {g}", cid=cid, detail=f"digest {digest.hex()[:16]}...")
                    self._output_reports.append((g, ev, digest, cid, salt))
        finally:
            if pool is not None:
                pool.close()

    def _reward_encrypted(self) -> None:
        """Members reveal their outputs' digests; for each subgroup the owner decrypts the outputs a
        majority agreed on, scores the players and publishes the scores with its audit record; a
        subgroup with no majority (a dispute) is closed with nothing paid on its scores."""
        F = self.task.functions
        self._mine_past(int(self.chain.call(F.scoreCommitDeadline())))
        revealed: dict[tuple[int, str], tuple[bytes, Cid]] = {}
        for g, ev, digest, cid, salt in sorted(self._output_reports, key=lambda rep: rep[1].behaviour.copies):
            if not ev.behaviour.reveals:
                self._note("reward", None, ev.name, f"does not reveal its outputs for subgroup {g}")
                continue
            if ev.behaviour.copies and g in self._honest_outputs:  # tries the honest member's opening
                digest, cid, salt = self._honest_outputs[g]
            try:
                self._tx("reward", None, ev.account, F.revealOutputs(g, digest, cid.to_chain(), salt),
                         f"reveal outputs digest of subgroup {g}", cid=cid)
                revealed[(g, ev.address)] = (digest, cid)
            except ContractRevert as e:
                if not ev.behaviour.copies:
                    raise
                self._note("reward", None, ev.name, f"reveal refused ({e.error_name})", detail=str(e))
        self._mine_past(int(self.chain.call(F.scoreRevealDeadline())))
        final = int(self.chain.call(F.finalRound()))
        state = self.rounds[final]
        for g in range(state.groups):
            committee = list(self.chain.call(F.committee(final, g, 0)))
            # as the contract counts: every reveal for its digest, when it was made
            votes = [revealed[(g, a)] for a in committee if (g, a) in revealed]
            counts: dict[bytes, int] = {}
            for digest, _ in votes:
                counts[digest] = counts.get(digest, 0) + 1
            majority = next((d for d, n in counts.items() if 2 * n > len(committee)), None)
            if majority is None:
                self.notes.append(f"subgroup {g}: no majority of its committee agrees on the encrypted outputs "
                                  f"({len(counts)} different digests): a dispute, nothing is paid on its scores")
                self._tx("reward", None, self.owner.account, F.closeUnresolvedScores(g),
                         f"close disputed subgroup {g}: nothing paid")
                continue
            try:
                scoring = self._decrypt_and_score(state, g, majority, [c for d, c in votes if d == majority])
            except DinLabError as e:  # the agreed outputs are unusable: the owner cannot honestly score them
                self.notes.append(f"subgroup {g}: the owner cannot score the outputs its committee agreed on ({e}); "
                                  "after the publish deadline the subgroup is closed and its submitters score 1")
                self._mine_past(int(self.chain.call(F.scorePublishDeadline())))
                self._tx("reward", None, self.owner.account, F.closeUnresolvedScores(g),
                         f"close subgroup {g}: agreed outputs unusable")
                continue
            audit = self._add(json_to_bytes(scoring.audit))
            wads = [to_wad(float(np.clip(v, 0.0, 1.0))) for v in scoring.scores]
            self._tx("reward", None, self.owner.account, F.publishScores(g, wads, majority, audit.to_chain()),
                     f"publish decrypted scores of subgroup {g}", cid=audit,
                     detail=f"for outputs digest {majority.hex()[:16]}... ({counts[majority]} of {len(committee)})")

    def _decrypt_and_score(self, state: _RoundState, g: int, digest: bytes, cids: list[Cid]) -> ee.OwnerScoring:
        """The owner fetches the outputs agreed for subgroup ``g`` (any backer's copy that hashes to
        the digest), checks they are outputs of this subgroup, on its published test set, of the
        task's model, with the coalitions the scorer needs, then decrypts and scores them."""
        data = next((d for d in (self.store.cat(c) for c in cids) if hashlib.sha256(d).digest() == digest), None)
        if data is None:
            raise ProtocolError(f"no stored outputs hash to the agreed digest {digest.hex()}")
        keys = self.owner.he_keys
        outputs = ee.EncryptedOutputs.from_bytes(data, context=keys.context, params=self._he_params)
        linear = ee.he_model(self.model).depth == 1
        if outputs.subgroup != g or outputs.test_set != self._he_test_set or outputs.linear != linear \
                or list(outputs.coalitions) != ee.needed_coalitions(len(outputs.players), linear=linear,
                                                                     scorer=self.config.scorer):
            raise ProtocolError("they are not this subgroup's evaluation of the task's model on the published test set")
        return ee.score_outputs(outputs, secret_context=keys.context, y=self.dataset.y_test, members=state.members[g],
                                scorer=self.config.scorer, seed=int.from_bytes(state.seed[:8], "big") ^ g,
                                digest=digest)

    def _phase_claim(self, _: None) -> None:
        F = self.task.functions
        for who in (self.owner, *self.participants, *self.evaluators):
            if self.chain.call(F.claimable(who.address)) or self.chain.call(F.rewardOf(who.address)):
                self._tx("claim", None, who.account, F.claim(), "claim")
        if self.chain.call(F.claimable(self.fund.address)):
            self._tx("claim", None, self.fund, F.claim(), "claim")
        for e in self.evaluators:  # the task is over: bonds (what is left of them) come back
            left = self.chain.call(F.bondOf(e.address))
            if left:
                self._tx("claim", None, e.account, F.withdrawBond(), "withdraw bond", amount=left / WAD)
        final = int(self.chain.call(F.finalRound()))
        cid = self.rounds[final].global_cid
        if self.chain.call(F.roundInfo(final))[7][1] == 0:  # not yet published (the hold ends now)
            self._tx("claim", None, self.owner.account, F.publishGlobalModel(final, cid.to_chain()),
                     "publish final global model", cid=cid)

    # ------------------------------------------------------------------ reading results

    def accuracy(self, r: int) -> float:
        """Test accuracy of round ``r``'s global model."""
        vector = self.rounds[r].global_model
        if vector is None:
            raise ProtocolError(f"round {r} has no global model yet")
        return evaluate_vector(self.model, vector, self.dataset.X_test, self.dataset.y_test)["accuracy"]

    def name_of(self, address: str) -> str:
        return self._names.get(address, address)
