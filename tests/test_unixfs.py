"""The importer against the reference: CIDs from the npm ``ipfs-unixfs-importer`` (tests/vectors/unixfs,
produced by its generate.mjs with ``ipfs add``'s options), plus properties of import and read-back."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.cid import Cid
from din_lab.errors import ConfigError, UnsupportedContentError
from din_lab.storage import EmbeddedStore, ImportParams, cid_of
from din_lab.storage.unixfs import (
    FileImporter,
    _bytes_field,
    _pb_node,
    _varint_field,
    chunk_bytes,
    decode_block,
    import_chunks,
    read_file,
)

VECTORS_DIR = Path(__file__).parent / "vectors" / "unixfs"
VECTORS = json.loads((VECTORS_DIR / "vectors.json").read_text())


@functools.lru_cache(maxsize=8)
def content_of(label: str | None, literal: str | None, size: int) -> bytes:
    """The vector content rule of generate.mjs: SHAKE256(label) truncated to size, or the literal."""
    if literal is not None:
        return literal.encode()
    return hashlib.shake_256(label.encode()).digest(size)


def params_of(vector: dict) -> ImportParams:
    return ImportParams(cid_version=vector["cid_version"], raw_leaves=vector["raw_leaves"],
                        chunk_size=vector["chunk_size"], max_links=vector["max_links"])


def test_vectors_cover_what_the_issue_lists():
    sizes = {v["size"] for v in VECTORS if v["chunk_size"] == 262144}
    required = {0, 1, 5, 1000, 262143, 262144, 262145, 1048577, 3_000_000, 174 * 262144, 174 * 262144 + 1,
                50_000_000}
    assert required <= sizes
    for version in (0, 1):
        assert required <= {v["size"] for v in VECTORS if v["cid_version"] == version and v["chunk_size"] == 262144}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_cid_equals_reference_importer(vector):
    data = content_of(vector["label"], vector["literal"], vector["size"])
    assert len(data) == vector["size"]
    importer = FileImporter(params_of(vector))
    for chunk in chunk_bytes(data, vector["chunk_size"]):
        importer.add_chunk(chunk)
    assert str(importer.finish()) == vector["cid"]
    assert importer.cumulative_size == vector["cumulative_size"]


def test_known_anchors():
    assert str(cid_of(b"hello")) == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
    assert str(cid_of(b"")) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert str(cid_of(b"hello", params=ImportParams(cid_version=1))) == \
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["size"] <= 3_000_000 or v["size"] == 174 * 262144 + 1],
                         ids=lambda v: v["name"])
def test_store_reads_back_what_the_reference_addressed(vector):
    data = content_of(vector["label"], vector["literal"], vector["size"])
    store = EmbeddedStore()
    cid = store.add(data, params=params_of(vector))
    assert str(cid) == vector["cid"]
    assert store.cat(cid) == data
    assert store.stat(cid).size == len(data)
    assert store.stat(cid).cumulative_size == vector["cumulative_size"]


def test_second_layer_shape():
    """174 x 256 KiB + 1 needs a root over two parents (174 leaves and 1 leaf)."""
    store = EmbeddedStore()
    data = content_of("din-lab/unixfs/45613057", None, 174 * 262144 + 1)
    cid = store.add(data)
    root = decode_block(cid, store.get_block(cid))
    assert len(root.links) == 2 and root.blocksizes == (174 * 262144, 1)
    first, second = (decode_block(c, store.get_block(c)) for c in root.links)
    assert len(first.links) == 174 and len(second.links) == 1
    assert store.stat(cid).blocks == 1 + 2 + 175


def test_reference_importer_reproduces_the_vectors():
    """The committed vectors are what the npm importer computes today (node generate.mjs --check)."""
    if not (VECTORS_DIR / "node_modules").is_dir() or shutil.which("node") is None:
        pytest.fail("the reference importer is not installed: run `make setup` (npm ci in tests/vectors/unixfs)")
    r = subprocess.run(["node", "generate.mjs", "--check"], cwd=VECTORS_DIR, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------------------------
# properties


params_strategy = st.builds(
    ImportParams,
    cid_version=st.sampled_from([0, 1]),
    raw_leaves=st.sampled_from([None, True, False]),
    chunk_size=st.integers(1, 64),
    max_links=st.integers(2, 6),
)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), params=params_strategy, pieces=st.lists(st.integers(1, 300), min_size=1))
def test_round_trip_and_independence_from_how_content_arrives(data, params, pieces):
    store = EmbeddedStore()
    cid = store.add(data, params=params)
    assert store.cat(cid) == data
    assert store.stat(cid).size == len(data)
    # the same bytes as a stream, and as an iterable of arbitrary pieces, give the same CID
    assert store.add(io.BytesIO(data), params=params, only_hash=True) == cid

    def split():
        i, k = 0, 0
        while i < len(data):
            step = pieces[k % len(pieces)]
            yield data[i:i + step]
            i, k = i + step, k + 1

    assert store.add(split(), params=params, only_hash=True) == cid
    assert cid.version == params.cid_version or (len(data) <= params.chunk_size and params.leaves_raw)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=600), chunk=st.integers(1, 50), links=st.integers(2, 5))
def test_tree_invariants(data, chunk, links):
    """Every parent has at most max_links links; blocksizes add up to filesize; leaves in order."""
    params = ImportParams(chunk_size=chunk, max_links=links)
    blocks: dict[Cid, bytes] = {}
    root = import_chunks(chunk_bytes(data, chunk), params=params, sink=lambda c, b: blocks.setdefault(c, b))
    for cid, block in blocks.items():
        assert hashlib.sha256(block).digest() == cid.digest
        node = decode_block(cid, block)
        assert len(node.links) <= links
        if node.links:
            assert sum(node.blocksizes) == node.filesize and len(node.blocksizes) == len(node.links)
    assert b"".join(read_file(root, blocks.__getitem__)) == data


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError):
        ImportParams(cid_version=2)
    with pytest.raises(ConfigError):
        ImportParams(chunk_size=0)
    with pytest.raises(ConfigError):
        ImportParams(chunk_size=2 * 1024 * 1024)
    with pytest.raises(ConfigError):
        ImportParams(max_links=1)


def test_directories_and_foreign_dag_pb_are_refused_on_read():
    directory = _pb_node(data=_varint_field(1, 1))  # UnixFS Type=Directory, no links
    cid = Cid(digest=hashlib.sha256(directory).digest())
    with pytest.raises(UnsupportedContentError, match="directory"):
        decode_block(cid, directory)
    bare = _bytes_field(2, b"")  # a PBNode with one empty link field and no Data
    with pytest.raises(UnsupportedContentError):
        decode_block(Cid(digest=hashlib.sha256(bare).digest()), bare)
    garbage = b"\xff\xff\xff"
    with pytest.raises(UnsupportedContentError, match="well-formed"):
        decode_block(Cid(digest=hashlib.sha256(garbage).digest()), garbage)
