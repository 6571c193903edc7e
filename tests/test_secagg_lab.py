"""Secure aggregation inside a DIN task (issue 5): the lab's rounds with masked updates against the
plaintext rounds of the same seed, dropouts, SecAgg+, and every bad input the protocol must survive."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from din_lab.cid import Cid
from din_lab.config import PLAINTEXT_BASELINE, ExperimentConfig
from din_lab.errors import ConfigError, IntegrityError, ProtocolError
from din_lab.experiment import tabulate
from din_lab.protocol.lab import Lab
from din_lab.roles import codec
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.scoring import contribution_scores
from din_lab.secagg import SecretKind, ShareError
from tests.helpers import finished

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(participants=12, subgroup_size=4, evaluators=7, evaluators_per_subgroup=3, rounds=2)
# secure aggregation on its own, against the plaintext baseline: evaluation stays in plaintext here
# (test_he_lab and the default task run both layers together)
SECURE = dict(secagg=True, secagg_graph="full", evaluation="plaintext")


@pytest.fixture(scope="module")
def plaintext():
    return finished(ExperimentConfig(**PLAINTEXT_BASELINE))


@pytest.fixture(scope="module")
def secure():
    return finished(ExperimentConfig(**SECURE))


def _result(lab: Lab, state, g: int) -> codec.SubgroupResult:
    """The accepted result of subgroup ``g`` in the round ``state`` records, as anyone reads it (the
    final round's once its key is released after settlement)."""
    return lab.result(next(r for r, s in enumerate(lab.rounds) if s is state), g)


def _result_cids(lab: Lab, r: int, g: int) -> set[Cid]:
    """The results the members of subgroup ``g`` revealed on chain (each computed its own)."""
    return {Cid.from_chain(e.args["result"])
            for e in lab.chain.events.where("ResultRevealed", address=lab.task.address, round=r, subgroup=g)}


def test_secure_task_matches_the_plaintext_task(plaintext, secure):
    plain_lab, plain = plaintext
    lab, s = secure
    # the two protocols send different transactions, so their blocks (and the subgroup draws the
    # block hashes seed) differ: a few of the 450 test samples may differ, no more
    assert abs(s["final_accuracy"] - plain["final_accuracy"]) <= 0.01
    assert s["tokens"]["conserved"] is True and s["tokens"]["left_in_task"] == 0
    assert all(r["accepted_groups"] == 4 and r["aborted_groups"] == 0 and not r["slashed"] for r in s["rounds"])
    for r, (a, b) in enumerate(zip(lab.rounds, plain_lab.rounds, strict=True)):
        # the same global model up to the fixed-point step (2^-24 on samples * delta)
        np.testing.assert_allclose(a.global_model, b.global_model, atol=1e-5)
        assert lab.verify_round(r)
        for g in range(a.groups):
            assert len(_result_cids(lab, r, g)) == 1  # every honest member: byte-identical sum
    assert any("secure aggregation" in note for note in s["notes"])


def test_scores_are_the_plaintext_scores_of_the_revealed_updates(secure):
    """The committee scores exactly the updates the participants masked: the scores on chain equal
    plaintext scoring of the participants' own final-round updates (screened within the subgroup)."""
    lab, s = secure
    final = len(lab.rounds) - 1
    state = lab.rounds[final]
    previous = lab.rounds[final - 1].global_model
    on_chain = {p["address"]: p["score"] for p in s["participants"]}
    for g, members in state.members.items():
        updates = {m: lab.updates(final)[m] for m in members}
        reference = codec.RoundReference.of(list(updates.values()))
        updates = {m: u for m, u in updates.items() if codec.screen_update(u, reference) is None}
        expected = contribution_scores(members=members, updates=updates, previous=previous, model=lab.model,
                                       x=lab.dataset.X_test, y=lab.dataset.y_test, scorer=lab.config.scorer,
                                       seed=int.from_bytes(state.seed[:8], "big") ^ g)
        np.testing.assert_allclose([on_chain[m] for m in members], expected, atol=1e-6)


def test_no_individual_update_is_ever_stored_in_the_clear(secure):
    lab, _ = secure
    for r, state in enumerate(lab.rounds):
        for participant, cid in lab.submitted(r).items():
            data = lab.store.cat(cid)
            with pytest.raises(ProtocolError):
                codec.decode_update(data)
            masked = sa.MaskedObject.from_bytes(data)
            clear = sa.encode_contribution(lab.updates(r)[participant])
            assert masked.masked.dtype == np.uint64 and masked.masked.shape == clear.shape
            # a masked coordinate equals the clear one with probability 2^-64 each
            assert np.count_nonzero(masked.masked == clear) <= 1
        # what the committee published is the sum, and it equals the plain fixed-point sum
        for g, members in state.members.items():
            result = _result(lab, state, g)
            expected = np.zeros(lab.global_vector.shape[0] + 1, dtype=np.uint64)
            for m in members:
                np.add(expected, sa.encode_contribution(lab.updates(r)[m]), out=expected)
            np.testing.assert_array_equal(result.encoded_sum, expected)
            assert result.included == tuple(members)


def test_sealed_contributions_open_only_for_their_committee(secure):
    lab, _ = secure
    final = len(lab.rounds) - 1
    state = lab.rounds[final]
    member = state.members[0][0]
    data = lab.store.cat(lab.sealed(final, 0)[member])
    view = lab.subgroup_view(final, 0)
    committee = state.committees[0]
    kwargs = dict(context=view.context, position=0, participant=member,
                  participant_public_key=lab.network.view.participant_key(member), commitment=view.commitments[0])
    opened = lab.agent(committee[0]).open_contribution(data, holder=0, **kwargs)
    np.testing.assert_array_equal(opened.delta, lab.updates(final)[member].delta)
    outsider = next(e for e in lab.evaluators if e.address not in committee)
    from din_lab.secagg.reveal import RevealError

    with pytest.raises(RevealError):
        outsider.open_contribution(data, holder=0, **kwargs)
    with pytest.raises(RevealError):  # a member cannot use another member's slot either
        lab.agent(committee[1]).open_contribution(data, holder=0, **kwargs)


@pytest.mark.slow
def test_dropouts_are_recovered_and_the_task_matches_plaintext():
    plain_lab, plain = finished(ExperimentConfig(**PLAINTEXT_BASELINE, dropout=0.3))
    lab, s = finished(ExperimentConfig(**SECURE, dropout=0.3))
    # the two protocols send different transactions, so their blocks (and the subgroup draws the
    # block hashes seed) differ: a few of the 450 test samples may differ, no more
    assert abs(s["final_accuracy"] - plain["final_accuracy"]) <= 0.01
    assert s["tokens"]["conserved"] is True
    assert all(r["dropouts"] == 6 for r in s["rounds"])
    recovered = [(r, g) for r, state in enumerate(lab.rounds) for g, view in state.views.items()
                 if view.dropped and not view.abort]
    assert recovered  # subgroups with dropouts were unmasked from the committee's shares
    for r, g in recovered:
        state = lab.rounds[r]
        result = _result(lab, state, g)
        survivors = [state.members[g][p] for p in lab.rounds[r].views[g].survivors]
        expected = np.zeros(lab.global_vector.shape[0] + 1, dtype=np.uint64)
        for m in survivors:
            np.add(expected, sa.encode_contribution(lab.updates(r)[m]), out=expected)
        np.testing.assert_array_equal(result.encoded_sum, expected)
    assert all(not r["slashed"] for r in s["rounds"])


def test_a_subgroup_left_with_two_survivors_aborts_cleanly():
    """Half of 12 participants vanish each round: some subgroup of 4 keeps at most 2 (pigeonhole),
    and a sum of 2 would expose them. Its committee accepts the aborted result: nobody is slashed,
    no share is revealed, the round goes on with the other subgroups, tokens are conserved."""
    lab, s = finished(ExperimentConfig(**SMALL, **SECURE, dropout=0.5))
    assert s["tokens"]["conserved"] is True
    assert all(not r["slashed"] for r in s["rounds"])
    for r, state in enumerate(lab.rounds):
        aborted = [g for g, view in state.views.items() if len(view.survivors) < 3]
        assert aborted and set(aborted) == set(state.aborted)
        for g in aborted:
            # fewer than 3 survived, or none did (the round seed decides which subgroups lose whom)
            assert "survived" in state.aborted[g] or "no well-formed masked update" in state.aborted[g]
            assert not [e for e in lab.chain.events.where("SharesRevealed", address=lab.task.address, round=r,
                                                         subgroup=g)]  # nothing revealed for it
            result = _result(lab, state, g)
            assert result.samples == 0 and not result.included and not np.any(result.weighted_sum)
        assert lab.verify_round(r)
    participants = {p["address"]: p for p in s["participants"]}
    final = lab.rounds[-1]
    F = lab.task.functions
    unit = lab.chain.call(F.perContribution()) / 1e18  # the all-zero-scores fallback pays per contribution
    for g in final.aborted:
        for m in final.members[g]:  # nothing paid for an aborted sum: at most its earlier accepted contributions
            assert participants[m]["score"] == 0
            earlier = sum(1 for r, rec in enumerate(lab.rounds) for h, ms in rec.members.items()
                          if m in ms and h in rec.accepted and h not in rec.aborted and m in rec.sent)
            assert lab.chain.call(F.contributionsOf(m)) == earlier
            assert participants[m]["reward"] == pytest.approx(unit * earlier, abs=1e-9)


def test_secagg_plus_masks_with_a_sparse_graph_and_sums_exactly():
    lab, s = finished(ExperimentConfig(participants=24, subgroup_size=12, evaluators=4, rounds=1,
                                       secagg=True, secagg_graph="secagg+", evaluation="plaintext", dropout=0.1))
    assert s["tokens"]["conserved"] is True
    state = lab.rounds[0]
    for g, view in state.views.items():
        assert view.graph.degree == 8 < len(view.members) - 1  # 2 * ceil(log2 12)
        result = _result(lab, state, g)
        assert not result.aborted
        expected = np.zeros(lab.global_vector.shape[0] + 1, dtype=np.uint64)
        for p in view.survivors:
            np.add(expected, sa.encode_contribution(lab.updates(0)[view.members[p]]), out=expected)
        np.testing.assert_array_equal(result.encoded_sum, expected)


def test_a_masked_vector_of_the_wrong_length_is_a_dropout_and_earns_nothing():
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_participants=("0.09:wrong-length",)))
    bad = next(p for p in lab.participants if p.behaviour.name == "wrong-length")
    lab.run()
    for r, state in enumerate(lab.rounds):
        assert bad.address in state.sent  # it did submit ...
        g = next(g for g, ms in state.members.items() if bad.address in ms)
        view = state.views[g]
        assert "shape" in view.rejected[state.members[g].index(bad.address)]  # ... and was refused
        result = _result(lab, state, g)
        assert not result.aborted and bad.address in result.rejected and bad.address not in result.included
        assert lab.verify_round(r)
    row = tabulate(lab, seconds=1.0).participants.set_index("address").loc[bad.address]
    assert row.score == 0 and row.reward == 0


