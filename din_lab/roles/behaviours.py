"""How a role behaves, as small classes chosen by name (the CLI's names).

A behaviour changes only what its role decides: the data a participant trains on, the update it
sends, whether it sends; the result an evaluator publishes, the scores it reports, whether it
reveals. Everything else (keys, transactions, the store) is the role's own honest machinery, so
a threat-model test shows exactly what the protocol does with one deviation.

Participants: ``honest``, ``random-data`` (trains on noise), ``inverted-labels`` (label ``y``
becomes ``K-1-y``), ``scaled`` (update boosted x10), ``free-rider`` (resubmits the global
model: a zero delta), ``dropout`` (vanishes from the second round on), ``wrong-length`` (an update,
or masked vector, one parameter short), ``bad-shares`` (secure aggregation: tampered share bundles), ``false-reveal`` (secure
aggregation: reveals another update at scoring than the one it masked), ``inflated-mask`` (secure
aggregation: masks its update x2 but commits to and reveals the honest one), ``sybil`` (one party
registering ``SYBIL_ACCOUNTS`` more accounts, each taking part with the same data: paid several
times over where registration is open; refused by a task that admits only accounts its identity
registry verified, one per person).

Evaluators: ``honest``, ``random`` (uniform random scores), ``extreme`` (1.0 for its allies, the
malicious participants, and 0.0 for everyone else), ``lazy`` (commits, never reveals),
``wrong-aggregate`` (publishes a corrupted subgroup result; malicious evaluators do not collude
here, each corrupts differently: a colluding majority is outside DIN's honest-majority
assumption; under encrypted evaluation ``random``, ``extreme`` and ``wrong-aggregate`` publish
tampered encrypted outputs, whose digest no honest member shares), ``copycat`` (commits a copy of an honest member's commitment, result or scores,
and then tries to reveal that member's opening: commit-reveal binds each commitment to its
evaluator's address, so the reveal fails and the copycat is silent), ``forged-shares`` (secure
aggregation: reveals duplicate shares and shares under another member's name; refused whole),
``inflated-weight`` (encrypted evaluation: publishes the honest outputs with the first player's sample
count raised to 10^9, the same bytes from every such member, so two of them on a committee of three
are a colluding majority: the owner, who checks claims against the task's ``max_samples``, refuses the
outputs and the subgroup is closed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from din_lab.errors import ConfigError
from din_lab.roles.codec import Update
from din_lab.roles.secure_aggregation import AuxObject
from din_lab.secagg import Share


@dataclass(frozen=True)
class ParticipantBehaviour:
    name: str = "honest"

    @property
    def malicious(self) -> bool:
        return self.name != "honest"

    def training_data(self, x: np.ndarray, y: np.ndarray, *, num_classes: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return x, y

    def update(self, delta: np.ndarray) -> np.ndarray:
        return delta

    def submits(self, round_: int) -> bool:
        return True

    def revealed(self, update: Update) -> Update:
        """The update it reveals to its committee at scoring time (secure aggregation); honest: the
        one it masked."""
        return update

    def masked(self, update: Update) -> Update:
        """The update it masks (secure aggregation); honest: the one it trained, commits to and
        reveals."""
        return update

    def aux_object(self, data: bytes) -> bytes:
        """The aux object (round keys and share bundles) it publishes; honest: as made."""
        return data


class RandomData(ParticipantBehaviour):
    def training_data(self, x, y, *, num_classes, rng):
        noise = rng.standard_normal(x.shape).astype(x.dtype)
        return noise, rng.integers(0, num_classes, size=y.shape).astype(y.dtype)


class InvertedLabels(ParticipantBehaviour):
    def training_data(self, x, y, *, num_classes, rng):
        return x, (num_classes - 1 - y).astype(y.dtype)


class HalfFlippedLabels(ParticipantBehaviour):
    """Flips half of its labels (a random half, to another class chosen at random): the poisoner
    earlier blockchain-FL protocols such as 2CP still paid in their published experiments."""

    def training_data(self, x, y, *, num_classes, rng):
        y = y.copy()
        flipped = rng.permutation(len(y))[: len(y) // 2]
        y[flipped] = (y[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
        return x, y


class Scaled(ParticipantBehaviour):
    factor = 10.0

    def update(self, delta):
        return (delta * self.factor).astype(np.float32)


class FreeRider(ParticipantBehaviour):
    def update(self, delta):
        return np.zeros_like(delta)


class WrongLength(ParticipantBehaviour):
    """Sends an update one parameter short (a masked vector of the wrong length, under secure
    aggregation): evaluators reject it and treat the sender as a dropout."""

    def update(self, delta):
        return delta[:-1].copy()


class BadShares(ParticipantBehaviour):
    """Publishes share bundles whose ciphertexts are tampered with (secure aggregation): no committee
    member can open them, so its secrets cannot be recovered and its subgroup aborts cleanly."""

    def aux_object(self, data: bytes) -> bytes:
        obj = AuxObject.from_bytes(data)
        broken = tuple(b[:-1] + bytes([b[-1] ^ 0x01]) for b in obj.bundles)
        return AuxObject(participant=obj.participant, position=obj.position, aux=obj.aux, bundles=broken).to_bytes()


class FalseReveal(ParticipantBehaviour):
    """Masks its honest update but reveals a boosted one (x2) at scoring time (secure aggregation):
    the reveal does not open the commitment in its masked update, so it scores 0."""

    def revealed(self, update):
        return Update(delta=(update.delta * 2).astype(np.float32), samples=update.samples, round=update.round,
                      participant=update.participant)


class InflatedMask(ParticipantBehaviour):
    """Secure aggregation: masks its update boosted x2 (so the subgroup's sum carries the boost),
    but commits to and reveals its honest update. The reveal opens the commitment; it does not
    rebuild the masked vector on chain from the revealed round secrets, so it scores 0."""

    def masked(self, update):
        return Update(delta=(update.delta * 2).astype(np.float32), samples=update.samples, round=update.round,
                      participant=update.participant)


class Dropout(ParticipantBehaviour):
    def submits(self, round_: int) -> bool:
        return round_ == 0


class Sybil(ParticipantBehaviour):
    """Trains and submits honestly, from each of its accounts (the network sets the extra accounts up)."""


SYBIL_ACCOUNTS = 3  # the accounts a Sybil party registers besides its own


PARTICIPANT_BEHAVIOURS: dict[str, type[ParticipantBehaviour]] = {
    "honest": ParticipantBehaviour, "random-data": RandomData, "inverted-labels": InvertedLabels,
    "half-flipped-labels": HalfFlippedLabels,
    "scaled": Scaled, "free-rider": FreeRider, "dropout": Dropout, "wrong-length": WrongLength,
    "bad-shares": BadShares, "false-reveal": FalseReveal, "inflated-mask": InflatedMask, "sybil": Sybil,
}


@dataclass(frozen=True)
class EvaluatorBehaviour:
    name: str = "honest"

    @property
    def malicious(self) -> bool:
        return self.name != "honest"

    reveals: bool = True  # lazy: False
    copies: bool = False  # copycat: True
    withholds: bool = False  # withholder: never releases the final model's key after settlement
    # under encrypted evaluation evaluators report encrypted outputs, not scores: the deviating
    # scorers and aggregators publish tampered outputs instead
    tampers_outputs = False

    def result(self, weighted_sum: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        return weighted_sum

    def scores(self, honest: np.ndarray, *, allies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return honest

    def shares(self, shares: list[Share]) -> list[Share]:
        """The shares it reveals to the rest of its committee (secure aggregation); honest: its own."""
        return shares

    def outputs(self, outputs: Any) -> Any:
        """The encrypted outputs it publishes (encrypted evaluation); honest: what it computed."""
        return outputs


class InflatedWeight(EvaluatorBehaviour):
    """Encrypted evaluation: claims 10^9 samples for the first player of its outputs (that player's
    weight in every coalition of the owner's task-wide game). Deterministic, so such members agree."""

    def outputs(self, outputs: Any) -> Any:
        if not outputs.players:
            return outputs
        return dataclasses.replace(outputs, samples=(10**9, *outputs.samples[1:]))


class ForgedShares(EvaluatorBehaviour):
    """Secure aggregation: reveals each of its shares twice and once more under the next member's
    name. The other members refuse its whole reveal (duplicate, non-member share) and unmask from
    the honest members' shares."""

    def shares(self, shares):
        impersonated = [dataclasses.replace(s, holder=s.holder + 1) for s in shares]
        return shares + shares + impersonated


class RandomScores(EvaluatorBehaviour):
    tampers_outputs = True

    def scores(self, honest, *, allies, rng):
        return rng.uniform(0.0, 1.0, size=honest.shape)


class Extreme(EvaluatorBehaviour):
    tampers_outputs = True

    def scores(self, honest, *, allies, rng):
        return np.where(allies, 1.0, 0.0)


class WrongAggregate(EvaluatorBehaviour):
    tampers_outputs = True

    def result(self, weighted_sum, *, rng):
        return (weighted_sum + rng.standard_normal(weighted_sum.shape).astype(np.float32)).astype(np.float32)


EVALUATOR_BEHAVIOURS: dict[str, Callable[[], EvaluatorBehaviour]] = {
    "honest": lambda: EvaluatorBehaviour(name="honest"),
    "random": lambda: RandomScores(name="random"),
    "extreme": lambda: Extreme(name="extreme"),
    "lazy": lambda: EvaluatorBehaviour(name="lazy", reveals=False),
    "wrong-aggregate": lambda: WrongAggregate(name="wrong-aggregate"),
    "copycat": lambda: EvaluatorBehaviour(name="copycat", copies=True),
    "forged-shares": lambda: ForgedShares(name="forged-shares"),
    "withholder": lambda: EvaluatorBehaviour(name="withholder", withholds=True),
    "inflated-weight": lambda: InflatedWeight(name="inflated-weight"),
}


def participant_behaviour(name: str) -> ParticipantBehaviour:
    if name not in PARTICIPANT_BEHAVIOURS:
        raise ConfigError(f"malicious_participants: unknown behaviour {name!r}; "
                          f"choose from {', '.join(PARTICIPANT_BEHAVIOURS)}")
    return PARTICIPANT_BEHAVIOURS[name](name=name)


def evaluator_behaviour(name: str) -> EvaluatorBehaviour:
    if name not in EVALUATOR_BEHAVIOURS:
        raise ConfigError(f"malicious_evaluators: unknown behaviour {name!r}; "
                          f"choose from {', '.join(EVALUATOR_BEHAVIOURS)}")
    return EVALUATOR_BEHAVIOURS[name]()


def assign_behaviours(count: int, shares: tuple[tuple[float, str], ...], *, make: Callable[[str], Any],
                      rng: np.random.Generator, field: str) -> list:
    """``count`` behaviours: ``round(fraction * count)`` of each share, at seeded random positions,
    the rest honest."""
    names: list[str] = []
    for fraction, name in shares:
        make(name)  # validate the name first
        names += [name] * int(round(fraction * count))
    if len(names) > count:
        raise ConfigError(f"{field}: the shares ask for {len(names)} of {count} roles once rounded")
    names += ["honest"] * (count - len(names))
    order = rng.permutation(count)
    return [make(names[i]) for i in order]
