#!/usr/bin/env python
"""Gas per action of a DIN task, measured from receipts on the embedded chain (py-evm).

For each size N (participants) a fresh chain runs one complete two-round task:

- round 0: participants submit directly (``submitUpdate``, one transaction each);
- round 1: a relayer submits everyone's EIP-712 signed updates (``submitUpdatesRelayed``) in
  batches of 100 (of N when N < 100);
- each round: committees commit and reveal their subgroup's result, anyone finalizes, the owner
  publishes the global model (which also assigns the next round);
- scoring: evaluation set, score commit/reveal, BlockFlow reduction per subgroup; the release of
  each sealed final-round result's key (``releaseFinalModel``); then claims.

It prints a table and writes JSON (``results/gas.json``). "Gas per participant-round" is a
steady-state round's gas divided by N: the participant's submission plus its share of the
round's assignment (``publishGlobalModel`` of the previous round, which publishes that model
and draws this round's committees), commits, reveals and finalizations. The targets checked:
direct submission <= 60k gas, relayed (batches of 100) <= 15k gas per participant, and gas
per participant-round flat in N (within 10% between the two largest sizes >= 100; where the larger
size needs larger subgroups to fit the factory's draw budget, not growing by more than 10%), and every
transaction within a 30M-gas block. The chain is ``connect("embedded")``'s, with a 120M block gas
limit by default so that an oversized transaction (the assignment grows with N) is measured and
flagged rather than aborting the run (gas used does not depend on the block limit).
For speed, when N > 200 direct submissions and participants' claims are measured on a sample
of 200 (``--direct-sample``, ``--claim-sample``; 0 = everyone), which the table says.

Beside these numbers it prints the per-agent gas BlockFlow's authors measured on geth with
their own contract (``tests/data/blockflow/gas_results.csv``, vendored with its provenance).

    cd /work/main && .venv/bin/python benchmarks/gas.py [--sizes 10,100,1000] [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _provenance import git_provenance
from tqdm import tqdm

from din_lab.chain import Chain, Receipt, connect
from din_lab.chain import assignment as assign
from din_lab.chain.din import (
    WAD,
    Phase,
    TaskParams,
    cid_arg,
    create_task,
    deploy,
    held_envelope,
    mine_past_seed,
    result_commitment,
    scores_commitment,
    sign_update,
)
from din_lab.cid import Cid

log = logging.getLogger("benchmarks.gas")

REPO = Path(__file__).resolve().parents[1]
BLOCKFLOW_CSV = REPO / "tests" / "data" / "blockflow" / "gas_results.csv"

SUBGROUP_SIZE = 10
# the factory refuses a task whose round draw could exceed its 16M-gas budget: 3-seat committees
# fit about 40 subgroups (DINTaskFactory: 400k + groups x (70k + 3 x 100k) + candidates + bitmap)
MAX_GROUPS = 40
COMMITTEE = 3
EVALUATORS = 20  # staked evaluators; committees are drawn from them (one may sit on many)
BATCH = 100
PROJECT_BLOCK_GAS_LIMIT = 30_000_000  # the block gas limit of din_lab.chain.connect("embedded")
BENCH_BLOCK_GAS_LIMIT = 120_000_000  # room to measure an assignment that would not fit in 30M
TARGET_DIRECT = 60_000
TARGET_RELAYED = 15_000
FLAT_TOLERANCE = 0.10
DIRECT_SAMPLE = 200  # N=1000 with every participant submitting and claiming takes over 3 min
CLAIM_SAMPLE = 200
N_FIXED = 5  # deployer, owner, public-goods fund, relayer, finalizer


def cid(text: str) -> Cid:
    return Cid.of_raw_block(text.encode())


def salt(*parts: Any) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def stats(values: Sequence[int | float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values), "total": sum(values)}


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    return tqdm(items, desc=desc, total=total, leave=False, disable=None, file=sys.stderr)


class Laps:
    """Wall-clock time of each phase of a run, logged as it ends."""

    def __init__(self, chain: Chain, n: int) -> None:
        self.chain, self.n = chain, n
        self.t, self.txs = time.perf_counter(), 0
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now, txs = time.perf_counter(), len(self.chain.receipts)
        self.seconds[phase] = round(now - self.t, 1)
        log.info("N=%d: %-34s %5d tx  %6.1f s", self.n, phase, txs - self.txs, now - self.t)
        self.t, self.txs = now, txs


class Recorder:
    """Gas of every measured transaction, by action."""

    def __init__(self, chain: Chain, *, big_gas: int) -> None:
        self.chain = chain
        self.big_gas = big_gas  # for the transactions that grow with N (assignment, relayed batches)
        self.gas: dict[str, list[int]] = defaultdict(list)

    def tx(self, action: str | None, fn, sender, **kw) -> Receipt:
        receipt = self.chain.transact(fn, sender=sender, **kw)
        if action is not None:
            self.gas[action].append(receipt.gas_used)
        return receipt


def run_size(n: int, *, direct_sample: int | None, claim_sample: int | None, block_gas_limit: int,
             subgroup_size: int = SUBGROUP_SIZE, seed: int = 0) -> dict[str, Any]:
    """One complete task with ``n`` participants; returns the gas of every action."""
    t0 = time.perf_counter()
    chain = connect("embedded", accounts=n + N_FIXED + EVALUATORS, block_gas_limit=block_gas_limit)
    a = chain.accounts
    deployer, owner, fund, relayer, finalizer = a[:N_FIXED]
    evals = a[N_FIXED:N_FIXED + EVALUATORS]
    parts = a[N_FIXED + EVALUATORS:N_FIXED + EVALUATORS + n]
    by_address = {x.address: x for x in a}
    rec = Recorder(chain, big_gas=block_gas_limit)
    lap = Laps(chain, n)
    groups = n // subgroup_size

    # --- deployment (shared contracts, once per network)
    din = deploy(chain, deployer=deployer, public_goods_fund=fund.address, min_bond=100 * WAD)
    deploy_gas = {r.function.removeprefix("deploy "): r.gas_used for r in chain.receipts
                  if r.function.startswith("deploy ")}
    T = din.token.functions
    chain.transact(T.transfer(owner.address, 100_000 * WAD), sender=deployer)
    for e in evals:
        chain.transact(T.transfer(e.address, 1_000 * WAD), sender=deployer)

    # --- task: windows in blocks (the embedded chain mines one block per transaction)
    votes_per_round = COMMITTEE * groups
    params = TaskParams(
        genesis_model=cid("genesis"), reward_deposit=10_000 * WAD, fee_budget=10_000 * WAD, evaluator_fee=WAD,
        evaluator_bond=500 * WAD, slash_amount=50 * WAD, rounds=2, subgroup_size=subgroup_size,
        evaluators_per_subgroup=COMMITTEE, max_participants=n, max_evaluators=EVALUATORS, public_goods_bps=500,
        registration_window=n + 50, submission_window=n + 50, commit_window=votes_per_round + 50,
        reveal_window=votes_per_round + 50, publish_window=50,
    )
    before = len(chain.receipts)
    task = create_task(chain, din, params, owner=owner)
    task_gas = {r.function: r.gas_used for r in chain.receipts[before:]}  # approve, createTask
    F = task.functions
    for e in evals:  # each evaluator bonds to this task (only it may slash the bond)
        rec.tx("evaluator approve", T.approve(task.address, 500 * WAD), e)
        rec.tx("evaluator optIn", F.optIn(), e)
    lap("deploy, createTask, opt in")

    for i, p in enumerate(progress(parts, f"N={n} register")):
        rec.tx("register", F.register(hashlib.sha256(f"x25519 key {i}".encode()).digest()), p)
    lap("register")
    rec.tx("startTraining", F.startTraining(), owner, gas=rec.big_gas)
    mine_past_seed(chain, task)
    rec.tx("drawRound r0", F.drawRound(), finalizer, gas=rec.big_gas)
    lap("startTraining, drawRound")

    # --- round 0: direct submissions (all, or a sample; the rest relayed so the round is complete)
    r = 0
    if not direct_sample or direct_sample >= n:
        direct = list(parts)
    else:
        picked = set(random.Random(seed).sample(range(n), direct_sample))
        direct = [p for i, p in enumerate(parts) if i in picked]
    direct_set = {p.address for p in direct}
    for p in progress(direct, f"N={n} submitUpdate"):
        rec.tx("submitUpdate", F.submitUpdate(r, cid(f"u{r} {p.address}").to_chain(), cid_arg(None)), p)
    rest = [p for p in parts if p.address not in direct_set]
    _relay(chain, rec, task, r, rest, relayer, action="submitUpdatesRelayed (round 0 remainder)")
    lap("round 0 submissions (direct)")
    _aggregate(chain, rec, task, r, groups, by_address)
    lap("round 0 commit, reveal, finalize")
    rec.tx("publishGlobalModel (schedules the next draw)", F.publishGlobalModel(r, cid("global 0").to_chain()), owner,
           gas=rec.big_gas)
    mine_past_seed(chain, task)
    rec.tx("drawRound r1", F.drawRound(), finalizer, gas=rec.big_gas)
    lap("publishGlobalModel, drawRound")

    # --- round 1 (final): every update relayed in batches
    r = 1
    _relay(chain, rec, task, r, list(parts), relayer, action="submitUpdatesRelayed")
    lap("round 1 submissions (relayed)")
    held = _aggregate(chain, rec, task, r, groups, by_address)
    lap("round 1 commit, reveal, finalize")
    assert chain.call(F.phase()) == Phase.SCORING

    # --- scoring by the final round's committees
    rec.tx("publishEvaluationSet", F.publishEvaluationSet(cid("test set").to_chain(), cid("context").to_chain()),
           owner)
    final = r
    reveals = []
    for g in progress(range(groups), f"N={n} commitScores"):
        start, end = assign.subgroup_bounds(g, participants=n, subgroup_size=subgroup_size)
        for k, addr in enumerate(chain.call(F.committee(final, g, 0))):
            scores = [(50 + 3 * (q % 10) + k) * WAD // 100 for q in range(end - start)]
            s = salt("score", g, addr)
            rec.tx(f"commitScores r{final}", F.commitScores(g, scores_commitment(scores, s, addr)), by_address[addr])
            reveals.append((g, addr, scores, s))
    chain.mine_to(chain.call(F.scoreCommitDeadline()) + 1)
    reports: dict[tuple[int, str], list[int]] = {}
    for g, addr, scores, s in progress(reveals, f"N={n} revealScores"):
        rec.tx(f"revealScores r{final}", F.revealScores(g, scores, s), by_address[addr])
        reports[(g, addr)] = scores
    chain.mine_to(chain.call(F.scoreRevealDeadline()) + 1)
    for g in progress(range(groups), f"N={n} finalizeScores"):
        rows = [reports.get((g, addr), []) for addr in chain.call(F.committee(final, g, 0))]
        rec.tx("finalizeScores", F.finalizeScores(g, rows), finalizer)
    assert chain.call(F.phase()) == Phase.FINISHED
    for g, (sealed, key, backer) in held.items():  # the final model's hold ends: one release per subgroup
        rec.tx("releaseFinalModel", F.releaseFinalModel(g, sealed.to_chain(), key), backer)
    rec.tx("publishGlobalModel (final, no assignment)", F.publishGlobalModel(final, cid("global 1").to_chain()),
           owner)
    lap("scoring")

    # --- claims: participants' rewards (all or a sample), evaluators' fees, owner's refund, the fund
    if not claim_sample or claim_sample >= n:
        claimants = list(parts)
    else:
        claimants = random.Random(seed + 1).sample(parts, claim_sample)
    for p in progress(claimants, f"N={n} claim"):
        rec.tx("claim (participant)", F.claim(), p)
    for e in evals:
        if chain.call(F.claimable(e.address)):
            rec.tx("claim (evaluator)", F.claim(), e)
    rec.tx("claim (owner refund)", F.claim(), owner)
    rec.tx("claim (public-goods fund)", F.claim(), fund)
    lap("claims")

    seconds = time.perf_counter() - t0
    log.info("N=%d: %d transactions in %.1f s", n, len(chain.receipts), seconds)
    largest: dict[str, int] = {}
    for receipt in chain.receipts:
        largest[receipt.function] = max(largest.get(receipt.function, 0), receipt.gas_used)
    out = _summarize(n, rec.gas, deploy_gas=deploy_gas, task_gas=task_gas, groups=groups, direct_count=len(direct),
                     claim_count=len(claimants), seconds=seconds, transactions=len(chain.receipts),
                     subgroup_size=subgroup_size)
    out["phase_seconds"] = lap.seconds
    out["block_gas_limit_used"] = block_gas_limit
    out["largest_transaction"] = max(largest.items(), key=lambda kv: kv[1])
    out["over_30M_gas"] = {f: g for f, g in largest.items() if g > PROJECT_BLOCK_GAS_LIMIT}
    return out


def _relay(chain: Chain, rec: Recorder, task, r: int, participants: list, relayer, *, action: str) -> None:
    """Relayed submissions in batches of BATCH; records each batch's gas and size."""
    F = task.functions
    signed = [sign_update(participant=p, task=task, chain_id=chain.chain_id, round_=r, update=cid(f"u{r} {p.address}"))
              for p in progress(participants, f"round {r} sign")]
    for i in range(0, len(signed), BATCH):
        batch = signed[i:i + BATCH]
        receipt = rec.tx(None, F.submitUpdatesRelayed(r, batch), relayer, gas=rec.big_gas)
        rec.gas[action].append(receipt.gas_used)
        rec.gas[action + " size"].append(len(batch))


