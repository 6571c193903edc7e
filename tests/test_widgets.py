"""din_lab.widgets without a front end, as ipywidgets' own tests do: drive the buttons and check
each view's state after the step (issue 7)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from din_lab.config import ExperimentConfig
from din_lab.protocol.lab import FINAL_PHASES, ROUND_PHASES, Lab
from din_lab.widgets import (
    ExperimentDashboard,
    IpfsBrowser,
    Ledger,
    NetworkView,
    RewardsDashboard,
    RoundExplorer,
    RoundStepper,
    network_state,
)

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(participants=6, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3, rounds=2)
PNG = b"\x89PNG"


@pytest.fixture
def lab():
    return Lab.create(ExperimentConfig(**SMALL))


@pytest.fixture
def lab_with_a_lazy_evaluator():
    return Lab.create(ExperimentConfig(**{**SMALL, "evaluators": 4}, malicious_evaluators=("0.25:lazy",)))


def test_next_phase_runs_one_phase_and_moves_the_highlight(lab):
    explorer = RoundExplorer(lab)
    stepper = explorer.stepper
    assert stepper.current_phase == "assign"
    assert "din-phase-current" in stepper.timeline.value and ">assign<" in stepper.timeline.value
    before = len(explorer.ledger.rows)  # the set-up's transactions
    stepper.next_button.click()
    assert [r.phase for r in stepper.reports] == ["assign"]
    assert stepper.current_phase == "train"
    assert explorer.ledger.rows and all(r["round"] == 0 for r in explorer.ledger.rows)
    assert any(r["function"] == "start training" for r in explorer.ledger.rows)
    assert before > 0 and explorer.ledger.history[-1][0] == "assign r0"
    state = network_state(lab)
    assert state.round == 0 and len(state.subgroups) == 2 and all(len(c) == 3 for c in state.committees.values())
    assert bytes(explorer.network.plot.value[:4]) == PNG


def test_run_round_stops_at_the_next_round_and_the_ledger_gains_its_transactions(lab):
    explorer = RoundExplorer(lab)
    explorer.stepper.round_button.click()
    assert [r.phase for r in explorer.stepper.reports] == list(ROUND_PHASES)
    assert explorer.stepper.current_phase == "assign" and lab.next_phase == ("assign", 1)
    functions = {r["function"] for r in explorer.ledger.rows}
    assert {"relay signed updates", "publish global model"} <= functions
    assert sum(r["gas"] for r in explorer.ledger.rows) > 0
    # the IPFS browser lists the round's objects and every one re-hashes to its CID
    holds = {o["holds"] for o in explorer.ipfs.objects}
    assert {"genesis model", "masked update" if lab.config.secagg else "update", "model"} <= holds
    assert all(o["verified"] == "yes" for o in explorer.ipfs.objects)


def test_run_task_to_the_end_shows_slashes_payments_and_results(lab_with_a_lazy_evaluator):
    lab = lab_with_a_lazy_evaluator
    dashboard = RewardsDashboard(lab)
    network = NetworkView(lab)  # the round explorer's picture, stepped by this dashboard's stepper
    pictures = [bytes(network.plot.value)]
    dashboard.stepper.on_step(network.update)
    dashboard.stepper.on_step(lambda report: pictures.append(bytes(network.plot.value)))
    dashboard.stepper.task_button.click()
    assert lab.done and dashboard.stepper.next_button.disabled
    assert [r.phase for r in dashboard.stepper.reports][-len(FINAL_PHASES):] == list(FINAL_PHASES)
    assert "task over" in dashboard.stepper.timeline.value
    # the picture is a PNG that changes when the owner assigns the round and when the money moves
    assert all(p[:4] == PNG for p in pictures)
    assert pictures[1] != pictures[0] and pictures[-1] != pictures[1]
    state = network_state(lab)
    lazy = next(e.name for e in lab.evaluators if e.behaviour.name == "lazy")
    assert lazy in state.slashed and f"slashed: {lazy}" in network.title.value
    names = {p.name for p in lab.participants}
    paid = {name: amount for name, amount in state.paid.items() if name in names}
    assert paid and all(amount > 0 for amount in paid.values())  # claimed rewards
    assert any(amount > 0 for name, amount in state.paid.items() if name not in names)  # evaluators' fees
    assert "task over" in network.title.value
    assert dashboard.results.accuracy and bytes(dashboard.results.plot.value[:4]) == PNG
    assert "reward" in dashboard.results.table.value and "participant 0" in dashboard.results.table.value
    assert "of the participants&#x27; pool" in dashboard.results.table.value  # each reward in one line
    test_set = "encrypted test set" if lab.config.evaluation == "he" else "test set"
    assert any(o["holds"] == test_set for o in dashboard.ipfs.objects)
    assert all(o["verified"] == "yes" for o in dashboard.ipfs.objects)


def test_a_failing_step_is_shown_and_the_widget_stays_usable(lab, monkeypatch):
    stepper = RoundStepper(lab)

    def broken(*args, **kwargs):
        raise RuntimeError("the node went away")

    monkeypatch.setattr(lab.owner, "assign", broken)
    assert stepper.next_phase() is None
    assert "the node went away" in stepper.status.value and "error" in stepper.status.value
    assert stepper.next_button.disabled and stepper.task_button.disabled
    assert stepper.run_task() == []  # nothing runs, nothing raises
    ledger = Ledger(lab)  # the other views still work on the stopped lab
    assert ledger.rows


def test_a_refused_configuration_is_shown_in_the_page():
    panel = RoundExplorer.from_config(ExperimentConfig(model="cnn", dataset="wine"))
    assert "could not set up the task" in panel.value and "cnn" in panel.value


def test_ipfs_browser_flags_content_that_does_not_hash_to_its_cid(lab):
    browser = IpfsBrowser(lab)
    good = browser.objects[0]["cid"]
    assert browser.verify(good)
    browser._verified.clear()
    real_cat = lab.store.cat
    lab.store.cat = lambda cid: real_cat(cid) + b"tampered"  # a store that lies
    try:
        assert not browser.verify(good)
    finally:
        lab.store.cat = real_cat


def test_experiment_dashboard_pivots_a_sweep_table(tmp_path):
    table = pd.DataFrame([{"malicious_share": m, "evaluators_per_subgroup": k, "final_accuracy": 0.9 - m / 2 + k / 100,
                           "disputes": float("nan"), "seconds": 3.0 + m}
                          for m in (0.0, 0.2, 0.4) for k in (3, 5)])
    dash = ExperimentDashboard(table, parameters=["malicious_share", "evaluators_per_subgroup"])
    assert (dash.x.value, dash.y.value, dash.metric.value) == ("malicious_share", "evaluators_per_subgroup",
                                                               "final_accuracy")
    assert set(dash.metric.options) == {"final_accuracy", "disputes", "seconds"}  # metrics exclude the parameters
    grid = dash.pivot()
    assert grid.shape == (2, 3) and grid.loc[5, 0.2] == pytest.approx(0.85)
    assert bytes(dash.plot.value[:4]) == PNG
    dash.y.value = "malicious_share"  # the same parameter twice: a message, no crash, no stale plot
    assert "two different parameters" in dash.message.value and dash.plot.layout.display == "none"
    dash.y.value = "evaluators_per_subgroup"
    dash.metric.value = "disputes"  # every value missing: said so
    assert "no numeric values" in dash.message.value
    dash.metric.value = "final_accuracy"
    assert dash.message.value == "" and dash.plot.layout.display is None
    # din-lab sweep's files: the parameters come from parameters.json
    table.to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "parameters.json").write_text('["malicious_share", "evaluators_per_subgroup"]')
    loaded = ExperimentDashboard.from_csv(tmp_path / "results.csv")
    assert loaded.parameters == ["malicious_share", "evaluators_per_subgroup"]
    one = ExperimentDashboard(table[table.evaluators_per_subgroup == 3], parameters=["malicious_share"])
    assert one.message.value == "" and bytes(one.plot.value[:4]) == PNG  # one parameter: a line
    missing = ExperimentDashboard.from_csv(tmp_path / "none.csv")
    assert "din-lab sweep" in missing.value


def test_a_failing_view_is_shown_but_does_not_stop_the_stepper(lab):
    stepper = RoundStepper(lab)

    def broken(report):
        raise ValueError("cannot draw")

    stepper.on_step(broken)
    assert stepper.next_phase() is not None
    assert "cannot draw" in stepper.status.value and not stepper.next_button.disabled
    assert stepper.next_phase() is not None  # stepping goes on


def test_ipfs_browser_keeps_the_readers_choice(lab):
    browser = IpfsBrowser(lab)
    first = browser.pick.options[-1][1]  # the oldest object
    browser.pick.value = first
    lab.step()
    lab.step()  # train
    lab.step()  # submit: new objects arrive
    browser.refresh()
    assert browser.pick.value == first and first in browser.detail.value


def test_economy_dashboard_runs_a_task_a_qf_round_and_a_dpp():
    """The economy app's dashboard, driven by its buttons: licences bought, the fund's flows, a QF
    round's matches and an executed DPP, each shown in the page."""
    from din_lab.widgets import EconomyDashboard

    dashboard = EconomyDashboard.from_config(ExperimentConfig(participants=6, evaluators=4, subgroup_size=3, rounds=1,
                                                              seed=2, economy=True, evaluation="plaintext",
                                                              secagg=False))
    assert isinstance(dashboard, EconomyDashboard)
    assert dashboard.qf_button.disabled and not dashboard.run_button.disabled
    dashboard.run_button.click()
    assert "task over" in dashboard.status.value and "evaluator 0" in dashboard.licences.value
    assert "tasks&#x27; dues" in dashboard.flows.value or "tasks' dues" in dashboard.flows.value
    dashboard.qf_button.click()
    assert "finalized" in dashboard.status.value and "NotVerified" in dashboard.qf.value
    dashboard.share.value = 2_000
    dashboard.dpp_button.click()
    assert "Executed" in dashboard.dpp.value and "500 -&gt; 2000" in dashboard.dpp.value
    bad = EconomyDashboard.from_config(evaluator_fee=50.0)  # above the governed fee cap
    assert "evaluator_fee" in bad.value