def test_tampered_share_bundles_abort_the_subgroup_cleanly():
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_participants=("0.09:bad-shares",)))
    bad = next(p for p in lab.participants if p.behaviour.name == "bad-shares")
    lab.run()
    summary = tabulate(lab, seconds=1.0).summary
    assert summary["tokens"]["conserved"] is True
    for state in lab.rounds:
        g = next(g for g, ms in state.members.items() if bad.address in ms)
        assert g in state.aborted and "shares" in state.aborted[g]
        assert len(state.accepted) == state.groups  # the other subgroups go on
        refused = [e for e in lab.events if e.round == lab.rounds.index(state) and e.action.startswith("cannot open")]
        assert {e.detail.split(":")[0] for e in refused}  # AEAD failures were reported by the members
    assert all(not r["slashed"] for r in summary["rounds"])
    row = next(p for p in summary["participants"] if p["address"] == bad.address)
    assert row["reward"] == 0


def test_a_reveal_that_does_not_open_the_commitment_scores_zero():
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_participants=("0.09:false-reveal",)))
    bad = next(p for p in lab.participants if p.behaviour.name == "false-reveal")
    lab.run()
    refused = [e for e in lab.events if e.actor == bad.name and e.action.startswith("reveal refused")]
    assert refused and "commitment" in refused[0].detail
    row = tabulate(lab, seconds=1.0).participants.set_index("address").loc[bad.address]
    assert row.score == 0 and row.reward == 0


