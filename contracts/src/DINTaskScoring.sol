// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Cid, CidLib} from "./lib/CidLib.sol";
import {Shuffle} from "./lib/Shuffle.sol";
import {BlockFlowScoring} from "./lib/BlockFlowScoring.sol";
import {DINTaskBase} from "./DINTaskBase.sol";

/// @title DINTaskScoring: the scoring phase of a DINTask (paper 5.1 step 7, 5.2).
/// @notice Runs only by delegatecall from a DINTask, on the task's storage (called directly it
/// has no task: every function reverts on its phase check). Plaintext scoring reduces committee
/// reports with BlockFlow's median rule; encrypted scoring records the owner's decryption of the
/// outputs a committee majority agreed on.
contract DINTaskScoring is DINTaskBase {
    using CidLib for Cid;
    using SafeERC20 for IERC20;

    constructor() {
        _initialized = true;
    }

    // ------------------------------------------------------------------ score

    /// @notice Plaintext scoring (the task was created with encryptedScoring = false): the owner
    /// records its evaluation set; the final round's committees then score the participants of their
    /// own subgroup and the contract reduces their reports with BlockFlow's median rule.
    function publishEvaluationSet(Cid calldata testSet, Cid calldata context) external onlyOwner inPhase(Phase.Scoring) {
        if (_params.encryptedScoring) revert WrongEvaluationMode(true);
        _openScoring(testSet, context);
        emit EvaluationSetPublished(testSet, context, scoreCommitDeadline);
    }

    /// @notice Encrypted evaluation (paper 5.2; the task was created with encryptedScoring = true):
    /// the owner records its CKKS-encrypted test set, the public evaluation context and their
    /// parameters. Committees commit and reveal the digest of their encrypted outputs; the owner, who
    /// alone can decrypt, publishes each subgroup's scores for the digest a majority agreed on.
    function publishEncryptedEvaluationSet(Cid calldata testSet, Cid calldata context, string calldata heParams)
        external
        onlyOwner
        inPhase(Phase.Scoring)
    {
        if (!_params.encryptedScoring) revert WrongEvaluationMode(false);
        if (bytes(heParams).length == 0 || bytes(heParams).length > 512) revert InvalidEvaluationParameters();
        _openScoring(testSet, context);
        scorePublishDeadline = scoreRevealDeadline + _params.publishWindow;
        emit EncryptedEvaluationSetPublished(testSet, context, heParams, scoreCommitDeadline);
    }

    function _openScoring(Cid calldata testSet, Cid calldata context) private {
        if (evaluationSet.kind != 0) revert EvaluationSetAlreadyPublished();
        testSet.check();
        context.check();
        evaluationSet = testSet;
        evaluationContext = context;
        ownerDeadline = 0;
        scoreCommitStart = uint64(block.number);
        scoreCommitDeadline = uint64(block.number) + _params.commitWindow;
        scoreRevealDeadline = scoreCommitDeadline + _params.revealWindow;
        pendingScoreSubgroups = _rounds[finalRound].numSubgroups;
    }

    /// @notice Is the task's scoring encrypted (fixed at creation)?
    function encryptedEvaluation() external view returns (bool) {
        return _params.encryptedScoring;
    }

    function commitScores(uint256 subgroup, bytes32 commitment) external inPhase(Phase.Scoring) {
        if (evaluationSet.kind == 0) revert EvaluationSetMissing();
        if (block.number > scoreCommitDeadline) revert WindowClosed(scoreCommitDeadline);
        _scoringSubgroup(subgroup);
        _seated(finalRound, subgroup, 0);
        // the reward phase's committees serve under a licence held since scoring opened, so one
        // licence lets at most one member score, however often it changes hands
        _checkLicence(scoreCommitStart);
        ScoreVote storage v = _scoreVotes[subgroup][msg.sender];
        if (v.state != 0) revert AlreadyCommitted(msg.sender);
        v.state = COMMITTED;
        v.commitment = commitment;
        emit ScoresCommitted(subgroup, msg.sender);
    }

    /// @notice scores[q] is the score (1e18 = 1.0) of the participant at position q of the
    /// subgroup (see `subgroupMembers`); commitment = keccak256(abi.encode(scores, salt, evaluator)).
    /// A slashed evaluator cannot reveal; a reveal counts as cast when it is made.
    function revealScores(uint256 subgroup, uint256[] calldata scores, bytes32 salt) external inPhase(Phase.Scoring) {
        (uint256 start, uint256 end, ScoreVote storage v) = _scoreReveal(subgroup, false);
        if (scores.length != end - start) revert ScoresLengthMismatch(scores.length, end - start);
        for (uint256 q = 0; q < scores.length; ++q) {
            if (scores[q] > BlockFlowScoring.ONE) revert BlockFlowScoring.ScoreOutOfRange(0, q, scores[q]);
        }
        if (keccak256(abi.encode(scores, salt, msg.sender)) != v.commitment) revert RevealMismatch(msg.sender);
        v.state = REVEALED;
        v.reportHash = keccak256(abi.encode(scores));
        emit ScoresRevealed(subgroup, msg.sender, scores);
    }

    /// @notice After the reveal window anyone reduces a subgroup's revealed reports (passed again as
    /// calldata, checked against their hashes; an empty row for each silent member) with BlockFlow's
    /// median rule. The committee is odd; when a strict majority of it revealed, each participant's
    /// score is the median of the reports (the mean of the two middle ones for an even count, so
    /// half of the reports can never decide it alone), members at 1/2 or more from every middle
    /// report are slashed, the others paid. Without a strict majority nothing is decided: the
    /// subgroup's participants score 0 and nobody is paid. Silent members are slashed either way.
    function finalizeScores(uint256 subgroup, uint256[][] calldata reports) external inPhase(Phase.Scoring) {
        (uint256 start, uint256 end) = _scoresDue(subgroup, false);
        address[] storage c = _committees[finalRound][subgroup][0];
        if (reports.length != c.length) revert ScoresLengthMismatch(reports.length, c.length);
        bool[] memory counts = new bool[](c.length);
        uint256 counted = 0;
        for (uint256 k = 0; k < c.length; ++k) {
            ScoreVote storage v = _scoreVotes[subgroup][c[k]];
            if (v.state == REVEALED) {
                if (keccak256(abi.encode(reports[k])) != v.reportHash) revert ReportMismatch(k);
                counts[k] = true;
                ++counted;
            }
        }
        uint256[] memory model = new uint256[](end - start);
        bool decided = 2 * counted > _scoringSeats(c);
        uint256[] memory quality;
        if (decided) {
            uint256[][] memory rows = new uint256[][](counted);
            counted = 0;
            for (uint256 k = 0; k < c.length; ++k) {
                if (counts[k]) rows[counted++] = reports[k];
            }
            (model, quality) = BlockFlowScoring.reduceStrict(rows);
        }
        counted = 0;
        for (uint256 k = 0; k < c.length; ++k) {
            address ev = c[k];
            if (!counts[k]) {
                _slashSilent(ev, finalRound);
            } else if (decided) {
                uint256 q = quality[counted++];
                emit EvaluatorScored(ev, subgroup, q);
                if (q == 0) _slash(ev, finalRound, "score far from median");
                else _payFee(ev);
            }
        }
        _recordScores(subgroup, start, model);
    }

    /// @notice Encrypted evaluation: a committee member opens its commitment
    /// keccak256(abi.encode(digest, outputs.digest, outputs.kind, salt, evaluator)), where digest is
    /// the SHA-256 of the encrypted outputs it stored at `outputs`. A slashed evaluator cannot reveal;
    /// each reveal is counted for its digest when it is made, so later slashes do not move a majority.
    function revealOutputs(uint256 subgroup, bytes32 digest, Cid calldata outputs, bytes32 salt)
        external
        inPhase(Phase.Scoring)
    {
        (,, ScoreVote storage v) = _scoreReveal(subgroup, true);
        if (digest == bytes32(0)) revert InvalidOutputsDigest();
        outputs.check();
        if (keccak256(abi.encode(digest, outputs.digest, outputs.kind, salt, msg.sender)) != v.commitment) {
            revert RevealMismatch(msg.sender);
        }
        v.state = REVEALED;
        v.reportHash = digest;
        _outputBackers[subgroup][digest] += 1;
        emit OutputsRevealed(subgroup, msg.sender, digest, outputs);
    }

    /// @notice The owner decrypted the outputs a majority of the subgroup's committee agreed on and
    /// publishes the scores it derived, with the CID of its audit record. Backers of the digest are
    /// paid the fee; the other members (another digest, or silent) are slashed. The trust assumption:
    /// the owner could misreport a decryption (the audit record and the agreed ciphertexts let anyone
    /// check it once the owner reveals its key); it can never take the participant pool back
    /// (only contributors can score, and all-zero scores pay every accepted submission equally, see
    /// `allocationOf`).
    function publishScores(uint256 subgroup, uint256[] calldata scores, bytes32 outputsDigest, Cid calldata audit)
        external
        onlyOwner
        inPhase(Phase.Scoring)
    {
        (uint256 start, uint256 end) = _scoresDue(subgroup, true);
        if (scores.length != end - start) revert ScoresLengthMismatch(scores.length, end - start);
        for (uint256 q = 0; q < scores.length; ++q) {
            if (scores[q] > BlockFlowScoring.ONE) revert BlockFlowScoring.ScoreOutOfRange(0, q, scores[q]);
        }
        audit.check();
        bytes32 majority = _majorityOutputs(subgroup);
        if (outputsDigest == bytes32(0) || majority != outputsDigest) revert OutputsNotAgreed(subgroup, outputsDigest);
        _settleOutputVotes(subgroup, majority);
        emit ScoresPublished(subgroup, majority, audit);
        _recordScores(subgroup, start, scores);
    }

    /// @notice Closes a subgroup whose scores cannot be published. No digest has a majority (after
    /// the reveal window): its participants score 0, nobody is paid, silent members and those whose
    /// digest nobody else revealed are slashed. A majority exists but the owner has not published by
    /// `scorePublishDeadline`: the backers are paid, the rest slashed, and every participant of the
    /// subgroup that submitted in the final round scores 1 (the owner forfeits its say; `_recordScores`
    /// keeps that to contributors).
    function closeUnresolvedScores(uint256 subgroup) external inPhase(Phase.Scoring) {
        (uint256 start, uint256 end) = _scoresDue(subgroup, true);
        bytes32 majority = _majorityOutputs(subgroup);
        uint256[] memory model = new uint256[](end - start);
        if (majority != bytes32(0)) {
            if (block.number <= scorePublishDeadline) revert OutputsAgreed(subgroup, majority);
            uint256[] memory indices =
                Shuffle.inverseRange(start, end, _participants.length, _rounds[finalRound].seed);
            for (uint256 q = 0; q < model.length; ++q) {
                if (_submitted(finalRound, indices[q])) model[q] = BlockFlowScoring.ONE;
            }
        }
        _settleOutputVotes(subgroup, majority);
        emit ScoresUnresolved(subgroup, majority);
        _recordScores(subgroup, start, model);
    }

    /// @dev The digest that more than half of the committee's voting seats revealed, or zero.
    function _majorityOutputs(uint256 subgroup) private view returns (bytes32) {
        address[] storage c = _committees[finalRound][subgroup][0];
        uint256 seats = _scoringSeats(c);
        for (uint256 k = 0; k < c.length; ++k) {
            ScoreVote storage v = _scoreVotes[subgroup][c[k]];
            if (v.state == REVEALED && 2 * _outputBackers[subgroup][v.reportHash] > seats) return v.reportHash;
        }
        return bytes32(0);
    }

    /// @dev The committee's voting seats: a member slashed before scoring opened cannot vote, so it
    /// does not count towards a majority (as in training's votes); otherwise a committee whose other
    /// members were banned could never decide, and its one honest member would stand alone.
    function _scoringSeats(address[] storage c) private view returns (uint256 n) {
        uint64 opened = scoreCommitStart;
        for (uint256 k = 0; k < c.length; ++k) {
            uint64 banned = _bonds[c[k]].bannedAt;
            if (banned == 0 || banned > opened) ++n;
        }
    }

    /// @dev Pays the fee to members who revealed `majority` and slashes the others (silent, or
    /// outside the majority); with no majority, silent members and lone digests are slashed.
    function _settleOutputVotes(uint256 subgroup, bytes32 majority) private {
        address[] storage c = _committees[finalRound][subgroup][0];
        for (uint256 k = 0; k < c.length; ++k) {
            address ev = c[k];
            ScoreVote storage v = _scoreVotes[subgroup][ev];
            if (v.state != REVEALED) _slashSilent(ev, finalRound);
            else if (majority == bytes32(0)) {
                if (_outputBackers[subgroup][v.reportHash] < 2) _slash(ev, finalRound, "unsupported outputs");
            } else if (v.reportHash == majority) _payFee(ev);
            else _slash(ev, finalRound, "outputs outside the majority");
        }
    }

    /// @dev Only a contributor (a final-round submitter in an accepted, not aborted, subgroup) can score: whatever
    /// a committee or the owner reports for anyone else is recorded as 0, so no scoring can pay a
    /// participant that contributed nothing to the final model.
    function _recordScores(uint256 subgroup, uint256 start, uint256[] memory model) private {
        uint256[] memory indices =
            Shuffle.inverseRange(start, start + model.length, _participants.length, _rounds[finalRound].seed);
        uint256 total = totalScore;
        Subgroup storage sg = _subgroups[finalRound][subgroup];
        bool accepted = sg.status == SubgroupStatus.Accepted && !sg.aborted;
        for (uint256 q = 0; q < model.length; ++q) {
            uint256 p = indices[q];
            uint256 score = accepted && _submitted(finalRound, p) ? model[q] : 0;
            _rewards[p] = Reward(uint128(score), uint128(total));
            total += score;
            emit ParticipantScored(_participants[p], score);
        }
        totalScore = total;
        scoresFinal[subgroup] = true;
        pendingScoreSubgroups -= 1;
        if (pendingScoreSubgroups == 0) _settle();
    }

    /// @dev Checks for a reveal in `subgroup` in the given evaluation mode; the caller's vote.
    function _scoreReveal(uint256 subgroup, bool encrypted)
        private
        view
        returns (uint256 start, uint256 end, ScoreVote storage v)
    {
        _checkMode(encrypted);
        if (block.number <= scoreCommitDeadline) revert WindowNotOpen(scoreCommitDeadline);
        if (block.number > scoreRevealDeadline) revert WindowClosed(scoreRevealDeadline);
        (start, end) = _scoringSubgroup(subgroup);
        _seated(finalRound, subgroup, 0);
        v = _scoreVotes[subgroup][msg.sender];
        if (v.state == 0) revert NotCommitted(msg.sender);
        if (v.state == REVEALED) revert AlreadyRevealed(msg.sender);
    }

    /// @dev Checks that `subgroup`'s scores can be settled (reveal window over) in the given mode.
    function _scoresDue(uint256 subgroup, bool encrypted) private view returns (uint256 start, uint256 end) {
        _checkMode(encrypted);
        if (block.number <= scoreRevealDeadline) revert WindowNotOpen(scoreRevealDeadline);
        return _scoringSubgroup(subgroup);
    }

    function _checkMode(bool encrypted) private view {
        if (evaluationSet.kind == 0) revert EvaluationSetMissing();
        if (_params.encryptedScoring != encrypted) revert WrongEvaluationMode(_params.encryptedScoring);
    }

    function _scoringSubgroup(uint256 subgroup) private view returns (uint256 start, uint256 end) {
        uint256 groups = _rounds[finalRound].numSubgroups;
        if (subgroup >= groups) revert UnknownSubgroup(finalRound, subgroup);
        if (scoresFinal[subgroup]) revert SubgroupFinal(finalRound, subgroup);
        return _bounds(subgroup, groups);
    }

    // ------------------------------------------------------------------ reward, claim

    function _settle() private {
        phase = Phase.Finished;
        releaseDeadline = uint64(block.number) + _params.publishWindow;
        uint256 reward = rewardEscrow;
        uint256 publicGoods = (reward * _params.publicGoodsBps) / 10_000;
        uint256 pool = reward - publicGoods;
        rewardEscrow = 0;
        uint256 refund = feeEscrow;
        feeEscrow = 0;
        if (totalScore == 0) {
            // no score above 0: the pool is paid by accepted submissions over all rounds, as when the
            // owner abandons (each worth `perContribution`, the remainder to the fund); back to the
            // owner only when nobody ever contributed
            uint256 total = totalContributions;
            uint256 unit = total == 0 ? 0 : pool / total;
            perContribution = unit;
            if (total == 0) refund += pool;
            else publicGoods += pool - unit * total; // the indivisible remainder, in the event too
            pool = unit * total;
        }
        _credit(publicGoodsFund, publicGoods);
        participantPool = pool;
        participantPoolRemaining = pool;
        _credit(owner, refund);
        emit RewardsSettled(pool, totalScore, publicGoods, refund);
    }

    // ------------------------------------------------------------------ release (paper 5.1 step 5d)

    /// @notice Once rewards are settled (finished, or abandoned with its payout fixed) anyone who
    /// holds the key of a held final-round result releases it: the key must open the accepted
    /// envelope, sha256(abi.encode(HOLD_TAG, ciphertext.digest, ciphertext.kind, keccak256(key)))
    /// being its raw block's digest. Then anyone decrypts the ciphertext from IPFS and rebuilds the
    /// final model. Every committee member computed the same key from the same sum (convergent
    /// encryption), so one release frees all of the result's backers.
    function releaseFinalModel(uint256 subgroup, Cid calldata ciphertext, bytes32 key) external {
        _settled();
        Subgroup storage s = _heldSubgroup(subgroup);
        ciphertext.check();
        bytes32 envelope = sha256(abi.encode(HOLD_TAG, ciphertext.digest, ciphertext.kind, keccak256(abi.encode(key))));
        if (s.result.kind != CidLib.V1_RAW || envelope != s.result.digest) revert WrongFinalKey(subgroup);
        finalKeys[subgroup] = key;
        s.held = false;
        _releaseBackers(subgroup, s, false);
        emit FinalModelReleased(subgroup, ciphertext, key, msg.sender);
    }

    /// @notice After `releaseDeadline` anyone slashes the backers of a held result whose key nobody
    /// released: each of them could have (the key is the sum's hash), none did.
    function slashWithholders(uint256 subgroup) external {
        _settled();
        if (block.number <= releaseDeadline) revert DeadlineNotPassed(releaseDeadline);
        Subgroup storage s = _heldSubgroup(subgroup);
        s.held = false;
        emit FinalModelWithheld(subgroup, _releaseBackers(subgroup, s, true));
    }

    /// @notice Once the task is over (finished, cancelled or abandoned) an evaluator takes back what
    /// is left of its bond; not while a final-round result it backed is still held (see
    /// `releaseFinalModel`: it could release the key itself).
    function withdrawBond() external nonReentrant {
        if (phase != Phase.Finished && phase != Phase.Cancelled && phase != Phase.Abandoned) {
            revert WrongPhase(Phase.Finished, phase);
        }
        Bond storage b = _bonds[msg.sender];
        if (b.heldSeats != 0) revert FinalKeyPending(msg.sender, b.heldSeats);
        uint256 amount = b.amount;
        if (amount == 0) revert NothingToClaim(msg.sender);
        b.amount = 0;
        bondEscrow -= amount;
        token.safeTransfer(msg.sender, amount);
        emit BondWithdrawn(msg.sender, amount);
    }

    function _settled() private view {
        if (phase != Phase.Finished && phase != Phase.Abandoned) revert WrongPhase(Phase.Finished, phase);
    }

    function _heldSubgroup(uint256 subgroup) private view returns (Subgroup storage s) {
        if (subgroup >= _rounds[finalRound].numSubgroups) revert UnknownSubgroup(finalRound, subgroup);
        s = _subgroups[finalRound][subgroup];
        if (finalKeys[subgroup] != bytes32(0)) revert AlreadyReleased(subgroup);
        if (!s.held) revert NotHeld(subgroup);
    }

    /// @dev The result's backers (members of either cohort who revealed it) no longer hold a pending
    /// key; with `slash`, each is slashed for withholding it. Returns how many were slashed.
    function _releaseBackers(uint256 subgroup, Subgroup storage s, bool slash) private returns (uint256 slashed) {
        for (uint8 cohort = 0; cohort <= s.cohort; ++cohort) {
            address[] storage c = _committees[finalRound][subgroup][cohort];
            for (uint256 k = 0; k < c.length; ++k) {
                Vote storage v = _votes[finalRound][subgroup][cohort][c[k]];
                if (v.state != REVEALED || v.aborted || v.result.digest != s.result.digest || v.result.kind != s.result.kind) {
                    continue;
                }
                _bonds[c[k]].heldSeats -= 1;
                if (slash) {
                    _slash(c[k], finalRound, "withheld final-model key");
                    ++slashed;
                }
            }
        }
    }

    // ------------------------------------------------------------------ ending a task early

    /// @notice The owner missed its deadline (a global model after a round closed, or the evaluation
    /// set after training), or a pending draw stayed undrawn for 256 blocks past its seed block and
    /// the owner's window: anyone ends the task. Participants are paid from the pool by their
    /// contributions so far (submissions in accepted subgroups, each worth the same), the
    /// public-goods share goes to the fund, fees already earned stay earned, the unused fee budget
    /// returns to the owner, bonds become withdrawable.
    function abandon() external {
        if (phase != Phase.Training && phase != Phase.Scoring) revert WrongPhase(Phase.Training, phase);
        uint64 deadline = ownerDeadline;
        if (phase == Phase.Training && seedBlock != 0) {
            // a draw that nobody could make (or made) for 256 blocks past its seed block and the
            // owner's window: the task must still be able to end
            deadline = seedBlock + 256 + _params.publishWindow;
        }
        if (deadline == 0 || (phase == Phase.Scoring && evaluationSet.kind != 0)) revert NotAllowed(msg.sender);
        if (block.number <= deadline) revert DeadlineNotPassed(deadline);
        _abandon(false);
    }

    /// @notice A registered participant refuses the global model the owner published for `round`,
    /// the latest one: it is not the weighted mean of the round's accepted results, which anyone
    /// recomputes from the chain (paper 5.1 step 5a), so the participant does not train on it. Once
    /// more than half of the registered participants have refused it, the owner has published a
    /// model its participants will not train on: the task ends as abandoned. The participants are
    /// paid for the rounds that closed, `closed / rounds` of the pool, by their accepted
    /// contributions (no more than a full task would pay per round, so refusing an honest model
    /// earns nothing extra); the rest of the reward deposit goes to the public-goods fund, and the
    /// owner gets back only its unspent fees.
    function rejectGlobalModel(uint256 round) external inPhase(Phase.Training) {
        if (_indexPlusOne[msg.sender] == 0) revert NotRegistered(msg.sender);
        if (round + 1 != currentRound || _rounds[round].globalModel.kind == 0) revert WrongRound(currentRound, round);
        if (rejectedModel[round][msg.sender]) revert AlreadyRejected(msg.sender, round);
        rejectedModel[round][msg.sender] = true;
        uint256 count = ++modelRejections[round];
        emit GlobalModelRejected(round, msg.sender, count);
        if (2 * count > _participants.length) _abandon(true);
    }

    /// @dev `refused`: the participants refused the owner's model (`rejectGlobalModel`): the pool is
    /// cut to the closed rounds' share and nothing of the reward deposit returns to the owner.
    function _abandon(bool refused) private {
        phase = Phase.Abandoned;
        releaseDeadline = uint64(block.number) + _params.publishWindow;
        uint256 reward = rewardEscrow;
        uint256 publicGoods = (reward * _params.publicGoodsBps) / 10_000;
        uint256 pool = reward - publicGoods;
        if (refused) {
            uint256 paid = (pool * currentRound) / _params.rounds; // rounds 0 .. currentRound - 1 closed
            publicGoods += pool - paid;
            pool = paid;
        }
        rewardEscrow = 0;
        uint256 refund = feeEscrow;
        feeEscrow = 0;
        uint256 total = totalContributions;
        uint256 unit = total == 0 ? 0 : pool / total;
        perContribution = unit;
        participantPool = unit * total;
        participantPoolRemaining = participantPool;
        if (total == 0 && !refused) refund += pool;
        else publicGoods += pool - unit * total; // the indivisible remainder (all of it with no contribution)
        _credit(publicGoodsFund, publicGoods);
        _credit(owner, refund);
        emit TaskAbandoned(currentRound, total, unit);
    }
}
