// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Cid, CidLib} from "./lib/CidLib.sol";
import {Shuffle} from "./lib/Shuffle.sol";
import {BlockFlowScoring} from "./lib/BlockFlowScoring.sol";
import {EvaluatorRegistry} from "./EvaluatorRegistry.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IEvaluatorLicence} from "./interfaces/IEvaluatorLicence.sol";

/// @notice What a Model Owner fixes when creating a task (paper 5.1 step 1). Checked by the
/// factory (DINTaskFactory.checkParams); nothing here can change after creation.
struct TaskParams {
    Cid genesisModel;
    uint256 rewardDeposit; // split among participants by score (less the public-goods share)
    uint256 feeBudget; // pays evaluator fees; what is left returns to the owner
    uint256 evaluatorFee; // per evaluator per accepted vote (aggregation or scoring)
    uint256 evaluatorBond; // what an evaluator deposits to opt in; all this task can ever slash
    uint256 slashAmount; // taken from the bond per offence (at most the bond)
    uint32 rounds; // training rounds at most (the owner may end earlier)
    uint32 subgroupSize; // participants per aggregator subgroup
    uint32 evaluatorsPerSubgroup; // committee size (odd)
    uint32 maxParticipants; // registration cap (bounds every per-participant loop)
    uint32 maxEvaluators; // opt-in cap (bounds every per-evaluator loop)
    uint16 publicGoodsBps; // share of the reward deposit for the network's public-goods fund
    bool encryptedScoring; // scoring mode, fixed at creation: CKKS-encrypted test set or plaintext
    uint32 registrationWindow; // blocks after creation; then anyone may start (or cancel) the task
    uint32 submissionWindow; // blocks
    uint32 shareWindow; // blocks after the submission window for secure aggregation's share reveals (0: none)
    uint32 commitWindow; // blocks
    uint32 revealWindow; // blocks
    uint32 publishWindow; // blocks the owner has to publish a global model or the evaluation set
    address identityRegistry; // optional Sybil resistance; address(0) = open
}

