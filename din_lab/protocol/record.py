"""The public record of a task: what each round left on chain, read by the clock after every phase
for the widgets, the result tables and the notes. It reads the chain's events and the store's
objects through the public view; it is the experimenter's record, so it also looks at what only the
experimenter may see: the global model the owner built (a held final model is measured too) and
which participants dropped out by their own behaviour. No agent reads it. :class:`Readings` is the
experimenter's side of the Lab: results, accuracy, balances, and the agents' own state on request."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from din_lab.chain.din import WAD, Phase, SubgroupStatus
from din_lab.cid import Cid
from din_lab.config import ExperimentConfig
from din_lab.errors import DinLabError, ProtocolError
from din_lab.roles import codec
from din_lab.roles import encrypted_evaluation as ee
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import accepted_result, accepted_results
from din_lab.roles.model_owner import PLAINTEXT_EVALUATION_NOTE
from din_lab.roles.network import LabEvent
from din_lab.roles.participant import sealed_topic
from din_lab.roles.scoring import evaluate_vector

if TYPE_CHECKING:
    from din_lab.protocol.lab import Lab
    from din_lab.protocol.runtime import RemoteAgent


BASELINE_NOTE = ("plaintext baseline, not the paper's protocol: updates travel in plaintext, so evaluators (and "
                 "anyone reading IPFS) see each one and screen it for poisoning before aggregating (the paper's "
                 "secure aggregation: --secagg on, the default)")
SECAGG_NOTE = ("secure aggregation: evaluators see only each subgroup's sum of masked updates, never one update; "
               "they cannot screen individual updates for poisoning while aggregating, and at scoring each "
               "participant reveals its final-round update to its own committee only, sealed to the members' keys "
               "(the committee learns it; nobody else does)")
HE_NOTE = ("encrypted evaluation: the owner's test inputs are published CKKS-encrypted (labels stay with the owner); "
           "committees evaluate the contributions on them and agree on the outputs by digest; the owner, the key "
           "holder, decrypts the agreed outputs and publishes the scores, which the contract accepts for the agreed "
           "digest only. Trust assumption: " + ee.TRUST_NOTE)


HOLD_NOTE = ("final model hold: each committee of the final round stores its subgroup's sum sealed (convergent "
             "encryption: the key is the sum's hash, its keccak on chain in the voted envelope), and under secure "
             "aggregation its members' share reveals, which unmask the sum, are sealed to the committee (re-sealed to a "
             "dispute committee); the keys are released "
             "on chain only after rewards settle (backers who all withhold one are slashed), then anyone rebuilds the "
             "final model and checks the owner's")
HOLD_BASELINE_NOTE = " (in the plaintext baseline every update is public, so the hold hides nothing)"
HOLD_HE_NOTE = (" (under encrypted evaluation the owner decrypts the coalitions' outputs on its own test set during the "
                "reward phase; for a linear model enough outputs determine a subgroup model's weights, so the hold "
                "lasts until the reward phase, not through it)")


def setup_notes(config: ExperimentConfig) -> list[str]:
    """What a task's record says first: which protocol ran (privacy of updates and of the test set,
    and the final model's hold)."""
    hold = HOLD_NOTE + (HOLD_BASELINE_NOTE if not config.secagg else HOLD_HE_NOTE if config.evaluation == "he" else "")
    return [SECAGG_NOTE if config.secagg else BASELINE_NOTE,
            HE_NOTE if config.evaluation == "he" else PLAINTEXT_EVALUATION_NOTE, hold]


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
    views: Mapping[int, Any] = field(default_factory=dict)  # secure aggregation: each subgroup as anyone reads it
    accepted: dict[int, Cid] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    aborted: dict[int, str] = field(default_factory=dict)
    disputes: int = 0
    global_model: np.ndarray | None = None
    global_cid: Cid | None = None
    started: float = 0.0
    gas: int = 0
    stopped: str | None = None  # why training ended with this round (the owner's criterion, or the last round)


class SubgroupViews(Mapping[int, Any]):
    """Each subgroup's secure-aggregation view (as anyone reads it from the chain and the store),
    read when first asked for: the record costs nothing until a widget or a notebook looks."""

    def __init__(self, read: Callable[[int], Any], *, groups: int) -> None:
        self._read, self._groups, self._views = read, groups, {}

    def __getitem__(self, g: int) -> Any:
        if not (isinstance(g, numbers.Integral) and 0 <= g < self._groups):
            raise KeyError(g)
        g = int(g)
        if g not in self._views:
            self._views[g] = self._read(g)
        return self._views[g]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._groups))

    def __len__(self) -> int:
        return self._groups


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
        if phase == "release" and self.rounds:
            r = int(view.call(lab.task.functions.finalRound()))
        if r is None or r >= len(self.rounds):
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
            trained = lab.runtime.ask("trained_in", r, addresses=[p.address for p in lab.participants])
            record.vanished |= {p.address for p in lab.participants  # dropped out by their own behaviour
                                if trained[p.address] and not p.behaviour.submits(r)}
        elif phase == "aggregate":
            if lab.config.secagg:
                record.views = SubgroupViews(lambda g, r=r: lab.auditor.subgroup_view(r, g), groups=record.groups)
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
            if view.phase() != Phase.TRAINING and int(view.call(lab.task.functions.finalRound())) == r:
                ended = [e.detail for e in lab.events if e.phase == "publish" and e.action == "ends training"]
                record.stopped = (ended[-1] if ended else f"the task's last round ({lab.config.rounds} rounds)"
                                  if r == lab.config.rounds - 1 else "too few evaluators left to draw another round")
            self._observe_model(r)
        elif phase == "release":
            self._observe_model(r)

    def _observe_model(self, r: int) -> None:
        lab = self.lab
        built = lab.owner.global_model(r)  # the experimenter's look at the model the owner built
        if built is not None:
            record = self.rounds[r]
            record.global_cid, record.global_model = built
            for g, why in accepted_results(lab.network.view, r, spec=lab.spec)[1].items():
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


