"""Encrypted evaluation (din_lab.he) against the plaintext reference: the lab's HE-ready models,
trained on digits and breast cancer, give logits within 1e-3 and identical accuracy under CKKS;
two evaluators in separate processes produce byte-identical outputs; bad contexts, ciphertexts
and models are refused with typed errors before any work."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.errors import ConfigError
from din_lab.he import (
    EncryptedTable,
    EvaluationPool,
    HEDepthError,
    HEError,
    HEModel,
    HEParameterError,
    HEParams,
    Linear,
    OwnerKeys,
    SecretKeyError,
    Square,
    encrypt_test_set,
    evaluate,
    load_public_context,
    params_for_depth,
    public_context_bytes,
)
from din_lab.learning import (
    ModelSpec,
    TrainingConfig,
    build_model,
    flatten,
    load_dataset,
    train_local_batched,
    unflatten,
)
from din_lab.roles.encrypted_evaluation import he_model


def trained(dataset: str, spec: ModelSpec):
    data = load_dataset(dataset, seed=0)
    model = build_model(spec, num_features=data.num_features, num_classes=data.num_classes, seed=0)
    result = train_local_batched(model, [(data.X_train, data.y_train)], config=TrainingConfig(epochs=5), seed=0)
    with torch.no_grad():
        for name, value in unflatten(result.params[0], like=model).items():
            model.get_parameter(name).copy_(value)
    return data, model


@pytest.fixture(scope="module", params=[("digits", "logreg"), ("breast_cancer", "logreg"), ("digits", "mlp"),
                                        ("breast_cancer", "mlp")], ids=lambda p: "-".join(p))
def case(request):
    dataset, name = request.param
    spec = ModelSpec(name=name, hidden=(16,), activation="square")
    data, model = trained(dataset, spec)
    hem = he_model(model)
    params = params_for_depth(hem.depth)
    keys = OwnerKeys(params)
    enc = encrypt_test_set(data.X_test, context=keys.context, params=params)
    return data, model, hem, keys, enc


def test_encrypted_logits_and_accuracy_match_plaintext(case):
    data, model, hem, keys, enc = case
    assert he_model(model, flatten(model)).plaintext(data.X_test[:5]).tolist() == hem.plaintext(data.X_test[:5]).tolist()
    public = load_public_context(keys.public_context(), params=keys.params)
    test_set = EncryptedTable.from_bytes(enc.to_bytes(), context=public, kind="test-set", params=keys.params)
    outputs = evaluate(hem, test_set, context=public)
    digest = outputs.digest()
    logits = outputs.decrypt(keys.context)
    assert outputs.digest() == digest  # decrypting leaves the committee-agreed ciphertexts as they were
    back = EncryptedTable.from_bytes(outputs.to_bytes(), context=keys.context, kind="outputs", params=keys.params)
    np.testing.assert_array_equal(back.decrypt(keys.context), logits)
    with torch.no_grad():
        reference = model(torch.from_numpy(np.array(data.X_test))).double().numpy()
    np.testing.assert_allclose(hem.plaintext(data.X_test), reference, atol=1e-4)  # the converter is faithful
    assert np.abs(logits - reference).max() < 1e-3
    assert (logits.argmax(1) == reference.argmax(1)).all()  # accuracy identical
    accuracy = float((logits.argmax(1) == data.y_test).mean())
    assert accuracy > (0.85 if data.num_classes == 10 else 0.9)


EVALUATOR = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from din_lab.he import EncryptedTable, HEModel, HEParams, Linear, Square, evaluate, load_public_context
    params = HEParams.from_json(sys.argv[1])
    ctx = load_public_context(open(sys.argv[2], "rb").read(), params=params)
    table = EncryptedTable.from_bytes(open(sys.argv[3], "rb").read(), context=ctx, kind="test-set", params=params)
    arrays = np.load(sys.argv[4])
    layers = []
    for i in range(int(arrays["n"])):
        if f"w{i}" in arrays:
            layers.append(Linear(weight=arrays[f"w{i}"], bias=arrays[f"b{i}"]))
        else:
            layers.append(Square())
    print(evaluate(HEModel(layers=tuple(layers)), table, context=ctx).digest().hex())
""")


