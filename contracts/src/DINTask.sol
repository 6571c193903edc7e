// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Cid, CidLib} from "./lib/CidLib.sol";
import {Shuffle} from "./lib/Shuffle.sol";
import {EvaluatorRegistry} from "./EvaluatorRegistry.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {DINTaskBase, TaskParams} from "./DINTaskBase.sol";

/// @title DINTask: one training task, the paper's "intelligence" contract.
/// @notice A state machine that assumes every caller is hostile:
///   Registration (participants register, evaluators opt in with a bond this task alone may slash)
///   -> Training (rounds: draw, submit, share reveals, commit, reveal, finalize, publish)
///   -> Scoring (evaluation set, score commit/reveal, reduction) -> Finished (claims);
///   Cancelled before training, Abandoned when the owner misses a published deadline.
/// Every phase has a path that needs nobody's cooperation past its deadline, every loop is bounded
/// by a parameter the factory checked, and randomness comes from the hash of a block that did not
/// exist when the inputs it orders (participants, evaluators, bans) were fixed. The scoring phase's
/// functions live in DINTaskScoring (EIP-170 keeps one contract under 24,576 bytes); this contract
/// delegates every call it does not know to it, on its own storage, so a task is one address with
/// one ABI (the artifact merges both).
contract DINTask is DINTaskBase, EIP712 {
    using SafeERC20 for IERC20;
    using CidLib for Cid;

    /// @notice The scoring module every task delegates to (fixed in the implementation's code).
    address public immutable scoringModule;

    error InvalidScoringModule(address module);

    constructor(address scoringModule_) EIP712("DINTask", "1") {
        // a delegatecall to an address without code succeeds and does nothing: refuse one
        if (scoringModule_.code.length == 0) revert InvalidScoringModule(scoringModule_);
        _initialized = true; // the implementation itself is never a task
        scoringModule = scoringModule_;
    }

    /// @dev Unknown selectors run in the scoring module on this task's storage.
    fallback() external {
        address module = scoringModule;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), module, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // ------------------------------------------------------------------ setup

    /// @notice Called once by the factory, which checked `p` (DINTaskFactory.checkParams).
    function initialize(address owner_, TaskParams calldata p, IERC20 token_, EvaluatorRegistry registry_, address fund,
        address licence_)
        external
    {
        if (_initialized) revert AlreadyInitialized();
        _initialized = true;
        p.genesisModel.check();
        owner = owner_;
        token = token_;
        registry = registry_;
        publicGoodsFund = fund;
        licence = licence_;
        _params = p;
        finalRound = p.rounds - 1;
        rewardEscrow = p.rewardDeposit;
        feeEscrow = p.feeBudget;
        registrationDeadline = uint64(block.number) + p.registrationWindow;
        emit TaskInitialized(owner_, p.genesisModel, p.rewardDeposit, p.feeBudget);
    }

    /// @notice Participant opt-in with its long-term public key for secure aggregation.
    function register(bytes32 publicKey) external inPhase(Phase.Registration) {
        if (publicKey == bytes32(0)) revert InvalidPublicKey();
        if (_indexPlusOne[msg.sender] != 0) revert AlreadyRegistered(msg.sender);
        if (_participants.length >= _params.maxParticipants) revert ParticipantLimit(_params.maxParticipants);
        address idr = _params.identityRegistry;
        if (idr != address(0) && !IIdentityRegistry(idr).isVerified(msg.sender)) revert NotAllowed(msg.sender);
        _participants.push(msg.sender);
        _indexPlusOne[msg.sender] = uint32(_participants.length);
        publicKeyOf[msg.sender] = publicKey;
        emit ParticipantRegistered(msg.sender, _participants.length - 1, publicKey);
    }

    /// @notice An evaluator opts in by depositing exactly `evaluatorBond` (approve this task first).
    /// That bond is all this task can ever take from it; it is locked until the task ends.
    function optIn() external nonReentrant inPhase(Phase.Registration) {
        Bond storage b = _bonds[msg.sender];
        if (b.indexPlusOne != 0) revert AlreadyOptedIn(msg.sender);
        _checkLicence(block.number);
        if (_evaluators.length >= _params.maxEvaluators) revert EvaluatorLimit(_params.maxEvaluators);
        uint256 bond = _params.evaluatorBond;
        _evaluators.push(msg.sender);
        b.indexPlusOne = uint32(_evaluators.length);
        b.amount = uint128(bond);
        activeEvaluators += 1;
        bondEscrow += bond;
        token.safeTransferFrom(msg.sender, address(this), bond);
        emit EvaluatorOptedIn(msg.sender, _evaluators.length - 1, bond);
    }

    /// @notice Before training starts an evaluator may leave with its whole bond.
    function optOut() external nonReentrant inPhase(Phase.Registration) {
        Bond storage b = _bonds[msg.sender];
        uint256 idx = b.indexPlusOne;
        if (idx == 0) revert NotOptedIn(msg.sender);
        uint256 amount = b.amount;
        address last = _evaluators[_evaluators.length - 1];
        _evaluators[idx - 1] = last;
        _bonds[last].indexPlusOne = uint32(idx);
        _evaluators.pop();
        delete _bonds[msg.sender];
        activeEvaluators -= 1;
        bondEscrow -= amount;
        token.safeTransfer(msg.sender, amount);
        emit EvaluatorOptedOut(msg.sender, amount);
    }

    /// @notice The owner may cancel during registration; after the registration deadline anyone may,
    /// when the task cannot start (too few participants or evaluators). Everything is refunded.
    function cancel() external inPhase(Phase.Registration) {
        if (msg.sender != owner) {
            if (block.number <= registrationDeadline) revert DeadlineNotPassed(registrationDeadline);
            if (_canStart()) revert NotAllowed(msg.sender);
        }
        phase = Phase.Cancelled;
        _credit(owner, rewardEscrow + feeEscrow);
        rewardEscrow = 0;
        feeEscrow = 0;
        emit TaskCancelled();
    }

    /// @notice The owner starts training when it likes; after the registration deadline anyone may.
    /// The participants and the evaluators are fixed here; the first round is drawn from the hash of
    /// a block SEED_DELAY blocks later (`drawRound`).
    function startTraining() external inPhase(Phase.Registration) {
        if (msg.sender != owner && block.number <= registrationDeadline) revert NotOwner(msg.sender);
        uint256 n = _participants.length;
        if (n < _params.subgroupSize) revert NotEnoughParticipants(n, _params.subgroupSize);
        if (activeEvaluators < _params.evaluatorsPerSubgroup) {
            revert NotEnoughEvaluators(activeEvaluators, _params.evaluatorsPerSubgroup);
        }
        phase = Phase.Training;
        emit TrainingStarted(n);
        _schedule(0);
    }

    function _canStart() private view returns (bool) {
        return _participants.length >= _params.subgroupSize && activeEvaluators >= _params.evaluatorsPerSubgroup;
    }

    // ------------------------------------------------------------------ assign

    function _schedule(uint256 r) private {
        currentRound = r;
        seedBlock = uint64(block.number) + SEED_DELAY;
        ownerDeadline = 0;
        emit SeedScheduled(r, type(uint256).max, seedBlock);
    }

    /// @dev The hash of `blockNumber` once it is in the past and still readable (256 blocks); zero
    /// when it has aged out, in which case the caller schedules a fresh block.
    function _entropy(uint64 blockNumber) private view returns (bytes32) {
        if (block.number <= blockNumber) revert WindowNotOpen(blockNumber);
        return blockhash(blockNumber);
    }

    /// @notice Anyone draws the pending round once its seed block is mined: the seed is the hash of a
    /// block that did not exist when the participants, the evaluators and the bans were fixed, so no
    /// caller and no owner can choose it (a block producer could only withhold its block, see README).
    /// If the seed block is older than 256 blocks its hash is gone and a new seed block is scheduled.
    /// If fewer than a committee of unslashed evaluators remain, training ends with the last round.
    function drawRound() external inPhase(Phase.Training) {
        if (seedBlock == 0) revert NoDrawPending();
        bytes32 h = _entropy(seedBlock);
        uint256 r = currentRound;
        if (h == bytes32(0)) {
            _schedule(r);
            return;
        }
        seedBlock = 0;
        uint256 e = _params.evaluatorsPerSubgroup;
        if (activeEvaluators < e) {
            // r > 0 here: startTraining checked the count and nobody is slashed before round 0 is drawn
            finalRound = r - 1;
            currentRound = r - 1;
            _completeTraining();
            return;
        }
        bytes32 seed = keccak256(abi.encode(r == 0 ? _params.genesisModel.digest : _rounds[r - 1].seed, address(this), r, h));
        uint256 groups = _participants.length / _params.subgroupSize;
        Round storage R = _rounds[r];
        R.seed = seed;
        R.entropy = h;
        // pre-touch this round's storage (bitmap words get sentinel bit 255, the digest starts
        // at the seed) so that no submission pays for a zero-to-nonzero write
        R.submissionsDigest = seed;
        uint256 words = (_participants.length + 254) / 255;
        for (uint256 w = 0; w < words; ++w) {
            _submittedBits[r][w] = 1 << 255;
        }
        R.numSubgroups = uint32(groups);
        R.pendingSubgroups = uint32(groups);
        uint64 deadline = uint64(block.number) + _params.submissionWindow;
        R.submissionDeadline = deadline;
        emit RoundStarted(r, seed, groups, deadline);
        bytes32 committeeSeed = keccak256(abi.encode(seed, "committee"));
        address[] memory active = _candidates(r, 0, 0);
        for (uint256 g = 0; g < groups; ++g) {
            Subgroup storage s = _subgroups[r][g];
            s.commitStart = deadline + _params.shareWindow;
            s.commitDeadline = s.commitStart + _params.commitWindow;
            s.revealDeadline = s.commitDeadline + _params.revealWindow;
            _drawCommittee(r, g, 0, e, committeeSeed, g * e, active);
        }
    }

    /// @dev The evaluators who may be seated, in opt-in order: the frozen list without those slashed
    /// (for a dispute: slashed at or before block `bannedBy`, when the dispute opened) and, for a
    /// dispute of subgroup `g`, without its first committee. One pass over at most maxEvaluators.
    function _candidates(uint256 r, uint256 g, uint64 bannedBy) private view returns (address[] memory list) {
        uint256 n = _evaluators.length;
        list = new address[](n);
        uint256 m = 0;
        for (uint256 i = 0; i < n; ++i) {
            address ev = _evaluators[i];
            uint64 banned = _bonds[ev].bannedAt;
            if (banned != 0 && (bannedBy == 0 || banned <= bannedBy)) continue;
            if (bannedBy != 0 && _votes[r][g][0][ev].state != 0) continue;
            list[m++] = ev;
        }
        assembly ("memory-safe") {
            mstore(list, m)
        }
    }

    /// @dev Seat k of the committee is candidates[forward((offset + k) mod m, m, seed)] for k below
    /// min(size, m): distinct members, recomputable by anyone from the seed (din_lab.chain.assignment).
    function _drawCommittee(
        uint256 r,
        uint256 g,
        uint8 cohort,
        uint256 size,
        bytes32 seed,
        uint256 offset,
        address[] memory candidates
    ) private returns (uint256 seated) {
        address[] storage members = _committees[r][g][cohort];
        uint256 m = candidates.length;
        if (size > m) size = m;
        for (uint256 k = 0; k < size; ++k) {
            address ev = candidates[Shuffle.forward((offset + k) % m, m, seed)];
            members.push(ev);
            _votes[r][g][cohort][ev].state = MEMBER;
        }
        emit CommitteeDrawn(r, g, cohort, members);
        return size;
    }

    // ------------------------------------------------------------------ submit

    function submitUpdate(uint256 round, Cid calldata update, Cid calldata aux) external {
        Round storage R = _openRound(round);
        update.check();
        aux.checkOptional();
        uint256 idx = _indexPlusOne[msg.sender];
        if (idx == 0) revert NotRegistered(msg.sender);
        if (!_record(R, round, idx - 1, msg.sender, update, aux)) revert AlreadySubmitted(msg.sender, round);
    }

    /// @notice A relayer submits many participants' EIP-712 signed updates in one transaction, so
    /// participants need no gas. A bad signature or an unregistered signer reverts the batch, naming
    /// its index (the relayer checks those first); an entry already recorded (for instance lifted
    /// from this batch and sent on its own) is skipped.
    function submitUpdatesRelayed(uint256 round, SignedUpdate[] calldata batch) external {
        Round storage R = _openRound(round);
        for (uint256 i = 0; i < batch.length; ++i) {
            SignedUpdate calldata s = batch[i];
            s.update.check();
            s.aux.checkOptional();
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(UPDATE_TYPEHASH, round, s.update.digest, s.update.kind, s.aux.digest, s.aux.kind))
            );
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, s.r, s.vs);
            if (err != ECDSA.RecoverError.NoError || signer != s.participant) revert InvalidSignature(i);
            uint256 idx = _indexPlusOne[signer];
            if (idx == 0) revert NotRegistered(signer);
            _record(R, round, idx - 1, signer, s.update, s.aux);
        }
    }

    function _openRound(uint256 round) private view returns (Round storage R) {
        if (phase != Phase.Training) revert WrongPhase(Phase.Training, phase);
        if (round != currentRound || seedBlock != 0) revert WrongRound(currentRound, round);
        R = _rounds[round];
        if (block.number > R.submissionDeadline) revert WindowClosed(R.submissionDeadline);
    }

    /// @dev Records a submission; false (and nothing recorded) when `index` already submitted.
    function _record(Round storage R, uint256 round, uint256 index, address who, Cid calldata update, Cid calldata aux)
        private
        returns (bool)
    {
        uint256 word = index / 255;
        uint256 bit = 1 << (index % 255);
        uint256 bits = _submittedBits[round][word];
        if (bits & bit != 0) return false;
        _submittedBits[round][word] = bits | bit;
        unchecked {
            R.submissions += 1;
        }
        R.submissionsDigest =
            keccak256(abi.encode(R.submissionsDigest, who, update.digest, update.kind, aux.digest, aux.kind));
        emit UpdateSubmitted(round, who, update, aux);
        return true;
    }

    // ------------------------------------------------------------------ aggregate: commit, reveal, finalize

    /// @notice Secure aggregation: a member of a subgroup's first committee records the CID of its
    /// share reveal between the submission deadline and the commit window. Every member, and a
    /// dispute committee, unmasks from exactly the reveals recorded here; one reveal per member.
    function revealShares(uint256 round, uint256 subgroup, Cid calldata shares) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        uint64 opens = _rounds[round].submissionDeadline;
        if (block.number <= opens) revert WindowNotOpen(opens);
        if (s.cohort != 0 || block.number > s.commitStart) revert WindowClosed(s.commitStart);
        _seated(round, subgroup, 0);
        if (sharesRevealed[round][subgroup][msg.sender]) revert AlreadyRevealedShares(msg.sender);
        shares.check();
        sharesRevealed[round][subgroup][msg.sender] = true;
        emit SharesRevealed(round, subgroup, msg.sender, shares);
    }

    function commitResult(uint256 round, uint256 subgroup, bytes32 commitment) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (s.seedBlock != 0 || block.number <= s.commitStart) revert WindowNotOpen(s.commitStart);
        if (block.number > s.commitDeadline) revert WindowClosed(s.commitDeadline);
        Vote storage v = _seated(round, subgroup, s.cohort);
        if (v.state != MEMBER) revert AlreadyCommitted(msg.sender);
        v.state = COMMITTED;
        v.commitment = commitment;
        emit ResultCommitted(round, subgroup, msg.sender);
    }

    /// @notice commitment = keccak256(abi.encode(result.digest, result.kind, salt, evaluator)):
    /// binding the evaluator's address makes a copied commitment useless to a copycat. A reveal
    /// counts as cast when it is made: a later slash in another subgroup does not remove it.
    function revealResult(uint256 round, uint256 subgroup, Cid calldata result, bytes32 salt)
        external
        inPhase(Phase.Training)
    {
        _reveal(round, subgroup, result, salt, false);
    }

    /// @notice Secure aggregation aborted (too few survivors, unrecoverable shares): the member reveals
    /// the aborted result it stored, committed as keccak256(abi.encode(result.digest, result.kind,
    /// salt, evaluator, true)). An abort is a result of its own: it is only accepted if a majority
    /// revealed the same abort, and an accepted abort counts nobody's submission as a contribution.
    function revealAbortedResult(uint256 round, uint256 subgroup, Cid calldata result, bytes32 salt)
        external
        inPhase(Phase.Training)
    {
        _reveal(round, subgroup, result, salt, true);
    }

    function _reveal(uint256 round, uint256 subgroup, Cid calldata result, bytes32 salt, bool aborted) private {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (s.seedBlock != 0 || block.number <= s.commitDeadline) revert WindowNotOpen(s.commitDeadline);
        if (block.number > s.revealDeadline) revert WindowClosed(s.revealDeadline);
        Vote storage v = _seated(round, subgroup, s.cohort);
        if (v.state == MEMBER) revert NotCommitted(msg.sender);
        if (v.state == REVEALED) revert AlreadyRevealed(msg.sender);
        result.check();
        bytes32 opened = aborted
            ? keccak256(abi.encode(result.digest, result.kind, salt, msg.sender, true))
            : keccak256(abi.encode(result.digest, result.kind, salt, msg.sender));
        if (opened != v.commitment) revert RevealMismatch(msg.sender);
        v.state = REVEALED;
        v.aborted = aborted;
        v.result = result;
        emit ResultRevealed(round, subgroup, msg.sender, result);
    }

    /// @notice After the reveal window anyone closes a subgroup: a result revealed by more than half
    /// of the committee is accepted and its backers paid; members outside it, or silent, are slashed.
    /// No majority in the first committee opens a dispute: a fresh committee of up to 2E+1 evaluators
    /// who did not sit on the first, drawn (`drawDispute`) from the hash of a block after this one.
    /// A dispute without majority fails the subgroup (left out of the global model); then silent
    /// members and those whose result nobody else revealed are slashed.
    function finalizeSubgroup(uint256 round, uint256 subgroup) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (s.seedBlock != 0 || block.number <= s.revealDeadline) revert WindowNotOpen(s.revealDeadline);
        uint8 cohort = s.cohort;
        (bool found, Cid memory winner, bool aborted) = _majority(round, subgroup, cohort);
        Round storage R = _rounds[round];
        if (found) {
            s.status = SubgroupStatus.Accepted;
            s.result = winner;
            s.held = round == finalRound && !aborted; // sealed until rewards settle (releaseFinalModel)
            _settleCohort(round, subgroup, cohort, winner, aborted, true);
            if (cohort == 1) _settleCohort(round, subgroup, 0, winner, aborted, false);
            if (aborted) {
                s.aborted = true; // nobody's update is in it: no contribution to count
                R.excluded += _countSubmitters(round, subgroup);
            }
        } else if (cohort == 0) {
            s.cohort = 1;
            s.openedAt = uint64(block.number);
            s.seedBlock = uint64(block.number) + SEED_DELAY;
            emit DisputeOpened(round, subgroup, s.seedBlock);
            return;
        } else {
            _settleUnresolved(round, subgroup);
            s.status = SubgroupStatus.Failed;
            R.excluded += _countSubmitters(round, subgroup);
        }
        emit SubgroupFinalized(round, subgroup, s.status, s.result);
        R.pendingSubgroups -= 1;
        if (R.pendingSubgroups == 0) {
            // every submitter is in exactly one subgroup: the accepted ones' submitters are the
            // round's submissions less those counted in failed and aborted subgroups (the common
            // case, every subgroup accepted, walks no subgroup's members)
            totalContributions += R.submissions - R.excluded;
            R.closedAt = uint64(block.number);
            if (round == finalRound) _completeTraining();
            else ownerDeadline = uint64(block.number) + _params.publishWindow;
        }
    }

    /// @notice Anyone draws a dispute's committee once its seed block is mined. Its members are the
    /// evaluators not slashed before that block and not on the first committee; with none left the
    /// subgroup fails (the first committee's silent and unsupported members are slashed). A member
    /// slashed after the seed block cannot vote and does not count towards the majority.
    function drawDispute(uint256 round, uint256 subgroup) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (s.seedBlock == 0) revert NoDrawPending();
        bytes32 h = _entropy(s.seedBlock);
        if (h == bytes32(0)) {
            s.seedBlock = uint64(block.number) + SEED_DELAY;
            emit DisputeOpened(round, subgroup, s.seedBlock);
            return;
        }
        // candidates: not slashed before the seed block existed (nobody knew the seed then), not on
        // the first committee
        uint64 known = s.seedBlock - 1;
        s.seedBlock = 0;
        bytes32 seed = keccak256(abi.encode(_rounds[round].seed, subgroup, h, "dispute"));
        uint256 seated = _drawCommittee(
            round, subgroup, 1, 2 * _params.evaluatorsPerSubgroup + 1, seed, 0, _candidates(round, subgroup, known)
        );
        s.commitStart = uint64(block.number);
        s.commitDeadline = uint64(block.number) + _params.commitWindow;
        s.revealDeadline = s.commitDeadline + _params.revealWindow;
        if (seated == 0) {
            // nobody to ask: fail at once (after the empty cohort's "reveal window" anyone may finalize)
            s.revealDeadline = uint64(block.number);
            s.commitDeadline = uint64(block.number);
        }
    }

    /// @dev A result more than half of the cohort's voting seats revealed. A seat whose member was
    /// slashed before the cohort's commit window opened cannot vote, so it is not counted (for a
    /// dispute: slashed between its seed block and its draw).
    function _majority(uint256 round, uint256 subgroup, uint8 cohort) private view returns (bool, Cid memory, bool) {
        address[] storage c = _committees[round][subgroup][cohort];
        uint256 opened = _subgroups[round][subgroup].commitStart;
        uint256 n = 0;
        for (uint256 i = 0; i < c.length; ++i) {
            uint64 banned = _bonds[c[i]].bannedAt;
            if (banned == 0 || banned > opened) ++n;
        }
        for (uint256 i = 0; i < c.length; ++i) {
            Vote storage vi = _votes[round][subgroup][cohort][c[i]];
            if (vi.state != REVEALED) continue;
            if (2 * _backers(round, subgroup, cohort, vi.result, vi.aborted) > n) return (true, vi.result, vi.aborted);
        }
        return (false, Cid(bytes32(0), 0), false);
    }

    /// @dev How many members of `cohort` revealed `result` (as an abort when `aborted`).
    function _backers(uint256 round, uint256 subgroup, uint8 cohort, Cid memory result, bool aborted)
        private
        view
        returns (uint256 count)
    {
        address[] storage c = _committees[round][subgroup][cohort];
        for (uint256 j = 0; j < c.length; ++j) {
            Vote storage vj = _votes[round][subgroup][cohort][c[j]];
            if (
                vj.state == REVEALED && vj.aborted == aborted && vj.result.digest == result.digest
                    && vj.result.kind == result.kind
            ) ++count;
        }
    }

    /// @dev pay (when `pay`) members who revealed `winner`; slash those who revealed anything else,
    /// and silent members.
    function _settleCohort(uint256 round, uint256 subgroup, uint8 cohort, Cid memory winner, bool aborted, bool pay)
        private
    {
        address[] storage c = _committees[round][subgroup][cohort];
        for (uint256 i = 0; i < c.length; ++i) {
            Vote storage v = _votes[round][subgroup][cohort][c[i]];
            if (v.state == REVEALED) {
                if (v.aborted == aborted && v.result.digest == winner.digest && v.result.kind == winner.kind) {
                    if (pay) _payFee(c[i]);
                    if (round == finalRound && !aborted) ++_bonds[c[i]].heldSeats; // it holds the key
                } else {
                    _slash(c[i], round, "minority result");
                }
            } else {
                _slashSilent(c[i], round);
            }
        }
    }

    /// @dev A dispute without majority: in both committees, silent members are slashed, and so is a
    /// member whose result no other member of either committee revealed (honest members compute
    /// byte-identical results, so an unsupported result is junk); the rest are neither paid nor slashed.
    function _settleUnresolved(uint256 round, uint256 subgroup) private {
        for (uint8 cohort = 0; cohort < 2; ++cohort) {
            address[] storage c = _committees[round][subgroup][cohort];
            for (uint256 i = 0; i < c.length; ++i) {
                Vote storage v = _votes[round][subgroup][cohort][c[i]];
                if (v.state != REVEALED) {
                    _slashSilent(c[i], round);
                } else if (
                    _backers(round, subgroup, 0, v.result, v.aborted) + _backers(round, subgroup, 1, v.result, v.aborted)
                        < 2
                ) {
                    _slash(c[i], round, "unsupported result");
                }
            }
        }
    }

    /// @dev Submitters of a subgroup (those of failed and aborted subgroups are not contributions:
    /// the abandonment payout and the all-zero-scores fallback count the others).
    function _countSubmitters(uint256 round, uint256 subgroup) private view returns (uint32 count) {
        (uint256 start, uint256 end) = _bounds(subgroup, _rounds[round].numSubgroups);
        uint256[] memory members = Shuffle.inverseRange(start, end, _participants.length, _rounds[round].seed);
        for (uint256 q = 0; q < members.length; ++q) {
            if (_submitted(round, members[q])) ++count;
        }
    }

    // ------------------------------------------------------------------ publish

    /// @notice The owner publishes the global model of a finished round (the weighted mean of the
    /// accepted subgroup results; anyone can recompute it) within `publishWindow` blocks of the
    /// round's last finalization; the next round is then scheduled (`drawRound`). The final round's
    /// model is published only once rewards are settled (paper 5.1 step 5d).
    function publishGlobalModel(uint256 round, Cid calldata model) external onlyOwner {
        model.check();
        Round storage R = _rounds[round];
        if (round == finalRound) {
            if (phase != Phase.Finished) revert WrongPhase(Phase.Finished, phase);
            if (R.globalModel.kind != 0) revert WrongRound(finalRound + 1, round);
            R.globalModel = model;
            emit GlobalModelPublished(round, model);
            return;
        }
        if (phase != Phase.Training) revert WrongPhase(Phase.Training, phase);
        if (round != currentRound || seedBlock != 0) revert WrongRound(currentRound, round);
        if (R.pendingSubgroups != 0) revert SubgroupsPending(round, R.pendingSubgroups);
        R.globalModel = model;
        emit GlobalModelPublished(round, model);
        _schedule(round + 1);
    }

    /// @notice The owner makes the current round the last. Only while the round's submissions are
    /// open (or its draw pending): every committee that aggregates it knows it is the final round,
    /// whose results are held until rewards settle.
    function signalFinalRound() external onlyOwner inPhase(Phase.Training) {
        uint64 closes = _rounds[currentRound].submissionDeadline;
        if (seedBlock == 0 && block.number > closes) revert WindowClosed(closes);
        finalRound = currentRound;
        emit FinalRoundSignalled(currentRound);
    }

    function _completeTraining() private {
        phase = Phase.Scoring;
        ownerDeadline = uint64(block.number) + _params.publishWindow;
        emit TrainingComplete(finalRound);
    }

    /// @notice A participant's accepted submissions over all rounds.
    function contributionsOf(address participant) public view returns (uint256 count) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0) return 0;
        uint256 n = _participants.length;
        uint256 last = phase == Phase.Training || phase == Phase.Abandoned ? currentRound : finalRound;
        for (uint256 r = 0; r <= last; ++r) {
            Round storage R = _rounds[r];
            // a round still open (the task ended mid-round) counts for nobody, as in totalContributions
            if (R.numSubgroups == 0 || R.closedAt == 0 || !_submitted(r, idx - 1)) continue;
            uint256 g = Shuffle.forward(idx - 1, n, R.seed) / _params.subgroupSize;
            if (g >= R.numSubgroups) g = R.numSubgroups - 1;
            Subgroup storage sg = _subgroups[r][g];
            if (sg.status == SubgroupStatus.Accepted && !sg.aborted) ++count;
        }
    }

    /// @notice A participant's share of the pool, claimed or not. Finished: by score,
    /// floor(pool*(before+score)/S) - floor(pool*before/S), so the shares add up to the pool exactly.
    /// Abandoned, or finished with every score 0: `perContribution` for each of its accepted
    /// submissions over all rounds, so neither an absent owner nor all-zero scores hand the pool back
    /// to the owner while anyone contributed.
    function allocationOf(address participant) public view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0) return 0;
        if (phase == Phase.Abandoned || (phase == Phase.Finished && totalScore == 0)) {
            return perContribution * contributionsOf(participant);
        }
        if (phase != Phase.Finished) return 0;
        Reward memory w = _rewards[idx - 1];
        uint256 before = w.cumulativeBefore;
        return (participantPool * (before + w.score)) / totalScore - (participantPool * before) / totalScore;
    }

    /// @notice What a participant can still claim as its reward (zero once claimed).
    function rewardOf(address participant) public view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0 || rewardClaimed[idx - 1]) return 0;
        return allocationOf(participant);
    }

    /// @notice Pull payment of everything owed to the caller: fees, refunds, public-goods funds,
    /// slashed stake (for the fund) and, once rewards are settled, a participant's reward.
    /// (Bonds are taken back with `withdrawBond`.)
    function claim() external nonReentrant returns (uint256 amount) {
        amount = claimable[msg.sender];
        if (amount > 0) {
            claimable[msg.sender] = 0;
            totalClaimable -= amount;
        }
        uint256 idx = _indexPlusOne[msg.sender];
        if (idx != 0 && !rewardClaimed[idx - 1]) {
            uint256 share = allocationOf(msg.sender);
            if (share > 0) {
                rewardClaimed[idx - 1] = true;
                participantPoolRemaining -= share;
                amount += share;
            }
        }
        if (amount == 0) revert NothingToClaim(msg.sender);
        token.safeTransfer(msg.sender, amount);
        emit Claimed(msg.sender, amount);
    }

    /// @notice Tokens sent straight to the task (not through a function) belong to nobody here:
    /// anyone hands them to the public-goods fund.
    function sweepExcess() external {
        uint256 excess = token.balanceOf(address(this)) - liabilities();
        if (excess == 0) revert NothingToClaim(msg.sender);
        _credit(publicGoodsFund, excess);
        emit ExcessSwept(excess);
    }

    // ------------------------------------------------------------------ views (audit)

    function params() external view returns (TaskParams memory) {
        return _params;
    }

    function participantCount() external view returns (uint256) {
        return _participants.length;
    }

    function participantAt(uint256 index) external view returns (address) {
        return _participants[index];
    }

    function participantIndex(address participant) external view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0) revert NotRegistered(participant);
        return idx - 1;
    }

    function evaluatorCount() external view returns (uint256) {
        return _evaluators.length;
    }

    /// @notice The opted-in evaluators in opt-in order (frozen once training starts).
    function evaluators() external view returns (address[] memory) {
        return _evaluators;
    }

    /// @notice What is left of `evaluator`'s bond in this task.
    function bondOf(address evaluator) external view returns (uint256) {
        return _bonds[evaluator].amount;
    }

    /// @notice The block of `evaluator`'s first slash in this task (0: never slashed).
    function bannedAt(address evaluator) external view returns (uint256) {
        return _bonds[evaluator].bannedAt;
    }

    function isOptedIn(address evaluator) external view returns (bool) {
        return _bonds[evaluator].indexPlusOne != 0;
    }

    function roundInfo(uint256 round) external view returns (Round memory) {
        return _rounds[round];
    }

    function subgroupInfo(uint256 round, uint256 subgroup) external view returns (Subgroup memory) {
        return _subgroups[round][subgroup];
    }

    function committee(uint256 round, uint256 subgroup, uint8 cohort) external view returns (address[] memory) {
        return _committees[round][subgroup][cohort];
    }

    function hasSubmitted(uint256 round, address participant) external view returns (bool) {
        uint256 idx = _indexPlusOne[participant];
        return idx != 0 && _submitted(round, idx - 1);
    }

    /// @notice The participants of `subgroup` in `round`, in position order.
    function subgroupMembers(uint256 round, uint256 subgroup) external view returns (address[] memory members) {
        uint256 groups = _rounds[round].numSubgroups;
        if (subgroup >= groups) revert UnknownSubgroup(round, subgroup);
        (uint256 start, uint256 end) = _bounds(subgroup, groups);
        uint256[] memory indices = Shuffle.inverseRange(start, end, _participants.length, _rounds[round].seed);
        members = new address[](end - start);
        for (uint256 q = 0; q < indices.length; ++q) {
            members[q] = _participants[indices[q]];
        }
    }

    function scoreOf(address participant) external view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0) revert NotRegistered(participant);
        return _rewards[idx - 1].score;
    }

    /// @notice Everything the task owes or holds in escrow, bonds included; equals its token balance
    /// unless someone sent tokens straight to it (`sweepExcess`).
    function liabilities() public view returns (uint256) {
        return rewardEscrow + feeEscrow + participantPoolRemaining + totalClaimable + bondEscrow;
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
