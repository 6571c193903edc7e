"""din_lab.learning.training and evaluation: batched training equals the per-participant loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, log_loss

from din_lab.errors import ConfigError
from din_lab.learning import (
    DEFAULT_TRAINING,
    ModelSpec,
    TrainingConfig,
    build_model,
    evaluate,
    evaluate_many,
    flatten,
    load_dataset,
    train_local_batched,
    train_local_loop,
)

SIZES = (0, 1, 5, 16, 17, 40)  # unequal: empty, a single sample, partial and several batches


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _split(d, sizes=SIZES, start=0):
    out, off = [], start
    for n in sizes:
        out.append((d.X_train[off : off + n], d.y_train[off : off + n]))
        off += n
    return out


SGD = TrainingConfig(optimizer="sgd", lr=0.1, epochs=5)
CASES = [
    ("logreg", "relu", SGD, 1e-6),
    ("logreg", "relu", TrainingConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3, epochs=3), 1e-6),
    ("mlp", "relu", SGD, 1e-6),
    ("mlp", "square", TrainingConfig(optimizer="sgd", lr=0.05, epochs=4, batch_size=8), 1e-6),
    ("cnn", "relu", TrainingConfig(optimizer="sgd", lr=0.1, epochs=3), 1e-6),
    ("cnn", "relu", TrainingConfig(optimizer="sgd", lr=0.1, momentum=0.5, epochs=2, batch_size=8), 1e-6),
    # Adam turns rounding noise in (near-)zero gradient coordinates into steps of up to ~lr (training.py
    # docstring): same semantics, looser tolerance (measured here: about 1e-7 for these short runs)
    ("logreg", "relu", DEFAULT_TRAINING, 1e-4),
    ("mlp", "relu", DEFAULT_TRAINING, 1e-4),
    ("cnn", "relu", TrainingConfig(epochs=2), 1e-4),
]


@pytest.mark.parametrize(("name", "activation", "config", "tolerance"), CASES)
def test_batched_equals_loop(digits, name, activation, config, tolerance):
    model = build_model(ModelSpec(name=name, activation=activation), num_features=64, num_classes=10, seed=1)
    before = flatten(model)
    data = _split(digits)
    batched = train_local_batched(model, data, config=config, seed=5)
    loop = train_local_loop(model, data, config=config, seed=5)
    assert batched.params.dtype == np.float32 and batched.params.shape == (len(SIZES), before.size)
    assert np.abs(batched.params - loop.params).max() <= tolerance
    assert np.array_equal(batched.num_samples, SIZES) and np.array_equal(loop.num_samples, SIZES)
    assert np.allclose(batched.train_loss[1:], loop.train_loss[1:], rtol=1e-5, atol=1e-5)
    # the empty participant keeps the global parameters exactly; everyone else moved
    assert np.array_equal(batched.params[0], before) and np.isnan(batched.train_loss[0])
    assert all(not np.array_equal(batched.params[k], before) for k in range(1, len(SIZES)))
    assert np.array_equal(flatten(model), before)  # the template is not modified


def test_result_depends_only_on_own_data_seed_and_id(digits):
    model = build_model(ModelSpec(name="mlp"), num_features=64, num_classes=10, seed=2)
    data = _split(digits, (30, 7, 50, 12))
    ids = [10, 11, 12, 13]
    all_four = train_local_batched(model, data, seed=9, participant_ids=ids)
    again = train_local_batched(model, data, seed=9, participant_ids=ids)
    assert np.array_equal(all_four.params, again.params)  # bit for bit
    with_sgd = train_local_batched(model, data, seed=9, participant_ids=ids, config=SGD)
    alone = train_local_batched(model, [data[1]], seed=9, participant_ids=[11], config=SGD)
    assert np.abs(alone.params[0] - with_sgd.params[1]).max() <= 1e-6
    chunked = train_local_batched(model, data, seed=9, participant_ids=ids, max_participants=3, config=SGD)
    assert np.abs(chunked.params - with_sgd.params).max() <= 1e-6
    other_seed = train_local_batched(model, data, seed=10, participant_ids=ids)
    assert not np.array_equal(other_seed.params, all_four.params)
    state = all_four.state(2)
    model_copy = build_model(ModelSpec(name="mlp"), num_features=64, num_classes=10, seed=3)
    model_copy.load_state_dict(state)
    assert np.array_equal(flatten(model_copy), all_four.params[2])


def test_global_params_and_global_torch_state(digits):
    model = build_model(ModelSpec(), num_features=64, num_classes=10, seed=0)
    start = np.zeros(flatten(model).size, dtype=np.float32)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    a = train_local_batched(model, _split(digits, (20, 20)), global_params=start, seed=0)
    b = train_local_batched(
        model,
        _split(digits, (20, 20)),
        global_params=dict(zip(("fc0.bias", "fc0.weight"), (torch.zeros(10), torch.zeros(10, 64)), strict=True)),
        seed=0,
    )
    assert np.array_equal(a.params, b.params)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)


def test_adversarial_data_is_whatever_the_caller_passes(digits):
    model = build_model(ModelSpec(), num_features=64, num_classes=10, seed=0)
    X, y = digits.X_train[:40], digits.y_train[:40]
    rng = np.random.default_rng(0)
    data = [(X, y), (X, 9 - y), (rng.normal(size=X.shape).astype(np.float32), rng.integers(0, 10, 40))]
    out = train_local_batched(model, data, seed=0)
    assert np.all(np.isfinite(out.params)) and len(out) == 3
    with pytest.raises(ConfigError, match=r"data\[1\] labels"):
        train_local_batched(model, [(X, y), (X, y + 10)], seed=0)
    with pytest.raises(ConfigError, match="features"):
        train_local_batched(model, [(X[:, :30], y)], seed=0)
    with pytest.raises(ConfigError, match=r"data\[1\] X"):
        train_local_batched(model, [(X, y), (X[:, :30], y)], seed=0)
    with pytest.raises(ConfigError, match="pairs"):
        train_local_batched(model, (X, y), seed=0)
    with pytest.raises(ConfigError, match="participant_ids"):
        train_local_batched(model, [(X, y)], seed=0, participant_ids=[1, 2])
    with pytest.raises(ConfigError, match="global_params"):
        train_local_batched(model, [(X, y)], seed=0, global_params=np.zeros(3))


def test_training_config_validation():
    assert TrainingConfig.from_dict(DEFAULT_TRAINING.to_dict()) == DEFAULT_TRAINING
    for bad in (
        dict(epochs=0),
        dict(batch_size=1.5),
        dict(lr=0),
        dict(lr=float("inf")),
        dict(optimizer="rmsprop"),
        dict(momentum=1.0),
        dict(optimizer="adam", momentum=0.5),
        dict(weight_decay=-1),
        dict(num_threads=0),
    ):
        with pytest.raises(ConfigError, match="training"):
            TrainingConfig(**bad)
    with pytest.raises(ConfigError, match="unknown settings"):
        TrainingConfig.from_dict({"epochs": 1, "rounds": 3})


def test_evaluate_matches_sklearn_and_evaluate_many(digits):
    model = build_model(ModelSpec(name="mlp"), num_features=64, num_classes=10, seed=4)
    trained = train_local_batched(model, _split(digits, (60, 200, 5)), seed=1)
    many = evaluate_many(model, digits.X_test, digits.y_test, params=trained.params, max_batch=2)
    for k, metrics in enumerate(many):
        one = evaluate(model, digits.X_test, digits.y_test, params=trained.params[k])
        assert one.accuracy == metrics.accuracy and one.f1_macro == pytest.approx(metrics.f1_macro, abs=1e-12)
        assert one.loss == pytest.approx(metrics.loss, rel=1e-5)
        m = build_model(ModelSpec(name="mlp"), num_features=64, num_classes=10, seed=0)
        m.load_state_dict(trained.state(k))
        with torch.no_grad():
            logits = m(torch.from_numpy(np.array(digits.X_test)))
        pred = logits.argmax(1).numpy()
        proba = torch.softmax(logits.double(), 1).numpy()
        assert metrics.accuracy == pytest.approx((pred == digits.y_test).mean())
        assert metrics.f1_macro == pytest.approx(f1_score(digits.y_test, pred, average="macro", zero_division=0))
        assert metrics.loss == pytest.approx(log_loss(digits.y_test, proba, labels=range(10)), rel=1e-4)
        assert metrics.num_samples == digits.num_test
    assert many[1].accuracy > many[2].accuracy  # 200 samples beat 5
    assert evaluate(model, digits.X_test, digits.y_test).to_dict().keys() == {
        "accuracy",
        "loss",
        "f1_macro",
        "num_samples",
    }
    broken = trained.params[:1].copy()
    broken[0, 0] = np.nan
    assert np.isnan(evaluate_many(model, digits.X_test, digits.y_test, params=broken)[0].loss)


def test_f1_macro_counts_only_present_classes():
    model = build_model(ModelSpec(), num_features=2, num_classes=4, seed=0)
    # weights that always predict class 1
    v = np.zeros(flatten(model).size, dtype=np.float32)
    v[1] = 5.0  # fc0.bias[1]
    X = np.zeros((4, 2), dtype=np.float32)
    y = np.array([0, 1, 1, 2])
    got = evaluate(model, X, y, params=v)
    assert got.accuracy == 0.5
    assert got.f1_macro == pytest.approx(f1_score(y, np.ones(4, dtype=int), average="macro", zero_division=0))
