"""One secure-aggregation round end to end in one process (:func:`simulate_round`): what tests,
benchmarks and notebooks use before the protocol layer wires the same functions into a lab run."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from din_lab.errors import ConfigError
from din_lab.secagg.context import RoundContext
from din_lab.secagg.encoding import FixedPoint
from din_lab.secagg.graph import MIN_SURVIVORS, MaskGraph, check_quorum
from din_lab.secagg.keys import AuxMessage, Committee, generate_long_term_key, participant_setup, public_key_bytes
from din_lab.secagg.masking import mask_update, unmask_sum, validate_masked
from din_lab.secagg.prg import seeded_rng, system_rng
from din_lab.secagg.shares import open_shares, recover_secrets, reveal_shares, shares_for_committee

__all__ = ["SumResult", "simulate_round"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SumResult:
    """The outcome of :func:`simulate_round`.

    ``sum``: the unmasked sum of the survivors' encoded updates (the ring's dtype, ``uint64`` or
    ``uint32``); ``decoded``: its floats;
    ``expected``: the plain fixed-point sum of the same encodings, computed without any masking (the
    reference: ``exact`` says whether they are equal). ``timings`` (seconds): ``setup``, ``shares``
    and ``mask`` per participant (means), ``open`` per committee member (decrypting its n bundles,
    mean), ``recover`` (reconstruction and verification), ``unmask`` (mask regeneration and sum), and
    ``evaluator`` = ``open + recover + unmask``, one evaluator's whole unmasking work."""

    sum: npt.NDArray[np.uint64] = field(repr=False)
    decoded: npt.NDArray[np.float64] = field(repr=False)
    expected: npt.NDArray[np.uint64] = field(repr=False)
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    committee_size: int
    threshold: int
    graph_degree: int
    bad_holders: tuple[int, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return bool(np.array_equal(self.sum, self.expected))


def simulate_round(vectors: Sequence[npt.ArrayLike], *, committee_size: int = 3, dropouts: Collection[int] = (),
                   offline_evaluators: Collection[int] = (), secagg_plus: bool = False, degree: int | None = None,
                   seed: int | bytes | str | None = 0, fixed_point: FixedPoint | None = None,
                   min_survivors: int = MIN_SURVIVORS, context: RoundContext | None = None,
                   workers: int = 1) -> SumResult:
    """Run one round for participants ``0..n-1`` holding ``vectors`` (equal-length 1-D floats).

    Every participant sets up, publishes its aux message and share bundles; the participants in
    ``dropouts`` then never send their masked update; the committee members in
    ``offline_evaluators`` never open or reveal their shares. One online evaluator reconstructs and
    unmasks (regenerating masks on ``workers`` threads). ``seed`` makes every key and nonce
    reproducible (``None``: ``os.urandom``).
    Raises :class:`~din_lab.secagg.errors.SecAggAbort` where the protocol would fail the round."""
    rng = system_rng if seed is None else seeded_rng(seed)
    fp = fixed_point or FixedPoint()
    context = context or RoundContext(task="simulation", round=0, subgroup=0)
    arrays = [np.asarray(v, dtype=np.float64) for v in vectors]
    if not arrays:
        raise ConfigError("simulate_round needs at least one vector")
    dimension = arrays[0].size
    if any(a.ndim != 1 or a.size != dimension for a in arrays):
        raise ConfigError("vectors must be 1-D and of equal length")
    n = len(arrays)
    dropped_in = set(dropouts)
    if not dropped_in <= set(range(n)):
        raise ConfigError(f"dropouts must be participant indices in [0, {n})")
    if isinstance(committee_size, bool) or not isinstance(committee_size, int) or committee_size < 1:
        raise ConfigError("committee_size must be a positive integer")
    offline = set(offline_evaluators)
    if not offline <= set(range(committee_size)):
        raise ConfigError(f"offline_evaluators must be committee positions in [0, {committee_size})")

    member_keys = [generate_long_term_key(rng=rng) for _ in range(committee_size)]
    committee = Committee(public_keys=tuple(public_key_bytes(k) for k in member_keys))
    long_term = [generate_long_term_key(rng=rng) for _ in range(n)]
    registered = [public_key_bytes(k) for k in long_term]
    graph_seed = rng(32)

    t0 = time.perf_counter()
    round_keys = []
    aux: dict[int, AuxMessage] = {}
    for i in range(n):
        keys, aux_bytes = participant_setup(context=context, participant=i, rng=rng)
        round_keys.append(keys)
        aux[i] = AuxMessage.from_bytes(aux_bytes)  # as every party reads it back from storage
    t_setup = time.perf_counter() - t0

    graph = MaskGraph.harary(range(n), seed=graph_seed, degree=degree) if secagg_plus else MaskGraph.full(range(n))

    t0 = time.perf_counter()
    bundles = [shares_for_committee(keys=round_keys[i], long_term_key=long_term[i], committee=committee, rng=rng)
               for i in range(n)]
    t_shares = time.perf_counter() - t0

    survivors = [i for i in range(n) if i not in dropped_in]
    encoded = {i: fp.encode(arrays[i]) for i in survivors}
    t0 = time.perf_counter()
    masked = {i: mask_update(encoded[i], keys=round_keys[i], peers=aux, graph=graph) for i in survivors}
    t_mask = time.perf_counter() - t0
    expected = np.zeros(dimension, dtype=fp.dtype)
    for i in survivors:
        np.add(expected, encoded[i], out=expected)

    # the evaluators: check the masked vectors and the quorum before any share is opened
    validate_masked(masked, dimension=dimension, graph=graph)
    surv, dropped = check_quorum(graph=graph, survivors=masked.keys(), min_survivors=min_survivors)
    revealed = []
    open_seconds = []
    for h in range(committee_size):
        if h in offline:
            continue
        t0 = time.perf_counter()
        opened = [open_shares(bundles[i][h], context=context, aux=aux[i], holder=h, holder_key=member_keys[h],
                              participant_public_key=registered[i]) for i in range(n)]
        open_seconds.append(time.perf_counter() - t0)
        revealed += reveal_shares(opened, graph=graph, survivors=surv, min_survivors=min_survivors)

    t0 = time.perf_counter()
    recovered = recover_secrets(revealed, context=context, committee=committee, aux=aux, graph=graph, survivors=surv,
                                min_survivors=min_survivors)
    t_recover = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = unmask_sum(masked, context=context, aux=aux, graph=graph, recovered=recovered, dimension=dimension,
                       min_survivors=min_survivors, workers=workers)
    t_unmask = time.perf_counter() - t0
    t_open = float(np.mean(open_seconds)) if open_seconds else 0.0
    timings = {"setup": t_setup / n, "shares": t_shares / n, "mask": t_mask / max(1, len(survivors)),
               "open": t_open, "recover": t_recover, "unmask": t_unmask,
               "evaluator": t_open + t_recover + t_unmask}
    result = SumResult(sum=total, decoded=fp.decode(total, count=len(surv)), expected=expected, survivors=surv,
                       dropped=dropped, committee_size=committee_size, threshold=committee.threshold,
                       graph_degree=graph.degree, bad_holders=recovered.bad_holders, timings=timings)
    log.info("%s: %d participants (%d dropped), committee %d (t=%d), graph degree %d, d=%d: exact=%s, "
             "evaluator %.1f ms", context, n, len(dropped), committee_size, committee.threshold, graph.degree,
             dimension, result.exact, 1e3 * timings["evaluator"])
    return result
