"""What masking hides: a masked update alone is indistinguishable from uniform noise in Z_(2^64)
(statistical tests, fixed seeds), and n - 2 colluding participants (even joined by the committee's
legitimate view of the survivors' self-mask seeds) are left, for each of the two honest
participants, with its update plus the pairwise mask between the two honest ones, which needs one
of their round secrets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from din_lab.secagg import FixedPoint, MaskGraph, mask_update, pairwise_mask, self_mask

from .test_secagg_protocol import build_round

# chi-square with 255 degrees of freedom: the 0.999 quantile (scipy.stats.chi2.ppf(0.999, 255))
CHI2_255_CRITICAL = 330.52
BIT_Z_LIMIT = 4.5  # |z| of each of the 64 bit frequencies (two-sided ~7e-6 each, ~4e-4 for all 64)
KS_CRITICAL = 1.95  # sqrt(N) * D at alpha = 0.001 (Kolmogorov distribution)


def chi2_byte(values: np.ndarray, shift: int) -> float:
    counts = np.bincount(((values >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.int64), minlength=256)
    expected = values.size / 256
    return float(((counts - expected) ** 2 / expected).sum())


def bit_z_scores(values: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")  # (N, 64)
    ones = bits.sum(axis=0)
    n = values.size
    return (ones - n / 2) / np.sqrt(n / 4)


def ks_uniform(values: np.ndarray) -> float:
    u = np.sort((values >> np.uint64(11)).astype(np.float64) / 2.0**53)
    n = u.size
    d = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
    return float(np.sqrt(n) * d)


def assert_uniform(values: np.ndarray) -> None:
    assert values.dtype == np.uint64
    for shift in (0, 24, 56):  # low, middle and top byte
        assert chi2_byte(values, shift) < CHI2_255_CRITICAL, shift
    assert np.all(np.abs(bit_z_scores(values)) < BIT_Z_LIMIT)
    assert ks_uniform(values) < KS_CRITICAL


def assert_not_uniform(values: np.ndarray) -> None:
    """The control: the same tests do reject structured vectors."""
    rejected = (chi2_byte(values, 56) >= CHI2_255_CRITICAL or np.any(np.abs(bit_z_scores(values)) >= BIT_Z_LIMIT)
                or ks_uniform(values) >= KS_CRITICAL)
    assert rejected


DIM = 1 << 16


@pytest.mark.parametrize("secagg_plus", [False, True])
def test_masked_zero_update_looks_uniform(secagg_plus: bool) -> None:
    zeros = [np.zeros(DIM)] * 12
    r = build_round(12, dimension=DIM, secagg_plus=secagg_plus, seed=2024, vectors=zeros)
    assert_not_uniform(r.encoded[0])  # all zeros: the tests see it
    assert_not_uniform(FixedPoint().encode(np.random.default_rng(0).normal(size=DIM)))  # small signed values too
    for i in (0, 5, 11):
        assert_uniform(r.masked[i])


def test_masked_large_update_looks_uniform() -> None:
    big = [np.full(DIM, 7.9)] * 4
    r = build_round(4, dimension=DIM, seed=77, vectors=big)
    assert_not_uniform(r.encoded[3])
    assert_uniform(r.masked[3])


@pytest.mark.parametrize("secagg_plus", [False, True])
def test_n_minus_2_colluders_cannot_remove_the_honest_pair_mask(secagg_plus: bool) -> None:
    n, dim = 9, 4096
    r = build_round(n, dimension=dim, secagg_plus=secagg_plus, seed=31)
    g = r.graph
    a = 2
    # the honest pair: in SecAgg+ pick a neighbour of a so that the pair mask exists
    b = g.neighbours(a)[-1]
    colluders = [j for j in range(n) if j not in (a, b)]
    ctx = r.context
    residual = {}
    for h in (a, b):
        # everything the colluders can take out of h's masked vector: their pairwise masks with h
        res = r.masked[h].copy()
        for j in colluders:
            if j in g.neighbours(h):
                # j's mask as j adds it is the negative of h's mask for j
                res += pairwise_mask(context=ctx, own=j, own_private_key=r.keys[j].mask_private_key, peer=h,
                                     peer_public_key=r.aux[h].mask_public_key, dimension=dim)
        residual[h] = res

    # the oracle (uses the honest participants' secrets, which the colluders do not have)
    pair = {h: pairwise_mask(context=ctx, own=h, own_private_key=r.keys[h].mask_private_key,
                             peer=b if h == a else a, peer_public_key=r.aux[b if h == a else a].mask_public_key,
                             dimension=dim) for h in (a, b)}
    self_m = {h: self_mask(context=ctx, participant=h, seed=r.keys[h].self_seed, dimension=dim) for h in (a, b)}
    for h in (a, b):
        assert np.array_equal(residual[h], r.encoded[h] + self_m[h] + pair[h])
        assert not np.array_equal(residual[h], r.encoded[h])
        # even with the self seed (which the committee reconstructs for survivors), the pair mask remains
        with_seed = residual[h] - self_m[h]
        assert np.array_equal(with_seed - r.encoded[h], pair[h])
        assert not np.any(with_seed == r.encoded[h])  # each element equal by chance with probability 2^-64
        assert_uniform(with_seed - r.encoded[h])
    # the pair mask cancels between the two: only their sum (still self-masked) comes out
    assert np.array_equal(pair[a] + pair[b], np.zeros(dim, dtype=np.uint64))
    assert np.array_equal(residual[a] + residual[b], r.encoded[a] + r.encoded[b] + self_m[a] + self_m[b])
    # a colluder's attempt at the pair mask with its own key is a different stream
    guess = pairwise_mask(context=ctx, own=a, own_private_key=r.keys[colluders[0]].mask_private_key, peer=b,
                          peer_public_key=r.aux[b].mask_public_key, dimension=dim)
    assert not np.array_equal(guess, pair[a])


def test_pair_masks_cancel_only_for_the_right_round() -> None:
    """A pairwise mask depends on the round context: last round's masks do not remove this round's."""
    r = build_round(5, dimension=256, seed=3)
    g = MaskGraph.full(range(5))
    assert g.neighbours(0) == (1, 2, 3, 4)
    other = replace(r.context, round=r.context.round + 1)
    m_now = pairwise_mask(context=r.context, own=0, own_private_key=r.keys[0].mask_private_key, peer=1,
                          peer_public_key=r.aux[1].mask_public_key, dimension=256)
    m_other = pairwise_mask(context=other, own=0, own_private_key=r.keys[0].mask_private_key, peer=1,
                            peer_public_key=r.aux[1].mask_public_key, dimension=256)
    m_peer = pairwise_mask(context=r.context, own=1, own_private_key=r.keys[1].mask_private_key, peer=0,
                           peer_public_key=r.aux[0].mask_public_key, dimension=256)
    assert np.array_equal(m_now + m_peer, np.zeros(256, dtype=np.uint64))
    assert not np.array_equal(m_now, m_other)
    y = mask_update(r.encoded[0], keys=r.keys[0], peers=r.aux, graph=g)
    assert np.array_equal(y, r.masked[0])
