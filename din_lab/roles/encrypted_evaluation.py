"""The seam between the roles and encrypted evaluation (:mod:`din_lab.he`): the lab's models as HE
models, what an evaluator computes on the encrypted test set for its subgroup
(:func:`evaluate_contributions` -> :class:`EncryptedOutputs`, voted on by digest) and what the owner,
the key holder, derives from the agreed outputs (:func:`score_outputs`).

:func:`he_model` turns a model the lab trains into the :class:`~din_lab.he.HEModel` an evaluator
runs on the encrypted test set: logistic regression (``Linear``) and the square-activation MLP
(``Linear -> Square -> ... -> Linear``). Any other layer (ReLU, convolution, pooling) has no CKKS
evaluation here and is refused with a :class:`~din_lab.errors.ConfigError` that names the HE-ready
variants, which is what a task configured for encrypted evaluation must train from its start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tenseal as ts
from torch import nn

from din_lab.errors import ConfigError
from din_lab.he import (
    EncryptedTable,
    EvaluationPool,
    HEError,
    HEModel,
    HEParameterError,
    HEParams,
    Linear,
    Square,
    evaluate,
    framed,
    read_framed,
)
from din_lab.learning import unflatten
from din_lab.learning.models import Square as TorchSquare
from din_lab.roles.codec import Update
from din_lab.roles.scoring import coalition_vector
from din_lab.scoring import CachedUtility, make_scorer
from din_lab.scoring.contribution import MixtureGame, bootstrap_rows, log_softmax, screen_outputs, task_scores
from din_lab.scoring.scorers import EXACT_THRESHOLD

__all__ = ["HE_READY", "TRUST_NOTE", "AgreedOutputs", "EncryptedOutputs", "OwnerScoring",
           "check_task_outputs", "decrypt_task_outputs", "evaluate_contributions", "he_model", "metrics",
           "needed_coalitions", "score_outputs", "score_task_outputs", "tampered"]

HE_READY = "logistic regression (model 'logreg') or the MLP with the square activation (x^2, as in CryptoNets)"


def he_model(module: nn.Module, vector: np.ndarray | None = None) -> HEModel:
    """The HE model of ``module`` (with the parameters of flat ``vector`` if given, in the lab's
    :func:`~din_lab.learning.flatten` order)."""
    params = unflatten(vector, like=module) if vector is not None else dict(module.named_parameters())
    layers: list[Linear | Square] = []
    for name, m in module.named_children() if isinstance(module, nn.Sequential) else [("", module)]:
        if isinstance(m, nn.Linear):
            w = params[f"{name}.weight"].detach().double().numpy()
            b = params[f"{name}.bias"].detach().double().numpy()
            layers.append(Linear(weight=w.T.copy(), bias=b.copy()))
        elif isinstance(m, TorchSquare):
            layers.append(Square())
        else:
            raise ConfigError(f"a {type(m).__name__} layer has no CKKS evaluation: encrypted evaluation needs "
                              f"{HE_READY}")
    return HEModel(layers=tuple(layers))


# ---------------------------------------------------------------------- scoring on the encrypted test set
#
# What a committee member evaluates for its subgroup: the models the scorer's coalitions need. For
# a linear model (depth 1) that is the previous global model and each player's own model
# (previous + delta_i): a coalition's FedAvg model is the sample-weighted mean of its players'
# models, and logits are affine in the parameters, so the owner recovers every coalition's logits
# exactly from those n + 1 outputs. For a deeper model (the square MLP) each coalition the scorer
# asks for is evaluated as its own model; the deterministic scorers ask for a fixed set (recorded
# by running them once on a constant utility).

_OUT_MAGIC = b"DNHO"
_OUT_VERSION = 1
_OUT_HEAD = struct.Struct(">4sBI")
_MAX_OUT_HEADER = 1 << 16
TRUST_NOTE = ("the model owner holds the CKKS secret key and decrypts the committee-agreed outputs: it could "
              "misreport a decryption. What an auditor needs is public: the encrypted test set and public context "
              "(CIDs and parameters on chain), the agreed output ciphertexts (digest on chain) and the owner's audit "
              "record of every coalition's accuracy, F1 and loss; the owner can be asked to reveal its key after the "
              "task to let anyone re-check the decryption")


def needed_coalitions(players: int, *, linear: bool, scorer: str) -> list[tuple[int, ...]]:
    """The coalitions whose models the committee evaluates for ``players`` players."""
    if players == 0:
        return []
    if linear:
        return [(), *((i,) for i in range(players))]
    if scorer == "shapley" and players > EXACT_THRESHOLD:
        raise HEError(f"the square MLP under encrypted evaluation scores Shapley values exactly, for at most "
                      f"{EXACT_THRESHOLD} players per subgroup; this subgroup has {players} "
                      "(use logreg, a smaller subgroup, or the accuracy or loo scorer)")
    seen: dict[tuple[int, ...], None] = {}
    make_scorer(scorer).score(utility=lambda c: seen.setdefault(tuple(c)) or 0.0, participants=players, seed=0)
    return sorted(seen, key=lambda c: (len(c), c))


@dataclass(frozen=True, eq=False)
class EncryptedOutputs:
    """A committee member's encrypted outputs for one subgroup: the players (subgroup addresses in
    position order, with sample counts), the coalitions evaluated and, per coalition, the
    encrypted logits on the encrypted test set. Deterministic bytes; :meth:`digest` is what the
    committee votes on."""

    subgroup: int
    players: tuple[str, ...]
    samples: tuple[int, ...]
    coalitions: tuple[tuple[int, ...], ...]
    linear: bool
    test_set: str  # sha256 hex of the encrypted test set the outputs were computed on
    tables: tuple[EncryptedTable, ...] = field(repr=False)

    def to_bytes(self) -> bytes:
        header = json.dumps({"subgroup": self.subgroup, "players": list(self.players), "samples": list(self.samples),
                             "coalitions": [list(c) for c in self.coalitions], "linear": self.linear,
                             "test_set": self.test_set}, sort_keys=True, separators=(",", ":")).encode()
        return _OUT_HEAD.pack(_OUT_MAGIC, _OUT_VERSION, len(header)) + header + framed(t.to_bytes() for t in self.tables)

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes, *, context: ts.Context, params: HEParams) -> EncryptedOutputs:
        """Decode against ``context`` (public for evaluators, the owner's own to decrypt);
        :class:`HEParameterError` for anything malformed or made with other parameters."""
        data = bytes(data)
        if len(data) < _OUT_HEAD.size:
            raise HEParameterError("encrypted outputs: too short")
        magic, version, hlen = _OUT_HEAD.unpack_from(data)
        if magic != _OUT_MAGIC or version != _OUT_VERSION or hlen > _MAX_OUT_HEADER \
                or _OUT_HEAD.size + hlen > len(data):
            raise HEParameterError(f"not din-lab encrypted outputs (format {magic!r} v{version}, a header of "
                                   f"{hlen} bytes in {len(data)})")
        try:
            h = json.loads(data[_OUT_HEAD.size:_OUT_HEAD.size + hlen])
        except (ValueError, RecursionError) as e:
            raise HEParameterError(f"encrypted outputs: malformed header ({e})") from e
        if not isinstance(h, dict):
            raise HEParameterError("encrypted outputs: the header is not an object")

        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        players, samples, coalitions = h.get("players"), h.get("samples"), h.get("coalitions")
        if not (isinstance(players, list) and all(isinstance(p, str) for p in players)
                and isinstance(samples, list) and all(whole(x) and x >= 1 for x in samples)
                and isinstance(coalitions, list)
                and all(isinstance(c, list) and all(whole(i) for i in c) for c in coalitions)
                and whole(h.get("subgroup")) and isinstance(h.get("linear"), bool)
                and isinstance(h.get("test_set"), str)):
            raise HEParameterError("encrypted outputs: the header's fields have the wrong types")
        coalitions = [tuple(c) for c in coalitions]
        if len(samples) != len(players) or len(set(players)) != len(players) \
                or any(i >= len(players) for c in coalitions for i in c) \
                or any(list(c) != sorted(set(c)) for c in coalitions) or len(set(coalitions)) != len(coalitions):
            raise HEParameterError("encrypted outputs: players, sample counts and coalitions do not fit together")
        subgroup, linear, test_set = h["subgroup"], h["linear"], h["test_set"]
        tables = [EncryptedTable.from_bytes(blob, context=context, kind="outputs", params=params)
                  for blob in read_framed(data, start=_OUT_HEAD.size + hlen, count=len(coalitions),
                                          what="encrypted outputs")]
        if len({(t.samples, t.columns) for t in tables}) > 1:
            raise HEParameterError("encrypted outputs: the tables have different shapes")
        return cls(subgroup=subgroup, players=tuple(players), samples=tuple(samples), coalitions=tuple(coalitions),
                   linear=linear, test_set=test_set, tables=tuple(tables))


def evaluate_contributions(*, module: nn.Module, members: Sequence[str], updates: dict[str, Update],
                           previous: np.ndarray, test_set: EncryptedTable, context: ts.Context, scorer: str,
                           subgroup: int, pool: EvaluationPool | None = None) -> EncryptedOutputs:
    """An evaluator's encrypted evaluation of its subgroup: for each coalition the scorer needs,
    the encrypted logits of the coalition's model on the encrypted test set (on ``pool``'s worker
    processes when given: the same bytes). Deterministic: every honest member with the same
    accepted updates produces the same bytes."""
    players = [m for m in members if m in updates]
    linear = he_model(module).depth == 1
    coalitions = needed_coalitions(len(players), linear=linear, scorer=scorer)
    base = previous.astype(np.float64)
    deltas = np.stack([updates[m].delta.astype(np.float64) for m in players]) if players else np.zeros((0, base.size))
    weights = np.array([updates[m].samples for m in players], dtype=np.float64)
    models = [he_model(module, coalition_vector(base, deltas, weights, c).astype(np.float32))  # plaintext's precision
              for c in coalitions]
    tables = pool.evaluate(models) if pool is not None else [evaluate(m, test_set, context=context) for m in models]
    return EncryptedOutputs(subgroup=subgroup, players=tuple(players), samples=tuple(int(w) for w in weights),
                            coalitions=tuple(coalitions), linear=linear, test_set=test_set.digest().hex(),
                            tables=tuple(tables))


def tampered(outputs: EncryptedOutputs, *, rng: np.random.Generator) -> EncryptedOutputs:
    """A deviating evaluator's outputs: the first table's ciphertexts multiplied by a random integer
    ``m >= 2`` (additions only, so it works at any scale and level, and without the key). Its
    digest differs from the honest one; two deviators draw the same ``m`` (and so could form a
    majority together) with chance about 2^-16."""
    if not outputs.tables:
        return outputs
    first = outputs.tables[0]
    m = int(rng.integers(2, 2**16))

    def times(ct: ts.CKKSVector) -> ts.CKKSVector:
        acc, power, k = None, ct, m
        while k:
            if k & 1:
                acc = power if acc is None else acc + power
            k >>= 1
            if k:
                power = power + power
        return acc

    cells = tuple(tuple(times(ct) for ct in row) for row in first.cells)
    bad = EncryptedTable(kind=first.kind, params=first.params, samples=first.samples, columns=first.columns, cells=cells)
    return dataclasses.replace(outputs, tables=(bad, *outputs.tables[1:]))


def metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and mean cross-entropy of ``logits`` against labels ``y`` (float64)."""
    y = np.asarray(y, dtype=np.int64)
    loss = float(-log_softmax(logits)[np.arange(len(y)), y].mean())
    pred = logits.argmax(axis=1)
    f1s = []
    for k in range(logits.shape[1]):
        tp = int(np.sum((pred == k) & (y == k)))
        fp = int(np.sum((pred == k) & (y != k)))
        fn = int(np.sum((pred != k) & (y == k)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(pred == y)), "f1": float(np.mean(f1s)) if f1s else 0.0, "loss": loss}


