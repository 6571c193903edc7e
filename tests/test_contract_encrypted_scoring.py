"""DINTask's encrypted-evaluation scoring (issue 6), on py-evm and anvil: committees commit and
reveal the digest of their encrypted outputs, the owner publishes scores only for the digest a
majority revealed, minority and silent members are slashed, and a subgroup with no majority (a
dispute) or an owner who withholds is closed without a half-settled task."""

from __future__ import annotations

import hashlib

from din_lab.chain import reverts
from din_lab.chain.din import WAD, outputs_commitment, scores_commitment
from tests.helpers import cid, expect_revert, salt

PARAMS = '{"coeff_mod_bit_sizes":[60,40,40,60],"poly_modulus_degree":8192,"scale_bits":40}'


def digest(label) -> bytes:
    return hashlib.sha256(repr(label).encode()).digest()


def open_encrypted(net, task):
    net.train_to_scoring(task)
    return net.tx(task.functions.publishEncryptedEvaluationSet(cid("enc test set").to_chain(),
                                                               cid("public context").to_chain(), PARAMS), net.owner)


def vote_outputs(net, task, *, choose=lambda g, k, ev: ("honest", g), silent=()):
    """Every final-round committee member commits, then reveals, the digest ``choose`` gives it."""
    F = task.functions
    final = net.call(F.finalRound())
    votes = []
    for g in range(net.round_info(task, final)[4]):
        for k, ev in enumerate(net.committee(task, final, g)):
            d, out, s = digest(choose(g, k, ev)), cid(repr(("outputs", choose(g, k, ev)))), salt(("o", g, ev.address))
            net.tx(F.commitScores(g, outputs_commitment(d, out, s, ev.address)), ev)
            votes.append((g, ev, d, out, s))
    net.chain.mine_to(net.call(F.scoreCommitDeadline()) + 1)
    for g, ev, d, out, s in votes:
        if ev not in silent:
            net.tx(F.revealOutputs(g, d, out.to_chain(), s), ev)
    net.chain.mine_to(net.call(F.scoreRevealDeadline()) + 1)
    return votes


def slashed(net, task):
    return {e.args["evaluator"]: e.args["reason"] for e in net.chain.events.where("EvaluatorSlashed", address=task.address)}


def test_parameters_and_digest_are_recorded(net):
    task = net.started_task(encrypted_scoring=True, n_participants=3)
    receipt = open_encrypted(net, task)
    ev = receipt.event("EncryptedEvaluationSetPublished")
    assert ev.args["params"] == PARAMS
    F = task.functions
    assert net.call(F.encryptedEvaluation())
    expect_revert(net, F.publishEvaluationSet(cid("t").to_chain(), cid("c").to_chain()), net.owner,
                  reverts.WrongEvaluationMode)  # the mode was fixed at creation


def test_bad_parameters_and_wrong_mode(net):
    task = net.started_task(encrypted_scoring=True, n_participants=3)
    F = task.functions
    net.train_to_scoring(task)
    expect_revert(net, F.publishEncryptedEvaluationSet(cid("t").to_chain(), cid("c").to_chain(), ""), net.owner,
                  reverts.InvalidEvaluationParameters)
    expect_revert(net, F.publishEncryptedEvaluationSet(cid("t").to_chain(), cid("c").to_chain(), "x" * 513),
                  net.owner, reverts.InvalidEvaluationParameters)
    expect_revert(net, F.publishEncryptedEvaluationSet(cid("t").to_chain(), cid("c").to_chain(), PARAMS),
                  net.stranger, reverts.NotOwner)
    expect_revert(net, F.publishEvaluationSet(cid("t").to_chain(), cid("c").to_chain()), net.owner,
                  reverts.WrongEvaluationMode, encrypted=True)  # the mode was fixed at creation
    plain = net.started_task(n_participants=3)
    F = plain.functions
    net.train_to_scoring(plain)
    expect_revert(net, F.publishEncryptedEvaluationSet(cid("t").to_chain(), cid("c").to_chain(), PARAMS), net.owner,
                  reverts.WrongEvaluationMode, encrypted=False)
    net.publish_evaluation_set(plain)  # plaintext mode: the encrypted calls are refused
    task = plain
    final = net.call(F.finalRound())
    ev = net.committee(task, final, 0)[0]
    expect_revert(net, F.revealOutputs(0, digest(1), cid("o").to_chain(), salt(1)), ev, reverts.WrongEvaluationMode,
                  encrypted=False)
    net.chain.mine_to(net.call(F.scoreRevealDeadline()) + 1)
    expect_revert(net, F.publishScores(0, [0, 0, 0], digest(1), cid("a").to_chain()), net.owner,
                  reverts.WrongEvaluationMode)
    expect_revert(net, F.closeUnresolvedScores(0), net.stranger, reverts.WrongEvaluationMode)


