"""Revealing a contribution to one's committee only (din_lab.secagg.reveal): sealed to each member,
opened by nobody else, bound to its round, participant and sender; commitments bind the update."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.secagg import RoundContext, generate_long_term_key, public_key_bytes, seeded_rng
from din_lab.secagg.reveal import RevealError, contribution_commitment, open_sealed, seal_for_committee

CONTEXT = RoundContext(task="0xtask", round=2, subgroup=1)


def _parties(members: int, seed: int = 0):
    rng = seeded_rng(seed)
    keys = [generate_long_term_key(rng=rng) for _ in range(members)]
    sender = generate_long_term_key(rng=rng)
    return rng, keys, sender


@settings(max_examples=25, deadline=None)
@given(payload=st.binary(max_size=4096), members=st.integers(1, 9), seed=st.integers(0, 2**32))
def test_every_member_and_only_a_member_opens_it(payload: bytes, members: int, seed: int) -> None:
    rng, keys, sender = _parties(members, seed)
    sealed = seal_for_committee(payload, context=CONTEXT, participant=3, long_term_key=sender,
                                committee=[public_key_bytes(k) for k in keys], rng=rng)
    assert len(payload) < 16 or payload not in sealed  # ciphertext, not the payload
    for h, key in enumerate(keys):
        assert open_sealed(sealed, context=CONTEXT, participant=3, holder=h, holder_key=key,
                           participant_public_key=public_key_bytes(sender)) == payload
    outsider = generate_long_term_key(rng=rng)
    with pytest.raises(RevealError):
        open_sealed(sealed, context=CONTEXT, participant=3, holder=0, holder_key=outsider,
                    participant_public_key=public_key_bytes(sender))


def test_bound_to_round_participant_sender_and_slot() -> None:
    rng, keys, sender = _parties(3)
    committee = [public_key_bytes(k) for k in keys]
    sealed = seal_for_committee(b"update", context=CONTEXT, participant=3, long_term_key=sender, committee=committee,
                                rng=rng)
    ok = dict(context=CONTEXT, participant=3, holder=1, holder_key=keys[1],
              participant_public_key=public_key_bytes(sender))
    assert open_sealed(sealed, **ok) == b"update"
    other_round = RoundContext(task="0xtask", round=3, subgroup=1)
    impostor = generate_long_term_key(rng=rng)
    for bad in (dict(context=other_round), dict(participant=4), dict(holder=0), dict(holder=3),
                dict(participant_public_key=public_key_bytes(impostor))):
        with pytest.raises(RevealError):
            open_sealed(sealed, **{**ok, **bad})
    # a sealed reveal made by someone else under the participant's name does not open
    forged = seal_for_committee(b"better update", context=CONTEXT, participant=3, long_term_key=impostor,
                                committee=committee, rng=rng)
    with pytest.raises(RevealError):
        open_sealed(forged, **ok)


@pytest.mark.parametrize("position", [20, 60, -3])
def test_tampered_bytes_fail_to_open(position: int) -> None:
    rng, keys, sender = _parties(3)
    sealed = bytearray(seal_for_committee(b"x" * 100, context=CONTEXT, participant=0, long_term_key=sender,
                                          committee=[public_key_bytes(k) for k in keys], rng=rng))
    sealed[position] ^= 0x01
    with pytest.raises(RevealError):
        open_sealed(bytes(sealed), context=CONTEXT, participant=0, holder=2, holder_key=keys[2],
                    participant_public_key=public_key_bytes(sender))


@pytest.mark.parametrize("data", [b"", b"DNSA", b"not a message at all", 42])
def test_malformed_input(data) -> None:
    rng, keys, sender = _parties(1)
    with pytest.raises(RevealError):
        open_sealed(data, context=CONTEXT, participant=0, holder=0, holder_key=keys[0],
                    participant_public_key=public_key_bytes(sender))
    with pytest.raises(RevealError):
        seal_for_committee(b"x", context=CONTEXT, participant=0, long_term_key=sender, committee=[], rng=rng)


def test_commitment_binds_update_salt_and_round() -> None:
    salt = bytes(range(32))
    c = contribution_commitment(context=CONTEXT, participant=1, encoded=b"abc", salt=salt)
    assert c == contribution_commitment(context=CONTEXT, participant=1, encoded=b"abc", salt=salt)
    assert c != contribution_commitment(context=CONTEXT, participant=1, encoded=b"abd", salt=salt)
    assert c != contribution_commitment(context=CONTEXT, participant=2, encoded=b"abc", salt=salt)
    assert c != contribution_commitment(context=CONTEXT, participant=1, encoded=b"abc", salt=bytes(32))
    with pytest.raises(RevealError):
        contribution_commitment(context=CONTEXT, participant=1, encoded=b"abc", salt=b"short")


def test_a_member_cannot_swap_the_body_under_the_other_members_wraps() -> None:
    """Every member learns the content key; the key wraps bind the body's digest, so a member that
    re-encrypts another body with that key still cannot make the others accept it."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from din_lab.secagg import wire
    from din_lab.secagg.reveal import _ad

    _, keys, sender = _parties(3)
    sealed = seal_for_committee(b"honest update", context=CONTEXT, participant=0, long_term_key=sender,
                                committee=[public_key_bytes(k) for k in keys], rng=seeded_rng(5))
    content_key = seeded_rng(5)(32)  # what member 0 learns when it opens its wrap
    fields = wire.unpack(sealed, wire.MessageType.SEALED, 10, RevealError)
    nonce = bytes(12)
    body_ad = _ad(context=CONTEXT, participant=0, holder=wire.U64_MAX, sender=public_key_bytes(sender), recipient=b"")
    fields[6] = nonce + ChaCha20Poly1305(content_key).encrypt(nonce, b"forged update", body_ad)
    forged = wire.pack(wire.MessageType.SEALED, fields)
    for h in (1, 2):
        with pytest.raises(RevealError):
            open_sealed(forged, context=CONTEXT, participant=0, holder=h, holder_key=keys[h],
                        participant_public_key=public_key_bytes(sender))
