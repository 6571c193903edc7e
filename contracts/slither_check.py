#!/usr/bin/env python3
"""Run Slither over contracts/src with the pinned solc-js and hold the findings against a triage file.

    .venv-slither/bin/python contracts/slither_check.py                  (make slither; make lint runs it)
    .venv-slither/bin/python contracts/slither_check.py --update-triage  append unlisted High/Medium
                                                                         findings with reason "TODO"

Slither compiles through crytic-compile's solc-json framework with contracts/solc-slither.js as its
`solc`: the solc-js in contracts/node_modules, build.js's settings, no solc binary, no download.
Findings whose elements all lie outside contracts/src (OpenZeppelin in node_modules) are dropped.

A finding is keyed by its detector (`check`), its first element (`where`: Contract.function,
Contract.variable, Contract.function.local) and the source text of the statements it names
(`nodes`; for reentrancy, the external calls only), never by line numbers, so moving code does
not churn contracts/slither-triage.json. A triage entry without `nodes` accepts every finding of
that check at that place: use it where the reason holds for the whole function or variable.

Exit 1 if a High or Medium finding is not in the triage file, or is listed with reason "TODO";
exit 2 if Slither or the compiler fails. Low, Informational and Optimization findings are printed,
never fatal. Triage entries that match nothing are reported as stale (a warning).
"""

# ruff: noqa: T201  (a command-line script: it prints its table)

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parent
SRC = CONTRACTS / "src"
WRAPPER = CONTRACTS / "solc-slither.js"
TRIAGE = CONTRACTS / "slither-triage.json"
FATAL = ("High", "Medium")
IMPACT_ORDER = {"High": 0, "Medium": 1, "Low": 2, "Informational": 3, "Optimization": 4}
TODO = "TODO"
# build.js's settings; the wrapper (SOLC_SLITHER_AST_ONLY=1) asks solc for the AST and ABI only
SETTINGS = {"optimizer": {"enabled": True, "runs": 200}, "viaIR": True, "evmVersion": "prague"}


def standard_json_input() -> dict:
    """Every .sol file under contracts/src (recursively, as build.js compiles them), by path from contracts/."""
    sources = sorted(p.relative_to(CONTRACTS).as_posix() for p in SRC.rglob("*.sol"))
    if not sources:
        sys.exit(f"slither_check: no .sol file under {SRC}")
    return {"language": "Solidity", "sources": {s: {"urls": [s]} for s in sources}, "settings": dict(SETTINGS)}


