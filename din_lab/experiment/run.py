"""``din_lab.run(config) -> ExperimentResult``: one DIN task, end to end, as tidy tables.

Tables (pandas): ``rounds`` (accuracy, accepted subgroups, secure-aggregation aborts, dropouts,
disputes, slashes, gas, seconds, why training stopped),
``participants`` (behaviour, samples, registered, score, reward, and ``why``: the reward in one
line a participant can check by hand), ``evaluators`` (behaviour, fees, slashed
stake), ``transactions`` (every Lab event). ``summary`` is the JSON-ready digest written to
``summary.json``; with the same seed and config on the embedded backends it is identical from run
to run except for its timing fields.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from din_lab.chain.din import WAD
from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.protocol.lab import Lab

log = logging.getLogger(__name__)

TIMING_KEYS = ("seconds", "total_seconds")


@dataclass(frozen=True)
class ExperimentResult:
    config: ExperimentConfig
    summary: dict[str, Any]
    rounds: pd.DataFrame
    participants: pd.DataFrame
    evaluators: pd.DataFrame
    transactions: pd.DataFrame

    def write(self, out: str | Path) -> Path:
        """The tables as CSV and ``summary.json`` (and the config) into directory ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("rounds", "participants", "evaluators", "transactions"):
            getattr(self, name).to_csv(out / f"{name}.csv", index=False)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=1))
        (out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        return out


def run(config: ExperimentConfig | None = None, *, progress: bool = False, **overrides: Any) -> ExperimentResult:
    """Create a Lab for ``config`` (or keyword settings), run the task, and tabulate it."""
    if config is not None and overrides:
        raise ConfigError("give either a config or keyword settings, not both")
    config = config or ExperimentConfig(**overrides)
    started = time.perf_counter()
    with Lab.create(config, progress=progress) as lab:
        lab.run()
        return tabulate(lab, seconds=time.perf_counter() - started)


def tabulate(lab: Lab, *, seconds: float) -> ExperimentResult:
    """The tables and summary of a finished Lab."""
    task = lab.task.functions
    events = pd.DataFrame([asdict(e) for e in lab.events])
    slashes = events[events.action == "slashed"] if len(events) else events
    rounds = []
    for r, state in enumerate(lab.rounds):
        slashed = slashes[slashes["round"] == r]
        accuracy = None if state.global_model is None else round(lab.accuracy(r), 6)  # none: the task ended
        rounds.append({"round": r, "accuracy": accuracy, "updates": len(state.sent),
                       "samples": int(sum(p.samples for p in lab.participants if p.address in state.sent)),
                       "accepted_groups": len(state.accepted),
                       "failed_groups": len(state.failed), "aborted_groups": len(state.aborted),
                       "dropouts": len(state.vanished), "disputes": state.disputes,
                       "slashed": sorted(set(slashed.actor)), "gas": state.gas, "stopped": state.stopped,
                       "seconds": round(_round_seconds(lab, r), 3)})
    participants = []
    for p in lab.participants:
        registered = bool(p.registered)  # an identity registry may have refused it (a Sybil's extra account)
        allocation = lab.chain.call(task.allocationOf(p.address)) / WAD if registered else 0.0
        participants.append({"address": p.address, "name": p.name, "behaviour": p.behaviour.name,
                             "samples": p.samples, "registered": registered,
                             "score": lab.chain.call(task.scoreOf(p.address)) / WAD if registered else 0.0,
                             "reward": allocation})
    ended = {e.event for e in lab.chain.events.where(address=lab.task.address)} & {"TaskAbandoned", "TaskCancelled"}
    _explain_rewards(participants, ended=next(iter(ended), None))
    evaluators = []
    fee_events = events[events.action == "fee paid"] if len(events) else events
    bond = lab.task_params.evaluator_bond / WAD
    for e in lab.evaluators:
        slashed_amount = float(slashes[slashes.actor == e.name].amount.sum())
        # the bond it deposited into this task, less what the task slashed (withdrawn when the task ended)
        evaluators.append({"address": e.address, "name": e.name, "behaviour": e.behaviour.name,
                           "fees": float(fee_events[fee_events.actor == e.name].amount.sum()),
                           "slashed_amount": slashed_amount, "stake_after": round(bond - slashed_amount, 6)})
    tokens = _token_flows(lab, participants, evaluators)
    participant_rounds = sum(len(s.sent) for s in lab.rounds) or 1
    total_gas = sum(int(g) for g in events.gas) if len(events) else 0
    training_gas = sum(s.gas for s in lab.rounds)
    summary = {
        "final_accuracy": next((row["accuracy"] for row in reversed(rounds) if row["accuracy"] is not None), None),
        "rounds": rounds,
        "participants": participants,
        "evaluators": evaluators,
        "tokens": tokens,
        "gas": {"total": total_gas, "training_rounds": training_gas,
                "per_participant_round": round(training_gas / participant_rounds, 1),
                "note": "per_participant_round: every transaction of the training rounds (submissions, votes, "
                        "finalization, publication) divided by the updates submitted"},
        "scoring": {"slashed": sorted(set(slashes[slashes["round"].isna()].actor)) if len(slashes) else []},
        "timing": {"total_seconds": round(seconds, 3)},
        "config": lab.config.to_dict(),
        "contribution_game": lab.config.contribution_game,
        "chain": lab.chain_name,
        "task": lab.task.address,
        "notes": list(lab.notes),
    }
    transactions = events[events.tx_hash.notna()].reset_index(drop=True) if len(events) else events
    return ExperimentResult(config=lab.config, summary=summary, rounds=pd.DataFrame(rounds),
                            participants=pd.DataFrame(participants), evaluators=pd.DataFrame(evaluators),
                            transactions=transactions)


def _explain_rewards(participants: list[dict], *, ended: str | None) -> None:
    """Each participant's reward in one line a participant can check by hand (the ``why`` column)."""
    pool = sum(p["reward"] for p in participants)
    total = sum(p["score"] for p in participants)
    for p in participants:
        if not p["registered"]:
            p["why"] = "registration refused by the task's identity registry: no part, no pay"
        elif ended == "TaskCancelled":
            p["why"] = "task cancelled before training: the deposit went back to the owner, nothing to pay"
        elif ended == "TaskAbandoned":
            p["why"] = (f"task abandoned: paid {p['reward']:.2f} DIN for its accepted contributions in the rounds "
                        "that closed")
        elif total > 0:
            p["why"] = (f"score {p['score']:.3f} of {total:.3f} in all = {p['score'] / total:.1%} of the participants' "
                        f"pool {pool:.2f} = {p['reward']:.2f} DIN")
        else:
            p["why"] = (f"nobody scored above 0: the pool is paid per accepted contribution over all rounds "
                        f"(the rest to the public-goods fund) = {p['reward']:.2f} DIN")


def _round_seconds(lab: Lab, r: int) -> float:
    state = lab.rounds[r]
    following = lab.rounds[r + 1].started if r + 1 < len(lab.rounds) else time.perf_counter()
    return max(0.0, following - state.started)


def _token_flows(lab: Lab, participants: list[dict], evaluators: list[dict]) -> dict[str, Any]:
    """Where the owner's deposit went, and whether the chain's balances prove it: every account's
    balance change since set-up must equal what the task says it was owed."""
    token = lab.din.token.functions
    balance = lambda a: lab.chain.call(token.balanceOf(a))  # noqa: E731
    claimed: dict[str, int] = {}
    for e in lab.chain.events.where("Claimed", address=lab.task.address):
        claimed[e.args["account"]] = claimed.get(e.args["account"], 0) + e.args["amount"]
    slashed: dict[str, int] = {}
    for e in lab.chain.events.where("EvaluatorSlashed", address=lab.task.address):
        slashed[e.args["evaluator"]] = slashed.get(e.args["evaluator"], 0) + e.args["amount"]
    fees: dict[str, int] = {}
    for e in lab.chain.events.where("FeePaid", address=lab.task.address):
        fees[e.args["evaluator"]] = fees.get(e.args["evaluator"], 0) + e.args["amount"]
    settled = lab.chain.events.where("RewardsSettled", address=lab.task.address) \
        or lab.chain.events.where("TaskAbandoned", address=lab.task.address)  # how the deposit was split
    deposit = lab.task_params.reward_deposit + lab.task_params.fee_budget
    slashed_total = sum(slashed.values())
    paid_participants = sum(claimed.get(p["address"], 0) for p in participants)
    paid_evaluators = sum(claimed.get(e["address"], 0) for e in evaluators)
    fund = lab.din.public_goods_fund  # an account, or the economy's fund contract
    public_goods = claimed.get(fund, 0) - slashed_total
    task = lab.task.address
    # each account's net tokens from anyone but the task since the balances before were read (licence
    # purchases and tax, quadratic-funding gifts and payouts, transfers between people), in one pass
    # over the token's events: the proofs below are about the task's own flows
    net_elsewhere: dict[str, int] = {}
    for e in lab.chain.events.where("Transfer", address=lab.din.token.address):
        src, dst, value = e.args["from"], e.args["to"], e.args["value"]
        if e.block > lab.network.first_block and task not in (src, dst):
            net_elsewhere[dst] = net_elsewhere.get(dst, 0) + value
            net_elsewhere[src] = net_elsewhere.get(src, 0) - value
    elsewhere = lambda a: net_elsewhere.get(a, 0)  # noqa: E731

    refunded = claimed.get(lab.owner.address, 0)
    before = lab.balances_raw_before
    proofs = [
        balance(lab.task.address) == 0,
        bool(settled),
        balance(lab.owner.address) - before[lab.owner.address] - elsewhere(lab.owner.address) == refunded - deposit,
        balance(fund) - before[fund] - elsewhere(fund) == public_goods + slashed_total,
        paid_participants + paid_evaluators + public_goods + refunded == deposit,
    ]
    for p in participants:
        allocation = lab.chain.call(lab.task.functions.allocationOf(p["address"]))
        proofs.append(balance(p["address"]) - before[p["address"]] - elsewhere(p["address"]) == allocation
                      == claimed.get(p["address"], 0))
    for e in evaluators:
        a = e["address"]
        after = balance(a) + lab.chain.call(lab.task.functions.bondOf(a))  # a bond not yet withdrawn
        proofs.append(after - before[a] - elsewhere(a) == fees.get(a, 0) - slashed.get(a, 0))
    return {"deposit": deposit / WAD, "paid_participants": paid_participants / WAD,
            "paid_evaluators": paid_evaluators / WAD, "public_goods": public_goods / WAD,
            "slashed_to_fund": slashed_total / WAD, "refunded_owner": refunded / WAD,
            "left_in_task": balance(lab.task.address) / WAD, "conserved": all(proofs)}
