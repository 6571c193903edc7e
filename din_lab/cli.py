"""``din-lab``: the lab's command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from din_lab import __version__
from din_lab.errors import DinLabError

log = logging.getLogger("din_lab")


def _demo(args: argparse.Namespace) -> int:
    from din_lab.chain import connect
    from din_lab.protocol.scripted import run_lifecycle

    chain = connect(args.chain, accounts=3 + args.participants + args.evaluators)
    report = run_lifecycle(chain, participants=args.participants, evaluators=args.evaluators, rounds=args.rounds)
    print(f"DIN task lifecycle on the {chain.backend} chain: task {report.task}")
    print(f"{report.rounds} training rounds, {report.transactions} transactions, {report.gas_used:,} gas")
    print(f"note: {'; '.join(report.notes)}")
    print(f"\n{'account':<20}{'before':>12}{'after':>12}{'change':>12}")
    for name, before in report.balances_before.items():
        after = report.balances_after[name]
        print(f"{name:<20}{before:>12.2f}{after:>12.2f}{after - before:>+12.2f}")
    print("\nstakes after:", ", ".join(f"{k} {v:.0f}" for k, v in report.stakes_after.items()))
    print("slashed:", ", ".join(report.slashed) or "nobody")
    print("participant scores (BlockFlow median):",
          ", ".join(f"{k} {v:.2f}" for k, v in sorted(report.scores.items())))
    print(f"total supply {report.total_supply:,.0f} DIN (unchanged: no token created or lost)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(report), indent=1))
        print(f"\nresults written to {out.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="din-lab", description="DIN Lab: the Decentralized Intelligence Network, run for real.")
    p.add_argument("--version", action="version", version=f"din-lab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run a scripted task lifecycle and print balances before and after")
    demo.add_argument("--chain", default=None, help="'embedded' (default, or $DIN_LAB_CHAIN) or a JSON-RPC URL")
    demo.add_argument("--participants", type=int, default=6)
    demo.add_argument("--evaluators", type=int, default=4)
    demo.add_argument("--rounds", type=int, default=2)
    demo.add_argument("--out", default=None, help="write the report as JSON here")
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except DinLabError as e:
        print(f"din-lab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
