"""What roles exchange through IPFS, as deterministic bytes: updates, subgroup results, models.

Every object is a safetensors file (:mod:`din_lab.storage.serialization`), so equal values give
equal bytes and equal CIDs. That is what lets a committee agree by CID: every honest evaluator of
a subgroup computes the same sum in the same order and so publishes the same bytes.

- An **update** is a participant's model delta (float32, the model's parameters flattened in
  :func:`din_lab.learning.flatten` order) with its sample count. FedAvg weighs by samples, so the
  subgroup result is ``sum(samples_i * delta_i)`` and ``sum(samples_i)``: a plain sum, which is
  the seam secure aggregation plugs into (it sums masked fixed-point vectors instead).
- A **subgroup result** is that weighted sum over the updates the evaluator accepted, the samples
  total, and which members were included or rejected (missing, malformed, non-finite).
- A **global model** is the parameter vector itself.

:func:`next_global_model` is the owner's rule for a round's global model from the accepted
results; anyone recomputes it from the CIDs on chain (``Lab.verify_round``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from din_lab.errors import ProtocolError, SerializationError
from din_lab.storage.serialization import metadata_from_bytes, tensors_from_bytes, tensors_to_bytes

UPDATE_KIND = "din-lab/update/v1"
RESULT_KIND = "din-lab/subgroup-result/v1"
MODEL_KIND = "din-lab/global-model/v1"


@dataclass(frozen=True)
class Update:
    """A participant's contribution to one round."""

    delta: np.ndarray  # float32, flattened parameters
    samples: int
    round: int
    participant: str


@dataclass(frozen=True)
class SubgroupResult:
    """What a subgroup's committee publishes and votes on."""

    weighted_sum: np.ndarray  # float32: sum of samples_i * delta_i
    samples: int
    round: int
    subgroup: int
    included: tuple[str, ...]
    rejected: tuple[str, ...]
    encoded_sum: np.ndarray | None = None  # secure aggregation: the exact fixed-point sum (uint64)
    aborted: str = ""  # secure aggregation could not unmask: why (the subgroup adds nothing)


def _kind(data: bytes, expected: str) -> dict[str, str]:
    meta = metadata_from_bytes(data)
    if meta.get("kind") != expected:
        raise ProtocolError(f"expected a {expected} object, got {meta.get('kind')!r}")
    return meta


def encode_update(update: Update) -> bytes:
    return tensors_to_bytes(
        {"delta": np.asarray(update.delta, dtype=np.float32), "samples": np.array([update.samples], dtype=np.int64)},
        metadata={"kind": UPDATE_KIND, "round": str(update.round), "participant": update.participant})


def decode_update(data: bytes) -> Update:
    """Raises :class:`ProtocolError` for anything that is not a well-formed update."""
    try:
        meta = _kind(data, UPDATE_KIND)
        tensors = tensors_from_bytes(data)
        delta, samples = tensors["delta"], tensors["samples"]
    except (SerializationError, KeyError) as e:
        raise ProtocolError(f"malformed update: {e}") from e
    if delta.dtype != np.float32 or delta.ndim != 1 or samples.shape != (1,):
        raise ProtocolError("malformed update: delta must be a float32 vector and samples one integer")
    return Update(delta=delta, samples=int(samples[0]), round=int(meta["round"]), participant=meta["participant"])


def check_update(update: Update, *, dimension: int, round_: int, participant: str, max_samples: int) -> str | None:
    """Why an evaluator must reject ``update`` (``None`` if it is acceptable)."""
    if update.round != round_ or update.participant.lower() != participant.lower():
        return "update is for another round or participant"
    if update.delta.shape != (dimension,):
        return f"update has {update.delta.shape[0]} parameters, the model has {dimension}"
    if not 1 <= update.samples <= max_samples:
        return f"claims {update.samples} samples (allowed 1..{max_samples})"
    if not np.all(np.isfinite(update.delta)):
        return "update holds NaN or Inf"
    if float(np.max(np.abs(update.delta), initial=0.0)) > MAX_MAGNITUDE:
        return f"update has a coordinate above {MAX_MAGNITUDE:g} in magnitude"
    return None


NORM_FACTOR = 3.0
SAMPLES_FACTOR = 4.0
MAX_MAGNITUDE = 1e6  # no honest model delta comes near it; keeps float32 sums finite
MIN_NORM_FRACTION = 0.1
MIN_COSINE = 0.0
COSINE_FRACTION = 0.5


@dataclass(frozen=True)
class RoundReference:
    """What evaluators screen updates against: the coordinate-wise median of every well-formed
    update of the round (all are on IPFS, their CIDs on chain) and the median update norm. A
    median is what a minority of poisoners cannot move far."""

    direction: np.ndarray
    median_norm: float
    median_cosine: float
    median_samples: float

    @classmethod
    def of(cls, updates: Sequence[Update]) -> RoundReference | None:
        if len(updates) < 3:
            return None
        stacked = np.stack([u.delta.astype(np.float64) for u in updates])
        direction = np.median(stacked, axis=0)
        norms = np.linalg.norm(stacked, axis=1)
        ref = float(np.linalg.norm(direction))
        cosines = [float(row @ direction) / (n * ref) for row, n in zip(stacked, norms, strict=True) if n > 0 and ref > 0]
        return cls(direction=direction, median_norm=float(np.median(norms)),
                   median_cosine=float(np.median(cosines)) if cosines else 0.0,
                   median_samples=float(np.median([u.samples for u in updates])))


