"""Runtimes: the agents in this process (local) or spread over Ray actors in other processes (ray).

The Ray runtime is the cross-process check of "agents, not a puppeteer": each actor holds only its
own agents (with their own keys and data), reaches the chain through its own JSON-RPC connection
(events from the node's logs) and the store through its own IPFS client, and sees the others only
through the chain, the store and the public board. An agent that read another agent's attributes,
or the Lab's, would fail there or come to a different result; the task's summary must equal the
local runtime's for the same seed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from din_lab.chain import connect, join
from din_lab.config import ExperimentConfig
from din_lab.errors import ChainError, ConfigError, MissingDependencyError, ProtocolError
from din_lab.experiment import run
from din_lab.protocol.services import start_anvil
from din_lab.roles.network import Board
from tests.helpers import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(participants=8, subgroup_size=4, evaluators=4, evaluators_per_subgroup=3, rounds=2, seed=3,
             secagg=True, secagg_graph="secagg+", evaluation="plaintext", local_epochs=2)
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray runtime needs Ray: pip install 'din-lab[ray]' (make test installs it)")
needs_anvil = pytest.mark.skipif("anvil" not in BACKENDS, reason="needs anvil (DIN_LAB_TEST_BACKENDS leaves it out)")


def comparable(summary: dict) -> dict:
    """A summary without what differs by design between runtimes: timing, the config's runtime and
    the chain's URL (each run starts its own node)."""
    out = {k: v for k, v in summary.items() if k not in ("timing", "config", "chain")}
    out["rounds"] = [{k: v for k, v in r.items() if k != "seconds"} for r in summary["rounds"]]
    return out


def local_on_anvil(**settings) -> dict:
    """The local runtime on a fresh anvil with the lab's reproducible clock (what the Ray runtime starts)."""
    with start_anvil(prune_history=256) as node:
        return run(ExperimentConfig(**settings, chain=node.url)).summary


@pytest.mark.slow
@needs_ray
@needs_anvil
def test_ray_runtime_summary_equals_local_exactly_in_plaintext_evaluation():
    """Secure aggregation (SecAgg+), plaintext evaluation: the same seed gives the same summary,
    byte for byte (accuracy, every score and reward, gas, slashes, notes) on both runtimes."""
    local = local_on_anvil(**SMALL)
    remote = run(ExperimentConfig(**SMALL, runtime="ray", workers=2)).summary
    assert remote["config"]["runtime"] == "ray" and remote["chain"] == "anvil (started by the lab)"
    assert comparable(remote) == comparable(local)
    assert remote["tokens"]["conserved"] and remote["final_accuracy"] > 0.5


@pytest.mark.slow
@needs_ray
@needs_anvil
def test_din_lab_run_on_ray_with_secure_aggregation_and_encrypted_evaluation_matches_local(tmp_path):
    """`din-lab run --runtime ray --workers 2` with secure aggregation and encrypted evaluation: the
    summary equals the local runtime's except for CKKS noise (scores to 1e-6, rewards to 1e-4 tokens)."""
    settings = dict(SMALL, evaluation="he")  # logreg: an MLP's encrypted scoring takes minutes on 2 cores
    local = local_on_anvil(**settings)
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "din_lab.cli", "run", "--runtime", "ray", "--workers", "2", "--secagg", "on",
           "--secagg-graph", "secagg+", "--evaluation", "he", "--participants", "8",
           "--subgroup-size", "4", "--evaluators", "4", "--evaluators-per-subgroup", "3", "--rounds", "2",
           "--local-epochs", "2", "--seed", "3", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 Ray actors)" in done.stdout and "encrypted evaluation (CKKS)" in done.stdout
    remote = json.loads((out / "summary.json").read_text())
    a, b = comparable(local), comparable(remote)
    for key in ("rounds", "evaluators", "notes", "scoring", "final_accuracy", "task"):
        assert a[key] == b[key], key
    assert len(a["participants"]) == len(b["participants"])
    for p, q in zip(a["participants"], b["participants"], strict=True):
        assert (p["address"], p["behaviour"], p["samples"]) == (q["address"], q["behaviour"], q["samples"])
        assert p["score"] == pytest.approx(q["score"], abs=1e-6)
        assert p["reward"] == pytest.approx(q["reward"], abs=1e-4)
    for key, value in a["tokens"].items():
        assert value == (pytest.approx(b["tokens"][key], abs=1e-4) if isinstance(value, float) else b["tokens"][key])
    assert b["tokens"]["conserved"]


