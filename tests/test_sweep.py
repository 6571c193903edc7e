"""``din-lab sweep``: a papermill grid over notebooks/05 run in parallel, collected into one tidy
table and a heatmap; bad parameters fail the run at the parameters with a message naming them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from din_lab.errors import ConfigError
from din_lab.experiment import run_sweep

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_evaluator_ratio_x_malicious_share.ipynb"
SMALL = ["--set", "participants", "10", "--set", "rounds", "1"]


def sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "din_lab.cli", "sweep", str(NOTEBOOK), "--no-progress", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sweep_collects_one_tidy_table_and_a_heatmap(tmp_path):
    r = sweep("-p", "malicious_share", "0", "0.5", "-p", "evaluators_per_subgroup", "3", "5", *SMALL,
              "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 4
    assert list(table.columns[:2]) == ["malicious_share", "evaluators_per_subgroup"]
    assert {"final_accuracy", "caught_share", "honest_slashed", "disputes", "seconds"} <= set(table.columns)
    assert sorted(zip(table.malicious_share, table.evaluators_per_subgroup, strict=True)) == [
        (0.0, 3), (0.0, 5), (0.5, 3), (0.5, 5)]
    assert (table[table.malicious_share == 0].malicious == 0).all()
    assert (table[table.malicious_share == 0.5].malicious == 4).all()
    # the browser test's copy of this table (tests/data/sweep) has exactly these columns
    assert list(table.columns) == list(pd.read_csv(ROOT / "tests" / "data" / "sweep" / "results.csv").columns)
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(tmp_path.glob("run-*.ipynb"))) == 4
    assert "4 runs" in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("value, message", [('"lots"', "parameter malicious_share: expected int or float"),
                                            ("1.5", "parameter malicious_share: 1.5 is outside [0, 1]")])
def test_a_bad_parameter_fails_the_run_naming_it(tmp_path, value, message):
    r = sweep("-p", "malicious_share", value, *SMALL, "--out", str(tmp_path))
    assert r.returncode == 2
    assert message in r.stderr and "ConfigError" in r.stderr


def test_unknown_parameters_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="no parameter committee_size"):
        run_sweep(NOTEBOOK, grid={"committee_size": [3]}, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="at least one parameter"):
        run_sweep(NOTEBOOK, grid={}, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        run_sweep(tmp_path / "none.ipynb", grid={"a": [1]}, out=tmp_path, progress=False)
    assert not list(tmp_path.glob("run-*"))
