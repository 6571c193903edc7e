"""``KuboStore``: the ContentStore interface over a Kubo node's HTTP RPC API.

Plain HTTP/1.1 on one kept-alive connection (``http.client``), not ``ipfshttpclient``: that client's
``connect()`` refuses every Kubo since 0.8 (NOTES.md); and not ``requests``, whose per-request
preparation cost more than our daemon's answer to a small block. The commands used (``add``, ``cat``, ``block/get``, ``block/stat``,
``pin/add``, ``pin/rm``, ``pin/ls``, ``repo/gc``, ``files/stat``, ``dag/stat``, ``version``) have
had these options and answers since Kubo 0.18, and ``dag/stat`` answers in both its pre-0.26 and
its current form; ``din-lab ipfs daemon`` serves the same subset over the embedded store.

By default every read is asked ``offline=true``: a CID the node does not hold fails at once as
not-found instead of the node searching the network for it. Pass ``offline=False`` to let the node
fetch from its peers (then ``timeout`` bounds each request).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from din_lab.cid import Cid
from din_lab.errors import (
    ContentNotFoundError,
    IntegrityError,
    NotPinnedError,
    RemoteStoreError,
    UnsupportedContentError,
)
from din_lab.storage.base import CidLike, Content, ContentStat, ContentStore, GcReport, iter_content_chunks
from din_lab.storage.unixfs import DEFAULT_MAX_LINKS, ImportParams, read_file

log = logging.getLogger(__name__)

_PIECE = 1 << 20
IDLE_SECONDS = 2.0  # a kept-alive connection idle longer is renewed before a streamed upload
# how a node's closing of a kept-alive connection shows (a timeout or a refusal is not one of them)
CLOSED_BY_PEER = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionResetError,
                  BrokenPipeError, ConnectionAbortedError)


class _Response:
    """A whole HTTP answer: status and body."""

    def __init__(self, status: int, content: bytes) -> None:
        self.status_code, self.content = status, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class KuboStore(ContentStore):
    """A Kubo node (or ``din-lab ipfs daemon``) at ``url``, e.g. ``http://127.0.0.1:5001``."""

    def __init__(self, url: str = "http://127.0.0.1:5001", *, offline: bool = True, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteStoreError(f"not an http(s) URL of a Kubo RPC API: {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self.offline = offline
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0  # when the connection last answered
        self._lock = threading.Lock()
        self.version = str(self._json("version").get("Version", "unknown"))
        self.name = f"kubo ({self.url}, version {self.version})"

    def __repr__(self) -> str:
        return f"KuboStore({self.url!r}, version={self.version!r})"

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- HTTP --------------------------------------------------------------------------------

    def _post(self, command: str, *, params: dict[str, Any] | None = None,
              data: Any = None, headers: dict[str, str] | None = None, cid: Cid | None = None) -> _Response:
        query = dict(params or {})
        if self.offline and command != "add":
            query.setdefault("offline", "true")
        path = f"{self._base}/api/v0/{command}?{urlencode(query)}"
        replayable = (data is None or isinstance(data, bytes | str)) and command != "pin/rm"  # pin/rm twice fails
        with self._lock:
            # a streamed body cannot be sent twice: never start one on a connection idle long
            # enough for the node to have closed it
            if not replayable and time.monotonic() - self._used > IDLE_SECONDS:
                self._drop()
            for attempt in (1, 2):
                fresh = self._conn is None
                if fresh:
                    cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                    self._conn = cls(self._host, self._port, timeout=self.timeout)
                try:
                    self._conn.request("POST", path, body=data, headers=headers or {})
                    answer = self._conn.getresponse()
                    response = _Response(answer.status, answer.read())
                    self._used = time.monotonic()
                    break
                except CLOSED_BY_PEER as e:  # a kept-alive connection the node closed: once more, on a new one
                    self._drop()
                    if attempt == 2 or fresh or not replayable:
                        raise RemoteStoreError(f"IPFS node at {self.url} is unreachable ({command}): {e}") from e
                except (OSError, http.client.HTTPException) as e:  # refused, timed out: not retried
                    self._drop()
                    raise RemoteStoreError(f"IPFS node at {self.url} is unreachable ({command}): {e}") from e
                except BaseException:  # e.g. the content's own error while streaming it: the request is half sent
                    self._drop()
                    raise
        if response.status_code != 200:
            raise self._error(command, response, cid)
        return response

    def _error(self, command: str, response: Any, cid: Cid | None) -> Exception:
        try:
            message = str(response.json().get("Message", ""))
        except ValueError:
            message = response.text.strip()[:300]
        lowered = message.lower()
        if cid is not None and any(s in lowered for s in ("not found", "could not find", "no link named")):
            return ContentNotFoundError(f"{cid} is not on the IPFS node at {self.url}: {message}", cid=str(cid))
        if cid is not None and "different hash" in lowered:
            return IntegrityError(f"{cid} is corrupted on the IPFS node at {self.url}: {message}", cid=str(cid))
        if "not pinned" in lowered:
            return NotPinnedError(f"{cid} is not pinned on {self.url}")
        if response.status_code == 404:
            return RemoteStoreError(f"{self.url} does not serve /api/v0/{command}: is it a Kubo RPC API?")
        return RemoteStoreError(f"IPFS node at {self.url} refused {command} (HTTP {response.status_code}): {message}")

    def _json(self, command: str, **kwargs: Any) -> dict[str, Any]:
        response = self._post(command, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise RemoteStoreError(f"{command} on {self.url} answered with something that is not JSON") from e

    def _json_lines(self, command: str, **kwargs: Any) -> list[dict[str, Any]]:
        response = self._post(command, **kwargs)
        try:
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]
        except ValueError as e:
            raise RemoteStoreError(f"{command} on {self.url} answered with malformed JSON lines") from e

    # -- content -----------------------------------------------------------------------------

    def add(self, content: Content, *, cid_version: int = 0, only_hash: bool = False, pin: bool = True,
            params: ImportParams | None = None) -> Cid:
        params = params or ImportParams(cid_version=cid_version)
        if params.max_links != DEFAULT_MAX_LINKS:
            raise UnsupportedContentError(f"Kubo's add has no option for {params.max_links} links per node")
        name = Path(content).name if isinstance(content, (str, os.PathLike)) else "file"
        boundary = uuid.uuid4().hex
        chunks = iter_content_chunks(content, _PIECE)
        first = next(chunks)  # a bad path fails here, before any request is made

        def body() -> Iterator[bytes]:
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n").encode()
            yield first
            yield from chunks
            yield f"\r\n--{boundary}--\r\n".encode()

        query = {"cid-version": params.cid_version, "raw-leaves": str(params.leaves_raw).lower(),
                 "chunker": f"size-{params.chunk_size}", "only-hash": str(only_hash).lower(),
                 "pin": str(pin).lower(), "quieter": "true"}
        parts = body()
        if isinstance(content, bytes | bytearray | memoryview) and len(content) <= _PIECE:
            parts = b"".join(parts)  # one send with a length (and safe to resend on a closed connection)
        lines = self._json_lines("add", params=query, data=parts,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if not lines or "Hash" not in lines[-1]:
            raise RemoteStoreError(f"add on {self.url} returned no CID: {lines!r}")
        return Cid.parse(lines[-1]["Hash"])

    def iter_cat(self, cid: CidLike) -> Iterator[bytes]:
        """The content of ``cid``, read block by block with ``block/get`` and every block checked
        against its hash here, so a faulty or lying node cannot hand back wrong bytes."""
        cid = Cid.coerce(cid)
        root = self.get_block(cid)  # not-found or corrupted root: raise before the caller starts reading
        return read_file(cid, lambda c: root if c == cid else self.get_block(c))

    def get_block(self, cid: CidLike) -> bytes:
        cid = Cid.coerce(cid)
        block = self._post("block/get", params={"arg": str(cid)}, cid=cid).content
        if hashlib.sha256(block).digest() != cid.digest:
            raise IntegrityError(f"block {cid} from {self.url} does not hash to its CID", cid=str(cid))
        return block

    def has(self, cid: CidLike) -> bool:
        cid = Cid.coerce(cid)
        try:
            self._json("block/stat", params={"arg": str(cid), "offline": "true"}, cid=cid)
        except ContentNotFoundError:
            return False
        return True

    def stat(self, cid: CidLike) -> ContentStat:
        cid = Cid.coerce(cid)
        files = self._json("files/stat", params={"arg": f"/ipfs/{cid}"}, cid=cid)
        dag = self._json("dag/stat", params={"arg": str(cid), "progress": "false"}, cid=cid)
        if "DagStats" in dag:  # Kubo >= 0.26
            entry = dag["DagStats"][0]
            blocks, dag_size = int(entry["NumBlocks"]), int(entry["Size"])
        else:
            blocks, dag_size = int(dag["NumBlocks"]), int(dag["Size"])
        return ContentStat(cid=cid, size=int(files["Size"]), cumulative_size=int(files["CumulativeSize"]),
                           links=int(files["Blocks"]), blocks=blocks, dag_size=dag_size)

    # -- pins and gc -------------------------------------------------------------------------

    def pin(self, cid: CidLike) -> None:
        cid = Cid.coerce(cid)
        self._json("pin/add", params={"arg": str(cid), "recursive": "true"}, cid=cid)

    def unpin(self, cid: CidLike) -> None:
        cid = Cid.coerce(cid)
        self._json("pin/rm", params={"arg": str(cid)}, cid=cid)

    def pins(self) -> frozenset[Cid]:
        keys = self._json("pin/ls", params={"type": "recursive"}).get("Keys") or {}
        return frozenset(Cid.parse(k) for k in keys)

    def gc(self) -> GcReport:
        removed = []
        for line in self._json_lines("repo/gc"):
            if line.get("Error"):
                raise RemoteStoreError(f"gc on {self.url} failed: {line['Error']}")
            key = line.get("Key")
            if key:
                removed.append(Cid.parse(key["/"] if isinstance(key, dict) else key))
        return GcReport(removed=tuple(removed), bytes_freed=None)

