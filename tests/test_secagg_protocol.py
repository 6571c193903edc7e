"""Secure aggregation end to end: the unmasked sum equals the plain fixed-point sum exactly (full
graph and SecAgg+, with dropouts and offline evaluators), aborts beyond the thresholds, the same
bytes whichever shares are used, typed errors for bad shares, bad masked vectors and bad bytes.

``build_round`` (also used by ``test_secagg_privacy``) runs the participant side through the public
API, as the protocol layer will."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.errors import ConfigError, CryptoError
from din_lab.secagg import (
    AuxMessage,
    AuxMessageError,
    Committee,
    FixedPoint,
    MaskedVectorError,
    MaskGraph,
    RoundContext,
    RoundKeys,
    SecAggAbort,
    SecretKind,
    Share,
    ShareError,
    check_quorum,
    generate_long_term_key,
    mask_update,
    open_shares,
    participant_setup,
    public_key_bytes,
    recover_secrets,
    reveal_shares,
    secagg_plus_degree,
    seeded_rng,
    shares_for_committee,
    simulate_round,
    unmask_sum,
    validate_masked,
)

CONTEXT = RoundContext(task="0xTask", round=3, subgroup=1)


@dataclass
class Round:
    context: RoundContext
    committee: Committee
    member_keys: list[X25519PrivateKey]
    long_term: list[X25519PrivateKey]
    keys: list[RoundKeys]
    aux: dict[int, AuxMessage]
    graph: MaskGraph
    bundles: list[list[bytes]]
    encoded: dict[int, np.ndarray]
    masked: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def registered(self) -> list[bytes]:
        return [public_key_bytes(k) for k in self.long_term]

    def opened(self, holder: int) -> list:
        return [open_shares(self.bundles[i][holder], context=self.context, aux=self.aux[i], holder=holder,
                            holder_key=self.member_keys[holder], participant_public_key=self.registered[i])
                for i in range(len(self.keys))]

    def revealed(self, holders, survivors) -> list[Share]:
        out = []
        for h in holders:
            out += reveal_shares(self.opened(h), graph=self.graph, survivors=survivors)
        return out

    def unmask(self, holders, survivors=None, workers: int = 1):
        survivors = sorted(self.masked) if survivors is None else survivors
        recovered = recover_secrets(self.revealed(holders, survivors), context=self.context, committee=self.committee,
                                    aux=self.aux, graph=self.graph, survivors=survivors)
        masked = {i: self.masked[i] for i in survivors}
        return unmask_sum(masked, context=self.context, aux=self.aux, graph=self.graph, recovered=recovered,
                          dimension=len(next(iter(self.encoded.values()))), workers=workers)

    def plain_sum(self, survivors) -> np.ndarray:
        total = np.zeros_like(self.encoded[survivors[0]])
        for i in survivors:
            total += self.encoded[i]
        return total


def build_round(n: int, *, dimension: int = 6, committee_size: int = 5, secagg_plus: bool = False, seed: int = 0,
                context: RoundContext = CONTEXT, dropouts=(), vectors=None) -> Round:
    rng = seeded_rng(seed)
    member_keys = [generate_long_term_key(rng=rng) for _ in range(committee_size)]
    committee = Committee(public_keys=tuple(public_key_bytes(k) for k in member_keys))
    long_term = [generate_long_term_key(rng=rng) for _ in range(n)]
    keys, aux = [], {}
    for i in range(n):
        k, aux_bytes = participant_setup(context=context, participant=i, rng=rng)
        keys.append(k)
        aux[i] = AuxMessage.from_bytes(aux_bytes)
    graph = MaskGraph.harary(range(n), seed=rng(32)) if secagg_plus else MaskGraph.full(range(n))
    bundles = [shares_for_committee(keys=keys[i], long_term_key=long_term[i], committee=committee, rng=rng)
               for i in range(n)]
    data = np.random.default_rng(seed)
    fp = FixedPoint()
    encoded = {i: fp.encode(data.normal(size=dimension) if vectors is None else vectors[i]) for i in range(n)}
    r = Round(context, committee, member_keys, long_term, keys, aux, graph, bundles, encoded)
    r.masked = {i: mask_update(encoded[i], keys=keys[i], peers=aux, graph=graph) for i in range(n) if i not in dropouts}
    return r


# ----------------------------------------------------------------------------- sums are exact


@st.composite
def scenarios(draw, *, secagg_plus: bool, max_n: int):
    n = draw(st.integers(3, max_n))
    dimension = draw(st.integers(1, 40 if n <= 50 else 6))
    drop_fraction = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5]))
    dropouts = draw(st.sets(st.integers(0, n - 1), max_size=min(n - 3, int(drop_fraction * n))))
    committee_size = draw(st.integers(1, 7))
    t = committee_size // 2 + 1
    offline = draw(st.sets(st.integers(0, committee_size - 1), max_size=committee_size - t))
    scale = draw(st.sampled_from([1e-3, 1.0, 5.0, 50.0]))  # 50 with clip 8: most values clip
    seed = draw(st.integers(0, 2**32 - 1))
    bits = draw(st.sampled_from([64, 32]))
    return n, dimension, dropouts, committee_size, offline, scale, seed, bits


# Z_2^64 at 2^-32; Z_2^32 at 2^-20 (clip 8: 255 vectors sum exactly, enough for 200)
RINGS = {64: FixedPoint(clip=8.0, frac_bits=32), 32: FixedPoint(clip=8.0, frac_bits=20, bits=32)}


def _check_sum(n, dimension, dropouts, committee_size, offline, scale, seed, bits, secagg_plus) -> None:
    data = np.random.default_rng(seed)
    vectors = [data.normal(scale=scale, size=dimension) for _ in range(n)]
    fp = RINGS[bits]
    survivors = [i for i in range(n) if i not in dropouts]
    try:
        result = simulate_round(vectors, committee_size=committee_size, dropouts=dropouts,
                                offline_evaluators=offline, secagg_plus=secagg_plus, seed=seed, fixed_point=fp)
    except SecAggAbort as e:
        # only SecAgg+ may abort here, and only because the survivors' graph fell apart
        assert secagg_plus and "components" in str(e), e
        return
    expected = np.zeros(dimension, dtype=fp.dtype)
    for i in survivors:
        expected += fp.encode(vectors[i])
    assert result.sum.dtype == fp.dtype
    assert np.array_equal(result.sum, expected) and result.exact
    assert result.survivors == tuple(survivors) and result.dropped == tuple(sorted(dropouts))
    clipped = np.clip(np.array(vectors)[survivors], -8, 8).sum(axis=0)
    assert np.allclose(result.decoded, clipped, rtol=0, atol=len(survivors) * fp.resolution)


@settings(max_examples=50, deadline=None)
@given(scenario=scenarios(secagg_plus=False, max_n=40))
def test_full_graph_sum_is_exact(scenario) -> None:
    _check_sum(*scenario, secagg_plus=False)


@settings(max_examples=50, deadline=None)
@given(scenario=scenarios(secagg_plus=True, max_n=200))
def test_secagg_plus_sum_is_exact(scenario) -> None:
    _check_sum(*scenario, secagg_plus=True)


def test_full_graph_200_participants_30_percent_dropout() -> None:
    dropouts = set(range(0, 200, 3))  # 67 dropped
    _check_sum(200, 3, dropouts, 5, {4}, 1.0, 7, 64, secagg_plus=False)
    _check_sum(200, 3, dropouts, 5, {4}, 1.0, 7, 32, secagg_plus=False)


def test_secagg_plus_abort_matches_graph_connectivity() -> None:
    """With SecAgg+ a round aborts exactly when the survivors' induced graph is disconnected."""
    n = 30
    r = build_round(n, secagg_plus=True, seed=5)
    k = r.graph.degree
    assert k == secagg_plus_degree(n) == 10
    # the ring order: walk from participant 0 along nearest neighbours
    ring = [0]
    while len(ring) < n:
        cur = ring[-1]
        cand = [q for q in r.graph.neighbours(cur) if q not in ring]
        # the next on the ring is the candidate sharing the most neighbours with cur
        ring.append(max(cand, key=lambda q: len(set(r.graph.neighbours(q)) & set(r.graph.neighbours(cur)))))
    run = set(ring[3:3 + k // 2])  # k/2 consecutive dropouts
    gap = set(ring[18:18 + k // 2])
    survivors = [i for i in range(n) if i not in run | gap]
    assert len(r.graph.components(survivors)) == 2
    with pytest.raises(SecAggAbort, match="components"):
        check_quorum(graph=r.graph, survivors=survivors)
    with pytest.raises(SecAggAbort):
        reveal_shares(r.opened(0), graph=r.graph, survivors=survivors)
    one_run = [i for i in range(n) if i not in run]
    assert len(r.graph.components(one_run)) == 1
    assert np.array_equal(r.unmask([0, 1, 2], survivors=one_run), r.plain_sum(one_run))


def test_simulation_is_reproducible_from_its_seed() -> None:
    vectors = [np.linspace(-1, 1, 50) * i for i in range(12)]
    a = simulate_round(vectors, committee_size=3, dropouts={2, 5}, secagg_plus=True, seed=42)
    b = simulate_round(vectors, committee_size=3, dropouts={2, 5}, secagg_plus=True, seed=42)
    assert a.sum.tobytes() == b.sum.tobytes() and a.exact
    r1, r2 = build_round(8, seed=9), build_round(8, seed=9)
    assert all(r1.masked[i].tobytes() == r2.masked[i].tobytes() for i in range(8))
    assert r1.bundles == r2.bundles
    r3 = build_round(8, seed=10)
    assert r1.masked[0].tobytes() != r3.masked[0].tobytes()


# ----------------------------------------------------------------------------- aborts


def test_too_few_survivors_aborts() -> None:
    r = build_round(5, dropouts={0, 1, 2})
    with pytest.raises(SecAggAbort, match="survived"):
        r.unmask([0, 1, 2])
    with pytest.raises(SecAggAbort):
        reveal_shares(r.opened(0), graph=r.graph, survivors=[3, 4])  # nothing is revealed
    with pytest.raises(SecAggAbort):
        simulate_round([np.zeros(3)] * 5, dropouts={0, 1, 2})
    with pytest.raises(SecAggAbort):
        simulate_round([np.zeros(3)] * 2)
    # a caller may demand more survivors, never fewer than 3
    with pytest.raises(SecAggAbort):
        simulate_round([np.zeros(3)] * 6, dropouts={0, 1}, min_survivors=5)
    with pytest.raises(ConfigError):
        simulate_round([np.zeros(3)] * 6, min_survivors=2)


@pytest.mark.parametrize("committee_size", [1, 2, 3, 4, 5, 7])
def test_too_few_committee_shares_aborts(committee_size: int) -> None:
    t = committee_size // 2 + 1
    r = build_round(6, committee_size=committee_size, dropouts={1})
    assert r.committee.threshold == t
    assert np.array_equal(r.unmask(range(t)), r.plain_sum([0, 2, 3, 4, 5]))
    with pytest.raises(SecAggAbort, match="committee members"):
        r.unmask(range(t - 1))
    with pytest.raises(SecAggAbort):
        simulate_round([np.zeros(3)] * 6, committee_size=committee_size, offline_evaluators=range(committee_size - t + 1))


def test_a_participant_with_too_few_shares_aborts() -> None:
    r = build_round(6, committee_size=5, dropouts={1})
    shares = r.revealed([0, 1, 2], sorted(r.masked))
    shares = [s for s in shares if not (s.participant == 4 and s.holder == 2)]
    with pytest.raises(SecAggAbort, match="participant 4"):
        recover_secrets(shares, context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                        survivors=sorted(r.masked))


# ----------------------------------------------------------------------------- determinism


def test_same_bytes_whichever_shares_are_used() -> None:
    r = build_round(12, committee_size=7, secagg_plus=True, dropouts={0, 5, 6})
    results = {r.unmask(holders).tobytes() for holders in itertools.combinations(range(7), 4)}
    results.add(r.unmask(range(7)).tobytes())
    results.add(r.unmask([6, 2, 4, 5, 0]).tobytes())
    results.add(r.unmask([1, 2, 3, 4], workers=3).tobytes())  # threads regenerating masks: same bytes
    assert len(results) == 1
    assert results.pop() == r.plain_sum(sorted(r.masked)).tobytes()


def test_a_wrong_share_is_corrected_and_its_holder_named() -> None:
    r = build_round(6, committee_size=5, dropouts={2})
    survivors = sorted(r.masked)
    shares = r.revealed(range(5), survivors)
    bad = [replace(s, value=(s.value + 1)) if s.holder == 0 else s for s in shares]
    recovered = recover_secrets(bad, context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                                survivors=survivors)
    good = recover_secrets(shares, context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                           survivors=survivors)
    assert recovered.bad_holders == (0,) and good.bad_holders == ()
    assert dict(recovered.self_seeds) == dict(good.self_seeds) and dict(recovered.mask_keys) == dict(good.mask_keys)
    # with only t shares, one of them wrong, nothing verifies: a typed error, never a wrong sum
    few = [s for s in bad if s.holder in (0, 1, 2)]
    with pytest.raises(ShareError, match="inconsistent"):
        recover_secrets(few, context=r.context, committee=r.committee, aux=r.aux, graph=r.graph, survivors=survivors)


def test_recovered_secrets_are_the_real_ones() -> None:
    r = build_round(7, dropouts={3, 4})
    recovered = recover_secrets(r.revealed([1, 3, 4], sorted(r.masked)), context=r.context, committee=r.committee,
                                aux=r.aux, graph=r.graph, survivors=sorted(r.masked))
    assert set(recovered.self_seeds) == {0, 1, 2, 5, 6} and set(recovered.mask_keys) == {3, 4}
    assert all(recovered.self_seeds[i] == r.keys[i].self_seed for i in recovered.self_seeds)
    assert all(recovered.mask_keys[i] == r.keys[i].mask_private_key for i in recovered.mask_keys)


# ----------------------------------------------------------------------------- bad shares


def test_tampered_share_bundle() -> None:
    r = build_round(4)
    bundle = bytearray(r.bundles[1][2])
    bundle[-5] ^= 0x01
    with pytest.raises(ShareError, match="does not open"):
        open_shares(bytes(bundle), context=r.context, aux=r.aux[1], holder=2, holder_key=r.member_keys[2],
                    participant_public_key=r.registered[1])


def test_share_bundle_replayed_to_another_round_or_subgroup() -> None:
    r = build_round(4)
    for other in (replace(CONTEXT, round=4), replace(CONTEXT, subgroup=2), replace(CONTEXT, task="0xOther")):
        with pytest.raises(ShareError, match="is for"):
            open_shares(r.bundles[0][0], context=other, aux=r.aux[0], holder=0, holder_key=r.member_keys[0],
                        participant_public_key=r.registered[0])
    # the same participant keys in the next round: last round's bundle does not open this round
    r4 = build_round(4, context=replace(CONTEXT, round=4))
    with pytest.raises(ShareError):
        open_shares(r.bundles[0][0], context=r4.context, aux=r4.aux[0], holder=0, holder_key=r.member_keys[0],
                    participant_public_key=r.registered[0])
    # a revealed share of round 3 offered in round 4
    shares = r4.revealed([0, 1], [0, 1, 2, 3]) + r.revealed([2], [0, 1, 2, 3])
    with pytest.raises(ShareError, match="given for"):
        recover_secrets(shares, context=r4.context, committee=r4.committee, aux=r4.aux, graph=r4.graph,
                        survivors=[0, 1, 2, 3])


def test_share_bundle_misaddressed_or_for_another_participant() -> None:
    r = build_round(4)
    with pytest.raises(ShareError, match="addressed to"):
        open_shares(r.bundles[0][1], context=r.context, aux=r.aux[0], holder=2, holder_key=r.member_keys[2],
                    participant_public_key=r.registered[0])
    with pytest.raises(ShareError, match="participant 0's, expected participant 1's"):
        open_shares(r.bundles[0][1], context=r.context, aux=r.aux[1], holder=1, holder_key=r.member_keys[1],
                    participant_public_key=r.registered[1])
    # a member's key is not another member's: the header is right but the key is not
    with pytest.raises(ShareError, match="does not open"):
        open_shares(r.bundles[0][1], context=r.context, aux=r.aux[0], holder=1, holder_key=r.member_keys[2],
                    participant_public_key=r.registered[0])


def test_share_bundle_from_a_non_member() -> None:
    """Someone who is not the registered participant (no long-term key of it) cannot make shares that open."""
    r = build_round(4)
    impostor = generate_long_term_key(rng=seeded_rng("impostor"))
    forged = shares_for_committee(keys=r.keys[1], long_term_key=impostor, committee=r.committee, rng=seeded_rng(1))
    with pytest.raises(ShareError, match="not from the registered participant"):
        open_shares(forged[0], context=r.context, aux=r.aux[1], holder=0, holder_key=r.member_keys[0],
                    participant_public_key=r.registered[1])
    # bound to its aux message: shares made for other round keys do not pass as this aux's
    other_keys, _ = participant_setup(context=r.context, participant=1, rng=seeded_rng(2))
    swapped = shares_for_committee(keys=other_keys, long_term_key=r.long_term[1], committee=r.committee,
                                   rng=seeded_rng(3))
    with pytest.raises(ShareError, match="another aux message"):
        open_shares(swapped[0], context=r.context, aux=r.aux[1], holder=0, holder_key=r.member_keys[0],
                    participant_public_key=r.registered[1])
    # a revealed share claiming a holder outside the committee
    shares = r.revealed([0, 1, 2], [0, 1, 2, 3])
    outsider = replace(shares[0], holder=5)
    with pytest.raises(ShareError, match="not a member"):
        recover_secrets([*shares, outsider], context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                        survivors=[0, 1, 2, 3])
    stranger = replace(shares[0], participant=99)
    with pytest.raises(ShareError, match="not in this round"):
        recover_secrets([*shares, stranger], context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                        survivors=[0, 1, 2, 3])


def test_duplicate_and_wrong_kind_shares() -> None:
    r = build_round(5, dropouts={4})
    survivors = [0, 1, 2, 3]
    shares = r.revealed([0, 1, 2], survivors)
    with pytest.raises(ShareError, match="duplicate"):
        recover_secrets([*shares, shares[0]], context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                        survivors=survivors)
    # Bonawitz's rule: a survivor's mask key or a dropped participant's seed is never accepted
    survivor_mask_key = r.opened(0)[0].mask_key
    dropped_seed = r.opened(0)[4].self_seed
    for wrong in (survivor_mask_key, dropped_seed):
        assert wrong.kind in (SecretKind.MASK_KEY, SecretKind.SELF_SEED)
        with pytest.raises(ShareError, match="Bonawitz"):
            recover_secrets([*shares, wrong], context=r.context, committee=r.committee, aux=r.aux, graph=r.graph,
                            survivors=survivors)


def test_share_bytes_round_trip_and_bad_bytes() -> None:
    r = build_round(4)
    share = r.opened(1)[2].self_seed
    assert Share.from_bytes(share.to_bytes()) == share
    data = share.to_bytes()
    for bad in (b"", data[:-1], data + b"\x00", b"XXXX" + data[4:], data[:4] + b"\x02" + data[5:],
                r.bundles[0][0], r.aux[0].to_bytes()):
        with pytest.raises(ShareError):
            Share.from_bytes(bad)
    for bad in (b"", r.bundles[0][0][:-3], r.aux[0].to_bytes()):
        with pytest.raises(ShareError):
            open_shares(bad, context=r.context, aux=r.aux[0], holder=0, holder_key=r.member_keys[0],
                        participant_public_key=r.registered[0])


def test_aux_message_bytes() -> None:
    keys, data = participant_setup(context=CONTEXT, participant=7, rng=seeded_rng(0))
    aux = AuxMessage.from_bytes(data)
    assert aux == keys.aux and aux.to_bytes() == data and aux.participant == 7 and aux.context == CONTEXT
    for bad in (b"", data[:-1], data + b"!", b"\x00" * len(data), data[:5] + b"\x03" + data[6:]):
        with pytest.raises(AuxMessageError):
            AuxMessage.from_bytes(bad)
    assert issubclass(AuxMessageError, CryptoError)


def test_masking_needs_every_neighbours_aux_for_this_round() -> None:
    r = build_round(4)
    peers = dict(r.aux)
    del peers[2]
    with pytest.raises(AuxMessageError, match="neighbour 2"):
        mask_update(r.encoded[0], keys=r.keys[0], peers=peers, graph=r.graph)
    other = build_round(4, context=replace(CONTEXT, round=9))
    with pytest.raises(AuxMessageError, match="is for"):
        mask_update(r.encoded[0], keys=r.keys[0], peers={**r.aux, 1: other.aux[1]}, graph=r.graph)
    low_order = replace(r.aux[1], mask_public_key=bytes(32))
    with pytest.raises(AuxMessageError, match="unusable"):
        mask_update(r.encoded[0], keys=r.keys[0], peers={**r.aux, 1: low_order}, graph=r.graph)


# ----------------------------------------------------------------------------- bad masked vectors


@pytest.mark.parametrize("bad", [
    np.zeros(5, dtype=np.uint64),  # too short
    np.zeros(7, dtype=np.uint64),  # too long
    np.zeros(6, dtype=np.int64),
    np.zeros(6, dtype=np.float64),
    np.zeros((2, 3), dtype=np.uint64),
    [0] * 6,
])
def test_masked_vector_of_wrong_length_or_dtype(bad) -> None:
    r = build_round(4)
    r.masked = {**r.masked, 2: bad}
    with pytest.raises(MaskedVectorError):
        validate_masked(r.masked, dimension=6, graph=r.graph)
    with pytest.raises(MaskedVectorError):
        r.unmask([0, 1, 2])


def test_masked_vector_from_outside_the_graph_and_bad_input() -> None:
    r = build_round(4)
    with pytest.raises(MaskedVectorError, match="not in this round"):
        validate_masked({**r.masked, 9: r.masked[0]}, dimension=6, graph=r.graph)
    with pytest.raises(MaskedVectorError):
        mask_update(np.zeros(6), keys=r.keys[0], peers=r.aux, graph=r.graph)


def test_graphs_are_symmetric_and_deterministic() -> None:
    for n in (3, 4, 10, 11, 57, 100, 200):
        g = MaskGraph.harary(range(100, 100 + n), seed=b"round seed")
        assert g == MaskGraph.harary(range(100, 100 + n), seed=b"round seed")
        assert g.adjacency == MaskGraph.harary(range(100, 100 + n), seed=b"round seed").adjacency
        k = secagg_plus_degree(n)
        assert g.degree == k and k % 2 == 0 or k == n - 1
        for p in g.participants:
            assert len(g.neighbours(p)) == k and p not in g.neighbours(p)
            assert all(p in g.neighbours(q) for q in g.neighbours(p))
        assert len(g.components(g.participants)) == 1
    assert [secagg_plus_degree(n) for n in (2, 3, 10, 100, 200, 1000)] == [1, 2, 8, 14, 16, 20]
    a = MaskGraph.harary(range(100), seed=b"a")
    b = MaskGraph.harary(range(100), seed=b"b")
    assert a.adjacency != b.adjacency
    with pytest.raises(ConfigError):
        MaskGraph.full([1, 1, 2])
    with pytest.raises(ConfigError):
        MaskGraph.harary(range(5), seed=b"")


def test_hand_built_graph_must_be_symmetric() -> None:
    with pytest.raises(ConfigError, match="symmetric"):
        MaskGraph(participants=(0, 1, 2), degree=1, adjacency={0: (1,), 1: (2,), 2: (0,)})
    with pytest.raises(ConfigError, match="adjacency"):
        MaskGraph(participants=(0, 1, 2), degree=2)
    ok = MaskGraph(participants=(0, 1, 2), degree=2, adjacency={0: (1, 2), 1: (0, 2), 2: (0, 1)})
    assert ok == MaskGraph.full([2, 0, 1])
