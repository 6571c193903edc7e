from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.cid import V0_DAG_PB, V1_DAG_PB, V1_RAW, Cid
from din_lab.errors import MalformedCidError


def test_known_cids_round_trip():
    # "hello" (no newline) with `ipfs add` defaults: a dag-pb CIDv0 (NOTES.md)
    text = "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
    c = Cid.parse(text)
    assert c.kind == V0_DAG_PB and str(c) == text
    # CIDv1 raw of "hello" is the base32 of 0x01 0x55 0x12 0x20 sha256("hello")
    raw = Cid(digest=hashlib.sha256(b"hello").digest(), kind=V1_RAW)
    assert str(raw) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert Cid.parse(str(raw)) == raw


@settings(deadline=None)  # a stall of the loaded 2-core CI machine is no CID bug
@given(st.binary(min_size=32, max_size=32).filter(any), st.sampled_from([V0_DAG_PB, V1_DAG_PB, V1_RAW]))
def test_text_bytes_and_chain_forms_round_trip(digest, kind):
    c = Cid(digest=digest, kind=kind)
    assert Cid.parse(str(c)) == c
    assert Cid.from_bytes(c.to_bytes()) == c
    assert Cid.from_chain(c.to_chain()) == c


@pytest.mark.parametrize("bad", ["", "Qm", "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaO", "zb2rh", "b!!!", "bafy"])
def test_malformed_text(bad):
    with pytest.raises(MalformedCidError):
        Cid.parse(bad)


def test_malformed_values():
    with pytest.raises(MalformedCidError):
        Cid(digest=b"\0" * 32)
    with pytest.raises(MalformedCidError):
        Cid(digest=b"\1" * 31)
    with pytest.raises(MalformedCidError):
        Cid(digest=b"\1" * 32, kind=0x0171)
    assert Cid.from_chain((b"\0" * 32, 0)) is None
