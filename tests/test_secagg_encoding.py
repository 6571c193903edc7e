"""Fixed-point encoding into Z_(2^64): round trip within the resolution, clipping, exact sums up to
the stated bound, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from din_lab.errors import ConfigError
from din_lab.secagg import FixedPoint, MaskedVectorError, SecAggError

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=100, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 64), elements=finite),
       clip=st.sampled_from([0.5, 1.0, 3.0, 8.0, 1000.0]), frac_bits=st.integers(8, 40))
def test_round_trip_within_resolution_and_clipping(values: np.ndarray, clip: float, frac_bits: int) -> None:
    fp = FixedPoint(clip=clip, frac_bits=frac_bits)
    encoded = fp.encode(values)
    assert encoded.dtype == np.uint64 and encoded.shape == values.shape
    decoded = fp.decode(encoded)
    clipped = np.clip(values, -clip, clip)
    assert np.all(np.abs(decoded - clipped) <= 2.0 ** -frac_bits)  # rounding error is at most half of this
    assert np.all(np.abs(decoded) <= clip + 2.0 ** -frac_bits)
    assert np.all(decoded[values >= clip] == pytest.approx(np.rint(clip * 2**frac_bits) / 2**frac_bits))


def test_clipping_and_infinities() -> None:
    fp = FixedPoint(clip=2.0, frac_bits=16)
    out = fp.decode(fp.encode([-np.inf, -5.0, -2.0, -0.5, 0.0, 0.5, 2.0, 5.0, np.inf]))
    assert out.tolist() == [-2.0, -2.0, -2.0, -0.5, 0.0, 0.5, 2.0, 2.0, 2.0]
    with pytest.raises(SecAggError, match="NaN"):
        fp.encode([0.0, np.nan])


def test_negative_values_wrap_as_twos_complement() -> None:
    fp = FixedPoint(clip=1.0, frac_bits=4)
    assert fp.encode([-1.0]).tolist() == [2**64 - 16]
    assert fp.encode([0.5]).tolist() == [8]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 300), dim=st.integers(1, 20))
def test_sum_of_encodings_is_exact(seed: int, count: int, dim: int) -> None:
    fp = FixedPoint(clip=4.0, frac_bits=40)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(scale=3.0, size=(count, dim))
    encoded = np.stack([fp.encode(v) for v in vectors])
    wrapped = encoded.sum(axis=0, dtype=np.uint64)  # mod 2^64
    exact = [sum(int(v) for v in col) for col in encoded.view(np.int64).T]
    assert wrapped.view(np.int64).tolist() == exact
    assert np.allclose(fp.decode(wrapped, count=count), np.clip(vectors, -4, 4).sum(axis=0),
                       atol=count * 2.0**-40)


def test_exactness_bound_at_the_limit() -> None:
    """10,000 vectors at clip * 2^f just under 2^63 / 10,000: the extreme sums still decode exactly."""
    count = 10_000
    fp = FixedPoint(clip=8.0, frac_bits=46)  # M = 2^49, max_summands = 16383
    assert fp.max_abs_encoded == 2**49 and fp.max_summands == (2**63 - 1) // 2**49 >= count
    top = fp.encode([8.0, -8.0, 8.0])
    total = np.zeros(3, dtype=np.uint64)
    for _ in range(count):
        np.add(total, top, out=total)
    assert total.view(np.int64).tolist() == [count * 2**49, -count * 2**49, count * 2**49]
    assert fp.decode(total, count=count).tolist() == [80_000.0, -80_000.0, 80_000.0]
    with pytest.raises(SecAggError, match="wrapped"):
        fp.decode(total, count=fp.max_summands + 1)
    # the default leaves ample room: 2^28 - 1 summands
    assert FixedPoint().max_summands == 2**28 - 1


def test_the_32_bit_ring() -> None:
    """Z_2^32: uint32 encodings, two's complement wrap, exact sums up to max_summands."""
    fp = FixedPoint(clip=4.0, frac_bits=16, bits=32)  # M = 2^18, max_summands = 8191
    assert fp.dtype == np.uint32 and fp.max_summands == (2**31 - 1) // 2**18
    top = fp.encode([4.0, -4.0, -1.5, 100.0])
    assert top.dtype == np.uint32 and top.view(np.int32).tolist() == [2**18, -(2**18), -3 * 2**15, 2**18]
    total = np.zeros(4, dtype=np.uint32)
    for _ in range(fp.max_summands):
        np.add(total, top, out=total)
    assert fp.decode(total, count=fp.max_summands).tolist() == [4.0 * 8191, -4.0 * 8191, -1.5 * 8191, 4.0 * 8191]
    with pytest.raises(MaskedVectorError):
        fp.decode(total.astype(np.uint64))
    with pytest.raises(SecAggError, match="wrapped"):
        fp.decode(total, count=fp.max_summands + 1)


@pytest.mark.parametrize("kwargs", [{"bits": 16}, {"bits": 32}, {"bits": 32, "frac_bits": 31},
                                    {"bits": 32, "clip": 2.0**20, "frac_bits": 12}, {"frac_bits": -1}, {"frac_bits": 63}, {"clip": 0.0},
                                    {"clip": float("inf")}, {"clip": 2.0**40, "frac_bits": 40},
                                    {"clip": 1e-9, "frac_bits": 8}])
def test_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FixedPoint(**kwargs)


def test_decode_wrong_dtype() -> None:
    with pytest.raises(MaskedVectorError):
        FixedPoint().decode(np.zeros(3, dtype=np.int64))
