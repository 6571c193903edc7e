"""din_lab.learning.datasets: bundled data sets, the synthetic energy set, splits and scaling."""

from __future__ import annotations

import numpy as np
import pytest

from din_lab.errors import ConfigError
from din_lab.learning import DATASETS, ENERGY_FEATURES, load_dataset, make_energy

SHAPES = {"digits": (1797, 64, 10), "breast_cancer": (569, 30, 2), "wine": (178, 13, 3), "energy": (2400, 11, 3)}


@pytest.mark.parametrize("name", DATASETS)
def test_shapes_dtypes_and_split(name):
    d = load_dataset(name, seed=0)
    total, features, classes = SHAPES[name]
    assert d.name == name and d.num_features == features and d.num_classes == classes
    assert d.num_train + d.num_test == total
    assert d.num_test == pytest.approx(0.25 * total, abs=1)
    assert d.X_train.dtype == np.float32 and d.X_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.X_train.shape == (d.num_train, features) and d.X_test.shape == (d.num_test, features)
    assert set(np.unique(d.y_train)) == set(range(classes)) == set(np.unique(d.y_test))
    assert len(d.feature_names) == features and len(d.class_names) == classes
    assert np.all(np.isfinite(d.X_train)) and np.all(np.isfinite(d.X_test))
    with pytest.raises(ValueError):
        d.X_train[0, 0] = 1.0  # read-only


@pytest.mark.parametrize("name", DATASETS)
def test_same_seed_same_arrays_other_seed_other_split(name):
    a, b, c = load_dataset(name, seed=3), load_dataset(name, seed=3), load_dataset(name, seed=4)
    for field in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.X_train, c.X_train)


def test_scaling_fitted_on_train_only():
    d = load_dataset("wine", seed=1)
    assert np.allclose(d.X_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(d.X_train.std(axis=0), 1.0, atol=1e-4)
    assert not np.allclose(d.X_test.mean(axis=0), 0.0, atol=1e-3)  # test statistics were not used
    digits = load_dataset("digits", seed=0)
    assert digits.image_shape == (8, 8)
    assert digits.X_train.min() == 0.0 and digits.X_train.max() == 1.0


def test_stratified_split_keeps_class_shares():
    d = load_dataset("breast_cancer", seed=0)
    assert abs(d.y_train.mean() - d.y_test.mean()) < 0.02


def test_energy_generator_is_seeded_and_balanced():
    X1, y1 = make_energy(num_households=30, hours_per_household=10, seed=5)
    X2, y2 = make_energy(num_households=30, hours_per_household=10, seed=5)
    X3, _ = make_energy(num_households=30, hours_per_household=10, seed=6)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2) and not np.array_equal(X1, X3)
    assert X1.shape == (300, len(ENERGY_FEATURES)) and X1.dtype == np.float32
    assert np.all(np.abs(np.bincount(y1, minlength=3) - 100) <= 1)
    # the default set is fixed: the load seed only changes the split
    a, b = load_dataset("energy", seed=0), load_dataset("energy", seed=1)
    assert np.array_equal(
        np.sort(np.concatenate([a.y_train, a.y_test])), np.sort(np.concatenate([b.y_train, b.y_test]))
    )


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ConfigError, match=r"dataset: unknown name 'mnist'.*digits, breast_cancer, wine, energy"):
        load_dataset("mnist", seed=0)
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("wine", seed=-1)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("wine", seed=0, test_fraction=1.0)
    with pytest.raises(ConfigError):
        make_energy(num_households=0)