def run_slither(slither: str) -> list[dict]:
    """Slither's detector results (its JSON), or exit 2 with the compiler's or Slither's message."""
    env = dict(os.environ, SOLC_SLITHER_AST_ONLY="1")
    with tempfile.TemporaryDirectory(prefix="slither-") as tmp:
        target = Path(tmp, "input.json")
        target.write_text(json.dumps(standard_json_input()))
        out = Path(tmp, "out.json")
        cmd = [slither, str(target), "--compile-force-framework", "solc-json", "--solc", str(WRAPPER),
               "--solc-working-dir", str(CONTRACTS), "--fail-none", "--json", str(out),
               "--json-types", "detectors"]
        try:
            proc = subprocess.run(cmd, cwd=CONTRACTS, env=env, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            print(f"slither_check: no slither at {slither}: `make slither` installs it", file=sys.stderr)
            sys.exit(2)
        result = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
    if proc.returncode != 0 or not result or not result.get("success"):
        print(f"slither_check: Slither failed (exit {proc.returncode}): {' '.join(cmd)}", file=sys.stderr)
        # Slither's JSON carries the compiler's message; else its stderr (a traceback) says what failed
        print(result["error"] if result and result.get("error") else proc.stderr[-8000:], file=sys.stderr)
        sys.exit(2)
    return result.get("results", {}).get("detectors", [])


def _in_src(element: dict) -> bool:
    filename = element.get("source_mapping", {}).get("filename_absolute")
    return bool(filename) and Path(filename).resolve().is_relative_to(SRC)


def _qualified(element: dict) -> str:
    """Contract.function, Contract.variable, Contract.function.local: the element and its parents."""
    names = [element.get("name", "?")]
    parent = element.get("type_specific_fields", {}).get("parent")
    while parent:
        names.append(parent.get("name", "?"))
        parent = parent.get("type_specific_fields", {}).get("parent")
    return ".".join(reversed(names))


def key(finding: dict) -> dict:
    """The stable identity of a finding: check, where, and the source text of its statements."""
    elements = finding.get("elements", [])
    primary = next((e for e in elements if e.get("type") != "node"), elements[0] if elements else {})
    nodes = [e for e in elements if e.get("type") == "node"]
    # a reentrancy finding names its external calls and, as context, the writes and events after
    # them: its identity is the calls
    calls = [e for e in nodes if e.get("additional_fields", {}).get("underlying_type", "").startswith("external_calls")]
    nodes = sorted({" ".join(e.get("name", "").split()) for e in (calls or nodes)})
    return {"check": finding["check"], "where": _qualified(primary), "nodes": nodes}


def matches(entry: dict, k: dict) -> bool:
    if entry.get("check") != k["check"] or entry.get("where") != k["where"]:
        return False
    return "nodes" not in entry or sorted(" ".join(n.split()) for n in entry["nodes"]) == k["nodes"]


def load_triage() -> list[dict]:
    if not TRIAGE.exists():
        return []
    entries = json.loads(TRIAGE.read_text()).get("accepted", [])
    for entry in entries:
        if not {"check", "where", "reason"} <= entry.keys():
            sys.exit(f"slither_check: {TRIAGE.name}: an entry needs check, where and reason: {entry}")
    return entries


def write_triage(entries: list[dict]) -> None:
    doc = json.loads(TRIAGE.read_text()) if TRIAGE.exists() else {}
    doc["accepted"] = entries
    TRIAGE.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-triage", action="store_true",
                        help=f'append unlisted High/Medium findings to {TRIAGE.name} with reason "{TODO}"')
    beside = Path(sys.executable).parent / "slither"
    default = beside if beside.exists() else CONTRACTS.parent / ".venv-slither" / "bin" / "slither"
    parser.add_argument("--slither", default=str(default),
                        help="the slither command (default: the one beside this Python, else .venv-slither's)")
    args = parser.parse_args()

    started = time.monotonic()
    findings = [f for f in run_slither(args.slither) if any(_in_src(e) for e in f.get("elements", []))]
    entries = load_triage()

    rows: dict[tuple, dict] = {}  # one row per key: Slither repeats a finding once per derived contract
    for finding in findings:
        k = key(finding)
        ident = (k["check"], k["where"], tuple(k["nodes"]))
        row = rows.setdefault(ident, {"impact": finding["impact"], "key": k, "count": 0,
                                      "entry": next((e for e in entries if matches(e, k)), None)})
        row["count"] += 1
    ordered = sorted(rows.values(), key=lambda r: (IMPACT_ORDER.get(r["impact"], 9), r["key"]["check"],
                                                   r["key"]["where"], r["key"]["nodes"]))

    failing = []
    print(f"{'impact':<13} {'status':<9} {'check':<28} where / statements")
    for row in ordered:
        entry, k = row["entry"], row["key"]
        fatal = row["impact"] in FATAL
        if entry is None:
            status = "NEW" if fatal else "-"
        elif entry["reason"].strip() == TODO:
            status = "TODO"
        else:
            status = "triaged"
        if fatal and status in ("NEW", "TODO"):
            failing.append(row)
        nodes = "; ".join(k["nodes"])
        nodes = nodes if len(nodes) <= 160 else nodes[:157] + "..."
        print(f"{row['impact']:<13} {status:<9} {k['check']:<28} {k['where']}" + (f"  [{nodes}]" if nodes else ""))

    used = {id(r["entry"]) for r in rows.values() if r["entry"] is not None}
    for entry in entries:
        if id(entry) not in used:
            print(f"warning: stale triage entry (matches no finding): {entry['check']} {entry['where']}"
                  + (f" [{'; '.join(entry['nodes'])}]" if "nodes" in entry else ""))

    if args.update_triage:
        new = [{"check": r["key"]["check"], "where": r["key"]["where"]}
               | ({"nodes": r["key"]["nodes"]} if r["key"]["nodes"] else {})
               | {"impact": r["impact"], "reason": TODO}
               for r in failing if r["entry"] is None]
        if new:
            write_triage(entries + new)
            print(f'{len(new)} finding(s) appended to {TRIAGE} with reason "{TODO}": write each reason, '
                  "or fix the contract and drop the entry")

    counts = {i: sum(r["impact"] == i for r in ordered) for i in IMPACT_ORDER}
    print(f"slither: {len(ordered)} finding(s) in contracts/src ("
          + ", ".join(f"{n} {i}" for i, n in counts.items() if n)
          + f"), {len(failing)} High/Medium not triaged, {time.monotonic() - started:.1f} s")
    if failing:
        print(f"slither: FAILED: fix the contract, or list the finding in {TRIAGE.name} with the reason it is "
              f"acceptable (`{Path(sys.argv[0]).name} --update-triage` adds the entries to edit)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
