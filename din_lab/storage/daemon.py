"""``din-lab ipfs daemon``: a ContentStore served over the subset of Kubo's RPC API the lab uses.

Tools written for IPFS (ipfshttpclient, the npm ``kubo-rpc-client``, curl, our own
:class:`~din_lab.storage.kubo.KuboStore`) can then read and write the lab's content while a
notebook runs. Served on 127.0.0.1 by the CLI. Like Kubo, every command is a ``POST /api/v0/<command>``
with its arguments in the query string (``arg=...``) and files as ``multipart/form-data``
(chunked request bodies included); errors are JSON ``{"Message", "Code", "Type": "error"}``
with status 400 (bad argument) or 500, and ``GET`` is refused with 405.

Commands: ``add`` (``cid-version``, ``raw-leaves``, ``only-hash``, ``pin``, ``chunker=size-N``),
``cat`` (``offset``, ``length``), ``block/get``, ``block/stat``, ``pin/add``, ``pin/rm``,
``pin/ls``, ``repo/gc``, ``files/stat``, ``dag/stat``, ``version``, ``id``. Options that would
change the result in ways the embedded store does not implement (``trickle``,
``wrap-with-directory``, ``nocopy``, ``inline``, another hash or chunker, directories) are
refused with an error rather than ignored, so a CID is never silently different from Kubo's.

Browsers. Like Kubo, a request is refused with ``403 - Forbidden`` (plain text) before any command
runs when a web page could have sent it: its ``Origin``, or the origin of its ``Referer``, is not
one of the daemon's own (``http(s)://127.0.0.1:PORT``, ``[::1]``, ``localhost`` and the bind
address, on the port it listens on) nor one given in ``allowed_origins`` (``"*"``: any, as in
Kubo's ``API.HTTPHeaders.Access-Control-Allow-Origin``); or it is a ``POST`` from a browser
(``User-Agent: Mozilla...``) with neither header. An allowed cross-origin request is answered with
``Access-Control-Allow-Origin``; a preflight (``OPTIONS``) from any other origin gets 403 (Kubo
answers it without CORS headers, which browsers treat the same way). Against DNS rebinding the
``Host`` (and an absolute request target's authority) must name a loopback address,
``localhost`` or the bind address, port or not: anything else is 403; a missing Host in HTTP/1.1,
two of them, or a malformed one is 400 (RFC 9112 section 3.2). Clients outside a browser (curl,
Python, Node) send no ``Origin`` and are unaffected.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from din_lab import __version__
from din_lab.cid import Cid, _b58encode
from din_lab.errors import (
    ConfigError,
    ContentNotFoundError,
    DinLabError,
    IntegrityError,
    MalformedCidError,
    NotPinnedError,
    StorageError,
    UnsupportedContentError,
)
from din_lab.storage.base import ContentStore, iter_content_chunks
from din_lab.storage.unixfs import DEFAULT_CHUNK_SIZE, FileImporter, ImportParams, decode_block

log = logging.getLogger(__name__)

API_PREFIX = "/api/v0/"


def _stand_in_peer_id() -> str:
    """A well-formed libp2p peer ID (``12D3KooW...``: identity multihash of an Ed25519 public key
    protobuf) so clients that parse ``id`` accept it. The embedded store is not on any network and
    holds no such key: no ``Addresses`` are listed, and clients rightly report it offline."""
    key = b"\x08\x01\x12\x20" + hashlib.sha256(b"din-lab embedded ipfs daemon").digest()
    return _b58encode(b"\x00" + bytes([len(key)]) + key)


class _BadRequest(DinLabError):
    """A malformed request: answered with HTTP 400."""


# ---------------------------------------------------------------------------------------------
# request bodies: chunked transfer coding and streaming multipart


_MAX_EPILOGUE = 1 << 16  # bytes a multipart body may carry after its closing boundary


class _ChunkedReader:
    """Decodes ``Transfer-Encoding: chunked`` from ``raw`` as a ``read(n)`` stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            line = self._raw.readline(1024)
            try:
                self._left = int(line.split(b";")[0].strip(), 16)
            except ValueError as e:
                raise _BadRequest(f"bad chunk size line {line[:40]!r}") from e
            if self._left == 0:
                while self._raw.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._done = True
                return b""
        want = self._left if n < 0 else min(n, self._left)
        data = self._raw.read(want)
        if not data:
            raise _BadRequest("request body ended inside a chunk")
        self._left -= len(data)
        if self._left == 0:
            self._raw.readline(8)  # the CRLF after the chunk
        return data