/// @title DINTaskBase: the state, types, errors and events of a task, and the rules both halves
/// of its code share (DINTask and its scoring module DINTaskScoring run on the same storage).
/// @dev DINTask: one training task, the paper's "intelligence" contract.
/// @notice A state machine that assumes every caller is hostile:
///   Registration (participants register, evaluators opt in with a bond this task alone may slash)
///   -> Training (rounds: draw, submit, share reveals, commit, reveal, finalize, publish)
///   -> Scoring (evaluation set, score commit/reveal, reduction) -> Finished (claims);
///   Cancelled before training, Abandoned when the owner misses a published deadline.
/// Every phase has a path that needs nobody's cooperation past its deadline, every loop is bounded
/// by a parameter the factory checked, and randomness comes from the hash of a block that did not
/// exist when the inputs it orders (participants, evaluators, bans) were fixed.
abstract contract DINTaskBase is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using CidLib for Cid;

    enum Phase {
        Registration,
        Training,
        Scoring,
        Finished,
        Cancelled,
        Abandoned
    }

    enum SubgroupStatus {
        Pending,
        Accepted,
        Failed
    }

    // vote states
    uint8 internal constant MEMBER = 1;
    uint8 internal constant COMMITTED = 2;
    uint8 internal constant REVEALED = 3;
    /// @notice Blocks between the transaction that schedules a draw and the block whose hash seeds it.
    uint64 public constant SEED_DELAY = 4;
    /// @notice The first word of a held result's envelope, a 128-byte raw IPFS block
    /// abi.encode(HOLD_TAG, ciphertext.digest, ciphertext.kind, keccak256(abi.encode(key))).
    bytes32 public constant HOLD_TAG = keccak256("din-lab/held-final-result/v1");

    bytes32 public constant UPDATE_TYPEHASH = keccak256(
        "Update(uint256 round,bytes32 updateDigest,uint16 updateKind,bytes32 auxDigest,uint16 auxKind)"
    );

    error AlreadyInitialized();
    error NotOwner(address caller);
    error WrongPhase(Phase expected, Phase actual);
    error WrongRound(uint256 expected, uint256 given);
    error NotAllowed(address account);
    error AlreadyRegistered(address account);
    error InvalidPublicKey();
    error NotRegistered(address account);
    error AlreadySubmitted(address participant, uint256 round);
    error WindowNotOpen(uint256 opensAfterBlock);
    error WindowClosed(uint256 closedAtBlock);
    error InvalidSignature(uint256 index);
    error UnknownSubgroup(uint256 round, uint256 subgroup);
    error SubgroupFinal(uint256 round, uint256 subgroup);
    error SubgroupsPending(uint256 round, uint256 pending);
    error NotCommitteeMember(address caller, uint256 round, uint256 subgroup);
    error AlreadyCommitted(address evaluator);
    error NotCommitted(address evaluator);
    error AlreadyRevealed(address evaluator);
    error AlreadyRevealedShares(address evaluator);
    error RevealMismatch(address evaluator);
    error NotEnoughParticipants(uint256 have, uint256 need);
    error NotEnoughEvaluators(uint256 have, uint256 need);
    error ParticipantLimit(uint256 limit);
    error EvaluatorLimit(uint256 limit);
    error AlreadyOptedIn(address evaluator);
    error NotOptedIn(address evaluator);
    error EvaluatorBanned(address evaluator);
    error NoDrawPending();
    error DrawPending(uint256 seedBlock);
    error DeadlineNotPassed(uint256 deadline);
    error EvaluationSetMissing();
    error EvaluationSetAlreadyPublished();
    error ScoresLengthMismatch(uint256 given, uint256 expected);
    error ReportMismatch(uint256 slot);
    error WrongEvaluationMode(bool encrypted);
    error InvalidOutputsDigest();
    error InvalidEvaluationParameters();
    error OutputsNotAgreed(uint256 subgroup, bytes32 digest);
    error OutputsAgreed(uint256 subgroup, bytes32 digest);
    error NothingToClaim(address account);
    error NotHeld(uint256 subgroup);
    error AlreadyReleased(uint256 subgroup);
    error WrongFinalKey(uint256 subgroup);
    error FinalKeyPending(address evaluator, uint256 heldSeats);
    error AlreadyRejected(address participant, uint256 round);
    error NotLicensed(address evaluator);

    event TaskInitialized(address indexed owner, Cid genesisModel, uint256 rewardDeposit, uint256 feeBudget);
    event ParticipantRegistered(address indexed participant, uint256 index, bytes32 publicKey);
    event EvaluatorOptedIn(address indexed evaluator, uint256 index, uint256 bond);
    event EvaluatorOptedOut(address indexed evaluator, uint256 bond);
    event BondWithdrawn(address indexed evaluator, uint256 amount);
    event TrainingStarted(uint256 participants);
    event SeedScheduled(uint256 indexed round, uint256 subgroup, uint256 seedBlock);
    event RoundStarted(uint256 indexed round, bytes32 seed, uint256 subgroups, uint256 submissionDeadline);
    event CommitteeDrawn(uint256 indexed round, uint256 indexed subgroup, uint8 cohort, address[] members);
    event UpdateSubmitted(uint256 indexed round, address indexed participant, Cid update, Cid aux);
    event SharesRevealed(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator, Cid shares);
    event ResultCommitted(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator);
    event ResultRevealed(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator, Cid result);
    event SubgroupFinalized(uint256 indexed round, uint256 indexed subgroup, SubgroupStatus status, Cid result);
    event DisputeOpened(uint256 indexed round, uint256 indexed subgroup, uint256 seedBlock);
    event EvaluatorSlashed(address indexed evaluator, uint256 indexed round, uint256 amount, string reason);
    event FeePaid(address indexed evaluator, uint256 amount);
    event GlobalModelPublished(uint256 indexed round, Cid model);
    event FinalRoundSignalled(uint256 round);
    event TrainingComplete(uint256 finalRound);
    event EvaluationSetPublished(Cid testSet, Cid context, uint256 commitDeadline);
    event ScoresCommitted(uint256 indexed subgroup, address indexed evaluator);
    event ScoresRevealed(uint256 indexed subgroup, address indexed evaluator, uint256[] scores);
    event EncryptedEvaluationSetPublished(Cid testSet, Cid context, string params, uint256 commitDeadline);
    event OutputsRevealed(uint256 indexed subgroup, address indexed evaluator, bytes32 digest, Cid outputs);
    event ScoresPublished(uint256 indexed subgroup, bytes32 outputsDigest, Cid audit);
    event ScoresUnresolved(uint256 indexed subgroup, bytes32 majorityDigest);
    event ParticipantScored(address indexed participant, uint256 score);
    event EvaluatorScored(address indexed evaluator, uint256 indexed subgroup, uint256 score);
    event FinalModelReleased(uint256 indexed subgroup, Cid ciphertext, bytes32 key, address by);
    event FinalModelWithheld(uint256 indexed subgroup, uint256 slashed);
    event RewardsSettled(uint256 participantPool, uint256 totalScore, uint256 publicGoods, uint256 ownerRefund);
    event Claimed(address indexed account, uint256 amount);
    event TaskCancelled();
    event TaskAbandoned(uint256 round, uint256 contributions, uint256 perContribution);
    event GlobalModelRejected(uint256 indexed round, address indexed participant, uint256 rejections);
    event ExcessSwept(uint256 amount);

    struct Round {
        bytes32 seed;
        bytes32 submissionsDigest;
        bytes32 entropy; // the hash of the block that seeded the round
        uint64 submissionDeadline;
        uint32 numSubgroups;
        uint32 pendingSubgroups;
        uint32 submissions;
        Cid globalModel;
        uint64 closedAt; // block at which the last subgroup was finalized
        uint32 excluded; // submitters in failed or aborted subgroups (not contributions)
    }

    struct Subgroup {
        uint64 commitStart;
        uint64 commitDeadline;
        uint64 revealDeadline;
        SubgroupStatus status;
        uint8 cohort; // 0 = first committee, 1 = dispute committee
        Cid result;
        uint64 seedBlock; // a dispute: the block whose hash draws its committee (0 once drawn)
        uint64 openedAt; // a dispute: the block it was opened in
        bool aborted; // accepted as a secure-aggregation abort: nobody's update is in it
        bool held; // the final round's accepted result: sealed until rewards settle (`releaseFinalModel`)
    }

    struct Vote {
        uint8 state;
        bool aborted; // the member revealed its result as a secure-aggregation abort
        bytes32 commitment;
        Cid result;
    }

    struct ScoreVote {
        uint8 state;
        bytes32 commitment;
        bytes32 reportHash;
    }

    struct Reward {
        uint128 score;
        uint128 cumulativeBefore; // sum of the scores settled before this one
    }

    struct Bond {
        uint128 amount;
        uint64 bannedAt; // block of its first slash in this task (0: never)
        uint32 indexPlusOne; // position in `_evaluators`, 0 when not opted in
        uint32 heldSeats; // held final-round results it backed whose key nobody has released yet
    }

    struct SignedUpdate {
        address participant;
        Cid update;
        Cid aux;
        bytes32 r;
        bytes32 vs; // EIP-2098 compact signature
    }

    bool internal _initialized;
    address public owner;
    IERC20 public token;
    EvaluatorRegistry public registry;
    address public publicGoodsFund;
    /// @notice The network's evaluator licences (IEvaluatorLicence); address(0): none required.
    /// When set, opting in and scoring (the reward phase's committees) need a licence in good standing.
    address public licence;
    TaskParams internal _params;

    Phase public phase;
    uint64 public registrationDeadline;
    /// @notice While a draw is pending, the block whose hash will seed it (0: none pending).
    uint64 public seedBlock;
    /// @notice The owner's current deadline (publish a global model, or the evaluation set); 0: none.
    uint64 public ownerDeadline;
    uint256 public currentRound;
    uint256 public finalRound;

    address[] internal _participants;
    mapping(address => uint32) internal _indexPlusOne;
    mapping(address => bytes32) public publicKeyOf;

    address[] internal _evaluators; // opted in; frozen when training starts
    mapping(address => Bond) internal _bonds;
    uint256 public activeEvaluators; // opted in and never slashed
    uint256 public bondEscrow;

    mapping(uint256 => Round) internal _rounds;
    mapping(uint256 => mapping(uint256 => uint256)) internal _submittedBits;
    mapping(uint256 => mapping(uint256 => Subgroup)) internal _subgroups;
    mapping(uint256 => mapping(uint256 => mapping(uint8 => address[]))) internal _committees;
    mapping(uint256 => mapping(uint256 => mapping(uint8 => mapping(address => Vote)))) internal _votes;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) public sharesRevealed;

    Cid public evaluationSet;
    Cid public evaluationContext;
    uint64 public scoreCommitStart;
    uint64 public scoreCommitDeadline;
    uint64 public scoreRevealDeadline;
    uint64 public scorePublishDeadline;
    uint32 public pendingScoreSubgroups;
    mapping(uint256 => bool) public scoresFinal;
    mapping(uint256 => mapping(bytes32 => uint256)) internal _outputBackers; // subgroup -> digest -> reveals
    mapping(uint256 => mapping(address => ScoreVote)) internal _scoreVotes;
    mapping(uint256 => Reward) internal _rewards;
    mapping(uint256 => bool) public rewardClaimed;
    uint256 public totalScore;
    uint256 public totalContributions; // accepted submissions over all rounds (abandonment payout)
    uint256 public perContribution; // set when abandoned, or when every score is 0

    // accounting: token.balanceOf(this) >= liabilities() (equal unless someone sent tokens directly;
    // sweepExcess hands such tokens to the public-goods fund)
    uint256 public rewardEscrow;
    uint256 public feeEscrow;
    uint256 public participantPool;
    uint256 public participantPoolRemaining;
    uint256 public totalClaimable;
    mapping(address => uint256) public claimable;
    /// @notice Votes an evaluator cast with its committee's majority (aggregation or scoring), the
    /// activity VoiceCredits grants evaluator credits for.
    mapping(address => uint32) public majorityVotesOf;
    /// @notice Participants who refused the global model published for a round (it is not the
    /// weighted mean of that round's accepted results), and how many did.
    mapping(uint256 => mapping(address => bool)) public rejectedModel;
    mapping(uint256 => uint256) public modelRejections;

    /// @notice The final model's hold (paper 5.1 step 5d, 5.2 step 6b): each accepted result of the
    /// final round is stored sealed, and released here after rewards settle. `finalKeys[g]` is the
    /// key released for subgroup g (0: not yet); the backers of a result whose key is still unreleased
    /// after `releaseDeadline` are slashed.
    mapping(uint256 => bytes32) public finalKeys;
    uint64 public releaseDeadline;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier inPhase(Phase p) {
        if (phase != p) revert WrongPhase(p, phase);
        _;
    }


    // ------------------------------------------------------------------ shared rules

    /// @dev The caller's vote in the subgroup's cohort; reverts unless it holds a seat there and has
    /// not been slashed in this task (a slashed evaluator can neither vote nor earn).
    function _seated(uint256 round, uint256 subgroup, uint8 cohort) internal view returns (Vote storage v) {
        v = _votes[round][subgroup][cohort][msg.sender];
        if (v.state == 0) revert NotCommitteeMember(msg.sender, round, subgroup);
        if (_bonds[msg.sender].bannedAt != 0) revert EvaluatorBanned(msg.sender);
    }

    /// @dev Where the network requires licences, the caller must hold one in good standing,
    /// bought at block `since` or earlier.
    function _checkLicence(uint256 since) internal view {
        address l = licence;
        if (l != address(0) && !IEvaluatorLicence(l).isLicensedSince(msg.sender, since)) revert NotLicensed(msg.sender);
    }

    function _credit(address to, uint256 amount) internal {
        if (amount == 0) return;
        claimable[to] += amount;
        totalClaimable += amount;
    }

    /// @dev A slashed evaluator earns nothing more in this task.
    function _payFee(address ev) internal {
        if (_bonds[ev].bannedAt != 0) return;
        majorityVotesOf[ev] += 1;
        uint256 fee = _params.evaluatorFee;
        if (fee > feeEscrow) fee = feeEscrow;
        if (fee == 0) return;
        feeEscrow -= fee;
        _credit(ev, fee);
        emit FeePaid(ev, fee);
    }

    /// @dev Silence is punished once: a slashed member cannot reveal any more, so its later silence
    /// is not a new offence.
    function _slashSilent(address ev, uint256 round) internal {
        if (_bonds[ev].bannedAt == 0) _slash(ev, round, "silent");
    }

    /// @dev Takes up to `slashAmount` from the bond the evaluator deposited into this task, for the
    /// network's public-goods fund; the evaluator is banned from this task (no vote, no fee, no new
    /// seat).
    function _slash(address ev, uint256 round, string memory reason) internal {
        Bond storage b = _bonds[ev];
        uint256 taken = _params.slashAmount < b.amount ? _params.slashAmount : b.amount;
        b.amount -= uint128(taken);
        bondEscrow -= taken;
        if (b.bannedAt == 0) {
            b.bannedAt = uint64(block.number);
            activeEvaluators -= 1;
        }
        _credit(publicGoodsFund, taken);
        emit EvaluatorSlashed(ev, round, taken, reason);
    }

    function _pendingSubgroup(uint256 round, uint256 subgroup) internal view returns (Subgroup storage s) {
        if (round > currentRound) revert WrongRound(currentRound, round);
        if (subgroup >= _rounds[round].numSubgroups) revert UnknownSubgroup(round, subgroup);
        s = _subgroups[round][subgroup];
        if (s.status != SubgroupStatus.Pending) revert SubgroupFinal(round, subgroup);
    }

    function _submitted(uint256 round, uint256 p) internal view returns (bool) {
        return _submittedBits[round][p / 255] & (1 << (p % 255)) != 0;
    }

    function _bounds(uint256 subgroup, uint256 groups) internal view returns (uint256 start, uint256 end) {
        start = subgroup * _params.subgroupSize;
        end = subgroup + 1 == groups ? _participants.length : start + _params.subgroupSize;
    }
}
