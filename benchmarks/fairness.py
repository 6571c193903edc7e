#!/usr/bin/env python
"""Fair rewards (issue 17): does a participant's pay follow its contribution, or the luck of its
subgroup draw? For several seeds and partitions this runs whole DIN tasks and measures

- (a) dispersion: the coefficient of variation of rewards among honest participants with equal data
  (IID partitions only: equal samples, equal distribution), beside the same coefficient of the
  reference values of (c) less their Monte-Carlo noise: how unequal the reference finds the
  contributions, and so (where they are all positive) the CV pay proportional to them would have;
- (b) the subgroup draw alone: the same task (same data, same training: every subgroup is accepted,
  so FedAvg over all of them does not depend on the grouping) run twice with only the draw moved
  (the fee budget differs by one token, which changes the task's creation transaction, the block
  hashes and so the draw, and nothing a participant is paid from); the relative change of each
  participant's reward, mean and max, over participants paid at least 10% of the mean reward (a
  relative change of a reward near 0 is noise in a few wei); and the largest change as a share of
  the pool, over everyone;
- (c) rank correlation (Spearman) of rewards with a task-wide reference: Truncated Monte Carlo Data
  Shapley (Ghorbani and Zou, 2019) over all participants' final-round updates, the utility being the
  negative test loss of the previous global model moved by the coalition's sample-weighted mean
  update on the owner's test set, each coalition's FedAvg model evaluated as a model (independent
  of the lab's own scoring code); 2,000 permutations by default, the largest standard error
  reported, and the rank correlation of two independent halves of the permutations (how far the
  reference agrees with itself);
- (d) poisoners' payouts: 30% of participants with each behaviour (``inverted-labels``,
  ``random-data``), their share of the pool; and on IID data (equal samples) 10% of participants
  flipping half of their labels (``half-flipped-labels``), their mean reward over an honest one's.
- (e) persistence: each participant's value in every round's task-wide game (the reward rule's game,
  screened and bounded, on each round's updates; 3,000 antithetic pairs, as early rounds' values are
  noisier to sample), and the correlation of the first round's values with the final round's: on IID
  data a high correlation says the spread among "equal" participants is their data (it persists), not
  the noise of one round; and where the final round's least valuable participant ranked in every round.
- (f) the trade-off behind the IID target: what a *participation share* would do. With share ``a``,
  every paid participant (a positive score) would get ``a x pool / (number paid)`` plus ``1 - a`` of
  its pay under the rule (on chain: scores ``a x mean score + (1 - a) x score``, the same sum). Computed
  from the pay measured in (a) and (d), no new task: for each ``a`` the IID CV, the poisoners' shares,
  the half-flipper's ratio, and the least-paid IID participant's pay over the mean. Order, and so
  every Spearman correlation, does not change.

It prints a table and writes JSON (``results/fairness.json``). The targets are the issue's:
draw-only change mean <= 3% and max <= 10%; IID coefficient of variation <= 0.10; Spearman >= 0.8
on every partition; poisoners <= 5% of the pool; a half-flipper <= 0.05 of an honest participant.

    cd /work/main && .venv/bin/python benchmarks/fairness.py [--seeds 5,6] [--permutations 300] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._provenance import git_provenance  # noqa: E402
from din_lab.config import PLAINTEXT_BASELINE, ExperimentConfig  # noqa: E402
from din_lab.experiment import tabulate  # noqa: E402
from din_lab.protocol.lab import Lab  # noqa: E402
from din_lab.roles.scoring import coalition_vector, evaluate_vector, is_affine, task_game  # noqa: E402

log = logging.getLogger("benchmarks.fairness")
PARTITIONS = ("iid", "quantity:0.5", "dirichlet:0.3")
POISONERS = ("inverted-labels", "random-data")
FLIPPER = "half-flipped-labels"
SHARES = (0.0, 0.25, 0.5, 0.6, 0.75)
"""The participation shares (f) tabulates."""
TARGETS = {"draw_mean": 0.03, "draw_max": 0.10, "cv_iid": 0.10, "spearman": 0.8, "poisoners_share": 0.05,
           "half_flipper": 0.05}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # ties share their mean rank
            tied = x == v
            r[tied] = r[tied].mean()
        return r
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def tmc_shapley(utility, n: int, *, permutations: int, rng: np.random.Generator, tolerance: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Truncated Monte Carlo Shapley values of ``n`` players and their standard errors: a random
    permutation adds players one by one; once the coalition's utility is within ``tolerance`` of the
    grand coalition's, the remaining players' marginals are taken as 0 (the truncation)."""
    full, empty = utility(tuple(range(n))), utility(())
    marginals = np.zeros((permutations, n))
    for m in range(permutations):
        order = rng.permutation(n)
        previous, members = empty, []
        for k, i in enumerate(order):
            if abs(full - previous) <= tolerance * abs(full) and k > 0:
                break  # truncated: the rest add (about) nothing
            members.append(int(i))
            value = utility(tuple(sorted(members)))
            marginals[m, i] = value - previous
            previous = value
    return marginals.mean(axis=0), marginals.std(axis=0, ddof=1) / np.sqrt(permutations)


