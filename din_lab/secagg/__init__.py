"""din_lab.secagg: secure aggregation for DIN subgroups (DESIGN.md section 3). This is Bonawitz et
al.'s protocol (CCS 2017), optionally with Bell et al.'s sparse SecAgg+ graph (CCS 2020). The secrets
are shared with the subgroup's evaluator committee instead of the other participants.

Pure functions over numpy and ``cryptography``: no chain, no store. The protocol layer carries the
bytes (aux messages, share bundles, masked vectors, revealed shares) through IPFS and the contracts.

A round, for subgroup participants ``P`` and an evaluator committee of ``n`` members:

1. Set-up. Each participant ``i`` runs :func:`participant_setup`. It draws a FRESH X25519 mask key
   pair ``(s_i, S_i)`` and a 256-bit self-mask seed ``b_i``, and publishes an :class:`AuxMessage` with
   ``S_i`` and ``SHA-256(b_i)`` (domain-separated). It also publishes :func:`shares_for_committee`:
   Shamir shares of ``b_i`` and ``s_i``, encrypted to each member's long-term X25519 key. The
   long-term keys (one per role, registered on chain once per task) never mask anything. They only
   authenticate and encrypt share delivery, so dropout recovery never exposes a long-term secret.
2. Masking. The mask graph (:class:`MaskGraph`) is fixed over the participants who published aux
   messages and shares. Each participant encodes its update (:class:`FixedPoint`) and publishes
   :func:`mask_update`: ``y_i = x_i + PRG(b_i) + sum_{j~i, i<j} p_ij - sum_{j~i, i>j} p_ij (mod 2^64)``
   with ``p_ij = PRG(HKDF(X25519(s_i, S_j), context, min(i,j), max(i,j)))``.
3. Unmasking. Every committee member validates the masked vectors (:func:`validate_masked`) and
   opens its bundles (:func:`open_shares`). It then reveals, by Bonawitz's rule
   (:func:`reveal_shares`), the self-seed share of each survivor and the mask-key share of each
   dropped participant, never both for anyone. Every member can then reconstruct the secrets
   (:func:`recover_secrets`) and compute the sum (:func:`unmask_sum`), and the committee votes on it.

Design decisions:

- Share holders: the EVALUATOR COMMITTEE of the subgroup, ``t = floor(n/2) + 1`` of ``n``
  (:class:`Committee`), not the other participants. No participant has to come back online to
  unmask. Privacy rests on fewer than ``t`` committee members colluding, the same honest-majority
  assumption DIN already makes for accepting subgroup results. ``t`` members together could
  reconstruct both secrets of a participant and so its individual update. Because evaluators hold
  the shares, participants have no per-round encryption key pair (Bonawitz's ``c``). Shares travel
  sealed with ChaCha20-Poly1305. The key is ``HKDF(X25519(participant long-term, member
  long-term))``, and the associated data binds task/round/subgroup, participant, holder, secret kind,
  the aux message's digest and both public keys. Anything replayed, tampered with, misaddressed or
  not from the registered participant fails with :class:`ShareError`.
- Secrets are checked when reconstructed: the seed against its commitment, the mask key against
  ``S_i``. So every honest evaluator gets the same secrets, and so the byte-identical sum, whichever
  ``t`` (or more) consistent shares it uses. A wrong share is detected, corrected if enough good
  shares remain (up to :data:`MAX_COMBINATIONS` subsets tried), and its holder reported
  (``RecoveredSecrets.bad_holders``).
- Abort rule (:func:`check_quorum`, :class:`SecAggAbort`, checked before any share is revealed):
  fewer than ``min_survivors`` (default and minimum 3, the paper's bound) survivors; the survivors'
  induced mask graph is disconnected (the committee would learn partial sums; never happens for the
  full graph); fewer than ``t`` committee members contribute shares.
- Ring: Z_(2^64) (``bits = 64``). Vectors are numpy ``uint64`` and arithmetic wraps. Fixed point:
  clip to ``[-C, C]``, scale by ``2^f``, round. The sum of ``count`` vectors is exact while
  ``count * rint(C * 2^f) <= 2^63 - 1`` (``FixedPoint.max_summands``). The defaults are ``C = 8``,
  ``f = 32``, so up to 2^28 - 1 vectors.
- PRG: AES-256-CTR keystream (``cryptography``) read as little-endian ``uint64``. Keys are derived
  with HKDF-SHA256, salted with the round context's digest. It is not a seeded numpy generator.
- Shamir: over GF(2^521 - 1) (a Mersenne prime > 2^256), shares of 32-byte secrets, 66-byte field
  elements, member ``h`` holds ``f(h + 1)``.
- SecAgg+ (``MaskGraph.harary``): a Harary graph on a ring ordered by the round seed, each
  participant masking with ``k = min(n - 1, 2 * ceil(log2 n))`` (even) neighbours: n = 10 -> 8,
  100 -> 14, 200 -> 16, 1,000 -> 20. The graph is symmetric, so the masks still cancel. Cost per
  participant drops from ``n - 1`` to ``k`` PRG expansions, and the committee's work per dropout from
  ``n - 1`` to about ``k``. Trade-off: privacy of participant ``i`` against the committee plus
  colluding participants now needs one honest neighbour out of ``k`` instead of one honest
  participant out of ``n - 1``. With a fraction ``g`` of colluders at random positions the failure
  chance is about ``g^k`` per participant (``1/3^14 ~ 2e-7`` at n = 100). And a run of ``k/2``
  consecutive dropouts on the ring disconnects the survivors' graph, which aborts the round (about
  ``n * d^(k/2)`` for dropout rate ``d``: ~2% at n = 100, d = 0.3). The full graph never aborts for
  this reason.
- Unmasking cost is dominated by regenerating masks: one AES-256-CTR stream per survivor (self mask)
  and per survivor-dropped neighbour pair. ``unmask_sum(workers=W)`` spreads that over threads
  (``cryptography`` releases the GIL) with the same bytes. ``benchmarks/secagg.py`` measures it.
- Randomness: every function that draws secrets takes ``rng: Callable[[int], bytes]``, default
  ``os.urandom``. :func:`seeded_rng` gives a reproducible stream for a seeded lab run.
- Bytes: versioned, length-prefixed, deterministic (:mod:`din_lab.secagg.wire`). Bad bytes raise
  :class:`AuxMessageError` or :class:`ShareError`. Masked vectors are numpy ``uint64`` arrays; the
  storage layer serialises them.
"""