def _aggregate(chain: Chain, rec: Recorder, task, r: int, groups: int, by_address: dict
               ) -> dict[int, tuple[Cid, bytes, Any]]:
    """Every committee commits and reveals its subgroup's result (the final round's sealed: an
    envelope); anyone finalizes. Returns each sealed result's CID, key and a backer."""
    F = task.functions
    info = chain.call(F.roundInfo(r))
    chain.mine_to(info[3] + 1)  # submission deadline
    votes = []
    held = {}
    final = r == chain.call(F.finalRound())
    for g in progress(range(groups), f"round {r} commitResult"):
        result = cid(f"round {r} subgroup {g} aggregate")
        committee = chain.call(F.committee(r, g, 0))
        if final:
            sealed, key = cid(f"sealed round {r} subgroup {g} aggregate"), hashlib.sha256(salt(r, g, "key")).digest()
            result = Cid.of_raw_block(held_envelope(sealed, key))
            held[g] = (sealed, key, by_address[committee[0]])
        for addr in committee:
            s = salt(r, g, addr)
            rec.tx(f"commitResult r{r}", F.commitResult(r, g, result_commitment(result, s, addr)), by_address[addr])
            votes.append((g, addr, result, s))
    sub = chain.call(F.subgroupInfo(r, 0))
    chain.mine_to(sub[1] + 1)
    for g, addr, result, s in progress(votes, f"round {r} revealResult"):
        rec.tx(f"revealResult r{r}", F.revealResult(r, g, result.to_chain(), s), by_address[addr])
    chain.mine_to(sub[2] + 1)
    for g in progress(range(groups), f"round {r} finalizeSubgroup"):
        rec.tx(f"finalizeSubgroup r{r}", F.finalizeSubgroup(r, g), chain.accounts[4])  # the finalizer
    return held