def test_ray_runtime_missing_is_one_clear_line(monkeypatch):
    """Without Ray installed, the ray runtime refuses before it starts anything, and says how to get it."""
    from din_lab.protocol.lab import Lab

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'din-lab\[ray\]'"):
        Lab.create(ExperimentConfig(**SMALL, runtime="ray"))


def test_cli_without_ray_prints_the_install_line():
    code = "import sys; sys.modules['ray'] = None; from din_lab.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "run", "--runtime", "ray", "--participants", "8",
                           "--subgroup-size", "4", "--no-progress"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=ROOT)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "din-lab: error: the ray runtime needs Ray: pip install 'din-lab[ray]'"


def test_runtime_settings_are_checked():
    with pytest.raises(ConfigError, match="runtime"):
        ExperimentConfig(runtime="threads")
    with pytest.raises(ConfigError, match="workers"):
        ExperimentConfig(runtime="ray", workers=0)


def test_a_lab_given_an_embedded_chain_refuses_the_ray_runtime():
    from din_lab.protocol.lab import Lab
    from din_lab.storage import open_store

    config = ExperimentConfig(**SMALL, runtime="ray")
    chain = connect("embedded", accounts=3 + 8 + 4, seed=3)
    with pytest.raises(ConfigError, match="other processes"):
        Lab(config=config, chain=chain, store=open_store("memory"))


# ----------------------------------------------------------------------------- the pieces


@needs_anvil
def test_a_follower_reads_every_event_from_the_nodes_logs():
    """Two processes' view of one node: what one connection sends, another (following the logs)
    sees, with the same decoded events in chain order."""
    from din_lab.chain.din import deploy

    with start_anvil() as node:
        sender = connect(node.url, accounts=3, seed=0)
        din = deploy(sender, deployer=sender.accounts[0], public_goods_fund=sender.accounts[2].address)
        sender.transact(din.token.functions.transfer(sender.accounts[1].address, 5), sender=sender.accounts[0])
        follower = join(node.url, accounts=())
        theirs = [(e.block, e.tx_hash, e.log_index, e.event, e.args) for e in sender.events]
        assert [(e.block, e.tx_hash, e.log_index, e.event, e.args) for e in follower.events] == theirs
        sender.transact(din.token.functions.transfer(sender.accounts[2].address, 3), sender=sender.accounts[1])
        latest = follower.events.where("Transfer", address=din.token.address)[-1]
        assert latest.args["value"] == 3 and latest.args["from"] == sender.accounts[1].address
        assert follower.call(din.token.functions.balanceOf(sender.accounts[2].address)) == 3


def test_the_embedded_chain_cannot_follow_logs():
    with pytest.raises(ChainError, match="JSON-RPC"):
        connect("embedded", accounts=1).follow_logs()
    with pytest.raises(ConfigError, match="URL"):
        join("embedded", accounts=())


def test_an_agent_moves_with_its_own_secrets_and_without_its_handle():
    """Pickled for another process: the same account, X25519 key and data; no connection, no view."""
    from din_lab.protocol.network import build
    from din_lab.storage import open_store

    config = ExperimentConfig(**SMALL)
    chain = connect("embedded", accounts=3 + 8 + 4, seed=3)
    net = build(config, chain=chain, store=open_store("memory"), seed=3)
    p = net.participants[2]
    moved = pickle.loads(pickle.dumps(p))
    assert moved.address == p.address and moved.public_key == p.public_key and moved.handle is None
    assert moved.samples == p.samples and moved.behaviour == p.behaviour
    with pytest.raises(ProtocolError, match="joined"):
        moved.view  # no handle: it must join the network first  # noqa: B018


