"""Gas of the economy's operations (issue 18): deploying it, evaluator licences (buy, tax settle,
price change, deposit top-up and withdrawal, foreclosure, return), a quadratic-funding round
(register, contribute, finalize per project, claim, collect a task's dues), voice credits and a DIN
Proposal Protocol (propose, vote, queue, execute). Gas from receipts on the embedded py-evm chain,
over a lab task with licences, then a QF round and a DPP vote played by its agents.

    python benchmarks/gas_economy.py            prints the table, writes results/gas_economy.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _provenance import git_provenance

from din_lab.chain.din import WAD
from din_lab.config import ExperimentConfig
from din_lab.protocol import economy
from din_lab.protocol.lab import Lab

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("gas_economy")

# receipt function name -> the row it is reported under
ROWS = [
    ("deploy PublicGoodsFund", "deploy PublicGoodsFund"),
    ("deploy TimelockController", "deploy TimelockController"),
    ("deploy DINParameters", "deploy DINParameters"),
    ("deploy EvaluatorLicence", "deploy EvaluatorLicence (mints the supply to the fund)"),
    ("deploy VoiceCredits", "deploy VoiceCredits"),
    ("deploy DINProposals", "deploy DINProposals"),
    ("buy", "licence: buy (from the fund or a holder)"),
    ("settle", "licence: settle the tax due"),
    ("settle (foreclosure)", "licence: settle that forecloses"),
    ("setPrice", "licence: setPrice (settles first)"),
    ("topUp", "licence: topUp"),
    ("withdraw", "licence: withdraw"),
    ("giveBack", "licence: giveBack"),
    ("optIn", "task: optIn with a licence check"),
    ("commitScores", "task: commitScores with a licence check"),
    ("registerProject", "QF: registerProject"),
    ("startRound", "QF: startRound"),
    ("contribute", "QF: contribute"),
    ("finalizeRound", "QF: finalizeRound (a chunk of projects)"),
    ("claim (fund)", "QF: claim a payout"),
    ("collect", "QF: collect a task's dues"),
    ("grant", "credits: grant from a finished task"),
    ("propose", "DPP: propose (economic)"),
    ("castVote", "DPP: castVote"),
    ("queue", "DPP: queue on the timelock"),
    ("execute", "DPP: execute after the delay"),
]


def stats(values: list[int]) -> dict[str, float]:
    return {"count": len(values), "mean": statistics.fmean(values), "max": max(values)}


def measure(seed: int) -> dict[str, Any]:
    lab = Lab.create(ExperimentConfig(participants=6, evaluators=4, rounds=2, economy=True, seed=seed,
                                      evaluation="plaintext", secagg=False))
    try:
        lab.run()
        chain, e = lab.chain, lab.din.economy
        L = e.licence.functions
        a, b = lab.evaluators[0], lab.evaluators[1]
        held = lambda agent: chain.call(L.licenceOf(agent.address))[0]  # noqa: E731
        # licence operations by the evaluators, each its own transaction
        b_id, a_id = held(b), held(a)
        b._tx("bench", None, e.licence.functions.giveBack(b_id), "give back")
        price = chain.call(L.licenceInfo(a_id))[1]
        deposit = 10 * WAD
        b._tx("bench", None, lab.din.token.functions.approve(e.licence.address, price + deposit), "approve")
        b._tx("bench", None, L.buy(a_id, price, 150 * WAD, deposit), "buy from a holder")
        chain.mine(20)
        b._tx("bench", None, L.settle(a_id), "settle")
        b._tx("bench", None, L.setPrice(a_id, 120 * WAD), "set price")
        b._tx("bench", None, lab.din.token.functions.approve(e.licence.address, WAD), "approve")
        b._tx("bench", None, L.topUp(a_id, WAD), "top up")
        b._tx("bench", None, L.withdraw(a_id, WAD), "withdraw")
        rate = chain.call(L.taxRate())
        chain.mine(int(deposit * WAD // (120 * WAD * rate)) + 2)  # the deposit runs out
        foreclosure = b._tx("bench", None, L.settle(a_id), "settle (foreclosure)")
        assert any(ev.event == "Foreclosed" for ev in foreclosure.events)
        economy.qf_round(lab, seed=seed)
        economy.dpp_vote(lab, value=1_000, support=1.0, seed=seed)
        gas: dict[str, list[int]] = defaultdict(list)
        for r in chain.receipts:
            name = r.function
            if name == "settle" and any(ev.event == "Foreclosed" for ev in r.events):
                name = "settle (foreclosure)"
            if name == "claim" and r.to == e.fund.address:
                name = "claim (fund)"
            gas[name].append(r.gas_used)
        return {name: stats(values) for name, values in gas.items()}
    finally:
        lab.close()


def table(result: dict[str, dict[str, float]]) -> str:
    width = max(len(label) for _, label in ROWS) + 2
    lines = ["gas of the economy's operations (embedded py-evm chain; gas from receipts)", "",
             "operation".ljust(width) + "mean".rjust(12) + "max".rjust(12) + "count".rjust(8),
             "-" * (width + 32)]
    for key, label in ROWS:
        s = result.get(key)
        if s is None:
            lines.append(label.ljust(width) + "-".rjust(12))
            continue
        lines.append(label.ljust(width) + f"{s['mean']:>12,.0f}{s['max']:>12,.0f}{s['count']:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gas_economy.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("web3", "eth", "urllib3", "asyncio", "din_lab"):
        logging.getLogger(name).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    result = measure(args.seed)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"description": "gas of the economy's operations (benchmarks/gas_economy.py)",
                                    "provenance": git_provenance("din_lab", "contracts/src"), "seed": args.seed,
                                    "gas": result, "seconds": round(time.perf_counter() - t0, 1)}, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
