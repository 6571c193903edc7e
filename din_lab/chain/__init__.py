"""Ethereum: ``connect(backend) -> Chain``, contract wrappers, decoded reverts and events."""

from din_lab.chain.core import Chain, Receipt, connect, lab_accounts
from din_lab.chain.events import ChainEvent, EventIndex

__all__ = ["Chain", "ChainEvent", "EventIndex", "Receipt", "connect", "lab_accounts"]
