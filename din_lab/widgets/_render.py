"""Shared rendering helpers: matplotlib figures as PNG bytes (for ``ipywidgets.Image``, which
renders in JupyterLab and Voila and can be inspected without a front end) and small HTML tables."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

PHASE_COLOURS = {"current": "#1f6feb", "done": "#8c959f", "todo": "#d0d7de"}


def new_figure(ncols: int = 1, *, figsize: tuple[float, float], **kw: Any) -> tuple[Figure, Any]:
    """A figure outside pyplot (no backend chosen, a notebook's inline plots untouched) and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols, **kw)


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, empty: str, limit: int = 200) -> str:
    """An escaped HTML table of ``rows`` (dicts) in ``columns`` order, at most ``limit`` rows."""
    if not rows:
        return f"<p><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in list(rows)[:limit]:
        cells = "".join(f"<td style='padding:2px 8px'>{html.escape(_fmt(row.get(c)))}</td>" for c in columns)
        body.append(f"<tr>{cells}</tr>")
    more = f"<p><i>{len(rows) - limit} more rows not shown</i></p>" if len(rows) > limit else ""
    return (f"<table style='border-collapse:collapse;font-size:12px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{more}")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def error_html(message: str) -> str:
    return (f"<div style='color:#cf222e;border:1px solid #cf222e;padding:6px;border-radius:4px'>"
            f"<b>error:</b> {html.escape(message)}</div>")
