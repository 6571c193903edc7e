"""Shapley values of a coalition utility: exact, and truncated Monte-Carlo (TMC), plus leave-one-out.

For a utility ``U`` over ``n`` participants the Shapley value of participant ``i`` is

    phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (U(S + i) - U(S)),

the average of ``i``'s marginal contribution over all ``n!`` orders in which the participants
could join. It is the only split of ``U(N) - U(empty)`` that is efficient (the values sum to
it), symmetric (interchangeable participants get equal values), gives a null participant
(one that never changes ``U``) zero, and is additive in ``U``.

- :func:`exact_shapley` evaluates all ``2**n`` coalitions (refused above
  :data:`MAX_EXACT_PARTICIPANTS`).
- :func:`tmc_shapley` is Ghorbani & Zou's Truncated Monte-Carlo (Data Shapley, ICML 2019):
  average marginal contributions over random permutations, stopping a permutation's scan
  once the prefix is within the truncation tolerance of ``U(N)``; it stops sampling on a
  stated standard-error criterion (see its docstring).
- :func:`leave_one_out` is ``U(N) - U(N - i)``.

Every function takes a plain callable or a :class:`~din_lab.scoring.utility.CachedUtility`
and evaluates each distinct coalition once.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import numpy as np

from din_lab.errors import ConfigError
from din_lab.scoring.utility import Utility, cached, check_int, check_number

logger = logging.getLogger(__name__)

MAX_EXACT_PARTICIPANTS = 14
""":func:`exact_shapley` refuses more participants: ``2**14 = 16384`` utility evaluations."""

TMC_TOLERANCE = 0.01
"""Default convergence tolerance of :func:`tmc_shapley`, as a fraction of ``|U(N) - U(empty)|``."""

TMC_TRUNCATION = 0.01
"""Default truncation tolerance of :func:`tmc_shapley`, as a fraction of ``|U(N) - U(empty)|``."""

TMC_Z = 3.0
"""Standard errors that must fit inside the tolerance: ``TMC_Z * std_error <= tolerance``."""


@dataclass(frozen=True, kw_only=True)
class ShapleyEstimate:
    """Shapley values with how they were obtained.

    ``values[i]`` is participant ``i``'s Shapley value (in utility units, may be negative);
    ``std_errors[i]`` its Monte-Carlo standard error (zeros when exact); ``permutations`` the
    permutations sampled (0 when exact); ``utility_calls`` the utility evaluations this
    computation added (each usually a model evaluation); ``converged`` whether the stopping
    criterion was met (always true when exact); ``tolerance`` the absolute convergence
    tolerance (``tolerance * |U(N) - U(empty)|``; 0 when exact); ``total`` is
    ``U(N) - U(empty)``, the value being split; ``method`` is ``"exact"`` or ``"tmc"``.
    """

    values: np.ndarray
    std_errors: np.ndarray
    permutations: int
    utility_calls: int
    converged: bool
    tolerance: float
    total: float
    method: str


def exact_shapley(utility: Utility, n: int) -> np.ndarray:
    """Exact Shapley values of ``utility`` over ``n`` participants, from all ``2**n`` coalitions.

    Each coalition is evaluated once (cached). More than :data:`MAX_EXACT_PARTICIPANTS`
    participants raise :class:`ConfigError` naming ``participants``; use :func:`tmc_shapley`.
    """
    u = cached(utility, n)
    if n > MAX_EXACT_PARTICIPANTS:
        raise ConfigError(
            f"participants={n} is too many for exact Shapley values (2**{n} utility evaluations); "
            f"the limit is {MAX_EXACT_PARTICIPANTS}: use tmc_shapley")
    masks = np.arange(1 << n, dtype=np.int64)
    values = np.empty(1 << n, dtype=float)
    for m in range(1 << n):
        values[m] = u.value(tuple(i for i in range(n) if m >> i & 1))
    size = np.zeros(1 << n, dtype=np.int64)
    for i in range(n):
        size += (masks >> i) & 1
    # weight of a coalition S (i not in S) in phi_i: |S|! (n-|S|-1)! / n! = 1 / (n * C(n-1, |S|))
    weight = np.array([1.0 / (n * math.comb(n - 1, s)) for s in range(n)])
    phi = np.empty(n, dtype=float)
    for i in range(n):
        without = masks[((masks >> i) & 1) == 0]
        phi[i] = np.sum(weight[size[without]] * (values[without | (1 << i)] - values[without]))
    return phi


def tmc_shapley(
    utility: Utility,
    n: int,
    *,
    seed: int = 0,
    tolerance: float = TMC_TOLERANCE,
    truncation: float = TMC_TRUNCATION,
    max_permutations: int = 5000,
    min_permutations: int = 100,
    antithetic: bool = False,
) -> ShapleyEstimate:
    """Truncated Monte-Carlo Shapley values (Ghorbani & Zou 2019), reproducible from ``seed``.

    Sampling: each iteration draws a uniform random permutation (``numpy.random.default_rng(seed)``)
    and scans it, crediting each participant with ``U(prefix + i) - U(prefix)``. Truncation: once
    ``|U(N) - U(prefix)| < truncation * |U(N) - U(empty)|`` the rest of the permutation is credited
    0 without evaluating it (the scan of an accuracy utility stops once the prefix's model is as
    good as everyone's). Truncation is off when ``truncation=0`` or ``U(N) == U(empty)``.

    Convergence (the stated tolerance): sampling stops, with ``converged=True``, at the first
    permutation ``t >= min_permutations`` at which every participant's standard error (sample
    standard deviation of its marginals / sqrt(t)) satisfies

        ``TMC_Z * std_error <= tolerance * |U(N) - U(empty)|``   (``TMC_Z = 3``; scale 1 if U(N) == U(empty)),

    i.e. each participant's estimate is within ``tolerance`` (default 0.01, 1% of the value being split) of
    the Shapley value with about 99.7% confidence (normal approximation). This bounds the
    sampling error; truncation adds a bias: for a monotone utility each value is biased
    downwards by less than ``truncation * |U(N) - U(empty)|``, so a converged estimate lies
    within ``(tolerance + truncation) * |U(N) - U(empty)|`` of the exact value. Whatever the
    utility, the estimates sum to within ``truncation * |U(N) - U(empty)|`` of ``U(N) - U(empty)``
    (exactly to it, up to rounding, when ``truncation=0``). After ``max_permutations`` without
    meeting the criterion the estimate is returned with ``converged=False`` (and a warning logged).
    ``min_permutations`` guards against stopping on a standard error estimated from too few
    permutations (a participant that is rarely pivotal can show zero spread at first).

    ``antithetic=True`` scans each drawn permutation and its reverse and counts their mean as one
    sample (``permutations`` counts the pairs): a participant that joins early in one joins late
    in the other, so the pair's marginals are negatively correlated and the standard error falls
    for the same number of utility evaluations (Mitchell et al., JMLR 2022, on sampling Shapley).
    (Ghorbani & Zou's own rule, a mean *relative* change below 5%, is undefined for the zero
    value of a free-rider, the case rewards care most about; the standard-error rule is not.)
    """
    u = cached(utility, n)
    seed = check_int("seed", seed, minimum=0)
    tolerance = check_number("tolerance", tolerance, low=0.0, high=math.inf, low_open=True)
    truncation = check_number("truncation", truncation, low=0.0, high=1.0, low_open=False)
    min_permutations = check_int("min_permutations", min_permutations, minimum=2)
    max_permutations = check_int("max_permutations", max_permutations, minimum=min_permutations)

    calls_before = u.calls
    everyone = tuple(range(n))
    empty, full = u.value(()), u.value(everyone)
    total = full - empty
    scale = abs(total) if total != 0 else 1.0
    cut = truncation * abs(total)  # 0 disables truncation: |x| < 0 never holds
    target = tolerance * scale / TMC_Z
    rng = np.random.default_rng(seed)

    mean = np.zeros(n)
    m2 = np.zeros(n)  # Welford: sum of squared deviations from the running mean
    marginal = np.empty(n)
    t = 0
    converged = False
    truncated = 0
    def scan(perm: np.ndarray, into: np.ndarray) -> None:
        nonlocal truncated
        into.fill(0.0)
        prefix: list[int] = []
        previous = empty
        for k, i in enumerate(perm):
            if abs(full - previous) < cut:
                truncated += 1
                break
            bisect.insort(prefix, int(i))
            current = full if k == n - 1 else u.value(tuple(prefix))
            into[i] = current - previous
            previous = current

    mirrored = np.empty(n)
    while t < max_permutations:
        perm = rng.permutation(n)
        scan(perm, marginal)
        if antithetic:
            scan(perm[::-1], mirrored)
            marginal += mirrored
            marginal /= 2.0
        t += 1
        delta = marginal - mean
        mean += delta / t
        m2 += delta * (marginal - mean)
        if t >= min_permutations:
            se = np.sqrt(m2 / (t - 1) / t)
            if float(se.max()) <= target:
                converged = True
                break
    std_errors = np.sqrt(m2 / (t - 1) / t) if t > 1 else np.full(n, np.inf)
    calls = u.calls - calls_before
    if converged:
        logger.info("TMC Shapley: %d participants converged after %d permutations (%d truncated), "
                    "%d utility evaluations", n, t, truncated, calls)
    else:
        logger.warning("TMC Shapley: %d participants NOT converged after %d permutations: max standard error "
                       "%.3g > %.3g (tolerance %.3g / %g)", n, t, float(std_errors.max()), target,
                       tolerance * scale, TMC_Z)
    return ShapleyEstimate(values=mean.copy(), std_errors=std_errors, permutations=t, utility_calls=calls,
                           converged=converged, tolerance=tolerance * scale, total=total, method="tmc")


def leave_one_out(utility: Utility, n: int) -> np.ndarray:
    """Leave-one-out values ``U(N) - U(N - i)`` (``n + 1`` utility evaluations).

    Cheap, but blind to redundancy: two participants with identical data both get about 0.
    """
    u = cached(utility, n)
    full = u.value(tuple(range(n)))
    return np.array([full - u.value(tuple(j for j in range(n) if j != i)) for i in range(n)])
