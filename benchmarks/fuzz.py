#!/usr/bin/env python
"""The stateful contract test's slow profile (``make fuzz``): at least 10,000 random sequences.

``tests/test_invariants.py`` plays random calls by random actors on two DIN tasks sharing one
deployment and checks the issue-14 properties after every step (conservation, isolation, stake at
risk, no double claim, every task can end). Its CI profile runs 25 sequences on the embedded chain;
this script runs ``--examples`` sequences (default 10,000) of up to 40 steps on anvil, split over
``--jobs`` processes (each its own pytest, its own anvil with ``--prune-history``, its own
Hypothesis seed: ``--seed``, ``--seed + 1``, ...), shows their progress, and merges their figures:
sequences, steps checked, transactions mined, reverts by name, the phases each task reached and how
each task ended (the teardown drives every task to an end with a stranger's calls alone).

It prints a table and writes JSON (``results/fuzz.json``); each job's pytest output is in
``results/fuzz-job<i>.log``. Exit status 1 if any job failed (its log says which sequence, shrunk).

    cd /work/main && .venv/bin/python benchmarks/fuzz.py [--examples 10000] [--jobs 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _provenance import REPO, git_provenance
from tqdm import tqdm

log = logging.getLogger("fuzz")
TEST = "tests/test_invariants.py"
TARGET_EXAMPLES = 10_000


def run_jobs(*, examples: int, jobs: int, seed: int, out_dir: Path) -> tuple[list[dict[str, Any]], list[int], float]:
    """Start ``jobs`` pytest processes, follow their reports, return (reports, exit codes, seconds)."""
    per_job = math.ceil(examples / jobs)
    procs, reports, logs = [], [], []
    started = time.monotonic()
    for i in range(jobs):
        report = out_dir / f"fuzz-job{i}.json"
        report.unlink(missing_ok=True)
        log_path = out_dir / f"fuzz-job{i}.log"
        env = {**os.environ, "DIN_LAB_FUZZ": "1", "DIN_LAB_FUZZ_EXAMPLES": str(per_job), "DIN_LAB_FUZZ_CHAIN": "anvil",
               "DIN_LAB_FUZZ_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider", f"--hypothesis-seed={seed + i}"]
        handle = log_path.open("w")
        logs.append(handle)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL))
        reports.append(report)
    codes: list[int | None] = [None] * jobs
    with tqdm(total=per_job * jobs, desc="sequences", unit="seq", disable=None, file=sys.stderr) as bar:
        while any(c is None for c in codes):
            time.sleep(5)
            for i, p in enumerate(procs):
                if codes[i] is None:
                    codes[i] = p.poll()
            done = sum(_read(r).get("figures", {}).get("examples", 0) for r in reports)
            bar.update(done - bar.n)
    for handle in logs:
        handle.close()
    return [_read(r) for r in reports], [int(c) for c in codes if c is not None], time.monotonic() - started


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet
        return {}


def merge(reports: list[dict[str, Any]]) -> Counter:
    total: Counter = Counter()
    for r in reports:
        total.update(r.get("figures", {}))
    return total


def table(figures: Counter, *, seconds: float, jobs: int, codes: list[int]) -> str:
    examples = figures["examples"]
    steps = figures["checks"] - examples  # one check after the set-up, then one per step
    reverts = {k.removeprefix("revert "): v for k, v in figures.items() if k.startswith("revert ")}
    lines = [
        "Stateful contract test, slow profile (tests/test_invariants.py on anvil)",
        "",
        f"{'sequences run':<42}{examples:>12,}",
        f"{'steps (each followed by every invariant)':<42}{steps:>12,}",
        f"{'transactions mined':<42}{figures['transactions']:>12,}",
        f"{'reverts (named, expected)':<42}{sum(reverts.values()):>12,}  ({len(reverts)} distinct errors)",
        f"{'wall time':<42}{seconds / 60:>11.1f} min  ({jobs} jobs, {examples / max(seconds, 1e-9) * 60:.0f} seq/min)",
        f"{'jobs failed':<42}{sum(1 for c in codes if c != 0):>12}",
        "",
        "How each task ended (teardown: a stranger alone drives it to an end, then everyone claims):",
    ]
    for task in ("A", "B"):
        ends = {k.split()[-1]: v for k, v in figures.items() if k.startswith(f"ended: {task} ")}
        left = {k.split()[-1]: v for k, v in figures.items() if k.startswith(f"teardown: {task} left in ")}
        lines.append(f"  task {task}: left in " + ", ".join(f"{p} {n:,}" for p, n in sorted(left.items()))
                     + " -> ended " + ", ".join(f"{p} {n:,}" for p, n in sorted(ends.items())))
    lines.append("Phases reached during the sequences (a task counted each time it entered the phase):")
    for task in ("A", "B"):
        reached = {k.removeprefix(f"{task} reached "): v for k, v in figures.items() if k.startswith(f"{task} reached ")}
        lines.append(f"  task {task}: " + ", ".join(f"{p} {n:,}" for p, n in sorted(reached.items())))
    lines.append("Most frequent reverts: " + ", ".join(f"{k} {v:,}" for k, v in Counter(reverts).most_common(8)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=TARGET_EXAMPLES, help="sequences in all (default 10,000)")
    ap.add_argument("--jobs", type=int, default=2, help="processes, each with its own anvil (default 2)")
    ap.add_argument("--seed", type=int, default=1, help="Hypothesis seed of the first job (the others: +1, +2, ...)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "fuzz.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.examples < 1 or args.jobs < 1:
        ap.error("--examples and --jobs must be positive")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log.info("%d sequences over %d jobs (seeds %d..%d); logs in %s", args.examples, args.jobs, args.seed,
             args.seed + args.jobs - 1, args.out.parent)
    reports, codes, seconds = run_jobs(examples=args.examples, jobs=args.jobs, seed=args.seed, out_dir=args.out.parent)
    figures = merge(reports)
    print(table(figures, seconds=seconds, jobs=args.jobs, codes=codes))
    doc = {
        "description": "the stateful contract test's slow profile (benchmarks/fuzz.py over tests/test_invariants.py)",
        "provenance": git_provenance("contracts/src", "tests/test_invariants.py", "din_lab/chain"),
        "settings": {"examples": args.examples, "jobs": args.jobs, "seeds": list(range(args.seed, args.seed + args.jobs)),
                     "backend": "anvil --prune-history", "stateful_step_count": reports[0].get("stateful_step_count")
                     if reports else None},
        "exit_codes": codes,
        "seconds": round(seconds, 1),
        "figures": dict(sorted(figures.items())),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    log.info("wrote %s", args.out)
    failed = [i for i, c in enumerate(codes) if c != 0]
    for i in failed:
        log.error("job %d failed (exit %d): see %s", i, codes[i], args.out.parent / f"fuzz-job{i}.log")
    if figures["examples"] < args.examples and not failed:
        log.error("only %d of %d sequences ran", figures["examples"], args.examples)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