def test_masking_one_update_and_revealing_another_is_named_and_costs_its_sender():
    """A participant masks its update x2 (the subgroup's agreed sum carries the boost) but commits
    to and reveals its honest update, so its reveal opens its commitment. Each member rebuilds the
    masked vector from the revealed update and round secrets: it does not match the vector on
    chain, so every member names that participant, it scores 0 and earns nothing, and the honest
    members of its subgroup are still scored."""
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_participants=("0.09:inflated-mask",)))
    bad = next(p for p in lab.participants if p.behaviour.name == "inflated-mask")
    lab.run()
    final = len(lab.rounds) - 1
    g = next(g for g, ms in lab.rounds[final].members.items() if bad.address in ms)
    refused = [e for e in lab.events if e.actor == bad.name and e.action.startswith("reveal refused")]
    assert len(refused) == len(lab.rounds[final].committees[g])  # every member, each on its own
    assert all("rebuild its masked update" in e.detail for e in refused)
    # the agreed sum is the masked one: it is not the sum of the honest reveals
    result = _result(lab, lab.rounds[final], g)
    expected = np.zeros(lab.global_vector.shape[0] + 1, dtype=np.uint64)
    for m in result.included:
        np.add(expected, sa.encode_contribution(lab.updates(final)[m]), out=expected)
    assert not np.array_equal(result.encoded_sum, expected)
    summary = tabulate(lab, seconds=1.0)
    rows = summary.participants.set_index("address")
    assert rows.loc[bad.address].score == 0 and rows.loc[bad.address].reward == 0
    others = [m for m in lab.rounds[final].members[g] if m != bad.address]
    assert all(rows.loc[m].score > 0 for m in others)
    assert summary.summary["tokens"]["conserved"] is True