def test_a_board_replica_catches_up_in_order():
    from din_lab.cid import Cid
    from din_lab.storage import cid_of

    cids = [Cid.coerce(cid_of(c.encode())) for c in "abc"]
    board, replica = Board(), Board()
    board.post("t", sender="0x1", cid=cids[0])
    board.post("u", sender="0x2", cid=cids[1])
    board.post("t", sender="0x1", cid=cids[2])  # replaces its earlier post on "t"
    for topic, sender, cid in board.posts_since(0):
        replica.post(topic, sender=sender, cid=cid)
    assert replica.read("t") == {"0x1": cids[2]} and replica.read("u") == {"0x2": cids[1]}
    assert board.posts_since(2) == [("t", "0x1", cids[2])] and board.version == 3



@needs_anvil
def test_din_lab_chain_and_ipfs_name_the_backends_of_a_run(anvil_url, ipfs_daemon, tmp_path):
    """`DIN_LAB_CHAIN` and `DIN_LAB_IPFS` are what `din-lab run` (and `Lab.create` through the
    config's defaults) use when no flag names a backend: the task runs on that node and its objects
    land in that store."""
    from din_lab.cid import Cid
    from din_lab.storage import KuboStore

    env = {**os.environ, "DIN_LAB_CHAIN": anvil_url, "DIN_LAB_IPFS": ipfs_daemon["url"]}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "din_lab.cli", "run", "--participants", "6", "--subgroup-size", "3",
                           "--evaluators", "3", "--rounds", "1", "--local-epochs", "1", "--no-progress", "--out",
                           str(out)], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["chain"] == anvil_url and summary["chain"] == anvil_url
    assert summary["config"]["store"] == ipfs_daemon["url"]
    assert summary["rounds"][0]["accuracy"] is not None
    follower = join(anvil_url, accounts=())  # another process's view of the node
    (event,) = follower.events.where("TaskInitialized", address=summary["task"])
    with KuboStore(ipfs_daemon["url"]) as store:  # the genesis model the owner published is in that store
        assert store.has(Cid.from_chain(event.args["genesisModel"]))


def test_the_backend_variables_are_the_config_defaults(monkeypatch):
    monkeypatch.setenv("DIN_LAB_CHAIN", "http://127.0.0.1:9")
    monkeypatch.setenv("DIN_LAB_IPFS", "http://127.0.0.1:9")
    config = ExperimentConfig()
    assert (config.chain, config.store) == ("http://127.0.0.1:9", "http://127.0.0.1:9")
    assert ExperimentConfig(chain="embedded", store="memory").chain == "embedded"  # an explicit choice wins
    monkeypatch.delenv("DIN_LAB_CHAIN")
    monkeypatch.delenv("DIN_LAB_IPFS")
    assert (ExperimentConfig().chain, ExperimentConfig().store) == ("embedded", "memory")


def test_servers_that_cannot_start_say_why(monkeypatch, tmp_path):
    """A missing anvil binary is a ChainError naming it; a daemon that exits is a StorageError with
    its own last words; nothing is left running."""
    from din_lab.errors import StorageError
    from din_lab.protocol.services import start_anvil, start_ipfs_daemon

    monkeypatch.setenv("DIN_LAB_ANVIL", str(tmp_path / "no-such-anvil"))
    with pytest.raises(ChainError, match="no-such-anvil"):
        start_anvil()
    not_a_store = tmp_path / "file"
    not_a_store.write_text("not a store")
    with pytest.raises(StorageError, match="exited with code"):
        start_ipfs_daemon(not_a_store, timeout=60)
