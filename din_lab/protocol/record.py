"""The public record of a task: what each round left on chain, read by the clock after every phase
for the widgets, the result tables and the notes. It reads the chain's events and the store's
objects through the public view; it is the experimenter's record, so it also looks at what only the
experimenter may see: the global model the owner built (a held final model is measured too) and
which participants dropped out by their own behaviour. No agent reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from din_lab.chain.din import SubgroupStatus
from din_lab.cid import Cid
from din_lab.config import ExperimentConfig
from din_lab.errors import DinLabError
from din_lab.roles import codec
from din_lab.roles import encrypted_evaluation as ee
from din_lab.roles.auditor import accepted_results
from din_lab.roles.model_owner import PLAINTEXT_EVALUATION_NOTE
from din_lab.roles.network import LabEvent

if TYPE_CHECKING:
    from din_lab.protocol.lab import Lab


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


def setup_notes(config: ExperimentConfig) -> list[str]:
    """What a task's record says first: which protocol ran (privacy of updates and of the test set)."""
    return [SECAGG_NOTE if config.secagg else BASELINE_NOTE,
            HE_NOTE if config.evaluation == "he" else PLAINTEXT_EVALUATION_NOTE]


@dataclass
class RoundRecord:
    """A round as the public record shows it (filled in by the clock from the chain after each phase)."""

    seed: bytes = b""
    groups: int = 0
    members: dict[int, list[str]] = field(default_factory=dict)
    committees: dict[int, list[str]] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)  # who submitted (UpdateSubmitted)
    vanished: set[str] = field(default_factory=set)  # who the environment took offline in submit
    share_reveals: dict[int, dict[int, Cid]] = field(default_factory=dict)  # subgroup -> holder -> CID
    views: dict[int, Any] = field(default_factory=dict)  # secure aggregation: each subgroup as anyone reads it
    accepted: dict[int, Cid] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    aborted: dict[int, str] = field(default_factory=dict)
    disputes: int = 0
    global_model: np.ndarray | None = None
    global_cid: Cid | None = None
    started: float = 0.0
    gas: int = 0


class Recorder:
    """Fills ``rounds`` (one :class:`RoundRecord` per round) and the Lab's notes."""

    def __init__(self, *, lab: Lab) -> None:
        self.lab = lab
        self.rounds: list[RoundRecord] = []

    def observe(self, phase: str, r: int | None) -> None:
        """Read what ``phase`` of round ``r`` left on chain into the record (and the notes)."""
        lab = self.lab
        view = lab.network.view
        if phase == "reward":
            for e in view.events("ScoresUnresolved"):
                g = e.args["subgroup"]
                lab.notes.append(
                    f"subgroup {g}: no majority of its committee agrees on the encrypted outputs: a dispute, nothing "
                    "is paid on its scores" if not any(bytes(e.args["majorityDigest"])) else
                    f"subgroup {g}: the owner did not score the outputs its committee agreed on; after the publish "
                    "deadline the subgroup was closed and its submitters score 1")
        if r is None:
            return
        record = self.rounds[r]
        if phase == "assign":
            record.seed, record.groups = view.seed(r), view.groups(r)
            for g in range(record.groups):
                record.members[g] = view.members(r, g, subgroup_size=lab.config.subgroup_size)
                record.committees[g] = view.committee(r, g, 0)
            lab.events.append(LabEvent(phase="assign", round=r, actor="contract", action="subgroups drawn",
                                        detail=f"{record.groups} subgroups, seed {record.seed.hex()[:16]}..."))
        elif phase == "train" and r > 0 and (refusals := view.events("GlobalModelRejected", round=r - 1)):
            lab.notes.append(f"round {r}: participants refused the global model the owner published for round "
                              f"{r - 1} (it is not the weighted mean of the round's accepted results) and did not "
                              f"train on it; {len(refusals)} of {len(lab.participants)} refusals recorded on chain"
                              + ("; a majority refused, so the task ended as abandoned: the pool is paid to the "
                                 "participants by their accepted contributions" if lab._ended() else ""))
        elif phase == "submit":
            record.sent = set(view.submitted(r))
            trained = lab.updates(r)  # dropped out by their own behaviour
            record.vanished |= {p.address for p in lab.participants
                                if p.address in trained and not p.behaviour.submits(r)}
        elif phase == "aggregate":
            if lab.config.secagg:
                record.views = {g: lab.auditor.subgroup_view(r, g) for g in range(record.groups)}
            for e in view.events("SharesRevealed", round=r):
                g = int(e.args["subgroup"])
                record.share_reveals.setdefault(g, {})[record.committees[g].index(e.args["evaluator"])] = \
                    Cid.from_chain(e.args["shares"])
        elif phase == "finalize":
            record.disputes = len(view.events("DisputeOpened", round=r))
            for g, (status, cid) in sorted(view.finalized(r).items()):
                if status != SubgroupStatus.ACCEPTED:
                    record.failed.append(g)
                    continue
                record.accepted[g] = cid
                self._note_abort(r, g, cid)
            if not record.accepted:
                lab.notes.append(f"round {r}: no subgroup result was accepted; the global model does not change")
        elif phase == "publish":
            held = lab.owner.global_model(r)  # the experimenter's look at the model the owner built
            if held is not None:
                record.global_cid, record.global_model = held
            for g, why in accepted_results(view, r, spec=lab.spec)[1].items():
                lab.notes.append(f"round {r}: accepted result {why} of subgroup {g} is unusable; it is left out of "
                                 "the global model")

    def _note_abort(self, r: int, g: int, cid: Cid) -> None:
        lab = self.lab
        if not lab.config.secagg:
            return
        try:
            reason = lab.network.view.decoded(cid, codec.decode_result, kind="result").aborted
        except DinLabError:
            return
        if reason:
            self.rounds[r].aborted[g] = reason
            lab.notes.append(f"round {r}: secure aggregation of subgroup {g} aborted ({reason}); the committee "
                              "accepted the abort (nobody slashed, no participant paid for it); its participants' "
                              "updates are left out of this round's global model and they train again next round")
