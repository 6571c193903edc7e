"""Coalition utilities: the one thing every contribution scorer sees.

A *utility* maps a coalition of participants to a number: ``utility(coalition) -> float`` where
``coalition`` is a sorted tuple of distinct participant indexes in ``range(participants)``,
possibly empty. Typically it is the test accuracy of the FedAvg of those participants'
updates (the empty coalition: the genesis or a chance-level model). The caller supplies it;
scoring never trains or evaluates a model itself.

Each call usually costs a model evaluation (on an encrypted test set, an expensive one), so
:class:`CachedUtility` evaluates each coalition once and counts the evaluations.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Iterable

from din_lab.errors import ConfigError

logger = logging.getLogger(__name__)

Coalition = tuple[int, ...]
"""A sorted tuple of distinct participant indexes (``()`` is the empty coalition)."""

Utility = Callable[[Coalition], float]
"""``utility(coalition) -> float``: the value of a coalition, e.g. the accuracy of its averaged model."""


def check_participants(participants: object) -> int:
    """``participants`` as an ``int`` >= 1, else :class:`ConfigError` naming ``participants``."""
    if isinstance(participants, bool) or not isinstance(participants, numbers.Integral):
        raise ConfigError(f"participants must be an integer, got {participants!r}")
    if participants < 1:
        raise ConfigError(f"participants must be at least 1, got {participants}")
    return int(participants)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum``, else :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value: object, *, low: float, high: float, low_open: bool) -> float:
    """``value`` as a finite ``float`` in ``[low, high)`` (``(low, high)`` if ``low_open``), else :class:`ConfigError`."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must be a number, got {value!r}") from e
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v < high
    if not ok:
        raise ConfigError(f"{name} must be in {'(' if low_open else '['}{low}, {high}), got {value!r}")
    return v


class CachedUtility:
    """A utility that evaluates each coalition once and counts the evaluations.

    ``CachedUtility(utility, participants=n)(coalition)`` accepts any iterable of indexes in
    ``range(n)`` (in any order), passes ``utility`` the sorted tuple and memoises the value.
    ``calls`` is the number of times ``utility`` itself ran (= distinct coalitions evaluated).
    The scoring functions wrap a plain callable in one; pass them a ``CachedUtility`` yourself
    to share its cache (and count) between several scorers over the same coalitions.

    Values must be finite: a NaN or infinite utility raises :class:`ConfigError`.
    """

    def __init__(self, utility: Utility, *, participants: int) -> None:
        if not callable(utility):
            raise ConfigError(f"utility must be callable, got {type(utility).__name__}")
        self._utility = utility
        self.participants = check_participants(participants)
        self._cache: dict[Coalition, float] = {}
        self.calls = 0

    def __call__(self, coalition: Iterable[int]) -> float:
        return self.value(self.coalition(coalition))

    def coalition(self, members: Iterable[int]) -> Coalition:
        """``members`` validated and normalised to a sorted tuple of distinct ``int`` indexes."""
        try:
            items = [int(m) for m in members]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"a coalition must be an iterable of participant indexes, got {members!r}") from e
        key = tuple(sorted(items))
        if len(set(key)) != len(key):
            raise ConfigError(f"a coalition lists a participant twice: {key}")
        if key and (key[0] < 0 or key[-1] >= self.participants):
            raise ConfigError(f"coalition {key} has an index outside range({self.participants})")
        return key

    def value(self, key: Coalition) -> float:
        """The utility of an already normalised coalition (sorted tuple), cached."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        raw = self._utility(key)
        try:
            v = float(raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"utility({key}) returned {raw!r}, not a number") from e
        if not math.isfinite(v):
            raise ConfigError(f"utility({key}) returned {v}, not a finite number")
        self._cache[key] = v
        self.calls += 1
        return v

    def __len__(self) -> int:
        return len(self._cache)


def cached(utility: Utility, participants: int) -> CachedUtility:
    """``utility`` itself if it is a :class:`CachedUtility` for ``participants``, else wrapped in one."""
    n = check_participants(participants)
    if isinstance(utility, CachedUtility):
        if utility.participants != n:
            raise ConfigError(
                f"the CachedUtility is for {utility.participants} participants, but participants={n}")
        return utility
    return CachedUtility(utility, participants=n)