@dataclass(frozen=True)
class OwnerScoring:
    """What the owner derives from one subgroup's agreed outputs: scores in [0, 1] by subgroup
    position, and the audit record it publishes (no raw decryption in it)."""

    scores: tuple[float, ...]
    audit: dict[str, Any]


def score_outputs(outputs: EncryptedOutputs, *, secret_context: ts.Context, y: np.ndarray, members: Sequence[str],
                  scorer: str, seed: int, digest: bytes) -> OwnerScoring:
    """The owner decrypts the committee-agreed ``outputs`` and scores the subgroup's players with
    the same game and scorer the plaintext path uses (utility: accuracy for ``accuracy``, else the
    negative test cross-entropy)."""
    if list(outputs.players) != [m for m in members if m in set(outputs.players)]:
        raise HEError(f"the outputs of subgroup {outputs.subgroup} name players outside it or out of order")
    classes = int(np.max(y)) + 1 if len(y) else 0
    if any(t.samples != len(y) or t.columns < classes for t in outputs.tables):
        raise HEError(f"the outputs do not cover the owner's test set ({len(y)} samples, {classes} classes)")
    if outputs.linear and outputs.players and not {(), *((i,) for i in range(len(outputs.players)))} \
            <= set(outputs.coalitions):
        raise HEError("linear outputs must hold the previous model's and every player's own evaluation")
    logits = {c: t.decrypt(secret_context) for c, t in zip(outputs.coalitions, outputs.tables, strict=True)}
    weights = np.array(outputs.samples, dtype=np.float64)

    def coalition_logits(c: tuple[int, ...]) -> np.ndarray:
        if c in logits:
            return logits[c]
        if not outputs.linear:
            raise HEError(f"the outputs hold no evaluation of coalition {c} (a nonlinear model needs each one)")
        idx = list(c)  # affine model: a coalition's logits are the weighted mean of its players' logits
        return sum(weights[i] * logits[(i,)] for i in idx) / weights[idx].sum()

    seen: dict[tuple[int, ...], dict[str, float]] = {}

    def utility(c: tuple[int, ...]) -> float:
        if c not in seen:
            seen[c] = metrics(coalition_logits(tuple(c)), y)
        return seen[c]["accuracy"] if scorer == "accuracy" else -seen[c]["loss"]

    n = len(outputs.players)
    scores = np.zeros(len(members))
    values: list[float] = []
    if n:
        values = [float(v) for v in make_scorer(scorer).score(utility=CachedUtility(utility, participants=n),
                                                              participants=n, seed=seed & 0x7FFFFFFF)]
        position = {m: i for i, m in enumerate(members)}
        for k, m in enumerate(outputs.players):
            scores[position[m]] = float(np.clip(values[k], 0.0, 1.0))
    audit = {
        "kind": "din-lab/encrypted-evaluation/audit", "subgroup": outputs.subgroup, "outputs_digest": digest.hex(),
        "test_set": outputs.test_set, "scorer": scorer, "players": list(outputs.players),
        "samples": list(outputs.samples),
        "coalitions": [{"coalition": list(c), **{k: round(v, 6) for k, v in m.items()}}
                       for c, m in sorted(seen.items(), key=lambda kv: (len(kv[0]), kv[0]))],
        "values": [round(v, 9) for v in values], "scores": [round(float(s), 9) for s in scores], "trust": TRUST_NOTE,
    }
    return OwnerScoring(scores=tuple(float(s) for s in scores), audit=audit)


