"""The dashboards the Voila apps in ``widgets/`` serve, composed from the views:

- :class:`RoundExplorer`: the round stepper over the network view and the ledger (and the IPFS
  browser), for stepping through a task phase by phase;
- :class:`RewardsDashboard`: run a task and see who was paid, who was slashed, and what IPFS holds;
- :class:`ExperimentDashboard`: a sweep's results table as a heatmap of one metric over two
  parameters.

Each ``from_config`` builds its Lab itself; a configuration the Lab refuses, or a step that fails,
is shown in the page (:func:`error_panel`) and the page stays usable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.experiment import heatmap
from din_lab.protocol.lab import Lab, StepReport
from din_lab.widgets._render import error_html, html_table
from din_lab.widgets.ipfs import IpfsBrowser
from din_lab.widgets.ledger import Ledger
from din_lab.widgets.network import NetworkView
from din_lab.widgets.results import ResultsView
from din_lab.widgets.stepper import RoundStepper

log = logging.getLogger(__name__)


def error_panel(message: str) -> w.HTML:
    return w.HTML(error_html(message), layout=w.Layout(margin="8px"))


def _lab_or_error(config: ExperimentConfig | None, settings: dict[str, Any]) -> Lab | w.HTML:
    try:
        return Lab.create(config, **settings)
    except Exception as e:  # shown in the page instead of a traceback
        log.warning("could not create the lab: %s", e)
        return error_panel(f"could not set up the task: {type(e).__name__}: {e}")


class _LabDashboard(w.VBox):
    """A dashboard over one Lab, which :meth:`from_config` can also build."""

    def __init__(self, lab: Lab, children: list[w.Widget]) -> None:
        self.lab = lab
        super().__init__(children)

    @classmethod
    def from_config(cls, config: ExperimentConfig | None = None, **settings: Any) -> w.Widget:
        """The dashboard over a new Lab, or the error panel when the Lab cannot be set up."""
        lab = _lab_or_error(config, settings)
        return lab if isinstance(lab, w.HTML) else cls(lab)


class RoundExplorer(_LabDashboard):
    """Stepper, network, ledger and IPFS browser over one Lab; every view refreshes after a step."""

    def __init__(self, lab: Lab) -> None:
        self.stepper = RoundStepper(lab)
        self.network = NetworkView(lab)
        self.ledger = Ledger(lab)
        self.ipfs = IpfsBrowser(lab)
        self.tabs = w.Tab([self.network, self.ledger, self.ipfs])
        for i, title in enumerate(("network", "ledger", "IPFS")):
            self.tabs.set_title(i, title)
        for view in (self.network, self.ledger, self.ipfs):
            self.stepper.on_step(view.update)
        super().__init__(lab, [self.stepper, self.tabs])


class RewardsDashboard(_LabDashboard):
    """For stakeholders: run the task, then rewards, fees, slashes and the stored objects."""

    def __init__(self, lab: Lab) -> None:
        self.stepper = RoundStepper(lab)
        self.results = ResultsView(lab)
        self.ipfs = IpfsBrowser(lab)
        self.stepper.on_step(self._after)
        super().__init__(lab, [self.stepper, self.results, self.ipfs])

    def _after(self, report: StepReport) -> None:
        if report.phase in ("publish", "claim") or report.done:
            self.results.refresh()
        if report.done:
            self.ipfs.refresh()


class ExperimentDashboard(w.VBox):
    """A sweep's tidy results table (one row per run: parameters and metrics) as a heatmap of a
    metric over two parameters, with the table below."""

    def __init__(self, table: pd.DataFrame, *, x: str | None = None, y: str | None = None,
                 metric: str | None = None) -> None:
        if table.empty:
            raise ConfigError("the experiment dashboard needs a results table with at least one run")
        self.table = table
        numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        params = [c for c in table.columns if table[c].nunique() > 1] or list(table.columns)
        self.x = w.Dropdown(options=params, value=x or params[0], description="x")
        self.y = w.Dropdown(options=params, value=y or params[min(1, len(params) - 1)], description="y")
        default = "final_accuracy" if "final_accuracy" in numeric else (numeric[0] if numeric else None)
        self.metric = w.Dropdown(options=numeric, value=metric or default,
                                 description="metric")
        self.plot = w.Image(format="png", layout=w.Layout(max_width="700px"))
        self.message = w.HTML()
        self.rows = w.HTML(layout=w.Layout(max_height="300px", overflow="auto"))
        for d in (self.x, self.y, self.metric):
            d.observe(lambda _: self.refresh(), names="value")
        super().__init__([w.HBox([self.x, self.y, self.metric]), self.message,
                          self.plot, self.rows])
        self.refresh()

    @classmethod
    def from_csv(cls, path: str | Path, **kw: Any) -> w.Widget:
        try:
            return cls(pd.read_csv(path), **kw)
        except (OSError, ValueError, ConfigError) as e:
            return error_panel(f"cannot read the sweep results {path}: {e} (run `din-lab sweep ...` first)")

    def pivot(self) -> pd.DataFrame:
        return self.table.pivot_table(index=self.y.value, columns=self.x.value, values=self.metric.value,
                                      aggfunc="mean")

    def refresh(self) -> None:
        self.rows.value = html_table(self.table.to_dict("records"), list(self.table.columns), empty="no runs")
        if self.metric.value is None or self.x.value == self.y.value:
            self.message.value = error_html("choose a numeric metric and two different parameters")
            return
        self.message.value = ""
        self.plot.value = heatmap(self.table, x=self.x.value, y=self.y.value, metric=self.metric.value)