def reference_values(lab: Lab, *, permutations: int, seed: int) -> tuple[dict[str, float], np.ndarray, float]:
    """Task-wide Data Shapley of every final-round update (address -> value), each value's standard
    error (same order) and the Spearman correlation of two independent halves of the permutations,
    from the experimenter's look at the updates (no agent sees them)."""
    final = len(lab.rounds) - 1
    updates = lab.updates(final)
    players = sorted(updates)
    base = (lab.rounds[final - 1].global_model if final else lab.owner.global_model(-1)[1]).astype(np.float64)
    deltas = np.stack([updates[p].delta.astype(np.float64) for p in players])
    weights = np.array([updates[p].samples for p in players], dtype=np.float64)
    cache: dict[tuple[int, ...], float] = {}

    def utility(coalition: tuple[int, ...]) -> float:
        if coalition not in cache:
            vector = coalition_vector(base, deltas, weights, coalition).astype(np.float32)
            cache[coalition] = -evaluate_vector(lab.model, vector, lab.dataset.X_test, lab.dataset.y_test)["loss"]
        return cache[coalition]

    half = permutations // 2
    a, errors_a = tmc_shapley(utility, len(players), permutations=half, rng=np.random.default_rng([seed, 1]),
                              tolerance=0.001)
    b, errors_b = tmc_shapley(utility, len(players), permutations=permutations - half,
                              rng=np.random.default_rng([seed, 2]), tolerance=0.001)
    values = (a * half + b * (permutations - half)) / permutations
    errors = np.sqrt(errors_a ** 2 * half ** 2 + errors_b ** 2 * (permutations - half) ** 2) / permutations
    return dict(zip(players, values.tolist(), strict=True)), errors, spearman(a, b)


def contribution_cv(values: np.ndarray, errors: np.ndarray) -> tuple[float, float]:
    """How unequal the reference says participants' contributions are: the coefficient of variation
    of ``values``, and the same with the reference's own Monte-Carlo noise taken out (the variance
    less the mean squared standard error, at least 0). Pay proportional to contribution would have the
    second CV where every value is positive (as on IID data); where some are negative (skewed
    partitions) it is a spread of signed values, which no pay has. It still holds the owner's test
    set's sampling noise, which the reward rule's shrinkage takes out."""
    v = np.asarray(values, dtype=np.float64)
    noise = float(np.mean(np.asarray(errors, dtype=np.float64) ** 2))
    return float(v.std() / v.mean()), float(np.sqrt(max(v.var() - noise, 0.0)) / v.mean())


def round_values(lab: Lab, *, pairs: int = 3000) -> np.ndarray | None:
    """Each participant's value in every round's task-wide game as the reward rule plays it (screened,
    bounded; rows: rounds, columns: the final round's participants): the experimenter's look at every
    round's updates (no agent sees them). Whether a participant's value persists from round to round
    tells a participant that contributes less (its data) from one measured low by chance (a noisy
    round). ``None`` for a non-affine model or when a participant missed a round."""
    if not is_affine(lab.model):
        return None
    final = set(lab.updates(len(lab.rounds) - 1))
    rows = []
    for r in range(len(lab.rounds)):
        updates = lab.updates(r)
        if not final <= set(updates):
            return None
        previous = lab.rounds[r - 1].global_model if r else lab.owner.global_model(-1)[1]
        _, game, keep = task_game(updates={p: updates[p] for p in final}, previous=previous, model=lab.model,
                                  x=lab.dataset.X_test, y=lab.dataset.y_test)
        game, _ = game.bounded(keep)
        values = np.zeros(len(final))
        values[keep], _ = game.shapley(np.flatnonzero(keep), pairs=pairs, seed=r)
        rows.append(values)
    return np.array(rows)


def with_participation_share(rewards: np.ndarray, share: float) -> np.ndarray:
    """What ``rewards`` would be with ``share`` of the pool split equally among the paid participants
    (positive rewards) and the rest as now: ``share x pool / paid + (1 - share) x reward`` (module
    docstring, f). The pool and the order of the paid are unchanged; the unpaid stay at 0."""
    r = np.asarray(rewards, dtype=np.float64)
    paid = r > 0
    if not paid.any():
        return r.copy()
    return np.where(paid, share * r.sum() / paid.sum() + (1.0 - share) * r, 0.0)