def check_task_outputs(outputs: EncryptedOutputs, *, members: Sequence[str], contributors: Collection[str],
                       max_samples: int, y: np.ndarray) -> None:
    """What the task-wide game needs of one subgroup's agreed outputs (:class:`HEError` otherwise):
    its own members in position order, each of whom submitted in the final round (``contributors``,
    from the chain) and claims at most the task's ``max_samples``, tables covering the test set, each
    player's own evaluation. The owner checks what it can itself: one subgroup's outputs enter every
    player's game, so a committee must not add a player who sent nothing or claim more samples for a
    player (its weight in every coalition) than the task allows. (A claim within ``max_samples`` is
    not checked further here: the subgroup's sum, with its total count, stays sealed until rewards
    settle.)"""
    if list(outputs.players) != [m for m in members if m in set(outputs.players)]:
        raise HEError(f"the outputs of subgroup {outputs.subgroup} name players outside it or out of order")
    if absent := [p for p in outputs.players if p not in contributors]:
        raise HEError(f"the outputs of subgroup {outputs.subgroup} name players that sent no update in the final "
                      f"round: {', '.join(absent)}")
    if any(n > max_samples for n in outputs.samples):
        raise HEError(f"the outputs of subgroup {outputs.subgroup} claim {max(outputs.samples)} samples for a player "
                      f"(the task allows at most {max_samples})")
    classes = int(np.max(y)) + 1 if len(y) else 0
    if any(t.samples != len(y) or t.columns < classes for t in outputs.tables):
        raise HEError(f"the outputs do not cover the owner's test set ({len(y)} samples, {classes} classes)")
    if any((i,) not in set(outputs.coalitions) for i in range(len(outputs.players))):
        raise HEError(f"the outputs of subgroup {outputs.subgroup} lack a player's own evaluation")


