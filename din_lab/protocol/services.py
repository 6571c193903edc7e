"""The servers a lab starts itself when its agents live in other processes (the Ray runtime): a
chain node (anvil) and a content store (``din-lab ipfs daemon``), each on 127.0.0.1 and a free
port, and each stopped by its PID (never by name).

anvil is the binary the npm package in ``contracts/`` installs (``make setup``), else
``$DIN_LAB_ANVIL``, else ``anvil`` on the PATH. Nothing is downloaded.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from din_lab.chain.core import BLOCK_TIME, GENESIS_TIMESTAMP
from din_lab.chain.rpc import JsonRpcClient
from din_lab.errors import ChainError, StorageError

ANVIL_ENV = "DIN_LAB_ANVIL"
NPM_ANVIL = Path(__file__).resolve().parents[2] / "contracts" / "node_modules" / "@foundry-rs" / \
    "anvil-linux-amd64" / "bin" / "anvil"
GAS_LIMIT = 30_000_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_binary() -> str:
    """The anvil to run, or a ChainError saying how to get one."""
    if os.environ.get(ANVIL_ENV):
        return os.environ[ANVIL_ENV]
    if NPM_ANVIL.exists():
        return str(NPM_ANVIL)
    found = shutil.which("anvil")
    if found is None:
        raise ChainError(f"no anvil binary: run `make setup` (npm ci in contracts/ installs {NPM_ANVIL}), or set "
                         f"{ANVIL_ENV}, or pass a node's URL as the chain")
    return found


@dataclass
class ServiceProcess:
    """A server the lab started: its URL and PID; :meth:`stop` ends it (and only it)."""

    name: str
    url: str
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(*, prune_history: int | None = None, gas_limit: int = GAS_LIMIT,
                timeout: float = 20.0) -> ServiceProcess:
    """anvil (prague, one block per transaction) on 127.0.0.1 and a free port, with the embedded
    chain's clock: the same genesis timestamp and BLOCK_TIME seconds per block, so that its block
    hashes (the contract's randomness) follow from the transactions alone and a seeded run
    reproduces. ``prune_history``: keep only that many recent states in memory (mining costs less;
    calls at older blocks are refused; logs stay). Keep a few when several processes send and call
    at once: with none, a call at "latest" can meet a block whose state is already gone."""
    port = free_port()
    extra = ["--prune-history", str(prune_history)] if prune_history is not None else []
    extra += ["--timestamp", str(GENESIS_TIMESTAMP)]
    binary = anvil_binary()
    try:
        proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--hardfork", "prague", "--accounts", "1",
             "--gas-limit", str(gas_limit), "--silent", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
    except OSError as e:
        raise ChainError(f"cannot run anvil ({binary}): {e}") from e
    node = ServiceProcess(name="anvil", url=f"http://127.0.0.1:{port}", process=proc)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ChainError(f"anvil exited with code {proc.returncode} before it served 127.0.0.1:{port}")
            try:
                JsonRpcClient(node.url, timeout=1.0).request("anvil_setBlockTimestampInterval", [BLOCK_TIME])
            except ChainError:  # not listening yet
                time.sleep(0.05)
                continue
            if proc.poll() is None:  # it answered, and it is ours (not another server that took the port)
                return node
        raise ChainError(f"anvil did not serve 127.0.0.1:{port} within {timeout:g} s")
    except BaseException:
        node.stop()
        raise


def start_ipfs_daemon(repo: str | os.PathLike, *, timeout: float = 30.0) -> ServiceProcess:
    """``din-lab ipfs daemon`` (Kubo's RPC API over an embedded store in ``repo``, a directory or
    ``memory``) on 127.0.0.1 and a free port, started with this Python."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - read if it fails, closed with the process's end
    proc = subprocess.Popen(
        [sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", os.fspath(repo), "daemon", "--port", "0"],
        stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # readline blocks: read on a thread, wait with a deadline here
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    service = ServiceProcess(name="din-lab ipfs daemon", url="", process=proc)
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # it exited
                proc.wait(timeout=5)
                errors.seek(0)
                tail = errors.read().decode(errors="replace").strip().splitlines()[-3:]
                raise StorageError(f"din-lab ipfs daemon (repo {os.fspath(repo)}) exited with code "
                                   f"{proc.returncode}: {' / '.join(tail) or 'no message'}")
            if match := re.search(r"listening on /ip4/([\d.]+)/tcp/(\d+)", line):
                service.url = f"http://{match.group(1)}:{match.group(2)}"
            if line.strip() == "Daemon is ready" and service.url:
                return service
        raise StorageError(f"din-lab ipfs daemon (repo {os.fspath(repo)}) did not become ready within {timeout:g} s")
    except BaseException:
        service.stop()
        raise
    finally:
        errors.close()