def screen_update(update: Update, reference: RoundReference | None) -> str | None:
    """Anomaly detection (paper section 9, poisoning): why ``update`` is left out of the sum, or
    ``None``. Boosted (norm above 3x the median), empty (below 1/10 of it: a free-rider's resubmitted
    model) and off-course updates: cosine with the median update below half the round's median
    cosine (inverted labels, training on noise). Measured on digits: honest updates 0.38-0.84,
    inverted-label ones at most 0.23, against a floor of about 0.2-0.4."""
    if reference is None or reference.median_norm == 0.0:
        return None
    if update.samples > SAMPLES_FACTOR * reference.median_samples:
        return (f"claims {update.samples} samples, above {SAMPLES_FACTOR:g}x the round's median "
                f"{reference.median_samples:g} (FedAvg weight inflation)")
    delta = update.delta.astype(np.float64)
    norm = float(np.linalg.norm(delta))
    if norm > NORM_FACTOR * reference.median_norm:
        return f"update norm {norm:.3g} above {NORM_FACTOR:g}x the round's median {reference.median_norm:.3g}"
    if norm < MIN_NORM_FRACTION * reference.median_norm:
        return f"update norm {norm:.3g} below {MIN_NORM_FRACTION:g}x the round's median: no contribution"
    ref_norm = float(np.linalg.norm(reference.direction))
    cosine = float(delta @ reference.direction) / (norm * ref_norm) if ref_norm > 0 else 1.0
    floor = max(MIN_COSINE, COSINE_FRACTION * reference.median_cosine)
    if cosine < floor:
        return f"update points away from the round's median update (cosine {cosine:.2f} < {floor:.2f})"
    return None


def aggregate_subgroup(updates: Sequence[tuple[str, Update]], *, round_: int, subgroup: int,
                       rejected: Sequence[str], dimension: int) -> SubgroupResult:
    """The weighted sum of accepted updates in the given (on-chain member) order, float64 accumulation."""
    total = np.zeros(dimension, dtype=np.float64)
    samples = 0
    for _, update in updates:
        total += update.samples * update.delta.astype(np.float64)
        samples += update.samples
    return SubgroupResult(weighted_sum=total.astype(np.float32), samples=samples, round=round_, subgroup=subgroup,
                          included=tuple(a for a, _ in updates), rejected=tuple(rejected))


def encode_result(result: SubgroupResult) -> bytes:
    tensors = {"weighted_sum": result.weighted_sum, "samples": np.array([result.samples], dtype=np.int64)}
    metadata = {"kind": RESULT_KIND, "round": str(result.round), "subgroup": str(result.subgroup),
                "included": ",".join(result.included), "rejected": ",".join(result.rejected)}
    if result.encoded_sum is not None:
        tensors["encoded_sum"] = np.asarray(result.encoded_sum, dtype=np.uint64)
        metadata["aggregation"] = "secure"
    if result.aborted:
        metadata["aborted"] = result.aborted
    return tensors_to_bytes(tensors, metadata=metadata)


def decode_result(data: bytes) -> SubgroupResult:
    try:
        meta = _kind(data, RESULT_KIND)
        tensors = tensors_from_bytes(data)
        weighted, samples = tensors["weighted_sum"], tensors["samples"]
    except (SerializationError, KeyError) as e:
        raise ProtocolError(f"malformed subgroup result: {e}") from e
    def split(text: str) -> tuple[str, ...]:
        return tuple(x for x in text.split(",") if x)

    return SubgroupResult(weighted_sum=weighted, samples=int(samples[0]), round=int(meta["round"]),
                          subgroup=int(meta["subgroup"]), included=split(meta.get("included", "")),
                          rejected=split(meta.get("rejected", "")), encoded_sum=tensors.get("encoded_sum"),
                          aborted=meta.get("aborted", ""))


def encode_model(vector: np.ndarray, *, round_: int, model: str) -> bytes:
    return tensors_to_bytes({"parameters": np.asarray(vector, dtype=np.float32)},
                            metadata={"kind": MODEL_KIND, "round": str(round_), "model": model})


def decode_model(data: bytes) -> np.ndarray:
    try:
        _kind(data, MODEL_KIND)
        return tensors_from_bytes(data)["parameters"]
    except (SerializationError, KeyError) as e:
        raise ProtocolError(f"malformed global model: {e}") from e


def check_result(result: SubgroupResult, *, dimension: int, round_: int, subgroup: int) -> str | None:
    """Why an accepted subgroup result cannot enter the global model (``None`` if it can)."""
    if result.round != round_ or result.subgroup != subgroup:
        return "result is for another round or subgroup"
    if result.weighted_sum.shape != (dimension,) or result.weighted_sum.dtype != np.float32:
        return f"result has shape {result.weighted_sum.shape}, the model has {dimension} parameters"
    if result.samples < 0 or not np.all(np.isfinite(result.weighted_sum)):
        return "result holds NaN, Inf or a negative sample count"
    if result.aborted and (result.samples or np.any(result.weighted_sum) or result.included):
        return "an aborted result must add nothing (no samples, a zero sum, nobody included)"
    return None


def next_global_model(previous: np.ndarray, results: Sequence[SubgroupResult]) -> np.ndarray:
    """FedAvg over the accepted subgroups: previous + sum(weighted sums) / sum(samples), in
    subgroup order with float64 accumulation (the same bytes for everyone who recomputes it).
    With no accepted subgroup the model is unchanged."""
    samples = sum(r.samples for r in results)
    if samples == 0:
        return np.asarray(previous, dtype=np.float32).copy()
    total = np.zeros(previous.shape, dtype=np.float64)
    for result in sorted(results, key=lambda r: r.subgroup):
        total += result.weighted_sum.astype(np.float64)
    return (previous.astype(np.float64) + total / samples).astype(np.float32)
