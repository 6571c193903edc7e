"""Data sets that ship with the lab: nothing is downloaded at run time.

``load_dataset(name, seed=...)`` returns a :class:`Dataset` (a stratified train/test split, features
scaled with statistics of the *training* part only) for one of :data:`DATASETS`:

- ``"digits"``: scikit-learn's ``load_digits`` (1,797 8x8 grey images, 10 classes). Pixels are
  divided by 16, so they lie in [0, 1] and keep their image meaning (the CNN reads them as 8x8).
- ``"breast_cancer"``: scikit-learn's ``load_breast_cancer`` (569 samples, 30 features, 2 classes),
  standardized.
- ``"wine"``: scikit-learn's ``load_wine`` (178 samples, 13 features, 3 classes), standardized.
- ``"energy"``: a synthetic household-energy set from :func:`make_energy` (the DePIN story: smart
  meters that keep their readings), standardized. It is a *fixed* data set like the others: it is
  always generated with :data:`ENERGY_DATA_SEED`; the ``seed`` of :func:`load_dataset` only picks
  the train/test split.

The synthetic household-energy generator
----------------------------------------
:func:`make_energy` draws ``num_households`` households, each with fixed traits (occupants 1-5,
floor area, electric heating, an electric vehicle, rooftop solar), and samples
``hours_per_household`` random hours of a year for each. Per household-hour the features are
(:data:`ENERGY_FEATURES`): outdoor temperature (seasonal and daily cycle plus weather noise, deg C),
hour of day as ``sin``/``cos``, a weekend flag, whether someone is at home, the household traits,
and cloud cover. The hidden net consumption in kWh is a base load growing with floor area, plus
occupancy-driven load (cooking peaks 7-8 h and 18-20 h), electric heating below 15 deg C, cooling
above 24 deg C, evening EV charging, minus solar generation in daylight (scaled by cloud cover),
with log-normal noise. The target is the consumption band (:data:`ENERGY_CLASSES`): ``low``,
``medium``, ``high``, cut at the tertiles of the generated consumption, so the three classes are
balanced and every model of :mod:`din_lab.learning.models` applies unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

from din_lab.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "ENERGY_CLASSES",
    "ENERGY_DATA_SEED",
    "ENERGY_FEATURES",
    "Dataset",
    "load_dataset",
    "make_energy",
]

DATASETS: tuple[str, ...] = ("digits", "breast_cancer", "wine", "energy")
ENERGY_DATA_SEED = 20240601
ENERGY_FEATURES: tuple[str, ...] = (
    "temperature_c",
    "hour_sin",
    "hour_cos",
    "weekend",
    "occupied",
    "occupants",
    "floor_area_m2",
    "electric_heating",
    "electric_vehicle",
    "solar",
    "cloud_cover",
)
ENERGY_CLASSES: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True, eq=False, kw_only=True)
class Dataset:
    """A train/test split ready for training: ``X_*`` float32 ``(n, num_features)``, ``y_*`` int64
    labels in ``range(num_classes)``. Arrays are read-only. ``image_shape`` is ``(8, 8)`` for digits
    (row-major pixels), else ``None``."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_features: int
    num_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    seed: int = 0
    test_fraction: float = 0.25

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.y_test.shape[0])


