"""Compiled contract artifacts (ABI + bytecode) shipped with the package.

Built from ``contracts/src`` by ``make contracts`` (solc-js, pinned in contracts/package.json);
``tests/test_artifacts.py`` proves they match the sources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from din_lab.errors import ChainError

CONTRACT_NAMES = ("DINToken", "EvaluatorRegistry", "DINTask", "DINTaskScoring", "DINTaskFactory", "Allowlist",
                  "BlockFlowReference", "ShuffleReference", "DINParameters", "EvaluatorLicence", "PublicGoodsFund",
                  "VoiceCredits", "DINProposals", "TimelockController")


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    runtime_size: int


@cache
def load_artifact(name: str) -> Artifact:
    if name not in CONTRACT_NAMES:
        raise ChainError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    try:
        text = resources.files("din_lab.chain").joinpath("artifacts", f"{name}.json").read_text()
    except FileNotFoundError as e:
        raise ChainError(f"artifact {name}.json is missing: run `make contracts`") from e
    data = json.loads(text)
    return Artifact(name=name, abi=tuple(data["abi"]), bytecode=data["bytecode"], runtime_size=data["runtimeSize"])


@cache
def manifest() -> dict[str, Any]:
    return json.loads(resources.files("din_lab.chain").joinpath("artifacts", "manifest.json").read_text())


def all_abi_entries(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """Every ABI entry of ``kind`` ("error", "event") across the shipped contracts."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name in CONTRACT_NAMES:
        out.extend((name, e) for e in load_artifact(name).abi if e.get("type") == kind)
    return out


def abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type string of a parameter, expanding tuples (structs)."""
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple'):]}"
    return t
