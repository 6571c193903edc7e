"""UnixFS files in dag-pb blocks, built exactly as ``ipfs add`` builds them.

The importer turns a byte stream into blocks:

- fixed-size chunks (``ipfs add`` default 256 KiB; the empty file is one empty chunk);
- each chunk becomes a leaf: a dag-pb node holding a UnixFS ``File`` message (CIDv0, the default),
  or the chunk itself as a ``raw`` block (``--cid-version=1`` implies ``--raw-leaves``);
- leaves are gathered into a balanced DAG: parents of at most 174 links, each a UnixFS ``File``
  node with ``filesize`` and one ``blocksizes`` entry per child, layer upon layer until one root
  remains; a file of a single chunk is that chunk's leaf (no parent).

This is go-unixfs' balanced builder and the npm reference importer (``ipfs-unixfs-importer``) with
``reduceSingleLeafToSelf``; ``tests/vectors/unixfs`` pins their CIDs, produced by that importer.
Blocks are streamed out as they are made: memory stays at about one chunk plus one pending link
list per layer, whatever the file size.

The reader walks the DAG back into bytes, in order, one block at a time. Both sides use the
hand-written protobuf below (the schemas are tiny and fixed: ``PBNode``/``PBLink`` of dag-pb and
UnixFS ``Data``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from din_lab.cid import V0_DAG_PB, V1_DAG_PB, V1_RAW, Cid
from din_lab.errors import ConfigError, StorageError, UnsupportedContentError

DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_MAX_LINKS = 174

# UnixFS Data.Type
RAW, DIRECTORY, FILE, METADATA, SYMLINK, HAMT_SHARD = range(6)
_TYPE_NAMES = {RAW: "raw", DIRECTORY: "directory", FILE: "file", METADATA: "metadata", SYMLINK: "symlink",
               HAMT_SHARD: "HAMT-sharded directory"}


@dataclass(frozen=True, kw_only=True)
class ImportParams:
    """How a file becomes blocks. The defaults are ``ipfs add``; ``cid_version=1`` is
    ``ipfs add --cid-version=1`` (raw leaves unless ``raw_leaves=False`` is given)."""

    cid_version: int = 0
    raw_leaves: bool | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_links: int = DEFAULT_MAX_LINKS

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ConfigError(f"cid_version must be 0 or 1, not {self.cid_version!r}")
        if not 1 <= self.chunk_size <= 1024 * 1024:
            raise ConfigError(f"chunk_size must be between 1 and 1 MiB (IPFS's block limit), not {self.chunk_size}")
        if self.max_links < 2:
            raise ConfigError(f"max_links must be at least 2, not {self.max_links}")

    @property
    def leaves_raw(self) -> bool:
        return self.cid_version == 1 if self.raw_leaves is None else self.raw_leaves

    @property
    def node_kind(self) -> int:
        return V0_DAG_PB if self.cid_version == 0 else V1_DAG_PB


# ---------------------------------------------------------------------------------------------
# protobuf, by hand


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of a protobuf message."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(view, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _read_varint(view, pos)
            if pos + length > len(view):
                raise ValueError("truncated length-delimited field")
            yield number, wire, view[pos:pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


# ---------------------------------------------------------------------------------------------
# dag-pb and UnixFS messages


@dataclass(frozen=True)
class Link:
    """A dag-pb link as UnixFS files use it: child CID, cumulative size (``Tsize``), and the
    number of file bytes below the child (the parent's ``blocksizes`` entry)."""

    cid: Cid
    tsize: int
    file_bytes: int


@dataclass(frozen=True)
class Node:
    """A decoded block: UnixFS type, inline data, links and ``filesize`` (raw blocks: type RAW)."""

    type: int
    data: bytes
    links: tuple[Cid, ...]
    tsizes: tuple[int, ...]
    filesize: int
    blocksizes: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"type {self.type}")


def _unixfs_file(*, data: bytes = b"", filesize: int, blocksizes: Iterable[int] = ()) -> bytes:
    out = _varint_field(1, FILE)
    if data:
        out += _bytes_field(2, data)
    out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


def _pb_node(*, links: Iterable[Link] = (), data: bytes) -> bytes:
    # dag-pb's canonical order: every Links entry, then Data. Go and JS both write an empty Name.
    out = bytearray()
    for link in links:
        body = _bytes_field(1, link.cid.to_bytes()) + _bytes_field(2, b"") + _varint_field(3, link.tsize)
        out += _bytes_field(2, body)
    out += _bytes_field(1, data)
    return bytes(out)


