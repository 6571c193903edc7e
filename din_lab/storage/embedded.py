"""The lab's own IPFS: a UnixFS importer over a blockstore on disk (or in memory), no daemon.

CIDs are exactly ``ipfs add``'s (:mod:`din_lab.storage.unixfs`). Guarantees:

- **Streaming.** ``add`` reads one chunk at a time and ``iter_cat`` yields one block at a time:
  memory does not grow with the file.
- **Integrity.** Every block read is hashed and compared with its CID; a block that does not match
  raises :class:`~din_lab.errors.IntegrityError` naming the CID and is never returned.
- **Atomic adds.** An add writes its blocks into a private staging area; only when the whole DAG is
  there are they moved into the blockstore (one atomic rename each, leaves first, root last) and the
  pin recorded. A crash or a full disk mid-add leaves nothing visible: the root never appears, the
  staging leftovers are swept by the next ``gc``.
- **Concurrency.** Adds of the same content from several threads or processes are safe (identical
  blocks replace each other atomically). ``gc`` takes an exclusive lock (``fcntl.flock`` on disk)
  that adds and pins share, so it never removes a block an add is committing.

On-disk layout under ``path``::

    din-lab-store.json        format marker
    blocks/ab/abcdef...       one file per block, named by the hex SHA-256 of its bytes
    pins/<cid>                one empty file per recursive pin
    staging/<id>/             blocks of adds in progress
    lock                      flock target
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from din_lab.cid import V1_RAW, Cid
from din_lab.errors import (
    ContentNotFoundError,
    IntegrityError,
    NotPinnedError,
    StorageError,
    StoreWriteError,
)
from din_lab.storage.base import CidLike, Content, ContentStat, ContentStore, GcReport, iter_content_chunks
from din_lab.storage.unixfs import FileImporter, ImportParams, decode_block, read_file, walk

log = logging.getLogger(__name__)

_MARKER = "din-lab-store.json"
_FORMAT = {"format": "din-lab-blockstore", "version": 1, "block_key": "sha256-hex"}


def _write_file(path: Path, data: bytes, *, durable: bool) -> None:
    """Write ``data`` to a new file (the one place blocks reach the disk: tests inject faults here)."""
    with open(path, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())


class _Stage:
    """The blocks of one add, invisible until :meth:`commit`."""

    def put(self, cid: Cid, block: bytes) -> None:
        raise NotImplementedError

    def commit(self, root: Cid, *, pin: bool) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _Backend:
    """Blocks by digest, pins by CID, a lock: what EmbeddedStore needs from its medium."""

    def read(self, digest: bytes) -> bytes | None:
        raise NotImplementedError

    def exists(self, digest: bytes) -> bool:
        raise NotImplementedError

    def stage(self) -> _Stage:
        raise NotImplementedError

    def digests(self) -> Iterator[bytes]:
        raise NotImplementedError

    def remove(self, digest: bytes) -> int:
        raise NotImplementedError

    def pins(self) -> set[Cid]:
        raise NotImplementedError

    def add_pin(self, cid: Cid) -> None:
        raise NotImplementedError

    def remove_pin(self, cid: Cid) -> bool:
        raise NotImplementedError

    def shared(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def exclusive(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def sweep(self) -> None:
        """Remove leftovers of interrupted adds (called under the exclusive lock)."""


# ---------------------------------------------------------------------------------------------
# memory


class _MemoryStage(_Stage):
    def __init__(self, backend: _MemoryBackend) -> None:
        self._backend = backend
        self._blocks: dict[bytes, bytes] = {}

    def put(self, cid: Cid, block: bytes) -> None:
        self._blocks[cid.digest] = block

    def commit(self, root: Cid, *, pin: bool) -> None:
        with self._backend.lock:
            self._backend.blocks.update(self._blocks)
            if pin:
                self._backend.pinned.add(root)
        self._blocks = {}

    def abort(self) -> None:
        self._blocks = {}


class _MemoryBackend(_Backend):
    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.pinned: set[Cid] = set()
        self.lock = threading.RLock()

    def read(self, digest: bytes) -> bytes | None:
        return self.blocks.get(digest)

    def exists(self, digest: bytes) -> bool:
        return digest in self.blocks

    def stage(self) -> _Stage:
        return _MemoryStage(self)

    def digests(self) -> Iterator[bytes]:
        return iter(list(self.blocks))

    def remove(self, digest: bytes) -> int:
        return len(self.blocks.pop(digest, b""))

    def pins(self) -> set[Cid]:
        with self.lock:
            return set(self.pinned)

    def add_pin(self, cid: Cid) -> None:
        with self.lock:
            self.pinned.add(cid)

    def remove_pin(self, cid: Cid) -> bool:
        with self.lock:
            if cid in self.pinned:
                self.pinned.remove(cid)
                return True
            return False

    def shared(self) -> contextlib.AbstractContextManager:
        return self.lock

    def exclusive(self) -> contextlib.AbstractContextManager:
        return self.lock


# ---------------------------------------------------------------------------------------------
# disk


class _DiskStage(_Stage):
    def __init__(self, backend: _DiskBackend) -> None:
        self._backend = backend
        self._dir = backend.root / "staging" / uuid.uuid4().hex
        self._dir.mkdir(parents=True)
        self._order: list[bytes] = []
        self._seen: set[bytes] = set()

    def put(self, cid: Cid, block: bytes) -> None:
        digest = cid.digest
        if digest in self._seen or self._backend.exists(digest):
            return
        self._seen.add(digest)
        self._order.append(digest)
        try:
            _write_file(self._dir / digest.hex(), block, durable=self._backend.durable)
        except OSError as e:
            reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
            raise StoreWriteError(f"writing block {cid} to {self._backend.root} failed: {reason}") from e

    def commit(self, root: Cid, *, pin: bool) -> None:
        blocks = self._backend.root / "blocks"
        try:
            for digest in self._order:  # leaves first, root last: content is visible once complete
                name = digest.hex()
                target_dir = blocks / name[:2]
                target_dir.mkdir(exist_ok=True)
                os.replace(self._dir / name, target_dir / name)
            if self._backend.durable:
                for digest in self._order:
                    self._backend.fsync_dir(blocks / digest.hex()[:2])
            if pin:
                self._backend.add_pin(root)
        except OSError as e:
            raise StoreWriteError(f"committing {root} to {self._backend.root} failed: {e.strerror or e}") from e
        finally:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class _DiskBackend(_Backend):
    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.durable = durable
        marker = root / _MARKER
        if root.exists() and not root.is_dir():
            raise StorageError(f"{root} is a file, not a store directory")
        if root.is_dir() and any(root.iterdir()) and not marker.exists():
            raise StorageError(f"{root} is not empty and not a DIN Lab store (no {_MARKER}): refusing to use it")
        try:
            for sub in ("blocks", "pins", "staging"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                tmp = root / f".{_MARKER}.{uuid.uuid4().hex}"
                tmp.write_text(json.dumps(_FORMAT, indent=1))
                os.replace(tmp, marker)
            (root / "lock").touch()
        except OSError as e:
            raise StoreWriteError(f"cannot create a store at {root}: {e.strerror or e}") from e
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError) as e:
            raise StorageError(f"{marker} is unreadable or corrupted: {e}") from e
        if not isinstance(found, dict) or found.get("format") != _FORMAT["format"] or found.get("version") != _FORMAT["version"]:
            raise StorageError(f"{root} holds a store of an unsupported format: {found}")

    def _path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.root / "blocks" / name[:2] / name

    def read(self, digest: bytes) -> bytes | None:
        try:
            return self._path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, digest: bytes) -> bool:
        return self._path(digest).exists()

    def stage(self) -> _Stage:
        try:
            return _DiskStage(self)
        except OSError as e:
            raise StoreWriteError(f"cannot start an add in {self.root}: {e.strerror or e}") from e

    def digests(self) -> Iterator[bytes]:
        for shard in sorted((self.root / "blocks").iterdir()):
            for entry in sorted(shard.iterdir()):
                try:
                    yield bytes.fromhex(entry.name)
                except ValueError:
                    log.warning("ignoring a stray file in the blockstore: %s", entry)

    def remove(self, digest: bytes) -> int:
        path = self._path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return 0

    def pins(self) -> set[Cid]:
        out = set()
        for entry in (self.root / "pins").iterdir():
            if not entry.name.startswith("."):
                out.add(Cid.parse(entry.name))
        return out

    def add_pin(self, cid: Cid) -> None:
        target = self.root / "pins" / str(cid)
        if target.exists():
            return
        tmp = self.root / "pins" / f".{cid}.{uuid.uuid4().hex}"
        tmp.touch()
        os.replace(tmp, target)

    def remove_pin(self, cid: Cid) -> bool:
        try:
            (self.root / "pins" / str(cid)).unlink()
            return True
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        with open(self.root / "lock", "rb") as f:
            fcntl.flock(f.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def shared(self) -> contextlib.AbstractContextManager:
        return self._flock(fcntl.LOCK_SH)

    def exclusive(self) -> contextlib.AbstractContextManager:
        return self._flock(fcntl.LOCK_EX)

    def sweep(self) -> None:
        for entry in (self.root / "staging").iterdir():
            log.info("removing the leftovers of an interrupted add: %s", entry)
            shutil.rmtree(entry, ignore_errors=True)
        for entry in (self.root / "pins").iterdir():
            if entry.name.startswith("."):
                entry.unlink(missing_ok=True)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# the store


class EmbeddedStore(ContentStore):
    """IPFS in the kernel. ``EmbeddedStore(path=...)`` keeps blocks on disk (created if absent);
    ``EmbeddedStore()`` keeps them in memory. ``durable=True`` fsyncs every block and directory
    (slower; survives power loss, not only process crashes)."""

    def __init__(self, *, path: str | os.PathLike | None = None, durable: bool = False) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._backend: _Backend = _DiskBackend(self.path, durable=durable) if self.path else _MemoryBackend()
        self.name = f"embedded ({self.path})" if self.path else "embedded (memory)"

    def __repr__(self) -> str:
        return f"EmbeddedStore(path={str(self.path) if self.path else None!r})"

    # -- blocks ---------------------------------------------------------------------------

    def get_block(self, cid: CidLike) -> bytes:
        cid = Cid.coerce(cid)
        block = self._backend.read(cid.digest)
        if block is None:
            raise ContentNotFoundError(f"{cid} is not in this store", cid=str(cid))
        if hashlib.sha256(block).digest() != cid.digest:
            raise IntegrityError(f"block {cid} is corrupted: its bytes do not hash to its CID", cid=str(cid))
        return block

    # -- content ----------------------------------------------------------------------------

    def add(self, content: Content, *, cid_version: int = 0, only_hash: bool = False, pin: bool = True,
            params: ImportParams | None = None) -> Cid:
        params = params or ImportParams(cid_version=cid_version)
        chunks = iter_content_chunks(content, params.chunk_size)
        if only_hash:
            importer = FileImporter(params)
            for chunk in chunks:
                importer.add_chunk(chunk)
            return importer.finish()
        with self._backend.shared():
            stage = self._backend.stage()
            try:
                importer = FileImporter(params, stage.put)
                for chunk in chunks:
                    importer.add_chunk(chunk)
                root = importer.finish()
                stage.commit(root, pin=pin)
            except BaseException:
                stage.abort()
                raise
        log.debug("added %s (%d bytes, %d blocks)", root, importer.size, importer.blocks)
        return root

    def iter_cat(self, cid: CidLike) -> Iterator[bytes]:
        cid = Cid.coerce(cid)
        self.get_block(cid)  # raise not-found before the caller starts consuming
        return read_file(cid, self.get_block)

    def has(self, cid: CidLike) -> bool:
        return self._backend.exists(Cid.coerce(cid).digest)

    def stat(self, cid: CidLike) -> ContentStat:
        cid = Cid.coerce(cid)
        block = self.get_block(cid)
        root = decode_block(cid, block)
        sizes = {c.digest: size for c, size, _ in walk(cid, self.get_block)}
        return ContentStat(cid=cid, size=root.filesize, cumulative_size=len(block) + sum(root.tsizes),
                           links=len(root.links), blocks=len(sizes), dag_size=sum(sizes.values()))

    # -- pins and gc --------------------------------------------------------------------------

    def pin(self, cid: CidLike) -> None:
        cid = Cid.coerce(cid)
        with self._backend.shared():
            for block_cid, _, node in walk(cid, self.get_block):  # every block must be here, and sound
                if node is None and not self._backend.exists(block_cid.digest):
                    raise ContentNotFoundError(f"{block_cid} (below {cid}) is not in this store", cid=str(block_cid))
            self._backend.add_pin(cid)

    def unpin(self, cid: CidLike) -> None:
        cid = Cid.coerce(cid)
        if not self._backend.remove_pin(cid):
            raise NotPinnedError(f"{cid} is not pinned")

    def pins(self) -> frozenset[Cid]:
        return frozenset(self._backend.pins())

    def gc(self) -> GcReport:
        with self._backend.exclusive():
            self._backend.sweep()
            keep: set[bytes] = set()
            for root in self._backend.pins():
                if not self._backend.exists(root.digest):
                    log.warning("pinned %s has no root block; keeping nothing for it", root)
                    continue
                for block_cid, _, _ in walk(root, self.get_block):
                    keep.add(block_cid.digest)
            removed: list[Cid] = []
            freed = 0
            for digest in list(self._backend.digests()):
                if digest not in keep:
                    freed += self._backend.remove(digest)
                    removed.append(Cid(digest=digest, kind=V1_RAW))
        log.info("gc removed %d blocks (%d bytes)", len(removed), freed)
        return GcReport(removed=tuple(removed), bytes_freed=freed)
