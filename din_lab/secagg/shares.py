"""Shares of the round secrets, held by the subgroup's evaluator committee.

- :func:`shares_for_committee`: a participant Shamir-shares its self-mask seed ``b`` and its round
  mask key ``s`` (t = floor(n/2) + 1 of the n committee members) and encrypts member ``h``'s two
  shares to ``h``'s long-term key: ChaCha20-Poly1305 under ``HKDF(X25519(participant long-term key,
  member long-term key), salt = context digest, info = domain | associated data)``, random 96-bit
  nonce, associated data = context, participant, holder, kind, the digest of the participant's aux
  message and both long-term public keys. A share bundle therefore opens only for its addressee, in
  its round and subgroup, for its participant and aux message, and only if made with the
  participant's registered long-term key; anything else (tampered, replayed, from a non-member)
  raises :class:`ShareError`.
- :func:`open_shares`: a member decrypts the bundle addressed to it.
- :func:`reveal_shares`: Bonawitz's rule, applied by each member once the survivors are fixed: the
  self-seed share of each survivor, the mask-key share of each dropped participant, never both.
- :func:`recover_secrets`: reconstruct from the revealed shares of at least ``t`` members; each
  secret is checked against the participant's aux message (the seed against its commitment, the
  mask key against its public key), so the result is the same whichever ``t`` consistent shares are
  used, a wrong share is detected, and (with more than ``t`` shares) corrected and its holder named.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from din_lab.errors import ConfigError
from din_lab.secagg import shamir, wire
from din_lab.secagg.context import RoundContext
from din_lab.secagg.errors import SecAggAbort, SecAggError, ShareError
from din_lab.secagg.graph import MIN_SURVIVORS, MaskGraph, check_quorum
from din_lab.secagg.keys import AuxMessage, Committee, RoundKeys, exchange, public_key_bytes, seed_commitment
from din_lab.secagg.prg import Rng, hkdf

__all__ = [
    "MAX_COMBINATIONS",
    "OpenedShares",
    "RecoveredSecrets",
    "SecretKind",
    "Share",
    "open_shares",
    "recover_secrets",
    "reveal_shares",
    "shares_for_committee",
]

log = logging.getLogger(__name__)

NONCE_BYTES = 12
MAX_COMBINATIONS = 20_000  # t-subsets tried per secret when the first t shares do not verify
_SHARE_KEY = b"din-lab/secagg/v1/share-key"
_SHARE_AD = b"din-lab/secagg/v1/share"


class SecretKind(enum.IntEnum):
    """Which round secret a share is of."""

    SELF_SEED = 1  # b_i: revealed (reconstructed) for survivors
    MASK_KEY = 2  # s_i: revealed (reconstructed) for dropped participants


_KINDS = (SecretKind.SELF_SEED, SecretKind.MASK_KEY)


@dataclass(frozen=True, kw_only=True)
class Share:
    """One decrypted Shamir share: ``value = f(holder + 1)`` of ``participant``'s secret of ``kind``.
    Bytes (:meth:`to_bytes`, how members pass revealed shares to each other): a ``revealed share``
    with 7 fields: task, round, subgroup, participant (u64), holder (u64), kind (1 byte), value (66)."""

    context: RoundContext
    participant: int
    holder: int
    kind: SecretKind
    value: int = field(repr=False)

    @property
    def x(self) -> int:
        return self.holder + 1

    def to_bytes(self) -> bytes:
        return wire.pack(wire.MessageType.SHARE, [
            *self.context.fields(), wire.u64(self.participant), wire.u64(self.holder), bytes([int(self.kind)]),
            self.value.to_bytes(shamir.FIELD_BYTES, "big")])

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Decode; malformed bytes raise :class:`ShareError`."""
        f = wire.unpack(data, wire.MessageType.SHARE, 7, ShareError)
        context = RoundContext.from_fields(f[:3], ShareError)
        if len(f[5]) != 1 or f[5][0] not in (1, 2):
            raise ShareError("revealed share: unknown secret kind")
        return cls(context=context, participant=wire.unpack_u64(f[3], ShareError, "participant"),
                   holder=wire.unpack_u64(f[4], ShareError, "holder"), kind=SecretKind(f[5][0]),
                   value=_field_element(f[6]))