def _cv(r: np.ndarray) -> float:
    return float(r.std() / r.mean())


def _run_with_share(row: dict[str, Any], name: str, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial run ``name`` of ``row``: its pay with ``share``, and its participants' behaviours."""
    run = row["pay"][name]
    return with_participation_share(np.array(run["reward"]), share), np.array(run["behaviour"])


def share_tradeoff(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(f) for every share in :data:`SHARES`: the worst row's IID CV, poisoners' shares, half-flipper
    ratio, and the lowest IID pay over the mean, from each row's measured pay vectors (``row["pay"]``:
    the clean run's rewards, and for each adversarial run its rewards and behaviours)."""
    out = []
    for share in SHARES:
        entry: dict[str, Any] = {"share": share}
        iid = [with_participation_share(np.array(r["pay"]["clean"]), share) for r in rows if r["partition"] == "iid"]
        if iid:
            entry["cv_iid"] = max(_cv(r) for r in iid)
            entry["lowest_iid_over_mean"] = min(float(r.min() / r.mean()) for r in iid)
        for behaviour in POISONERS:
            entry[f"poisoners_{behaviour}_share"] = max(
                float(pay[kind == behaviour].sum() / pay.sum()) for pay, kind in (_run_with_share(r, behaviour, share) for r in rows))
        flips = [_run_with_share(r, FLIPPER, share) for r in rows if FLIPPER in r["pay"]]
        if flips:
            entry["half_flipper_vs_honest"] = max(float(pay[kind == FLIPPER].mean() / pay[kind == "honest"].mean())
                                                  for pay, kind in flips)
        entry["meets_every_target"] = bool(
            entry.get("cv_iid", 0.0) <= TARGETS["cv_iid"]
            and all(entry[f"poisoners_{b}_share"] <= TARGETS["poisoners_share"] for b in POISONERS)
            and entry.get("half_flipper_vs_honest", 0.0) <= TARGETS["half_flipper"])
        out.append(entry)
    return out


def run_task(config: ExperimentConfig) -> tuple[Lab, Any]:
    lab = Lab.create(config)
    lab.run()
    return lab, tabulate(lab, seconds=0.0)


def measure(partition: str, seed: int, *, base: dict[str, Any], permutations: int) -> dict[str, Any]:
    config = ExperimentConfig(**base, partition=partition, seed=seed)
    t0 = time.perf_counter()
    lab, result = run_task(config)
    _, moved = run_task(dataclasses.replace(config, fee_budget=config.fee_budget + 1))  # only the draw moves
    table = result.participants.set_index("address")
    other = moved.participants.set_index("address")
    same_training = [r["accuracy"] for r in result.summary["rounds"]] == [r["accuracy"] for r in moved.summary["rounds"]]
    paid = table.reward >= 0.1 * table.reward.mean()
    changes = ((other.reward - table.reward).abs() / table.reward)[paid]
    pool = float(table.reward.sum())
    reference, reference_errors, reference_halves = reference_values(lab, permutations=permutations, seed=seed)
    rewards = np.array([table.reward[a] for a in reference])
    reference_array = np.array(list(reference.values()))
    reference_cv, reference_signal_cv = contribution_cv(reference_array, reference_errors)
    pay: dict[str, Any] = {"clean": table.reward.tolist()}  # the pay vectors behind (f)
    out: dict[str, Any] = {
        "pay": pay,
        "partition": partition, "seed": seed, "participants": len(table),
        "final_accuracy": result.summary["final_accuracy"],
        "draw_only": {"same_training": same_training, "mean_change": float(changes.mean()),
                      "max_change": float(changes.max()), "counted": int(paid.sum()),
                      "max_change_of_pool": float((other.reward - table.reward).abs().max() / pool)},
        "reward_cv": float(table.reward.std(ddof=0) / table.reward.mean()),
        "samples_cv": float(table.samples.std(ddof=0) / table.samples.mean()),
        "spearman_reference": spearman(rewards, reference_array),
        "spearman_samples": spearman(table.reward.to_numpy(), table.samples.to_numpy()),
        "reference_max_standard_error": float(reference_errors.max()),
        "reference_cv": reference_cv,
        "reference_signal_cv": reference_signal_cv,
        "reference_negative": int((reference_array < 0).sum()),
        "reference_halves_spearman": reference_halves,
        "reference_permutations": permutations,
    }
    per_round = round_values(lab)
    if per_round is not None and len(per_round) > 1:  # does a participant's value persist across rounds?
        out["round_values_correlation_first_last"] = float(np.corrcoef(per_round[0], per_round[-1])[0, 1])
        out["round_values_cv"] = [float(v.std() / v.mean()) for v in per_round]
        lowest = int(np.argmin(per_round[-1]))  # the final round's least valuable: where it ranked before
        out["lowest_final_ranks"] = [int((v < v[lowest]).sum()) + 1 for v in per_round]
        out["lowest_final_value_over_mean"] = [float(v[lowest] / v.mean()) for v in per_round]
    for behaviour in POISONERS:
        _, poisoned = run_task(dataclasses.replace(config, malicious_participants=((0.3, behaviour),)))
        p = poisoned.participants
        pay[behaviour] = {"reward": p.reward.tolist(), "behaviour": p.behaviour.tolist()}
        out[f"poisoners_{behaviour}_share"] = float(p[p.behaviour == behaviour].reward.sum() / p.reward.sum())
    if partition == "iid":  # equal data: a half-flipper against an honest participant with as many samples
        _, flipped = run_task(dataclasses.replace(config, malicious_participants=((0.1, FLIPPER),)))
        p = flipped.participants
        pay[FLIPPER] = {"reward": p.reward.tolist(), "behaviour": p.behaviour.tolist()}
        out["half_flipper_vs_honest"] = float(p[p.behaviour == FLIPPER].reward.mean()
                                              / p[p.behaviour == "honest"].reward.mean())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    worst_mean = max(r["draw_only"]["mean_change"] for r in rows)
    worst_max = max(r["draw_only"]["max_change"] for r in rows)
    out.append({"check": f"reward change from the draw alone, mean <= {TARGETS['draw_mean']:.0%}", "value": worst_mean,
                "pass": worst_mean <= TARGETS["draw_mean"]})
    out.append({"check": f"reward change from the draw alone, max <= {TARGETS['draw_max']:.0%}", "value": worst_max,
                "pass": worst_max <= TARGETS["draw_max"]})
    iid = [r for r in rows if r["partition"] == "iid"]
    if iid:
        worst = max(iid, key=lambda r: r["reward_cv"])
        out.append({"check": f"IID honest rewards, coefficient of variation <= {TARGETS['cv_iid']} (the reference's "
                             f"own, noise removed, in that row: {worst['reference_signal_cv']:.2f})",
                    "value": worst["reward_cv"], "pass": worst["reward_cv"] <= TARGETS["cv_iid"]})
    for partition in sorted({r["partition"] for r in rows}):
        rho = min(r["spearman_reference"] for r in rows if r["partition"] == partition)
        out.append({"check": f"Spearman with task-wide Data Shapley >= {TARGETS['spearman']} ({partition})",
                    "value": rho, "pass": rho >= TARGETS["spearman"]})
    flips = [r["half_flipper_vs_honest"] for r in rows if "half_flipper_vs_honest" in r]
    if flips:
        out.append({"check": f"a half-label-flipper earns <= {TARGETS['half_flipper']} of an honest participant "
                             "with as much data (IID)", "value": max(flips), "pass": max(flips) <= TARGETS["half_flipper"]})
    for behaviour in POISONERS:
        share = max(r[f"poisoners_{behaviour}_share"] for r in rows)
        out.append({"check": f"30% {behaviour} earn <= {TARGETS['poisoners_share']:.0%} of the pool", "value": share,
                    "pass": share <= TARGETS["poisoners_share"]})
    return out


def table(rows: list[dict[str, Any]], check_rows: list[dict[str, Any]], info: dict[str, Any],
          tradeoff: list[dict[str, Any]]) -> str:
    lines = [f"fair rewards: {info['protocol']}, {info['participants']} participants, {info['rounds']} rounds, "
             f"digits, scorer {info['scorer']} in the {info['contribution']} game; reference: TMC Data Shapley, "
             f"{info['permutations']} permutations ('ref CV': the reference values' coefficient of variation less its "
             "Monte-Carlo noise, what pay proportional to contribution would have if no value is negative; 'ref<0': "
             "how many are; 'ref self': Spearman of its two halves)",
             "", f"{'partition':<15}{'seed':>5}{'acc':>7}{'draw mean':>11}{'draw max':>10}{'reward CV':>11}"
                 f"{'ref CV':>8}{'ref<0':>6}{'rho ref':>9}{'ref SE':>9}{'ref self':>10}{'rho samples':>13}"
                 f"{'flip share':>12}"
                 f"{'random share':>14}{'half-flip':>11}"]
    for r in rows:
        lines.append(f"{r['partition']:<15}{r['seed']:>5}{r['final_accuracy']:>7.3f}"
                     f"{r['draw_only']['mean_change']:>11.1%}{r['draw_only']['max_change']:>10.1%}"
                     f"{r['reward_cv']:>11.2f}{r['reference_signal_cv']:>8.2f}{r['reference_negative']:>6d}"
                     f"{r['spearman_reference']:>9.2f}{r['reference_max_standard_error']:>9.4f}"
                     f"{r['reference_halves_spearman']:>10.2f}"
                     f"{r['spearman_samples']:>13.2f}{r['poisoners_inverted-labels_share']:>12.1%}"
                     f"{r['poisoners_random-data_share']:>14.1%}"
                     + (f"{r['half_flipper_vs_honest']:>11.3f}" if "half_flipper_vs_honest" in r else f"{'-':>11}"))
    moved = [f"{r['partition']}/{r['seed']}" for r in rows if not r["draw_only"]["same_training"]]
    for r in rows:
        if "round_values_correlation_first_last" in r:
            lines.append(f"{r['partition']}/{r['seed']}: values, first round against last, correlation "
                         f"{r['round_values_correlation_first_last']:.2f}; CV of the values by round "
                         + ", ".join(f"{v:.2f}" for v in r["round_values_cv"])
                         + "; the final round's least valuable, by round: rank "
                         + ", ".join(str(k) for k in r["lowest_final_ranks"]) + f" of {r['participants']}, value/mean "
                         + ", ".join(f"{v:.2f}" for v in r["lowest_final_value_over_mean"]))
    lines.append("draw-only reruns trained to the same accuracies: " + ("yes, every one" if not moved else
                                                                        f"NO for {', '.join(moved)}"))
    lines += ["", "(f) with a participation share (worst row; computed from the pay above, order unchanged)",
              f"{'share':>7}{'IID CV':>9}{'lowest IID / mean':>19}{'flip share':>12}{'random share':>14}"
              f"{'half-flip':>11}  every target"]
    for t in tradeoff:
        lines.append(f"{t['share']:>7.2f}{t.get('cv_iid', float('nan')):>9.2f}"
                     f"{t.get('lowest_iid_over_mean', float('nan')):>19.2f}"
                     f"{t['poisoners_inverted-labels_share']:>12.1%}{t['poisoners_random-data_share']:>14.1%}"
                     f"{t.get('half_flipper_vs_honest', float('nan')):>11.3f}  {'yes' if t['meets_every_target'] else 'no'}")
    lines += ["", "targets"]
    for c in check_rows:
        lines.append(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['check']}: {c['value']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="5,6", help="comma-separated seeds (default 5,6)")
    ap.add_argument("--partitions", default=",".join(PARTITIONS))
    ap.add_argument("--participants", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--permutations", type=int, default=2000,
                    help="TMC permutations for the reference (default 2000)")
    ap.add_argument("--protocol", choices=("paper", "baseline"), default="paper",
                    help="the paper's protocol (secure aggregation, CKKS evaluation; the default) or the plaintext "
                         "baseline")
    ap.add_argument("--contribution", choices=("task", "subgroup"), default="task",
                    help="the game participants are valued in (default task; subgroup: the rule before issue 17)")
    ap.add_argument("--quick", action="store_true", help="one seed, IID only, 400 permutations")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "fairness.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("web3", "eth", "urllib3", "din_lab"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    partitions = [p for p in args.partitions.split(",") if p.strip()]
    permutations = args.permutations
    if args.quick:
        seeds, partitions, permutations = seeds[:1], ["iid"], 400
    base = {"participants": args.participants, "evaluators": 4, "rounds": args.rounds, "dataset": "digits",
            "contribution": args.contribution, **(PLAINTEXT_BASELINE if args.protocol == "baseline" else {})}
    rows = []
    for partition in partitions:
        for seed in seeds:
            log.info("%s, seed %d ...", partition, seed)
            rows.append(measure(partition, seed, base=base, permutations=permutations))
    check_rows = checks(rows)
    tradeoff = share_tradeoff(rows)
    info = {"protocol": args.protocol, "participants": args.participants, "rounds": args.rounds,
            "scorer": ExperimentConfig().scorer, "contribution": args.contribution, "permutations": permutations}
    print(table(rows, check_rows, info, tradeoff))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"description": "fair rewards (benchmarks/fairness.py)", "settings": info,
                                    "provenance": git_provenance("din_lab", "contracts/src"), "rows": rows,
                                    "participation_share": tradeoff, "checks": check_rows, "targets": TARGETS}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