def _summarize(n: int, gas: dict[str, list[int]], *, deploy_gas: dict[str, int], task_gas: dict[str, int], groups: int,
               direct_count: int, claim_count: int, seconds: float, transactions: int,
               subgroup_size: int) -> dict[str, Any]:
    def one(key: str) -> int:
        (value,) = gas[key]
        return value

    def total(key: str) -> int:
        return sum(gas.get(key, []))

    relayed = gas["submitUpdatesRelayed"]
    sizes = gas["submitUpdatesRelayed size"]
    relayed_pp = [g / s for g, s in zip(relayed, sizes, strict=True)]
    full = [g / s for g, s in zip(relayed, sizes, strict=True) if s == BATCH]
    direct = gas["submitUpdate"]
    publish_assign = one("publishGlobalModel (schedules the next draw)") + one("drawRound r1")

    def round_overhead(r: int) -> dict[str, float]:
        return {
            "assign+publish (publishGlobalModel)": publish_assign / n,
            "commitResult": total(f"commitResult r{r}") / n,
            "revealResult": total(f"revealResult r{r}") / n,
            "finalizeSubgroup": total(f"finalizeSubgroup r{r}") / n,
        }

    direct_parts = {"submission": statistics.fmean(direct), **round_overhead(0)}
    relayed_parts = {"submission": sum(relayed) / n, **round_overhead(1)}
    scoring_total = (one("publishEvaluationSet") + total("commitScores r1") + total("revealScores r1")
                     + total("finalizeScores"))
    per_task_fixed = {  # one-off per participant: opt-in, first assignment, scoring, claim
        "register": statistics.fmean(gas["register"]),
        "startTraining share": (one("startTraining") + one("drawRound r0")) / n,
        "scoring share": scoring_total / n,
        "claim": statistics.fmean(gas["claim (participant)"]),
        "claims of owner, fund, evaluators (share)": (total("claim (evaluator)") + one("claim (owner refund)")
                                                      + one("claim (public-goods fund)")) / n,
    }
    return {
        "participants": n,
        "subgroups": groups,
        "subgroup_size": subgroup_size,
        "committee": COMMITTEE,
        "evaluators_staked": EVALUATORS,
        "transactions": transactions,
        "seconds": round(seconds, 1),
        "direct_submissions_measured": direct_count,
        "participant_claims_measured": claim_count,
        "deploy": deploy_gas,
        "evaluator_onboarding": {"approve": stats(gas["evaluator approve"]), "stake": stats(gas["evaluator optIn"])},
        "task": task_gas,
        "register": stats(gas["register"]),
        "startTraining": {"gas": one("startTraining") + one("drawRound r0"),
                          "per_participant": (one("startTraining") + one("drawRound r0")) / n},
        "submitUpdate_direct": {**stats(direct),
                                "share_within_target": sum(g <= TARGET_DIRECT for g in direct) / len(direct)},
        "submitUpdatesRelayed": {
            "batch_size": max(sizes), "batches": stats(relayed), "per_participant": stats(relayed_pp),
            "per_participant_full_batches_of_100": stats(full),
            "round0_remainder_batches": {"gas": gas.get("submitUpdatesRelayed (round 0 remainder)", []),
                                         "sizes": gas.get("submitUpdatesRelayed (round 0 remainder) size", [])},
        },
        "commitResult": stats(gas["commitResult r0"] + gas["commitResult r1"]),
        "revealResult": stats(gas["revealResult r0"] + gas["revealResult r1"]),
        "finalizeSubgroup": {**stats(gas["finalizeSubgroup r0"] + gas["finalizeSubgroup r1"]),
                             "per_participant_mean": statistics.fmean(gas["finalizeSubgroup r0"]
                                                                      + gas["finalizeSubgroup r1"]) / subgroup_size},
        "publishGlobalModel_with_assignment": {"gas": publish_assign, "per_participant": publish_assign / n},
        "publishGlobalModel_final": one("publishGlobalModel (final, no assignment)"),
        "publishEvaluationSet": one("publishEvaluationSet"),
        "commitScores": stats(gas["commitScores r1"]),
        "revealScores": stats(gas["revealScores r1"]),
        "finalizeScores": {**stats(gas["finalizeScores"]),
                           "per_participant_mean": statistics.fmean(gas["finalizeScores"]) / subgroup_size,
                           "last_includes_settlement": gas["finalizeScores"][-1]},
        "releaseFinalModel": {**stats(gas["releaseFinalModel"]), "per_participant": total("releaseFinalModel") / n},
        "claim_participant": stats(gas["claim (participant)"]),
        "claim_evaluator": stats(gas["claim (evaluator)"]),
        "claim_owner": one("claim (owner refund)"),
        "claim_fund": one("claim (public-goods fund)"),
        "per_participant_round": {
            "direct": {"total": sum(direct_parts.values()), "parts": direct_parts},
            "relayed": {"total": sum(relayed_parts.values()), "parts": relayed_parts},
        },
        "per_participant_task_fixed": {"total": sum(per_task_fixed.values()), "parts": per_task_fixed},
    }


