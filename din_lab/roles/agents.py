"""The three roles of a DIN task: Model Owner, Participant, Evaluator.

Each role has its own Ethereum account and keys and decides only what the protocol lets it decide;
the :class:`~din_lab.protocol.lab.Lab` schedules them phase by phase and sends their transactions.

A participant's data lives in that participant only: it is held in a private attribute, read by
:meth:`Participant.train_cohort` (the participants' own devices, simulated as one batched
computation) and handed to no other role or phase. What leaves a participant is its update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account.signers.local import LocalAccount
from torch import nn

from din_lab.cid import Cid
from din_lab.he import OwnerKeys
from din_lab.learning import TrainingConfig, train_local_batched
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.behaviours import EvaluatorBehaviour, ParticipantBehaviour
from din_lab.roles.codec import Update
from din_lab.secagg import Committee, RoundContext, Share
from din_lab.secagg.prg import Rng, seeded_rng


def _x25519(seed: bytes) -> tuple[X25519PrivateKey, bytes]:
    key = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"din-lab x25519 " + seed).digest())
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(eq=False)
class Role:
    """An account that acts in the protocol, with its own X25519 key pair (derived from the
    account's key): participants register its public half with the task, and secure aggregation
    and encrypted deliveries to a role use it."""

    name: str
    account: LocalAccount

    def __post_init__(self) -> None:
        self._key, self.public_key = _x25519(bytes(self.account.key))

    @property
    def address(self) -> str:
        return self.account.address


@dataclass(eq=False)
class ModelOwner(Role):
    """Creates the task with the reward deposit, publishes global models and the evaluation set.
    ``tampers``: publishes a global model other than the one the accepted results give (caught by
    ``Lab.verify_round``). ``he_keys``: its CKKS keys once it encrypts its test set (the secret key
    never leaves this role)."""

    tampers: bool = False
    he_keys: OwnerKeys | None = field(default=None, repr=False)


@dataclass(eq=False)
class Participant(Role):
    """Trains on its own data and submits an update each round; registered with an X25519 public
    key (the key secure aggregation uses)."""

    index: int = 0
    behaviour: ParticipantBehaviour = field(default_factory=ParticipantBehaviour)
    _x: np.ndarray | None = field(default=None, repr=False)
    _y: np.ndarray | None = field(default=None, repr=False)
    _round_secrets: dict[int, sa.RoundSecrets] = field(default_factory=dict, repr=False)

    def receive_data(self, x: np.ndarray, y: np.ndarray) -> None:
        """The participant's own data (once, at set-up)."""
        self._x, self._y = x, y

    @property
    def samples(self) -> int:
        return 0 if self._y is None else int(len(self._y))

    @staticmethod
    def train_cohort(participants: Sequence[Participant], *, model: nn.Module, global_vector: np.ndarray,
                     config: TrainingConfig, round_: int, seed: int, num_classes: int) -> dict[str, Update]:
        """Every participant's local training of this round, batched in one computation (the same
        result as each training alone); returns the updates they would send, behaviours applied."""
        data = []
        for p in participants:
            rng = np.random.default_rng([seed, round_, p.index, 7])
            data.append(p.behaviour.training_data(p._x, p._y, num_classes=num_classes, rng=rng))
        result = train_local_batched(model, data, global_params=global_vector, config=config,
                                     seed=seed * 1_000_003 + round_, participant_ids=[p.index for p in participants])
        updates = {}
        for k, p in enumerate(participants):
            delta = (result.params[k].astype(np.float64) - global_vector.astype(np.float64)).astype(np.float32)
            updates[p.address] = Update(delta=p.behaviour.update(delta), samples=p.samples, round=round_,
                                        participant=p.address)
        return updates

    # secure aggregation (din_lab.roles.secure_aggregation): the round secrets stay in the participant

    def _secret_rng(self, label: str) -> Rng:
        """Randomness only this participant can reproduce: seeded from its own private key (so a lab
        run is reproducible from its seed, yet nobody without the key can derive round secrets)."""
        return seeded_rng(hashlib.sha256(b"din-lab/secagg/participant-rng" + bytes(self.account.key)
                                         + label.encode()).digest())

    def advertise(self, *, round_: int, position: int, context: RoundContext, committee: Committee) -> bytes:
        """Fresh round keys, shared with the committee; returns the aux object to store and announce."""
        rng = self._secret_rng(f"{context}/round keys")
        keys, aux = sa.advertise(participant=self.address, position=position, context=context,
                                 long_term_key=self._key, committee=committee, rng=rng)
        self._round_secrets[round_] = sa.RoundSecrets(keys=keys, salt=rng(32))
        return self.behaviour.aux_object(aux)

    def mask(self, update: Update, *, round_: int, position: int, peers: dict[int, tuple[Cid, sa.AuxObject]],
             secagg_plus: bool, seed: bytes) -> bytes:
        """The masked update object of this round (its secrets come from :meth:`advertise`)."""
        return sa.mask(update, participant=self.address, position=position,
                       secrets=self._round_secrets[round_], peers=peers, secagg_plus=secagg_plus, seed=seed)

    def seal_contribution(self, update: Update, *, round_: int, position: int, committee: Sequence[bytes]) -> bytes:
        """This round's update revealed to the committee only (reward phase)."""
        secrets = self._round_secrets[round_]
        return sa.seal_contribution(self.behaviour.revealed(update), position=position, secrets=secrets,
                                    long_term_key=self._key, committee=committee,
                                    rng=self._secret_rng(f"{secrets.keys.context}/reveal"))


@dataclass(eq=False)
class Evaluator(Role):
    """Stakes, aggregates its subgroups' updates, votes by commit-reveal, and scores participants."""

    index: int = 0
    behaviour: EvaluatorBehaviour = field(default_factory=EvaluatorBehaviour)

    def reveal_shares(self, view: sa.SubgroupView, *, holder: int,
                      participant_keys: dict[str, bytes]) -> tuple[list[Share], dict[int, str]]:
        """Open the share bundles addressed to this member and reveal by Bonawitz's rule."""
        shares, problems = sa.committee_reveal(view, holder=holder, holder_key=self._key,
                                               participant_keys=participant_keys)
        return self.behaviour.shares(shares), problems

    def open_contribution(self, data: bytes, *, context: RoundContext, position: int, participant: str, holder: int,
                          participant_public_key: bytes, commitment: bytes) -> Update:
        return sa.open_contribution(data, context=context, position=position, participant=participant, holder=holder,
                                    holder_key=self._key, participant_public_key=participant_public_key,
                                    commitment=commitment)
