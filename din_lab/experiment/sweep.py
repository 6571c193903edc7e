"""Parameter sweeps over a papermill-parameterized notebook: ``din-lab sweep NOTEBOOK -p NAME
VALUES...`` runs the grid of every combination, ``workers`` notebooks at a time (each in its own
kernel), and collects every run's results into one tidy table (``results.csv``; a heatmap
``heatmap.png`` when two parameters vary).

A notebook takes part by publishing its results with :func:`publish_results` (a display output of
type :data:`RESULTS_MIME` that papermill keeps in the executed notebook): the notebook writes no
file, and the sweep reads each executed copy. Parameter names are checked against the notebook's
``parameters`` cell before anything runs; a value the notebook refuses (wrong type, out of range)
fails that run at the cell after the parameters with the notebook's message, which names it.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from din_lab.errors import ConfigError, DinLabError

log = logging.getLogger(__name__)

RESULTS_MIME = "application/vnd.din-lab.results+json"

__all__ = ["RESULTS_MIME", "SweepError", "check_parameter", "heatmap", "parse_value", "publish_results", "run_sweep"]


class SweepError(DinLabError):
    """A run of the sweep failed; the message names its parameters and the notebook's error."""


def publish_results(row: Mapping[str, Any]) -> None:
    """Inside a notebook: publish one run's results (JSON-ready numbers and strings) for a sweep,
    shown as a table to a reader."""
    from IPython.display import display

    clean = json.loads(json.dumps(dict(row)))
    display({RESULTS_MIME: clean, "text/plain": pd.Series(clean, name="results").to_string()}, raw=True)


def check_parameter(name: str, value: Any, *, kind: type | tuple[type, ...], low: float | None = None,
                    high: float | None = None) -> Any:
    """Inside a notebook, right after its parameters: :class:`ConfigError` naming ``name`` unless
    ``value`` is of ``kind`` (``bool`` is never a number) and within ``[low, high]``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ConfigError(f"parameter {name}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r} "
                          f"({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"parameter {name}: {value!r} is outside [{low}, {high}]")
    return value


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _results_of(path: Path) -> dict[str, Any]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if RESULTS_MIME in data:
                return dict(data[RESULTS_MIME])
    raise SweepError(f"{path.name} published no results (call din_lab.experiment.publish_results in the notebook)")


def _first_error(path: Path) -> str:
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return "the notebook did not run"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return "the notebook failed"


def run_sweep(notebook: str | Path, *, grid: Mapping[str, Sequence[Any]], out: str | Path, workers: int = 2,
              fixed: Mapping[str, Any] | None = None, progress: bool = True,
              kernel_name: str = "python3") -> pd.DataFrame:
    """Run ``notebook`` once per combination of ``grid`` (plus the ``fixed`` parameters), at most
    ``workers`` at a time; returns the tidy table (one row per run: its parameters, then its
    results, then ``seconds``) and writes it, each executed notebook and the heatmap to ``out``."""
    import papermill

    notebook = Path(notebook)
    if not notebook.exists():
        raise ConfigError(f"notebook {notebook} does not exist")
    if not grid or any(not list(v) for v in grid.values()):
        raise ConfigError("a sweep needs at least one parameter with at least one value (-p NAME VALUES...)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    fixed = dict(fixed or {})
    known = papermill.inspect_notebook(str(notebook))
    if not known:
        raise ConfigError(f"{notebook.name} has no cell tagged 'parameters': papermill cannot set anything")
    unknown = sorted((set(grid) | set(fixed)) - set(known))
    if unknown:
        raise ConfigError(f"{notebook.name} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(list(grid[n]) for n in names))]

    def one(i: int, params: dict[str, Any]) -> dict[str, Any]:
        target = out / f"run-{i:03d}.ipynb"
        started = time.perf_counter()
        try:
            papermill.execute_notebook(str(notebook), str(target), parameters={**fixed, **params}, cwd=str(out),
                                       progress_bar=False, kernel_name=kernel_name, log_output=False)
        except Exception as e:  # papermill's execution error carries the cell's exception
            raise SweepError(f"run {i} ({', '.join(f'{k}={v!r}' for k, v in params.items())}) failed: "
                             f"{_first_error(target)}") from e
        return {**params, **_results_of(target), "seconds": round(time.perf_counter() - started, 2)}

    rows: dict[int, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(combos), desc=f"sweep {notebook.stem}", unit="run", disable=not progress) as bar:
        futures = {pool.submit(one, i, p): i for i, p in enumerate(combos)}
        try:
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    table.to_csv(out / "results.csv", index=False)
    if len(names) == 2:
        numeric = [c for c in table.columns if c not in names and c != "seconds"
                   and pd.api.types.is_numeric_dtype(table[c])]
        metric = "final_accuracy" if "final_accuracy" in numeric else (numeric[0] if numeric else None)
        if metric is not None:
            (out / "heatmap.png").write_bytes(heatmap(table, x=names[0], y=names[1], metric=metric))
    log.info("sweep of %s: %d runs -> %s", notebook.name, len(table), out)
    return table


def heatmap(table: pd.DataFrame, *, x: str, y: str, metric: str) -> bytes:
    """A PNG heatmap of ``metric`` (mean over repeated cells) over parameters ``x`` and ``y``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = table.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(6, 4))
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index])
    for (i, j), v in np.ndenumerate(values):
        if v == v:
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="white", fontsize=9)
    ax.set(xlabel=x, ylabel=y, title=metric)
    fig.colorbar(im, ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