def provenance() -> dict[str, Any]:
    """Which contracts were measured: git commit, uncommitted changes, compiled source hashes."""
    out: dict[str, Any] = {}
    out.update(git_provenance("contracts/src", "din_lab/chain/artifacts"))
    manifest = REPO / "din_lab" / "chain" / "artifacts" / "manifest.json"
    if manifest.exists():
        out["artifact_sources"] = json.loads(manifest.read_text()).get("sources", {})
    return out


# ----------------------------------------------------------------------------- BlockFlow


def blockflow_gas(path: Path = BLOCKFLOW_CSV) -> list[dict[str, Any]]:
    """BlockFlow's measured per-agent gas, mean per (num_rounds, num_agents)."""
    if not path.exists():
        log.warning("BlockFlow gas results not found at %s", path)
        return []
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            groups[(int(row["num_rounds"]), int(row["num_agents"]))].append(int(row["agent_gas"]))
    return [{"num_rounds": rounds, "num_agents": agents, "runs": len(v), "agent_gas_mean": statistics.fmean(v),
             "agent_gas_per_round": statistics.fmean(v) / rounds}
            for (rounds, agents), v in sorted(groups.items())]


# ----------------------------------------------------------------------------- checks, table


def checks(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for res in results:
        n = res["participants"]
        d = res["submitUpdate_direct"]
        out.append({"check": f"direct submitUpdate mean <= {TARGET_DIRECT:,} (N={n})", "value": d["mean"],
                    "pass": d["mean"] <= TARGET_DIRECT})
        out.append({"check": f"direct submitUpdate max <= {TARGET_DIRECT:,} (N={n})", "value": d["max"],
                    "pass": d["max"] <= TARGET_DIRECT})
        full = res["submitUpdatesRelayed"]["per_participant_full_batches_of_100"]
        if full["count"]:
            out.append({"check": f"relayed per participant, batches of 100, max <= {TARGET_RELAYED:,} (N={n})",
                        "value": full["max"], "pass": full["max"] <= TARGET_RELAYED})
    for res in results:
        fn, g = res["largest_transaction"]
        out.append({"check": f"every transaction fits a {PROJECT_BLOCK_GAS_LIMIT / 1e6:.0f}M-gas block "
                             f"(N={res['participants']}; largest: {fn})", "value": g,
                    "pass": g <= PROJECT_BLOCK_GAS_LIMIT})
    # flatness is judged between the two largest sizes >= 100 (full relay batches, many subgroups);
    # with fewer such sizes (--quick) the change is shown for information only
    ordered = sorted(results, key=lambda r: r["participants"])
    big = [r for r in ordered if r["participants"] >= 100]
    judged = len(big) >= 2
    pair = big[-2:] if judged else ordered[-2:]
    if len(pair) == 2:
        lo, hi = pair
        for mode in ("direct", "relayed"):
            a = lo["per_participant_round"][mode]["total"]
            b = hi["per_participant_round"][mode]["total"]
            change = (b - a) / a
            same = lo["subgroup_size"] == hi["subgroup_size"]
            # with equal subgroups the cost must be flat; with larger subgroups at the larger N (the
            # factory's draw budget caps the subgroup count) committee work is shared by more
            # participants, so the cost may fall but must not grow
            label = (f"{mode} gas per participant-round {'flat' if same else 'does not grow'}: N={lo['participants']} "
                     f"-> N={hi['participants']}" + ("" if same else
                                                     f" (subgroups of {lo['subgroup_size']} -> {hi['subgroup_size']})"))
            ok = abs(change) <= FLAT_TOLERANCE if same else change <= FLAT_TOLERANCE
            out.append({"check": f"{label} within {FLAT_TOLERANCE:.0%}" if judged else
                        f"(not judged: needs two sizes >= 100) {label}",
                        "value": change, "pass": ok if judged else None})
        for mode in ("direct", "relayed"):  # diagnostic: is the assignment what grows?
            key = "assign+publish (publishGlobalModel)"
            a = lo["per_participant_round"][mode]["total"] - lo["per_participant_round"][mode]["parts"][key]
            b = hi["per_participant_round"][mode]["total"] - hi["per_participant_round"][mode]["parts"][key]
            out.append({"check": f"(diagnostic) {mode} per participant-round without the assignment share: "
                                 f"N={lo['participants']} -> N={hi['participants']}", "value": (b - a) / a,
                        "pass": None})
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.0f}"
    return f"{int(x):,}"