@pytest.mark.parametrize("depth", [1, 3])
def test_two_evaluators_in_separate_processes_get_identical_bytes(tmp_path, depth):
    """Byte-identical outputs (hashed) from two processes, with an exact zero weight and bias."""
    rng = np.random.default_rng(depth)
    first = rng.normal(size=(30, 2 if depth == 1 else 8)) * (1.0 if depth == 1 else 0.2)
    first[0, 0] = 0.0
    if depth == 1:
        first[1, 1] = 0.0
        layers = (Linear(weight=first, bias=np.array([0.0, 0.3])),)
    else:
        last = rng.normal(size=(8, 2))
        last[1, 1] = 0.0
        layers = (Linear(weight=first, bias=rng.normal(size=8) * 0.1), Square(), Linear(weight=last, bias=np.zeros(2)))
    model = HEModel(layers=layers)
    params = params_for_depth(model.depth)
    keys = OwnerKeys(params)
    x = load_dataset("breast_cancer", seed=0).X_test
    (tmp_path / "ctx").write_bytes(keys.public_context())
    (tmp_path / "x").write_bytes(encrypt_test_set(x, context=keys.context, params=params).to_bytes())
    arrays = {"n": len(layers)}
    for i, layer in enumerate(layers):
        if isinstance(layer, Linear):
            arrays[f"w{i}"], arrays[f"b{i}"] = layer.weight, layer.bias
    np.savez(tmp_path / "model.npz", **arrays)
    digests = {subprocess.run([sys.executable, "-c", EVALUATOR, params.to_json(), str(tmp_path / "ctx"),
                               str(tmp_path / "x"), str(tmp_path / "model.npz")], capture_output=True, text=True,
                              check=True, timeout=300).stdout.strip() for _ in range(2)}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_secret_keys_are_never_published():
    keys = OwnerKeys(params_for_depth(1))
    with pytest.raises(SecretKeyError):
        public_context_bytes(keys.context)
    with pytest.raises(SecretKeyError):
        load_public_context(keys.context.serialize(save_secret_key=True), params=keys.params)
    public = load_public_context(keys.public_context(), params=keys.params)
    assert not public.is_private() and not public.has_galois_keys()
    assert len(keys.public_context()) < 2.5e6  # about 1.9 MB without Galois keys
    with pytest.raises(HEError):
        encrypt_test_set([[1.0]], context=keys.context, params=keys.params).decrypt(public)


def test_wrong_parameters_are_refused():
    small, large = params_for_depth(1), params_for_depth(3)
    keys = OwnerKeys(small)
    with pytest.raises(HEParameterError, match="16384"):
        load_public_context(keys.public_context(), params=large)
    with pytest.raises(HEParameterError):
        load_public_context(b"not a context", params=small)
    same_total = OwnerKeys(HEParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(40, 60, 40, 60), scale_bits=30))
    with pytest.raises(HEParameterError, match="primes"):  # 200 bits too, but other primes
        load_public_context(same_total.public_context(), params=small)
    enc = encrypt_test_set(np.ones((4, 3)), context=keys.context, params=small).to_bytes()
    other = OwnerKeys(large)
    with pytest.raises(HEParameterError):  # a test set recorded with other parameters
        EncryptedTable.from_bytes(enc, context=other.context, kind="test-set", params=large)
    with pytest.raises(HEParameterError):  # outputs offered as a test set
        EncryptedTable.from_bytes(enc, context=keys.context, kind="outputs", params=small)
    with pytest.raises(HEParameterError):
        EncryptedTable.from_bytes(enc[:-10], context=keys.context, kind="test-set", params=small)


def test_a_model_deeper_than_the_context_is_refused_before_any_work():
    keys = OwnerKeys(params_for_depth(1))
    enc = encrypt_test_set(np.ones((4, 3)), context=keys.context, params=keys.params)
    deep = HEModel(layers=(Linear(weight=np.ones((3, 2)), bias=np.zeros(2)), Square(),
                           Linear(weight=np.ones((2, 2)), bias=np.zeros(2))))
    with pytest.raises(HEDepthError, match="N = 16384, primes \\[60, 40, 40, 40, 60\\]"):
        evaluate(deep, enc, context=keys.context)
    with pytest.raises(HEError, match="reads 2 features"):
        evaluate(HEModel(layers=(Linear(weight=np.ones((2, 2)), bias=np.zeros(2)),)), enc, context=keys.context)


