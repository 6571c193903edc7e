"""Masking and unmasking in Z_(2^64) (``uint64`` vectors) or Z_(2^32) (``uint32``): the ring is the
dtype of the encoded vector (:class:`~din_lab.secagg.encoding.FixedPoint` ``bits``).

Participant ``i`` with encoded update ``x_i`` publishes::

    y_i = x_i + PRG(b_i) + sum_{j in N(i), i < j} p_ij - sum_{j in N(i), i > j} p_ij   (mod 2^k)

with ``p_ij = PRG(HKDF(ECDH(s_i, S_j), salt=context digest, info=domain|min(i,j)|max(i,j)))``
(``s_i`` its fresh round mask key, ``S_j`` neighbour ``j``'s published round public key), and the
self mask keyed by ``HKDF(b_i, salt=context digest, info=domain|i)``. The pairwise masks cancel in
the sum over any set closed under the graph; :func:`unmask_sum` removes the survivors' self masks
and the pairwise masks between survivors and dropped participants.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from din_lab.secagg import wire
from din_lab.secagg.context import RoundContext
from din_lab.secagg.errors import AuxMessageError, MaskedVectorError, SecAggError
from din_lab.secagg.graph import MIN_SURVIVORS, MaskGraph, check_quorum
from din_lab.secagg.keys import AuxMessage, RoundKeys, exchange
from din_lab.secagg.prg import MaskStream, expand, hkdf, ring_dtype
from din_lab.secagg.shares import RecoveredSecrets

__all__ = ["mask_update", "pairwise_mask", "self_mask", "unmask_sum", "validate_masked"]

log = logging.getLogger(__name__)

_SELF = b"din-lab/secagg/v1/self-mask"
_PAIR = b"din-lab/secagg/v1/pairwise-mask"


def _pair_key(shared: bytes, *, context: RoundContext, a: int, b: int) -> bytes:
    lo, hi = (a, b) if a < b else (b, a)
    return hkdf(shared, salt=context.digest, info=_PAIR + wire.u64(lo) + wire.u64(hi))


def _self_key(*, context: RoundContext, participant: int, seed: bytes) -> bytes:
    return hkdf(seed, salt=context.digest, info=_SELF + wire.u64(participant))


def _check_dimension(dimension: int) -> None:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 0:
        raise MaskedVectorError(f"dimension must be a non-negative integer, got {dimension!r}")


def _ring(dtype: npt.DTypeLike) -> np.dtype:
    try:
        return ring_dtype(dtype)
    except (TypeError, ValueError) as e:
        raise MaskedVectorError(str(e)) from e


def self_mask(*, context: RoundContext, participant: int, seed: bytes, dimension: int,
              dtype: npt.DTypeLike = np.uint64) -> npt.NDArray[np.uint64]:
    """``PRG(b_i)``: participant ``participant``'s self mask from its 32-byte seed."""
    _check_dimension(dimension)
    return expand(_self_key(context=context, participant=participant, seed=seed), dimension, _ring(dtype))


def pairwise_mask(*, context: RoundContext, own: int, own_private_key: bytes, peer: int, peer_public_key: bytes,
                  dimension: int, dtype: npt.DTypeLike = np.uint64) -> npt.NDArray[np.uint64]:
    """The pairwise mask as ``own`` adds it to its vector: ``+p`` if ``own < peer``, else ``-p`` (mod 2^64).
    Either end computes the same ``p`` from its own private key and the other's public key."""
    _check_dimension(dimension)
    if own == peer:
        raise SecAggError("a participant has no pairwise mask with itself")
    shared = exchange(X25519PrivateKey.from_private_bytes(own_private_key), peer_public_key, AuxMessageError,
                      f"mask key of participant {peer}")
    p = expand(_pair_key(shared, context=context, a=own, b=peer), dimension, _ring(dtype))
    return p.copy() if own < peer else np.negative(p)


def mask_update(encoded: npt.NDArray[np.uint64], *, keys: RoundKeys, peers: Mapping[int, AuxMessage],
                graph: MaskGraph) -> npt.NDArray[np.uint64]:
    """The masked update ``y_i`` of ``keys.participant`` (a new array of ``encoded``'s dtype).

    ``encoded`` is the fixed-point encoded update (1-D ``uint64``, or ``uint32`` for Z_(2^32));
    ``peers`` maps participant index
    to its aux message (at least every neighbour of ``keys.participant`` in ``graph``)."""
    x = np.asarray(encoded)
    if x.dtype not in (np.uint64, np.uint32) or x.ndim != 1:
        raise MaskedVectorError(f"mask_update expects a 1-D uint64 or uint32 encoded vector, got {x.dtype} with shape "
                                f"{x.shape}")
    me = keys.participant
    context = keys.context
    neighbours = graph.neighbours(me)
    private = X25519PrivateKey.from_private_bytes(keys.mask_private_key)
    y = x.copy()
    stream = MaskStream(x.size, x.dtype)
    np.add(y, stream.generate(_self_key(context=context, participant=me, seed=keys.self_seed)), out=y)
    for j in neighbours:
        aux = peers.get(j)
        if aux is None:
            raise AuxMessageError(f"participant {me} has no aux message (mask public key) from its neighbour {j}")
        aux.check(context=context, participant=j)
        shared = exchange(private, aux.mask_public_key, AuxMessageError, f"mask key of participant {j}")
        p = stream.generate(_pair_key(shared, context=context, a=me, b=j))
        if me < j:
            np.add(y, p, out=y)
        else:
            np.subtract(y, p, out=y)
    return y


