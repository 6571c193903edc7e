"""Ethereum: ``connect(backend) -> Chain``, contract wrappers, decoded reverts and events."""

from din_lab.chain.core import CallFailed, Chain, Receipt, connect, join, lab_accounts
from din_lab.chain.events import ChainEvent, EventIndex

__all__ = ["CallFailed", "Chain", "ChainEvent", "EventIndex", "Receipt", "connect", "join", "lab_accounts"]
