"""The one error tree of DIN Lab: catch ``DinLabError`` to catch everything the lab raises.

Third-party errors are wrapped at the boundary (``raise ChainError(...) from e``). A contract
revert surfaces as a subclass of :class:`ContractRevert` named after the Solidity custom error
(``din_lab.chain.reverts.WrongPhase``, ...), see :mod:`din_lab.chain.reverts`.
"""

from __future__ import annotations

from typing import Any


class DinLabError(Exception):
    """Base of every error DIN Lab raises."""


class ConfigError(DinLabError):
    """A configuration value is missing, malformed or out of range."""


class ChainError(DinLabError):
    """Talking to the Ethereum backend failed (connection, transaction, artifact)."""


class ContractRevert(ChainError):
    """A contract call or transaction reverted.

    Subclasses are named after the Solidity custom error; ``args_by_name`` holds its decoded
    arguments. ``Error(string)`` reverts arrive as :class:`RevertedWithReason` and panics as
    :class:`Panic`.
    """

    error_name: str = "ContractRevert"

    def __init__(
        self,
        message: str,
        *,
        args_by_name: dict[str, Any] | None = None,
        tx_hash: str | None = None,
        data: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.args_by_name = dict(args_by_name or {})
        self.tx_hash = tx_hash
        self.data = data


class RevertedWithReason(ContractRevert):
    """``revert("...")`` / ``require(cond, "...")``."""

    error_name = "Error"


class Panic(ContractRevert):
    """A Solidity panic (assert, overflow, division by zero, array bounds)."""

    error_name = "Panic"


class StorageError(DinLabError):
    """Content storage (IPFS) failed."""


class MalformedCidError(StorageError, ConfigError):
    """A string or byte sequence is not a valid CID."""


class ContentNotFoundError(StorageError):
    """The store holds no content (or no block) for this CID."""

    def __init__(self, message: str, *, cid: str) -> None:
        super().__init__(message)
        self.cid = cid


class IntegrityError(StorageError):
    """A stored block does not hash to its CID: it is corrupted and is never returned as data."""

    def __init__(self, message: str, *, cid: str) -> None:
        super().__init__(message)
        self.cid = cid


class UnsupportedContentError(StorageError):
    """The content is valid IPFS but outside what the lab handles (a directory, a HAMT shard, ...)."""


class InputPathError(StorageError):
    """A path given to ``add`` is missing, a directory or unreadable."""


class NotPinnedError(StorageError):
    """``unpin`` of a CID that is not pinned."""


class StoreWriteError(StorageError):
    """Writing to the store failed (disk full, permissions); nothing of the failed add is visible."""


class RemoteStoreError(StorageError):
    """A Kubo RPC node was unreachable or answered with an error."""


class SerializationError(StorageError):
    """Bytes are not a valid serialized object, or an object cannot be serialized deterministically."""


class CryptoError(DinLabError):
    """A cryptographic operation failed (secure aggregation, homomorphic encryption)."""


class ProtocolError(DinLabError):
    """A DIN protocol rule was broken or a round cannot proceed."""


class MissingDependencyError(DinLabError):
    """An optional part is not installed; the message says how to install it."""
