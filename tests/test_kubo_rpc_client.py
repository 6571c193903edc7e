"""``din-lab ipfs daemon`` as the npm ``kubo-rpc-client`` (the official JS RPC client) sees it.

``tests/clients/kubo-rpc-client/check.mjs`` adds a file through the client (CIDv0, and CIDv1 with
raw leaves), cats it back, runs pin ls/rm/add and block stat, and prints what it saw as JSON; here
the CIDs are checked against ``cid_of`` (``ipfs add``'s CIDs) and the rest against an in-memory
embedded store. Needs Node and ``make setup`` (which runs ``npm ci`` in that directory)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from din_lab.storage import EmbeddedStore, ImportParams, cid_of

CLIENT_DIR = Path(__file__).parent / "clients" / "kubo-rpc-client"
HELLO_V0 = "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"  # `ipfs add` of b"hello"
HELLO_V1 = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"  # `ipfs add --cid-version=1`


def run_check(url: str, path: Path) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the kubo-rpc-client check needs Node.js 20+")
    if not (CLIENT_DIR / "node_modules" / "kubo-rpc-client").is_dir():
        pytest.fail(f"{CLIENT_DIR}/node_modules is missing: run `make setup` (it runs npm ci there)")
    proc = subprocess.run([node, "check.mjs", url, str(path)], cwd=CLIENT_DIR, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"node check.mjs exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return json.loads(proc.stdout)


@pytest.fixture(scope="module", params=["random-600k", "hello"])
def checked(request, ipfs_daemon, tmp_path_factory):
    """(file bytes, what check.mjs printed) for each file, the client run once per file."""
    data = hashlib.shake_256(os.urandom(16)).digest(600_000) if request.param == "random-600k" else b"hello"
    path = tmp_path_factory.mktemp("kubo-rpc-client") / request.param
    path.write_bytes(data)
    return data, run_check(ipfs_daemon["url"], path)


def test_add_gives_ipfs_add_cids_and_cat_returns_the_bytes(checked):
    data, out = checked
    reference = EmbeddedStore()
    assert out["fileLength"] == len(data)
    for key, params in (("v0", ImportParams()), ("v1", ImportParams(cid_version=1, raw_leaves=True))):
        result = out[key]
        cid = cid_of(data, params=params)
        assert result["cid"] == str(cid), key
        assert result["cidVersion"] == params.cid_version
        assert result["path"] == str(cid)  # bytes without a file name: Kubo names them by their CID
        reference.add(data, params=params)
        assert result["size"] == reference.stat(cid).cumulative_size, key
        assert result["catLength"] == len(data) and result["catEqual"] is True, key
        assert result["range"]["equal"] is True, (key, result["range"])
        assert result["blockStat"] == {"cid": str(cid), "size": len(reference.get_block(cid))}, key
    if data == b"hello":
        assert (out["v0"]["cid"], out["v1"]["cid"]) == (HELLO_V0, HELLO_V1)
    else:
        assert out["v1"]["cid"].startswith("bafybei")  # a dag-pb root over raw leaves
    assert out["progress"]["cid"] == out["v0"]["cid"]  # progress=true must not change the result


def test_pins_ls_rm_add(checked):
    _, out = checked
    v0, v1, pins = out["v0"]["cid"], out["v1"]["cid"], out["pins"]
    recursive = {"type": "recursive"}
    assert {v0: recursive, v1: recursive}.items() <= {p["cid"]: {"type": p["type"]} for p in pins["initial"]}.items()
    assert pins["lsPath"] == [{"cid": v0, "type": "recursive"}]
    assert pins["rm"] == v0
    after_rm = {p["cid"] for p in pins["afterRm"]}
    assert v0 not in after_rm and v1 in after_rm
    assert pins["add"] == v0
    assert {v0, v1} <= {p["cid"] for p in pins["afterAdd"]}


def test_add_with_progress_reports_bytes(checked):
    data, out = checked
    events = out["progress"]["events"]
    assert events, "no progress events"
    assert events[-1]["bytes"] == len(data)


def test_node_identity_parses_and_is_honestly_offline(checked):
    _, out = checked
    assert out["node"]["id"].startswith("12D3KooW")  # a well-formed peer ID the client accepts
    assert out["node"]["agentVersion"].startswith("din-lab/")
    assert out["node"]["online"] is False  # the embedded store is on no network
