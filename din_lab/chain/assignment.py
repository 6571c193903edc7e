"""The contract's assignment, recomputed off chain: anyone can check who is in which subgroup
and committee from the round seed (DINTask.drawRound, lib/Shuffle.sol).

Swap-or-not shuffle (90 rounds, as Ethereum's consensus layer uses for committees):
participant ``p`` sits at position ``forward(p)``; subgroup ``g`` holds positions
``[g*size, (g+1)*size)`` (the last subgroup also takes the remainder);
the committees walk the task's frozen evaluator list in shuffled order (:func:`draw_committee`).
The round seed is ``keccak(abi.encode(previous seed (genesis digest for round 0), task, round,
blockhash(seed block)))``: the hash of a block mined after the transaction that scheduled the draw.
"""

from __future__ import annotations

from functools import lru_cache

from eth_abi import encode as abi_encode
from eth_utils import keccak

ROUNDS = 90


@lru_cache(maxsize=64)
def _pivots(seed: bytes, count: int) -> tuple[int, ...]:
    return tuple(int.from_bytes(keccak(seed + bytes([r])), "big") % count for r in range(ROUNDS))


@lru_cache(maxsize=4096)
def _source(seed: bytes, r: int, chunk: int) -> bytes:
    return keccak(seed + bytes([r]) + chunk.to_bytes(4, "big"))


def _bit(seed: bytes, r: int, position: int) -> int:
    source = _source(bytes(seed), r, position // 256)
    return (source[(position % 256) // 8] >> (position % 8)) & 1


def _round(index: int, count: int, seed: bytes, r: int, pivot: int) -> int:
    flip = (pivot + count - index) % count
    position = max(index, flip)
    return flip if _bit(seed, r, position) else index


def forward(index: int, count: int, seed: bytes) -> int:
    """Where ``index`` moves to (Shuffle.forward)."""
    pivots = _pivots(bytes(seed), count)
    for r in range(ROUNDS):
        index = _round(index, count, seed, r, pivots[r])
    return index


def inverse(position: int, count: int, seed: bytes) -> int:
    """Which index moves to ``position`` (Shuffle.inverse)."""
    pivots = _pivots(bytes(seed), count)
    for r in reversed(range(ROUNDS)):
        position = _round(position, count, seed, r, pivots[r])
    return position


def num_subgroups(participants: int, subgroup_size: int) -> int:
    return participants // subgroup_size


def subgroup_bounds(subgroup: int, *, participants: int, subgroup_size: int) -> tuple[int, int]:
    groups = num_subgroups(participants, subgroup_size)
    start = subgroup * subgroup_size
    end = participants if subgroup + 1 == groups else start + subgroup_size
    return start, end


def subgroup_members(subgroup: int, *, seed: bytes, participants: int, subgroup_size: int) -> list[int]:
    """Participant indexes of ``subgroup``, in position order (DINTask.subgroupMembers)."""
    start, end = subgroup_bounds(subgroup, participants=participants, subgroup_size=subgroup_size)
    return [inverse(q, participants, seed) for q in range(start, end)]


def subgroup_of(participant: int, *, seed: bytes, participants: int, subgroup_size: int) -> int:
    groups = num_subgroups(participants, subgroup_size)
    return min(forward(participant, participants, seed) // subgroup_size, groups - 1)


def committee_seed(seed: bytes) -> bytes:
    return keccak(abi_encode(["bytes32", "string"], [bytes(seed), "committee"]))


def dispute_seed(seed: bytes, subgroup: int, entropy: bytes) -> bytes:
    """keccak(abi.encode(round seed, subgroup, hash of the dispute's seed block, "dispute"))."""
    return keccak(abi_encode(["bytes32", "uint256", "bytes32", "string"], [bytes(seed), subgroup, bytes(entropy),
                                                                           "dispute"]))


def draw_committee(*, evaluators: list[str], size: int, seed: bytes, offset: int = 0,
                   skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """DINTask._drawCommittee: the candidates are the task's frozen evaluator list (opt-in order)
    without ``skip`` (the slashed; for a dispute also the first committee); seat ``k`` is
    ``candidates[forward((offset + k) mod m, m, seed)]`` for ``k < min(size, m)``. A round's
    committee ``g`` uses ``offset = g * size`` and :func:`committee_seed`; a dispute ``offset = 0``
    and :func:`dispute_seed`."""
    candidates = [ev for ev in evaluators if ev not in skip]
    m = len(candidates)
    return [candidates[forward((offset + k) % m, m, seed)] for k in range(min(size, m))]
