"""The Participant (paper 5.1 steps 2-4, 5.2 step 2): trains on its own data from the verified
global model, submits its update (masked under secure aggregation), reveals its final-round update
to its own committee at scoring, and claims its reward.

Its data and round secrets never leave it. Local training of many participants runs as one
batched computation (:class:`BatchedTrainer`, the participants' devices simulated together): each
hands its own data to the trainer for the duration of the call and gets only its own result back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from din_lab.chain.din import cid_arg, sign_update
from din_lab.cid import Cid
from din_lab.errors import ContractRevert, DinLabError
from din_lab.learning import build_model, lab_model_spec, train_local_batched
from din_lab.roles import codec
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import accepted_result, aux_object, held_header, verified_global_model
from din_lab.roles.behaviours import ParticipantBehaviour
from din_lab.roles.network import Handle, TaskSpec, Wait
from din_lab.secagg import Committee, SecAggError
from din_lab.secagg.prg import Rng, seeded_rng


def aux_topic(task: str, r: int, g: int) -> str:
    return f"{task}/round {r}/subgroup {g}/aux"


def relay_topic(task: str, r: int) -> str:
    return f"{task}/round {r}/signed updates"


def sealed_topic(task: str, r: int, g: int) -> str:
    return f"{task}/round {r}/subgroup {g}/sealed contributions"


def reseal_topic(task: str, r: int, g: int) -> str:
    """Where the first committee's members post their final-round share reveals re-sealed to a dispute committee."""
    return f"{task}/round {r}/subgroup {g}/share reveals for the dispute committee"


@dataclass(frozen=True)
class TrainingJob:
    """What a participant hands the shared trainer: its (behaviour-applied) data and the global model
    it verified; ``start`` is that model's CID (jobs train together only from the same model)."""

    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    participant_id: int
    start: Cid
    global_vector: np.ndarray = field(repr=False)


class BatchedTrainer:
    """The participants' devices simulated as one batched computation (the same result as each
    training alone: :func:`~din_lab.learning.train_local_batched`)."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.model = build_model(lab_model_spec(spec.model), num_features=spec.num_features,
                                 num_classes=spec.num_classes, seed=0)

    def train(self, jobs: Sequence[TrainingJob], *, round_: int) -> list[np.ndarray]:
        """Each job's trained parameters, in job order."""
        out: list[np.ndarray | None] = [None] * len(jobs)
        starts: dict[str, list[int]] = {}
        for k, job in enumerate(jobs):
            starts.setdefault(str(job.start), []).append(k)
        for ks in starts.values():
            result = train_local_batched(self.model, [(jobs[k].x, jobs[k].y) for k in ks],
                                         global_params=jobs[ks[0]].global_vector, config=self.spec.training,
                                         seed=self.spec.seed * 1_000_003 + round_,
                                         participant_ids=[jobs[k].participant_id for k in ks])
            for j, k in enumerate(ks):
                out[k] = result.params[j]
        return out  # type: ignore[return-value]


