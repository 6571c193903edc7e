"""Encrypted evaluation on worker processes (:class:`EvaluationPool`): an evaluator uses every core
of its machine.

TenSEAL holds Python's GIL through each operation, so threads do not overlap; processes do. Each
worker loads the public context and the encrypted test set once (from their bytes: never the
secret key, which :func:`~din_lab.he.context.public_context_bytes` refuses to serialize), then
evaluates models sent to it. A logistic regression's outputs are independent per class, so its
classes are split between the workers; a deeper model (the square MLP) is evaluated whole by one
worker, several models side by side.

Determinism is kept: a worker computes each output column with exactly the operations, in the
order, that :func:`~din_lab.he.evaluation.evaluate` uses in one process, so the pool's outputs
are byte-identical to it (``tests/test_he.py``), and committees still agree by digest.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import tenseal as ts

from din_lab.errors import ConfigError
from din_lab.he.ciphertexts import EncryptedTable
from din_lab.he.context import load_public_context, public_context_bytes
from din_lab.he.evaluation import HEModel, Linear, Square, check_model, evaluate
from din_lab.he.params import HEError, HEParams

__all__ = ["EvaluationPool"]

MAX_WORKERS = 64
_FRAME = struct.Struct(">Q")

_Layers = tuple[tuple[str, Any, Any], ...]


class _WorkerStopped(HEError):
    """A worker process ended or its pipe broke."""


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("the other end closed the pipe")
    (n,) = _FRAME.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the other end closed the pipe mid-message")
    return pickle.loads(data)  # noqa: S301 - only between this process and the workers it started


def _evaluate(layers: _Layers, *, test_set: EncryptedTable, context: ts.Context) -> list[list[bytes]]:
    model = HEModel(layers=tuple(Linear(weight=w, bias=b) if kind == "linear" else Square() for kind, w, b in layers))
    out = evaluate(model, test_set, context=context)
    return [[ct.serialize() for ct in row] for row in out.cells]


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A worker's loop (``python -m din_lab.he._worker``): the public context, the test set and their
    parameters first, then one list of models at a time, each answered with its output
    ciphertexts' bytes or the error it raised."""
    context_bytes, table_bytes, params = _receive(stdin)
    recorded = HEParams.from_json(params)
    context = load_public_context(context_bytes, params=recorded)
    test_set = EncryptedTable.from_bytes(table_bytes, context=context, kind="test-set", params=recorded)
    _send(stdout, ("ready", None))
    while True:
        try:
            jobs = _receive(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", [_evaluate(job, test_set=test_set, context=context) for job in jobs]))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it typed
            _send(stdout, ("error", HEError(f"encrypted evaluation failed in a worker: {type(e).__name__}: {e}")))


def _payload(model: HEModel, columns: slice = slice(None)) -> _Layers:
    layers: list[tuple[str, Any, Any]] = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Square):
            layers.append(("square", None, None))
        else:
            last = i == len(model.layers) - 1
            w, b = (layer.weight[:, columns], layer.bias[columns]) if last else (layer.weight, layer.bias)
            layers.append(("linear", np.array(w), np.array(b)))
    return tuple(layers)


class EvaluationPool:
    """``workers`` processes evaluating models on one encrypted test set under one public context.
    Use as a context manager, or call :meth:`close`. The workers are separate interpreters
    (``python -m din_lab.he._worker``) talking over pipes, so the pool works from scripts, notebooks and
    tests alike (no re-import of the caller's main module) and stops exactly the processes it started."""

    def __init__(self, *, context: ts.Context, test_set: EncryptedTable, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            raise ConfigError(f"an evaluation pool has 1 to {MAX_WORKERS} workers, got {workers!r}")
        self.workers = workers
        self._context, self._test_set = context, test_set
        setup = (public_context_bytes(context), test_set.to_bytes(), test_set.params.to_json())
        package_root = str(Path(__file__).resolve().parents[2])  # din_lab importable however it was found here
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(workers):
                proc = subprocess.Popen([sys.executable, "-m", "din_lab.he._worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
                self._procs.append(proc)
                _send(proc.stdin, setup)
            for proc in self._procs:
                self._answer(proc)
        except BaseException:
            self.close()
            raise

    def _answer(self, proc: subprocess.Popen[bytes]) -> Any:
        try:
            status, value = _receive(proc.stdout)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            raise _WorkerStopped(f"an encrypted-evaluation worker stopped (exit code {proc.poll()}): {e}") from e
        if status == "error":
            raise value
        return value

    def evaluate(self, models: Sequence[HEModel]) -> list[EncryptedTable]:
        """Each model's encrypted outputs, as :func:`~din_lab.he.evaluation.evaluate` gives them (the
        same bytes). Every model is checked before any is evaluated (:class:`HEDepthError`,
        :class:`HEError`)."""
        if not self._procs:
            raise HEError("this evaluation pool is closed")
        for model in models:
            check_model(model, self._test_set)
        jobs: list[tuple[int, _Layers]] = []  # (model index, layers), columns in order within a model
        for i, model in enumerate(models):
            if model.depth == 1 and self.workers > 1 and model.outputs > 1:
                bounds = np.linspace(0, model.outputs, min(self.workers, model.outputs) + 1).astype(int)
                jobs += [(i, _payload(model, slice(int(a), int(b)))) for a, b in zip(bounds, bounds[1:], strict=False)]
            else:
                jobs.append((i, _payload(model)))
        # largest job first to the least-loaded worker; a job costs about one multiply per weight
        cost = [sum(w.size for kind, w, _ in layers if kind == "linear") for _, layers in jobs]
        load, shares = [0] * self.workers, [[] for _ in range(self.workers)]
        for k in sorted(range(len(jobs)), key=lambda k: (-cost[k], k)):
            least = min(range(self.workers), key=lambda w: (load[w], w))
            load[least] += cost[k]
            shares[least].append(k)
        busy = [(proc, share) for proc, share in zip(self._procs, shares, strict=True) if len(share)]
        results: list[list[list[bytes]]] = [None] * len(jobs)  # type: ignore[list-item]
        failure: HEError | None = None
        try:
            for proc, share in busy:
                try:
                    _send(proc.stdin, [jobs[k][1] for k in share])
                except OSError as e:
                    raise _WorkerStopped(f"an encrypted-evaluation worker stopped (exit code {proc.poll()}): "
                                         f"{e}") from e
            for proc, share in busy:  # read every answer, so the pipes stay in step after a model's error
                try:
                    for k, cells in zip(share, self._answer(proc), strict=True):
                        results[k] = cells
                except _WorkerStopped:
                    raise
                except HEError as e:
                    failure = failure or e
        except BaseException:  # a worker gone, or an interrupt mid-exchange: the pipes are out of step
            self.close()
            raise
        if failure is not None:
            raise failure
        tables = []
        for i in range(len(models)):
            rows: list[list[bytes]] = [[] for _ in range(self._test_set.chunks)]
            for k, (owner, _) in enumerate(jobs):
                if owner == i:
                    for row, cells in zip(rows, results[k], strict=True):
                        row.extend(cells)
            cells = tuple(tuple(ts.ckks_vector_from(self._context, blob) for blob in row) for row in rows)
            tables.append(EncryptedTable(kind="outputs", params=self._test_set.params, samples=self._test_set.samples,
                                         columns=len(cells[0]), cells=cells))
        return tables

    def close(self) -> None:
        """Stop the workers (idempotent): end of input, then a kill by PID if one lingers."""
        procs, self._procs = self._procs, []
        for proc in procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def __enter__(self) -> EvaluationPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.close()
