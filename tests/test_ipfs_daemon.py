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
