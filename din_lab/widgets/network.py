"""The network view: the owner, the participants in this round's subgroups, the evaluators on each
subgroup's committee, who was slashed and who was paid, drawn as a graph."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as w
from matplotlib.patches import Rectangle

from din_lab.protocol.lab import Lab, StepReport
from din_lab.widgets._render import figure_png, new_figure


@dataclass(frozen=True)
class NetworkState:
    """What the view draws for one round (all names as the Lab gives them)."""

    round: int | None
    subgroups: dict[int, tuple[str, ...]]
    committees: dict[int, tuple[str, ...]]
    slashed: frozenset[str]
    paid: dict[str, float]  # what each actor claimed (fees, rewards), or its fees credited before it claims


def network_state(lab: Lab) -> NetworkState:
    """The latest round's assignment and the money that moved so far, from the Lab's state and events."""
    r = len(lab.rounds) - 1 if lab.rounds else None
    subgroups, committees = {}, {}
    if r is not None:
        state = lab.rounds[r]
        subgroups = {g: tuple(lab.name_of(a) for a in m) for g, m in state.members.items()}
        committees = {g: tuple(lab.name_of(a) for a in c) for g, c in state.committees.items()}
    slashed = frozenset(e.actor for e in lab.events if e.action == "slashed")
    # fees are credited when earned and received at claim: count each actor's claims once it has
    # claimed, its credited fees before that (never both)
    claimed: dict[str, float] = {}
    credited: dict[str, float] = {}
    for e in lab.events:
        if e.amount and e.action in ("claimed", "fee paid"):
            book = claimed if e.action == "claimed" else credited
            book[e.actor] = book.get(e.actor, 0.0) + e.amount
    paid = {**credited, **claimed}
    return NetworkState(round=r, subgroups=subgroups, committees=committees, slashed=slashed, paid=paid)


class NetworkView(w.VBox):
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.state = network_state(lab)
        self.title = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="900px"))
        super().__init__([self.title, self.plot])
        self.refresh()

    def update(self, report: StepReport) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.state = s = network_state(self.lab)
        where = "before the first round" if s.round is None else f"round {s.round}"
        slashed = html.escape(", ".join(sorted(s.slashed)) or "none")
        self.title.value = (f"<b>Network: {where}</b> &mdash; {len(self.lab.participants)} participants, "
                            f"{len(self.lab.evaluators)} evaluators; slashed: {slashed}")
        self.plot.value = self._draw()

    def _draw(self) -> bytes:
        s, lab = self.state, self.lab
        fig, ax = new_figure(figsize=(11, 4.2))
        ax.set_axis_off()
        evaluators = [e.name for e in lab.evaluators]
        ex = {name: (i + 0.5) / len(evaluators) for i, name in enumerate(evaluators)}
        groups = sorted(s.subgroups) or [0]
        gx = {g: (i + 0.5) / len(groups) for i, g in enumerate(groups)}
        ax.scatter([0.5], [1.0], s=500, c="#8250df", zorder=3)
        ax.annotate("model owner", (0.5, 1.0), xytext=(0, 14), textcoords="offset points", ha="center", fontsize=9)
        for g, members in s.subgroups.items():
            for name in s.committees.get(g, ()):
                ax.plot([ex[name], gx[g]], [0.62, 0.18], color="#afb8c1", lw=1, zorder=1)
            ax.add_patch(Rectangle((gx[g] - 0.45 / len(groups), 0.02), 0.9 / len(groups), 0.16, fill=False,
                                       ec="#57606a", lw=1))
            for k, name in enumerate(members):
                x = gx[g] - 0.4 / len(groups) + 0.8 / len(groups) * (k + 0.5) / len(members)
                paid = s.paid.get(name, 0.0)
                ax.scatter([x], [0.1], s=60 + 4 * paid, c="#2da44e" if paid else "#57606a", zorder=3)
            ax.text(gx[g], -0.04, f"subgroup {g} ({len(members)})", ha="center", fontsize=8)
        for name, x in ex.items():
            colour = "#cf222e" if name in s.slashed else "#0969da"
            ax.scatter([x], [0.62], s=260 + 3 * s.paid.get(name, 0.0), c=colour, zorder=3, marker="s")
            ax.text(x, 0.7, name.replace("evaluator ", "E"), ha="center", fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.1, 1.12)
        ax.set_title("owner, evaluators (squares: red = slashed) and their committees' subgroups "
                     "(dots: green = paid, size = tokens)", fontsize=9)
        return figure_png(fig)