def _accumulate(jobs: Sequence[tuple[bytes, bool]], dimension: int, dtype: np.dtype) -> npt.NDArray[np.uint64]:
    """Sum (mod 2^k) of the masks ``jobs`` describe, each with its sign: ``+PRG(key)`` if the flag
    is set, else ``-PRG(key)``."""
    acc = np.zeros(dimension, dtype=dtype)
    stream = MaskStream(dimension, dtype)
    for key, added in jobs:
        if added:
            np.add(acc, stream.generate(key), out=acc)
        else:
            np.subtract(acc, stream.generate(key), out=acc)
    return acc


def _regenerate(jobs: Sequence[tuple[bytes, bool]], *, dimension: int, workers: int,
                dtype: np.dtype) -> npt.NDArray[np.uint64]:
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        return _accumulate(jobs, dimension, dtype)
    chunks = [jobs[w::workers] for w in range(workers)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="secagg-unmask") as pool:
        parts = list(pool.map(_accumulate, chunks, [dimension] * workers, [dtype] * workers))
    total = parts[0]
    for part in parts[1:]:
        np.add(total, part, out=total)
    return total


def validate_masked(masked: Mapping[int, npt.NDArray[np.uint64]], *, dimension: int, graph: MaskGraph,
                    dtype: npt.DTypeLike | None = None) -> np.dtype | None:
    """:class:`MaskedVectorError` unless every masked vector is a 1-D array of length ``dimension``
    from a participant of ``graph``, all of one ring dtype (``uint64``, or ``uint32``; ``dtype`` if
    given). Returns that dtype (``None`` for no vectors). The protocol runs this before any share is
    revealed."""
    _check_dimension(dimension)
    expected = None if dtype is None else _ring(dtype)
    members = set(graph.participants)
    for i, y in masked.items():
        if i not in members:
            raise MaskedVectorError(f"a masked vector from {i!r}, who is not in this round's mask graph")
        if not isinstance(y, np.ndarray):
            raise MaskedVectorError(f"the masked vector of participant {i} is a {type(y).__name__}, not a numpy array")
        if expected is None and y.dtype in (np.uint64, np.uint32):
            expected = y.dtype
        if y.dtype != expected:
            raise MaskedVectorError(f"the masked vector of participant {i} has dtype {y.dtype}, not "
                                    f"{expected.name if expected is not None else 'uint64 or uint32'}")
        if y.shape != (dimension,):
            raise MaskedVectorError(f"the masked vector of participant {i} has shape {y.shape}, not ({dimension},)")
    return expected


def unmask_sum(masked: Mapping[int, npt.NDArray[np.uint64]], *, context: RoundContext, aux: Mapping[int, AuxMessage],
               graph: MaskGraph, recovered: RecoveredSecrets, dimension: int,
               min_survivors: int = MIN_SURVIVORS, workers: int = 1) -> npt.NDArray[np.uint64]:
    """The sum (mod 2^k) of the survivors' encoded updates, in the ring (dtype) of their masked vectors.

    Survivors are the keys of ``masked``; everyone else in ``graph`` dropped. ``recovered`` (from
    :func:`~din_lab.secagg.shares.recover_secrets`) holds the survivors' self-mask seeds and the dropped
    participants' mask keys. The result depends only on the inputs (mod-2^64 sums do not depend on
    order), so every honest evaluator gets the same bytes, whatever ``workers`` (threads regenerating
    the masks; ``cryptography`` releases the GIL while it runs AES)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SecAggError(f"workers must be a positive integer, got {workers!r}")
    dtype = validate_masked(masked, dimension=dimension, graph=graph)
    survivors, dropped = check_quorum(graph=graph, survivors=masked.keys(), min_survivors=min_survivors)
    if recovered.context != context:
        raise SecAggError(f"recovered secrets are for {recovered.context}, not {context}")
    seeds, mask_keys = recovered.self_seeds, recovered.mask_keys
    if set(seeds) != set(survivors) or set(mask_keys) != set(dropped):
        raise SecAggError("recovered secrets must be exactly the survivors' self-mask seeds and the dropped "
                          "participants' mask keys (Bonawitz's rule: never both for anyone)")
    total = np.zeros(dimension, dtype=dtype)
    for i in survivors:
        np.add(total, masked[i], out=total)
    # what to take back out, as (PRG key, was added): survivors' self masks, then the pairwise masks
    # between each dropped participant and its surviving neighbours (survivor i added +p if i < j)
    jobs: list[tuple[bytes, bool]] = [
        (_self_key(context=context, participant=i, seed=seeds[i]), True) for i in survivors]
    surviving = set(survivors)
    for j in dropped:
        private = X25519PrivateKey.from_private_bytes(mask_keys[j])
        for i in graph.neighbours(j):
            if i not in surviving:
                continue
            peer = aux.get(i)
            if peer is None:
                raise AuxMessageError(f"no aux message (mask public key) of survivor {i}")
            peer.check(context=context, participant=i)
            shared = exchange(private, peer.mask_public_key, AuxMessageError, f"mask key of participant {i}")
            jobs.append((_pair_key(shared, context=context, a=i, b=j), i < j))
    np.subtract(total, _regenerate(jobs, dimension=dimension, workers=workers, dtype=dtype), out=total)
    removed = len(jobs) - len(survivors)
    log.debug("%s: unmasked %d survivors, %d dropped, %d pairwise masks regenerated", context, len(survivors),
              len(dropped), removed)
    return total
