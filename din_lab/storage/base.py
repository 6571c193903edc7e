"""The ``ContentStore`` interface every IPFS backend of the lab implements, and what it returns.

``add`` takes bytes, a path or a binary stream (or an iterable of byte strings) and returns the CID
``ipfs add`` would print for the same bytes; ``cat`` / ``iter_cat`` give the bytes back; ``pin``,
``unpin`` and ``gc`` keep or drop content; ``stat`` describes a DAG. A ``str`` given to ``add`` is a
path, never data: encode text first (or use :mod:`din_lab.storage.serialization`).
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from din_lab.cid import Cid
from din_lab.errors import InputPathError, UnsupportedContentError
from din_lab.storage.unixfs import ImportParams, chunk_bytes, chunk_stream, rechunk

Content = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Iterable[bytes]
CidLike = Cid | str


@dataclass(frozen=True, kw_only=True)
class ContentStat:
    """What a DAG holds: ``size`` file bytes; ``cumulative_size`` the root block plus the sizes its
    links declare (Kubo's ``CumulativeSize``, what ``ipfs add`` reports as ``Size``); ``links`` of
    the root; ``blocks`` and ``dag_size``: distinct blocks below and including the root, and their
    total bytes (``ipfs dag stat``)."""

    cid: Cid
    size: int
    cumulative_size: int
    links: int
    blocks: int
    dag_size: int

    @property
    def codec(self) -> str:
        return "raw" if self.cid.codec == 0x55 else "dag-pb"


@dataclass(frozen=True, kw_only=True)
class GcReport:
    """What ``gc`` removed: one CID per block, in the form Kubo's ``repo gc`` prints (CIDv1 raw of
    the block's multihash, since blocks are stored by hash). ``bytes_freed`` is ``None`` where the
    backend does not say (Kubo)."""

    removed: tuple[Cid, ...]
    bytes_freed: int | None

    @property
    def blocks_removed(self) -> int:
        return len(self.removed)


class ContentStore(ABC):
    """IPFS as the lab uses it: add, cat, pin, unpin, gc, stat. Implementations:
    :class:`~din_lab.storage.embedded.EmbeddedStore` (on disk or in memory) and
    :class:`~din_lab.storage.kubo.KuboStore` (a Kubo node's RPC API)."""

    name: str = "store"

    @abstractmethod
    def add(self, content: Content, *, cid_version: int = 0, only_hash: bool = False, pin: bool = True,
            params: ImportParams | None = None) -> Cid:
        """Import ``content`` as ``ipfs add [--cid-version=1] [--only-hash]`` would; pinned unless
        ``pin=False``. ``params`` overrides the layout (raw leaves, chunk size, links per node) for
        experiments; by default it is ``ipfs add``'s for ``cid_version``. Nothing of a failed add is
        visible afterwards."""

    @abstractmethod
    def iter_cat(self, cid: CidLike) -> Iterator[bytes]:
        """The content of ``cid``, streamed block by block; every block checked against its hash."""

    def cat(self, cid: CidLike) -> bytes:
        """The whole content of ``cid`` (use :meth:`iter_cat` for large files)."""
        return b"".join(self.iter_cat(cid))

    @abstractmethod
    def has(self, cid: CidLike) -> bool:
        """Whether the root block of ``cid`` is here (an add writes its root last)."""

    @abstractmethod
    def pin(self, cid: CidLike) -> None:
        """Keep ``cid`` and everything below it through ``gc`` (recursive pin)."""

    @abstractmethod
    def unpin(self, cid: CidLike) -> None:
        """Drop the pin of ``cid``; raises :class:`~din_lab.errors.NotPinnedError` if it has none."""

    @abstractmethod
    def pins(self) -> frozenset[Cid]:
        """The recursively pinned roots."""

    @abstractmethod
    def gc(self) -> GcReport:
        """Remove every block no pin reaches."""

    @abstractmethod
    def stat(self, cid: CidLike) -> ContentStat:
        """Size, links and block count of the DAG under ``cid``."""

    @abstractmethod
    def get_block(self, cid: CidLike) -> bytes:
        """One raw block (``ipfs block get``), checked against its hash."""

    def close(self) -> None:
        """Release what the store holds open (nothing for most backends)."""
        return None

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_content_chunks(content: Content, chunk_size: int) -> Iterator[bytes]:
    """Fixed-size chunks of any accepted content, read lazily (a path or a stream is never read
    whole). Raises :class:`InputPathError` for a missing, directory or unreadable path."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        yield from chunk_bytes(content, chunk_size)
    elif isinstance(content, (str, os.PathLike)):
        path = Path(content)
        try:
            if path.is_dir():
                raise InputPathError(f"{path} is a directory: the lab adds single files (like ipfs add without -r)")
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the generator ends
        except InputPathError:
            raise
        except FileNotFoundError as e:
            hint = " (to add text, pass bytes: text.encode())" if isinstance(content, str) else ""
            raise InputPathError(f"no such file: {path}{hint}") from e
        except OSError as e:
            raise InputPathError(f"cannot read {path}: {e.strerror or e}") from e
        with f:
            try:
                yield from chunk_stream(f.read, chunk_size)
            except OSError as e:
                raise InputPathError(f"reading {path} failed: {e.strerror or e}") from e
    elif hasattr(content, "read"):
        if isinstance(content, io.TextIOBase):
            raise UnsupportedContentError("a text stream was given: open the file in binary mode ('rb')")
        yield from chunk_stream(content.read, chunk_size)
    elif isinstance(content, Iterable):
        yield from rechunk(content, chunk_size)
    else:
        raise UnsupportedContentError(
            f"cannot add a {type(content).__name__}: give bytes, a path, a binary stream or an iterable of bytes")