def test_models_he_cannot_evaluate_are_refused():
    relu_mlp = build_model(ModelSpec(name="mlp", activation="relu"), num_features=4, num_classes=2, seed=0)
    with pytest.raises(ConfigError, match="square activation"):
        he_model(relu_mlp)
    cnn = build_model(ModelSpec(name="cnn"), num_features=64, num_classes=10, seed=0)
    with pytest.raises(ConfigError, match="no CKKS evaluation"):
        he_model(cnn)
    with pytest.raises(ConfigError):
        HEModel(layers=(Square(),))
    with pytest.raises(ConfigError):
        HEModel(layers=(Linear(weight=np.ones((3, 2)), bias=np.zeros(2)), Linear(weight=np.ones((3, 2)),
                                                                                  bias=np.zeros(2))))
    with pytest.raises(ConfigError):
        Linear(weight=np.full((2, 2), np.nan), bias=np.zeros(2))
    w = np.ones((2, 2))
    layer = Linear(weight=w, bias=np.zeros(2))
    w[0, 0] = np.nan  # the caller's array; the layer keeps its own, read-only copy
    assert np.isfinite(layer.weight).all() and not layer.weight.flags.writeable


@pytest.mark.parametrize("depth", [1, 2])
def test_a_tiny_largest_weight_does_not_spoil_the_folded_bias(depth):
    """The last layer's bias is folded into its largest weight's input; with weights a few times the
    smallest encodable one the stored (rounded) weight must be used, or the bias error is that
    rounding times 10 (about 1 here). What remains is the weights' own rounding."""
    keys = OwnerKeys(params_for_depth(depth))
    least = keys.params.min_weight
    model = HEModel(layers=(Linear(weight=np.array([[3.3], [2.1], [1.4]]) * least, bias=np.array([10.0])),))
    x = np.random.default_rng(0).normal(size=(50, 3))
    out = evaluate(model, encrypt_test_set(x, context=keys.context, params=keys.params), context=keys.context)
    rounding = 2.0 ** -(keys.params.weight_scale_bits + 1) * np.abs(x).sum(axis=1, keepdims=True)
    assert (np.abs(out.decrypt(keys.context) - model.plaintext(x)) <= rounding + 1e-6).all()


def test_the_depth_one_parameters_hold_outputs_up_to_their_bound():
    """Logistic regression's products use the one data prime: outputs decrypt correctly up to the
    stated bound (1,024), weights held at 2^18 and inputs at 2^31."""
    params = params_for_depth(1)
    keys = OwnerKeys(params)
    bound = params.output_bound(1)
    assert bound == 1024 and params.value_scale == 2.0 ** 13
    x = np.random.default_rng(3).uniform(-1, 1, size=(40, 2))
    model = HEModel(layers=(Linear(weight=np.array([[400.0, -3e-7], [500.0, 0.0]]), bias=np.array([20.0, 1e-9])),))
    assert np.abs(model.plaintext(x)).max() < bound
    out = evaluate(model, encrypt_test_set(x, context=keys.context, params=params), context=keys.context)
    # no wrap-around (that would be off by ~2,048); the noise grows with the weights (measured up to
    # 1.8e-6 per unit of a column's sum |w|: 1.7e-3 here), so allow ten times that
    noise = 2e-5 * (1 + np.abs(model.layers[0].weight).sum(axis=0))
    assert (np.abs(out.decrypt(keys.context) - model.plaintext(x)) <= noise).all()


