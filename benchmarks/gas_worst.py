#!/usr/bin/env python
"""The worst case the factory accepts: for a committee size, the largest task parameters that
``DINTaskFactory.checkParams`` lets through, built for real on the embedded chain, with the gas of
every transaction whose cost grows with a parameter measured against the factory's prediction and
``BLOCK_GAS_BUDGET`` (issue 14: "createTask refuses parameters whose worst-case transaction would not
fit a block").

Per configuration: ``maxParticipants`` participants register and ``maxEvaluators`` evaluators opt
in; ``drawRound`` seats every committee; everyone's update is relayed; the largest subgroup (the
last: it takes the remainder) has its first committee disagree, so a dispute committee of 2E+1 is
drawn (``drawDispute``) and settles it (``finalizeSubgroup`` with the quadratic majority count and
the acceptance count over the subgroup's members); then every committee scores and
``finalizeScores`` reduces the largest subgroup's reports.

    .venv/bin/python benchmarks/gas_worst.py [--committees 3,15] [--out results/gas_worst.json]

(``benchmarks/gas.py`` runs it after its per-action table, so ``make bench`` does; ``--no-worst-case`` skips it.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from gas import cid, salt
from tqdm import tqdm

from din_lab.chain import connect
from din_lab.chain.din import (
    WAD,
    Phase,
    TaskParams,
    create_task,
    deploy,
    mine_past_seed,
    result_commitment,
    scores_commitment,
    sign_update,
)
from din_lab.cid import Cid
from din_lab.errors import ContractRevert

log = logging.getLogger("benchmarks.gas_worst")
REPO = Path(__file__).resolve().parents[1]
BATCH = 100
LIMIT = 60_000_000  # the benchmark chain's block gas limit: room to measure a model that is wrong


def bar(items, desc: str):
    return tqdm(items, desc=desc, leave=False, disable=None, file=sys.stderr)


def params_for(*, committee: int, max_participants: int, subgroup: int, max_evaluators: int) -> TaskParams:
    return TaskParams(
        genesis_model=cid("genesis"), reward_deposit=10_000 * WAD, fee_budget=10_000 * WAD, evaluator_fee=WAD,
        evaluator_bond=100 * WAD, slash_amount=10 * WAD, rounds=1, subgroup_size=subgroup,
        evaluators_per_subgroup=committee, max_participants=max_participants, max_evaluators=max_evaluators,
        public_goods_bps=500, registration_window=10 * (max_participants + 2 * max_evaluators) + 100,
        submission_window=max_participants + 100, commit_window=4 * max_participants + 500,
        reveal_window=4 * max_participants + 500, publish_window=100)


def refusal(chain, factory, p: TaskParams) -> str | None:
    """None when the factory accepts ``p``; else the transaction that would not fit (or the reason)."""
    try:
        chain.call(factory.functions.checkParams(p.to_chain()))
        return None
    except ContractRevert as e:
        return str(e.args_by_name.get("transaction") or e.args_by_name.get("reason") or e.error_name)


def smallest_subgroup(chain, factory, *, committee: int, n: int, max_evaluators: int) -> TaskParams | None:
    """For ``n`` participants, the smallest subgroup whose round draw fits (the draw only gets
    cheaper with larger subgroups), if the factory accepts it."""
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        why = refusal(chain, factory, params_for(committee=committee, max_participants=n, subgroup=mid,
                                                 max_evaluators=max_evaluators))
        if why == "drawRound":
            lo = mid + 1
        else:
            hi = mid
    p = params_for(committee=committee, max_participants=n, subgroup=lo, max_evaluators=max_evaluators)
    return p if refusal(chain, factory, p) is None else None


def largest_accepted(chain, factory, *, committee: int, max_evaluators: int) -> TaskParams:
    """The most participants the factory accepts with this committee and evaluator cap, and for that
    cap the smallest subgroup it accepts (the most committee seats: the heaviest draw)."""
    lo, hi, best = committee, 2_000, None
    while lo <= hi:
        mid = (lo + hi) // 2
        p = smallest_subgroup(chain, factory, committee=committee, n=mid, max_evaluators=max_evaluators)
        if p is not None:
            best, lo = p, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise SystemExit(f"the factory accepts no task with a committee of {committee}")
    return best


def run_config(p: TaskParams) -> dict[str, Any]:
    n, e, k, s = p.max_participants, p.max_evaluators, p.evaluators_per_subgroup, p.subgroup_size
    t0 = time.perf_counter()
    chain = connect("embedded", accounts=4 + n + e, block_gas_limit=LIMIT)
    a = chain.accounts
    deployer, owner, fund, relayer = a[:4]
    evals, parts = a[4:4 + e], a[4 + e:4 + e + n]
    by_address = {x.address: x for x in a}
    din = deploy(chain, deployer=deployer, public_goods_fund=fund.address)
    factory = din.factory.functions
    budget = chain.call(factory.BLOCK_GAS_BUDGET())
    T = din.token.functions
    chain.transact(T.transfer(owner.address, 100_000 * WAD), sender=deployer)
    for ev in bar(evals, "fund evaluators"):
        chain.transact(T.transfer(ev.address, p.evaluator_bond), sender=deployer)
    task = create_task(chain, din, p, owner=owner)
    F = task.functions
    for ev in bar(evals, "opt in"):
        chain.transact(T.approve(task.address, p.evaluator_bond), sender=ev)
        chain.transact(F.optIn(), sender=ev)
    for i, q in enumerate(bar(parts, "register")):
        chain.transact(F.register(hashlib.sha256(i.to_bytes(4, "big")).digest()), sender=q)
    chain.transact(F.startTraining(), sender=owner)
    mine_past_seed(chain, task)
    measured: dict[str, int] = {"drawRound": chain.transact(F.drawRound(), sender=relayer, gas=LIMIT).gas_used}
    groups = chain.call(F.roundInfo(0))[4]
    last = groups - 1
    largest = n - last * s
    # every update relayed
    signed = [sign_update(participant=q, task=task, chain_id=chain.chain_id, round_=0, update=cid(f"u {q.address}"))
              for q in bar(parts, "sign")]
    relayed = []
    for start in range(0, len(signed), BATCH):
        relayed.append(chain.transact(F.submitUpdatesRelayed(0, signed[start:start + BATCH]), sender=relayer,
                                      gas=LIMIT).gas_used)
    measured["submitUpdatesRelayed (100)"] = max(relayed)
    chain.mine_to(chain.call(F.subgroupInfo(0, 0))[0] + 1)

    def vote(g: int, cohort: int, results: dict[str, Cid]) -> None:
        members = chain.call(F.committee(0, g, cohort))
        for addr in members:
            chain.transact(F.commitResult(0, g, result_commitment(results[addr], salt(g, cohort, addr), addr)),
                           sender=by_address[addr])
        chain.mine_to(chain.call(F.subgroupInfo(0, g))[1] + 1)
        for addr in members:
            chain.transact(F.revealResult(0, g, results[addr].to_chain(), salt(g, cohort, addr)),
                           sender=by_address[addr])

    # first committees: all agree but on the largest subgroup, where nobody agrees
    commits = []
    for g in bar(range(groups), "commit"):
        for addr in chain.call(F.committee(0, g, 0)):
            res = cid(f"junk {addr}") if g == last else cid(f"sum {g}")
            chain.transact(F.commitResult(0, g, result_commitment(res, salt(g, 0, addr), addr)), sender=by_address[addr])
            commits.append((g, addr, res))
    chain.mine_to(chain.call(F.subgroupInfo(0, 0))[1] + 1)
    for g, addr, res in bar(commits, "reveal"):
        chain.transact(F.revealResult(0, g, res.to_chain(), salt(g, 0, addr)), sender=by_address[addr])
    chain.mine_to(chain.call(F.subgroupInfo(0, 0))[2] + 1)
    finals = [chain.transact(F.finalizeSubgroup(0, g), sender=relayer, gas=LIMIT).gas_used for g in range(groups)]
    measured["finalizeSubgroup (accept, largest subgroup)"] = max(finals[:-1] or [0])
    measured["finalizeSubgroup (opens a dispute)"] = finals[-1]
    mine_past_seed(chain, task, round_=0, subgroup=last)
    measured["drawDispute"] = chain.transact(F.drawDispute(0, last), sender=relayer, gas=LIMIT).gas_used
    dispute = chain.call(F.committee(0, last, 1))
    majority = len(dispute) // 2 + 1  # the slimmest majority: the most comparisons
    vote(last, 1, {addr: cid(f"sum {last}") if i < majority else cid(f"other {addr}")
                   for i, addr in enumerate(dispute)})
    chain.mine_to(chain.call(F.subgroupInfo(0, last))[2] + 1)
    measured["finalizeSubgroup (dispute settles both committees)"] = chain.transact(
        F.finalizeSubgroup(0, last), sender=relayer, gas=LIMIT).gas_used
    assert chain.call(F.phase()) == Phase.SCORING
    # scoring: every committee reports; the largest subgroup's reduction is the heaviest
    chain.transact(F.publishEvaluationSet(cid("test").to_chain(), cid("ctx").to_chain()), sender=owner)
    reports: dict[tuple[int, str], list[int]] = {}
    opened = []
    for g in bar(range(groups), "commit scores"):
        size = largest if g == last else s
        for j, addr in enumerate(chain.call(F.committee(0, g, 0))):
            if chain.call(F.bannedAt(addr)):
                continue
            scores = [(40 + (q * 7 + j) % 50) * WAD // 100 for q in range(size)]
            chain.transact(F.commitScores(g, scores_commitment(scores, salt("s", g, addr), addr)),
                           sender=by_address[addr])
            opened.append((g, addr, scores))
    chain.mine_to(chain.call(F.scoreCommitDeadline()) + 1)
    for g, addr, scores in bar(opened, "reveal scores"):
        chain.transact(F.revealScores(g, scores, salt("s", g, addr)), sender=by_address[addr])
        reports[(g, addr)] = scores
    chain.mine_to(chain.call(F.scoreRevealDeadline()) + 1)
    scored = []
    for g in bar(range(groups), "finalize scores"):
        rows = [reports.get((g, addr), []) for addr in chain.call(F.committee(0, g, 0))]
        scored.append(chain.transact(F.finalizeScores(g, rows), sender=relayer, gas=LIMIT).gas_used)
    measured["finalizeScores (largest subgroup)"] = max(scored)
    assert chain.call(F.phase()) == Phase.FINISHED
    return {"committee": k, "max_participants": n, "max_evaluators": e, "subgroup_size": s, "subgroups": groups,
            "largest_subgroup": largest, "dispute_committee": len(dispute), "budget": budget,
            "gas": measured, "fits": all(v <= budget for v in measured.values()),
            "seconds": round(time.perf_counter() - t0, 1), "transactions": len(chain.receipts)}


def search(committees: list[int], max_evaluators: int) -> list[TaskParams]:
    chain = connect("embedded", accounts=3)
    din = deploy(chain, deployer=chain.accounts[0], public_goods_fund=chain.accounts[2].address)
    return [largest_accepted(chain, din.factory, committee=k, max_evaluators=max_evaluators) for k in committees]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["Worst case the factory accepts (embedded py-evm, gas of the heaviest transactions):", ""]
    for r in rows:
        lines.append(f"committee {r['committee']}: {r['max_participants']} participants in {r['subgroups']} subgroups "
                     f"of {r['subgroup_size']} (largest {r['largest_subgroup']}), {r['max_evaluators']} evaluators, "
                     f"dispute committee {r['dispute_committee']}; {r['transactions']:,} transactions in "
                     f"{r['seconds']:.0f} s")
        for name, gas in r["gas"].items():
            lines.append(f"  {name:<52} {gas:>12,}  {gas / r['budget']:6.1%} of the {r['budget']:,} budget")
        lines.append(f"  every transaction fits: {'PASS' if r['fits'] else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--committees", default="3,15", help="committee sizes, comma separated (odd)")
    ap.add_argument("--max-evaluators", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gas_worst.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("web3", "eth", "urllib3", "asyncio", "din_lab"):
        logging.getLogger(name).setLevel(logging.WARNING)
    configs = search([int(k) for k in args.committees.split(",")], args.max_evaluators)
    rows = [run_config(p) for p in configs]
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"description": __doc__.splitlines()[0], "results": rows}, indent=1) + "\n")
    print(f"\nwritten to {args.out}")
    return 0 if all(r["fits"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
