"""Experiments: ``run(config) -> ExperimentResult`` (pandas tables and a JSON summary), and sweeps
of a papermill-parameterized notebook over a grid (:func:`run_sweep`, ``din-lab sweep``)."""

from din_lab.experiment.run import ExperimentResult, run, tabulate
from din_lab.experiment.sweep import SweepError, check_parameter, heatmap, publish_results, run_sweep
from din_lab.protocol.checks import check_config

__all__ = ["ExperimentResult", "SweepError", "check_config", "check_parameter", "heatmap", "publish_results", "run",
           "run_sweep", "tabulate"]
