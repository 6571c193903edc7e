"""Results: accuracy per round, scores and rewards per participant, evaluator fees and slashes."""

from __future__ import annotations

import ipywidgets as w

from din_lab.experiment import tabulate
from din_lab.protocol.lab import Lab, StepReport
from din_lab.widgets._render import figure_png, html_table, new_figure


class ResultsView(w.VBox):
    """Plots and tables of the task so far; the participant and evaluator tables once it is over."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.accuracy: list[tuple[int, float]] = []
        self.title = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="1000px"))
        self.table = w.HTML(layout=w.Layout(max_height="360px", overflow="auto"))
        super().__init__([self.title, self.plot, self.table])
        self.refresh()

    def update(self, report: StepReport) -> None:
        self.refresh()

    def refresh(self) -> None:
        lab = self.lab
        self.accuracy = [(r, lab.accuracy(r)) for r, s in enumerate(lab.rounds) if s.global_model is not None]
        participants = evaluators = []
        if lab.done:
            result = tabulate(lab, seconds=0.0)
            participants = result.participants.sort_values("reward", ascending=False).to_dict("records")
            evaluators = result.evaluators.to_dict("records")
        self.title.value = ("<b>Results</b> &mdash; " + (f"final accuracy {self.accuracy[-1][1]:.3f}" if self.accuracy
                                                         else "no global model yet")
                            + ("" if lab.done else " (scores and rewards once the task is over)"))
        self.plot.value = self._plot(participants, evaluators)
        self.table.value = (html_table(participants, ("name", "behaviour", "samples", "score", "reward", "why"),
                                       empty="rewards are settled in the last phases")
                            + html_table(evaluators, ("name", "behaviour", "fees", "slashed_amount", "stake_after"),
                                         empty=""))

    def _plot(self, participants: list[dict], evaluators: list[dict]) -> bytes:
        fig, axes = new_figure(3, figsize=(13, 3.3), gridspec_kw={"width_ratios": [1, 2, 1]})
        ax = axes[0]
        if self.accuracy:
            ax.plot([a[0] for a in self.accuracy], [a[1] for a in self.accuracy], marker="o")
            ax.set_xticks([a[0] for a in self.accuracy])
        ax.set(title="global model accuracy", xlabel="round", ylim=(0, 1))
        ax = axes[1]
        if participants:
            names = [p["name"].replace("participant ", "p") for p in participants]
            colours = ["tab:blue" if p["behaviour"] == "honest" else "tab:red" for p in participants]
            ax.bar(names, [p["reward"] for p in participants], color=colours)
            ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set(title="reward per participant (red: malicious)", ylabel="DIN")
        ax = axes[2]
        if evaluators:
            names = [e["name"].replace("evaluator ", "E") for e in evaluators]
            ax.bar(names, [e["fees"] for e in evaluators], color="tab:green", label="fees")
            ax.bar(names, [-e["slashed_amount"] for e in evaluators], color="tab:red", label="slashed")
            ax.axhline(0, color="black", lw=0.5)
            ax.legend(fontsize=7)
        ax.set(title="evaluator fees and slashes", ylabel="DIN")
        return figure_png(fig)
