"""Encrypted evaluation inside a DIN task (issue 6): the reward phase on the CKKS-encrypted test set
against the plaintext run of the same seed, the on-chain evidence, deviating and disputing
committees, and the configurations HE cannot evaluate."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from din_lab.cid import Cid
from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.he import EncryptedTable, EvaluationPool, HEParameterError, HEParams, load_public_context, params_for_depth
from din_lab.protocol.lab import Lab
from din_lab.roles import encrypted_evaluation as ee
from tests.helpers import finished

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(participants=12, subgroup_size=4, evaluators=7, evaluators_per_subgroup=3, rounds=1)


@pytest.fixture(scope="module")
def plaintext():
    return finished(ExperimentConfig(participants=20, seed=3, evaluation="plaintext"))


@pytest.fixture(scope="module")
def encrypted():
    return finished(ExperimentConfig(participants=20, seed=3, evaluation="he"))


def _by_address(summary: dict, key: str) -> dict[str, float]:
    return {p["address"]: p[key] for p in summary["participants"]}


def test_rewards_and_ranking_match_the_plaintext_run(plaintext, encrypted):
    """The scoring mode is fixed when the task is created, so the two runs' set-up transactions, and
    with them the block hashes that seed the subgroup draw, differ: the participants land in other
    subgroups and a Shapley score within a subgroup moves with its company (issue 17). What must not
    move: training (the global model is the mean over all accepted updates, whatever the partition),
    the pool and its full payout, and the order of magnitude of every reward."""
    _, plain = plaintext
    lab, enc = encrypted
    assert enc["final_accuracy"] == plain["final_accuracy"]
    assert enc["tokens"]["conserved"] is True and enc["tokens"]["left_in_task"] == 0
    assert enc["tokens"]["paid_participants"] == pytest.approx(plain["tokens"]["paid_participants"], abs=1e-6)
    p_rewards, e_rewards = _by_address(plain, "reward"), _by_address(enc, "reward")
    assert set(p_rewards) == set(e_rewards)
    he, pt = sorted(e_rewards.values()), sorted(p_rewards.values())  # the same distribution of rewards
    assert sum(abs(a - b) for a, b in zip(he, pt, strict=True)) <= 0.25 * sum(pt)
    assert any("encrypted evaluation" in n and "Trust assumption" in n for n in enc["notes"])


def test_the_chain_records_what_an_auditor_needs(encrypted):
    lab, _ = encrypted
    events = lab.chain.events
    published = events.where("EncryptedEvaluationSetPublished", address=lab.task.address)[0].args
    params = HEParams.from_json(published["params"])
    assert params == params_for_depth(1) and params.poly_modulus_degree == 4096  # logistic regression: depth 1
    context = load_public_context(lab.store.cat(Cid.from_chain(published["context"])), params=params)
    assert not context.is_private()
    table = EncryptedTable.from_bytes(lab.store.cat(Cid.from_chain(published["testSet"])), context=context,
                                      kind="test-set", params=params)
    assert (table.samples, table.columns) == lab.dataset.X_test.shape
    revealed = events.where("OutputsRevealed", address=lab.task.address)
    agreed = {e.args["subgroup"]: e.args["outputsDigest"] for e in events.where("ScoresPublished", address=lab.task.address)}
    final = len(lab.rounds) - 1
    assert set(agreed) == set(range(lab.rounds[final].groups))
    for e in revealed:  # every honest member: byte-identical outputs, stored under their CID
        assert e.args["digest"] == agreed[e.args["subgroup"]]
        assert hashlib.sha256(lab.store.cat(Cid.from_chain(e.args["outputs"]))).digest() == e.args["digest"]
    for e in events.where("ScoresPublished", address=lab.task.address):
        audit = json.loads(lab.store.cat(Cid.from_chain(e.args["audit"])))
        assert audit["outputs_digest"] == e.args["outputsDigest"].hex()
        assert audit["trust"] == ee.TRUST_NOTE
        assert all({"accuracy", "f1", "loss"} <= set(c) for c in audit["coalitions"])
        members = lab.rounds[final].members[e.args["subgroup"]]
        assert audit["scores"] == pytest.approx([lab.chain.call(lab.task.functions.scoreOf(m)) / 1e18 for m in members],
                                                abs=1e-9)
    # no plaintext test set went to the store: the only evaluation set on chain is the encrypted one
    assert not events.where("EvaluationSetPublished", address=lab.task.address)


def test_a_tampering_evaluator_is_slashed_and_the_scores_still_published():
    lab, s = finished(ExperimentConfig(**SMALL, malicious_evaluators=("0.15:random",), evaluation="he"))
    cheat = next(e for e in lab.evaluators if e.behaviour.malicious)
    slashed = {lab.name_of(e.args["evaluator"]): e.args["reason"]
               for e in lab.chain.events.where("EvaluatorSlashed", address=lab.task.address)}
    final = len(lab.rounds) - 1
    assert any(cheat.address in c for c in lab.rounds[final].committees.values())  # this seed seats it
    assert slashed.get(cheat.name) == "outputs outside the majority"
    assert all(reason == "outputs outside the majority" for reason in slashed.values())
    assert len(lab.chain.events.where("ScoresPublished", address=lab.task.address)) == lab.rounds[final].groups
    assert s["tokens"]["conserved"] is True


def test_a_dispute_pays_nothing_on_unresolved_scores():
    """Two of three members of every committee publish tampered outputs, each differently: no digest
    has a majority, the owner cannot publish, each subgroup is closed with scores 0 and nobody is paid
    a fee. The pool does not return to the owner: every final-round contributor gets an equal share.
    Every member's digest is unsupported (nobody else revealed it), so all are slashed: honest members
    compute byte-identical outputs, so with two honest members a majority would have formed."""
    config = ExperimentConfig(participants=6, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3, rounds=1,
                              malicious_evaluators=("0.67:random",), evaluation="he")
    lab, s = finished(config)
    F = lab.task.functions
    assert len(lab.chain.events.where("ScoresUnresolved", address=lab.task.address)) == lab.rounds[0].groups
    assert not lab.chain.events.where("ScoresPublished", address=lab.task.address)
    assert all(lab.chain.call(F.scoreOf(p.address)) == 0 for p in lab.participants)
    rewards = list(_by_address(s, "reward").values())
    assert max(rewards) - min(rewards) <= 1e-6 and sum(rewards) > 0
    scoring_opened = lab.chain.events.where("EncryptedEvaluationSetPublished", address=lab.task.address)[0].block
    assert not [e for e in lab.chain.events.where("FeePaid", address=lab.task.address) if e.block > scoring_opened]
    reasons = {e.args["reason"] for e in lab.chain.events.where("EvaluatorSlashed", address=lab.task.address)}
    assert reasons == {"unsupported outputs"}
    assert any("dispute" in n for n in s["notes"])
    assert s["tokens"]["conserved"] is True and s["tokens"]["left_in_task"] == 0


def test_a_lazy_evaluator_is_slashed_as_silent():
    lab, _ = finished(ExperimentConfig(**SMALL, malicious_evaluators=("0.15:lazy",), evaluation="he"))
    lazy = next(e for e in lab.evaluators if e.behaviour.malicious)
    reasons = {e.args["evaluator"]: e.args["reason"] for e in lab.chain.events.where("EvaluatorSlashed",
                                                                                      address=lab.task.address)}
    assert any(lazy.address in c for c in lab.rounds[0].committees.values())  # this seed seats it
    assert reasons[lazy.address] == "silent"


@pytest.mark.slow
def test_square_mlp_task_runs_encrypted():
    """The square-activation MLP (depth 3, N = 16384): each scorer coalition is its own encrypted model
    (one subgroup of three, whose three committee members each evaluate the three models: the suite's
    costliest CKKS work, nine encrypted models)."""
    lab, s = finished(ExperimentConfig(participants=3, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3,
                                       rounds=1, dataset="breast_cancer", model="mlp-square", scorer="accuracy",
                                       evaluation="he", contribution="subgroup"))  # as the plaintext run below
    published = lab.chain.events.where("EncryptedEvaluationSetPublished", address=lab.task.address)[0].args
    assert HEParams.from_json(published["params"]).poly_modulus_degree == 16384
    plain, p = finished(ExperimentConfig(participants=3, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3,
                                         rounds=1, dataset="breast_cancer", model="mlp-square", scorer="accuracy",
                                         evaluation="plaintext"))
    e_scores, p_scores = _by_address(s, "score"), _by_address(p, "score")
    assert len(e_scores) == 3 and all(0 < v <= 1 for v in e_scores.values())  # every model scored
    assert e_scores == pytest.approx(p_scores, abs=1e-9)  # accuracy: identical predictions


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_models_he_cannot_evaluate_are_refused_at_configuration(model):
    """Encrypted evaluation is the default: a model it cannot evaluate is refused before anything is
    deployed, naming the HE-ready models and the plaintext baseline."""
    for config in (ExperimentConfig(model=model), ExperimentConfig(model=model, evaluation="he")):
        with pytest.raises(ConfigError, match="mlp-square") as refused:
            Lab.create(config)
        assert "--evaluation plaintext" in str(refused.value)
    Lab.create(ExperimentConfig(model=model, evaluation="plaintext", rounds=1)).close()


@pytest.mark.parametrize("workers", [0, -2, 65, True, 1.5, "2"])
def test_bad_evaluation_worker_counts_name_the_field(workers):
    with pytest.raises(ConfigError, match="he_workers"):
        ExperimentConfig(evaluation="he", he_workers=workers)


def test_square_mlp_shapley_with_too_large_subgroups_is_refused():
    with pytest.raises(ConfigError, match="subgroup_size"):
        Lab.create(ExperimentConfig(participants=22, subgroup_size=11, model="mlp-square", evaluation="he"))


def test_crafted_outputs_are_refused_with_typed_errors(encrypted):
    lab, _ = encrypted
    e = lab.chain.events.where("OutputsRevealed", address=lab.task.address)[0]
    data = lab.store.cat(Cid.from_chain(e.args["outputs"]))
    keys = lab.owner.he_keys
    good = ee.EncryptedOutputs.from_bytes(data, context=keys.context, params=keys.params)
    assert good.digest() == e.args["digest"]
    for bad in (data[:10], b"XXXX" + data[4:], data + b"\0", data[:-1]):
        with pytest.raises(HEParameterError):
            ee.EncryptedOutputs.from_bytes(bad, context=keys.context, params=keys.params)
    other = HEParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))
    with pytest.raises(HEParameterError):
        ee.EncryptedOutputs.from_bytes(data, context=keys.context, params=other)
    # outputs naming players outside the subgroup are refused before anything is scored
    with pytest.raises(ee.HEError, match="players outside"):
        ee.score_outputs(good, secret_context=keys.context, y=lab.dataset.y_test, members=["0x" + "00" * 20],
                         scorer="shapley", seed=0, digest=good.digest())


def test_secure_aggregation_and_encrypted_evaluation_together():
    lab, s = finished(ExperimentConfig(**SMALL, secagg=True, evaluation="he"))
    assert len(lab.chain.events.where("ScoresPublished", address=lab.task.address)) == lab.rounds[0].groups
    assert sum(_by_address(s, "reward").values()) > 0
    assert s["tokens"]["conserved"] is True


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_linear_coalition_logits_follow_from_the_players_models(players, seed):
    """Why a committee evaluates only n + 1 linear models: the logits of any coalition's FedAvg
    model equal the sample-weighted mean of its players' logits (logits are affine in the parameters)."""
    from din_lab.learning import ModelSpec, build_model, flatten
    from din_lab.roles.scoring import coalition_vector

    rng = np.random.default_rng(seed)
    module = build_model(ModelSpec(name="logreg"), num_features=5, num_classes=3, seed=seed % 1000)
    base = flatten(module).astype(np.float64)
    deltas = rng.normal(size=(players, base.size))
    weights = rng.integers(1, 50, size=players).astype(np.float64)
    x = rng.normal(size=(7, 5))
    logits = lambda v: ee.he_model(module, v.astype(np.float32)).plaintext(x)  # noqa: E731
    own = [logits(base + deltas[i]) for i in range(players)]
    coalition = tuple(sorted(rng.choice(players, size=int(rng.integers(1, players + 1)), replace=False).tolist()))
    mixed = sum(weights[i] * own[i] for i in coalition) / weights[list(coalition)].sum()
    np.testing.assert_allclose(logits(coalition_vector(base, deltas, weights, coalition)), mixed, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_owner_metrics_equal_scikit_learn(classes, samples, seed):
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(samples, classes)) * 3
    y = rng.integers(0, classes, size=samples)
    m = ee.metrics(logits, y)
    pred = logits.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    present = sorted(set(y) | set(pred))  # classes never seen nor predicted are left out, as scikit-learn's labels=
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=present))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert m["loss"] == pytest.approx(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(range(classes))))


