"""Shared fixtures: the DIN contracts deployed once per chain backend (embedded py-evm and
anvil), each test running from a snapshot that is reverted afterwards."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from din_lab.chain import connect
from tests.helpers import BACKENDS, stop_process

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_anvil(*extra: str):
    """anvil from the npm package, on 127.0.0.1 and a free port: (process, URL)."""
    binary = shutil.which("anvil") if not ANVIL.exists() else str(ANVIL)
    if binary is None:
        pytest.fail(f"anvil binary missing at {ANVIL}: run `make setup` (npm ci in contracts/)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--hardfork", "prague", "--accounts", "1",
         "--gas-limit", "30000000", "--silent", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"anvil exited with code {proc.returncode}")
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("anvil did not start within 20 s")
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def anvil_url():
    """anvil on 127.0.0.1 and a free port; stopped by its PID."""
    proc, url = _start_anvil()
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def anvil_pruned_url():
    """anvil keeping no historical states (``--prune-history``: mining costs about a third less;
    calls at past blocks are refused), for the long stateful runs; stopped by its PID."""
    proc, url = _start_anvil("--prune-history")
    yield url
    stop_process(proc)


@pytest.fixture(scope="session", params=BACKENDS)
def deployed(request):
    """(backend name, chain, deployment) with the DIN contracts deployed once."""
    from tests.helpers import deploy_network

    backend = request.param
    url = "embedded" if backend == "embedded" else request.getfixturevalue("anvil_url")
    chain = connect(url, accounts=40)
    return backend, chain, deploy_network(chain)


@pytest.fixture
def net(deployed):
    """A fresh view of the deployed network; everything a test does is reverted after it."""
    from tests.helpers import Net

    backend, chain, din = deployed
    snap = chain.snapshot()
    try:
        yield Net(chain=chain, din=din, backend=backend)
    finally:
        chain.revert(snap)


@pytest.fixture(scope="session", params=BACKENDS)
def econ_deployed(request):
    """(backend name, chain, deployment) with the DIN contracts and the economy deployed once."""
    from tests.helpers import deploy_economy_network

    backend = request.param
    url = "embedded" if backend == "embedded" else request.getfixturevalue("econ_anvil_url")
    chain = connect(url, accounts=40)
    return backend, chain, deploy_economy_network(chain)


@pytest.fixture(scope="session")
def econ_anvil_url():
    """A second anvil for the economy's tests, so that no snapshot of the task tests' node ever
    drops the economy's contracts; stopped by its PID."""
    proc, url = _start_anvil()
    yield url
    stop_process(proc)


@pytest.fixture
def econ(econ_deployed):
    """A fresh view of the economy network; everything a test does is reverted after it."""
    from tests.helpers import Net

    backend, chain, din = econ_deployed
    snap = chain.snapshot()
    try:
        yield Net(chain=chain, din=din, backend=backend)
    finally:
        chain.revert(snap)


@pytest.fixture
def finished_task(econ):
    """A finished task in the governed network (licensed evaluators): every actor of it can be
    granted voice credits."""
    from tests.test_economy import licensed_task

    task = licensed_task(econ)
    econ.run_to_finished(task)
    return task


@pytest.fixture
def embedded_chain():
    return connect("embedded", accounts=40)


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory):
    """`din-lab ipfs daemon` over an on-disk store, on 127.0.0.1 and a free port; stopped by its PID."""
    import re
    import sys

    base = tmp_path_factory.mktemp("ipfs-daemon")
    repo, log_path = base / "repo", base / "daemon.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - closed at teardown; a file never fills up like a pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", str(repo), "daemon", "--port", "0"],
        stdout=subprocess.PIPE, stderr=log_file, text=True,
    )
    url = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            pytest.fail(f"din-lab ipfs daemon exited: {log_path.read_text()}")
        match = re.search(r"listening on /ip4/([\d.]+)/tcp/(\d+)", line)
        if match:
            url = f"http://{match.group(1)}:{match.group(2)}"
        if line.strip() == "Daemon is ready":
            break
    if url is None:
        proc.kill()
        pytest.fail("din-lab ipfs daemon did not announce its address")
    yield {"url": url, "multiaddr": url.replace("http://", "/ip4/").replace(":", "/tcp/") + "/http",
           "repo": repo, "pid": proc.pid}
    stop_process(proc)
    log_file.close()
