"""Revealing a contribution to one's own committee only (the reward phase's side of the secure-
aggregation trade-off, DESIGN.md section 2, "known tensions").

Secure aggregation hides every individual update, yet DIN pays participants by their individual
contribution. At scoring time each participant therefore reveals its update, but only to the
evaluator committee of its own subgroup, sealed to the members' long-term X25519 keys (registered
on chain): anyone else who fetches the object from IPFS sees ciphertext.

- :func:`contribution_commitment` is published inside the masked update, before any result is
  known: a hiding commitment (SHA-256 over a fresh 256-bit salt and the encoded update). The reveal
  must open it, so a participant cannot swap in a better update after seeing how the round went.
- :func:`seal_for_committee` / :func:`open_sealed`: hybrid encryption. A fresh 256-bit content key
  encrypts the payload once (ChaCha20-Poly1305); the key is wrapped for each member under
  ``HKDF(X25519(participant long-term, member long-term))``. Associated data binds the round context,
  the participant, the member's position and both public keys (and each key wrap the body's
  digest), so a sealed reveal cannot be replayed to another round, subgroup or member, and only the
  registered participant could have made it: a member learns the content key, but cannot re-wrap
  another body for the other members without the participant's private key.

What it costs: the committee (``t`` or more members, or any one member for the revealed update)
learns the participant's final-round update, which secure aggregation hid from it during the
round. Privacy against everyone else, and of every earlier round's update, stays intact. The
committee can check the reveals collectively: when every included participant's reveal opens, the
sum of the revealed, encoded updates must equal the unmasked sum it agreed on, exactly; a mismatch
shows that someone revealed something other than it masked (the lab records it in its notes; it
does not show who: that would need the pairwise masks, whose keys would expose the neighbours).
The commitment in each masked update is what pins each reveal individually.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from din_lab.secagg import wire
from din_lab.secagg.context import RoundContext
from din_lab.secagg.errors import SecAggError
from din_lab.secagg.keys import exchange, public_key_bytes
from din_lab.secagg.prg import Rng, hkdf

__all__ = ["RevealError", "contribution_commitment", "open_sealed", "seal_for_committee"]

_NONCE = 12
_KEY = 32
_WRAP_KEY = b"din-lab/secagg/v1/reveal-wrap"
_AD = b"din-lab/secagg/v1/reveal"
_COMMIT = b"din-lab/secagg/v1/contribution"
SEALED = wire.MessageType.SEALED


class RevealError(SecAggError):
    """A sealed reveal is malformed, tampered with, not addressed to this member, from someone other
    than the registered participant, or does not open its commitment."""


def contribution_commitment(*, context: RoundContext, participant: int, encoded: bytes, salt: bytes) -> bytes:
    """SHA-256 over the round context, the participant, a 32-byte ``salt`` and the encoded update."""
    if len(salt) != 32:
        raise RevealError(f"a commitment salt has 32 bytes, got {len(salt)}")
    return hashlib.sha256(_COMMIT + wire.pack(0, [*context.fields(), wire.u64(participant), salt, encoded])).digest()


def _ad(*, context: RoundContext, participant: int, holder: int, sender: bytes, recipient: bytes,
        body: bytes = b"") -> bytes:
    """Associated data; a key wrap's also binds the body's digest, so a member (who learns the content
    key) cannot swap in another body under the others' wraps."""
    digest = hashlib.sha256(body).digest() if body else b""
    return _AD + wire.pack(0, [*context.fields(), wire.u64(participant), wire.u64(holder), sender, recipient,
                               digest])