class _LengthReader:
    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._raw.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        return data


class _Buffered:
    """A read stream with push-back and line reading on top of any ``read(n)``."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.buf = bytearray()
        self.eof = False

    def fill(self, want: int) -> None:
        while len(self.buf) < want and not self.eof:
            data = self._read(max(65536, want - len(self.buf)))
            if not data:
                self.eof = True
            self.buf += data

    def discard_rest(self, limit: int = _MAX_EPILOGUE) -> None:
        """Read the stream to its end and drop it (a multipart epilogue; a chunked body's last
        chunk and trailers): the connection's next request starts right after this body."""
        left = limit - len(self.buf)
        self.buf.clear()
        while not self.eof:
            data = self._read(65536)
            if not data:
                self.eof = True
            left -= len(data)
            if left < 0:
                raise _BadRequest(f"more than {limit} bytes after the multipart body's closing boundary")

    def readline(self, limit: int = 8192) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0 or self.eof or len(self.buf) > limit:
                end = i + 1 if i >= 0 else len(self.buf)
                line = bytes(self.buf[:end])
                del self.buf[:end]
                return line
            self.fill(len(self.buf) + 1)


class _Part:
    """One multipart part's body as a stream that ends at the next boundary."""

    def __init__(self, src: _Buffered, delimiter: bytes) -> None:
        self._src = src
        self._delim = delimiter
        self.done = False

    def read(self, n: int = -1) -> bytes:
        if self.done:
            return b""
        n = n if n > 0 else 1 << 20
        src, dl = self._src, len(self._delim)
        src.fill(n + dl)
        i = src.buf.find(self._delim)
        if 0 <= i <= n:
            data = bytes(src.buf[:i])
            del src.buf[:i + dl]
            self.done = True
            return data
        if i < 0 and src.eof:
            raise _BadRequest("multipart body ended without its closing boundary")
        take = min(n, len(src.buf) - dl + 1) if i < 0 else n
        data = bytes(src.buf[:take])
        del src.buf[:take]
        return data

    def drain(self) -> None:
        while not self.done:
            self.read(1 << 20)


def _multipart(read: Callable[[int], bytes], boundary: bytes) -> Iterator[tuple[dict[str, str], _Part]]:
    """Each part of a multipart body as (lower-cased headers, body stream), lazily."""
    src = _Buffered(read)
    first = b"--" + boundary
    line = src.readline()
    while line in (b"\r\n", b"\n"):  # a preamble of blank lines
        line = src.readline()
    if line.rstrip(b"\r\n") != first:
        raise _BadRequest("multipart body does not start with its boundary")
    while True:
        headers: dict[str, str] = {}
        while True:
            hline = src.readline()
            if not hline:
                raise _BadRequest("multipart body ended inside part headers")
            if hline in (b"\r\n", b"\n"):
                break
            name, _, value = hline.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        part = _Part(src, b"\r\n--" + boundary)
        yield headers, part
        part.drain()
        src.fill(2)
        tail = bytes(src.buf[:2])
        if tail == b"--":
            # the closing boundary: read what follows too (its CRLF, an epilogue, a chunked
            # body's "0" chunk), or it would be parsed as the connection's next request
            src.discard_rest()
            return
        src.readline()  # the CRLF ending the boundary line


class _Progress:
    """A read stream that reports the running byte count (at most every 256 KiB, and at the end)."""

    def __init__(self, inner: Any, report: Callable[[int], None], every: int = 256 * 1024) -> None:
        self._inner = inner
        self._report = report
        self._every = every
        self._total = 0
        self._reported = -1

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._total += len(data)
        if (not data and self._reported != self._total) or self._total - max(self._reported, 0) >= self._every:
            self._reported = self._total
            self._report(self._total)
        return data


def _disposition_filename(headers: dict[str, str]) -> str:
    match = re.search(r'filename="([^"]*)"', headers.get("content-disposition", ""))
    return unquote(match.group(1)) if match else ""


