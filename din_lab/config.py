"""Validated configuration values shared by every layer.

Issue by issue this grows into the lab's Scenario / ExperimentConfig (DESIGN.md section 3);
today it holds the chain backend choice, read from arguments or the environment.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from din_lab.errors import ConfigError

CHAIN_ENV = "DIN_LAB_CHAIN"
HOME_ENV = "DIN_LAB_HOME"


def lab_home() -> Path:
    """The lab's data directory: ``$DIN_LAB_HOME``, else ``~/.din-lab`` (created on first use by
    whatever stores data there, e.g. the embedded IPFS store under ``ipfs/``)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".din-lab"


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """Which chain to use: ``"embedded"`` (py-evm in process) or a JSON-RPC URL."""

    backend: str = "embedded"
    accounts: int = 20
    seed: int = 0
    block_gas_limit: int = 30_000_000  # embedded chain only; a node by URL keeps its own

    def __post_init__(self) -> None:
        if self.backend != "embedded" and not self.backend.startswith(("http://", "https://")):
            raise ConfigError(f"unknown chain backend {self.backend!r}: use 'embedded' or an http(s):// JSON-RPC URL")
        if self.accounts < 1:
            raise ConfigError("accounts must be at least 1")
        if self.seed < 0:
            raise ConfigError("seed must be non-negative")
        if self.block_gas_limit < 21_000:
            raise ConfigError("block_gas_limit must be at least 21000")

    @classmethod
    def from_env(cls, **overrides: Any) -> ChainConfig:
        backend = overrides.pop("backend", None) or os.environ.get(CHAIN_ENV) or "embedded"
        return cls(backend=backend, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown chain settings: {', '.join(sorted(unknown))}")
        return cls(**data)
