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

import json
import logging
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.experiment import heatmap
from din_lab.protocol.lab import Lab, StepReport
from din_lab.widgets._render import error_html, figure_png, html_table, new_figure
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
    """A sweep's tidy results table (one row per run: parameters, then metrics) as a heatmap of a
    metric over two parameters, with the table below. ``parameters``: the swept columns
    (``din-lab sweep`` records them in ``parameters.json``); without them, they are
    inferred as the columns with a few distinct values other than ``seconds``."""

    def __init__(self, table: pd.DataFrame, *, parameters: list[str] | None = None, x: str | None = None,
                 y: str | None = None, metric: str | None = None) -> None:
        if table.empty:
            raise ConfigError("the experiment dashboard needs a results table with at least one run")
        self.table = table
        if parameters is None:
            parameters = [c for c in table.columns if c != "seconds" and table[c].nunique() <= max(10, len(table) // 2)
                          and table[c].nunique() > 1] or [table.columns[0]]
        missing = [p for p in parameters if p not in table.columns]
        if missing:
            raise ConfigError(f"the results table has no column {', '.join(missing)}")
        self.parameters = list(parameters)
        metrics = [c for c in table.columns if c not in self.parameters and pd.api.types.is_numeric_dtype(table[c])]
        if not metrics:
            raise ConfigError("the results table has no numeric metric to plot")
        choice = lambda value, options, default: value if value in options else default  # noqa: E731
        self.x = w.Dropdown(options=self.parameters, value=choice(x, self.parameters, self.parameters[0]),
                            description="x")
        self.y = w.Dropdown(options=self.parameters, value=choice(y, self.parameters, self.parameters[-1]),
                            description="y")
        default = "final_accuracy" if "final_accuracy" in metrics else metrics[0]
        self.metric = w.Dropdown(options=metrics, value=choice(metric, metrics, default), description="metric")
        self.plot = w.Image(format="png", layout=w.Layout(max_width="700px"))
        self.message = w.HTML()
        self.rows = w.HTML(html_table(table.to_dict("records"), list(table.columns), empty="no runs"),
                           layout=w.Layout(max_height="300px", overflow="auto"))
        for d in (self.x, self.y, self.metric):
            d.observe(lambda _: self.refresh(), names="value")
        super().__init__([w.HBox([self.x, self.y, self.metric]), self.message, self.plot, self.rows])
        self.refresh()

    @classmethod
    def from_csv(cls, path: str | Path, **kw: Any) -> w.Widget:
        """The dashboard over ``results.csv`` (and its ``parameters.json`` when present), or the error
        panel when they cannot be read."""
        path = Path(path)
        try:
            names = path.with_name("parameters.json")
            if names.exists() and "parameters" not in kw:
                kw["parameters"] = json.loads(names.read_text())
            return cls(pd.read_csv(path), **kw)
        except (OSError, ValueError, ConfigError) as e:
            return error_panel(f"cannot show the sweep results {path}: {e} (run `din-lab sweep ...` first)")

    def pivot(self) -> pd.DataFrame:
        return self.table.pivot_table(index=self.y.value, columns=self.x.value, values=self.metric.value,
                                      aggfunc="mean", dropna=False)

    def refresh(self) -> None:
        if len(self.parameters) > 1 and self.x.value == self.y.value:
            self.message.value = error_html("choose two different parameters for x and y")
            self.plot.layout.display = "none"
            return
        try:
            if len(self.parameters) == 1:  # one parameter: the metric along it
                self.plot.value = line_plot(self.table, x=self.x.value, metric=self.metric.value)
            else:
                self.plot.value = heatmap(self.table, x=self.x.value, y=self.y.value, metric=self.metric.value)
        except ConfigError as e:
            self.message.value = error_html(str(e))
            self.plot.layout.display = "none"
            return
        self.message.value = ""
        self.plot.layout.display = None


def line_plot(table: pd.DataFrame, *, x: str, metric: str) -> bytes:
    """A PNG of ``metric`` (mean per value) along one parameter ``x``."""
    if table[metric].isna().all():
        raise ConfigError(f"the metric {metric!r} has no values")
    means = table.groupby(x)[metric].mean()
    fig, ax = new_figure(figsize=(6, 3.5))
    ax.plot([str(v) for v in means.index], means.to_numpy(dtype=float), marker="o")
    ax.set(xlabel=x, ylabel=metric, title=metric)
    return figure_png(fig)
