"""The round stepper: "next phase", "run round" and "run task" buttons driving :meth:`Lab.step`,
with the paper's phases on a timeline and the one that runs next highlighted.

A step that fails (a :class:`~din_lab.errors.DinLabError` or any other exception) is shown in the
widget, the stepping buttons are disabled (the Lab keeps its chain state for inspection and
refuses to step again) and every other widget stays usable.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

import ipywidgets as w

from din_lab.protocol.lab import FINAL_PHASES, ROUND_PHASES, Lab, StepReport
from din_lab.widgets._render import PHASE_COLOURS, error_html

log = logging.getLogger(__name__)

PHASE_HELP = {
    "assign": "the round's seed draws subgroups and committees", "train": "participants train locally",
    "submit": "updates to IPFS, CIDs on chain", "aggregate": "committees sum their subgroup's updates",
    "commit": "members commit to the result's CID", "reveal": "members reveal their votes",
    "finalize": "majority accepted, minority slashed", "publish": "the owner publishes the global model",
    "score": "the owner publishes the evaluation set; committees evaluate",
    "reward": "scores on chain, the deposit is split",
    "release": "committees release the final model's keys; the owner rebuilds it",
    "claim": "everyone pulls what it is owed",
}


class RoundStepper(w.VBox):
    """Buttons and a phase timeline over ``lab``; :meth:`on_step` registers a callback run after
    every step with its :class:`~din_lab.protocol.lab.StepReport`."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.reports: list[StepReport] = []
        self.error: str | None = None  # the Lab stopped on it: no more stepping
        self.view_error: str | None = None  # a view failed to refresh: shown, stepping goes on
        self._callbacks: list[Callable[[StepReport], None]] = []
        self.next_button = w.Button(description="next phase", button_style="primary", icon="step-forward")
        self.round_button = w.Button(description="run round", icon="forward")
        self.task_button = w.Button(description="run task", icon="fast-forward")
        self.next_button.on_click(lambda _: self.next_phase())
        self.round_button.on_click(lambda _: self.run_round())
        self.task_button.on_click(lambda _: self.run_task())
        self.timeline = w.HTML()
        self.status = w.HTML()
        self.progress = w.IntProgress(min=0, max=len(ROUND_PHASES) * lab.config.rounds + len(FINAL_PHASES),
                                      description="phases", layout=w.Layout(width="420px"))
        super().__init__([w.HBox([self.next_button, self.round_button, self.task_button, self.progress]),
                          self.timeline, self.status])
        self.refresh()

    def on_step(self, callback: Callable[[StepReport], None]) -> None:
        self._callbacks.append(callback)

    # -- driving ------------------------------------------------------------------------------

    def next_phase(self) -> StepReport | None:
        """Run one phase (nothing when the task is over or the lab stopped on an error)."""
        if self.lab.done or self.error is not None:
            return None
        try:
            report = self.lab.step()
        except Exception as e:  # shown in the page; the widget stays usable
            log.warning("step failed: %s", e)
            self.error = f"{type(e).__name__}: {e}"
            self.refresh()
            return None
        self.reports.append(report)
        self.view_error = None
        for callback in self._callbacks:
            try:
                callback(report)
            except Exception as e:  # a broken view must not stop the stepper (the Lab is fine)
                log.exception("a widget failed to refresh")
                self.view_error = f"a view failed to refresh: {type(e).__name__}: {e}"
        self.refresh()
        return report

    def run_round(self) -> list[StepReport]:
        """Run the phases left in the current round (after the last round: the rest of the task)."""
        if self.lab.next_phase is None:
            return []
        current = self.lab.next_phase[1]
        out = []
        while self.lab.next_phase is not None and self.lab.next_phase[1] == current and self.error is None:
            report = self.next_phase()
            if report is None:
                break
            out.append(report)
        return out

    def run_task(self) -> list[StepReport]:
        out = []
        while not self.lab.done and self.error is None:
            report = self.next_phase()
            if report is None:
                break
            out.append(report)
        return out

    # -- drawing ------------------------------------------------------------------------------

    def refresh(self) -> None:
        nxt = self.lab.next_phase
        stopped = self.lab.done or self.error is not None
        for b in (self.next_button, self.round_button, self.task_button):
            b.disabled = stopped
        self.progress.value = len(self.reports)
        boxes = []
        order = (*ROUND_PHASES, *FINAL_PHASES)
        upto = len(order) if nxt is None else order.index(nxt[0])
        for i, phase in enumerate(order):
            state = "current" if i == upto else "done" if i < upto else "todo"
            colour = PHASE_COLOURS[state]
            text = "white" if state != "todo" else "#24292f"
            boxes.append(f"<span class='din-phase din-phase-{state}' title='{html.escape(PHASE_HELP[phase])}' "
                         f"style='display:inline-block;padding:3px 8px;margin:2px;border-radius:10px;"
                         f"background:{colour};color:{text};font-size:12px'>{phase}</span>")
        where = ("task over" if nxt is None else
                 f"round {nxt[1]} (rounds 0 to {self.lab.config.rounds - 1})" if nxt[1] is not None
                 else "after the last round")
        self.timeline.value = f"<div class='din-timeline'><b>{where}</b>&nbsp; {''.join(boxes)}</div>"
        if self.error is not None:
            self.status.value = error_html(self.error + " (the lab stopped; its chain state is kept: start a new "
                                           "Lab to run again)")
        elif self.reports:
            last = self.reports[-1]
            txs = sum(1 for e in last.events if e.tx_hash)
            self.status.value = (f"<span class='din-status'>ran <b>{last.phase}</b>"
                                 f"{'' if last.round is None else f' of round {last.round}'}: {txs} transactions, "
                                 f"{len(last.events)} events, {last.seconds:.2f} s</span>")
        else:
            self.status.value = "<span class='din-status'>set up: contracts deployed, evaluators bonded to the task</span>"
        if self.view_error is not None:
            self.status.value += error_html(self.view_error)

    @property
    def current_phase(self) -> str | None:
        """The phase highlighted on the timeline: the one :meth:`next_phase` runs."""
        return None if self.lab.next_phase is None else self.lab.next_phase[0]
