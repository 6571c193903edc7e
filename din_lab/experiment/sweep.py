"""Parameter sweeps over a papermill-parameterized notebook: ``din-lab sweep NOTEBOOK -p NAME
VALUES...`` runs the grid of every combination, ``workers`` notebooks at a time (each in its own
papermill process and kernel), and collects every run's results into one tidy table
(``results.csv``; a heatmap ``heatmap.png`` when two parameters vary).

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
import subprocess
import sys
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


def _first_error(path: Path) -> str | None:
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def _clear(out: Path) -> None:
    """Remove what an earlier sweep left in ``out`` (its table, heatmap and executed runs)."""
    for stale in [out / "results.csv", out / "heatmap.png", out / "parameters.json", *out.glob("run-*.ipynb")]:
        stale.unlink(missing_ok=True)


def run_sweep(notebook: str | Path, *, grid: Mapping[str, Sequence[Any]], out: str | Path, workers: int = 2,
              fixed: Mapping[str, Any] | None = None, progress: bool = True,
              kernel_name: str = "python3", timeout: float = 3600.0) -> pd.DataFrame:
    """Run ``notebook`` once per combination of ``grid`` (plus the ``fixed`` parameters), at most
    ``workers`` at a time, each in its own papermill process (papermill changes the working
    directory of the process it runs in, so runs never share one); returns the tidy table (one
    row per run: its parameters, then its results, then ``seconds``) and writes it as
    ``results.csv``, with ``parameters.json`` (the swept names), each executed notebook and, when
    two parameters vary, ``heatmap.png`` to ``out``. A failed run cancels the runs not yet
    started and raises :class:`SweepError` naming its parameters; no table is written then."""
    import papermill

    notebook = Path(notebook).resolve()
    if not notebook.exists():
        raise ConfigError(f"notebook {notebook} does not exist")
    if not grid or any(not list(v) for v in grid.values()):
        raise ConfigError("a sweep needs at least one parameter with at least one value (-p NAME VALUES...)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    fixed = dict(fixed or {})
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ConfigError(f"{', '.join(both)} is both swept and fixed")
    known = papermill.inspect_notebook(str(notebook))
    if not known:
        raise ConfigError(f"{notebook.name} has no cell tagged 'parameters': papermill cannot set anything")
    unknown = sorted((set(grid) | set(fixed)) - set(known))
    if unknown:
        raise ConfigError(f"{notebook.name} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known)}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(list(grid[n]) for n in names))]

    def one(i: int, params: dict[str, Any]) -> dict[str, Any]:
        target = out / f"run-{i:03d}.ipynb"
        which = ", ".join(f"{k}={v!r}" for k, v in params.items())
        started = time.perf_counter()
        command = [sys.executable, "-m", "papermill", str(notebook), str(target), "-y",
                   json.dumps({**fixed, **params}), "-k", kernel_name, "--cwd", str(out), "--no-progress-bar",
                   "--no-log-output"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise SweepError(f"run {i} ({which}) did not finish within {timeout:g} s") from e
        if done.returncode != 0:
            why = _first_error(target) or (done.stderr.strip().splitlines() or ["papermill failed"])[-1]
            raise SweepError(f"run {i} ({which}) failed: {why}")
        try:
            results = _results_of(target)
        except SweepError as e:
            raise SweepError(f"run {i} ({which}): {e}") from e
        return {**params, **results, "seconds": round(time.perf_counter() - started, 2)}

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
                f.cancel()  # the runs not started yet; those running finish on their own
            raise
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    (out / "parameters.json").write_text(json.dumps(names))
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
    """A PNG heatmap of ``metric`` (mean over repeated cells) over parameters ``x`` and ``y``;
    :class:`ConfigError` when they are not three different columns or the metric has no value."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    if len({x, y, metric}) != 3 or not {x, y, metric} <= set(table.columns):
        raise ConfigError(f"a heatmap needs two different parameters and another column as the metric, got "
                          f"x={x!r}, y={y!r}, metric={metric!r}")
    if not pd.api.types.is_numeric_dtype(table[metric]) or table[metric].isna().all():
        raise ConfigError(f"the metric {metric!r} has no numeric values")
    grid = table.pivot_table(index=y, columns=x, values=metric, aggfunc="mean", dropna=False)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index])
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.3g}" if v == v else "n/a", ha="center", va="center", color="white", fontsize=9)
    ax.set(xlabel=x, ylabel=y, title=metric)
    fig.colorbar(im, ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()
