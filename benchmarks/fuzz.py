#!/usr/bin/env python
"""The stateful contract test's slow profile (``make fuzz``): at least 10,000 random sequences.

``tests/test_invariants.py`` plays random calls by random actors on two DIN tasks sharing one
deployment and checks the issue-14 properties after every step (conservation, isolation, stake at
risk, no double claim, every task can end). Its CI profile runs 25 sequences on the embedded chain;
this script runs ``--examples`` sequences (default 10,000) of up to 40 steps on anvil, split over
chunks of ``--chunk`` sequences, ``--jobs`` at a time (each chunk its own pytest, its own anvil with
``--prune-history``, its own Hypothesis seed: ``--seed``, ``--seed + 1``, ...; a failing chunk costs
only itself), shows their progress, and merges their figures:
sequences, steps checked, transactions mined, reverts by name, the phases each task reached and how
each task ended (the teardown drives every task to an end with a stranger's calls alone).

It prints a table and writes JSON (``results/fuzz.json``); each job's pytest output is in
``results/fuzz-chunk<i>.log``. Exit status 1 if any chunk failed (its log has the shrunk sequence).

    cd /work/main && .venv/bin/python benchmarks/fuzz.py [--examples 10000] [--jobs 2] [--chunk 500] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _provenance import REPO, git_provenance
from tqdm import tqdm

log = logging.getLogger("fuzz")
TEST = "tests/test_invariants.py"
TARGET_EXAMPLES = 10_000


def run_chunks(*, examples: int, jobs: int, chunk: int, seed: int, out_dir: Path
               ) -> tuple[list[dict[str, Any]], dict[int, int], float]:
    """Run ``examples`` sequences as chunks of ``chunk`` (chunk i: a pytest process with its own
    anvil and Hypothesis seed ``seed + i``), ``jobs`` at a time, so a failing chunk (which then
    shrinks its failure for up to five minutes) costs only itself. Returns (the chunks' reports,
    exit code by chunk, seconds)."""
    sizes = [min(chunk, examples - i) for i in range(0, examples, chunk)]
    reports = [out_dir / f"fuzz-chunk{i}.json" for i in range(len(sizes))]
    for r in reports:
        r.unlink(missing_ok=True)
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    codes: dict[int, int] = {}
    queue = list(range(len(sizes)))
    started = last_log = time.monotonic()
    with tqdm(total=examples, desc="sequences", unit="seq", disable=None, file=sys.stderr) as bar, \
            _stopping_children(running):
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop(0)
                env = {**os.environ, "DIN_LAB_FUZZ": "1", "DIN_LAB_FUZZ_EXAMPLES": str(sizes[i]),
                       "DIN_LAB_FUZZ_CHAIN": "anvil", "DIN_LAB_FUZZ_REPORT": str(reports[i])}
                cmd = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider",
                       f"--hypothesis-seed={seed + i}"]
                handle = (out_dir / f"fuzz-chunk{i}.log").open("w")
                running[i] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL), handle)
            time.sleep(2)
            for i, (proc, handle) in list(running.items()):
                if proc.poll() is not None:
                    handle.close()
                    codes[i] = proc.returncode
                    del running[i]
                    if proc.returncode != 0:
                        log.error("chunk %d (seed %d) failed: see %s", i, seed + i, out_dir / f"fuzz-chunk{i}.log")
            figures = [_read(r).get("figures", {}) for r in reports]
            valid = sum(f.get("sequences valid", 0) or f.get("examples", 0) for f in figures)
            bar.update(min(valid, examples) - bar.n)
            if bar.disable and time.monotonic() - last_log > 60:  # no terminal: a line a minute
                last_log = time.monotonic()
                log.info("%d of %d sequences, %.0f min", min(valid, examples), examples, (last_log - started) / 60)
    return [_read(r) for r in reports], codes, time.monotonic() - started


@contextlib.contextmanager
def _stopping_children(running: dict[int, tuple[subprocess.Popen, Any]]) -> Iterator[None]:
    """On an interrupt (Ctrl-C, SIGTERM) stop the chunks still running (each stops its own anvil),
    then re-raise: nothing is left behind."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        for proc, _ in running.values():
            proc.send_signal(signal.SIGINT)  # pytest then tears its fixtures down: its anvil stops
        for proc, handle in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            handle.close()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
    examples = figures["sequences valid"]  # Hypothesis' count (an overrun sequence stops part way)
    steps = figures["checks"] - figures["examples"]  # one check after each set-up, then one per step
    reverts = {k.removeprefix("revert "): v for k, v in figures.items() if k.startswith("revert ")}
    lines = [
        "Stateful contract test, slow profile (tests/test_invariants.py on anvil)",
        "",
        f"{'sequences run (valid, as Hypothesis counts)':<42}{examples:>12,}  "
        f"(+{figures['sequences overrun']:,} cut short: out of generated data)",
        f"{'steps (each followed by every invariant)':<42}{steps:>12,}",
        f"{'transactions mined':<42}{figures['transactions']:>12,}",
        f"{'reverts (named, expected)':<42}{sum(reverts.values()):>12,}  ({len(reverts)} distinct errors)",
        f"{'wall time':<42}{seconds / 60:>11.1f} min  ({jobs} jobs, {examples / max(seconds, 1e-9) * 60:.0f} seq/min)",
        f"{'failing chunks':<42}{sum(1 for c in codes if c != 0):>12}",
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
    ap.add_argument("--jobs", type=int, default=2, help="processes at a time, each with its own anvil (default 2)")
    ap.add_argument("--chunk", type=int, default=500, help="sequences per process (default 500)")
    ap.add_argument("--seed", type=int, default=1, help="Hypothesis seed of the first job (the others: +1, +2, ...)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "fuzz.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if min(args.examples, args.jobs, args.chunk) < 1:
        ap.error("--examples, --jobs and --chunk must be positive")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chunks = math.ceil(args.examples / args.chunk)
    log.info("%d sequences in %d chunks, %d at a time (seeds %d..%d); logs in %s", args.examples, chunks, args.jobs,
             args.seed, args.seed + chunks - 1, args.out.parent)
    reports, codes, seconds = run_chunks(examples=args.examples, jobs=args.jobs, chunk=args.chunk, seed=args.seed,
                                         out_dir=args.out.parent)
    figures = merge(reports)
    print(table(figures, seconds=seconds, jobs=args.jobs, codes=list(codes.values())))
    doc = {
        "description": "the stateful contract test's slow profile (benchmarks/fuzz.py over tests/test_invariants.py)",
        "provenance": git_provenance("contracts/src", "tests/test_invariants.py", "din_lab/chain"),
        "settings": {"examples": args.examples, "jobs": args.jobs, "chunk": args.chunk,
                     "seeds": list(range(args.seed, args.seed + chunks)),
                     "backend": "anvil --prune-history", "stateful_step_count": reports[0].get("stateful_step_count")
                     if reports else None},
        "exit_codes": {str(i): c for i, c in sorted(codes.items())},
        "seconds": round(seconds, 1),
        "figures": dict(sorted(figures.items())),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    log.info("wrote %s", args.out)
    failed = sorted(i for i, c in codes.items() if c != 0)
    for i in failed:
        log.error("chunk %d (seed %d) failed (exit %d): see %s", i, args.seed + i, codes[i],
                  args.out.parent / f"fuzz-chunk{i}.log")
    if figures["sequences valid"] < args.examples and not failed:
        log.error("only %d of %d sequences ran", figures["sequences valid"], args.examples)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
