"""A bare JSON-RPC client over one kept-alive HTTP connection, for the calls the lab makes most.

web3's HTTP provider spends about a millisecond of Python per request before the node sees it
(requests' session and proxy resolution, five middlewares); the lab reads hundreds of views per
protocol step. :class:`JsonRpcClient` posts the JSON itself, and :meth:`JsonRpcClient.batch` sends
many requests in one POST (JSON-RPC 2.0 batches, which anvil, geth and most providers accept).
Transactions and receipts still go through web3.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from din_lab.errors import ChainError


class JsonRpcClient:
    """JSON-RPC 2.0 over HTTP(S) to ``url``; thread-safe (one request at a time)."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainError(f"not an HTTP JSON-RPC URL: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """The response object (``result`` or ``error``) of one request."""
        (response,) = self.batch([(method, params)])
        return response

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """The response objects of ``calls``, in their order, from one POST."""
        if not calls:
            return []
        with self._lock:
            ids = [next(self._ids) for _ in calls]
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls, strict=True)]
            payload = json.dumps(body[0] if len(body) == 1 else body).encode()
            answer = self._post(payload)
        responses = answer if isinstance(answer, list) else [answer]
        by_id = {r.get("id"): r for r in responses if isinstance(r, dict)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            if len(responses) == 1 and isinstance(responses[0], dict) and "error" in responses[0]:
                raise ChainError(f"{self.url} refused the request: {responses[0]['error']}")
            raise ChainError(f"{self.url} answered {len(responses)} of {len(ids)} batched requests")
        return [by_id[i] for i in ids]

    def _post(self, payload: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection()
            try:
                conn.request("POST", self._path, body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 2:
                    raise ChainError(f"no JSON-RPC answer from {self.url}: {e}") from e
                continue
            if response.status != 200:
                raise ChainError(f"{self.url} answered HTTP {response.status}: {data[:200]!r}")
            try:
                return json.loads(data)
            except ValueError as e:
                raise ChainError(f"{self.url} answered something that is not JSON: {data[:200]!r}") from e
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