class Participant(Agent):
    """Trains on its own data and submits an update each round; registered with an X25519 public
    key (the key secure aggregation uses)."""

    def __init__(self, *, name: str, handle: Handle, index: int, behaviour: ParticipantBehaviour | None = None,
                 x: np.ndarray, y: np.ndarray) -> None:
        super().__init__(name=name, handle=handle)
        self.index = index
        self.behaviour = behaviour or ParticipantBehaviour()
        self._x, self._y = x, y
        self.registered = False  # until its registration is accepted
        self._models: dict[int, tuple[Cid, np.ndarray]] = {}  # round -> the global model it verified
        self._updates: dict[int, codec.Update] = {}
        self._round_secrets: dict[int, sa.RoundSecrets] = {}
        self._submitted: dict[int, Cid] = {}
        self._vanished: set[int] = set()  # rounds its behaviour dropped out of after advertising
        self._advertised: set[int] = set()
        self._refused: set[int] = set()
        self._distrusts_from: int | None = None  # the first round built on a model it refused
        self._revealed = False

    @property
    def samples(self) -> int:
        return int(len(self._y))

    def submitted(self, r: int) -> bool:
        return r in self._submitted

    def update(self, r: int) -> codec.Update | None:
        """What it trained in round ``r`` (its own secret: the experimenter may look, no agent does)."""
        return self._updates.get(r)

    def trained_in(self, r: int) -> bool:
        """Whether it trained in round ``r`` (without handing over the update)."""
        return r in self._updates

    # ---------------------------------------------------------------- set-up

    def register(self, _: None) -> None:
        """Register with its X25519 key; a task with an identity registry refuses an account it has
        not verified (``NotAllowed``): that account then takes no part."""
        try:
            self._tx("setup", None, self.F.register(self.public_key), "register")
        except ContractRevert as e:
            if e.error_name != "NotAllowed":
                raise
            self._note("setup", None, "registration refused",
                       detail="not verified by the task's identity registry (one account per person)")
            return
        self.registered = True

    def act(self, phase: str, round_: int | None, *, timed_out: bool = False) -> Wait | None:
        return super().act(phase, round_, timed_out=timed_out) if self.registered else None

    # ---------------------------------------------------------------- train (paper 5.1 step 2)

    def training_job(self, r: int) -> TrainingJob | None:
        """Fetch the global model this round trains from by its CID on chain, check it (the genesis
        model, or the one the accepted results on chain give), and hand the trainer its data."""
        if not self.registered or r in self._refused or (self._distrusts_from is not None
                                                         and r >= self._distrusts_from):
            return None
        start = self._global_model(r - 1)
        if start is None:
            return None
        cid, vector = start
        rng = np.random.default_rng([self.spec.seed, r, self.index, 7])
        x, y = self.behaviour.training_data(self._x, self._y, num_classes=self.spec.num_classes, rng=rng)
        return TrainingJob(x=x, y=y, participant_id=self.index, start=cid, global_vector=vector)

    def trained(self, r: int, params: np.ndarray) -> None:
        """The trainer's result for this participant: its update of round ``r``."""
        _, start = self._models[r - 1]
        delta = (params.astype(np.float64) - start.astype(np.float64)).astype(np.float32)
        self._updates[r] = codec.Update(delta=self.behaviour.update(delta), samples=self.samples, round=r,
                                        participant=self.address)

    def _global_model(self, r: int) -> tuple[Cid, np.ndarray] | None:
        """The global model of round ``r`` (``-1``: genesis) as published, if it is the one the
        participant recomputes from the accepted results on chain and the model it verified before."""
        if r in self._models:
            return self._models[r]
        published = self.view.global_model_cid(r)
        if published is None:
            self._refused.add(r + 1)
            self._note("train", r + 1, f"no global model is published for round {r}: does not train")
            return None
        if r < 0:
            vector = self.view.decoded(published, codec.decode_model, kind="model")
        else:
            previous = self._global_model(r - 1)
            if previous is None:
                return None
            vector, expected = verified_global_model(self.view, r, previous=previous[1], spec=self.spec)
            if expected != published:
                self._reject(r, published, expected)
                return None
        self._models[r] = (published, vector)
        return self._models[r]

    def _reject(self, r: int, published: Cid, expected: Cid) -> None:
        """The published model of round ``r`` is not the one the accepted results give: record the
        refusal on chain (``rejectGlobalModel``; a majority of refusals ends the task) and train on
        nothing from it, nor from any model built on it."""
        self._distrusts_from = r + 1
        detail = f"round {r}'s accepted results give {expected}"
        try:
            self._tx("train", r + 1, self.F.rejectGlobalModel(r), f"refuses round {r}'s global model: does not train",
                     cid=published, detail=detail)
        except ContractRevert as e:  # e.g. the task already ended on the others' refusals
            self._note("train", r + 1, f"refuses round {r}'s global model: does not train", cid=str(published),
                       detail=f"{detail}; its refusal was not recorded ({e.error_name})")

    # ---------------------------------------------------------------- submit (paper 5.1 step 3)

    def submit(self, r: int) -> Wait | None:
        """Secure aggregation: advertise fresh round keys to the committee (first turn), then mask
        against the subgroup's announced keys and submit. Plaintext: store the update and submit.
        A relayed submission is signed and handed to the relayer through the board."""
        update = self._updates.get(r)
        if update is None or r in self._submitted or r in self._vanished:
            return None
        where = self._position(r)
        if r not in self._advertised:
            self._advertised.add(r)
            if self.spec.secagg and where is not None:
                self._advertise(r, *where)
            return Wait()  # submit once the subgroup has announced its keys
        if not self.behaviour.submits(r):
            self._vanished.add(r)
            self._note("submit", r, "vanished mid-round: trained, never submitted")
            return None
        if self.spec.secagg:
            if where is None:
                self._note("submit", r, "in no subgroup this round: nothing to mask")
                return None
            sent = self._mask(r, *where, update)
            if sent is None:
                return None
            cid, aux = sent
        else:
            cid, aux = self._add(codec.encode_update(update)), None
            self._note("submit", r, "uploaded update", cid=str(cid))
        self._submitted[r] = cid
        if self.spec.relayed_submissions:
            signed = sign_update(participant=self.handle.account, task=self.handle.task,
                                 chain_id=self.handle.chain.chain_id, round_=r, update=cid, aux=aux)
            self._post(relay_topic(self.handle.task.address, r), self._add(_signed_bytes(signed)))
        else:
            self._tx("submit", r, self.F.submitUpdate(r, cid.to_chain(), cid_arg(aux)),
                     "submit masked update" if self.spec.secagg else "submit update", cid=cid)
        return None

    def _position(self, r: int) -> tuple[int, int] | None:
        size = self.spec.subgroup_size
        for g in range(self.view.groups(r)):
            members = self.view.members(r, g, subgroup_size=size)
            if self.address in members:
                return g, members.index(self.address)
        return None

    def _context(self, r: int, g: int) -> sa.RoundContext:
        return sa.round_context(task=self.handle.task.address, round_=r, subgroup=g)

    def _committee(self, r: int, g: int) -> Committee:
        return Committee(public_keys=tuple(self.view.evaluator_key(a) for a in self.view.committee(r, g)))

    def _participant_rng(self, label: str) -> Rng:
        return seeded_rng(hashlib.sha256(b"din-lab/secagg/participant-rng" + bytes(self.handle.account.key)
                                         + label.encode()).digest())

    def _advertise(self, r: int, g: int, pos: int) -> None:
        """Fresh round keys, shared with the committee (sealed to the members' keys); the aux object
        is stored and announced to the subgroup on the board (no transaction)."""
        context = self._context(r, g)
        try:
            committee = self._committee(r, g)
            rng = self._participant_rng(f"{context}/round keys")
            keys, aux = sa.advertise(participant=self.address, position=pos, context=context,
                                     long_term_key=self._key, committee=committee, rng=rng)
        except DinLabError as e:  # a member published no key, a duplicate, a low-order point
            self._note("submit", r, "cannot share its round secrets with the committee", detail=str(e))
            return
        self._round_secrets[r] = sa.RoundSecrets(keys=keys, salt=rng(32))
        cid = self._add(self.behaviour.aux_object(aux))
        self._post(aux_topic(self.handle.task.address, r, g), cid)
        self._note("submit", r, f"advertised round keys, shares sealed to subgroup {g}'s committee", cid=str(cid))

    def _mask(self, r: int, g: int, pos: int, update: codec.Update) -> tuple[Cid, Cid] | None:
        members = self.view.members(r, g, subgroup_size=self.spec.subgroup_size)
        announced = self.handle.board.read(aux_topic(self.handle.task.address, r, g))
        by_position = {members.index(a): c for a, c in announced.items() if a in members}
        peers = sa.read_peers(by_position, fetch=self.view.cat, context=self._context(r, g), members=members,
                              parse=lambda c: aux_object(self.view, c))
        if pos not in peers or r not in self._round_secrets:
            self._note("submit", r, "no usable aux object of its own: cannot take part this round")
            return None
        try:
            data = sa.mask(self.behaviour.masked(update), participant=self.address, position=pos,
                           secrets=self._round_secrets[r], peers=peers, secagg_plus=self.spec.secagg_plus,
                           seed=sa.graph_seed(self.view.seed(r), g), committed=update)
        except SecAggError as e:
            self._note("submit", r, "cannot mask its update: does not submit", detail=str(e))
            return None
        cid = self._add(data)
        self._note("submit", r, "uploaded masked update", cid=str(cid))
        return cid, by_position[pos]

    # ---------------------------------------------------------------- score (paper 5.1 step 5, secure aggregation)

    def score(self, _: None) -> None:
        """Secure aggregation's price for individual rewards: if its final-round update entered an
        accepted sum, reveal that update to its own committee only, sealed to the members' keys."""
        if not self.spec.secagg or self._revealed:
            return None
        self._revealed = True
        final = int(self.view.call(self.F.finalRound()))
        update = self._updates.get(final)
        where = self._position(final)
        if update is None or not self.submitted(final) or where is None or final not in self._round_secrets:
            return None
        g, pos = where
        held = held_header(self.view, final, g)  # the final round's sum is sealed; who is in it is not
        result = held or accepted_result(self.view, final, g)
        if result is None or (held is None and result.aborted) or self.address not in result.included:
            return None
        secrets = self._round_secrets[final]
        sealed = sa.seal_contribution(self.behaviour.revealed(update), position=pos, secrets=secrets,
                                      long_term_key=self._key, committee=self._committee(final, g).public_keys,
                                      rng=self._participant_rng(f"{secrets.keys.context}/reveal"))
        cid = self._add(sealed)
        self._post(sealed_topic(self.handle.task.address, final, g), cid)
        self._note("score", None, f"revealed its round {final} update to subgroup {g}'s committee only "
                   "(sealed to the members' keys)", cid=str(cid))
        return None

    # ---------------------------------------------------------------- claim (paper 5.1 step 6)

    def claim(self, _: None) -> None:
        if self.view.call(self.F.claimable(self.address)) or self.view.call(self.F.rewardOf(self.address)):
            self._tx("claim", None, self.F.claim(), "claim")
        return None


def _signed_bytes(signed: tuple) -> bytes:
    """A signed update as the relayer reads it from the store (JSON, hex fields)."""
    from din_lab.storage.serialization import json_to_bytes

    participant, (ud, uk), (ad, ak), r, vs = signed
    return json_to_bytes({"kind": "din-lab/signed-update", "participant": participant, "update": [ud.hex(), uk],
                          "aux": [ad.hex(), ak], "r": r.hex(), "vs": vs.hex()})


def signed_from_bytes(data: bytes) -> tuple:
    """The ``submitUpdatesRelayed`` tuple of a stored signed update."""
    from din_lab.storage.serialization import json_from_bytes

    obj = json_from_bytes(data)
    if obj.get("kind") != "din-lab/signed-update":
        raise DinLabError("not a signed update")
    return (obj["participant"], (bytes.fromhex(obj["update"][0]), int(obj["update"][1])),
            (bytes.fromhex(obj["aux"][0]), int(obj["aux"][1])), bytes.fromhex(obj["r"]), bytes.fromhex(obj["vs"]))