# ---------------------------------------------------------------------------------------------
# the command handlers


def _flag(query: dict[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values or values[-1] == "":
        return default if not values else True
    value = values[-1].lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise _BadRequest(f"option {name!r} must be true or false, not {values[-1]!r}")


def _arg(query: dict[str, list[str]], *, name: str = "arg") -> str:
    values = query.get(name)
    if not values or not values[0]:
        raise _BadRequest('argument "ipfs-path" is required')
    return values[0]


def _cid_arg(query: dict[str, list[str]]) -> Cid:
    text = _arg(query)
    for prefix in ("/ipfs/", "ipfs/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if "/" in text.strip("/"):
        raise UnsupportedContentError(f"paths inside a DAG are not supported: {text!r}")
    return Cid.parse(text.strip("/"))


def _import_params(query: dict[str, list[str]]) -> ImportParams:
    refused = [name for name in ("trickle", "wrap-with-directory", "nocopy", "inline", "fscache")
               if _flag(query, name, False)]
    if refused:
        raise UnsupportedContentError(f"the embedded store does not implement: {', '.join(refused)}")
    hash_name = query.get("hash", ["sha2-256"])[-1]
    if hash_name != "sha2-256":
        raise UnsupportedContentError(f"only sha2-256 is supported, not {hash_name!r}")
    try:
        version = int(query.get("cid-version", ["0"])[-1] or 0)
    except ValueError as e:
        raise _BadRequest("cid-version must be 0 or 1") from e
    raw = query.get("raw-leaves")
    chunk_size = DEFAULT_CHUNK_SIZE
    chunker = query.get("chunker", ["size-262144"])[-1]
    if chunker:
        match = re.fullmatch(r"size-(\d+)", chunker)
        if not match:
            raise UnsupportedContentError(f"only fixed-size chunkers (size-N) are supported, not {chunker!r}")
        chunk_size = int(match.group(1))
    try:
        return ImportParams(cid_version=version, raw_leaves=None if raw is None else _flag(query, "raw-leaves", False),
                            chunk_size=chunk_size)
    except ConfigError as e:
        raise _BadRequest(str(e)) from e


# ---------------------------------------------------------------------------------------------
# browsers: which origins and hosts may use the API (Kubo's CSRF checks, and DNS rebinding)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_REFUSED_BODY = 1 << 20  # read (and drop) this much of a refused request's body before closing
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s]*)(?::(\d*))?")
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


def _origin_of(url: str, *, strict: bool) -> str | None:
    """The origin ``scheme://host[:port]`` of ``url`` as a browser serializes it (lower case,
    default port left out); with ``strict``, None unless ``url`` is an origin and nothing more."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a bad port or bracket
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if not scheme or not host:
        return None
    if strict and (parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"


def _host_name(value: str) -> str | None:
    """The host of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case and
    without brackets; None if the value is malformed."""
    match = _HOST.fullmatch(value.strip())
    return match.group(1).strip("[]").lower() if match else None


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _allowed_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """``origins`` checked and normalized; ConfigError names the first that is not an origin."""
    if isinstance(origins, str):
        raise ConfigError(f"allowed_origins must be a sequence of origins, not the string {origins!r}")
    normalized = []
    for origin in origins:
        value = "*" if origin.strip() == "*" else _origin_of(origin, strict=True)
        if value is None:
            raise ConfigError(f"not an origin: {origin!r} (expected scheme://host[:port], e.g. http://localhost:8888, or *)")
        normalized.append(value)
    return tuple(normalized)


_PEER_ID = _stand_in_peer_id()


class _Handler(BaseHTTPRequestHandler):
    server: RpcServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("rpc %s %s", self.address_string(), format % args)

    # -- who may ask: checked once the headers are read, before any body or command --------

    def parse_request(self) -> bool:
        self._checked = False
        self._cors_origin: str | None = None  # echoed in Access-Control-Allow-Origin
        if not super().parse_request():
            return False
        return self._check_caller(drain=True)

    def handle_expect_100(self) -> bool:
        # before "100 Continue": a refused client is told so without sending its body
        return self._check_caller(drain=False) and super().handle_expect_100()

    def _check_caller(self, *, drain: bool) -> bool:
        if self._checked:
            return True
        refusal = self._refusal()
        if refusal is None:
            self._checked = True
            return True
        status, reason = refusal
        log.warning("rpc refused %s %.200r from %s: %s (Host %.100r, Origin %.100r, Referer %.100r)",
                    self.command, self.path, self.client_address[0], reason, self.headers.get("Host"),
                    self.headers.get("Origin"), self.headers.get("Referer"))
        self._refuse(status, reason, drain=drain)
        return False

    def _refusal(self) -> tuple[int, str] | None:
        """(status, reason) if this request must not be served, else None (Kubo's checks, and Host)."""
        server = self.server
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            return 400, "more than one Host header"
        if not hosts and self.request_version >= "HTTP/1.1":
            return 400, "missing required Host header"
        authorities = list(hosts)
        if not self.path.startswith("/") and self.path != "*":  # absolute form: its authority wins over Host
            target = urlsplit(self.path)
            if target.scheme.lower() not in ("http", "https") or not target.netloc:
                return 400, "malformed request target"
            authorities.append(target.netloc)
        for authority in authorities:
            name = _host_name(authority)
            if name is None:
                return 400, "malformed Host header"
            if not server.host_allowed(name):
                return 403, "Host is not this daemon (loopback, localhost or its bind address): DNS rebinding?"
        origins = [value for value in self.headers.get_all("Origin") or [] if value.strip()]
        for value in origins:
            if not server.origin_allowed(value):
                return 403, "cross-origin request refused (din-lab ipfs daemon --allow-origin ORIGIN to allow one)"
        referer = self.headers.get("Referer", "").strip()
        if referer:
            origin = _origin_of(referer, strict=False)
            if origin is None or not server.origin_allowed(origin):
                return 403, "request from a page of another origin refused (Referer)"
        if (self.command == "POST" and not origins and not referer
                and self.headers.get("User-Agent", "").startswith("Mozilla")):
            return 403, "a browser request without Origin or Referer"  # as Kubo: browsers always send one
        if origins:
            self._cors_origin = _origin_of(origins[0], strict=True) or "*"
        return None

    def _refuse(self, status: int, reason: str, *, drain: bool) -> None:
        """Answer ``status`` in plain text like Kubo, without reading the request beyond its headers
        (a little of its body is read and dropped, so the client sees the answer, not a reset)."""
        self.close_connection = True
        if drain:
            try:
                read, left = self._body_reader(), _MAX_REFUSED_BODY
                while left > 0 and (data := read(min(1 << 16, left))):
                    left -= len(data)
            except (ValueError, OSError, _BadRequest):
                pass
        body = f"{status} - {HTTPStatus(status).phrase}: {reason}\n".encode()
        self._cors_origin = None
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if getattr(self, "_cors_origin", None):
            self.send_header("Access-Control-Allow-Origin", self._cors_origin)
            self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Expose-Headers",
                             "X-Stream-Output, X-Chunked-Output, X-Content-Length, X-Stream-Error")

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        """A CORS preflight from an allowed origin (others never get here), or a plain OPTIONS."""
        self._discard_body()
        self.send_response(HTTPStatus.NO_CONTENT)
        if self._cors_origin and self.headers.get("Access-Control-Request-Method"):
            self.send_header("Access-Control-Allow-Methods", "POST")
            requested = self.headers.get("Access-Control-Request-Headers", "").strip()
            if _HEADER_LIST.fullmatch(requested):
                self.send_header("Access-Control-Allow-Headers", requested)
            self.send_header("Access-Control-Max-Age", "600")
        else:
            self.send_header("Allow", "OPTIONS, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- plumbing ---------------------------------------------------------------------------

    def _body_reader(self) -> Callable[[int], bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reader = _ChunkedReader(self.rfile).read
        else:
            self._reader = _LengthReader(self.rfile, int(self.headers.get("Content-Length") or 0)).read
        return self._reader

    def _drain_after_error(self, limit: int = 64 << 20) -> bool:
        """Read what is left of a failed request's body (up to ``limit``), so the client can read
        the error answer instead of seeing its upload cut off. True if the body was read to its end."""
        read = getattr(self, "_reader", None)
        try:
            while read is not None and limit > 0:
                data = read(1 << 20)
                if not data:
                    return True
                limit -= len(data)
        except Exception:  # the body itself is broken
            log.debug("could not drain a failed request's body", exc_info=True)
            return False
        return read is None

    def _discard_body(self) -> None:
        read = self._body_reader()
        while read(1 << 16):
            pass

    def _send_json(self, value: Any, *, status: int = 200, lines: list[Any] | None = None) -> None:
        if lines is not None:
            body = b"".join(json.dumps(item).encode() + b"\n" for item in lines)
        else:
            body = json.dumps(value).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")  # so the client does not reuse it
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, message: str, *, code: int = 0) -> None:
        self._send_json({"Message": message, "Code": code, "Type": "error"}, status=status)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Chunked-Output", "1")
        self.send_header("Trailer", "X-Stream-Error")
        self.end_headers()
        self._streaming = True

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunked(self, error: str | None = None) -> None:
        if error is None:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(b"0\r\nX-Stream-Error: %s\r\n\r\n" % error.replace("\n", " ").encode()[:500])
        self._streaming = False

    def _send_stream(self, chunks: Iterator[bytes], *, content_type: str = "text/plain") -> None:
        first = next(chunks, b"")  # errors before the first byte still get a proper error response
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Stream-Output", "1")
        self.send_header("Trailer", "X-Stream-Error")
        self.end_headers()
        try:
            for chunk in _chain(first, chunks):
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except DinLabError as e:
            # too late for a status code: drop the connection without the last chunk, so every
            # client sees a broken transfer, never content that merely looks short
            log.error("stream failed mid-way: %s", e)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._discard_body()
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_DELETE = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        if not url.path.startswith(API_PREFIX):
            self._discard_body()
            self._send_error(404, "404 page not found")
            return
        command = url.path[len(API_PREFIX):].strip("/")
        handler = _COMMANDS.get(command)
        if handler is None:
            self._discard_body()
            self._send_error(404, f"unknown command {command!r} (din-lab serves a subset of Kubo's RPC API)")
            return
        self._run_answering_errors(command, lambda: self._run(command, handler, query))

    def _run(self, command: str, handler: Callable[[_Handler, dict[str, list[str]]], None],
             query: dict[str, list[str]]) -> None:
        try:
            if command != "add":
                self._discard_body()
            handler(self, query)
        except BaseException:
            # an error may leave part of the request body unread: read it, or give up the connection
            if not self._drain_after_error():
                self.close_connection = True
            raise

    def _answer_errors(self, command: str, run: Callable[[], None]) -> None:
        self._streaming = False
        try:
            run()
        except Exception as e:
            if not self._streaming:
                raise
            # the answer has begun (progress lines): end it with an error line and Kubo's trailer
            log.warning("rpc %s failed after its answer began: %s", command, e)
            self._write_chunk(json.dumps({"Message": str(e), "Code": 0, "Type": "error"}).encode() + b"\n")
            self._end_chunked(error=str(e))
            self.close_connection = True

    def _run_answering_errors(self, command: str, run: Callable[[], None]) -> None:
        try:
            self._answer_errors(command, run)
        except (_BadRequest, MalformedCidError) as e:
            self._send_error(400, str(e), code=1)
        except NotPinnedError as e:
            self._send_error(500, f"{e}: not pinned or pinned indirectly")
        except ContentNotFoundError as e:
            self._send_error(500, f"block was not found locally (offline): ipld: could not find {e.cid}")
        except IntegrityError as e:  # Kubo's words for the same failure (blockstore.ErrHashMismatch)
            self._send_error(500, f"{e}: block in storage has different hash than requested")
        except StorageError as e:
            self._send_error(500, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug: report it to the client and the log, keep serving
            log.exception("rpc %s failed", command)
            self._send_error(500, f"internal error: {e}")

    # -- commands ---------------------------------------------------------------------------

    def cmd_add(self, query: dict[str, list[str]]) -> None:
        params = _import_params(query)
        only_hash = _flag(query, "only-hash", False)
        pin = _flag(query, "pin", True)
        ctype = self.headers.get("Content-Type", "")
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.startswith("multipart/") or not match:
            self._discard_body()
            raise _BadRequest("add needs a multipart/form-data body with a file")
        progress = _flag(query, "progress", False)
        if progress:  # like Kubo: {"Name","Bytes"} lines while reading, streamed before the result
            self._start_chunked("application/json")
        results = []
        for headers, part in _multipart(self._body_reader(), match.group(1).encode()):
            if headers.get("content-type", "").startswith("application/x-directory"):
                raise UnsupportedContentError("directories are not supported: the lab adds single files")
            name = _disposition_filename(headers)
            source: Any = part
            if progress:
                source = _Progress(part, lambda n, name=name: self._write_chunk(
                    json.dumps({"Name": name, "Bytes": n}).encode() + b"\n"))
            if only_hash:
                importer = FileImporter(params)
                for chunk in iter_content_chunks(source, params.chunk_size):
                    importer.add_chunk(chunk)
                cid, size = importer.finish(), importer.cumulative_size
            else:
                cid = self.server.store.add(source, params=params, pin=pin)
                size = self._cumulative_size(cid)
            result = {"Name": name or str(cid), "Hash": str(cid), "Size": str(size)}
            results.append(result)
            if progress:
                self._write_chunk(json.dumps(result).encode() + b"\n")
        if not results:
            raise _BadRequest("add needs at least one file")
        if progress:
            self._end_chunked()
        else:
            self._send_json(None, lines=results)

    def _cumulative_size(self, cid: Cid) -> int:
        block = self.server.store.get_block(cid)
        return len(block) + sum(decode_block(cid, block).tsizes)

    def cmd_cat(self, query: dict[str, list[str]]) -> None:
        cid = _cid_arg(query)
        try:
            offset = int(query.get("offset", ["0"])[-1] or 0)
            length = int(query.get("length", ["-1"])[-1] or -1)
        except ValueError as e:
            raise _BadRequest("offset and length must be integers") from e
        if offset < 0:
            raise _BadRequest("offset must be non-negative")
        self._send_stream(_window(self.server.store.iter_cat(cid), offset, length))

    def cmd_block_get(self, query: dict[str, list[str]]) -> None:
        block = self.server.store.get_block(_cid_arg(query))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(block)))
        self.end_headers()
        self.wfile.write(block)

    def cmd_block_stat(self, query: dict[str, list[str]]) -> None:
        cid = _cid_arg(query)
        self._send_json({"Key": str(cid), "Size": len(self.server.store.get_block(cid))})

    def cmd_pin_add(self, query: dict[str, list[str]]) -> None:
        if not _flag(query, "recursive", True):
            raise UnsupportedContentError("only recursive pins are supported")
        cid = _cid_arg(query)
        self.server.store.pin(cid)
        self._send_json({"Pins": [str(cid)]})

    def cmd_pin_rm(self, query: dict[str, list[str]]) -> None:
        cid = _cid_arg(query)
        self.server.store.unpin(cid)
        self._send_json({"Pins": [str(cid)]})

    def cmd_pin_ls(self, query: dict[str, list[str]]) -> None:
        kind = query.get("type", ["all"])[-1]
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise _BadRequest(f"invalid type {kind!r}: use all, recursive, direct or indirect")
        pins = self.server.store.pins() if kind in ("all", "recursive") else frozenset()
        if query.get("arg"):
            cid = _cid_arg(query)
            if cid not in pins:
                raise NotPinnedError(f"path '{cid}' is not pinned")
            pins = frozenset([cid])
        if _flag(query, "stream", False):  # one {"Cid","Type"} line per pin, as Kubo streams them
            self._send_json(None, lines=[{"Cid": str(c), "Type": "recursive"} for c in sorted(pins, key=str)])
            return
        self._send_json({"Keys": {str(c): {"Type": "recursive"} for c in sorted(pins, key=str)}})

    def cmd_repo_gc(self, query: dict[str, list[str]]) -> None:
        report = self.server.store.gc()
        self._send_json(None, lines=[{"Key": {"/": str(c)}} for c in report.removed])

    def cmd_files_stat(self, query: dict[str, list[str]]) -> None:
        stat = self.server.store.stat(_cid_arg(query))
        self._send_json({"Hash": str(stat.cid), "Size": stat.size, "CumulativeSize": stat.cumulative_size,
                         "Blocks": stat.links, "Type": "file"})

    def cmd_dag_stat(self, query: dict[str, list[str]]) -> None:
        stat = self.server.store.stat(_cid_arg(query))
        self._send_json({"TotalSize": stat.dag_size, "DagStats": [
            {"Cid": {"/": str(stat.cid)}, "Size": stat.dag_size, "NumBlocks": stat.blocks}]})

    def cmd_version(self, query: dict[str, list[str]]) -> None:
        self._send_json({"Version": f"din-lab-{__version__}", "Commit": "", "Repo": "din-lab-blockstore-1",
                         "System": "python", "Golang": ""})

    def cmd_id(self, query: dict[str, list[str]]) -> None:
        self._send_json({"ID": _PEER_ID, "PublicKey": "", "Addresses": [],
                         "AgentVersion": f"din-lab/{__version__}", "ProtocolVersion": "", "Protocols": []})


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _window(chunks: Iterator[bytes], offset: int, length: int) -> Iterator[bytes]:
    """``offset``/``length`` of a stream of chunks (length < 0: to the end)."""
    position = 0
    for chunk in chunks:
        start, end = position, position + len(chunk)
        position = end
        if end <= offset:
            continue
        piece = chunk[max(0, offset - start):]
        if length >= 0:
            remaining = offset + length - max(start, offset)
            if remaining <= 0:
                return
            piece = piece[:remaining]
        yield piece
        if length >= 0 and position >= offset + length:
            return


_COMMANDS: dict[str, Callable[[_Handler, dict[str, list[str]]], None]] = {
    "add": _Handler.cmd_add,
    "cat": _Handler.cmd_cat,
    "block/get": _Handler.cmd_block_get,
    "block/stat": _Handler.cmd_block_stat,
    "pin/add": _Handler.cmd_pin_add,
    "pin/rm": _Handler.cmd_pin_rm,
    "pin/ls": _Handler.cmd_pin_ls,
    "repo/gc": _Handler.cmd_repo_gc,
    "files/stat": _Handler.cmd_files_stat,
    "dag/stat": _Handler.cmd_dag_stat,
    "version": _Handler.cmd_version,
    "id": _Handler.cmd_id,
}


class RpcServer(ThreadingHTTPServer):
    """The Kubo RPC subset over ``store`` on ``host:port`` (port 0: a free one)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: ContentStore, *, host: str = "127.0.0.1", port: int = 5001,
                 allowed_origins: tuple[str, ...] = ()) -> None:
        """``allowed_origins``: web origins (``scheme://host[:port]``, or ``"*"`` for any) whose
        pages may use the API besides the daemon's own, like Kubo's
        ``API.HTTPHeaders.Access-Control-Allow-Origin``. ConfigError if one is not an origin."""
        self.store = store
        extra = _allowed_origins(allowed_origins)
        if "*" in extra:
            log.warning("allowed_origins has '*': any web page open in a browser here can add, pin and gc content")
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise StorageError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                               f"{' (is a Kubo daemon running? choose --port)' if e.errno == 98 else ''}") from e
        self._thread: threading.Thread | None = None
        self._hosts = frozenset(filter(None, {host.strip("[]").lower(), str(self.server_address[0]).lower()}))
        own = [f"{scheme}://{name}:{self.port}" for scheme in ("http", "https")
               for name in ("127.0.0.1", "[::1]", "localhost", *sorted(self._hosts))]
        self._origins = frozenset(filter(None, (_origin_of(o, strict=True) for o in own))) | frozenset(extra)

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Every origin whose pages may use the API: the daemon's own and those given."""
        return self._origins

    def origin_allowed(self, origin: str) -> bool:
        """True if a request with this ``Origin`` (or Referer's origin) may be served."""
        if "*" in self._origins:
            return True
        normalized = _origin_of(origin, strict=True)
        return normalized is not None and normalized in self._origins

    def host_allowed(self, name: str) -> bool:
        """True if ``name`` (a Host header's host, lower case, no brackets or port) names this daemon."""
        return _is_loopback(name) or name in self._hosts

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.server_address[0]}/tcp/{self.port}"

    def start(self) -> RpcServer:
        """Serve from a background thread (for notebooks and tests); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, name="din-lab-ipfs-rpc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
