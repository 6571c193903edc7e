from __future__ import annotations

import json
import subprocess
import sys

import pytest

from din_lab import __version__

SMALL_TASK = ("--participants", "10", "--rounds", "2")
"""Full-size runs of the same code paths are the demo's and test_protocol's; the CLI tests need a task."""


def run(*args):
    return subprocess.run([sys.executable, "-m", "din_lab.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_and_version():
    assert "demo" in run("--help").stdout
    assert run("--version").stdout.strip() == f"din-lab {__version__}"


def test_demo_prints_balances_and_conserves_supply(tmp_path):
    out = tmp_path / "demo.json"
    r = run("demo", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "before" in r.stdout and "after" in r.stdout
    report = json.loads(out.read_text())
    before, after = report["balances_before"], report["balances_after"]
    assert report["total_supply"] == 1e9
    assert after["public-goods fund"] > 0
    assert report["slashed"]  # the scripted lazy evaluator
    # tokens only moved among the listed accounts and stakes: owner's deposit went to the others
    assert abs(sum(after.values()) + sum(report["stakes_after"].values()) - sum(before.values())) < 1e-6


def test_bad_arguments_give_a_clear_error():
    r = run("demo", "--participants", "2")
    assert r.returncode == 2 and "din-lab: error:" in r.stderr


def test_ipfs_add_prints_the_cid_alone_and_cat_gives_the_bytes_back(tmp_path):
    repo = tmp_path / "repo"
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello")
    r = run("ipfs", "--repo", str(repo), "add", str(hello))
    assert r.returncode == 0 and r.stdout == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX\n"
    r = run("ipfs", "--repo", str(repo), "add", "--cid-version", "1", "--only-hash", str(hello))
    assert r.stdout == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq\n"
    cat = subprocess.run([sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", str(repo), "cat",
                          "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"], capture_output=True, timeout=60)
    assert cat.returncode == 0 and cat.stdout == b"hello"
    # only-hash stored nothing
    r = run("ipfs", "--repo", str(repo), "cat", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq")
    assert r.returncode == 2 and "not in this store" in r.stderr
    stat = json.loads(run("ipfs", "--repo", str(repo), "stat", "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX").stdout)
    assert stat["size"] == 5 and stat["cumulative_size"] == 13


def test_ipfs_add_from_stdin_and_errors(tmp_path):
    repo = str(tmp_path / "repo")
    r = subprocess.run([sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", repo, "add", "-"], input=b"hello",
                       capture_output=True, timeout=60)
    assert r.stdout == b"QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX\n"
    r = run("ipfs", "--repo", repo, "add", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    r = run("ipfs", "--repo", repo, "cat", "Qmnot-a-cid")
    assert r.returncode == 2 and "din-lab: error:" in r.stderr
    r = run("ipfs", "--repo", repo, "add", "--cid-version", "2", str(tmp_path))
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_run_prints_a_report_and_writes_tables(tmp_path):
    r = run("run", "--participants", "8", "--subgroup-size", "4", "--evaluators", "4", "--rounds", "1",
            "--malicious-evaluators", "0.25:lazy", "--no-progress", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "slashed evaluators:" in r.stdout and "conserved: True" in r.stdout
    # the paper's protocol by default, said so in the header
    assert "secure aggregation (secagg+ mask graph), encrypted evaluation (CKKS)" in r.stdout
    assert "baseline" not in r.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["secagg"] is True and summary["config"]["evaluation"] == "he"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tokens"]["conserved"] is True
    assert [e["behaviour"] for e in summary["evaluators"]].count("lazy") == 1


def test_run_refuses_bad_config_naming_the_field():
    r = run("run", "--subgroup-size", "2", "--no-progress")
    assert r.returncode == 2 and "subgroup_size" in r.stderr
    r = run("run", "--malicious-participants", "0.3:sneaky", "--no-progress")
    assert r.returncode == 2 and "malicious_participants" in r.stderr


@pytest.mark.slow
def test_run_with_secure_aggregation_and_dropouts_matches_plaintext(tmp_path):
    """din-lab run --secagg on [--dropout F] completes a task; the final accuracy is the plaintext
    run's (same seed) within half a point, and the dropouts are recovered."""
    accuracy = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        r = run("run", *SMALL_TASK, "--secagg", mode, "--secagg-graph", "full", "--evaluation", "plaintext",
                "--dropout", "0.2", "--no-progress", "--out", str(out))
        assert r.returncode == 0, r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tokens"]["conserved"] is True
        assert all(row["dropouts"] == 2 for row in summary["rounds"])  # 20% of 10
        accuracy[mode] = summary["final_accuracy"]
        if mode == "on":
            assert "secure aggregation (full mask graph)" in r.stdout
            assert "reveals its final-round update to its own committee only" in r.stdout  # the trade-off
            assert summary["config"]["secagg"] is True
        else:  # every output names the baseline as such
            assert "plaintext updates (baseline: no secure aggregation)" in r.stdout
            assert "plaintext evaluation (baseline: the test set in the clear)" in r.stdout
            assert any(n.startswith("plaintext baseline") for n in summary["notes"])
    assert abs(accuracy["on"] - accuracy["off"]) <= 0.005


def test_run_refuses_bad_secagg_flags():
    r = run("run", "--dropout", "1.5", "--no-progress")
    assert r.returncode == 2 and "dropout" in r.stderr
    r = run("run", "--secagg", "maybe", "--no-progress")
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_run_with_encrypted_evaluation_pays_as_plaintext(tmp_path):
    """din-lab run --evaluation he completes a task (its evaluators on two worker processes) and pays
    every participant what the plaintext run pays it (the scoring mode is fixed at creation, so the two
    runs' block hashes and subgroup draws differ, but the task-wide game does not depend on the draw:
    only CKKS rounding is left)."""
    rewards = {}
    for mode in ("he", "plaintext"):
        out = tmp_path / mode
        workers = ["--he-workers", "2"] if mode == "he" else []
        r = run("run", *SMALL_TASK, "--evaluation", mode, "--secagg", "off", *workers, "--no-progress", "--out",
                str(out))
        assert r.returncode == 0, r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tokens"]["conserved"] is True
        rewards[mode] = {p["address"]: p["reward"] for p in summary["participants"]}
        if mode == "he":
            assert "encrypted evaluation (CKKS)" in r.stdout and "Trust assumption" in r.stdout
    assert sum(rewards["he"].values()) == pytest.approx(sum(rewards["plaintext"].values()), abs=1e-4)
    assert rewards["he"] == pytest.approx(rewards["plaintext"], rel=1e-3, abs=1e-3)


def test_run_refuses_models_he_cannot_evaluate():
    for flags in (("--evaluation", "he"), ()):  # encrypted evaluation is the default
        r = run("run", *flags, "--model", "cnn", "--no-progress")
        assert r.returncode == 2 and "mlp-square" in r.stderr and "--evaluation plaintext" in r.stderr
    r = run("run", "--evaluation", "rot13", "--no-progress")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("run", "--evaluation", "he", "--he-workers", "0", "--no-progress")
    assert r.returncode == 2 and "he_workers" in r.stderr