def table(results: list[dict[str, Any]], blockflow: list[dict[str, Any]], check_rows: list[dict[str, Any]],
          prov: dict[str, Any] | None = None) -> str:
    ns = [r["participants"] for r in results]
    rows: list[tuple[str, list[Any]]] = []

    def row(label: str, fn) -> None:
        rows.append((label, [fn(r) for r in results]))

    def section(label: str) -> None:
        rows.append((f"-- {label}", []))

    section("deployment (once per network)")
    for name in ("DINToken", "EvaluatorRegistry", "DINTaskScoring", "DINTask", "DINTaskFactory"):
        row(f"deploy {name}", lambda r, k=name: r["deploy"][k])
    row("evaluator optIn with its bond (mean)", lambda r: r["evaluator_onboarding"]["stake"]["mean"])
    section("task setup")
    row("createTask (clone + deposit)", lambda r: r["task"]["createTask"])
    row("register, per participant (mean)", lambda r: r["register"]["mean"])
    row("register (max)", lambda r: r["register"]["max"])
    row("startTraining (round-0 assignment)", lambda r: r["startTraining"]["gas"])
    row("  startTraining / N", lambda r: r["startTraining"]["per_participant"])
    row("  startTraining / subgroup", lambda r: r["startTraining"]["gas"] / r["subgroups"])
    section("round: submission")
    row("submitUpdate direct (mean)", lambda r: r["submitUpdate_direct"]["mean"])
    row("submitUpdate direct (median)", lambda r: r["submitUpdate_direct"]["median"])
    row("submitUpdate direct (max)", lambda r: r["submitUpdate_direct"]["max"])
    row("  direct submissions > 60k (count)",
        lambda r: round((1 - r["submitUpdate_direct"]["share_within_target"]) * r["submitUpdate_direct"]["count"]))
    row("  direct submissions measured", lambda r: r["direct_submissions_measured"])
    row("submitUpdatesRelayed batch size", lambda r: r["submitUpdatesRelayed"]["batch_size"])
    row("submitUpdatesRelayed tx (mean)", lambda r: r["submitUpdatesRelayed"]["batches"]["mean"])
    row("  relayed per participant (mean)", lambda r: r["submitUpdatesRelayed"]["per_participant"]["mean"])
    row("  relayed per participant (max)", lambda r: r["submitUpdatesRelayed"]["per_participant"]["max"])
    section("round: aggregation")
    row("commitResult (mean)", lambda r: r["commitResult"]["mean"])
    row("revealResult (mean)", lambda r: r["revealResult"]["mean"])
    row("finalizeSubgroup, per subgroup (mean)", lambda r: r["finalizeSubgroup"]["mean"])
    row("publishGlobalModel + next assignment", lambda r: r["publishGlobalModel_with_assignment"]["gas"])
    row("  publishGlobalModel / N", lambda r: r["publishGlobalModel_with_assignment"]["per_participant"])
    row("publishGlobalModel, final (no assignment)", lambda r: r["publishGlobalModel_final"])
    section("scoring and payout")
    row("publishEvaluationSet", lambda r: r["publishEvaluationSet"])
    row("commitScores (mean)", lambda r: r["commitScores"]["mean"])
    row("revealScores (mean)", lambda r: r["revealScores"]["mean"])
    row("finalizeScores, per subgroup (mean)", lambda r: r["finalizeScores"]["mean"])
    row("  finalizeScores per participant", lambda r: r["finalizeScores"]["per_participant_mean"])
    row("  last finalizeScores (+ settlement)", lambda r: r["finalizeScores"]["last_includes_settlement"])
    row("releaseFinalModel, per subgroup (mean)", lambda r: r["releaseFinalModel"]["mean"])
    row("claim, participant (mean)", lambda r: r["claim_participant"]["mean"])
    row("claim, evaluator (mean)", lambda r: r["claim_evaluator"]["mean"])
    section("gas per participant-round (steady-state round / N)")
    for mode in ("direct", "relayed"):
        for part in results[0]["per_participant_round"][mode]["parts"]:
            row(f"  {mode}: {part}", lambda r, m=mode, p=part: r["per_participant_round"][m]["parts"][p])
        row(f"{mode.upper()} per participant-round", lambda r, m=mode: r["per_participant_round"][m]["total"])
    row("one-off per participant (register, scoring, claim...)", lambda r: r["per_participant_task_fixed"]["total"])
    row("=> per participant, 5-round task, direct",
        lambda r: r["per_participant_task_fixed"]["total"] + 5 * r["per_participant_round"]["direct"]["total"])
    row("=> per participant, 5-round task, relayed",
        lambda r: r["per_participant_task_fixed"]["total"] + 5 * r["per_participant_round"]["relayed"]["total"])
    section("run")
    row("largest transaction", lambda r: r["largest_transaction"][1])
    row("transactions", lambda r: r["transactions"])
    row("seconds", lambda r: r["seconds"])

    width = max(len(label) for label, _ in rows) + 2
    lines = ["DIN gas per action (embedded py-evm chain, this repository's contracts; gas from receipts)",
             f"subgroup sizes {sorted({r['subgroup_size'] for r in results})}, committee {COMMITTEE}, "
             f"{EVALUATORS} staked evaluators, "
             f"relayed batches of {BATCH} (of N when N < {BATCH})"]
    if prov and prov.get("git_commit"):
        dirty = prov.get("uncommitted") or []
        lines.append(f"contracts: git {prov['git_commit']}"
                     + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else " (clean)"))
    lines.append("")
    lines.append("action".ljust(width) + "".join(f"N={n:,}".rjust(14) for n in ns))
    lines.append("-" * (width + 14 * len(ns)))
    for label, values in rows:
        lines.append(label.ljust(width) + "".join(_fmt(v).rjust(14) for v in values))
    if any(r["submitUpdate_direct"]["max"] > TARGET_DIRECT for r in results):
        lines.append("note: direct submissions above 60k are first writes to zero storage slots (the round's "
                     "submissions digest, a word of the submitted bitmap): 20k-gas SSTOREs")
    lines.append("note: per participant-round = (submission + publishGlobalModel with the next round's assignment "
                 "+ commits + reveals + finalizations of one round) / N; round 0 direct, round 1 relayed")
    sampled = [r for r in results if r["direct_submissions_measured"] < r["participants"]]
    for r in sampled:
        lines.append(f"note: N={r['participants']}: direct submissions measured on a sample of "
                     f"{r['direct_submissions_measured']} (the rest relayed); mean x N is used for the round")
    for r in results:
        if r["participant_claims_measured"] < r["participants"]:
            lines.append(f"note: N={r['participants']}: participant claims measured on a sample of "
                         f"{r['participant_claims_measured']}")

    lines += ["", "BlockFlow's measured per-agent gas (their contract, on geth; "
                  f"{BLOCKFLOW_CSV}): NOT this repository's numbers",
              "num_rounds  num_agents  runs   agent_gas (mean)   per agent-round"]
    for b in blockflow:
        lines.append(f"{b['num_rounds']:>10}  {b['num_agents']:>10}  {b['runs']:>4}  {b['agent_gas_mean']:>17,.0f}"
                     f"  {b['agent_gas_per_round']:>16,.0f}")
    if not blockflow:
        lines.append("(not found)")
    lines.append("(BlockFlow: every agent also scores every other agent, so its per-agent gas grows with the "
                 "number of agents; DIN's evaluator work is included above as per-participant shares)")

    lines += ["", "targets"]
    for c in check_rows:
        value = f"{c['value']:+.1%}" if "N=" in c["check"] and "->" in c["check"] else f"{c['value']:,.0f}"
        verdict = "info" if c["pass"] is None else "PASS" if c["pass"] else "FAIL"
        lines.append(f"  {verdict}  {c['check']}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000", help="participant counts, comma separated")
    ap.add_argument("--quick", action="store_true", help="sizes 10,100 only")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gas.json")
    ap.add_argument("--direct-sample", type=int, default=DIRECT_SAMPLE,
                    help="when N is larger, measure direct submissions on this many participants (the rest are "
                         f"relayed) to save time; 0 = all (default {DIRECT_SAMPLE})")
    ap.add_argument("--claim-sample", type=int, default=CLAIM_SAMPLE,
                    help=f"when N is larger, this many participants claim; 0 = all (default {CLAIM_SAMPLE})")
    ap.add_argument("--block-gas-limit", type=int, default=BENCH_BLOCK_GAS_LIMIT,
                    help=f"of the embedded chain (default {BENCH_BLOCK_GAS_LIMIT:,}, so that an oversized "
                         f"transaction is measured, then flagged; {PROJECT_BLOCK_GAS_LIMIT:,} uses "
                         "din_lab.chain.connect as is)")
    ap.add_argument("--subgroup-size", type=int, default=None,
                    help=f"participants per subgroup (default {SUBGROUP_SIZE}, or N/{MAX_GROUPS} rounded up where "
                         f"{SUBGROUP_SIZE} would make more subgroups than the factory's draw budget allows); "
                         "0 = N/10 (ten subgroups)")
    ap.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    ap.add_argument("--no-worst-case", dest="worst_case", action="store_false",
                    help="skip the worst case the factory accepts (benchmarks/gas_worst.py, a few minutes)")
    ap.add_argument("--no-economy", dest="economy", action="store_false",
                    help="skip the economy's operations (benchmarks/gas_economy.py: licences, QF, credits, DPPs)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for name in ("web3", "eth", "urllib3", "asyncio", "din_lab"):
        logging.getLogger(name).setLevel(logging.WARNING)
    sizes = [10, 100] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    def subgroup_size(n: int) -> int:
        if args.subgroup_size is None:
            return max(SUBGROUP_SIZE, -(-n // MAX_GROUPS))
        return args.subgroup_size or max(1, n // 10)

    if any(n < subgroup_size(n) for n in sizes):
        ap.error("every size must be at least the subgroup size")

    t0 = time.perf_counter()
    results = []
    for n in sizes:
        log.info("N=%d: running a two-round task ...", n)
        results.append(run_size(n, direct_sample=args.direct_sample, claim_sample=args.claim_sample,
                                block_gas_limit=args.block_gas_limit, subgroup_size=subgroup_size(n)))
    bf = blockflow_gas()
    check_rows = checks(results)
    prov = provenance()
    print(table(results, bf, check_rows, prov))
    elapsed = time.perf_counter() - t0
    print(f"\ntotal runtime {elapsed:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "description": "gas per DIN action from receipts on the embedded py-evm chain (benchmarks/gas.py)",
        "provenance": prov,
        "settings": {"subgroup_size": [subgroup_size(n) for n in sizes], "committee": COMMITTEE, "evaluators_staked": EVALUATORS,
                     "relay_batch": BATCH, "rounds": 2, "round_0": "direct submissions",
                     "round_1": "relayed submissions",
                     "per_participant_round": "(submission + publishGlobalModel incl. assignment + commits + reveals"
                                              " + finalizations of that round) / N"},
        "targets": {"direct_submission_max_gas": TARGET_DIRECT, "relayed_per_participant_max_gas": TARGET_RELAYED,
                    "flat_tolerance": FLAT_TOLERANCE},
        "results": results,
        "checks": check_rows,
        "blockflow": {"source": str(BLOCKFLOW_CSV), "note": "BlockFlow's own contract measured on geth by its authors",
                      "by_rounds_and_agents": bf},
        "runtime_seconds": round(elapsed, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    log.info("wrote %s", args.out)
    worst_ok = True
    if args.worst_case:  # the largest parameters the factory accepts, built and measured (issue 14)
        import gas_worst

        print()
        worst_ok = gas_worst.main(["--out", str(args.out.with_name("gas_worst.json"))]) == 0
    if args.economy:  # issue 18: licences, quadratic funding, credits and DPPs
        import gas_economy

        print()
        gas_economy.main(["--out", str(args.out.with_name("gas_economy.json"))])
    failed = any(c["pass"] is False for c in check_rows) or not worst_ok
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