def test_crafted_tables_are_refused_with_typed_errors():
    keys = OwnerKeys(params_for_depth(1))
    good = encrypt_test_set(np.ones((4, 3)), context=keys.context, params=keys.params).to_bytes()
    import json
    import struct

    head = struct.Struct(">4sBBI")
    _, _, _, hlen = head.unpack_from(good)
    header = json.loads(good[head.size:head.size + hlen])
    body = good[head.size + hlen:]
    for change in ({"samples": 0, "chunks": 0}, {"samples": -5}, {"columns": -3}, {"columns": 0, "chunks": 10**18},
                   {"samples": 1e400}, {"samples": 5}, {"columns": 4}):
        h = json.dumps({**header, **change}).encode()
        with pytest.raises(HEParameterError):
            EncryptedTable.from_bytes(head.pack(b"DNHE", 1, 1, len(h)) + h + body, context=keys.context,
                                      kind="test-set", params=keys.params)
    deep = b"[" * 100_000
    with pytest.raises(HEParameterError):
        EncryptedTable.from_bytes(head.pack(b"DNHE", 1, 1, len(deep)) + deep, context=keys.context, kind="test-set",
                                  params=keys.params)


def test_parameters_per_depth_respect_128_bit_security():
    assert params_for_depth(1) == HEParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 49), scale_bits=31,
                                           weight_scale_bits=18)
    assert params_for_depth(2) == HEParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 40, 60))
    assert params_for_depth(3) == HEParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))
    assert [params_for_depth(d).max_depth for d in (1, 2, 3)] == [1, 2, 3]
    assert params_for_depth(3).weight_scale_bits == 40 and params_for_depth(3).value_scale == 1
    with pytest.raises(ConfigError, match="security"):
        HEParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))
    with pytest.raises(ConfigError, match="security"):
        HEParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 50), scale_bits=31, weight_scale_bits=18)
    with pytest.raises(ConfigError, match="without rescaling"):  # a rescale would divide away the wrong scale
        HEParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 60), scale_bits=40, weight_scale_bits=20)
    with pytest.raises(ConfigError, match="cannot hold"):  # no room above the products at 2^80
        HEParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 49), scale_bits=40)
    assert HEParams.from_json(params_for_depth(1).to_json()) == params_for_depth(1)
    legacy = '{"coeff_mod_bit_sizes":[60,40,40,60],"poly_modulus_degree":8192,"scale_bits":40}'
    assert HEParams.from_json(legacy) == params_for_depth(2)
    with pytest.raises(ConfigError):
        params_for_depth(0)
    assert HEParams.from_json(params_for_depth(3).to_json()) == params_for_depth(3)


def test_outputs_do_not_depend_on_which_copy_of_the_context_is_passed():
    """The rescale switch must reach the context the ciphertexts are linked to."""
    keys = OwnerKeys(params_for_depth(1))
    public = keys.public_context()
    loaded_with = load_public_context(public, params=keys.params)
    other_copy = load_public_context(public, params=keys.params)
    data = encrypt_test_set(np.random.default_rng(1).normal(size=(20, 4)), context=keys.context,
                            params=keys.params).to_bytes()
    model = HEModel(layers=(Linear(weight=np.arange(8.0).reshape(4, 2) / 10, bias=np.array([0.5, -0.5])),))
    table = EncryptedTable.from_bytes(data, context=loaded_with, kind="test-set", params=keys.params)
    same = evaluate(model, table, context=loaded_with).digest()
    table = EncryptedTable.from_bytes(data, context=loaded_with, kind="test-set", params=keys.params)
    assert evaluate(model, table, context=other_copy).digest() == same


def _pool_fixture(depth: int, samples: int = 300):
    keys = OwnerKeys(params_for_depth(depth))
    context = load_public_context(keys.public_context(), params=keys.params)
    x = np.random.default_rng(5).normal(size=(samples, 6))
    table = EncryptedTable.from_bytes(encrypt_test_set(x, context=keys.context, params=keys.params).to_bytes(),
                                      context=context, kind="test-set", params=keys.params)
    return keys, context, table


