"""One ContentStore suite, written once and run against every backend (eth-tester's pattern):
embedded in memory, embedded on disk, KuboStore against ``din-lab ipfs daemon`` (started by a
fixture), and KuboStore against a real Kubo when ``DIN_LAB_KUBO_URL`` is set. Backend-specific
guarantees (atomic adds, crash safety, on-disk corruption) follow the suite."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from din_lab.cid import Cid
from din_lab.errors import (
    ContentNotFoundError,
    DinLabError,
    InputPathError,
    IntegrityError,
    MalformedCidError,
    NotPinnedError,
    StorageError,
    StoreWriteError,
    UnsupportedContentError,
)
from din_lab.storage import EmbeddedStore, ImportParams, KuboStore, cid_of
from din_lab.storage import embedded as embedded_module
from din_lab.storage.unixfs import decode_block

MiB = 1024 * 1024


def unique(size: int, tag: str = "") -> bytes:
    """Content no other test adds (the daemon's store is shared across the session)."""
    return hashlib.shake_256(os.urandom(16) + tag.encode()).digest(size)


def block_path(store: EmbeddedStore, cid: Cid) -> Path:
    name = cid.digest.hex()
    return store.path / "blocks" / name[:2] / name


class ContentStoreSuite:
    """Behaviour every ContentStore must have. Subclasses provide the ``store`` fixture."""

    @pytest.mark.parametrize("size", [0, 5, 262145, MiB + 1])
    @pytest.mark.parametrize("version", [0, 1])
    def test_add_cat_round_trip_with_ipfs_cids(self, store, size, version):
        data = unique(size, f"rt{size}")
        cid = store.add(data, cid_version=version)
        assert cid == cid_of(data, params=ImportParams(cid_version=version))
        assert store.cat(cid) == data
        assert b"".join(store.iter_cat(str(cid))) == data
        assert store.has(cid) and cid in store.pins()

    def test_anchors(self, store):
        assert str(store.add(b"hello")) == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
        assert str(store.add(b"")) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        assert store.cat("QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX") == b"hello"

    def test_path_stream_and_iterable_give_the_same_cid(self, store, tmp_path):
        data = unique(600_000, "forms")
        path = tmp_path / "f.bin"
        path.write_bytes(data)
        by_bytes = store.add(data)
        assert store.add(path) == by_bytes
        assert store.add(str(path)) == by_bytes
        assert store.add(io.BytesIO(data)) == by_bytes
        assert store.add(data[i:i + 7777] for i in range(0, len(data), 7777)) == by_bytes

    def test_only_hash_stores_nothing(self, store):
        data = unique(300_000, "onlyhash")
        cid = store.add(data, only_hash=True)
        assert cid == cid_of(data)
        assert not store.has(cid)
        with pytest.raises(ContentNotFoundError):
            store.cat(cid)

    def test_stat(self, store):
        data = unique(262145, "stat")
        v0 = store.stat(store.add(data))
        assert (v0.size, v0.links, v0.blocks, v0.codec) == (262145, 2, 3, "dag-pb")
        assert v0.cumulative_size == v0.dag_size > 262145
        v1 = store.stat(store.add(b"tiny", cid_version=1))
        assert (v1.size, v1.links, v1.blocks, v1.codec, v1.cumulative_size) == (4, 0, 1, "raw", 4)

    def test_get_block_hashes_to_its_cid(self, store):
        cid = store.add(unique(1000, "block"))
        assert hashlib.sha256(store.get_block(cid)).digest() == cid.digest

    def test_pin_unpin_gc(self, store):
        kept, dropped, later = unique(400_000, "kept"), unique(400_000, "dropped"), unique(1000, "later")
        kept_cid = store.add(kept)
        dropped_cid = store.add(dropped, pin=False)
        later_cid = store.add(later, pin=False)
        assert dropped_cid not in store.pins()
        store.pin(later_cid)
        report = store.gc()
        assert report.blocks_removed >= 3  # dropped's root and two leaves at least
        assert not store.has(dropped_cid)
        with pytest.raises(ContentNotFoundError) as err:
            store.cat(dropped_cid)
        assert err.value.cid == str(dropped_cid)
        assert store.cat(kept_cid) == kept and store.cat(later_cid) == later
        store.unpin(kept_cid)
        store.gc()
        assert not store.has(kept_cid)
        assert store.cat(later_cid) == later

    def test_unpin_of_unpinned_is_a_typed_error(self, store):
        cid = store.add(unique(100, "np"), pin=False)
        with pytest.raises(NotPinnedError):
            store.unpin(cid)

    def test_unknown_cid_names_it(self, store):
        cid = cid_of(unique(10, "unknown"))
        with pytest.raises(ContentNotFoundError, match=str(cid)) as err:
            store.cat(cid)
        assert err.value.cid == str(cid)
        for op in (store.stat, store.get_block, store.pin):
            with pytest.raises(ContentNotFoundError):
                op(cid)
        assert not store.has(cid)

    @pytest.mark.parametrize("text", ["Qmbad", "not-a-cid", "", "bafy!!!", "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYeca0", "bafkreibm6jg3ux5"])
    def test_malformed_cid_is_a_parse_error(self, store, text):
        with pytest.raises(MalformedCidError):
            store.cat(text)

    def test_bad_paths_are_clear_errors(self, store, tmp_path):
        with pytest.raises(InputPathError, match="directory"):
            store.add(tmp_path)
        with pytest.raises(InputPathError, match="no such file"):
            store.add(str(tmp_path / "missing.bin"))
        with pytest.raises(InputPathError, match="encode"):
            store.add("hello")  # a str is a path; the hint says how to add text
        with pytest.raises(UnsupportedContentError):
            store.add(12345)
        with pytest.raises(UnsupportedContentError):
            store.add(io.StringIO("text"))

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_unreadable_path(self, store, tmp_path):
        path = tmp_path / "secret.bin"
        path.write_bytes(b"x")
        path.chmod(0)
        with pytest.raises(InputPathError, match="cannot read"):
            store.add(path)

    def test_path_that_fails_mid_read(self, store):
        with pytest.raises(InputPathError, match="failed"):
            store.add("/proc/self/mem")  # open succeeds, the first read fails with EIO

    def test_concurrent_adds_of_the_same_content(self, store):
        data = unique(3 * MiB, "concurrent")
        results, errors = [], []

        def add():
            try:
                results.append(store.add(data))
            except Exception as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=add) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(results)) == 1
        assert store.cat(results[0]) == data

    def test_every_error_is_a_din_lab_error(self, store):
        with pytest.raises(DinLabError):
            store.cat(cid_of(b"never added by anyone \x00\x01"))