def test_content_that_does_not_hash_to_its_cid_is_refused():
    """A participant cannot show different evaluators different masked vectors: its CID is on
    chain and the store refuses bytes that do not hash to it. The lab treats it as a dropout."""
    lab = Lab.create(ExperimentConfig(**{**SMALL, "rounds": 1}, **SECURE))
    while lab.next_phase[0] != "aggregate":
        lab.step()
    state = lab.rounds[0]
    victim = state.members[0][1]
    cid = lab.submitted(0)[victim]
    original = lab.store.cat(cid)
    other = sa.MaskedObject.from_bytes(original)
    forged = sa.MaskedObject(participant=other.participant, position=other.position, round=other.round,
                             subgroup=other.subgroup, masked=other.masked + np.uint64(1), peers=other.peers,
                             commitment=other.commitment).to_bytes()
    lab.store._backend.blocks[cid.digest] = forged  # what a lying node would hand out under that CID
    with pytest.raises(IntegrityError):
        lab.store.cat(cid)
    lab.run()
    view = state.views[0]
    assert 1 not in view.survivors and "hash" in view.rejected[1].lower()
    result = _result(lab, state, 0)
    assert victim in result.rejected and not result.aborted
    expected = np.zeros(lab.global_vector.shape[0] + 1, dtype=np.uint64)
    for m in result.included:
        np.add(expected, sa.encode_contribution(lab.updates(0)[m]), out=expected)
    np.testing.assert_array_equal(result.encoded_sum, expected)
    row = tabulate(lab, seconds=1.0).participants.set_index("address").loc[victim]
    assert row.reward == 0


