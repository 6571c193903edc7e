"""The ledger: the current round's transactions (actor, function, gas, block, CID) and every
account's token balance and evaluator stake over time, one snapshot per step."""

from __future__ import annotations

import ipywidgets as w

from din_lab.protocol.lab import Lab, LabEvent, StepReport
from din_lab.widgets._render import figure_png, html_table, new_figure

COLUMNS = ("phase", "round", "actor", "function", "gas", "block", "cid", "amount")


def _row(e: LabEvent) -> dict:
    return {"phase": e.phase, "round": e.round, "actor": e.actor, "function": e.action, "gas": e.gas,
            "block": e.block, "cid": e.cid or "", "amount": e.amount}


class Ledger(w.VBox):
    """Transactions of the round being run (``rows``), and balances and stakes over time
    (``history``: one ``(label, balances, stakes)`` per refresh)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rows: list[dict] = []
        self.history: list[tuple[str, dict[str, float], dict[str, float]]] = []
        self.title = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.plot = w.Image(format="png", layout=w.Layout(max_width="900px"))
        super().__init__([self.title, self.table, self.plot])
        self.refresh()

    def transactions(self, round_: int | None) -> list[dict]:
        """Every transaction of round ``round_``; ``None``: those after the last round, or the
        set-up's before any phase has run."""
        txs = [e for e in self.lab.events if e.tx_hash and e.round == round_]
        if round_ is None:
            final = [e for e in txs if e.phase != "setup"]
            txs = final or txs
        return [_row(e) for e in txs]

    def update(self, report: StepReport) -> None:
        self.refresh(report.round, label=f"{report.phase}" + ("" if report.round is None else f" r{report.round}"))

    def refresh(self, round_: int | None = None, *, label: str = "set-up") -> None:
        self.rows = self.transactions(round_)
        gas = sum(r["gas"] for r in self.rows)
        where = (f"round {round_}" if round_ is not None else
                 "after the last round" if any(r["phase"] != "setup" for r in self.rows) else "set-up")
        self.title.value = (f"<b>Ledger: {where}</b> &mdash; {len(self.rows)} transactions, {gas:,} gas "
                            f"<span class='din-ledger-count' data-count='{len(self.rows)}'></span>")
        self.table.value = html_table(self.rows, COLUMNS, empty="no transactions yet")
        self.history.append((label, self.lab.balances(), self.lab.stakes()))
        self.plot.value = self._plot()

    def _plot(self) -> bytes:
        fig, (ax1, ax2) = new_figure(2, figsize=(11, 3.2))
        labels = [h[0] for h in self.history]
        x = range(len(self.history))
        names = list(self.history[-1][1])
        for name in names:
            if name.startswith("participant") and len(names) > 12:
                continue  # many participants: owner, fund and evaluators only
            ax1.plot(x, [h[1].get(name, 0.0) for h in self.history], marker=".", label=name)
        ax1.set(title="token balances", ylabel="DIN")
        for name in self.history[-1][2]:
            ax2.plot(x, [h[2].get(name, 0.0) for h in self.history], marker=".", label=name)
        ax2.set(title="evaluator bonds (in this task)", ylabel="DIN")
        for ax in (ax1, ax2):
            ax.set_xticks(list(x))
            ax.set_xticklabels(labels, rotation=60, fontsize=7)
            ax.legend(fontsize=6, loc="best")
        return figure_png(fig)