def seal_for_committee(payload: bytes, *, context: RoundContext, participant: int, long_term_key: X25519PrivateKey,
                       committee: Sequence[bytes], rng: Rng = os.urandom) -> bytes:
    """``payload`` encrypted once, its key wrapped for every member of ``committee`` (their long-term
    X25519 public keys, in committee order). Bytes: context (3 fields), participant, sender key,
    ``nonce | ciphertext``, then one ``nonce | wrapped key`` per member."""
    if not committee:
        raise RevealError("a reveal needs at least one committee member to seal to")
    sender = public_key_bytes(long_term_key)
    key = rng(_KEY)
    nonce = rng(_NONCE)
    body_ad = _ad(context=context, participant=participant, holder=wire.U64_MAX, sender=sender, recipient=b"")
    body = nonce + ChaCha20Poly1305(key).encrypt(nonce, bytes(payload), body_ad)
    wraps = []
    for h, recipient in enumerate(committee):
        shared = exchange(long_term_key, recipient, RevealError, f"committee member {h}'s long-term key")
        ad = _ad(context=context, participant=participant, holder=h, sender=sender, recipient=recipient,
                 body=body)
        wrap_nonce = rng(_NONCE)
        aead = ChaCha20Poly1305(hkdf(shared, salt=context.digest, info=_WRAP_KEY + ad))
        wraps.append(wrap_nonce + aead.encrypt(wrap_nonce, key, ad))
    return wire.pack(SEALED, [*context.fields(), wire.u64(participant), sender, wire.u64(len(committee)), body,
                              *wraps])


def open_sealed(data: bytes, *, context: RoundContext, participant: int, holder: int,
                holder_key: X25519PrivateKey, participant_public_key: bytes) -> bytes:
    """Committee member ``holder`` opens a sealed reveal of ``participant`` (whose long-term key, as
    registered on chain, is ``participant_public_key``). :class:`RevealError` on anything wrong."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 8:
        raise RevealError("a sealed reveal: not bytes, or too short")
    data = bytes(data)
    # the field count (in the header) depends on the committee size
    fields = wire.unpack(data, SEALED, int.from_bytes(data[6:8], "big"), RevealError)
    if len(fields) < 8:
        raise RevealError(f"a sealed reveal has {len(fields)} fields, at least 8 expected")
    got_context = RoundContext.from_fields(fields[:3], RevealError)
    if got_context != context:
        raise RevealError(f"a sealed reveal for {got_context}, not {context}")
    got_participant = wire.unpack_u64(fields[3], RevealError, "participant")
    if got_participant != participant:
        raise RevealError(f"a sealed reveal of participant {got_participant}, expected {participant}")
    if fields[4] != participant_public_key:
        raise RevealError(f"a sealed reveal of participant {participant} not made with its registered key")
    members = wire.unpack_u64(fields[5], RevealError, "committee size")
    if members != len(fields) - 7:
        raise RevealError(f"a sealed reveal says {members} members but wraps the key {len(fields) - 7} times")
    if not 0 <= holder < members:
        raise RevealError(f"committee member {holder} is not among the {members} this reveal is sealed to")
    recipient = public_key_bytes(holder_key)
    shared = exchange(holder_key, participant_public_key, RevealError, f"participant {participant}'s long-term key")
    wrap = fields[7 + holder]
    body = fields[6]
    ad = _ad(context=context, participant=participant, holder=holder, sender=participant_public_key,
             recipient=recipient, body=body)
    if len(wrap) != _NONCE + _KEY + 16 or len(body) < _NONCE + 16:
        raise RevealError(f"a sealed reveal of participant {participant}: malformed ciphertext")
    try:
        key = ChaCha20Poly1305(hkdf(shared, salt=context.digest, info=_WRAP_KEY + ad)).decrypt(
            wrap[:_NONCE], wrap[_NONCE:], ad)
        body_ad = _ad(context=context, participant=participant, holder=wire.U64_MAX, sender=participant_public_key,
                      recipient=b"")
        return ChaCha20Poly1305(key).decrypt(body[:_NONCE], body[_NONCE:], body_ad)
    except InvalidTag:
        raise RevealError(f"the reveal of participant {participant} does not open for committee member {holder}: "
                          "tampered, not addressed to this member, or not from the registered participant") from None