# ------------------------------------------------------------------------------------------------
# backends


class TestEmbeddedMemory(ContentStoreSuite):
    @pytest.fixture
    def store(self):
        return EmbeddedStore()


class TestEmbeddedDisk(ContentStoreSuite):
    @pytest.fixture
    def store(self, tmp_path):
        return EmbeddedStore(path=tmp_path / "store")


class TestKuboOverDinLabDaemon(ContentStoreSuite):
    @pytest.fixture
    def store(self, ipfs_daemon):
        with KuboStore(ipfs_daemon["url"]) as store:
            yield store


@pytest.mark.skipif(not os.environ.get("DIN_LAB_KUBO_URL"), reason="set DIN_LAB_KUBO_URL to a real Kubo RPC API")
class TestRealKubo(ContentStoreSuite):
    @pytest.fixture
    def store(self):
        with KuboStore(os.environ["DIN_LAB_KUBO_URL"]) as store:
            yield store


# ------------------------------------------------------------------------------------------------
# the embedded store's own guarantees


def test_corrupted_block_on_disk_is_an_integrity_error_never_data(tmp_path):
    store = EmbeddedStore(path=tmp_path / "s")
    data = unique(MiB, "corrupt")
    cid = store.add(data)
    leaf = decode_block(cid, store.get_block(cid)).links[2]
    path = block_path(store, leaf)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    received = bytearray()
    with pytest.raises(IntegrityError, match=str(leaf)) as err:
        for chunk in store.iter_cat(cid):
            received += chunk
    assert err.value.cid == str(leaf)
    assert bytes(received) == data[:2 * 262144]  # the sound blocks before it, nothing of the bad one
    with pytest.raises(IntegrityError):
        store.get_block(leaf)
    with pytest.raises(IntegrityError):
        store.gc()  # refuses to collect while a pinned DAG is unreadable
    # the root itself corrupted: cat fails before yielding anything
    root = block_path(store, cid)
    root.write_bytes(root.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match=str(cid)):
        store.cat(cid)


def test_disk_full_mid_add_leaves_nothing_visible(tmp_path, monkeypatch):
    store = EmbeddedStore(path=tmp_path / "s")
    before = store.add(unique(5000, "before"))
    blocks_before = sorted(p.name for p in (store.path / "blocks").rglob("*") if p.is_file())
    real_write, calls = embedded_module._write_file, []

    def write_until_full(path, data, *, durable):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, durable=durable)

    monkeypatch.setattr(embedded_module, "_write_file", write_until_full)
    data = unique(2 * MiB, "full")
    with pytest.raises(StoreWriteError, match="disk is full"):
        store.add(data)
    monkeypatch.undo()
    assert sorted(p.name for p in (store.path / "blocks").rglob("*") if p.is_file()) == blocks_before
    assert not any((store.path / "staging").iterdir())
    assert not store.has(cid_of(data))
    assert store.pins() == {before}
    assert store.cat(store.add(data)) == data  # and the store still works