def decode_block(cid: Cid, block: bytes) -> Node:
    """Decode a block already checked against ``cid``. Raises :class:`UnsupportedContentError` for
    dag-pb blocks that are not UnixFS files (directories, HAMT shards, symlinks, bare dag-pb)."""
    if cid.kind == V1_RAW:
        return Node(type=RAW, data=block, links=(), tsizes=(), filesize=len(block), blocksizes=())
    links: list[Cid] = []
    tsizes: list[int] = []
    data: bytes | None = None
    try:
        for number, wire, value in _fields(block):
            if number == 2 and wire == 2:
                link_cid, tsize = None, 0
                for n, w, v in _fields(value):  # type: ignore[arg-type]
                    if n == 1 and w == 2:
                        link_cid = Cid.from_bytes(bytes(v))  # type: ignore[arg-type]
                    elif n == 3 and w == 0:
                        tsize = v  # type: ignore[assignment]
                if link_cid is None:
                    raise ValueError("a link without a hash")
                links.append(link_cid)
                tsizes.append(tsize)
            elif number == 1 and wire == 2:
                data = bytes(value)  # type: ignore[arg-type]
        if data is None:
            raise UnsupportedContentError(f"{cid} is a dag-pb node without UnixFS data; the lab reads UnixFS files")
        utype, inline, filesize, blocksizes = None, b"", None, []
        for number, wire, value in _fields(data):
            if number == 1 and wire == 0:
                utype = value
            elif number == 2 and wire == 2:
                inline = bytes(value)  # type: ignore[arg-type]
            elif number == 3 and wire == 0:
                filesize = value
            elif number == 4 and wire == 0:
                blocksizes.append(value)
    except StorageError:
        raise
    except Exception as e:  # malformed protobuf or CID inside a block that hashed correctly
        raise UnsupportedContentError(f"{cid} is not a well-formed dag-pb/UnixFS block: {e}") from e
    if utype not in (FILE, RAW):
        name = _TYPE_NAMES.get(utype, f"unknown UnixFS type {utype}") if utype is not None else "untyped"
        raise UnsupportedContentError(f"{cid} is a UnixFS {name}; the lab stores single files (ipfs add without -r)")
    if filesize is None:
        filesize = len(inline) + sum(blocksizes)
    return Node(type=utype, data=inline, links=tuple(links), tsizes=tuple(tsizes), filesize=int(filesize),
                blocksizes=tuple(blocksizes))


# ---------------------------------------------------------------------------------------------
# the importer

BlockSink = Callable[[Cid, bytes], None]


def chunk_bytes(data: bytes | bytearray | memoryview, chunk_size: int) -> Iterator[bytes]:
    """Fixed-size chunks of an in-memory buffer (one empty chunk for empty data)."""
    view = memoryview(data).cast("B")
    if not len(view):
        yield b""
        return
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start:start + chunk_size])


def chunk_stream(read: Callable[[int], bytes], chunk_size: int) -> Iterator[bytes]:
    """Fixed-size chunks from a ``read(n)`` callable, refilling short reads (pipes, sockets)."""
    emitted = False
    while True:
        chunk = read(chunk_size)
        if chunk and len(chunk) < chunk_size:
            parts, have = [chunk], len(chunk)
            while have < chunk_size:
                more = read(chunk_size - have)
                if not more:
                    break
                parts.append(more)
                have += len(more)
            chunk = b"".join(parts)
        if not chunk:
            if not emitted:
                yield b""
            return
        emitted = True
        yield bytes(chunk)
        if len(chunk) < chunk_size:
            return


