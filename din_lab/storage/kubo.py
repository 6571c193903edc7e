"""``KuboStore``: the ContentStore interface over a Kubo node's HTTP RPC API.

Plain HTTP (``requests``), not ``ipfshttpclient``: that client's ``connect()`` refuses every Kubo
since 0.8 (NOTES.md). The commands used (``add``, ``cat``, ``block/get``, ``block/stat``,
``pin/add``, ``pin/rm``, ``pin/ls``, ``repo/gc``, ``files/stat``, ``dag/stat``, ``version``) have
had these options and answers since Kubo 0.18, and ``dag/stat`` answers in both its pre-0.26 and
its current form; ``din-lab ipfs daemon`` serves the same subset over the embedded store.

By default every read is asked ``offline=true``: a CID the node does not hold fails at once as
not-found instead of the node searching the network for it. Pass ``offline=False`` to let the node
fetch from its peers (then ``timeout`` bounds each request).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from din_lab.cid import Cid
from din_lab.errors import (
    ContentNotFoundError,
    IntegrityError,
    MissingDependencyError,
    NotPinnedError,
    RemoteStoreError,
    UnsupportedContentError,
)
from din_lab.storage.base import CidLike, Content, ContentStat, ContentStore, GcReport, iter_content_chunks
from din_lab.storage.unixfs import DEFAULT_MAX_LINKS, ImportParams, read_file

log = logging.getLogger(__name__)

_PIECE = 1 << 20


class KuboStore(ContentStore):
    """A Kubo node (or ``din-lab ipfs daemon``) at ``url``, e.g. ``http://127.0.0.1:5001``."""

    def __init__(self, url: str = "http://127.0.0.1:5001", *, offline: bool = True, timeout: float = 120.0) -> None:
        try:
            import requests
        except ImportError as e:  # pragma: no cover - requests ships with the lab's stack
            raise MissingDependencyError("KuboStore needs the 'requests' package: pip install requests") from e
        self._requests = requests
        self.url = url.rstrip("/")
        self.offline = offline
        self.timeout = timeout
        self._session = requests.Session()
        self.version = str(self._json("version").get("Version", "unknown"))
        self.name = f"kubo ({self.url}, version {self.version})"

    def __repr__(self) -> str:
        return f"KuboStore({self.url!r}, version={self.version!r})"

    # -- HTTP --------------------------------------------------------------------------------

    def _post(self, command: str, *, params: dict[str, Any] | None = None, stream: bool = False,
              data: Any = None, headers: dict[str, str] | None = None, cid: Cid | None = None) -> Any:
        query = dict(params or {})
        if self.offline and command != "add":
            query.setdefault("offline", "true")
        try:
            response = self._session.post(f"{self.url}/api/v0/{command}", params=query, data=data,
                                          headers=headers, stream=stream, timeout=self.timeout)
        except self._requests.RequestException as e:
            raise RemoteStoreError(f"IPFS node at {self.url} is unreachable ({command}): {e}") from e
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
        lines = self._json_lines("add", params=query, data=body(),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if not lines or "Hash" not in lines[-1]:
            raise RemoteStoreError(f"add on {self.url} returned no CID: {lines!r}")
        return Cid.parse(lines[-1]["Hash"])

    def iter_cat(self, cid: CidLike) -> Iterator[bytes]:
        """The content of ``cid``, read block by block with ``block/get`` and every block checked
        against its hash here, so a faulty or lying node cannot hand back wrong bytes."""
        cid = Cid.coerce(cid)
        self.get_block(cid)  # not-found or corrupted root: raise before the caller starts reading
        return read_file(cid, self.get_block)

    def get_block(self, cid: CidLike) -> bytes:
        cid = Cid.coerce(cid)
        response = self._post("block/get", params={"arg": str(cid)}, cid=cid, stream=True)
        try:
            block = response.raw.read()  # one read, not requests' 10 kB iteration
        except Exception as e:
            raise RemoteStoreError(f"reading block {cid} from {self.url} broke off: {e}") from e
        finally:
            response.close()
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

    def close(self) -> None:
        self._session.close()
