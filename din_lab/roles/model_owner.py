"""The Model Owner (paper 5.1 steps 1 and 5, 5.2 steps 1 and 4-6): creates the task with the
reward deposit and the genesis model, starts training and draws rounds (anyone may), relays signed
updates, finalizes subgroups, publishes each round's global model (the weighted mean of the
accepted results, which anyone recomputes), publishes its evaluation set (plaintext, or encrypted
with CKKS keys whose secret half never leaves it), settles the scores and claims its refund.

Its test set and labels and its CKKS secret key are its own. ``tampers``: it publishes a global
model other than the one the accepted results give (honest participants refuse to train on it).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from din_lab.chain.din import WAD, Phase, SubgroupStatus, TaskParams, to_wad
from din_lab.cid import Cid
from din_lab.errors import DinLabError, ProtocolError
from din_lab.he import OwnerKeys, encrypt_test_set, params_for_depth
from din_lab.learning import build_model, lab_model_spec
from din_lab.roles import codec
from din_lab.roles import encrypted_evaluation as ee
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import accepted_results
from din_lab.roles.network import Handle, Wait
from din_lab.roles.participant import relay_topic, signed_from_bytes
from din_lab.roles.scoring import evaluate_vector, outputs_of, task_seed
from din_lab.storage.serialization import json_to_bytes, tensors_to_bytes

PLAINTEXT_EVALUATION_NOTE = ("plaintext baseline, not the paper's protocol: the owner's test set and labels are "
                             "published to IPFS in the clear for the evaluators (the paper's encrypted evaluation: "
                             "--evaluation he, the default)")


class ModelOwner(Agent):
    """Creates the task, drives the rounds it owns, publishes global models and the evaluation set."""

    def __init__(self, *, name: str, handle: Handle, x_test: np.ndarray, y_test: np.ndarray,
                 tampers: bool = False, target_accuracy: float | None = None, stop_on_budget: bool = False) -> None:
        super().__init__(name=name, handle=handle)
        self._x_test, self._y_test = x_test, y_test
        self.tampers = tampers
        # its own criteria for ending training (paper 5.1 step 5b-c), besides the task's last round
        self.target_accuracy, self.stop_on_budget = target_accuracy, stop_on_budget
        self.he_keys: OwnerKeys | None = None  # its CKKS keys once it encrypts its test set
        self._models: dict[int, tuple[Cid, np.ndarray]] = {}  # round -> global model (-1: genesis)
        self._unusable_outputs: dict[int, str] = {}  # task-wide scoring: subgroups whose agreed outputs fail
        self._held_rounds: set[int] = set()  # the final round, whose results it cannot open yet
        self._relayed: dict[int, set[str]] = {}
        self._started: set[str] = set()
        self._rows: set[int] = set()
        self.unusable: dict[tuple[int, int], str] = {}
        self.disputes: dict[int, int] = {}

    # ---------------------------------------------------------------- set-up (paper 5.1 step 1)

    def genesis(self, vector: np.ndarray, *, model: str) -> Cid:
        """Store the genesis model: round 0 trains from it."""
        cid = self._add(codec.encode_model(vector, round_=-1, model=model))
        self._models[-1] = (cid, vector)
        return cid

    def create_task(self, *, factory: Any, params: TaskParams, amount: float) -> str:
        """Approve the deposit and fee budget and create the task; returns its address."""
        token = self.handle.token.functions
        self._tx("setup", None, token.approve(factory.address, params.reward_deposit + params.fee_budget),
                 "approve deposit")
        receipt = self._tx("setup", None, factory.functions.createTask(params.to_chain()), "create task",
                           cid=self._models[-1][0], amount=amount)
        return receipt.event("TaskCreated").args["task"]

    def global_model(self, r: int) -> tuple[Cid, np.ndarray] | None:
        """The global model it computed for round ``r`` (published, or held for the final round)."""
        return self._models.get(r)

    # ---------------------------------------------------------------- assign (paper 5.1 step 2)

    def assign(self, r: int) -> Wait | None:
        """Start training (round 0), then draw the round once its seed block is mined (anyone may
        draw; the owner does it here)."""
        F = self.F
        if r == 0 and self.view.phase() == Phase.REGISTRATION:
            self._tx("assign", r, F.startTraining(), "start training")
        while True:
            seed_block = int(self.view.call(F.seedBlock()))
            if not seed_block:
                return None
            if self.handle.chain.block_number <= seed_block:
                return Wait(seed_block + 1)
            self._tx("assign", r, F.drawRound(), "draw round")

    # ---------------------------------------------------------------- submit: relaying signed updates

    def submit(self, r: int) -> Wait | None:
        """Relay the signed updates participants hand it (``submitUpdatesRelayed``, full batches as
        they come, the rest once the network is quiet)."""
        if not self.spec.relayed_submissions:
            return None
        done = self._relayed.setdefault(r, set())
        posted = self.handle.board.read(relay_topic(self.handle.task.address, r))
        order = {a: i for i, a in enumerate(self.view.registered())}  # relayed in registration order
        pending = sorted((a for a in posted if a not in done), key=lambda a: order.get(a, len(order)))
        batch_size = self.spec.relay_batch
        while len(pending) >= batch_size or (pending and self.timed_out):
            batch, pending = pending[:batch_size], pending[batch_size:]
            signed = []
            for a in batch:
                done.add(a)
                try:
                    signed.append(signed_from_bytes(self.view.cat(posted[a])))
                except DinLabError as e:
                    self._note("submit", r, f"cannot relay {a}'s signed update", detail=str(e))
            if signed:
                self._tx("submit", r, self.F.submitUpdatesRelayed(r, signed), "relay signed updates",
                         detail=f"{len(signed)} updates in one transaction")
        return None if self.timed_out else Wait()

    # ---------------------------------------------------------------- finalize (paper 5.1 step 4)

    def finalize(self, r: int) -> Wait | None:
        """Close each subgroup's vote once its reveal window has passed; a dispute (no majority)
        gets a fresh committee, drawn from a block mined after it opened, and is closed in turn."""
        F = self.F
        finalized = self.view.finalized(r)
        waits: list[int] = []
        open_subgroups = False
        for g in range(self.view.groups(r)):
            if g in finalized:
                continue
            open_subgroups = True
            info = self.view.call(F.subgroupInfo(r, g))
            seed_block = int(info[6])
            if seed_block:
                if self.handle.chain.block_number <= seed_block:
                    waits.append(seed_block + 1)
                    continue
                self._tx("finalize", r, F.drawDispute(r, g), f"draw dispute committee {g}")
                committee = self.view.committee(r, g, 1)
                if committee:
                    self._note("finalize", r, f"dispute on subgroup {g}", actor="contract",
                               detail=f"fresh committee of {len(committee)}")
                continue
            if self.handle.chain.block_number <= int(info[2]):
                waits.append(int(info[2]) + 1)
                continue
            receipt = self._tx("finalize", r, F.finalizeSubgroup(r, g), f"finalize subgroup {g}")
            if any(ev.event == "DisputeOpened" for ev in receipt.events):
                self.disputes[r] = self.disputes.get(r, 0) + 1
        if waits:
            return Wait(min(waits))
        return Wait() if open_subgroups and not self.timed_out else None

    # ---------------------------------------------------------------- publish (paper 5.1 step 5a-c)

    def publish(self, r: int) -> None:
        """The next global model: the weighted mean of the accepted results on chain, from the
        previous model, published. The final round's results are sealed until rewards settle: the
        owner, like everyone, rebuilds the final model only then (:meth:`release`)."""
        F = self.F
        if r in self._models or r in self._held_rounds:
            return None
        if self.view.phase() != Phase.TRAINING:
            self._held_rounds.add(r)
            self._note("publish", r, "cannot build the final model yet",
                       detail="the final round's results are sealed by their committees until rewards settle")
            return None
        results, unusable = accepted_results(self.view, r, spec=self.spec)
        for g, why in unusable.items():
            self.unusable[(r, g)] = why
        vector = codec.next_global_model(self._models[r - 1][1], results)
        if self.tampers:
            vector = (vector + np.float32(0.5)).astype(np.float32)
        cid = self._add(codec.encode_model(vector, round_=r, model=self.spec.model))
        self._models[r] = (cid, vector)
        params = self.view.call(F.params())
        last = int(params[6]) - 1
        why = self._stop(r, vector, fee=int(params[3])) if r + 1 < last else None
        self._tx("publish", r, F.publishGlobalModel(r, cid.to_chain()), "publish global model", cid=cid)
        if why:  # the next round is the last: its committees will seal its results
            self._note("publish", r, "ends training", detail=f"{why}; round {r + 1} is the last")
            self._tx("publish", r, F.signalFinalRound(), "signal final round", detail=f"round {r + 1} is the last")
        return None

    def _stop(self, r: int, vector: np.ndarray, *, fee: int) -> str | None:
        """Why the owner makes round ``r + 1`` the last, if it does, judging round ``r``'s model (the
        final round's own model is sealed until rewards settle, so the decision is taken one round
        ahead): too few evaluators left for a committee; its target accuracy reached on its own test
        set; or its fee budget unable to pay the committees of two more rounds and of scoring."""
        F = self.F
        eligible = self.view.call(F.activeEvaluators())
        if eligible < self.spec.evaluators_per_subgroup:
            return f"too few evaluators: only {eligible} remain eligible after round {r}"
        if self.target_accuracy is not None:
            accuracy = evaluate_vector(self._module(), vector, self._x_test, self._y_test)["accuracy"]
            if accuracy >= self.target_accuracy:
                return f"target accuracy reached: {accuracy:.4f} >= {self.target_accuracy:g} on the owner's test set"
        if self.stop_on_budget:
            needed = 3 * self.view.groups(r) * self.spec.evaluators_per_subgroup * fee  # two rounds' votes, scoring
            left = int(self.view.call(F.feeEscrow()))
            if left < needed:
                return (f"fee budget: {left / WAD:g} DIN left cannot pay the committees of two more rounds and of "
                        f"scoring ({needed / WAD:g} DIN)")
        return None

    # ---------------------------------------------------------------- score (paper 5.1 step 5, 5.2 steps 1-2)

    def score(self, _: None) -> None:
        if "evaluation set" in self._started:
            return None
        self._started.add("evaluation set")
        if self.spec.evaluation == "he":
            return self._publish_encrypted()
        test_set = self._add(tensors_to_bytes({"X": self._x_test, "y": self._y_test},
                                              metadata={"kind": "din-lab/test-set/plaintext"}))
        context = self._add(json_to_bytes({"evaluation": "plaintext", "note": PLAINTEXT_EVALUATION_NOTE,
                                           "scorer": self.spec.scorer}))
        self._tx("score", None, self.F.publishEvaluationSet(test_set.to_chain(), context.to_chain()),
                 "publish evaluation set", cid=test_set)
        return None

    def _module(self):
        return build_model(lab_model_spec(self.spec.model), num_features=self.spec.num_features,
                           num_classes=self.spec.num_classes, seed=0)

    def _publish_encrypted(self) -> None:
        """Encrypt the test inputs (CKKS, samples packed into slots) and publish them with the public
        evaluation context (no secret key) and the parameters; the labels stay here."""
        params = params_for_depth(ee.he_model(self._module()).depth)
        self.he_keys = OwnerKeys(params)
        public = self.he_keys.public_context()
        encrypted = encrypt_test_set(self._x_test, context=self.he_keys.context, params=params)
        test_cid, ctx_cid = self._add(encrypted.to_bytes()), self._add(public)
        self._test_set_digest = encrypted.digest().hex()
        self._he_params = params
        self._tx("score", None,
                 self.F.publishEncryptedEvaluationSet(test_cid.to_chain(), ctx_cid.to_chain(), params.to_json()),
                 "publish encrypted test set", cid=test_cid,
                 detail=f"{encrypted.samples} samples x {encrypted.columns} features, N = "
                        f"{params.poly_modulus_degree}, primes {list(params.coeff_mod_bit_sizes)}; public "
                        f"context {ctx_cid} ({len(public) / 1e6:.1f} MB, no secret key); labels stay with the owner")

    # ---------------------------------------------------------------- reward (paper 5.1 step 5d, 5.2 step 4)

    def reward(self, _: None) -> Wait | None:
        F = self.F
        wait = self._wait_past(int(self.view.call(F.scoreRevealDeadline())))
        if wait is not None:
            return wait
        final = int(self.view.call(F.finalRound()))
        if self.spec.evaluation == "he" and self.spec.contribution == "task":
            return self._settle_encrypted_task(final)
        for g in range(self.view.groups(final)):
            if g in self._rows:
                continue
            self._rows.add(g)
            committee = self.view.committee(final, g, 0)
            if self.spec.evaluation == "he":
                outcome = self._settle_encrypted(final, g, committee)
                if isinstance(outcome, Wait):
                    self._rows.discard(g)
                    return outcome
                continue
            revealed = {e.args["evaluator"]: list(e.args["scores"]) for e in self.view.events("ScoresRevealed",
                                                                                              subgroup=g)}
            rows = [revealed.get(a, []) for a in committee]
            self._tx("reward", None, F.finalizeScores(g, rows), f"reduce scores of subgroup {g}")
        return None

    def _majority_outputs(self, g: int, committee: list[str]) -> tuple[bytes | None, list, dict, int]:
        """The digest a majority of subgroup ``g``'s voting seats revealed (or None), every revealed
        ``(digest, outputs CID)``, the count per digest and the voting seats."""
        F = self.F
        votes = [(bytes(e.args["digest"]), Cid.from_chain(e.args["outputs"]))
                 for e in self.view.events("OutputsRevealed", subgroup=g) if e.args["evaluator"] in committee]
        counts: dict[bytes, int] = {}
        for digest, _ in votes:
            counts[digest] = counts.get(digest, 0) + 1
        opened = int(self.view.call(F.scoreCommitStart()))  # a member slashed before scoring opened has no vote
        seats = sum(1 for a in committee if not (banned := int(self.view.call(F.bannedAt(a)))) or banned > opened)
        return next((d for d, n in counts.items() if 2 * n > seats), None), votes, counts, seats

    def _settle_encrypted_task(self, final: int) -> Wait | None:
        """Task-wide scoring (issue 17): decrypt every subgroup's agreed outputs, value all their
        players in one game and publish each subgroup's scores. A subgroup with no majority is
        closed (nothing paid on it); one whose agreed outputs are unusable is closed after the
        publish deadline (its submitters score 1), as in subgroup scoring."""
        F = self.F
        agreed: list[tuple[ee.AgreedOutputs, str]] = []  # in the game, and the backing of their digest
        outside: list[tuple[int, bytes, int, str]] = []  # subgroup, digest, members, backing: scored 0
        statuses = self.view.finalized(final)
        contributors = set(self.view.submitted(final))
        for g in range(self.view.groups(final)):
            if g in self._rows or g in self._unusable_outputs:
                continue
            committee = self.view.committee(final, g, 0)
            majority, votes, counts, seats = self._majority_outputs(g, committee)
            if majority is None:
                self._rows.add(g)
                self._note("reward", None, f"subgroup {g}: no majority of its committee agrees on the encrypted "
                           "outputs", detail=f"{len(counts)} different digests: a dispute, nothing is paid on its scores")
                self._tx("reward", None, F.closeUnresolvedScores(g), f"close disputed subgroup {g}: nothing paid")
                continue
            members = self.view.members(final, g, subgroup_size=self.spec.subgroup_size)
            backing = f"{counts[majority]} of {seats} voting seats"
            aborted = bool(self.view.call(F.subgroupInfo(final, g))[8])  # a secure-aggregation abort: nobody's update
            if statuses.get(g, (None, None))[0] != SubgroupStatus.ACCEPTED or aborted:
                # a failed or aborted subgroup's players contributed nothing: scored 0, its outputs unused
                outside.append((g, majority, len(members), backing))
                continue
            try:  # one subgroup's outputs enter every player's game: checked and decrypted one by one
                outputs = self._agreed_outputs(final, g, majority, [c for d, c in votes if d == majority])
                ee.check_task_outputs(outputs, members=members, contributors=contributors,
                                      max_samples=self.spec.max_samples, y=self._y_test)
                entry = ee.AgreedOutputs(outputs=outputs, digest=majority, members=tuple(members),
                                         decrypted=ee.decrypt_task_outputs(outputs, secret_context=self.he_keys.context,
                                                                           y=self._y_test))
            except DinLabError as e:  # remembered: never scored later in a game of its own
                self._unusable_outputs[g] = str(e)
                continue
            agreed.append((entry, backing))
        scored: dict[int, ee.OwnerScoring] = {}
        if agreed:
            started = time.perf_counter()
            previous = self._models[final - 1][1]
            base = outputs_of(self._module(), previous, self._x_test)  # the owner's own, in plaintext
            try:
                scored = ee.score_task_outputs([a for a, _ in agreed], base=base, y=self._y_test,
                                               scorer=self.spec.scorer, seed=task_seed(self.handle.task.address, final))
            except DinLabError as e:  # checked outputs should not get here: if they do, publish nothing made up
                for a, _ in agreed:
                    self._unusable_outputs[a.outputs.subgroup] = f"the task-wide game failed on them ({e})"
                agreed = []
            else:
                players = sum(len(a.outputs.players) for a, _ in agreed)
                self._note("reward", None, f"valued the task's {players} evaluated players in one game",
                           detail=f"from {len(agreed)} subgroups' decrypted outputs, "
                                  f"{time.perf_counter() - started:.2f} s")
        publish = [(a.outputs.subgroup, a.digest, len(a.members), backing) for a, backing in agreed] + outside
        for g, majority, members, backing in publish:
            self._rows.add(g)
            scoring = scored.get(g) or ee.OwnerScoring(scores=(0.0,) * members, audit={
                "kind": "din-lab/encrypted-evaluation/audit", "game": "task", "subgroup": g,
                "outputs_digest": majority.hex(), "scores": [0.0] * members,
                "note": "the subgroup was not accepted in the final round (it failed, or secure aggregation aborted "
                        "it): its players contributed nothing"})
            audit = self._add(json_to_bytes(scoring.audit))
            wads = [to_wad(float(np.clip(v, 0.0, 1.0))) for v in scoring.scores]
            self._tx("reward", None, F.publishScores(g, wads, majority, audit.to_chain()),
                     f"publish decrypted scores of subgroup {g}", cid=audit,
                     detail=f"for outputs digest {majority.hex()[:16]}... ({backing})")
        if self._unusable_outputs:
            wait = self._wait_past(int(self.view.call(F.scorePublishDeadline())))
            if wait is not None:
                return wait
            for g, e in sorted(self._unusable_outputs.items()):
                if g in self._rows:
                    continue
                self._rows.add(g)
                self._note("reward", None, f"subgroup {g}: cannot score the outputs its committee agreed on",
                           detail=f"{e}; closed after the publish deadline, its submitters score 1")
                self._tx("reward", None, F.closeUnresolvedScores(g), f"close subgroup {g}: agreed outputs unusable")
        return None

    def _settle_encrypted(self, final: int, g: int, committee: list[str]) -> Wait | None:
        """Decrypt the outputs a majority of the committee agreed on (by digest) and publish the
        scores; a subgroup with no majority, or whose agreed outputs are unusable, is closed."""
        F = self.F
        majority, votes, counts, seats = self._majority_outputs(g, committee)
        if majority is None:
            self._note("reward", None, f"subgroup {g}: no majority of its committee agrees on the encrypted outputs",
                       detail=f"{len(counts)} different digests: a dispute, nothing is paid on its scores")
            self._tx("reward", None, F.closeUnresolvedScores(g), f"close disputed subgroup {g}: nothing paid")
            return None
        try:
            scoring = self._decrypt_and_score(final, g, majority, [c for d, c in votes if d == majority])
        except DinLabError as e:  # the agreed outputs are unusable: it cannot honestly score them
            wait = self._wait_past(int(self.view.call(F.scorePublishDeadline())))
            if wait is not None:
                return wait
            self._note("reward", None, f"subgroup {g}: cannot score the outputs its committee agreed on",
                       detail=f"{e}; closed after the publish deadline, its submitters score 1")
            self._tx("reward", None, F.closeUnresolvedScores(g), f"close subgroup {g}: agreed outputs unusable")
            return None
        audit = self._add(json_to_bytes(scoring.audit))
        wads = [to_wad(float(np.clip(v, 0.0, 1.0))) for v in scoring.scores]
        self._tx("reward", None, F.publishScores(g, wads, majority, audit.to_chain()),
                 f"publish decrypted scores of subgroup {g}", cid=audit,
                 detail=f"for outputs digest {majority.hex()[:16]}... ({counts[majority]} of {seats} voting seats)")
        return None

    def _agreed_outputs(self, final: int, g: int, digest: bytes, cids: list[Cid]) -> ee.EncryptedOutputs:
        """Fetch the agreed outputs (any backer's copy that hashes to the digest) and check they are
        this subgroup's, on its published test set, of the task's model, with the coalitions the
        scorer needs."""
        data = next((d for d in (self.view.cat(c) for c in cids) if hashlib.sha256(d).digest() == digest), None)
        if data is None:
            raise ProtocolError(f"no stored outputs hash to the agreed digest {digest.hex()}")
        keys = self.he_keys
        outputs = ee.EncryptedOutputs.from_bytes(data, context=keys.context, params=self._he_params)
        linear = ee.he_model(self._module()).depth == 1
        if outputs.subgroup != g or outputs.test_set != self._test_set_digest or outputs.linear != linear \
                or list(outputs.coalitions) != ee.needed_coalitions(len(outputs.players), linear=linear,
                                                                     scorer=self.spec.scorer):
            raise ProtocolError("they are not this subgroup's evaluation of the task's model on the published test set")
        return outputs

    def _decrypt_and_score(self, final: int, g: int, digest: bytes, cids: list[Cid]) -> ee.OwnerScoring:
        """The agreed outputs (:meth:`_agreed_outputs`), decrypted and scored in the subgroup's own game."""
        outputs = self._agreed_outputs(final, g, digest, cids)
        keys = self.he_keys
        members = self.view.members(final, g, subgroup_size=self.spec.subgroup_size)
        return ee.score_outputs(outputs, secret_context=keys.context, y=self._y_test, members=members,
                                scorer=self.spec.scorer, seed=int.from_bytes(self.view.seed(final)[:8], "big") ^ g,
                                digest=digest)

    # ---------------------------------------------------------------- release (paper 5.1 step 5d)

    def release(self, _: None) -> Wait | None:
        """Rewards have settled: the committees release the keys of the final round's sealed results.
        Once every key is out (or, past the release deadline, the withholders are slashed), the owner
        rebuilds the final model from the opened results, as anyone can, and publishes its CID."""
        F = self.F
        final = int(self.view.call(F.finalRound()))
        if final in self._models or self.view.phase() not in (Phase.FINISHED, Phase.ABANDONED):
            return None
        # sealed results (some, when the task was abandoned during its final round) still held
        pending = [g for g in range(self.view.groups(final)) if self.view.call(F.subgroupInfo(final, g))[9]]
        if pending:
            deadline = int(self.view.call(F.releaseDeadline()))
            if self.handle.chain.block_number <= deadline:
                return Wait(deadline + 1)
            for g in pending:
                self._tx("release", None, F.slashWithholders(g), f"slash the withholders of subgroup {g}'s key",
                         detail="nobody released it by the deadline: the subgroup is left out of the final model")
        if not self.view.events("TrainingComplete"):  # abandoned before its final round closed: no final model
            return None
        results, unusable = accepted_results(self.view, final, spec=self.spec)
        for g, why in unusable.items():
            self.unusable[(final, g)] = why
        vector = codec.next_global_model(self._models[final - 1][1], results)
        cid = self._add(codec.encode_model(vector, round_=final, model=self.spec.model))
        self._models[final] = (cid, vector)
        if self.view.phase() == Phase.FINISHED:
            self._tx("release", None, F.publishGlobalModel(final, cid.to_chain()), "publish final global model",
                     cid=cid, detail=f"from {len(results)} opened results")
        else:
            self._note("release", None, "rebuilt the final model", cid=str(cid),
                       detail="the task was abandoned: nothing to publish on chain")
        return None

    # ---------------------------------------------------------------- claim (paper 5.1 step 6)

    def claim(self, _: None) -> None:
        F = self.F
        if self.view.call(F.claimable(self.address)) or self.view.call(F.rewardOf(self.address)):
            self._tx("claim", None, F.claim(), "claim")
        return None
