"""``din-lab ipfs daemon`` as third-party IPFS tools see it: ipfshttpclient, curl and plain HTTP
get the same CIDs and bytes as the embedded store; bad requests get Kubo-style errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import requests

from din_lab.storage import EmbeddedStore, ImportParams, cid_of
from tests.helpers import stop_process

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ipfshttpclient


def unique(size: int) -> bytes:
    return hashlib.shake_256(os.urandom(16)).digest(size)


@pytest.fixture
def client(ipfs_daemon):
    # ipfshttpclient.connect() refuses any daemon version outside 0.4.23..0.8 (NOTES.md): construct directly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # urllib3's 'strict' deprecation, inside ipfshttpclient
        c = ipfshttpclient.Client(addr=ipfs_daemon["multiaddr"])
        yield c
        c.close()


@pytest.fixture
def api(ipfs_daemon):
    return ipfs_daemon["url"] + "/api/v0"


def test_ipfshttpclient_add_cat_pin_match_the_embedded_store(client, tmp_path):
    reference = EmbeddedStore()
    data = unique(700_000)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert client.add_bytes(b"hello") == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
        added = client.add(str(path))
        assert added["Hash"] == str(reference.add(path))
        assert added["Name"] == "model.bin"
        assert int(added["Size"]) == reference.stat(added["Hash"]).cumulative_size
        v1 = client.add(str(path), cid_version=1, raw_leaves=True)
        assert v1["Hash"] == str(reference.add(path, cid_version=1))
        # ipfshttpclient sends raw-leaves=false when not asked: Kubo then keeps dag-pb leaves in v1
        v1_pb = client.add(str(path), cid_version=1)
        assert v1_pb["Hash"] == str(reference.add(path, params=ImportParams(cid_version=1, raw_leaves=False)))
        assert client.cat(added["Hash"]) == data
        assert client.cat(added["Hash"], offset=100, length=50) == data[100:150]
        assert added["Hash"] in client.pin.ls(type="recursive")["Keys"]
        client.pin.rm(added["Hash"])
        assert added["Hash"] not in client.pin.ls(type="recursive")["Keys"]
        client.pin.add(added["Hash"])
        assert added["Hash"] in client.pin.ls(type="recursive")["Keys"]
        stat = client.block.stat(added["Hash"])
        assert stat["Key"] == added["Hash"] and stat["Size"] == len(reference.get_block(added["Hash"]))
        assert client.block.get(added["Hash"]) == reference.get_block(added["Hash"])
        only = client.add(io.BytesIO(b"never stored " + data[:10]), only_hash=True)["Hash"]
        assert only == str(cid_of(b"never stored " + data[:10]))
        assert only not in client.pin.ls(type="recursive")["Keys"]
        with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="could not find"):
            client.cat(str(cid_of(unique(8))))


def test_curl_multipart_add_and_cat(api, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    data = unique(300_000)
    path = tmp_path / "d.bin"
    path.write_bytes(data)
    out = subprocess.run([curl, "-sS", "-X", "POST", "-F", f"file=@{path}", f"{api}/add?cid-version=1"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out.splitlines()[-1])["Hash"] == str(cid_of(data, params=ImportParams(cid_version=1)))
    body = subprocess.run([curl, "-sS", "-X", "POST", f"{api}/cat?arg={cid_of(data, params=ImportParams(cid_version=1))}"],
                          capture_output=True, timeout=60, check=True).stdout
    assert body == data


def test_chunked_upload_and_several_files(api):
    boundary = "b0undary"
    parts = [unique(1000), unique(300_000)]

    def body():
        for i, part in enumerate(parts):
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}\"\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n").encode()
            yield part
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    r = requests.post(f"{api}/add", data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["Name"] for line in lines] == ["f0", "f1"]
    assert [line["Hash"] for line in lines] == [str(cid_of(p)) for p in parts]


def test_only_hash_reports_the_size_and_stores_nothing(api):
    data = unique(400_000)
    files = {"file": ("x", data)}
    r = requests.post(f"{api}/add", params={"only-hash": "true"}, files=files)
    line = json.loads(r.text.splitlines()[-1])
    assert line["Hash"] == str(cid_of(data))
    store = EmbeddedStore()
    assert int(line["Size"]) == store.stat(store.add(data)).cumulative_size
    assert requests.post(f"{api}/block/stat", params={"arg": line["Hash"]}).status_code == 500


@pytest.mark.parametrize(("params", "status", "fragment"), [
    ({}, 400, "required"),
    ({"arg": "Qmnope"}, 400, "CID"),
    ({"arg": "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX/sub"}, 500, "paths inside"),
])
def test_cat_argument_errors(api, params, status, fragment):
    r = requests.post(f"{api}/cat", params=params)
    assert r.status_code == status
    assert r.json()["Type"] == "error" and fragment in r.json()["Message"]


@pytest.mark.parametrize("params", [{"trickle": "true"}, {"wrap-with-directory": "true"}, {"chunker": "rabin"},
                                    {"hash": "blake2b-256"}, {"nocopy": "true"}])
def test_add_options_that_would_change_the_cid_are_refused(api, params):
    r = requests.post(f"{api}/add", params=params, files={"file": ("x", b"data")})
    assert r.status_code == 500 and r.json()["Type"] == "error"


def test_directories_are_refused(api):
    boundary = "xx"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dir\"\r\n"
            f"Content-Type: application/x-directory\r\n\r\n\r\n--{boundary}--\r\n").encode()
    r = requests.post(f"{api}/add", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 500 and "directories" in r.json()["Message"]


def test_http_method_and_unknown_command(api):
    assert requests.get(f"{api}/version").status_code == 405
    r = requests.post(f"{api}/swarm/peers")
    assert r.status_code == 404
    assert requests.post(f"{api}/version").json()["Version"].startswith("din-lab-")


def test_malformed_multipart_is_a_bad_request(api):
    r = requests.post(f"{api}/add", data=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400
    r = requests.post(f"{api}/add", data=b"--zz\r\nContent-Disposition: form-data; name=file\r\n\r\nunterminated",
                      headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400 and "closing boundary" in r.json()["Message"]


def test_daemon_writes_its_api_file_and_cli_talks_to_it(ipfs_daemon, tmp_path):
    api_file = ipfs_daemon["repo"] / "api"
    assert api_file.read_text().strip() == ipfs_daemon["multiaddr"]
    data = unique(5000)
    path = tmp_path / "c.bin"
    path.write_bytes(data)
    run = [sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", ipfs_daemon["url"]]
    cid = subprocess.run([*run, "add", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert cid == str(cid_of(data))
    assert subprocess.run([*run, "cat", cid], capture_output=True, check=True).stdout == data


def test_mid_stream_failure_breaks_the_transfer(tmp_path):
    """A block found corrupted after cat's first bytes: the connection drops, never short content."""
    from din_lab.storage.daemon import RpcServer

    store = EmbeddedStore(path=tmp_path / "s")
    data = unique(1_000_000)
    cid = store.add(data)
    from din_lab.storage.unixfs import decode_block

    leaf = decode_block(cid, store.get_block(cid)).links[2]
    name = leaf.digest.hex()
    path = store.path / "blocks" / name[:2] / name
    path.write_bytes(b"!" + path.read_bytes()[1:])
    server = RpcServer(store, port=0).start()
    try:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.post(f"{server.url}/api/v0/cat", params={"arg": str(cid)}).content  # noqa: B018
    finally:
        server.stop()