def decrypt_task_outputs(outputs: EncryptedOutputs, *, secret_context: ts.Context, y: np.ndarray
                         ) -> dict[tuple[int, ...], np.ndarray]:
    """Every table of one subgroup's agreed outputs, decrypted (``coalition -> samples x columns``),
    or :class:`HEError` if a table is not outputs on the test set: a finite row per test sample.
    Magnitudes are not bounded here: a player whose model's outputs overflowed the ciphertexts (an
    update far off the others) decrypts to large values; the game's screening (an output change over
    three times the median) and influence bound deal with that player, not with the whole subgroup."""
    out = {}
    for c, t in zip(outputs.coalitions, outputs.tables, strict=True):
        z = t.decrypt(secret_context)
        if z.shape[0] != len(y) or not np.isfinite(z).all():
            raise HEError(f"the outputs of subgroup {outputs.subgroup} decrypt to no outputs on the test set "
                          f"(coalition {list(c)}: {z.shape[0]} rows for {len(y)} samples, or values not finite)")
        out[c] = z
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class AgreedOutputs:
    """One subgroup's outputs as the owner scores them: what its committee's majority agreed on
    (checked by :func:`check_task_outputs`), their digest, the subgroup's members in position order,
    and the tables decrypted (:func:`decrypt_task_outputs`)."""

    outputs: EncryptedOutputs
    digest: bytes
    members: tuple[str, ...]
    decrypted: Mapping[tuple[int, ...], np.ndarray]