def test_owner_publishes_scores_for_the_majority_digest_only(net):
    task = net.started_task(encrypted_scoring=True, n_participants=6)
    F = task.functions
    open_encrypted(net, task)
    final = net.call(F.finalRound())
    groups = net.round_info(task, final)[4]
    minority = net.committee(task, final, 0)[2]
    lazy = net.committee(task, final, groups - 1)[1] if groups > 1 else None
    vote_outputs(net, task, choose=lambda g, k, ev: ("bad", ev.address) if ev == minority else ("honest", g),
                 silent=(lazy,) if lazy else ())
    members = net.call(F.subgroupMembers(final, 0))
    scores = [(30 + 10 * q) * WAD // 100 for q in range(len(members))]
    # typed refusals: not the owner, the minority's digest, a score above 1, wrong length, bad audit CID
    expect_revert(net, F.publishScores(0, scores, digest(("honest", 0)), cid("a").to_chain()), net.stranger,
                  reverts.NotOwner)
    expect_revert(net, F.publishScores(0, scores, digest(("bad", minority.address)), cid("a").to_chain()), net.owner,
                  reverts.OutputsNotAgreed)
    expect_revert(net, F.publishScores(0, scores, b"\0" * 32, cid("a").to_chain()), net.owner, reverts.OutputsNotAgreed)
    expect_revert(net, F.publishScores(0, [WAD + 1] * len(members), digest(("honest", 0)), cid("a").to_chain()),
                  net.owner, reverts.ScoreOutOfRange)
    expect_revert(net, F.publishScores(0, scores[:-1], digest(("honest", 0)), cid("a").to_chain()), net.owner,
                  reverts.ScoresLengthMismatch)
    expect_revert(net, F.publishScores(0, scores, digest(("honest", 0)), (b"\0" * 32, 7)), net.owner,
                  reverts.MalformedCid)
    expect_revert(net, F.closeUnresolvedScores(0), net.stranger, reverts.OutputsAgreed)  # the owner's turn first
    receipt = net.tx(F.publishScores(0, scores, digest(("honest", 0)), cid("audit").to_chain()), net.owner)
    assert receipt.event("ScoresPublished").args["outputsDigest"] == digest(("honest", 0))
    for q, m in enumerate(members):
        assert net.call(F.scoreOf(m)) == scores[q]
    assert slashed(net, task) == {minority.address: "outputs outside the majority"}
    expect_revert(net, F.publishScores(0, scores, digest(("honest", 0)), cid("a").to_chain()), net.owner,
                  reverts.SubgroupFinal)
    for g in range(1, groups):
        n = len(net.call(F.subgroupMembers(final, g)))
        net.tx(F.publishScores(g, [WAD // 2] * n, digest(("honest", g)), cid("audit").to_chain()), net.owner)
    if lazy:
        assert slashed(net, task)[lazy.address] == "silent"
    assert net.call(F.phase()) == 3  # Finished: settled exactly once
    assert net.call(F.liabilities()) == net.balance(task.address)


def test_reveal_errors(net):
    task = net.started_task(encrypted_scoring=True, n_participants=3)
    F = task.functions
    open_encrypted(net, task)
    final = net.call(F.finalRound())
    c = net.committee(task, final, 0)
    d, out, s = digest("x"), cid("out"), salt("s")
    net.tx(F.commitScores(0, outputs_commitment(d, out, s, c[0].address)), c[0])
    net.tx(F.commitScores(0, outputs_commitment(b"\0" * 32, out, s, c[1].address)), c[1])
    expect_revert(net, F.revealOutputs(0, d, out.to_chain(), s), c[0], reverts.WindowNotOpen)
    net.chain.mine_to(net.call(F.scoreCommitDeadline()) + 1)
    expect_revert(net, F.revealOutputs(0, d, out.to_chain(), salt("other")), c[0], reverts.RevealMismatch)
    expect_revert(net, F.revealOutputs(0, d, cid("another").to_chain(), s), c[0], reverts.RevealMismatch)
    expect_revert(net, F.revealOutputs(0, b"\0" * 32, out.to_chain(), s), c[1], reverts.InvalidOutputsDigest)
    expect_revert(net, F.revealOutputs(0, d, out.to_chain(), s), c[2], reverts.NotCommitted)
    expect_revert(net, F.revealScores(0, [0] * 3, s), c[0], reverts.WrongEvaluationMode, encrypted=True)
    net.tx(F.revealOutputs(0, d, out.to_chain(), s), c[0])
    expect_revert(net, F.revealOutputs(0, d, out.to_chain(), s), c[0], reverts.AlreadyRevealed)
    expect_revert(net, F.publishScores(0, [0] * 3, d, cid("a").to_chain()), net.owner, reverts.WindowNotOpen)


def test_dispute_pays_nothing_on_unresolved_scores(net):
    """Every member reveals a different digest: no majority. The owner cannot publish; closing the
    subgroup scores its participants 0 and pays no fee; members whose digest nobody else revealed
    are slashed (honest members compute identical outputs, so a lone digest is junk)."""
    task = net.started_task(encrypted_scoring=True, n_participants=3)
    F = task.functions
    open_encrypted(net, task)
    vote_outputs(net, task, choose=lambda g, k, ev: ("own", ev.address))
    final = net.call(F.finalRound())
    c = net.committee(task, final, 0)
    for ev in c:
        expect_revert(net, F.publishScores(0, [WAD] * 3, digest(("own", ev.address)), cid("a").to_chain()), net.owner,
                      reverts.OutputsNotAgreed)
    receipt = net.tx(F.closeUnresolvedScores(0), net.stranger)
    assert receipt.event("ScoresUnresolved").args["majorityDigest"] == b"\0" * 32
    assert all(net.call(F.scoreOf(m)) == 0 for m in net.call(F.subgroupMembers(final, 0)))
    assert slashed(net, task) == {ev.address: "unsupported outputs" for ev in c}
    assert not [e for e in receipt.events if e.event == "FeePaid"]
    # nobody scored, but submissions were accepted: the pool is paid per accepted submission over
    # all rounds rather than returned to the owner
    assert net.call(F.participantPool()) == net.call(F.perContribution()) * net.call(F.totalContributions()) > 0
    assert net.call(F.liabilities()) == net.balance(task.address)


def test_withholding_owner_forfeits_its_say(net):
    """A majority agreed but the owner publishes nothing: after the publish deadline anyone closes
    the subgroup; backers are paid, and every participant of it scores 1."""
    task = net.started_task(encrypted_scoring=True, n_participants=3)
    F = task.functions
    open_encrypted(net, task)
    vote_outputs(net, task)
    expect_revert(net, F.closeUnresolvedScores(0), net.stranger, reverts.OutputsAgreed)
    net.chain.mine_to(net.call(F.scorePublishDeadline()) + 1)
    receipt = net.tx(F.closeUnresolvedScores(0), net.stranger)
    assert receipt.event("ScoresUnresolved").args["majorityDigest"] == digest(("honest", 0))
    final = net.call(F.finalRound())
    assert all(net.call(F.scoreOf(m)) == WAD for m in net.call(F.subgroupMembers(final, 0)))
    assert len([e for e in receipt.events if e.event == "FeePaid"]) == 3
    assert net.call(F.phase()) == 3


def test_scores_commitment_is_not_an_outputs_commitment():
    # the two commitments hash different encodings: a plaintext-mode opening never opens an outputs vote
    assert scores_commitment([1, 2], b"\1" * 32, "0x" + "11" * 20) != outputs_commitment(
        b"\1" * 32, cid("o"), b"\1" * 32, "0x" + "11" * 20)


def test_a_later_ban_does_not_move_a_majority(net):
    """Reveals are counted when made. Subgroup 0's silent member is slashed, hence banned, when
    subgroup 0 settles; the digest it had revealed in subgroup 1 (a bare 2-of-3 majority with it)
    still carries subgroup 1, whatever order the subgroups are settled in."""
    task = net.started_task(encrypted_scoring=True, n_participants=6)
    F = task.functions
    open_encrypted(net, task)
    final = net.call(F.finalRound())
    c0, c1 = net.committee(task, final, 0), net.committee(task, final, 1)
    shared = next(e for e in c0 if e in c1)  # committees overlap: more seats than staked evaluators
    partner = next(e for e in c1 if e != shared)
    revealing = {(0, e.address) for e in c0 if e != shared} | {(1, shared.address), (1, partner.address)}
    opened = []
    for g, c in ((0, c0), (1, c1)):
        for ev in c:
            d, out, s = digest(("honest", g)), cid(repr(("o", g))), salt(("o", g, ev.address))
            net.tx(F.commitScores(g, outputs_commitment(d, out, s, ev.address)), ev)
            if (g, ev.address) in revealing:
                opened.append((g, ev, d, out, s))
    net.chain.mine_to(net.call(F.scoreCommitDeadline()) + 1)
    for g, ev, d, out, s in opened:
        net.tx(F.revealOutputs(g, d, out.to_chain(), s), ev)
    net.chain.mine_to(net.call(F.scoreRevealDeadline()) + 1)
    n0, n1 = (len(net.call(F.subgroupMembers(final, g))) for g in (0, 1))
    net.tx(F.publishScores(0, [WAD // 2] * n0, digest(("honest", 0)), cid("audit").to_chain()), net.owner)
    assert slashed(net, task)[shared.address] == "silent"
    assert net.call(F.bannedAt(shared.address)) > 0  # slashed in this task now
    net.tx(F.publishScores(1, [WAD // 2] * n1, digest(("honest", 1)), cid("audit").to_chain()), net.owner)
    assert net.call(F.phase()) == 3


def test_withholding_owner_scores_only_final_round_submitters(net):
    task = net.started_task(encrypted_scoring=True, n_participants=6)
    F = task.functions
    rounds = net.call(F.params())[6]
    for r in range(rounds):
        everyone = net.registered(task)
        net.submit_all(task, r, participants=everyone[1:] if r == rounds - 1 else None)  # one never submits last
        net.vote_round(task, r)
        if r + 1 < rounds:
            net.publish(task, r)
    net.tx(F.publishEncryptedEvaluationSet(cid("t").to_chain(), cid("c").to_chain(), PARAMS), net.owner)
    vote_outputs(net, task)
    net.chain.mine_to(net.call(F.scorePublishDeadline()) + 1)
    final = net.call(F.finalRound())
    late = net.tx(F.publishScores(0, [0] * len(net.call(F.subgroupMembers(final, 0))), digest(("honest", 0)),
                                  cid("a").to_chain()), net.owner)  # still possible until someone closes it
    assert late.event("ScoresPublished")
    for g in range(1, net.round_info(task, final)[4]):
        net.tx(F.closeUnresolvedScores(g), net.stranger)
    absent = net.registered(task)[0]
    if absent.address in {m for g in range(1, net.round_info(task, final)[4])
                          for m in net.call(F.subgroupMembers(final, g))}:
        assert net.call(F.scoreOf(absent.address)) == 0
    for g in range(1, net.round_info(task, final)[4]):
        for m in net.call(F.subgroupMembers(final, g)):
            assert net.call(F.scoreOf(m)) == (0 if m == absent.address else WAD)