def make_energy(
    *, num_households: int = 100, hours_per_household: int = 24, seed: int = ENERGY_DATA_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic household-energy set (module docstring): ``X`` float32 with the columns of
    :data:`ENERGY_FEATURES` (unscaled) and ``y`` int64 consumption bands 0/1/2. Same arguments, same
    arrays, bit for bit."""
    if num_households < 1 or hours_per_household < 1:
        raise ConfigError("make_energy: num_households and hours_per_household must be at least 1")
    if num_households * hours_per_household < 3:
        raise ConfigError("make_energy: need at least 3 samples for three consumption bands")
    if seed < 0:
        raise ConfigError("make_energy: seed must be non-negative")
    rng = np.random.default_rng(seed)
    h, k = num_households, hours_per_household
    # household traits
    occupants = rng.integers(1, 6, size=h)
    area = np.clip(rng.normal(60.0 + 20.0 * occupants, 20.0), 25.0, 250.0)
    heating = rng.random(h) < 0.35
    ev = rng.random(h) < 0.25
    solar = rng.random(h) < 0.3
    home_bias = rng.normal(0.0, 0.1, size=h)  # some households are at home more
    # the sampled hours
    day = rng.integers(0, 365, size=(h, k))
    hour = rng.integers(0, 24, size=(h, k))
    weekend = (day % 7) >= 5
    seasonal = 11.0 - 9.0 * np.cos(2.0 * np.pi * (day - 15) / 365.0)
    daily = 4.0 * np.sin(2.0 * np.pi * (hour - 9) / 24.0)
    temperature = seasonal + daily + rng.normal(0.0, 3.0, size=(h, k))
    cloud = rng.beta(2.0, 2.0, size=(h, k))
    away_hours = (hour >= 8) & (hour < 17) & ~weekend
    p_home = np.where(away_hours, 0.3, 0.85) + home_bias[:, None]
    occupied = rng.random((h, k)) < np.clip(p_home, 0.05, 0.98)
    # hidden consumption (kWh in the hour)
    occ = occupants[:, None]
    base = 0.15 + 0.002 * area[:, None]
    cooking = np.isin(hour, (7, 8, 18, 19, 20)) * 0.6
    activity = occupied * (0.12 * occ + cooking)
    heat = heating[:, None] * np.maximum(0.0, 15.0 - temperature) * 0.006 * area[:, None]
    cool = np.maximum(0.0, temperature - 24.0) * 0.08 * (area[:, None] / 100.0)
    charging = ev[:, None] * ((hour >= 19) | (hour <= 1)) * (rng.random((h, k)) < 0.5) * 3.5
    sun = np.maximum(0.0, np.sin(np.pi * (hour - 6) / 14.0)) * (1.0 - 0.8 * cloud)
    daylight = 0.65 + 0.35 * np.cos(2.0 * np.pi * (day - 172) / 365.0)  # strongest at midsummer
    generation = solar[:, None] * sun * daylight * 2.5
    noise = rng.lognormal(0.0, 0.15, size=(h, k))
    consumption = (base + activity + heat + cool + charging) * noise - generation
    cuts = np.quantile(consumption, [1.0 / 3.0, 2.0 / 3.0])
    y = np.digitize(consumption, cuts).astype(np.int64).reshape(-1)
    X = np.stack(
        [
            temperature,
            np.sin(2.0 * np.pi * hour / 24.0),
            np.cos(2.0 * np.pi * hour / 24.0),
            weekend.astype(float),
            occupied.astype(float),
            np.broadcast_to(occ, (h, k)).astype(float),
            np.broadcast_to(area[:, None], (h, k)),
            np.broadcast_to(heating[:, None], (h, k)).astype(float),
            np.broadcast_to(ev[:, None], (h, k)).astype(float),
            np.broadcast_to(solar[:, None], (h, k)).astype(float),
            cloud,
        ],
        axis=-1,
    ).reshape(h * k, len(ENERGY_FEATURES))
    return X.astype(np.float32), y


def _raw(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...], tuple[int, int] | None]:
    if name == "digits":
        b = load_digits()
        return b.data, b.target, tuple(f"pixel_{i // 8}_{i % 8}" for i in range(64)), tuple(map(str, range(10))), (8, 8)
    if name == "breast_cancer":
        b = load_breast_cancer()
        return b.data, b.target, tuple(map(str, b.feature_names)), tuple(map(str, b.target_names)), None
    if name == "wine":
        b = load_wine()
        return b.data, b.target, tuple(map(str, b.feature_names)), tuple(map(str, b.target_names)), None
    households = int(name.partition(":")[2] or 100)
    X, y = make_energy(num_households=households)
    return X, y, ENERGY_FEATURES, ENERGY_CLASSES, None


def dataset_name_ok(name: str) -> bool:
    """A bundled data set's name, or ``energy:HOUSEHOLDS`` (the synthetic set at another size;
    ``energy`` is 100 households of 24 hours)."""
    if name in DATASETS:
        return True
    base, _, size = str(name).partition(":")
    return base == "energy" and size.isdigit() and 10 <= int(size) <= 100_000


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def load_dataset(name: str, *, seed: int, test_fraction: float = 0.25) -> Dataset:
    """Load a bundled data set, split it (stratified, ``test_fraction`` to test, shuffled by ``seed``)
    and scale the features with statistics of the training part only (digits: ``/16``; the others:
    standardized, a constant feature keeps scale 1). Same arguments, same arrays, bit for bit."""
    if not dataset_name_ok(name):
        raise ConfigError(f"dataset: unknown name {name!r}; valid names: {', '.join(DATASETS)} "
                          "(and energy:HOUSEHOLDS, 10 to 100000)")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"dataset: seed must be a non-negative integer, got {seed!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"dataset: test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    X, y, feature_names, class_names, image_shape = _raw(name)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    if name == "digits":
        X_train, X_test = X_train / 16.0, X_test / 16.0
    else:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std = np.where(std > 0.0, std, 1.0)
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    log.debug("loaded %s: %d train, %d test, seed %d", name, len(y_train), len(y_test), seed)
    return Dataset(
        name=name,
        X_train=_readonly(X_train.astype(np.float32)),
        y_train=_readonly(y_train),
        X_test=_readonly(X_test.astype(np.float32)),
        y_test=_readonly(y_test),
        num_features=int(X.shape[1]),
        num_classes=len(class_names),
        feature_names=feature_names,
        class_names=class_names,
        image_shape=image_shape,
        seed=int(seed),
        test_fraction=float(test_fraction),
    )
