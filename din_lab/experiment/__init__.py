"""Experiments: ``run(config) -> ExperimentResult`` (pandas tables and a JSON summary)."""

from din_lab.experiment.checks import check_config
from din_lab.experiment.run import ExperimentResult, run, tabulate

__all__ = ["ExperimentResult", "check_config", "run", "tabulate"]