@pytest.mark.parametrize("depth", [1, 3])
def test_the_evaluation_pool_gives_the_bytes_of_one_process(depth):
    """Workers split a linear model's classes (or take whole deeper models): the same digests as
    evaluate() in this process, exact zero weights included, and the processes are gone after."""
    keys, context, table = _pool_fixture(depth)
    rng = np.random.default_rng(depth)
    models = []
    for _ in range(3):
        if depth == 1:
            w = rng.normal(size=(6, 5))
            w[2, 1] = 0.0
            models.append(HEModel(layers=(Linear(weight=w, bias=rng.normal(size=5)),)))
        else:
            models.append(HEModel(layers=(Linear(weight=rng.normal(size=(6, 4)) * 0.3, bias=np.zeros(4)), Square(),
                                          Linear(weight=rng.normal(size=(4, 3)), bias=rng.normal(size=3)))))
    expected = [evaluate(m, table, context=context).digest() for m in models]
    with EvaluationPool(context=context, test_set=table, workers=2) as pool:
        procs = list(pool._procs)
        got = pool.evaluate(models)
        assert [t.digest() for t in got] == expected
        assert pool.evaluate([]) == []
        logits = EncryptedTable.from_bytes(got[0].to_bytes(), context=keys.context, kind="outputs",
                                           params=keys.params).decrypt(keys.context)
        assert logits.shape == (table.samples, models[0].outputs)
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(HEError, match="closed"):
        pool.evaluate(models)


def test_the_evaluation_pool_refuses_bad_input_with_typed_errors():
    keys, context, table = _pool_fixture(1, samples=40)
    for workers in (0, -1, True, 2.0, 65):
        with pytest.raises(ConfigError):
            EvaluationPool(context=context, test_set=table, workers=workers)
    with pytest.raises(SecretKeyError):  # the owner's keys never go to a worker
        EvaluationPool(context=keys.context, test_set=table, workers=1)
    deep = HEModel(layers=(Linear(weight=np.ones((6, 2)), bias=np.zeros(2)), Square(),
                           Linear(weight=np.ones((2, 2)), bias=np.zeros(2))))
    with EvaluationPool(context=context, test_set=table, workers=2) as pool:
        with pytest.raises(HEDepthError, match="16384"):
            pool.evaluate([HEModel(layers=(Linear(weight=np.ones((6, 2)), bias=np.zeros(2)),)), deep])
        with pytest.raises(HEError, match="features"):
            pool.evaluate([HEModel(layers=(Linear(weight=np.ones((5, 2)), bias=np.zeros(2)),))])
        good = HEModel(layers=(Linear(weight=np.ones((6, 2)), bias=np.zeros(2)),))
        huge = HEModel(layers=(Linear(weight=np.full((6, 2), 1e15), bias=np.zeros(2)),))
        with pytest.raises(HEError):
            evaluate(huge, table, context=context)  # too large to encode, in this process ...
        with pytest.raises(HEError, match="in a worker"):
            pool.evaluate([good, huge])  # ... and in a worker, which answers with the error
        assert len(pool.evaluate([good])) == 1  # still usable after refusals
        pool._procs[0].kill()
        pool._procs[0].wait()
        with pytest.raises(HEError, match="worker"):
            pool.evaluate([good])
        with pytest.raises(HEError, match="closed"):
            pool.evaluate([good])


@functools.cache
def _depth1_keys() -> OwnerKeys:
    return OwnerKeys(params_for_depth(1))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.integers(0, 2**31 - 1), st.floats(0.01, 30.0),
       st.floats(0.0, 0.5))
def test_property_depth_one_logits_match_plaintext_within_the_stated_rounding(features, outputs, seed, scale, zeros):
    """Any linear model whose logits stay below the parameters' output bound decrypts to its
    plaintext logits within the weights' rounding (2^-19 per weight times |x|) plus the noise."""
    keys = _depth1_keys()
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features, outputs)) * scale / features
    w[rng.random(w.shape) < zeros] = 0.0
    x = rng.normal(size=(30, features))
    model = HEModel(layers=(Linear(weight=w, bias=rng.normal(size=outputs)),))
    reference = model.plaintext(x)
    assert np.abs(reference).max() < keys.params.output_bound(1)
    got = evaluate(model, encrypt_test_set(x, context=keys.context, params=keys.params),
                   context=keys.context).decrypt(keys.context)
    rounding = keys.params.min_weight * np.abs(x).sum(axis=1, keepdims=True)  # rounding or a substituted 0
    assert (np.abs(got - reference) <= rounding + 1e-4 * (1 + np.abs(w).sum(axis=0))).all()
