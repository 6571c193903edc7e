"""IPFS for the lab: everything DIN moves between roles travels as content addressed by CID.

- :class:`ContentStore` is the interface (add, cat, pin, unpin, gc, stat);
- :class:`EmbeddedStore` is IPFS in the kernel (on disk, or in memory), with CIDs exactly
  ``ipfs add``'s (:mod:`din_lab.storage.unixfs`);
- :class:`KuboStore` talks to a Kubo node's RPC API, and :mod:`din_lab.storage.daemon` serves an
  embedded store over that same API (``din-lab ipfs daemon``);
- :mod:`din_lab.storage.serialization` turns tensors and JSON into deterministic bytes, so the
  same values always get the same CID.
"""

from __future__ import annotations

import os

from din_lab.config import STORE_ENV, lab_home
from din_lab.storage.base import ContentStat, ContentStore, GcReport
from din_lab.storage.embedded import EmbeddedStore
from din_lab.storage.kubo import KuboStore
from din_lab.storage.unixfs import ImportParams, cid_of

__all__ = ["ContentStat", "ContentStore", "EmbeddedStore", "GcReport", "ImportParams", "KuboStore", "cid_of",
           "open_store"]


def open_store(spec: str | os.PathLike | None = None) -> ContentStore:
    """The store ``spec`` names: ``"memory"``; an ``http(s)://`` URL of a Kubo RPC API; a directory
    for an on-disk embedded store; or, by default, ``$DIN_LAB_IPFS`` or ``<lab home>/ipfs``."""
    spec = spec if spec is not None else os.environ.get(STORE_ENV) or lab_home() / "ipfs"
    text = os.fspath(spec)
    if text == "memory":
        return EmbeddedStore()
    if text.startswith(("http://", "https://")):
        return KuboStore(text)
    return EmbeddedStore(path=text)
