"""Experiments: ``run(config) -> ExperimentResult`` (pandas tables and a JSON summary)."""

from din_lab.experiment.run import ExperimentResult, run, tabulate
from din_lab.protocol.checks import check_config

__all__ = ["ExperimentResult", "check_config", "run", "tabulate"]