class Readings:
    """What the experimenter reads from a :class:`~din_lab.protocol.lab.Lab` (a mixin of it): the
    record, the chain, and, as only the experimenter may, the agents' own state."""

    # set by the Lab
    auditor: Any
    notes: list[str]
    rounds: list[RoundRecord]
    model: Any
    dataset: Any
    owner: Any
    participants: list[Any]
    evaluators: list[Any]
    fund: Any
    runtime: Any
    network: Any
    task: Any
    din: Any
    chain: Any
    balances_raw_before: dict[str, int]
    _names: dict[str, str]

    def verify_round(self, r: int) -> bool:
        """Recompute round ``r``'s global model from the chain (as any auditor does) and compare its
        CID with the one the owner published. False (and a note) when the owner published anything else."""
        ok = self.auditor.verify_round(r)
        for e in self.auditor.take_events():
            self.notes.append(f"round {r}: the owner published {e.cid}, {e.detail}")
        return ok

    def accuracy(self, r: int) -> float:
        """Test accuracy of round ``r``'s global model."""
        vector = self.rounds[r].global_model
        if vector is None:
            raise ProtocolError(f"round {r} has no global model yet")
        return evaluate_vector(self.model, vector, self.dataset.X_test, self.dataset.y_test)["accuracy"]

    @property
    def global_vector(self) -> np.ndarray:
        """The latest global model (the genesis model before round 0 is published)."""
        latest = next((rec.global_model for rec in reversed(self.rounds) if rec.global_model is not None), None)
        return latest if latest is not None else self.owner.global_model(-1)[1]

    def agent(self, address: str) -> Agent | RemoteAgent:
        """The agent with this account (the experimenter's handle on it, e.g. for its behaviour;
        under the Ray runtime a :class:`~din_lab.protocol.runtime.RemoteAgent`)."""
        found = next((a for a in (self.owner, *self.participants, *self.evaluators, self.fund) if a.address == address),
                     None)
        if found is None:
            raise ProtocolError(f"no agent of this task has the account {address}")
        return found

    def updates(self, r: int) -> dict[str, codec.Update]:
        """What each participant trained in round ``r``, for the experimenter (each update is that
        participant's secret: no agent ever sees another's)."""
        asked = self.runtime.ask("update", r, addresses=[p.address for p in self.participants])
        return {a: u for a, u in asked.items() if u is not None}

    def subgroup_view(self, r: int, g: int) -> sa.SubgroupView:
        """Subgroup ``g`` of round ``r`` under secure aggregation as anyone reads it from the chain."""
        return self.auditor.subgroup_view(r, g)

    def result(self, r: int, g: int) -> codec.SubgroupResult:
        """Subgroup ``g``'s accepted result in round ``r``, as anyone reads it from the chain and the
        store: the final round's only once its key is released (after rewards settle)."""
        result = accepted_result(self.network.view, r, g)
        if result is None:
            raise ProtocolError(f"round {r} subgroup {g} has no readable accepted result "
                                "(not accepted, or the final round's, sealed until rewards settle)")
        return result

    def sealed(self, r: int, g: int) -> dict[str, Cid]:
        """The sealed contributions subgroup ``g``'s participants revealed to its committee (board)."""
        return self.network.board.read(sealed_topic(self.task.address, r, g))

    def submitted(self, r: int) -> dict[str, Cid]:
        """The update CIDs recorded on chain for round ``r``."""
        return {a: c for a, (c, _) in self.network.view.submitted(r).items()}

    @property
    def names(self) -> dict[str, str]:
        """Address -> name of everyone and everything this lab knows (agents, contracts, the
        economy's project maintainers); add to it to name a new actor."""
        return self._names

    def name_of(self, address: str) -> str:
        return self._names.get(address, address)

    def balances(self) -> dict[str, float]:
        token = self.din.token.functions
        return {self._names[a]: self.chain.call(token.balanceOf(a)) / WAD for a in self.balances_raw_before}

    def stakes(self) -> dict[str, float]:
        """What is left of each evaluator's bond in this task."""
        return {e.name: self.chain.call(self.task.functions.bondOf(e.address)) / WAD for e in self.evaluators}
