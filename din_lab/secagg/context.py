"""What a secure-aggregation round is: :class:`RoundContext` (task, round, subgroup). Every key
derivation, every share's associated data and every message carries it, so nothing from one
round or subgroup is accepted in another."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from din_lab.errors import ConfigError
from din_lab.secagg import wire

__all__ = ["RoundContext"]


@dataclass(frozen=True, kw_only=True)
class RoundContext:
    """One subgroup of one round of one task. ``task`` identifies the task (e.g. the task contract's
    address); ``round`` and ``subgroup`` are the contract's numbers."""

    task: str
    round: int
    subgroup: int

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError("RoundContext.task must be a non-empty string (e.g. the task contract address)")
        for name in ("round", "subgroup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= wire.U64_MAX:
                raise ConfigError(f"RoundContext.{name} must be an integer in [0, 2^64), got {value!r}")

    def fields(self) -> list[bytes]:
        """The context as three wire fields: task (UTF-8), round (u64), subgroup (u64)."""
        return [self.task.encode(), wire.u64(self.round), wire.u64(self.subgroup)]

    @classmethod
    def from_fields(cls, fields: list[bytes], error: type[Exception]) -> RoundContext:
        try:
            task = fields[0].decode()
        except UnicodeDecodeError as e:
            raise error("the task field is not UTF-8") from e
        try:
            return cls(task=task, round=wire.unpack_u64(fields[1], error, "round"),
                       subgroup=wire.unpack_u64(fields[2], error, "subgroup"))
        except ConfigError as e:
            raise error(str(e)) from e

    @functools.cached_property
    def digest(self) -> bytes:
        """SHA-256 of the context's wire fields: the HKDF salt of every key of this round."""
        return hashlib.sha256(b"din-lab/secagg/v1/context" + wire.pack(0, self.fields())).digest()

    def __str__(self) -> str:
        return f"task {self.task} round {self.round} subgroup {self.subgroup}"