def _field_element(raw: bytes) -> int:
    if len(raw) != shamir.FIELD_BYTES:
        raise ShareError(f"a share value is {shamir.FIELD_BYTES} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value >= shamir.PRIME:
        raise ShareError("a share value is not a field element")
    return value


@dataclass(frozen=True, kw_only=True)
class OpenedShares:
    """The two shares a committee member holds for one participant (after :func:`open_shares`)."""

    context: RoundContext
    participant: int
    holder: int
    self_seed: Share = field(repr=False)
    mask_key: Share = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class RecoveredSecrets:
    """Reconstructed secrets: survivors' self-mask seeds and dropped participants' mask keys (never
    both for one participant). ``bad_holders``: committee members whose shares did not lie on a
    verified polynomial (corrected; worth a dispute)."""

    context: RoundContext
    self_seeds: Mapping[int, bytes] = field(repr=False)
    mask_keys: Mapping[int, bytes] = field(repr=False)
    bad_holders: tuple[int, ...] = ()


def _associated_data(*, context: RoundContext, participant: int, holder: int, kind: SecretKind, aux_digest: bytes,
                     sender: bytes, recipient: bytes) -> bytes:
    return _SHARE_AD + wire.pack(0, [*context.fields(), wire.u64(participant), wire.u64(holder),
                                     bytes([int(kind)]), aux_digest, sender, recipient])


def shares_for_committee(*, keys: RoundKeys, long_term_key: X25519PrivateKey, committee: Committee,
                         rng: Rng = os.urandom) -> list[bytes]:
    """One encrypted share bundle per committee member (in committee order), to publish (e.g. on IPFS).

    Bytes: an ``encrypted share bundle`` with 8 fields: task, round, subgroup, participant (u64),
    holder (u64), aux digest (32), then for the self seed and the mask key ``nonce (12) | ciphertext
    (66 + 16)``."""
    t, n = committee.threshold, committee.size
    sender = public_key_bytes(long_term_key)
    values = {SecretKind.SELF_SEED: shamir.split(keys.self_seed, threshold=t, holders=n, rng=rng),
              SecretKind.MASK_KEY: shamir.split(keys.mask_private_key, threshold=t, holders=n, rng=rng)}
    aux_digest = keys.aux.digest
    out = []
    for h, recipient in enumerate(committee.public_keys):
        shared = exchange(long_term_key, recipient, ConfigError, f"committee member {h}'s long-term key")
        sealed = []
        for kind in _KINDS:
            ad = _associated_data(context=keys.context, participant=keys.participant, holder=h, kind=kind,
                                  aux_digest=aux_digest, sender=sender, recipient=recipient)
            aead = ChaCha20Poly1305(hkdf(shared, salt=keys.context.digest, info=_SHARE_KEY + ad))
            nonce = rng(NONCE_BYTES)
            sealed.append(nonce + aead.encrypt(nonce, values[kind][h].to_bytes(shamir.FIELD_BYTES, "big"), ad))
        out.append(wire.pack(wire.MessageType.SHARES, [*keys.context.fields(), wire.u64(keys.participant),
                                                       wire.u64(h), aux_digest, *sealed]))
    return out


def open_shares(bundle: bytes, *, context: RoundContext, aux: AuxMessage, holder: int,
                holder_key: X25519PrivateKey, participant_public_key: bytes) -> OpenedShares:
    """Committee member ``holder`` decrypts the share bundle ``aux.participant`` addressed to it.

    ``participant_public_key`` is the participant's long-term key as registered on chain. Raises
    :class:`ShareError` if the bundle is malformed, for another round, subgroup, participant, aux
    message or holder, tampered with, or not made with the participant's registered key."""
    f = wire.unpack(bundle, wire.MessageType.SHARES, 8, ShareError)
    got_context = RoundContext.from_fields(f[:3], ShareError)
    participant = wire.unpack_u64(f[3], ShareError, "participant")
    got_holder = wire.unpack_u64(f[4], ShareError, "holder")
    if got_context != context:
        raise ShareError(f"share bundle is for {got_context}, not {context}")
    aux.check(context=context, participant=aux.participant)
    if participant != aux.participant:
        raise ShareError(f"share bundle is participant {participant}'s, expected participant {aux.participant}'s")
    if got_holder != holder:
        raise ShareError(f"share bundle is addressed to committee member {got_holder}, not {holder}")
    if f[5] != aux.digest:
        raise ShareError(f"share bundle of participant {participant} is bound to another aux message")
    recipient = public_key_bytes(holder_key)
    shared = exchange(holder_key, participant_public_key, ShareError, f"participant {participant}'s long-term key")
    opened = {}
    for kind, sealed in zip(_KINDS, f[6:], strict=True):
        if len(sealed) != NONCE_BYTES + shamir.FIELD_BYTES + 16:
            raise ShareError(f"share bundle of participant {participant}: a sealed share has {len(sealed)} bytes")
        ad = _associated_data(context=context, participant=participant, holder=holder, kind=kind,
                              aux_digest=aux.digest, sender=participant_public_key, recipient=recipient)
        aead = ChaCha20Poly1305(hkdf(shared, salt=context.digest, info=_SHARE_KEY + ad))
        try:
            plain = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
        except InvalidTag:
            raise ShareError(f"the {kind.name} share of participant {participant} for committee member {holder} does "
                             "not open: tampered, not addressed to this member, or not from the registered "
                             "participant") from None
        opened[kind] = Share(context=context, participant=participant, holder=holder, kind=kind,
                             value=_field_element(plain))
    return OpenedShares(context=context, participant=participant, holder=holder,
                        self_seed=opened[SecretKind.SELF_SEED], mask_key=opened[SecretKind.MASK_KEY])


def reveal_shares(opened: Iterable[OpenedShares], *, graph: MaskGraph, survivors: Collection[int],
                  min_survivors: int = MIN_SURVIVORS) -> list[Share]:
    """What a committee member reveals to the others once the survivors are fixed (Bonawitz's rule):
    for each survivor its self-seed share, for each dropped participant its mask-key share. Raises
    :class:`SecAggAbort` (and reveals nothing) if the round may not be unmasked (:func:`check_quorum`)."""
    surv, dropped = check_quorum(graph=graph, survivors=survivors, min_survivors=min_survivors)
    surv_set, dropped_set = set(surv), set(dropped)
    out = []
    for o in opened:
        if o.participant in surv_set:
            out.append(o.self_seed)
        elif o.participant in dropped_set:
            out.append(o.mask_key)
        else:
            raise ShareError(f"shares of participant {o.participant}, who is not in this round's mask graph")
    return out


def _verify(kind: SecretKind, secret: int, *, aux: AuxMessage) -> bytes | None:
    if secret >> (8 * shamir.SECRET_BYTES):
        return None
    raw = secret.to_bytes(shamir.SECRET_BYTES, "big")
    if kind is SecretKind.SELF_SEED:
        ok = seed_commitment(context=aux.context, participant=aux.participant, seed=raw) == aux.seed_commitment
    else:
        ok = public_key_bytes(X25519PrivateKey.from_private_bytes(raw)) == aux.mask_public_key
    return raw if ok else None


def _reconstruct(points: list[tuple[int, int, int]], *, t: int, kind: SecretKind, aux: AuxMessage) -> tuple[bytes, set[int]]:
    """The verified secret from ``(holder, x, y)`` points (sorted by holder) and the holders whose
    points are off its polynomial."""
    for tried, subset in enumerate(itertools.combinations(points, t)):
        if tried >= MAX_COMBINATIONS:
            break
        xy = [(x, y) for _, x, y in subset]
        raw = _verify(kind, shamir.interpolate_at(xy, 0), aux=aux)
        if raw is None:
            continue
        used = {h for h, _, _ in subset}
        bad = {h for h, x, y in points if h not in used and shamir.interpolate_at(xy, x) != y}
        return raw, bad
    raise ShareError(f"the {kind.name} shares of participant {aux.participant} are inconsistent: no {t} of the "
                     f"{len(points)} revealed shares reconstruct the secret its aux message commits to")


def recover_secrets(shares: Iterable[Share], *, context: RoundContext, committee: Committee,
                    aux: Mapping[int, AuxMessage], graph: MaskGraph, survivors: Collection[int],
                    min_survivors: int = MIN_SURVIVORS) -> RecoveredSecrets:
    """Reconstruct the survivors' self-mask seeds and the dropped participants' mask keys from the
    shares the committee revealed.

    :class:`SecAggAbort` if the round may not be unmasked (:func:`check_quorum`), if fewer than ``t``
    committee members contributed, or if any participant has fewer than ``t`` shares.
    :class:`ShareError` for a share of another round or subgroup, from a non-member, for a participant
    outside the graph, of the wrong kind (a survivor's mask key or a dropped participant's seed:
    Bonawitz's rule), a duplicate ``(participant, holder, kind)``, or shares that no ``t``-subset
    reconstructs into the committed secret. The result does not depend on which shares beyond ``t``
    were given."""
    surv, dropped = check_quorum(graph=graph, survivors=survivors, min_survivors=min_survivors)
    wanted = {p: SecretKind.SELF_SEED for p in surv} | {p: SecretKind.MASK_KEY for p in dropped}
    points: dict[int, dict[int, int]] = {p: {} for p in wanted}
    for s in shares:
        if not isinstance(s, Share):
            raise ShareError(f"expected Share objects, got {type(s).__name__}")
        if s.context != context:
            raise ShareError(f"a share for {s.context} given for {context}")
        if not 0 <= s.holder < committee.size:
            raise ShareError(f"a share from holder {s.holder}, who is not a member of this {committee.size}-member "
                             "committee")
        if s.participant not in wanted:
            raise ShareError(f"a share of {s.participant}, who is not in this round's mask graph")
        if s.kind is not wanted[s.participant]:
            state = "survived" if wanted[s.participant] is SecretKind.SELF_SEED else "dropped"
            raise ShareError(f"a {s.kind.name} share of participant {s.participant}, who {state}: Bonawitz's rule "
                             "reveals only survivors' self seeds and dropped participants' mask keys")
        if s.holder in points[s.participant]:
            raise ShareError(f"duplicate {s.kind.name} share of participant {s.participant} from holder {s.holder}")
        points[s.participant][s.holder] = s.value
    t = committee.threshold
    holders = set().union(*points.values()) if points else set()
    if len(holders) < t:
        raise SecAggAbort(f"only {len(holders)} of {committee.size} committee members contributed shares; "
                          f"{t} are needed")
    seeds: dict[int, bytes] = {}
    mask_keys: dict[int, bytes] = {}
    bad_holders: set[int] = set()
    for p, kind in wanted.items():
        have = points[p]
        if len(have) < t:
            raise SecAggAbort(f"only {len(have)} {kind.name} shares of participant {p}; {t} are needed")
        a = aux.get(p)
        if a is None:
            raise SecAggError(f"no aux message of participant {p}: cannot check its reconstructed secret")
        a.check(context=context, participant=p)
        pts = [(h, h + 1, have[h]) for h in sorted(have)]
        raw, bad = _reconstruct(pts, t=t, kind=kind, aux=a)
        bad_holders |= bad
        (seeds if kind is SecretKind.SELF_SEED else mask_keys)[p] = raw
    if bad_holders:
        log.warning("%s: shares from committee members %s were wrong (corrected)", context, sorted(bad_holders))
    return RecoveredSecrets(context=context, self_seeds=MappingProxyType(seeds), mask_keys=MappingProxyType(mask_keys),
                            bad_holders=tuple(sorted(bad_holders)))
