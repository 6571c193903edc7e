"""din_lab.widgets: ipywidgets views over a Lab's events and state (DESIGN.md section 3). A widget
never talks to the chain itself: it reads the Lab's event stream and its public state, and drives
it only through :meth:`~din_lab.protocol.lab.Lab.step`.

- :class:`RoundStepper` ("next phase", "run round", "run task"; the paper's phases on a timeline);
- :class:`NetworkView` (owner, subgroups, committees, slashed and paid);
- :class:`Ledger` (the round's transactions; balances and stakes over time);
- :class:`IpfsBrowser` (every recorded CID, what it holds, its size, re-hashed to its CID);
- :class:`ResultsView` (accuracy, rewards, fees and slashes);
- dashboards for the Voila apps: :class:`RoundExplorer`, :class:`RewardsDashboard`,
  :class:`ExperimentDashboard`, :class:`EconomyDashboard` (licences, the public-goods fund, QF rounds, DPPs).

Images are PNGs in ``ipywidgets.Image`` and tables HTML, so every view can be checked without a
front end (its state after a driven step) and renders the same in JupyterLab and Voila.
"""

from din_lab.widgets.dashboards import ExperimentDashboard, RewardsDashboard, RoundExplorer, error_panel
from din_lab.widgets.economy import EconomyDashboard
from din_lab.widgets.ipfs import IpfsBrowser
from din_lab.widgets.ledger import Ledger
from din_lab.widgets.network import NetworkView, network_state
from din_lab.widgets.results import ResultsView
from din_lab.widgets.stepper import RoundStepper

__all__ = ["EconomyDashboard", "ExperimentDashboard", "IpfsBrowser", "Ledger", "NetworkView", "ResultsView", "RewardsDashboard",
           "RoundExplorer", "RoundStepper", "error_panel", "network_state"]
