"""din_lab.learning.models and params: building, seeding, HE readiness, flat vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.errors import ConfigError
from din_lab.learning import MODELS, ModelSpec, ParamLayout, build_model, flatten, stacked_state, unflatten


@pytest.mark.parametrize("name", MODELS)
def test_models_map_features_to_logits(name):
    model = build_model(ModelSpec(name=name), num_features=64, num_classes=10, seed=0)
    out = model(torch.rand(5, 64))
    assert out.shape == (5, 10) and out.dtype == torch.float32
    assert not list(model.buffers())


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = flatten(build_model(ModelSpec(name="mlp", hidden=(16, 8)), num_features=13, num_classes=3, seed=7))
    b = flatten(build_model(ModelSpec(name="mlp", hidden=(16, 8)), num_features=13, num_classes=3, seed=7))
    c = flatten(build_model(ModelSpec(name="mlp", hidden=(16, 8)), num_features=13, num_classes=3, seed=8))
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.size == 13 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3
    assert np.abs(a[:16]).max() <= 1 / np.sqrt(13)  # fc0.bias, uniform in +-1/sqrt(fan_in)


def test_square_activation_and_he_ready():
    sq = build_model(ModelSpec(name="mlp", hidden=(4,), activation="square"), num_features=3, num_classes=2, seed=0)
    x = torch.randn(6, 3)
    h = sq.fc0(x)
    assert torch.allclose(sq(x), sq.fc1(h * h))
    assert ModelSpec(name="logreg").he_ready
    assert ModelSpec(name="mlp", activation="square").he_ready
    assert not ModelSpec(name="mlp", activation="relu").he_ready
    assert not ModelSpec(name="cnn").he_ready


def test_spec_validation_and_round_trip():
    spec = ModelSpec(name="mlp", hidden=[32, 16], activation="square")
    assert spec.hidden == (32, 16)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    for bad in (
        dict(name="resnet"),
        dict(activation="tanh"),
        dict(name="mlp", hidden=()),
        dict(hidden=(0,)),
        dict(hidden=(2.5,)),
    ):
        with pytest.raises(ConfigError, match="model"):
            ModelSpec(**bad)
    with pytest.raises(ConfigError, match="unknown settings"):
        ModelSpec.from_dict({"name": "mlp", "depth": 3})
    with pytest.raises(ConfigError, match="cnn"):
        build_model(ModelSpec(name="cnn"), num_features=30, num_classes=2, seed=0)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(ModelSpec(), num_features=4, num_classes=1, seed=0)


def test_layout_order_is_sorted_names():
    cnn = build_model(ModelSpec(name="cnn"), num_features=64, num_classes=10, seed=0)
    layout = ParamLayout.of(cnn)
    assert layout.names == ("conv0.bias", "conv0.weight", "conv1.bias", "conv1.weight", "fc.bias", "fc.weight")
    assert layout.offsets[:3] == (0, 8, 8 + 72)
    v = flatten(cnn)
    assert v.dtype == np.float32 and v.shape == (layout.size,)
    assert np.array_equal(v[8:80], cnn.conv0.weight.detach().numpy().reshape(-1))
    # the insertion order of a state mapping does not matter
    reversed_state = dict(reversed(list(cnn.state_dict().items())))
    assert np.array_equal(flatten(reversed_state), v)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(MODELS), st.integers(0, 1000))
def test_flatten_unflatten_round_trip(name, seed):
    model = build_model(ModelSpec(name=name), num_features=64, num_classes=10, seed=seed)
    v = flatten(model)
    state = unflatten(v, like=model)
    assert list(state) == sorted(model.state_dict())
    other = build_model(ModelSpec(name=name), num_features=64, num_classes=10, seed=seed + 1)
    other.load_state_dict(state)
    assert np.array_equal(flatten(other), v)
    assert np.array_equal(flatten(unflatten(v, like=ParamLayout.of(model))), v)
    stacked = stacked_state(np.stack([v, 2 * v]), like=model)
    assert all(t.shape[0] == 2 and torch.equal(t[1], 2 * state[n]) for n, t in stacked.items())


def test_flatten_errors():
    model = build_model(ModelSpec(), num_features=4, num_classes=3, seed=0)
    with pytest.raises(ConfigError, match="params"):
        unflatten(np.zeros(3), like=model)
    with pytest.raises(ConfigError, match="missing"):
        flatten({"fc0.weight": np.zeros((3, 4))}, layout=ParamLayout.of(model))
    with pytest.raises(ConfigError, match="shape"):
        flatten({"fc0.weight": np.zeros((4, 3)), "fc0.bias": np.zeros(3)}, layout=ParamLayout.of(model))
    with pytest.raises(ConfigError, match="buffers"):
        flatten(torch.nn.BatchNorm1d(3))
