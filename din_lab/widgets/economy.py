"""The economy dashboard (issue 18; paper sections 6 and 8): run a task whose evaluators hold
Harberger-taxed licences, then a quadratic-funding round and an economic DPP played by its agents,
and see the licences (holder, price, deposit, tax paid), the public-goods fund's flows, the round's
matches and the vote. It drives the Lab only through ``Lab.run`` and :mod:`din_lab.protocol.economy`
and reads what they return and the public state they read."""

from __future__ import annotations

import html
import logging
from typing import Any

import ipywidgets as w

from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.protocol import economy
from din_lab.protocol.lab import Lab
from din_lab.widgets._render import error_html, html_table

log = logging.getLogger(__name__)


class EconomyDashboard(w.VBox):
    """Buttons "run task", "QF round" and "DPP vote" over one Lab with the economy; tables below."""

    def __init__(self, lab: Lab, *, seed: int = 0) -> None:
        if lab.din.economy is None:
            raise ConfigError("the economy dashboard needs a lab created with ExperimentConfig(economy=True)")
        self.lab, self.seed, self.rounds = lab, seed, 0
        self.run_button = w.Button(description="run task", button_style="primary")
        self.qf_button = w.Button(description="QF round", disabled=True)
        self.dpp_button = w.Button(description="DPP vote", disabled=True)
        self.share = w.BoundedIntText(value=1_000, min=0, max=5_000, description="share (bps)",
                                      layout=w.Layout(width="180px"))
        self.status = w.HTML("<b>ready</b>: run the task first (its evaluators buy licences before they opt in)")
        self.licences = w.HTML()
        self.flows = w.HTML()
        self.qf = w.HTML("<p><i>no QF round yet</i></p>")
        self.dpp = w.HTML("<p><i>no DPP yet</i></p>")
        self.run_button.on_click(lambda _: self._guard(self._run))
        self.qf_button.on_click(lambda _: self._guard(self._qf))
        self.dpp_button.on_click(lambda _: self._guard(self._dpp))
        sections = [w.HTML("<h3>Licences</h3>"), self.licences, w.HTML("<h3>Public-goods fund</h3>"), self.flows,
                    w.HTML("<h3>Quadratic funding</h3>"), self.qf, w.HTML("<h3>DIN Proposal Protocol</h3>"), self.dpp]
        super().__init__([w.HBox([self.run_button, self.qf_button, self.share, self.dpp_button]), self.status,
                          *sections])
        self.refresh()

    @classmethod
    def from_config(cls, config: ExperimentConfig | None = None, **settings: Any) -> w.Widget:
        """The dashboard over a new Lab with the economy, or an error panel when it cannot be set up."""
        try:
            config = config or ExperimentConfig(**{"economy": True, **settings})
            return cls(Lab.create(config))
        except Exception as e:  # shown in the page instead of a traceback
            log.warning("could not create the lab: %s", e)
            return w.HTML(error_html(f"could not set up the task: {type(e).__name__}: {e}"))

    def _guard(self, action: Any) -> None:
        for b in (self.run_button, self.qf_button, self.dpp_button):
            b.disabled = True
        try:
            action()
        except Exception as e:  # the page stays usable
            log.warning("economy dashboard: %s", e)
            self.status.value = error_html(f"{type(e).__name__}: {e}")
        finally:
            ended = self.lab.done
            self.run_button.disabled = ended
            self.qf_button.disabled = self.dpp_button.disabled = not ended
            self.refresh()

    def _run(self) -> None:
        self.status.value = "<b>running the task ...</b>"
        self.lab.run()
        final = len(self.lab.rounds) - 1
        self.status.value = f"<b>task over</b>: final accuracy {self.lab.accuracy(final):.3f}" if final >= 0 \
            else "<b>task over</b>"

    def _qf(self) -> None:
        result = economy.qf_round(self.lab, seed=self.seed + self.rounds, sybil_split=3)
        self.rounds += 1
        rows = [{"project": p.name, "contributors": p.contributors, "contributions": round(p.contributions, 4),
                 "weight": round(p.weight, 4), "match": round(p.match, 4), "paid": round(p.paid, 4)}
                for p in result.projects]
        self.qf.value = (f"<p>round {result.round}: pool {result.pool:.2f} DIN, matched {result.matched:.2f} DIN; "
                         f"refused (no identity): {html.escape(', '.join(result.refused) or 'none')}</p>"
                         + html_table(rows, list(rows[0]) if rows else [], empty="no projects"))
        self.status.value = f"<b>QF round {result.round} finalized</b>: matched {result.matched:.2f} DIN"

    def _dpp(self) -> None:
        vote = economy.dpp_vote(self.lab, value=int(self.share.value), support=0.8, seed=self.seed)
        rows = [{"agent": name, **kinds, "side": ("for" if vote.ballots[name][0] else "against")
                 if name in vote.ballots else "-", "votes": vote.ballots.get(name, (None, 0, 0))[1],
                 "credits spent": vote.ballots.get(name, (None, 0, 0))[2]} for name, kinds in vote.credits.items()]
        self.dpp.value = (f"<p>DPP {vote.proposal} <i>{html.escape(vote.title)}</i>: {vote.votes_for} for, "
                          f"{vote.votes_against} against: <b>{vote.state}</b>; "
                          f"{html.escape(f'{vote.parameter} {vote.before} -> {vote.after}')}</p>"
                          + html_table(rows, list(rows[0]) if rows else [], empty="no agents"))
        self.status.value = f"<b>DPP {vote.proposal} {vote.state}</b>"

    def refresh(self) -> None:
        rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                for r in economy.licence_table(self.lab)]
        self.licences.value = html_table(rows, list(rows[0]) if rows else [], empty="no licences in this network")
        flows = economy.fund_flows(self.lab)
        self.flows.value = html_table([{"flow": k, "DIN": round(v, 4)} for k, v in flows.items()], ["flow", "DIN"],
                                      empty="nothing yet")