def test_same_seed_reproduces_up_to_ckks_noise():
    """TenSEAL exposes no seed for SEAL's random generator: the owner's key and every encryption
    draw fresh randomness, so two runs of one seed agree on everything but the last bits of the
    decrypted values (measured over five runs: scores within 6e-8; asserted within
    1e-6), never bit for bit. The plaintext path reproduces bit for bit."""
    runs = [finished(ExperimentConfig(participants=6, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3,
                                      rounds=1, evaluation="he"))[1] for _ in range(2)]
    a, b = (_by_address(s, "score") for s in runs)
    assert a.keys() == b.keys()
    assert all(abs(a[k] - b[k]) <= 1e-6 for k in a)
    assert runs[0]["final_accuracy"] == runs[1]["final_accuracy"]
    assert [r["accuracy"] for r in runs[0]["rounds"]] == [r["accuracy"] for r in runs[1]["rounds"]]


def test_members_computing_separately_from_fresh_bytes_agree_on_the_digest(encrypted):
    """Every committee member evaluates its subgroup itself (its own checks, its own CKKS
    evaluation): the digests they revealed on chain are identical and are the agreed ones. And a
    member recomputing from fresh bytes on 2 worker processes gets the same digest."""
    lab, _ = encrypted
    published = lab.chain.events.where("EncryptedEvaluationSetPublished", address=lab.task.address)[0].args
    params = HEParams.from_json(published["params"])
    final = len(lab.rounds) - 1
    state = lab.rounds[final]
    agreed = {e.args["subgroup"]: e.args["outputsDigest"]
              for e in lab.chain.events.where("ScoresPublished", address=lab.task.address)}
    for g in range(state.groups):
        revealed = [e for e in lab.chain.events.where("OutputsRevealed", address=lab.task.address) if
                    e.args["subgroup"] == g]
        assert len(revealed) == len(state.committees[g])  # every member computed and revealed its own
        assert {bytes(e.args["digest"]) for e in revealed} == {bytes(agreed[g])}
        assert len({e.args["outputs"] for e in revealed}) == 1  # byte-identical outputs
    g = 1
    context = load_public_context(lab.store.cat(Cid.from_chain(published["context"])), params=params)
    table = EncryptedTable.from_bytes(lab.store.cat(Cid.from_chain(published["testSet"])), context=context,
                                      kind="test-set", params=params)
    updates = {m: u for m, u in lab.updates(final).items() if m in state.members[g]}
    pool = EvaluationPool(context=context, test_set=table, workers=2)
    try:
        outputs = ee.evaluate_contributions(module=lab.model, members=state.members[g], updates=updates,
                                            previous=lab.rounds[final - 1].global_model, test_set=table,
                                            context=context, scorer=lab.config.scorer, subgroup=g, pool=pool)
    finally:
        pool.close()
    assert outputs.digest() == agreed[g]