def rechunk(pieces: Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    """Fixed-size chunks from an iterable of byte strings of any sizes."""
    buffer = bytearray()
    emitted = False
    for piece in pieces:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise UnsupportedContentError(f"a content iterable must yield bytes, got {type(piece).__name__}")
        buffer += piece
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
            emitted = True
    if buffer or not emitted:
        yield bytes(buffer)


class FileImporter:
    """Streams chunks in, blocks out (to ``sink``, leaves first, root last), root CID at the end.

    ``sink=None`` only computes the CID (``ipfs add --only-hash``).
    """

    def __init__(self, params: ImportParams, sink: BlockSink | None = None) -> None:
        self.params = params
        self._sink = sink
        self._layers: list[list[Link]] = [[]]
        self._leaves = 0
        self.size = 0
        self.blocks = 0
        self.cumulative_size = 0  # the root's Tsize, known after finish(): what ipfs add reports as Size

    def _emit(self, kind: int, block: bytes | None, digest: bytes) -> Cid:
        cid = Cid(digest=digest, kind=kind)
        self.blocks += 1
        if self._sink is not None:
            self._sink(cid, block if block is not None else b"")
        return cid

    def add_chunk(self, chunk: bytes) -> None:
        self._leaves += 1
        self.size += len(chunk)
        if self.params.leaves_raw:
            cid = self._emit(V1_RAW, chunk, hashlib.sha256(chunk).digest())
            self._push(0, Link(cid, len(chunk), len(chunk)))
            return
        # a dag-pb leaf is Data{Type: File, Data: chunk, filesize}: hash it in three pieces so the
        # CID-only path never copies the chunk
        n = len(chunk)
        head = _varint_field(1, FILE) + (_varint(2 << 3 | 2) + _varint(n) if n else b"")
        tail = _varint_field(3, n)
        unixfs_len = len(head) + n + len(tail)
        prefix = _varint(1 << 3 | 2) + _varint(unixfs_len) + head
        h = hashlib.sha256(prefix)
        h.update(chunk)
        h.update(tail)
        block = prefix + chunk + tail if self._sink is not None else None
        cid = self._emit(self.params.node_kind, block, h.digest())
        self._push(0, Link(cid, len(prefix) + n + len(tail), n))

    def _push(self, layer: int, link: Link) -> None:
        while len(self._layers) <= layer:
            self._layers.append([])
        self._layers[layer].append(link)
        if len(self._layers[layer]) == self.params.max_links:
            links, self._layers[layer] = self._layers[layer], []
            self._push(layer + 1, self._parent(links))

    def _parent(self, links: list[Link]) -> Link:
        kept = [link for link in links if link.file_bytes > 0]
        file_bytes = sum(link.file_bytes for link in kept)
        data = _unixfs_file(filesize=file_bytes, blocksizes=[link.file_bytes for link in kept])
        block = _pb_node(links=kept, data=data)
        cid = self._emit(self.params.node_kind, block, hashlib.sha256(block).digest())
        return Link(cid, len(block) + sum(link.tsize for link in kept), file_bytes)

    def finish(self) -> Cid:
        """Close the DAG and return its root."""
        root = self._root()
        self.cumulative_size = root.tsize
        return root.cid

    def _root(self) -> Link:
        if self._leaves == 0:
            self.add_chunk(b"")
        if self._leaves == 1:
            return self._layers[0][0]  # a single chunk is its own file node
        layer = 0
        while True:
            pending = self._layers[layer]
            higher = any(self._layers[k] for k in range(layer + 1, len(self._layers)))
            if not higher and len(pending) == 1 and layer > 0:
                return pending[0]
            if pending:
                self._layers[layer] = []
                self._push(layer + 1, self._parent(pending))
            layer += 1


def import_chunks(chunks: Iterable[bytes], *, params: ImportParams, sink: BlockSink | None = None) -> Cid:
    """The root CID of a file given as fixed-size chunks; every block goes to ``sink``."""
    importer = FileImporter(params, sink)
    for chunk in chunks:
        importer.add_chunk(chunk)
    return importer.finish()


def cid_of(data: bytes, *, params: ImportParams | None = None) -> Cid:
    """What ``ipfs add --only-hash`` prints for ``data`` (with ``params``' options)."""
    params = params or ImportParams()
    return import_chunks(chunk_bytes(data, params.chunk_size), params=params)


# ---------------------------------------------------------------------------------------------
# the reader

BlockSource = Callable[[Cid], bytes]


def read_file(root: Cid, get_block: BlockSource) -> Iterator[bytes]:
    """The bytes of a UnixFS file, in order, one block's data at a time (depth-first)."""
    stack: list[Cid] = [root]
    while stack:
        cid = stack.pop()
        node = decode_block(cid, get_block(cid))
        if node.data:
            yield node.data
        stack.extend(reversed(node.links))


def walk(root: Cid, get_block: BlockSource) -> Iterator[tuple[Cid, int, Node | None]]:
    """Every block of a DAG, depth-first, as (CID, block size, decoded node), with repeats for
    repeated children. Raw leaves below the root are not read: their size is their link's Tsize
    and their node is ``None`` (a raw block has no links)."""
    block = get_block(root)
    stack: list[tuple[Cid, int]] = [(root, len(block))]
    first = True
    while stack:
        cid, size = stack.pop()
        if cid.kind == V1_RAW and not first:
            yield cid, size, None
            continue
        if not first:
            block = get_block(cid)
            size = len(block)
        first = False
        node = decode_block(cid, block)
        yield cid, size, node
        stack.extend(reversed(list(zip(node.links, node.tsizes, strict=True))))
