"""The final model's hold (paper 5.1 step 5d, 5.2 step 6b): the final model is the owner's only
once rewards have settled.

Each committee of the final round stores its subgroup's accepted result sealed, by convergent
encryption: the key is the hash of the result's own bytes, so every honest member, having computed
the same sum, derives the same key and seals to the same bytes, and the committee still agrees by
CID. What the committee votes on is a 128-byte *envelope* (``din_lab.chain.din.held_envelope``)
naming the sealed object and the key's keccak hash; the contract accepts a key for it only after
rewards settle (``releaseFinalModel``), and slashes the result's backers if none of them releases it
by the deadline (``slashWithholders``). Then anyone opens every sealed result with the keys on
chain, rebuilds the final model and checks it against the owner's.

The sealed object keeps in the clear only what the participants need before settlement (who is in
the sum, the sample count); the sum itself is encrypted (ChaCha20-Poly1305, the header as
associated data). Convergent encryption lets anyone who can guess a plaintext confirm the guess: a
sum of trained updates cannot be guessed. Members of a committee know their own subgroup's sum, as
they always do when they aggregate; the hold keeps the whole final model from everyone, the owner
included, until the reward phase is over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from din_lab.errors import CryptoError

__all__ = ["HELD_KIND", "HeldHeader", "held_header", "open_sealed", "seal_result"]

HELD_KIND = "din-lab/held-result/v1"
_MAGIC = b"DINHELD1"
_KEY_LABEL = b"din-lab/final-model-key/v1"
_NONCE = bytes(12)  # one key per plaintext (the key is its hash): a fixed nonce never repeats under a key


@dataclass(frozen=True)
class HeldHeader:
    """The public part of a sealed result: which members' updates are in the sum, and its weight."""

    round: int
    subgroup: int
    samples: int
    included: tuple[str, ...]
    rejected: tuple[str, ...]


def final_model_key(result_bytes: bytes) -> bytes:
    """The convergent key of a result: every member who computed these bytes derives it."""
    return hashlib.sha256(_KEY_LABEL + result_bytes).digest()


def seal_result(result_bytes: bytes, *, header: HeldHeader) -> tuple[bytes, bytes]:
    """``(sealed object, key)`` for a final-round result (``codec.encode_result`` bytes):
    deterministic, so equal results seal to equal bytes."""
    head = json.dumps({"kind": HELD_KIND, "round": header.round, "subgroup": header.subgroup,
                       "samples": header.samples, "included": list(header.included),
                       "rejected": list(header.rejected)}, sort_keys=True, separators=(",", ":")).encode()
    key = final_model_key(result_bytes)
    body = ChaCha20Poly1305(key).encrypt(_NONCE, result_bytes, head)
    return _MAGIC + len(head).to_bytes(4, "big") + head + body, key


def _split(sealed: bytes) -> tuple[bytes, bytes]:
    if len(sealed) < 12 or sealed[:8] != _MAGIC:
        raise CryptoError("not a sealed final-round result")
    n = int.from_bytes(sealed[8:12], "big")
    if len(sealed) < 12 + n + 16:
        raise CryptoError("a sealed final-round result is truncated")
    return sealed[12:12 + n], sealed[12 + n:]


def held_header(sealed: bytes) -> HeldHeader:
    """The public header of a sealed result (a CryptoError when it is not one)."""
    head, _ = _split(sealed)
    try:
        meta = json.loads(head)
        if meta.get("kind") != HELD_KIND:
            raise ValueError(meta.get("kind"))
        return HeldHeader(round=int(meta["round"]), subgroup=int(meta["subgroup"]), samples=int(meta["samples"]),
                          included=tuple(str(a) for a in meta["included"]),
                          rejected=tuple(str(a) for a in meta["rejected"]))
    except (ValueError, KeyError, TypeError) as e:
        raise CryptoError(f"a sealed final-round result's header is malformed: {e}") from e


def open_sealed(sealed: bytes, key: bytes) -> bytes:
    """The result bytes inside ``sealed``, checked: the key opens it and is the hash of what it
    opens (a key that does not belong to these bytes is refused with a CryptoError)."""
    head, body = _split(sealed)
    try:
        result_bytes = ChaCha20Poly1305(bytes(key)).decrypt(_NONCE, body, head)
    except (InvalidTag, ValueError) as e:
        raise CryptoError("the key does not open this sealed result") from e
    if final_model_key(result_bytes) != bytes(key):
        raise CryptoError("the sealed result is not the one this key was derived from")
    return result_bytes