def test_a_task_with_evaluation_workers_completes_and_stops_them():
    """``he_workers=2``: the committees evaluate on two worker processes, agree, and are paid; the
    workers are gone when the task ends."""
    def children() -> set[int]:
        return {int(pid) for f in Path("/proc/self/task").glob("*/children") for pid in f.read_text().split()}

    before = children()
    lab, summary = finished(ExperimentConfig(participants=6, subgroup_size=3, evaluators=3, evaluators_per_subgroup=3,
                                             rounds=1, evaluation="he", he_workers=2))
    assert summary["tokens"]["conserved"] is True
    assert len(lab.chain.events.where("ScoresPublished", address=lab.task.address)) == lab.rounds[-1].groups
    assert sum(p["reward"] for p in summary["participants"]) > 0
    assert children() <= before


def test_crafted_headers_are_typed_refusals(encrypted):
    import struct

    lab, _ = encrypted
    keys = lab.owner.he_keys
    e = lab.chain.events.where("OutputsRevealed", address=lab.task.address)[0]
    data = lab.store.cat(Cid.from_chain(e.args["outputs"]))
    (hlen,) = struct.unpack_from(">I", data, 5)
    header = json.loads(data[9:9 + hlen])
    for field, value in (("samples", [float("inf")] * len(header["samples"])), ("players", "ab"),
                         ("samples", [1.5] * len(header["samples"])), ("linear", "false"), ("subgroup", -5),
                         ("test_set", None), ("players", [header["players"][0]] * len(header["players"])),
                         ("coalitions", [[1, 0]] + header["coalitions"][1:])):
        crafted = json.dumps({**header, field: value}).encode()
        bad = data[:5] + struct.pack(">I", len(crafted)) + crafted + data[9 + hlen:]
        with pytest.raises(HEParameterError):
            ee.EncryptedOutputs.from_bytes(bad, context=keys.context, params=keys.params)