def test_a_killed_add_leaves_no_partial_content(tmp_path):
    """A process killed mid-add: no block of it is visible; gc sweeps its staging leftovers."""
    path = tmp_path / "s"
    EmbeddedStore(path=path)
    script = (
        "import sys, time\n"
        "from din_lab.storage import EmbeddedStore\n"
        "def slow():\n"
        "    for i in range(1000):\n"
        "        yield bytes([i % 251]) * 262144\n"
        "        if i == 6: print('started', flush=True)\n"
        "        time.sleep(0.01 if i < 6 else 10)\n"
        f"EmbeddedStore(path={str(path)!r}).add(slow())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.3)
        assert any((path / "staging").iterdir())  # the add is under way, in staging
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = EmbeddedStore(path=path)
    assert not [p for p in (path / "blocks").rglob("*") if p.is_file()]
    assert store.pins() == frozenset()
    store.gc()
    assert not any((path / "staging").iterdir())


def test_concurrent_adds_from_processes(tmp_path):
    path = tmp_path / "s"
    EmbeddedStore(path=path)
    data_path = tmp_path / "data.bin"
    data_path.write_bytes(unique(3 * MiB, "procs"))
    script = f"from din_lab.storage import EmbeddedStore; print(EmbeddedStore(path={str(path)!r}).add({str(data_path)!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    cids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(cids) == 1
    store = EmbeddedStore(path=path)
    assert store.cat(cids.pop()) == data_path.read_bytes()
    assert not any((path / "staging").iterdir())


def test_gc_while_adding_never_loses_pinned_content(tmp_path):
    store = EmbeddedStore(path=tmp_path / "s")
    added, stop = [], threading.Event()

    def collector():
        while not stop.is_set():
            store.gc()

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    try:
        for i in range(15):
            data = unique(300_000, f"race{i}")
            added.append((store.add(data), data))
    finally:
        stop.set()
        gc_thread.join()
    for cid, data in added:
        assert store.cat(cid) == data


def test_add_streams_in_constant_memory(tmp_path):
    store = EmbeddedStore(path=tmp_path / "s")
    piece = unique(MiB, "stream")

    def big():
        for i in range(64):  # 64 MiB, produced lazily
            yield piece[i:] + piece[:i]

    tracemalloc.start()
    try:
        cid = store.add(big())
        _, peak_add = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = sum(len(chunk) for chunk in store.iter_cat(cid))
        _, peak_cat = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 64 * MiB
    assert peak_add < 8 * MiB and peak_cat < 8 * MiB, (peak_add, peak_cat)


def test_refuses_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="not a DIN Lab store"):
        EmbeddedStore(path=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        EmbeddedStore(path=tmp_path / "file")


def test_durable_store_round_trip(tmp_path):
    store = EmbeddedStore(path=tmp_path / "s", durable=True)
    data = unique(600_000, "durable")
    assert store.cat(store.add(data)) == data


def test_repeated_blocks_are_stored_once(tmp_path):
    store = EmbeddedStore(path=tmp_path / "s")
    cid = store.add(b"\0" * (10 * 262144))
    stat = store.stat(cid)
    assert stat.links == 10 and stat.blocks == 2  # the root and one distinct leaf
    assert len([p for p in (store.path / "blocks").rglob("*") if p.is_file()]) == 2


def test_kubo_store_survives_a_closed_keep_alive_connection(ipfs_daemon, tmp_path):
    """One kept-alive connection: when the node has closed it, a read or a small add is sent again
    on a fresh one; a streamed add after a long idle starts on a fresh connection (it cannot be
    sent twice)."""
    import socket

    from din_lab.storage import kubo

    with KuboStore(ipfs_daemon["url"]) as store:
        data = unique(5000, "keepalive")
        cid = store.add(data, cid_version=1)
        store._conn.sock.shutdown(socket.SHUT_RDWR)  # what a node's idle timeout does
        assert store.cat(cid) == data
        store._conn.sock.shutdown(socket.SHUT_RDWR)
        assert store.add(data, cid_version=1) == cid
        big = tmp_path / "big"
        big.write_bytes(unique(kubo._PIECE + 10, "stream"))
        store._used -= kubo.IDLE_SECONDS + 1  # long idle: the streamed add opens a fresh connection
        store._conn.sock.shutdown(socket.SHUT_RDWR)
        assert store.add(big, cid_version=1) == cid_of(big.read_bytes(), params=ImportParams(cid_version=1))
