"""The Voila dashboards in a real browser (issue 7): a fixture serves widgets/ with Voila on
127.0.0.1 and a free port (stopped by its PID), Playwright drives Debian's Chromium (no browser
download), waits for the widgets to render, clicks "next phase" in the round explorer and sees the
ledger gain that phase's transactions and the network tab draw the round, runs a task in the
rewards dashboard and sees each participant's reward explained in one line, and saves a screenshot
of every dashboard (and of the network picture and the rewards table) under
test-artifacts/dashboards/.

Without Chromium these tests are skipped with the reason (pytest -ra prints it); `.ci/run`
installs Debian's chromium when it is missing, so CI runs them for real."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "dashboards"
SWEEP_RESULTS = ROOT / "tests" / "data" / "sweep" / "results.csv"
CHROMIUM = os.environ.get("DIN_LAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
SKIP = ("browser tests skipped: no Chromium at {path}; install Debian's (`apt-get install -y chromium`, which "
        ".ci/run does) or point DIN_LAB_CHROMIUM at one")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(SKIP.format(path=CHROMIUM))
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


@pytest.fixture(scope="module")
def sweep_results(chromium) -> Path:
    """A real sweep's table for the experiment dashboard: the 2 x 2 grid of test_sweep, as
    `din-lab sweep notebooks/05_evaluator_ratio_x_malicious_share.ipynb -p malicious_share 0 0.5
    -p evaluators_per_subgroup 3 5 --set participants 10 --set rounds 1` wrote it (test_sweep runs
    that sweep itself and checks that its table still has these columns)."""
    return SWEEP_RESULTS


@pytest.fixture(scope="module")
def voila(sweep_results, tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("voila") / "voila.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    env = {**os.environ, "DIN_LAB_SWEEP_RESULTS": str(sweep_results), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "widgets"), "--no-browser",
                             "--Voila.ip=127.0.0.1", f"--port={port}", "--Voila.tornado_settings={'xsrf_cookies': False}"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with code {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("voila did not start within 60 s")
                time.sleep(0.3)
        yield url
    finally:
        # voila by its PID (its own process group); the kernels it started run in sessions of their
        # own and exit when their parent does (ipykernel's parent poller)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser(voila, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


def _open(browser, url: str, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/voila/render/{name}.ipynb", timeout=180_000)
    return page


def _ledger_count(page) -> int:
    return int(page.locator(".din-ledger-count").first.get_attribute("data-count"))


def test_round_explorer_next_phase_adds_the_phases_transactions(voila, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, voila, "round_explorer")
    next_phase = page.get_by_role("button", name="next phase")
    next_phase.wait_for(timeout=180_000)
    page.locator(".din-timeline").wait_for()
    assert "assign" in page.locator(".din-phase-current").inner_text()
    page.get_by_role("tab", name="ledger").click()
    title = page.locator(".din-ledger-count").first.locator("xpath=..")
    assert "set-up" in title.inner_text() and _ledger_count(page) > 1  # the set-up's transactions
    next_phase.click()
    page.wait_for_function("() => document.querySelector('.din-phase-current')?.textContent === 'train'",
                           timeout=120_000)
    # the ledger now lists round 0's transactions: the assign phase's two, the owner's startTraining
    # and the draw from the seed block mined after it
    assert "round 0" in title.inner_text() and _ledger_count(page) == 2
    assert page.get_by_text("start training").first.is_visible()
    assert page.get_by_text("draw round").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "round_explorer.png"), full_page=True)
    # the network tab draws round 0 as a picture: subgroups, their committees, the legend
    page.get_by_role("tab", name="network").click()
    picture = page.locator("img.din-network-plot").first
    picture.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("() => document.querySelector('img.din-network-plot')?.naturalWidth > 0",
                           timeout=60_000)
    assert page.get_by_text(re.compile("Network: round 0 of")).first.is_visible()
    picture.screenshot(path=str(ARTIFACTS / "network.png"))
    page.close()


def test_rewards_dashboard_runs_a_task(voila, browser):
    page = _open(browser, voila, "rewards")
    run = page.get_by_role("button", name="run task")
    run.wait_for(timeout=180_000)
    run.click()
    # the paper's protocol (secure aggregation, CKKS-encrypted evaluation) takes minutes in a browser
    page.wait_for_function("() => /task over|error:/.test(document.body.innerText)", timeout=600_000)
    failed = page.get_by_text("error:")
    assert not failed.count(), f"the task stopped: {failed.first.locator('xpath=..').inner_text()}"
    page.get_by_text("task over").wait_for(timeout=10_000)
    page.get_by_text(re.compile("final accuracy 0\\.")).first.wait_for(timeout=60_000)
    assert page.get_by_text("participant 0").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "rewards.png"), full_page=True)
    # every participant's reward explained in one line (experiment.run's `why` column)
    why = page.get_by_text(re.compile(r"score [\d.]+ of [\d.]+ in all = [\d.]+% of the participants' pool "
                                      r"[\d.]+ = [\d.]+ DIN"))
    why.first.wait_for(timeout=60_000)
    assert why.first.is_visible() and why.count() >= 2
    page.locator("table", has=page.get_by_text("of the participants' pool")).first.screenshot(
        path=str(ARTIFACTS / "rewards_why.png"))
    page.close()


def test_experiment_dashboard_shows_the_sweep(voila, browser):
    page = _open(browser, voila, "experiment")
    page.get_by_text("DIN experiment").wait_for(timeout=180_000)
    page.locator(".widget-dropdown").first.wait_for(timeout=180_000)
    page.locator("img").first.wait_for(timeout=60_000)
    assert page.get_by_text("malicious_share").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "experiment.png"), full_page=True)
    page.close()


def test_economy_app_runs_a_task_a_qf_round_and_a_dpp(voila, browser):
    """widgets/economy.ipynb: run the task (evaluators buy licences), a QF round (Sybil accounts
    refused) and an economic DPP (executed through the timelock), each shown in the page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, voila, "economy")
    run = page.get_by_role("button", name="run task")
    run.wait_for(timeout=180_000)
    run.click()
    page.wait_for_function("() => /task over|Error/.test(document.body.innerText)", timeout=300_000)
    page.get_by_text("task over").first.wait_for(timeout=10_000)
    assert page.get_by_text("evaluator 0").first.is_visible()  # a licence holder
    page.get_by_role("button", name="QF round").click()
    page.get_by_text(re.compile("QF round \\d+ finalized")).first.wait_for(timeout=300_000)
    assert page.get_by_text(re.compile("NotVerified")).first.is_visible()
    page.get_by_role("button", name="DPP vote").click()
    page.get_by_text(re.compile("DPP \\d+ Executed")).first.wait_for(timeout=300_000)
    page.screenshot(path=str(ARTIFACTS / "economy.png"), full_page=True)
    page.close()