def test_share_reveals_are_checked_before_they_are_pooled(secure):
    """Bonawitz's rule, a member speaking only for itself, one share per participant and the round's
    context: a reveal that breaks any of them is refused whole, with a typed error."""
    lab, _ = secure
    state = lab.rounds[0]
    view = state.views[0]
    cid = state.share_reveals[0][0]
    shares = sa.decode_share_reveal(lab.store.cat(cid), holder=0, view=view)
    assert {s.participant for s in shares} == set(view.graph.participants)
    other_round = sa.round_context(task=lab.task.address, round_=1, subgroup=0)
    leaked = sa.decode_share_reveal(lab.store.cat(lab.rounds[1].share_reveals[0][0]), holder=0,
                                    view=lab.rounds[1].views[0])

    def reveal(items, holder=0):
        return sa.encode_share_reveal(items, holder=holder, evaluator="0xmember", context=view.context)

    bad = {
        "offered as holder 1's": (reveal(shares), 1),
        "as member 1": (reveal([dataclasses.replace(shares[0], holder=1)]), 0),
        "two shares": (reveal(shares + shares[:1]), 0),
        "Bonawitz": (reveal([dataclasses.replace(shares[0], kind=SecretKind.MASK_KEY)]), 0),
        "outside the mask graph": (reveal([dataclasses.replace(shares[0], participant=99)]), 0),
        f"for {other_round}": (reveal(leaked[:1]), 0),
    }
    for expected, (data, holder) in bad.items():
        with pytest.raises(ShareError, match=expected):
            sa.decode_share_reveal(data, holder=holder, view=view)


def test_a_silent_member_reveals_no_shares_and_t_others_suffice():
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_evaluators=("0.15:lazy",)))
    lazy = next(e for e in lab.evaluators if e.behaviour.name == "lazy")
    lab.run()
    s = tabulate(lab, seconds=1.0).summary
    seats = [(r, g) for r, state in enumerate(lab.rounds) for g, c in state.committees.items() if lazy.address in c]
    assert seats
    for r, g in seats:
        state = lab.rounds[r]
        recorded = lab.chain.events.where("SharesRevealed", address=lab.task.address, round=r, subgroup=g)
        assert len(recorded) == 2 and lazy.address not in {e.args["evaluator"] for e in recorded}
        assert g not in state.aborted and g in state.accepted
    assert next(e for e in s["evaluators"] if e["address"] == lazy.address)["slashed_amount"] > 0
    assert s["tokens"]["conserved"] is True


def test_forged_share_reveals_are_refused_and_the_round_survives():
    lab = Lab.create(ExperimentConfig(**SMALL, **SECURE, malicious_evaluators=("0.15:forged-shares",)))
    forger = next(e for e in lab.evaluators if e.behaviour.name == "forged-shares")
    lab.run()
    seats = [(r, g) for r, state in enumerate(lab.rounds) for g, c in state.committees.items() if forger.address in c]
    assert seats, "the forger sits on some committee (seeded)"
    refused = [e for e in lab.events if e.actor == forger.name and "refused" in e.action]
    # every member that unmasks refuses it, each for itself: once per seat and member
    assert {(e.round, e.action) for e in refused} == {(r, f"share reveal for subgroup {g} refused") for r, g in seats}
    assert all("ShareError" in e.detail or "two shares" in e.detail for e in refused)
    for r, state in enumerate(lab.rounds):
        assert not state.aborted and len(state.accepted) == state.groups
        assert lab.verify_round(r)


@pytest.mark.parametrize("settings, field", [
    (dict(secagg="yes"), "secagg"), (dict(secagg_graph="ring"), "secagg_graph"),
    (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"),
])
def test_bad_secagg_settings_name_the_field(settings, field):
    with pytest.raises(ConfigError, match=field):
        ExperimentConfig(**settings)
