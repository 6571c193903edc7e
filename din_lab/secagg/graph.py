"""Who masks with whom: :class:`MaskGraph`, the full graph (SecAgg) or a sparse Harary graph
(SecAgg+), and :func:`check_quorum`, the rule deciding whether a round may be unmasked.

SecAgg+ degree (:func:`secagg_plus_degree`): ``k = min(n - 1, 2 * ceil(log2 n))`` rounded up to an
even number (a Harary graph with even ``k`` joins each node to the ``k / 2`` nearest on each side of
a ring). The ring order is a permutation of the participants fixed by the round seed (sort by
``SHA-256(domain || seed || id)``), which nobody controls once participants are fixed, so a
participant's neighbours are a random set. n = 10 -> k = 8 (of 9), n = 100 -> 14, n = 200 -> 16,
n = 1,000 -> 20.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from din_lab.errors import ConfigError
from din_lab.secagg import wire
from din_lab.secagg.errors import MaskedVectorError, SecAggAbort

__all__ = ["MIN_SURVIVORS", "MaskGraph", "check_quorum", "secagg_plus_degree"]

MIN_SURVIVORS = 3  # the paper's bound: a sum of fewer than 3 updates reveals them to each other
_GRAPH_DOMAIN = b"din-lab/secagg/v1/graph"


def secagg_plus_degree(n: int) -> int:
    """SecAgg+ neighbours per participant for ``n`` participants: ``min(n - 1, 2 * ceil(log2 n))``,
    rounded up to even below ``n - 1``."""
    if n <= 1:
        return 0
    k = 2 * math.ceil(math.log2(n))
    return min(n - 1, k + (k % 2))


def _ids(participants: Iterable[int]) -> tuple[int, ...]:
    ids = []
    for p in participants:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= wire.U64_MAX:
            raise ConfigError(f"participant indices are integers in [0, 2^64), got {p!r}")
        ids.append(p)
    if len(set(ids)) != len(ids):
        raise ConfigError("participant indices must be unique")
    if not ids:
        raise ConfigError("a mask graph needs at least one participant")
    return tuple(sorted(ids))


@dataclass(frozen=True, kw_only=True)
class MaskGraph:
    """An undirected graph over the participants of a subgroup: ``i`` and ``j`` share a pairwise
    mask iff they are neighbours. Symmetric by construction, so the masks cancel in the sum. Build
    it with :meth:`full` or :meth:`harary`; every party derives the same graph from the same
    participants and seed."""

    participants: tuple[int, ...]
    degree: int
    seed: bytes | None = None
    adjacency: Mapping[int, tuple[int, ...]] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.adjacency) != set(self.participants):
            raise ConfigError("a MaskGraph needs an adjacency entry for every participant: build it with "
                              "MaskGraph.full or MaskGraph.harary")
        edges = {(p, q) for p, nbrs in self.adjacency.items() for q in nbrs}
        if any(p == q or (q, p) not in edges for p, q in edges):
            raise ConfigError("a mask graph must be symmetric and loop-free, or the masks do not cancel")

    @classmethod
    def full(cls, participants: Iterable[int]) -> MaskGraph:
        """Every pair masks (SecAgg): n - 1 neighbours each."""
        ids = _ids(participants)
        adj = {p: tuple(q for q in ids if q != p) for p in ids}
        return cls(participants=ids, degree=len(ids) - 1, adjacency=MappingProxyType(adj))

    @classmethod
    def harary(cls, participants: Iterable[int], *, seed: bytes, degree: int | None = None) -> MaskGraph:
        """SecAgg+: a Harary graph H(k, n) on the ring of participants ordered by the round ``seed``;
        ``degree`` defaults to :func:`secagg_plus_degree` (odd values are rounded up to even; at
        ``n - 1`` or more it is the full graph)."""
        ids = _ids(participants)
        if not isinstance(seed, bytes | bytearray) or not seed:
            raise ConfigError("the SecAgg+ graph needs a non-empty bytes seed (the round seed)")
        seed = bytes(seed)
        n = len(ids)
        k = secagg_plus_degree(n) if degree is None else degree
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"degree must be a non-negative integer, got {k!r}")
        k += k % 2
        if k >= n - 1:
            g = cls.full(ids)
            return cls(participants=g.participants, degree=g.degree, seed=seed, adjacency=g.adjacency)
        order = sorted(ids, key=lambda p: hashlib.sha256(_GRAPH_DOMAIN + seed + wire.u64(p)).digest())
        half = k // 2
        adj = {}
        for pos, p in enumerate(order):
            adj[p] = tuple(sorted(order[(pos + o) % n] for o in range(-half, half + 1) if o != 0))
        return cls(participants=ids, degree=k, seed=seed, adjacency=MappingProxyType(adj))

    @property
    def is_full(self) -> bool:
        return self.degree >= len(self.participants) - 1

    def neighbours(self, participant: int) -> tuple[int, ...]:
        try:
            return self.adjacency[participant]
        except KeyError:
            raise ConfigError(f"participant {participant} is not in this mask graph") from None

    def components(self, among: Collection[int]) -> list[tuple[int, ...]]:
        """The connected components of the subgraph induced by ``among`` (sorted, deterministic)."""
        members = set(among)
        seen: set[int] = set()
        out = []
        for start in sorted(members):
            if start in seen:
                continue
            comp = [start]
            seen.add(start)
            queue = deque([start])
            while queue:
                for q in self.adjacency[queue.popleft()]:
                    if q in members and q not in seen:
                        seen.add(q)
                        comp.append(q)
                        queue.append(q)
            out.append(tuple(sorted(comp)))
        return out


def check_quorum(*, graph: MaskGraph, survivors: Collection[int],
                 min_survivors: int = MIN_SURVIVORS) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(survivors, dropped)``, sorted, if the round may be unmasked; else :class:`SecAggAbort`.

    The committee learns exactly the sum over each connected component of the survivors' induced
    mask graph, so a round proceeds only if at least ``min_survivors`` (>= 3) participants survive
    and the survivors' graph is connected (always, for the full graph). A survivor outside the graph
    raises :class:`MaskedVectorError`."""
    if isinstance(min_survivors, bool) or not isinstance(min_survivors, int) or min_survivors < MIN_SURVIVORS:
        raise ConfigError(f"min_survivors must be an integer >= {MIN_SURVIVORS} (the paper's privacy bound)")
    surv = set(survivors)
    outsiders = surv.difference(graph.participants)
    if outsiders:
        raise MaskedVectorError(f"masked vectors from {sorted(outsiders)[:5]}, who are not in this round's mask graph")
    if len(surv) < min_survivors:
        raise SecAggAbort(f"only {len(surv)} of {len(graph.participants)} participants survived; at least "
                          f"{min_survivors} must, or the sum would reveal individual updates")
    comps = graph.components(surv)
    if len(comps) > 1:
        raise SecAggAbort(f"the survivors' mask graph (degree {graph.degree}) fell apart into {len(comps)} components "
                          f"(sizes {sorted(map(len, comps))}): unmasking would reveal partial sums")
    dropped = tuple(p for p in graph.participants if p not in surv)
    return tuple(sorted(surv)), dropped
