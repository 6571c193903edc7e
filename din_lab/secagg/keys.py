"""Keys of a round: the participant's fresh per-round secrets (:class:`RoundKeys`), the public
auxiliary message it publishes (:class:`AuxMessage`), the committee that holds the shares
(:class:`Committee`) and the X25519 helpers.

Long-term keys are X25519 keys (``cryptography``'s ``X25519PrivateKey``; public halves as 32 raw
bytes), registered on chain once per task. They only encrypt and authenticate share delivery; the
masks use a fresh X25519 key pair per round (``s``) and a fresh 256-bit self-mask seed (``b``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from din_lab.errors import ConfigError
from din_lab.secagg import wire
from din_lab.secagg.context import RoundContext
from din_lab.secagg.errors import AuxMessageError
from din_lab.secagg.prg import Rng

__all__ = [
    "AuxMessage",
    "Committee",
    "RoundKeys",
    "generate_long_term_key",
    "participant_setup",
    "public_key_bytes",
    "seed_commitment",
]

KEY_BYTES = 32


def public_key_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public half of an X25519 key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_long_term_key(*, rng: Rng = os.urandom) -> X25519PrivateKey:
    """A long-term X25519 key from 32 bytes of ``rng`` (``os.urandom`` unless a lab run is seeded)."""
    return X25519PrivateKey.from_private_bytes(rng(KEY_BYTES))


def exchange(private: X25519PrivateKey, public: bytes, error: type[Exception], what: str) -> bytes:
    """X25519 shared secret, or ``error`` for a malformed or low-order public key."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as e:
        raise error(f"{what}: unusable X25519 public key ({e})") from e


def seed_commitment(*, context: RoundContext, participant: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a participant's self-mask seed, published in its aux message so that a
    reconstructed seed can be checked (and bad shares detected)."""
    return hashlib.sha256(b"din-lab/secagg/v1/seed-commitment" + context.digest + wire.u64(participant)
                          + seed).digest()


def _check_participant(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= wire.U64_MAX:
        raise ConfigError(f"participant index must be an integer in [0, 2^64), got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class AuxMessage:
    """What a participant publishes for a round before masking: its fresh mask public key and a
    commitment to its self-mask seed. Bytes (:meth:`to_bytes`): an ``aux message`` with 6 fields:
    task, round, subgroup, participant (u64), mask public key (32), seed commitment (32)."""

    context: RoundContext
    participant: int
    mask_public_key: bytes
    seed_commitment: bytes

    def __post_init__(self) -> None:
        _check_participant(self.participant)
        if len(self.mask_public_key) != KEY_BYTES or len(self.seed_commitment) != 32:
            raise AuxMessageError("an aux message holds a 32-byte mask public key and a 32-byte seed commitment")

    def to_bytes(self) -> bytes:
        return wire.pack(wire.MessageType.AUX, [*self.context.fields(), wire.u64(self.participant),
                                                self.mask_public_key, self.seed_commitment])

    @classmethod
    def from_bytes(cls, data: bytes) -> AuxMessage:
        """Decode; malformed bytes raise :class:`AuxMessageError`."""
        f = wire.unpack(data, wire.MessageType.AUX, 6, AuxMessageError)
        context = RoundContext.from_fields(f[:3], AuxMessageError)
        return cls(context=context, participant=wire.unpack_u64(f[3], AuxMessageError, "participant"),
                   mask_public_key=f[4], seed_commitment=f[5])

    @property
    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`; encrypted shares are bound to it."""
        return hashlib.sha256(self.to_bytes()).digest()

    def check(self, *, context: RoundContext, participant: int) -> None:
        """:class:`AuxMessageError` unless this is ``participant``'s aux message for ``context``."""
        if self.context != context:
            raise AuxMessageError(f"aux message of participant {self.participant} is for {self.context}, not {context}")
        if self.participant != participant:
            raise AuxMessageError(f"aux message filed under participant {participant} is participant "
                                  f"{self.participant}'s")


@dataclass(frozen=True, kw_only=True)
class RoundKeys:
    """A participant's secrets for one round: the mask key ``s`` (X25519 private bytes) and the
    self-mask seed ``b``. Never published; shared with the committee only as Shamir shares."""

    context: RoundContext
    participant: int
    mask_private_key: bytes = field(repr=False)
    self_seed: bytes = field(repr=False)
    aux: AuxMessage

    @property
    def mask_public_key(self) -> bytes:
        return self.aux.mask_public_key


def participant_setup(*, context: RoundContext, participant: int, rng: Rng = os.urandom) -> tuple[RoundKeys, bytes]:
    """A participant's fresh round secrets and the aux message (bytes) it publishes."""
    _check_participant(participant)
    mask_private = rng(KEY_BYTES)
    seed = rng(32)
    if len(mask_private) != KEY_BYTES or len(seed) != 32:
        raise ConfigError("rng(n) must return n bytes")
    public = public_key_bytes(X25519PrivateKey.from_private_bytes(mask_private))
    aux = AuxMessage(context=context, participant=participant, mask_public_key=public,
                     seed_commitment=seed_commitment(context=context, participant=participant, seed=seed))
    keys = RoundKeys(context=context, participant=participant, mask_private_key=mask_private, self_seed=seed, aux=aux)
    return keys, aux.to_bytes()


@dataclass(frozen=True, kw_only=True)
class Committee:
    """The evaluator committee of a subgroup, in the contract's order: member ``h`` (0-based) holds
    the shares evaluated at ``x = h + 1``. ``threshold`` is ``floor(n / 2) + 1``: a strict majority
    can unmask, and privacy holds while fewer than that many members collude."""

    public_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        keys = tuple(bytes(k) for k in self.public_keys)
        object.__setattr__(self, "public_keys", keys)
        if not keys:
            raise ConfigError("a committee needs at least one member")
        if any(len(k) != KEY_BYTES for k in keys):
            raise ConfigError("committee public keys are raw 32-byte X25519 keys")
        if len(set(keys)) != len(keys):
            raise ConfigError("committee members must have distinct public keys")

    @property
    def size(self) -> int:
        return len(self.public_keys)

    @property
    def threshold(self) -> int:
        return self.size // 2 + 1