def score_task_outputs(agreed: Sequence[AgreedOutputs], *, base: np.ndarray, y: np.ndarray, scorer: str, seed: int
                       ) -> dict[int, OwnerScoring]:
    """The owner's task-wide game (:mod:`din_lab.scoring.contribution`) on every subgroup's agreed
    outputs at once (``agreed``, each checked and decrypted). ``base`` is the previous global model's
    outputs, which the owner computes itself in plaintext (so no committee moves every player's
    game); each player's are its own model's, decrypted; a coalition's are the
    sample-weighted mean of its players' (exact for logistic regression; a non-linear model is
    scored by singletons only, the accuracy scorer). Players are screened in prediction space and
    valued in one game, in address order (independent of how they were grouped). Returns each
    subgroup's scores by position and its audit record."""
    players: list[tuple[str, int, np.ndarray, int]] = []  # address, samples, outputs, subgroup
    measured: dict[int, list[dict[str, Any]]] = {}  # per subgroup: each evaluated model's metrics
    for a in agreed:
        outputs, decrypted = a.outputs, a.decrypted
        measured[outputs.subgroup] = [{"coalition": list(c), **{k: round(v, 6) for k, v in metrics(z, y).items()}}
                                      for c, z in sorted(decrypted.items(), key=lambda kv: (len(kv[0]), kv[0]))]
        for i, (address, samples) in enumerate(zip(outputs.players, outputs.samples, strict=True)):
            players.append((address, samples, decrypted[(i,)], outputs.subgroup))
    players.sort(key=lambda p: p[0].lower())
    base = np.asarray(base, dtype=np.float64)
    if any(p[2].shape[1] < base.shape[1] for p in players):
        raise HEError("the subgroups' outputs have different shapes")
    values: dict[str, tuple[float, float, bool, float]] = {}
    calls = permutations = 0
    shrinkage = 1.0
    if players:
        game = MixtureGame(base=base, outputs=np.stack([p[2][:, :base.shape[1]] for p in players]),
                           weights=np.array([p[1] for p in players], dtype=np.float64), y=y,
                           metric="accuracy" if scorer == "accuracy" else "loss")
        keep = screen_outputs(game.changes())
        if scorer != "accuracy":  # the accuracy scorer measures each player's own model, as it is
            game, _ = game.bounded(keep)
        replicates = [game.resampled(rows) for rows in bootstrap_rows(len(y), seed=seed)] if scorer != "accuracy" \
            else []
        result = task_scores(utility=game, players=len(players), keep=keep, scorer=scorer, seed=seed,
                             replicates=replicates)
        values = {p[0]: (float(v), float(s), bool(k), float(e))
                  for p, v, s, k, e in zip(players, result.values, result.scores, result.kept, result.estimates,
                                           strict=True)}
        shrinkage = result.shrinkage
        calls, permutations = result.utility_calls, result.permutations
    out = {}
    for a in agreed:
        outputs, digest, members = a.outputs, a.digest, a.members
        scores = [values[m][1] if m in values else 0.0 for m in members]
        audit = {
            "kind": "din-lab/encrypted-evaluation/audit", "game": "task", "subgroup": outputs.subgroup,
            "outputs_digest": digest.hex(), "test_set": outputs.test_set, "scorer": scorer, "seed": seed,
            "task_players": len(players), "utility_calls": calls, "permutations": permutations,
            "players": list(outputs.players), "samples": list(outputs.samples),
            "coalitions": measured[outputs.subgroup],
            "kept": [values[m][2] for m in outputs.players], "values": [round(values[m][0], 9) for m in outputs.players],
            "estimates": [round(values[m][3], 9) for m in outputs.players], "shrinkage": shrinkage,
            "scores": [round(float(s), 9) for s in scores], "trust": TRUST_NOTE,
        }
        out[outputs.subgroup] = OwnerScoring(scores=tuple(float(s) for s in scores), audit=audit)
    return out
