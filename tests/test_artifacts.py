"""The committed contract artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from din_lab.chain.artifacts import CONTRACT_NAMES, load_artifact, manifest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_hashes_match_sources():
    m = manifest()
    src = ROOT / "contracts" / "src"
    on_disk = {str(p.relative_to(src)): hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*.sol")}
    assert m["sources"] == on_disk, "contracts changed: run `make contracts` and commit the artifacts"
    assert m["settings"]["evmVersion"] == "prague"
    pkg = json.loads((ROOT / "contracts" / "package.json").read_text())
    assert m["compiler"].startswith(pkg["dependencies"]["solc"])


def test_every_contract_fits_eip170():
    for name in CONTRACT_NAMES:
        assert 0 < load_artifact(name).runtime_size <= 24_576


@pytest.mark.slow
def test_fresh_build_reproduces_committed_artifacts():
    out = subprocess.run(["node", "build.js", "--check"], cwd=ROOT / "contracts", capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