def test_a_kept_alive_connection_survives_a_chunked_add_whose_end_arrives_late(ipfs_daemon):
    """A chunked add (what KuboStore sends) whose last bytes, the CRLF after the closing boundary
    and the terminating chunk, reach the daemon late: the next request on the same kept-alive
    connection is still answered (a body left unread would be taken for a garbled request line and
    refused in HTTP/0.9, which clients see as BadStatusLine '<!DOCTYPE HTML>')."""
    import socket
    import time
    from urllib.parse import urlsplit

    url = urlsplit(ipfs_daemon["url"])
    data = unique(1000)
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--")
    head = (f"POST /api/v0/add?cid-version=1 HTTP/1.1\r\nHost: {url.hostname}\r\n"
            f"Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(body), body))
        time.sleep(0.3)  # the daemon has read the closing boundary by now
        sock.sendall(b"2\r\n\r\n\r\n0\r\n\r\n")  # the boundary line's CRLF, then the last chunk
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 200")
        length = None
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        answer = json.loads(reader.read(length))
        sock.sendall(f"POST /api/v0/version HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Length: 0\r\n\r\n".encode())
        assert reader.readline().startswith(b"HTTP/1.1 200")  # not an HTTP/0.9 error page
    assert answer["Hash"] == str(cid_of(data, params=ImportParams(cid_version=1)))


# ---------------------------------------------------------------------------------------------
# browsers: Kubo's cross-origin (CSRF) checks and a Host check against DNS rebinding, over raw
# http.client so that the test, not a client library, decides every header


def _address(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname, parts.port


def raw(url: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
        method: str = "POST", host: str | None = "default") -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one request; ``host=None`` sends no Host header."""
    import http.client

    conn = http.client.HTTPConnection(*_address(url), timeout=10)
    try:
        conn.putrequest(method, path, skip_host=host != "default", skip_accept_encoding=True)
        if host not in (None, "default"):
            conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart(data: bytes, boundary: str = "b0undary") -> tuple[dict[str, str], bytes]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def own_port(url: str) -> int:
    return _address(url)[1]


@pytest.mark.parametrize("command", ["version", "id", "pin/ls", "repo/gc"])
def test_a_foreign_origin_is_refused_like_kubo(ipfs_daemon, command):
    status, headers, body = raw(ipfs_daemon["url"], f"/api/v0/{command}", headers={"Origin": "http://evil.example"})
    assert status == 403
    assert body.startswith(b"403 - Forbidden") and headers["content-type"].startswith("text/plain")
    assert "access-control-allow-origin" not in headers


def test_a_foreign_origin_cannot_add_pin_unpin_or_gc(ipfs_daemon):
    url, evil = ipfs_daemon["url"], {"Origin": "http://evil.example"}
    data = unique(5000)
    cid = str(cid_of(data))
    form_headers, form = multipart(data)
    status, _, _ = raw(url, "/api/v0/add", headers={**form_headers, **evil}, body=form)
    assert status == 403
    assert raw(url, f"/api/v0/block/stat?arg={cid}")[0] == 500  # not stored at all
    assert raw(url, f"/api/v0/pin/ls?arg={cid}")[0] == 500
    status, _, answer = raw(url, "/api/v0/add", headers=form_headers, body=form)  # the same request, no Origin
    assert status == 200 and json.loads(answer)["Hash"] == cid
    assert raw(url, f"/api/v0/pin/rm?arg={cid}", headers=evil)[0] == 403
    assert raw(url, f"/api/v0/pin/ls?arg={cid}")[0] == 200  # still pinned
    assert raw(url, f"/api/v0/pin/rm?arg={cid}")[0] == 200
    assert raw(url, f"/api/v0/pin/add?arg={cid}", headers=evil)[0] == 403
    assert raw(url, f"/api/v0/pin/ls?arg={cid}")[0] == 500  # still unpinned
    assert raw(url, "/api/v0/repo/gc", headers=evil)[0] == 403
    assert raw(url, f"/api/v0/block/stat?arg={cid}")[0] == 200  # unpinned, yet not collected


def test_a_foreign_origin_is_refused_before_the_body_is_sent(ipfs_daemon):
    """``Expect: 100-continue``: the refusal comes instead of "100 Continue"; the upload never starts."""
    import socket

    host, port = _address(ipfs_daemon["url"])
    head = (f"POST /api/v0/add HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://evil.example\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000000\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}", "http://[::1]:{port}",
                                    "https://localhost:{port}", "HTTP://LocalHost:{port}"])
def test_the_daemons_own_origin_is_served(ipfs_daemon, origin):
    origin = origin.format(port=own_port(ipfs_daemon["url"]))
    status, headers, body = raw(ipfs_daemon["url"], "/api/v0/version",
                                headers={"Origin": origin, "User-Agent": "Mozilla/5.0"})
    assert status == 200 and json.loads(body)["Version"].startswith("din-lab-")
    assert headers["access-control-allow-origin"].lower() == origin.lower()


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:1", "http://localhost", "http://127.0.0.1:{port}.evil.example",
                                    "http://localhost:{port}/path", "file://"])
def test_near_misses_of_the_own_origin_are_refused(ipfs_daemon, origin):
    origin = origin.format(port=own_port(ipfs_daemon["url"]))
    assert raw(ipfs_daemon["url"], "/api/v0/version", headers={"Origin": origin})[0] == 403


def test_requests_without_origin_are_served_unless_a_browser_sent_them(ipfs_daemon):
    url = ipfs_daemon["url"]
    assert raw(url, "/api/v0/version")[0] == 200
    assert raw(url, "/api/v0/version", headers={"User-Agent": "curl/8.5.0"})[0] == 200
    assert raw(url, "/api/v0/version", headers={"Origin": ""})[0] == 200  # an empty header is no header
    # Kubo's rule: a POST from a browser always carries Origin or Referer; one with neither is refused
    assert raw(url, "/api/v0/version", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})[0] == 403


def test_referer_is_checked_like_origin(ipfs_daemon):
    url, port = ipfs_daemon["url"], own_port(ipfs_daemon["url"])
    assert raw(url, "/api/v0/version", headers={"Referer": "http://evil.example/page.html"})[0] == 403
    assert raw(url, "/api/v0/version", headers={"Referer": "not a url"})[0] == 403
    assert raw(url, "/api/v0/version", headers={"Referer": f"http://localhost:{port}/webui/#/files"})[0] == 200
    # both are checked when both are sent
    assert raw(url, "/api/v0/version", headers={"Origin": f"http://localhost:{port}",
                                                "Referer": "http://evil.example/"})[0] == 403


@pytest.mark.parametrize(("host", "status"), [
    ("localhost", 200), ("localhost:{port}", 200), ("LOCALHOST:{port}", 200), ("127.0.0.1", 200),
    ("127.0.0.1:{port}", 200), ("127.1.2.3:{port}", 200), ("[::1]:{port}", 200), ("localhost:8080", 200),
    ("evil.example", 403), ("evil.example:{port}", 403), ("localhost.evil.example", 403),
    ("127.0.0.1.nip.io:{port}", 403), ("10.0.0.1:{port}", 403), ("", 403),
    ("localhost:abc", 400), ("[::1", 400), ("user@localhost", 400),
])
def test_host_must_name_this_daemon(ipfs_daemon, host, status):
    """DNS rebinding: a page at http://evil.example:PORT whose name now resolves to 127.0.0.1 is
    same-origin with itself, but its requests carry ``Host: evil.example:PORT``."""
    host = host.format(port=own_port(ipfs_daemon["url"]))
    answer, _, body = raw(ipfs_daemon["url"], "/api/v0/version", host=host)
    assert answer == status, body


def test_missing_or_repeated_host(ipfs_daemon):
    import socket

    assert raw(ipfs_daemon["url"], "/api/v0/version", host=None)[0] == 400  # HTTP/1.1 requires it
    host, port = _address(ipfs_daemon["url"])
    for request, status in [
        (b"POST /api/v0/version HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"200"),  # HTTP/1.0 may omit it
        (b"POST /api/v0/version HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n", b"400"),
        (b"POST http://evil.example/api/v0/version HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", b"403"),
        (f"POST http://{host}:{port}/api/v0/version HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode(), b"200"),
    ]:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.makefile("rb").readline().split()[1] == status, request


def test_preflight_from_a_foreign_origin_is_refused(ipfs_daemon):
    url, port = ipfs_daemon["url"], own_port(ipfs_daemon["url"])
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = raw(url, "/api/v0/add", method="OPTIONS", headers={"Origin": "http://evil.example", **preflight})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = raw(url, "/api/v0/add", method="OPTIONS", headers={"Origin": f"http://localhost:{port}", **preflight})
    assert status == 204
    assert headers["access-control-allow-origin"] == f"http://localhost:{port}"
    assert headers["access-control-allow-methods"] == "POST" and headers["access-control-allow-headers"] == "content-type"
    assert raw(url, "/api/v0/add", method="OPTIONS")[0] == 204  # not a preflight: just the allowed methods


def test_a_foreign_origin_is_refused_whatever_the_method(ipfs_daemon):
    assert raw(ipfs_daemon["url"], "/api/v0/version", method="GET", headers={"Origin": "http://evil.example"})[0] == 403
    assert raw(ipfs_daemon["url"], "/api/v0/version", method="GET")[0] == 405


@pytest.fixture
def dashboard_daemon():
    """A daemon that also serves pages of http://dashboard.example:8866 (and its own)."""
    from din_lab.storage.daemon import RpcServer

    server = RpcServer(EmbeddedStore(), port=0, allowed_origins=("http://Dashboard.example:8866/",)).start()
    yield server
    server.stop()


def test_an_allowed_extra_origin_is_served_with_cors_headers(dashboard_daemon):
    url, origin = dashboard_daemon.url, "http://dashboard.example:8866"
    assert origin in dashboard_daemon.allowed_origins
    data = unique(3000)
    form_headers, form = multipart(data)
    status, headers, body = raw(url, "/api/v0/add", headers={**form_headers, "Origin": origin}, body=form)
    assert status == 200 and json.loads(body)["Hash"] == str(cid_of(data))
    assert headers["access-control-allow-origin"] == origin and "Origin" in headers["vary"]
    assert "X-Stream-Output" in headers["access-control-expose-headers"]
    assert raw(url, "/api/v0/version", headers={"Referer": f"{origin}/voila/render/app.ipynb"})[0] == 200
    status, headers, _ = raw(url, "/api/v0/cat", method="OPTIONS",
                             headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers["access-control-allow-origin"] == origin
    assert raw(url, "/api/v0/version", headers={"Origin": "http://dashboard.example:8867"})[0] == 403
    assert raw(url, "/api/v0/version", headers={"Origin": "https://dashboard.example:8866"})[0] == 403
    assert raw(url, "/api/v0/version", host="dashboard.example:8866")[0] == 403  # an allowed origin is not a Host


def test_star_allows_any_origin_but_not_any_host():
    from din_lab.storage.daemon import RpcServer

    server = RpcServer(EmbeddedStore(), port=0, allowed_origins=("*",)).start()
    try:
        status, headers, _ = raw(server.url, "/api/v0/version", headers={"Origin": "http://anything.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://anything.example"
        assert raw(server.url, "/api/v0/version", host="evil.example")[0] == 403
    finally:
        server.stop()


@pytest.mark.parametrize("origin", ["localhost:8888", "http://localhost:8888/app", "null", "http://", "http://x:port"])
def test_allowed_origins_must_be_origins(origin):
    from din_lab.errors import ConfigError
    from din_lab.storage.daemon import RpcServer

    with pytest.raises(ConfigError, match="not an origin"):
        RpcServer(EmbeddedStore(), port=0, allowed_origins=(origin,))
    with pytest.raises(ConfigError, match="sequence"):
        RpcServer(EmbeddedStore(), port=0, allowed_origins="http://localhost:8888")  # type: ignore[arg-type]


def test_cli_allow_origin(tmp_path):
    """``din-lab ipfs daemon --allow-origin`` (repeatable) end to end; a bad origin is a usage error."""
    import re

    cmd = [sys.executable, "-m", "din_lab.cli", "ipfs", "--repo", "memory", "daemon", "--port", "0"]
    bad = subprocess.run([*cmd, "--allow-origin", "http://localhost:8888/app"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not an origin" in bad.stderr
    proc = subprocess.Popen([*cmd, "--allow-origin", "http://a.example:1", "--allow-origin", "http://b.example:2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in proc.stdout:
            if match := re.search(r"listening on /ip4/([\d.]+)/tcp/(\d+)", line):
                url = f"http://{match.group(1)}:{match.group(2)}"
            if line.strip() == "Daemon is ready":
                break
        assert url is not None
        for origin, status in [("http://a.example:1", 200), ("http://b.example:2", 200), ("http://c.example:3", 403),
                               (f"http://localhost:{own_port(url)}", 200)]:
            assert raw(url, "/api/v0/version", headers={"Origin": origin})[0] == status, origin
    finally:
        stop_process(proc)


@pytest.mark.parametrize("epilogue", [b"\r\n", b"\r\nan epilogue a client may send\r\n"], ids=["crlf", "epilogue"])
def test_what_follows_the_closing_boundary_is_read_before_the_next_request(ipfs_daemon, epilogue):
    """A chunked add whose closing boundary and what follows it (its CRLF, an epilogue, the
    terminating chunk) arrive in one piece, then a second request on the same connection: the
    daemon reads the whole body before it answers, so the second request gets its own answer.
    Anything left unread would be taken for the next request line and answered with an HTTP/0.9
    error page: the BadStatusLine '<!DOCTYPE HTML>' that
    TestKuboOverDinLabDaemon::test_concurrent_adds_of_the_same_content met twice under load (not
    reproduced here: the daemon now reads to the body's end explicitly, and this checks it)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(ipfs_daemon["url"])
    data = unique(3 * 1024 * 1024 + 100)  # several reads of the body: the last one ends at the closing boundary
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--" + epilogue)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536]) for i in range(0, len(body), 65536))
    head = (f"POST /api/v0/add?cid-version=1 HTTP/1.1\r\nHost: {url.hostname}\r\n"
            f"Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    version = f"POST /api/v0/version HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Length: 0\r\n\r\n".encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + chunks + b"0\r\n\r\n" + version)
        reader = sock.makefile("rb")
        answers = []
        for _ in range(2):
            status = reader.readline()
            length = None
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answers.append((status, json.loads(reader.read(length))))
    (add_status, added), (version_status, version) = answers
    assert add_status.startswith(b"HTTP/1.1 200") and added["Hash"] == str(cid_of(data, params=ImportParams(cid_version=1)))
    assert version_status.startswith(b"HTTP/1.1 200") and "Version" in version
