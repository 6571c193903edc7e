"""The network view: the owner, the participants in this round's subgroups, the evaluators on each
subgroup's committee, who was slashed and who was paid, drawn as one picture with a legend (the
round in its title, participants labelled ``P3`` and evaluators ``E2``, slashed evaluators red with
a cross)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as w
from matplotlib.lines import Line2D
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
        self.plot = w.Image(format="png", layout=w.Layout(max_width="1000px"))
        self.plot.add_class("din-network-plot")
        super().__init__([self.title, self.plot])
        self.refresh()

    def update(self, report: StepReport) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.state = s = network_state(self.lab)
        slashed = html.escape(", ".join(sorted(s.slashed)) or "none")
        self.title.value = (f"<b>Network: {html.escape(self._where())}</b> &mdash; {len(self.lab.participants)} "
                            f"participants, {len(self.lab.evaluators)} evaluators; slashed: {slashed}")
        self.plot.value = self._draw()

    def _where(self) -> str:
        s, lab = self.state, self.lab
        if s.round is None:
            return "before the first round"
        return f"round {s.round} of {lab.config.rounds}" + (" (task over)" if lab.done else "")

    def _draw(self) -> bytes:
        s, lab = self.state, self.lab
        fig, ax = new_figure(figsize=(11, 4.4))
        ax.set_axis_off()
        evaluators = [e.name for e in lab.evaluators]
        ex = {name: (i + 0.5) / len(evaluators) for i, name in enumerate(evaluators)}
        groups = sorted(s.subgroups) or [0]
        gx = {g: (i + 0.5) / len(groups) for i, g in enumerate(groups)}
        width = 1 / len(groups)
        members_total = sum(len(m) for m in s.subgroups.values())
        labelled = members_total <= 40  # P3 under every dot while they fit
        amounts = members_total <= 16  # and what each was paid
        participant_pay = [s.paid.get(n, 0.0) for m in s.subgroups.values() for n in m]
        most = max(participant_pay, default=0.0) or 1.0
        # the owner, who posts the task and the models
        ax.scatter([0.5], [0.9], s=420, c=OWNER, zorder=3)
        ax.annotate("model owner", (0.5, 0.9), xytext=(14, -4), textcoords="offset points", fontsize=9)
        # committee links first (under the markers), then the subgroups and their participants
        for g in groups:
            committee = [n for n in s.committees.get(g, ()) if n in ex]
            for k, name in enumerate(sorted(committee, key=ex.get)):  # fanned out along the box's top
                end = gx[g] + 0.3 * width * ((k + 0.5) / len(committee) * 2 - 1)
                ax.plot([ex[name], end], [0.6, 0.2], color=LINK, lw=1.1, zorder=1)
        for g, members in sorted(s.subgroups.items()):
            slot = 0.84 * width * 10 / len(members)  # inches per participant (the axes are ~10 in wide)
            stagger = slot < 0.3  # labels in two rows when tight
            biggest = min(300.0, (0.8 * 72 * slot) ** 2)  # dots never overlap (sizes in points squared)
            smallest = min(50.0, biggest)
            ax.add_patch(Rectangle((gx[g] - 0.46 * width, 0.0), 0.92 * width, 0.2, fill=True, fc="#f6f8fa",
                                   ec="#57606a", lw=1, zorder=0))
            for k, name in enumerate(members):
                x = gx[g] - 0.42 * width + 0.84 * width * (k + 0.5) / len(members)
                paid = s.paid.get(name, 0.0)
                ax.scatter([x], [0.12], s=smallest + (biggest - smallest) * paid / most, c=PAID if paid else UNPAID,
                           zorder=3, edgecolors="white", linewidths=0.5)
                if labelled:
                    ax.text(x, 0.02 if stagger and k % 2 else 0.055, _short(name), ha="center", va="center",
                            fontsize=7 if members_total <= 20 else 6)
                if amounts and paid:
                    ax.text(x, 0.178, f"{paid:.3g}", ha="center", va="center", fontsize=6.5, color=PAID)
            committee = ", ".join(_short(n) for n in s.committees.get(g, ()))
            ax.text(gx[g], -0.05, f"subgroup {g}: {len(members)} participants" + (f"\ncommittee {committee}"
                                                                                 if committee else ""),
                    ha="center", va="top", fontsize=8)
        # the evaluators: blue squares, red with a cross when slashed; their fees above them
        for name, x in ex.items():
            slashed = name in s.slashed
            ax.scatter([x], [0.6], s=300, c=SLASHED if slashed else EVALUATOR, marker="s", zorder=3)
            if slashed:
                ax.scatter([x], [0.6], s=120, c="white", marker="x", linewidths=2.2, zorder=4)
            ax.text(x, 0.74, _short(name), ha="center", va="bottom", fontsize=9, fontweight="bold")
            note = "slashed" if slashed else (f"paid {s.paid[name]:.3g} DIN" if s.paid.get(name) else "")
            if note:
                ax.text(x, 0.665, note, ha="center", va="bottom", fontsize=8, color=SLASHED if slashed else PAID,
                        fontweight="bold" if slashed else "normal")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.18, 0.96)
        if s.subgroups:
            who = f"{members_total} participants in {len(s.subgroups)} subgroups"
        else:
            who = f"{len(lab.participants)} participants, not yet in subgroups"
            ax.text(0.5, 0.1, "the round's subgroups and their committees appear once the owner assigns them",
                    ha="center", va="center", fontsize=9, color=UNPAID, style="italic")
        ax.set_title(f"DIN network, {self._where()}: {who}, {len(evaluators)} evaluators ({len(s.slashed)} slashed)",
                     fontsize=11, loc="left")
        handles, labels = _legend()
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=6, fontsize=8,
                  frameon=False, handlelength=1.6, columnspacing=1.4)
        return figure_png(fig)


OWNER, EVALUATOR, SLASHED, PAID, UNPAID, LINK = "#8250df", "#0969da", "#cf222e", "#2da44e", "#8c959f", "#afb8c1"


def _short(name: str) -> str:
    """``participant 3`` -> ``P3``, ``evaluator 2`` -> ``E2`` (other names unchanged)."""
    kind, _, number = name.rpartition(" ")
    return f"{kind[:1].upper()}{number}" if kind in ("participant", "evaluator") and number.isdigit() else name


def _legend() -> tuple[list, list[str]]:
    dot = dict(marker="o", linestyle="none", markersize=8)
    square = dict(marker="s", linestyle="none", markersize=10)
    cross = Line2D([], [], color="white", marker="x", linestyle="none", markersize=6, markeredgewidth=2)
    items = [(Line2D([], [], color=OWNER, **dot), "model owner"),
             (Line2D([], [], color=EVALUATOR, **square), "evaluator"),
             ((Line2D([], [], color=SLASHED, **square), cross), "evaluator, slashed"),
             (Line2D([], [], color=PAID, **dot), "participant, paid (size: DIN)"),
             (Line2D([], [], color=UNPAID, **dot), "participant, not paid (yet)"),
             (Line2D([], [], color=LINK, lw=1.5), "committee link")]
    return [h for h, _ in items], [label for _, label in items]