from din_lab.secagg.context import RoundContext
from din_lab.secagg.encoding import FixedPoint
from din_lab.secagg.errors import AuxMessageError, MaskedVectorError, SecAggAbort, SecAggError, ShareError
from din_lab.secagg.graph import MIN_SURVIVORS, MaskGraph, check_quorum, secagg_plus_degree
from din_lab.secagg.keys import (
    AuxMessage,
    Committee,
    RoundKeys,
    generate_long_term_key,
    participant_setup,
    public_key_bytes,
    seed_commitment,
)
from din_lab.secagg.masking import mask_update, pairwise_mask, self_mask, unmask_sum, validate_masked
from din_lab.secagg.prg import Rng, seeded_rng
from din_lab.secagg.shares import (
    MAX_COMBINATIONS,
    OpenedShares,
    RecoveredSecrets,
    SecretKind,
    Share,
    open_shares,
    recover_secrets,
    reveal_shares,
    shares_for_committee,
)
from din_lab.secagg.simulation import SumResult, simulate_round

__all__ = [
    "MAX_COMBINATIONS",
    "MIN_SURVIVORS",
    "AuxMessage",
    "AuxMessageError",
    "Committee",
    "FixedPoint",
    "MaskGraph",
    "MaskedVectorError",
    "OpenedShares",
    "RecoveredSecrets",
    "Rng",
    "RoundContext",
    "RoundKeys",
    "SecAggAbort",
    "SecAggError",
    "SecretKind",
    "Share",
    "ShareError",
    "SumResult",
    "check_quorum",
    "generate_long_term_key",
    "mask_update",
    "open_shares",
    "pairwise_mask",
    "participant_setup",
    "public_key_bytes",
    "recover_secrets",
    "reveal_shares",
    "secagg_plus_degree",
    "seed_commitment",
    "seeded_rng",
    "self_mask",
    "shares_for_committee",
    "simulate_round",
    "unmask_sum",
    "validate_masked",
]
