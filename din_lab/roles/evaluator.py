"""The Evaluator (paper 5.1 steps 3-5, 5.2 steps 3-5): bonds to the task; as a member of a
subgroup's committee it aggregates the subgroup's updates (under secure aggregation: reveals its
shares, then unmasks the sum), votes on the result by commit-reveal, serves on dispute committees;
at the end it scores the participants of its subgroup (plaintext, or on the encrypted test set)
and reveals its scores; then it claims its fees and withdraws its bond.

Every member does its own work: its own checks, screening reference, unmasking, aggregation and
scoring. What it shares with the others is only what is on chain or in the store. Its adversarial
behaviours (:mod:`din_lab.roles.behaviours`) act on what it can observe: a copycat reads the
commitments and openings of the others from their transactions on chain; an ``extreme`` scorer
favours the allies of the coalition it was configured into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import numpy as np

from din_lab.chain.din import (
    WAD,
    Phase,
    SubgroupStatus,
    held_envelope,
    outputs_commitment,
    result_commitment,
    scores_commitment,
    to_wad,
)
from din_lab.cid import Cid
from din_lab.errors import ContractRevert, DinLabError, ProtocolError
from din_lab.he import EncryptedTable, EvaluationPool, HEParams, load_public_context
from din_lab.learning import build_model, lab_model_spec
from din_lab.roles import codec, economy
from din_lab.roles import encrypted_evaluation as ee
from din_lab.roles import final_model as fm
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import accepted_result, read_subgroup, released_key
from din_lab.roles.behaviours import EvaluatorBehaviour
from din_lab.roles.network import Handle, Wait
from din_lab.roles.participant import reseal_topic, sealed_topic
from din_lab.roles.scoring import contribution_scores, task_contribution, task_seed
from din_lab.secagg import Committee, Share
from din_lab.storage.serialization import tensors_from_bytes

# the blocks of Harberger tax an evaluator prepays when it buys a licence (a lab task lasts a few
# thousand blocks at most; an evaluator serving longer tops its deposit up)
LICENCE_BLOCKS = 20_000


@dataclass
class _Duty:
    """One committee seat: subgroup ``g`` of round ``r``, cohort 0 (first committee) or 1 (dispute)."""

    result: Cid | None = None
    salt: bytes = b""
    aborted: bool = False
    shares_revealed: bool = False
    share_reveal: bytes = b""  # its own reveal (the final round's is sealed: re-sealed for a dispute committee)
    resealed: bool = False
    committed: bool = False
    revealed: bool = False


class Evaluator(Agent):
    """Stakes, aggregates its subgroups' updates, votes by commit-reveal, and scores participants."""

    def __init__(self, *, name: str, handle: Handle, index: int, behaviour: EvaluatorBehaviour | None = None,
                 allies: frozenset[str] = frozenset(), he_workers: int = 1) -> None:
        super().__init__(name=name, handle=handle)
        self.index = index
        self.behaviour = behaviour or EvaluatorBehaviour()
        self.allies = allies  # the coalition it was configured into (the ``extreme`` scorer favours it)
        self.he_workers = he_workers
        self._duties: dict[tuple[int, int, int], _Duty] = {}
        self._views: dict[tuple[int, int], sa.SubgroupView] = {}
        self._references: dict[int, tuple[codec.RoundReference | None]] = {}
        self._scores: dict[int, tuple] = {}  # subgroup -> what it committed at scoring
        self._scoring_done = False
        self._model = None
        self._held: dict[Cid, tuple[Cid, bytes]] = {}  # envelope -> (sealed result, key): its final-round keys
        self._released = False

    # ---------------------------------------------------------------- set-up

    def publish_key(self, _: None) -> None:
        """Secure aggregation: participants seal their share bundles and reveals to this key."""
        self._tx("setup", None, self.handle.registry.functions.setPublicKey(self.public_key), "publish X25519 key")

    def opt_in(self, _: None) -> None:
        """Bond to this task, which alone may slash that bond. Where the network requires licences
        (paper section 6), first hold one: buy the cheapest priced below this evaluator's valuation
        (twice the fund's reserve price), name that valuation as its price and prepay its tax for
        LICENCE_BLOCKS blocks, keeping its bond; without one it stays out of the task."""
        licence = economy.licence_of_task(self)
        if licence is not None:
            valuation = 2 * self.view.call(licence.functions.reservePrice()) / WAD
            if economy.acquire_licence(self, licence, valuation=valuation, blocks=LICENCE_BLOCKS,
                                       keep=self._bond()) is None:
                self._note("setup", None, "stays out: no licence worth its price, or none affordable")
                return
        bond = self._bond()
        token = self.handle.token.functions
        self._tx("setup", None, token.approve(self.handle.task.address, bond), "approve bond")
        self._tx("setup", None, self.F.optIn(), "opt in with a bond", amount=bond / WAD)

    def _bond(self) -> int:
        return int(self.view.call(self.F.params())[4])  # TaskParams.evaluatorBond

    # ---------------------------------------------------------------- committee seats

    def _seats(self, r: int, cohort: int) -> list[int]:
        return [g for g in range(self.view.groups(r)) if self.address in self.view.committee(r, g, cohort)]

    def _duty(self, r: int, g: int, cohort: int) -> _Duty:
        return self._duties.setdefault((r, g, cohort), _Duty())

    def _info(self, r: int, g: int) -> tuple:
        return self.view.call(self.F.subgroupInfo(r, g))

    # ---------------------------------------------------------------- aggregate (paper 5.1 step 3)

    def aggregate(self, r: int) -> Wait | None:
        wait = self._wait_past(self.view.submission_deadline(r))
        if wait is not None:
            return wait
        seats = self._seats(r, 0)
        if not seats:
            return None
        if self.spec.secagg:
            for g in seats:
                duty = self._duty(r, g, 0)
                if not duty.shares_revealed:
                    duty.shares_revealed = True
                    self._reveal_shares(r, g)
            wait = self._wait_past(max(int(self._info(r, g)[0]) for g in seats))  # the share window
            if wait is not None:
                return wait
        for g in seats:
            self._compute_result(r, g, 0)
        return None

    def _compute_result(self, r: int, g: int, cohort: int) -> None:
        duty = self._duty(r, g, cohort)
        if duty.result is not None:
            return
        result = self._aggregate_secure(r, g) if self.spec.secagg else self._aggregate_plain(r, g)
        rng = np.random.default_rng([self.spec.seed, r, g, self.index, 11])
        corrupted = self.behaviour.result(result.weighted_sum, rng=rng)
        if corrupted is not result.weighted_sum:
            result = dataclasses.replace(result, weighted_sum=corrupted)
        data = codec.encode_result(result)
        if not result.aborted and r == int(self.view.call(self.F.finalRound())):
            # the final round: sealed until rewards settle; every honest member seals the same bytes
            header = fm.HeldHeader(round=r, subgroup=g, samples=result.samples, included=result.included,
                                   rejected=result.rejected)
            sealed, key = fm.seal_result(data, header=header)
            sealed_cid = self._add(sealed)
            duty.result = self._add(held_envelope(sealed_cid, key))
            self._held[duty.result] = (sealed_cid, key)
        else:
            duty.result = self._add(data)
        duty.salt = self._salt(f"result {r}/{g}/{cohort}")
        duty.aborted = self.spec.secagg and bool(result.aborted)
        phase = "aggregate" if cohort == 0 else "finalize"
        self._note(phase, r, f"published subgroup {g} result", cid=str(duty.result))

    def _members(self, r: int, g: int) -> list[str]:
        return self.view.members(r, g, subgroup_size=self.spec.subgroup_size)

    def _fetch_update(self, r: int, member: str, cid: Cid) -> tuple[codec.Update | None, str | None]:
        try:
            update = self.view.decoded(cid, codec.decode_update, kind="update")
            return update, codec.check_update(update, dimension=self.spec.dimension, round_=r, participant=member,
                                              max_samples=self.spec.max_samples)
        except DinLabError as e:
            return None, str(e)

    def _reference(self, r: int) -> codec.RoundReference | None:
        """The round's screening reference, computed by this evaluator from every well-formed update
        whose CID is on chain."""
        if r not in self._references:
            updates = []
            for member, (cid, _) in self.view.submitted(r).items():
                update, reason = self._fetch_update(r, member, cid)
                if reason is None:
                    updates.append(update)
            self._references[r] = (codec.RoundReference.of(updates),)
        return self._references[r][0]

    def _aggregate_plain(self, r: int, g: int) -> codec.SubgroupResult:
        """Fetch each member's update by its CID on chain, reject missing, malformed and non-finite
        ones and those the screening flags, sum the rest in member order."""
        submitted = self.view.submitted(r)
        accepted, rejected = [], []
        for member in self._members(r, g):
            update, reason = (None, "no update") if member not in submitted else \
                self._fetch_update(r, member, submitted[member][0])
            if reason is None:
                accepted.append((member, update))
            else:
                rejected.append(member)
        reference = self._reference(r)
        screened = {a for a, u in accepted if codec.screen_update(u, reference) is not None}
        rejected += [a for a, _ in accepted if a in screened]
        accepted = [(a, u) for a, u in accepted if a not in screened]
        return codec.aggregate_subgroup(accepted, round_=r, subgroup=g, rejected=rejected,
                                        dimension=self.spec.dimension)

    # secure aggregation

    def _context(self, r: int, g: int) -> sa.RoundContext:
        return sa.round_context(task=self.handle.task.address, round_=r, subgroup=g)

    def _committee(self, r: int, g: int) -> Committee:
        return Committee(public_keys=tuple(self.view.evaluator_key(a) for a in self.view.committee(r, g, 0)))

    def subgroup_view(self, r: int, g: int) -> sa.SubgroupView:
        """Subgroup ``g`` as this member reads it from the CIDs on chain."""
        if (r, g) not in self._views:
            self._views[(r, g)] = view = read_subgroup(self.view, r, g, spec=self.spec)
            members = self._members(r, g)
            for pos, why in sorted(view.rejected.items()):
                self._note("aggregate", r, f"treated as a dropout in subgroup {g}", actor=members[pos],
                           detail=f"by {self.name}: {why}")
            if view.abort:
                self._note("aggregate", r, f"secure aggregation of subgroup {g} aborts", detail=view.abort)
        return self._views[(r, g)]

    def _reveal_shares(self, r: int, g: int) -> None:
        """Open the share bundles addressed to this member, store its share reveal (Bonawitz's rule)
        and record the CID on chain (``revealShares``), inside the share window."""
        view = self.subgroup_view(r, g)
        if view.abort is not None:
            return  # the quorum fails: nobody reveals anything
        if not self.behaviour.reveals:  # a silent member reveals nothing; t of the others suffice
            self._note("aggregate", r, f"stays silent: reveals no shares for subgroup {g}")
            return
        holder = self.view.committee(r, g, 0).index(self.address)
        members = self._members(r, g)
        keys = {m: self.view.participant_key(m) for m in members}
        shares, problems = sa.committee_reveal(view, holder=holder, holder_key=self._key, participant_keys=keys)
        shares = self.behaviour.shares(shares)
        for pos, why in sorted(problems.items()):
            self._note("aggregate", r, f"cannot open the shares of {members[pos]}", detail=why)
        data = sa.encode_share_reveal(shares, holder=holder, evaluator=self.address, context=view.context)
        self._duty(r, g, 0).share_reveal = data
        final = self._final(r)
        if final:  # with the shares anyone could unmask the sum: they go to the committee only
            try:
                data = sa.seal_share_reveal(data, context=view.context, holder=holder, long_term_key=self._key,
                                            recipients=self._committee(r, g).public_keys,
                                            rng=self._secret_rng(f"share reveal {r}/{g}"))
            except DinLabError as e:
                self._note("aggregate", r, f"cannot seal its shares for subgroup {g}", detail=str(e))
                return
        cid = self._add(data)
        self._tx("aggregate", r, self.F.revealShares(r, g, cid.to_chain()),
                 f"reveal {len(shares)} shares for subgroup {g}" + (" (sealed to the committee)" if final else ""),
                 cid=cid)

    def _final(self, r: int) -> bool:
        return r == int(self.view.call(self.F.finalRound()))

    def _reseal_for_dispute(self, r: int, g: int) -> None:
        """A dispute committee was drawn for a subgroup of the final round: re-seal this member's
        share reveal to the dispute committee's keys and post it (the chain holds the copy sealed to
        the first committee, which the dispute committee cannot open)."""
        duty = self._duty(r, g, 0)
        if duty.resealed or not duty.share_reveal:
            return
        duty.resealed = True
        holders = self.view.committee(r, g, 0)
        try:
            recipients = [self.view.evaluator_key(a) for a in self.view.committee(r, g, 1)]
            data = sa.seal_share_reveal(duty.share_reveal, context=self._context(r, g),
                                        holder=holders.index(self.address), long_term_key=self._key,
                                        recipients=recipients, rng=self._secret_rng(f"share reveal {r}/{g}/dispute"))
        except DinLabError as e:
            self._note("finalize", r, f"cannot re-seal its shares for subgroup {g}'s dispute committee", detail=str(e))
            return
        cid = self._add(data)
        self._post(reseal_topic(self.handle.task.address, r, g), cid)
        self._note("finalize", r, f"re-sealed its shares for subgroup {g}'s dispute committee", cid=str(cid))

    def _share_pool(self, r: int, g: int) -> list[Share]:
        """The shares the first committee revealed on chain (``SharesRevealed``) by the end of the
        share window: every member, and a dispute committee, unmasks from exactly these. The final
        round's are sealed to the first committee (a dispute committee opens the copies its members
        re-sealed to it). Each holder's reveal is checked whole before it is pooled."""
        view = self.subgroup_view(r, g)
        holders = self.view.committee(r, g, 0)
        mine = holders.index(self.address) if self.address in holders else None
        pool: list[Share] = []
        for event in self.view.events("SharesRevealed", round=r, subgroup=g):
            evaluator = event.args["evaluator"]
            holder = holders.index(evaluator)  # the contract admits members only
            cid = Cid.from_chain(event.args["shares"])
            try:
                data = self.view.cat(cid)
                if sa.is_sealed_share_reveal(data):
                    parsed = sa.parse_share_reveal(self._open_reveal(r, g, data, holder=holder, evaluator=evaluator,
                                                                     mine=mine))
                else:
                    parsed = self.view.decoded(cid, sa.parse_share_reveal, kind="share reveal")  # public, parsed once
                pool += sa.check_share_reveal(parsed, holder=holder, view=view)
            except DinLabError as e:
                self._note("aggregate", r, f"share reveal for subgroup {g} refused", actor=evaluator,
                           detail=f"by {self.name}: {e}")
        return pool

    def _open_reveal(self, r: int, g: int, data: bytes, *, holder: int, evaluator: str, mine: int | None) -> bytes:
        context, sender = self._context(r, g), self.view.evaluator_key(evaluator)
        if mine is not None:
            return sa.open_share_reveal(data, context=context, holder=holder, recipient=mine, key=self._key,
                                        sender_public_key=sender)
        resealed = self.handle.board.read(reseal_topic(self.handle.task.address, r, g)).get(evaluator)
        if resealed is None:
            raise ProtocolError("sealed to the first committee and not re-sealed to this dispute committee")
        return sa.open_share_reveal(self.view.cat(resealed), context=context, holder=holder,
                                    recipient=self.view.committee(r, g, 1).index(self.address), key=self._key,
                                    sender_public_key=sender)

    def _aggregate_secure(self, r: int, g: int) -> codec.SubgroupResult:
        view = self.subgroup_view(r, g)
        members = self._members(r, g)
        try:
            committee = self._committee(r, g)
        except DinLabError as e:
            return sa.aborted_result(f"the committee's keys are unusable ({e})", members=members, round_=r,
                                     subgroup=g, dimension=self.spec.dimension)
        return sa.unmask(view, shares=self._share_pool(r, g), committee=committee, round_=r, subgroup=g,
                         max_samples=self.spec.max_samples)

    # ---------------------------------------------------------------- commit and reveal (paper 5.1 step 4)

    def commit(self, r: int) -> Wait | None:
        return self._commit_seats(r, self._seats(r, 0), cohort=0, phase="commit")

    def _commit_seats(self, r: int, seats: list[int], *, cohort: int, phase: str) -> Wait | None:
        waiting = False
        for g in seats:
            duty = self._duty(r, g, cohort)
            if duty.committed or duty.result is None:
                continue
            commitment = result_commitment(duty.result, duty.salt, self.address, aborted=duty.aborted)
            if self.behaviour.copies:
                copied = self._copied_argument("ResultCommitted", "commitment", round=r, subgroup=g)
                if copied is None and not self.timed_out:
                    waiting = True
                    continue
                commitment = copied or commitment
            duty.committed = True
            self._tx(phase, r, self.F.commitResult(r, g, commitment), f"commit subgroup {g} vote")
        return Wait() if waiting else None

    def reveal(self, r: int) -> Wait | None:
        seats = self._seats(r, 0)
        if not seats:
            return None
        wait = self._wait_past(max(int(self._info(r, g)[1]) for g in seats))
        return wait if wait is not None else self._reveal_seats(r, seats, cohort=0, phase="reveal")

    def _reveal_seats(self, r: int, seats: list[int], *, cohort: int, phase: str) -> Wait | None:
        waiting = False
        for g in seats:
            duty = self._duty(r, g, cohort)
            if duty.revealed or not duty.committed:
                continue
            if not self.behaviour.reveals:
                duty.revealed = True
                self._note(phase, r, f"stays silent on subgroup {g}")
                continue
            cid, salt, aborted = duty.result, duty.salt, duty.aborted
            if self.behaviour.copies:  # an honest member's revealed result and salt, read from its transaction
                opening = self._copied_opening("ResultRevealed", round=r, subgroup=g)
                if opening is None and not self.timed_out:
                    waiting = True
                    continue
                if opening is not None:
                    fn, args, event = opening
                    cid, salt, aborted = Cid.from_chain(event.args["result"]), args["salt"], \
                        fn == "revealAbortedResult"
            duty.revealed = True
            reveal = self.F.revealAbortedResult if aborted else self.F.revealResult
            try:
                self._tx(phase, r, reveal(r, g, cid.to_chain(), salt),
                         f"reveal subgroup {g} vote" + (" (an abort)" if aborted else ""), cid=cid)
            except ContractRevert as e:
                if not self.behaviour.copies:
                    raise
                self._note(phase, r, f"reveal refused ({e.error_name})", detail=str(e))
        return Wait() if waiting else None

    # ---------------------------------------------------------------- disputes (paper 5.1 step 4, no majority)

    def finalize(self, r: int) -> Wait | None:
        """Serve on a dispute committee (cohort 1) of this round when drawn: aggregate, commit, wait
        for the commit window to close, reveal. Waits while any subgroup of the round is open."""
        finalized = self.view.finalized(r)
        waits: list[int] = []
        others = False
        for g in range(self.view.groups(r)):
            if g in finalized:
                continue
            info = self._info(r, g)
            if int(info[6]) or int(info[4]) != 1:  # not drawn yet
                continue
            if self.spec.secagg and self.address in self.view.committee(r, g, 0) and self._final(r):
                self._reseal_for_dispute(r, g)
            if self.address not in self.view.committee(r, g, 1):
                continue
            duty = self._duty(r, g, 1)
            if duty.result is None:
                if self.spec.secagg and self._final(r) and not self.timed_out and not self._resealed_in(r, g):
                    others = True  # the first committee's members are re-sealing their shares to it
                    continue
                self._compute_result(r, g, 1)
            if not duty.committed:
                self._commit_seats(r, [g], cohort=1, phase="finalize")
            if not duty.revealed:
                if self.handle.chain.block_number <= int(info[1]):
                    waits.append(int(info[1]) + 1)
                    continue
                self._reveal_seats(r, [g], cohort=1, phase="finalize")
        if waits and not others:
            return Wait(min(waits))
        open_subgroups = len(self.view.finalized(r)) < self.view.groups(r)
        return Wait() if (open_subgroups or others) and not self.timed_out else None

    def _resealed_in(self, r: int, g: int) -> bool:
        """Has every first-committee member that revealed shares re-sealed them to this dispute committee?"""
        posted = self.handle.board.read(reseal_topic(self.handle.task.address, r, g))
        return all(e.args["evaluator"] in posted for e in self.view.events("SharesRevealed", round=r, subgroup=g))

    # ---------------------------------------------------------------- score (paper 5.1 step 5, 5.2 steps 3-4)

    def _module(self):
        if self._model is None:
            self._model = build_model(lab_model_spec(self.spec.model), num_features=self.spec.num_features,
                                      num_classes=self.spec.num_classes, seed=0)
        return self._model

    def score(self, _: None) -> Wait | None:
        if self._scoring_done:
            return None
        F = self.F
        final = int(self.view.call(F.finalRound()))
        seats = self._seats(final, 0)
        if not seats:
            self._scoring_done = True
            return None
        event = "EncryptedEvaluationSetPublished" if self.spec.evaluation == "he" else "EvaluationSetPublished"
        published = self.view.events(event)
        if not published:
            if self.timed_out:
                self._scoring_done = True
                return None
            return Wait()
        if self.view.call(F.bannedAt(self.address)):
            self._scoring_done = True
            self._note("score", None, "slashed in this task: no longer scores")
            return None
        if self.spec.secagg and not self.timed_out and not all(self._reveals_in(final, g) for g in seats):
            return Wait()  # its subgroups' participants are still revealing to the committee
        if self.behaviour.copies and not self.timed_out \
                and not all(self._others("ScoresCommitted", subgroup=g) for g in seats):
            return Wait()  # a copycat commits after the others
        self._scoring_done = True
        previous = self.view.decoded(self.view.global_model_cid(final - 1), codec.decode_model, kind="model")
        if self.spec.evaluation == "he":
            self._score_encrypted(final, seats, published[-1].args, previous)
        else:
            self._score_plain(final, seats, published[-1].args, previous)
        return None

    def _reveals_in(self, final: int, g: int) -> bool:
        """Has every participant of the accepted sum revealed to this committee (on the board)?"""
        result = self._secure_result(final, g)
        if result is None:
            return True
        posted = self.handle.board.read(sealed_topic(self.handle.task.address, final, g))
        return all(a in posted for a in result.included)

    def _score_plain(self, final: int, seats: list[int], published: dict, previous: np.ndarray) -> None:
        tensors = self.view.decoded(Cid.from_chain(published["testSet"]), tensors_from_bytes, kind="test set")
        seed_int = int.from_bytes(self.view.seed(final)[:8], "big")
        task_wide = None
        if self.spec.contribution == "task":  # one game over every contributor of the final round (all public)
            started = time.perf_counter()
            contributors: dict[str, codec.Update] = {}
            for g, (status, _) in sorted(self.view.finalized(final).items()):
                if status == SubgroupStatus.ACCEPTED:
                    contributors.update(self._accepted_updates(final, g))
            task_wide = task_contribution(updates=contributors, previous=previous, model=self._module(),
                                          x=tensors["X"], y=tensors["y"], scorer=self.spec.scorer,
                                          seed=task_seed(self.handle.task.address, final))
            self._note("score", None, f"valued the task's {len(contributors)} contributors in one game",
                       detail=f"{sum(s > 0 for s in task_wide.values())} with a positive value, "
                              f"{time.perf_counter() - started:.2f} s")
        for g in seats:
            members = self._members(final, g)
            if task_wide is not None:
                honest = np.array([task_wide.get(m, 0.0) for m in members])
            else:
                honest = contribution_scores(members=members, updates=self._accepted_updates(final, g),
                                             previous=previous, model=self._module(), x=tensors["X"], y=tensors["y"],
                                             scorer=self.spec.scorer, seed=seed_int ^ g)
            rng = np.random.default_rng([self.spec.seed, g, self.index, 17])
            scores = self.behaviour.scores(honest, allies=np.array([m in self.allies for m in members]), rng=rng)
            wads = [to_wad(float(np.clip(s, 0.0, 1.0))) for s in scores]
            salt = self._salt(f"scores {g}")
            commitment = scores_commitment(wads, salt, self.address)
            if self.behaviour.copies:
                commitment = self._copied_argument("ScoresCommitted", "commitment", subgroup=g) or commitment
            self._scores[g] = (wads, salt)
            self._tx("score", None, self.F.commitScores(g, commitment), f"commit scores of subgroup {g}")

    def _score_encrypted(self, final: int, seats: list[int], published: dict, previous: np.ndarray) -> None:
        """Load the encrypted test set and public context by the CIDs on chain, evaluate the
        subgroup's contributions on it and commit to the digest of the encrypted outputs."""
        params = HEParams.from_json(published["params"])
        context = self.view.decoded(Cid.from_chain(published["context"]),
                                    lambda b: load_public_context(b, params=params), kind="he context")
        table = self.view.decoded(Cid.from_chain(published["testSet"]),
                                  lambda b: EncryptedTable.from_bytes(b, context=context, kind="test-set",
                                                                      params=params), kind="he test set")
        pool = EvaluationPool(context=context, test_set=table, workers=self.he_workers) if self.he_workers > 1 \
            else None
        try:
            for g in seats:
                started = time.perf_counter()
                outputs = ee.evaluate_contributions(module=self._module(), members=self._members(final, g),
                                                    updates=self._accepted_updates(final, g), previous=previous,
                                                    test_set=table, context=context, scorer=self.spec.scorer,
                                                    subgroup=g, pool=pool)
                self._note("score", None, f"evaluated subgroup {g} on the encrypted test set",
                           detail=f"{len(outputs.coalitions)} models, {time.perf_counter() - started:.2f} s")
                rng = np.random.default_rng([self.spec.seed, g, self.index, 23])
                if self.behaviour.tampers_outputs:
                    outputs = ee.tampered(outputs, rng=rng)
                outputs = self.behaviour.outputs(outputs)
                data = outputs.to_bytes()
                cid, digest, salt = self._add(data), hashlib.sha256(data).digest(), self._salt(f"outputs {g}")
                commitment = outputs_commitment(digest, cid, salt, self.address)
                if self.behaviour.copies:
                    commitment = self._copied_argument("ScoresCommitted", "commitment", subgroup=g) or commitment
                self._scores[g] = (digest, cid, salt)
                self._tx("score", None, self.F.commitScores(g, commitment),
                         f"commit encrypted outputs of subgroup {g}", cid=cid, detail=f"digest {digest.hex()[:16]}...")
        finally:
            if pool is not None:
                pool.close()

    def _secure_result(self, r: int, g: int) -> codec.SubgroupResult | None:
        """Subgroup ``g``'s accepted sum, if its participants may reveal to this committee: not
        aborted, and including exactly the survivors this member reads from the chain."""
        result = accepted_result(self.view, r, g, keys={e: k for e, (_, k) in self._held.items()})
        if result is None or result.aborted or result.included != sa.included(self.subgroup_view(r, g)):
            return None
        return result

    def _accepted_updates(self, r: int, g: int) -> dict[str, codec.Update]:
        """The members' updates this evaluator scores: plaintext, fetched by CID and checked as in
        aggregation; under secure aggregation, the revealed updates of the accepted sum's
        participants that open (sealed to it, matching the commitment in their masked update)."""
        members = self._members(r, g)
        if not self.spec.secagg:
            submitted = self.view.submitted(r)
            out = {}
            for m in members:
                if m in submitted:
                    update, reason = self._fetch_update(r, m, submitted[m][0])
                    if reason is None:
                        out[m] = update
            reference = self._reference(r)
            return {m: u for m, u in out.items() if codec.screen_update(u, reference) is None}
        result = self._secure_result(r, g)
        if result is None:
            return {}
        view = self.subgroup_view(r, g)
        holder = self.view.committee(r, g, 0).index(self.address)
        posted = self.handle.board.read(sealed_topic(self.handle.task.address, r, g))
        out = {}
        for addr in result.included:
            pos = members.index(addr)
            if addr not in posted:
                self._note("score", None, "revealed nothing: scores 0", actor=addr, detail=f"to {self.name}")
                continue
            try:
                update = self.open_contribution(self.view.cat(posted[addr]), context=view.context, position=pos,
                                                participant=addr, holder=holder,
                                                participant_public_key=self.view.participant_key(addr),
                                                commitment=view.commitments[pos], view=view)
            except DinLabError as e:
                self._note("score", None, "reveal refused: scores 0", actor=addr, detail=f"by {self.name}: {e}")
                continue
            reason = codec.check_update(update, dimension=self.spec.dimension, round_=r, participant=addr,
                                        max_samples=self.spec.max_samples)
            if reason is not None:
                self._note("score", None, "revealed update refused: scores 0", actor=addr,
                           detail=f"by {self.name}: {reason}")
                continue
            out[addr] = update
        if len(out) == len(result.included) and result.encoded_sum is not None \
                and not sa.revealed_sum_matches(list(out.values()), result.encoded_sum):
            self._note("score", None, f"the updates revealed in subgroup {g} do not add up to the agreed sum",
                       detail="every reveal rebuilt its masked update, so the agreed sum itself is not theirs")
        if self.spec.contribution == "task":
            return out  # screened task-wide, in prediction space, with every subgroup's players together
        reference = codec.RoundReference.of(list(out.values()))
        return {m: u for m, u in out.items() if codec.screen_update(u, reference) is None}

    def open_contribution(self, data: bytes, *, context: sa.RoundContext, position: int, participant: str,
                          holder: int, participant_public_key: bytes, commitment: bytes,
                          view: sa.SubgroupView | None = None) -> codec.Update:
        """Open a contribution sealed to this member's seat ``holder`` and check it (the commitment;
        with ``view``, that it rebuilds the masked update): a RevealError otherwise."""
        return sa.open_contribution(data, context=context, position=position, participant=participant, holder=holder,
                                    holder_key=self._key, participant_public_key=participant_public_key,
                                    commitment=commitment, view=view)

    # ---------------------------------------------------------------- reward (paper 5.1 step 5, 5.2 step 5)

    def reward(self, _: None) -> Wait | None:
        if not self._scores:
            return None
        wait = self._wait_past(int(self.view.call(self.F.scoreCommitDeadline())))
        if wait is not None:
            return wait
        waiting = False
        encrypted = self.spec.evaluation == "he"
        for g in sorted(self._scores):
            opening = self._scores[g]
            if not self.behaviour.reveals:
                del self._scores[g]
                self._note("reward", None, f"does not reveal its {'outputs' if encrypted else 'scores'} "
                           f"for subgroup {g}")
                continue
            if self.behaviour.copies:  # tries an honest member's opening, read from the chain
                copied = self._copied_opening("OutputsRevealed" if encrypted else "ScoresRevealed", subgroup=g)
                if copied is None and not self.timed_out:
                    waiting = True
                    continue
                if copied is not None:
                    _, args, event = copied
                    opening = (bytes(event.args["digest"]), Cid.from_chain(event.args["outputs"]), args["salt"]) \
                        if encrypted else (list(event.args["scores"]), args["salt"])
            del self._scores[g]
            if encrypted:
                digest, cid, salt = opening
                fn, action = self.F.revealOutputs(g, digest, cid.to_chain(), salt), \
                    f"reveal outputs digest of subgroup {g}"
            else:
                wads, salt = opening
                fn, action = self.F.revealScores(g, wads, salt), f"reveal scores of subgroup {g}"
                cid = None
            try:
                self._tx("reward", None, fn, action, cid=cid)
            except ContractRevert as e:
                if not self.behaviour.copies:
                    raise
                self._note("reward", None, f"reveal refused ({e.error_name})", detail=str(e))
        return Wait() if waiting else None

    # ---------------------------------------------------------------- release (paper 5.1 step 5d)

    def release(self, _: None) -> None:
        """Rewards have settled: release the key of each held final-round result it backed (one
        backer's release is enough; the others see the key on chain and need not)."""
        if self._released or self.view.phase() not in (Phase.FINISHED, Phase.ABANDONED):
            return None
        self._released = True
        if self.behaviour.withholds:
            if self._held:
                self._note("release", None, "withholds the final model's key")
            return None
        final = int(self.view.call(self.F.finalRound()))
        for g, (status, cid) in sorted(self.view.finalized(final).items()):
            if status != SubgroupStatus.ACCEPTED or cid not in self._held or released_key(self.view, g) is not None:
                continue
            sealed, key = self._held[cid]
            self._tx("release", None, self.F.releaseFinalModel(g, sealed.to_chain(), key),
                     f"release the final model's key for subgroup {g}", cid=sealed)
        return None

    # ---------------------------------------------------------------- claim (paper 5.1 step 6)

    def claim(self, _: None) -> None:
        F = self.F
        if self.view.call(F.claimable(self.address)) or self.view.call(F.rewardOf(self.address)):
            self._tx("claim", None, F.claim(), "claim")
        left = self.view.call(F.bondOf(self.address))
        if left:  # the task is over: the bond (what is left of it) comes back
            try:
                self._tx("claim", None, F.withdrawBond(), "withdraw bond", amount=left / WAD)
            except ContractRevert as e:
                if e.error_name != "FinalKeyPending":
                    raise
                self._note("claim", None, "bond still locked", detail="a sealed final-round result it backed has "
                           "no released key yet (released, or its withholders slashed, after the release deadline)")
        return None

    # ---------------------------------------------------------------- what a copycat observes

    def _others(self, event: str, **match) -> list:
        return [e for e in self.view.events(event, **match) if e.args["evaluator"] != self.address]

    def _copied_opening(self, event: str, **match) -> tuple[str, dict, object] | None:
        """Another member's transaction that emitted ``event`` (decoded from the chain): the function
        name, its arguments, and the event."""
        others = self._others(event, **match)
        if not others:
            return None
        fn, args = self.handle.chain.transaction_call(others[0].tx_hash, contract=self.handle.task)
        return fn, args, others[0]

    def _copied_argument(self, event: str, name: str, **match) -> bytes | None:
        opening = self._copied_opening(event, **match)
        return None if opening is None else bytes(opening[1][name])
