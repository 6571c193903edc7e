// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Cid, CidLib} from "./lib/CidLib.sol";
import {Shuffle} from "./lib/Shuffle.sol";
import {BlockFlowScoring} from "./lib/BlockFlowScoring.sol";
import {EvaluatorRegistry} from "./EvaluatorRegistry.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";

/// @notice What a Model Owner fixes when creating a task (paper 5.1 step 1).
struct TaskParams {
    Cid genesisModel;
    uint256 rewardDeposit; // split among participants by score (less the public-goods share)
    uint256 feeBudget; // pays evaluator fees; what is left returns to the owner
    uint256 evaluatorFee; // per evaluator per accepted vote (aggregation or scoring)
    uint256 slashAmount; // taken from an evaluator's stake per offence
    uint32 rounds; // training rounds at most (the owner may end earlier)
    uint32 subgroupSize; // participants per aggregator subgroup
    uint32 evaluatorsPerSubgroup; // committee size
    uint16 publicGoodsBps; // share of the reward deposit for the public-goods fund
    address publicGoodsFund; // also receives slashed stake
    uint32 submissionWindow; // blocks
    uint32 commitWindow; // blocks
    uint32 revealWindow; // blocks
    address identityRegistry; // optional Sybil resistance; address(0) = open
    uint32 shareWindow; // blocks after the submission window for secure aggregation's share reveals (0: none)
}

/// @title DINTask: one training task, the paper's "intelligence" contract.
/// @notice A state machine the Model Owner drives and anyone can audit:
///   Registration -> Training (rounds: assign, submit, commit, reveal, finalize, publish)
///   -> Scoring (evaluation set, score commit/reveal, BlockFlow reduction) -> Finished (claims).
/// Update CIDs are recorded in events and folded into a per-round hash chain
/// (`submissionsDigest`), so a 1,000-participant round costs no per-participant storage slot;
/// the duplicate check is a bitmap. Relayed submissions are EIP-712 signed; a batch with any
/// bad entry reverts as a whole with the entry's index (the relayer checks signatures first).
contract DINTask is EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;
    using CidLib for Cid;

    enum Phase {
        Registration,
        Training,
        Scoring,
        Finished,
        Cancelled
    }

    enum SubgroupStatus {
        Pending,
        Accepted,
        Failed
    }

    // vote states
    uint8 private constant MEMBER = 1;
    uint8 private constant COMMITTED = 2;
    uint8 private constant REVEALED = 3;

    bytes32 public constant UPDATE_TYPEHASH = keccak256(
        "Update(uint256 round,bytes32 updateDigest,uint16 updateKind,bytes32 auxDigest,uint16 auxKind)"
    );

    error AlreadyInitialized();
    error InvalidParameters(string reason);
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
    error NotFinalRound(uint256 round, uint256 finalRound);
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

    event TaskInitialized(address indexed owner, Cid genesisModel, uint256 rewardDeposit, uint256 feeBudget);
    event ParticipantRegistered(address indexed participant, uint256 index, bytes32 publicKey);
    event TrainingStarted(uint256 participants);
    event RoundStarted(uint256 indexed round, bytes32 seed, uint256 subgroups, uint256 submissionDeadline);
    event CommitteeDrawn(uint256 indexed round, uint256 indexed subgroup, uint8 cohort, address[] members);
    event UpdateSubmitted(uint256 indexed round, address indexed participant, Cid update, Cid aux);
    event SharesRevealed(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator, Cid shares);
    event ResultCommitted(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator);
    event ResultRevealed(uint256 indexed round, uint256 indexed subgroup, address indexed evaluator, Cid result);
    event SubgroupFinalized(uint256 indexed round, uint256 indexed subgroup, SubgroupStatus status, Cid result);
    event DisputeOpened(uint256 indexed round, uint256 indexed subgroup, uint256 commitDeadline);
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
    event RewardsSettled(uint256 participantPool, uint256 totalScore, uint256 publicGoods, uint256 ownerRefund);
    event Claimed(address indexed account, uint256 amount);
    event TaskCancelled();

    struct Round {
        bytes32 seed;
        bytes32 submissionsDigest;
        bytes32 saltMix;
        uint64 submissionDeadline;
        uint32 numSubgroups;
        uint32 pendingSubgroups;
        uint32 submissions;
        Cid globalModel;
    }

    struct Subgroup {
        uint64 commitStart;
        uint64 commitDeadline;
        uint64 revealDeadline;
        SubgroupStatus status;
        uint8 cohort; // 0 = first committee, 1 = dispute committee
        Cid result;
    }

    struct Vote {
        uint8 state;
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

    struct SignedUpdate {
        address participant;
        Cid update;
        Cid aux;
        bytes32 r;
        bytes32 vs; // EIP-2098 compact signature
    }

    bool private _initialized;
    address public owner;
    IERC20 public token;
    EvaluatorRegistry public registry;
    TaskParams private _params;

    Phase public phase;
    uint256 public currentRound;
    uint256 public finalRound;

    address[] private _participants;
    mapping(address => uint32) private _indexPlusOne;
    mapping(address => bytes32) public publicKeyOf;

    mapping(uint256 => Round) private _rounds;
    mapping(uint256 => mapping(uint256 => uint256)) private _submittedBits;
    mapping(uint256 => mapping(uint256 => Subgroup)) private _subgroups;
    mapping(uint256 => mapping(uint256 => mapping(uint8 => address[]))) private _committees;
    mapping(uint256 => mapping(uint256 => mapping(uint8 => mapping(address => Vote)))) private _votes;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) public sharesRevealed;

    Cid public evaluationSet;
    Cid public evaluationContext;
    uint64 public scoreCommitStart;
    uint64 public scoreCommitDeadline;
    uint64 public scoreRevealDeadline;
    uint32 public pendingScoreSubgroups;
    mapping(uint256 => bool) public scoresFinal;
    // encrypted evaluation: committees agree on the digest of their encrypted outputs, the owner
    // (the key holder) decrypts them and publishes the scores for the agreed digest only
    bool public encryptedEvaluation;
    uint64 public scorePublishDeadline;
    mapping(uint256 => mapping(bytes32 => uint256)) private _outputBackers; // subgroup -> digest -> reveals
    mapping(uint256 => mapping(address => ScoreVote)) private _scoreVotes;
    mapping(uint256 => Reward) private _rewards;
    mapping(uint256 => bool) public rewardClaimed;
    uint256 public totalScore;

    // accounting: token.balanceOf(this) == rewardEscrow + feeEscrow + participantPoolRemaining + totalClaimable
    uint256 public rewardEscrow;
    uint256 public feeEscrow;
    uint256 public participantPool;
    uint256 public participantPoolRemaining;
    uint256 public totalClaimable;
    mapping(address => uint256) public claimable;

    constructor() EIP712("DINTask", "1") {
        _initialized = true; // the implementation itself is never a task
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier inPhase(Phase p) {
        if (phase != p) revert WrongPhase(p, phase);
        _;
    }

    // ------------------------------------------------------------------ setup

    function initialize(address owner_, TaskParams calldata p, IERC20 token_, EvaluatorRegistry registry_) external {
        if (_initialized) revert AlreadyInitialized();
        _initialized = true;
        p.genesisModel.check();
        if (p.rewardDeposit == 0) revert InvalidParameters("rewardDeposit is zero");
        if (p.rounds == 0) revert InvalidParameters("rounds is zero");
        if (p.subgroupSize == 0) revert InvalidParameters("subgroupSize is zero");
        if (p.evaluatorsPerSubgroup == 0) revert InvalidParameters("evaluatorsPerSubgroup is zero");
        if (p.publicGoodsBps > 10_000) revert InvalidParameters("publicGoodsBps above 10000");
        if (p.publicGoodsFund == address(0)) revert InvalidParameters("publicGoodsFund is zero");
        if (p.submissionWindow == 0 || p.commitWindow == 0 || p.revealWindow == 0) {
            revert InvalidParameters("a window is zero");
        }
        owner = owner_;
        token = token_;
        registry = registry_;
        _params = p;
        finalRound = p.rounds - 1;
        rewardEscrow = p.rewardDeposit;
        feeEscrow = p.feeBudget;
        emit TaskInitialized(owner_, p.genesisModel, p.rewardDeposit, p.feeBudget);
    }

    /// @notice Participant opt-in with its long-term public key for secure aggregation.
    function register(bytes32 publicKey) external inPhase(Phase.Registration) {
        if (publicKey == bytes32(0)) revert InvalidPublicKey();
        if (_indexPlusOne[msg.sender] != 0) revert AlreadyRegistered(msg.sender);
        address idr = _params.identityRegistry;
        if (idr != address(0) && !IIdentityRegistry(idr).isVerified(msg.sender)) revert NotAllowed(msg.sender);
        _participants.push(msg.sender);
        _indexPlusOne[msg.sender] = uint32(_participants.length);
        publicKeyOf[msg.sender] = publicKey;
        emit ParticipantRegistered(msg.sender, _participants.length - 1, publicKey);
    }

    /// @notice The owner withdraws the task before training starts: everything is refundable.
    function cancel() external onlyOwner inPhase(Phase.Registration) {
        phase = Phase.Cancelled;
        _credit(owner, rewardEscrow + feeEscrow);
        rewardEscrow = 0;
        feeEscrow = 0;
        emit TaskCancelled();
    }

    function startTraining() external onlyOwner inPhase(Phase.Registration) {
        uint256 n = _participants.length;
        if (n < _params.subgroupSize) revert NotEnoughParticipants(n, _params.subgroupSize);
        phase = Phase.Training;
        emit TrainingStarted(n);
        _assign(0, keccak256(abi.encode(address(this), _params.genesisModel.digest, blockhash(block.number - 1), block.prevrandao)));
    }

    // ------------------------------------------------------------------ assign

    function _assign(uint256 r, bytes32 seed) private {
        uint256 e = _params.evaluatorsPerSubgroup;
        uint256 eligible = registry.eligibleCount();
        if (eligible < e) revert NotEnoughEvaluators(eligible, e);
        uint256 groups = _participants.length / _params.subgroupSize;
        Round storage R = _rounds[r];
        R.seed = seed;
        // pre-touch this round's storage (bitmap words get sentinel bit 255, the digest starts
        // at the seed) so that no submission pays for a zero-to-nonzero write: the cost of a
        // submission is then the same for every participant (flat per-participant gas)
        R.submissionsDigest = seed;
        uint256 words = (_participants.length + 254) / 255;
        for (uint256 w = 0; w < words; ++w) {
            _submittedBits[r][w] = 1 << 255;
        }
        R.numSubgroups = uint32(groups);
        R.pendingSubgroups = uint32(groups);
        uint64 deadline = uint64(block.number) + _params.submissionWindow;
        R.submissionDeadline = deadline;
        currentRound = r;
        emit RoundStarted(r, seed, groups, deadline);
        bytes32 committeeSeed = keccak256(abi.encode(seed, "committee"));
        for (uint256 g = 0; g < groups; ++g) {
            Subgroup storage s = _subgroups[r][g];
            s.commitStart = deadline + _params.shareWindow;
            s.commitDeadline = s.commitStart + _params.commitWindow;
            s.revealDeadline = s.commitDeadline + _params.revealWindow;
            _drawCommittee(r, g, 0, e, committeeSeed, eligible);
        }
    }

    /// @dev committee slot k of subgroup g is eligible[shuffle((g*size + k) mod n)]: distinct
    /// within a committee whenever size <= n, and recomputable by anyone from the seed.
    function _drawCommittee(uint256 r, uint256 g, uint8 cohort, uint256 size, bytes32 seed, uint256 n) private {
        address[] storage members = _committees[r][g][cohort];
        for (uint256 k = 0; k < size; ++k) {
            address ev = registry.eligibleAt(Shuffle.forward((g * size + k) % n, n, seed));
            members.push(ev);
            _votes[r][g][cohort][ev].state = MEMBER;
        }
        emit CommitteeDrawn(r, g, cohort, members);
    }

    // ------------------------------------------------------------------ submit

    function submitUpdate(uint256 round, Cid calldata update, Cid calldata aux) external inPhase(Phase.Training) {
        if (round != currentRound) revert WrongRound(currentRound, round);
        Round storage R = _rounds[round];
        if (block.number > R.submissionDeadline) revert WindowClosed(R.submissionDeadline);
        update.check();
        aux.checkOptional();
        uint256 idx = _indexPlusOne[msg.sender];
        if (idx == 0) revert NotRegistered(msg.sender);
        _record(R, round, idx - 1, msg.sender, update, aux);
    }

    /// @notice A relayer submits many participants' EIP-712 signed updates in one transaction,
    /// so participants need no gas. Any bad entry reverts the whole batch, naming its index.
    function submitUpdatesRelayed(uint256 round, SignedUpdate[] calldata batch) external inPhase(Phase.Training) {
        if (round != currentRound) revert WrongRound(currentRound, round);
        Round storage R = _rounds[round];
        if (block.number > R.submissionDeadline) revert WindowClosed(R.submissionDeadline);
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

    function _record(Round storage R, uint256 round, uint256 index, address who, Cid calldata update, Cid calldata aux)
        private
    {
        uint256 word = index / 255;
        uint256 bit = 1 << (index % 255);
        uint256 bits = _submittedBits[round][word];
        if (bits & bit != 0) revert AlreadySubmitted(who, round);
        _submittedBits[round][word] = bits | bit;
        unchecked {
            R.submissions += 1;
        }
        R.submissionsDigest =
            keccak256(abi.encode(R.submissionsDigest, who, update.digest, update.kind, aux.digest, aux.kind));
        emit UpdateSubmitted(round, who, update, aux);
    }

    // ------------------------------------------------------------------ aggregate: commit, reveal, finalize

    /// @notice Secure aggregation: a member of a subgroup's first committee records the CID of its
    /// share reveal (the survivors' self-mask seeds and the dropouts' mask keys it holds) between
    /// the submission deadline and the commit window. Every member, and a dispute committee,
    /// unmasks from exactly the reveals recorded here, so members reading at different times
    /// cannot disagree; one reveal per member.
    function revealShares(uint256 round, uint256 subgroup, Cid calldata shares) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        uint64 opens = _rounds[round].submissionDeadline;
        if (block.number <= opens) revert WindowNotOpen(opens);
        if (s.cohort != 0 || block.number > s.commitStart) revert WindowClosed(s.commitStart);
        if (_votes[round][subgroup][0][msg.sender].state == 0) revert NotCommitteeMember(msg.sender, round, subgroup);
        if (sharesRevealed[round][subgroup][msg.sender]) revert AlreadyRevealedShares(msg.sender);
        shares.check();
        sharesRevealed[round][subgroup][msg.sender] = true;
        emit SharesRevealed(round, subgroup, msg.sender, shares);
    }

    function commitResult(uint256 round, uint256 subgroup, bytes32 commitment) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (block.number <= s.commitStart) revert WindowNotOpen(s.commitStart);
        if (block.number > s.commitDeadline) revert WindowClosed(s.commitDeadline);
        Vote storage v = _votes[round][subgroup][s.cohort][msg.sender];
        if (v.state == 0) revert NotCommitteeMember(msg.sender, round, subgroup);
        if (v.state != MEMBER) revert AlreadyCommitted(msg.sender);
        v.state = COMMITTED;
        v.commitment = commitment;
        emit ResultCommitted(round, subgroup, msg.sender);
    }

    /// @notice commitment = keccak256(abi.encode(result.digest, result.kind, salt, evaluator)):
    /// binding the evaluator's address makes a copied commitment useless to a copycat.
    function revealResult(uint256 round, uint256 subgroup, Cid calldata result, bytes32 salt)
        external
        inPhase(Phase.Training)
    {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (block.number <= s.commitDeadline) revert WindowNotOpen(s.commitDeadline);
        if (block.number > s.revealDeadline) revert WindowClosed(s.revealDeadline);
        Vote storage v = _votes[round][subgroup][s.cohort][msg.sender];
        if (v.state == 0) revert NotCommitteeMember(msg.sender, round, subgroup);
        if (v.state == MEMBER) revert NotCommitted(msg.sender);
        if (v.state == REVEALED) revert AlreadyRevealed(msg.sender);
        result.check();
        if (keccak256(abi.encode(result.digest, result.kind, salt, msg.sender)) != v.commitment) {
            revert RevealMismatch(msg.sender);
        }
        v.state = REVEALED;
        v.result = result;
        _rounds[round].saltMix ^= salt;
        emit ResultRevealed(round, subgroup, msg.sender, result);
    }

    /// @notice After the reveal window anyone closes a subgroup: a result revealed by more than
    /// half of the committee is accepted and its backers paid; members outside it, or silent,
    /// are slashed. No majority opens a dispute with a larger fresh committee (2E+1); a dispute
    /// without majority marks the subgroup failed (left out of the global model).
    function finalizeSubgroup(uint256 round, uint256 subgroup) external inPhase(Phase.Training) {
        Subgroup storage s = _pendingSubgroup(round, subgroup);
        if (block.number <= s.revealDeadline) revert WindowNotOpen(s.revealDeadline);
        uint8 cohort = s.cohort;
        address[] storage c = _committees[round][subgroup][cohort];
        (bool found, Cid memory winner) = _majority(round, subgroup, cohort);
        if (found) {
            s.status = SubgroupStatus.Accepted;
            s.result = winner;
            _settleCohort(round, subgroup, cohort, winner, true);
            if (cohort == 1) _settleCohort(round, subgroup, 0, winner, false);
        } else if (cohort == 0) {
            _slashSilent(round, subgroup, 0);
            uint256 n = registry.eligibleCount();
            uint256 size = 2 * c.length + 1;
            if (size > n) size = n;
            if (size == 0) {
                s.status = SubgroupStatus.Failed;
            } else {
                s.cohort = 1;
                s.commitStart = uint64(block.number);
                s.commitDeadline = uint64(block.number) + _params.commitWindow;
                s.revealDeadline = s.commitDeadline + _params.revealWindow;
                _drawCommittee(round, subgroup, 1, size, keccak256(abi.encode(_rounds[round].seed, subgroup, "dispute")), n);
                emit DisputeOpened(round, subgroup, s.commitDeadline);
                return;
            }
        } else {
            _slashSilent(round, subgroup, 1);
            s.status = SubgroupStatus.Failed;
        }
        emit SubgroupFinalized(round, subgroup, s.status, s.result);
        Round storage R = _rounds[round];
        R.pendingSubgroups -= 1;
        if (R.pendingSubgroups == 0 && round == finalRound) _completeTraining();
    }

    function _majority(uint256 round, uint256 subgroup, uint8 cohort) private view returns (bool, Cid memory) {
        address[] storage c = _committees[round][subgroup][cohort];
        uint256 n = c.length;
        for (uint256 i = 0; i < n; ++i) {
            Vote storage vi = _votes[round][subgroup][cohort][c[i]];
            if (vi.state != REVEALED) continue;
            uint256 count = 0;
            for (uint256 j = 0; j < n; ++j) {
                Vote storage vj = _votes[round][subgroup][cohort][c[j]];
                if (vj.state == REVEALED && vj.result.digest == vi.result.digest && vj.result.kind == vi.result.kind) {
                    ++count;
                }
            }
            if (2 * count > n) return (true, vi.result);
        }
        return (false, Cid(bytes32(0), 0));
    }

    /// @dev pay (when `pay`) members who revealed `winner`; slash those who revealed anything
    /// else; slash silent members only when `pay` (silence in cohort 0 was punished at dispute).
    function _settleCohort(uint256 round, uint256 subgroup, uint8 cohort, Cid memory winner, bool pay) private {
        address[] storage c = _committees[round][subgroup][cohort];
        for (uint256 i = 0; i < c.length; ++i) {
            Vote storage v = _votes[round][subgroup][cohort][c[i]];
            if (v.state == REVEALED) {
                if (v.result.digest == winner.digest && v.result.kind == winner.kind) {
                    if (pay) _payFee(c[i]);
                } else {
                    _slash(c[i], round, "minority result");
                }
            } else if (pay) {
                _slash(c[i], round, "silent");
            }
        }
    }

    function _slashSilent(uint256 round, uint256 subgroup, uint8 cohort) private {
        address[] storage c = _committees[round][subgroup][cohort];
        for (uint256 i = 0; i < c.length; ++i) {
            if (_votes[round][subgroup][cohort][c[i]].state != REVEALED) _slash(c[i], round, "silent");
        }
    }

    // ------------------------------------------------------------------ publish

    /// @notice The owner publishes the global model of a finished round (the weighted mean of
    /// the accepted subgroup results; anyone can recompute it). The next round is then
    /// assigned, its seed mixing the evaluators' revealed salts with the block hash. The
    /// final round's model is published only once rewards are settled (paper 5.1 step 5d).
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
        if (round != currentRound) revert WrongRound(currentRound, round);
        if (R.pendingSubgroups != 0) revert SubgroupsPending(round, R.pendingSubgroups);
        R.globalModel = model;
        emit GlobalModelPublished(round, model);
        _assign(round + 1, keccak256(abi.encode(R.seed, R.saltMix, blockhash(block.number - 1), block.prevrandao)));
    }

    /// @notice The owner ends training with the current round.
    function signalFinalRound() external onlyOwner inPhase(Phase.Training) {
        finalRound = currentRound;
        emit FinalRoundSignalled(currentRound);
        if (_rounds[currentRound].pendingSubgroups == 0) _completeTraining();
    }

    function _completeTraining() private {
        phase = Phase.Scoring;
        emit TrainingComplete(finalRound);
    }

    // ------------------------------------------------------------------ score

    /// @notice The owner records its evaluation set and context (plaintext scoring: evaluators
    /// read the set, score, and the contract reduces their reports with BlockFlow's median rule);
    /// the final round's committees then score the participants of their own subgroup.
    function publishEvaluationSet(Cid calldata testSet, Cid calldata context) external onlyOwner inPhase(Phase.Scoring) {
        _openScoring(testSet, context);
        emit EvaluationSetPublished(testSet, context, scoreCommitDeadline);
    }

    /// @notice Encrypted evaluation (paper 5.2): the owner records its CKKS-encrypted test set,
    /// the public evaluation context (no secret key) and their parameters. Committees then
    /// commit and reveal the digest of their encrypted outputs (`revealOutputs`); the owner, who
    /// alone can decrypt, publishes each subgroup's scores for the digest a majority agreed on
    /// (`publishScores`).
    function publishEncryptedEvaluationSet(Cid calldata testSet, Cid calldata context, string calldata heParams)
        external
        onlyOwner
        inPhase(Phase.Scoring)
    {
        if (bytes(heParams).length == 0 || bytes(heParams).length > 512) revert InvalidEvaluationParameters();
        _openScoring(testSet, context);
        encryptedEvaluation = true;
        scorePublishDeadline = scoreRevealDeadline + _params.revealWindow;
        emit EncryptedEvaluationSetPublished(testSet, context, heParams, scoreCommitDeadline);
    }

    function _openScoring(Cid calldata testSet, Cid calldata context) private {
        if (evaluationSet.kind != 0) revert EvaluationSetAlreadyPublished();
        testSet.check();
        context.check();
        evaluationSet = testSet;
        evaluationContext = context;
        scoreCommitStart = uint64(block.number);
        scoreCommitDeadline = uint64(block.number) + _params.commitWindow;
        scoreRevealDeadline = scoreCommitDeadline + _params.revealWindow;
        pendingScoreSubgroups = _rounds[finalRound].numSubgroups;
    }

    function commitScores(uint256 subgroup, bytes32 commitment) external inPhase(Phase.Scoring) {
        if (evaluationSet.kind == 0) revert EvaluationSetMissing();
        if (block.number > scoreCommitDeadline) revert WindowClosed(scoreCommitDeadline);
        _scoringSubgroup(subgroup);
        if (_votes[finalRound][subgroup][0][msg.sender].state == 0) {
            revert NotCommitteeMember(msg.sender, finalRound, subgroup);
        }
        ScoreVote storage v = _scoreVotes[subgroup][msg.sender];
        if (v.state != 0) revert AlreadyCommitted(msg.sender);
        v.state = COMMITTED;
        v.commitment = commitment;
        emit ScoresCommitted(subgroup, msg.sender);
    }

    /// @notice scores[q] is the score (1e18 = 1.0) of the participant at position q of the
    /// subgroup (see `subgroupMembers`); commitment = keccak256(abi.encode(scores, salt, evaluator)).
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

    /// @notice After the reveal window anyone reduces a subgroup's revealed reports (passed
    /// again as calldata, checked against their hashes; an empty row for each silent member)
    /// with BlockFlow's median rule. Silent evaluators and those whose evaluator score is 0
    /// (a score 1/2 or more away from a median) are slashed; the others are paid the fee.
    function finalizeScores(uint256 subgroup, uint256[][] calldata reports) external inPhase(Phase.Scoring) {
        (uint256 start, uint256 end) = _scoresDue(subgroup, false);
        address[] storage c = _committees[finalRound][subgroup][0];
        if (reports.length != c.length) revert ScoresLengthMismatch(reports.length, c.length);
        // who counts: revealed and not banned (one registry look-up per member)
        bool[] memory counts = new bool[](c.length);
        bool[] memory banned = new bool[](c.length);
        uint256 counted = 0;
        for (uint256 k = 0; k < c.length; ++k) {
            banned[k] = _banned(c[k]);
            ScoreVote storage v = _scoreVotes[subgroup][c[k]];
            if (v.state == REVEALED && !banned[k]) {
                if (keccak256(abi.encode(reports[k])) != v.reportHash) revert ReportMismatch(k);
                counts[k] = true;
                ++counted;
            }
        }
        uint256[][] memory rows = new uint256[][](counted);
        counted = 0;
        for (uint256 k = 0; k < c.length; ++k) {
            if (counts[k]) rows[counted++] = reports[k];
        }
        uint256[] memory model;
        uint256[] memory quality;
        if (rows.length > 0) {
            (model, quality) = BlockFlowScoring.reduce(rows);
        } else {
            model = new uint256[](end - start);
        }
        counted = 0;
        for (uint256 k = 0; k < c.length; ++k) {
            address ev = c[k];
            if (counts[k]) {
                uint256 q = quality[counted++];
                emit EvaluatorScored(ev, subgroup, q);
                if (q == 0) _slash(ev, finalRound, "score far from median");
                else _payFee(ev);
            } else if (!banned[k]) {
                _slash(ev, finalRound, "silent");
            }
        }
        _recordScores(subgroup, start, model);
    }

    /// @notice Encrypted evaluation: a committee member opens its commitment
    /// keccak256(abi.encode(digest, outputs.digest, outputs.kind, salt, evaluator)), where digest is
    /// the SHA-256 of the encrypted outputs it stored at `outputs`. A banned evaluator cannot reveal;
    /// each reveal is counted for its digest when it is made, so later bans do not move a majority.
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
        if (_banned(msg.sender)) revert NotAllowed(msg.sender);
        v.state = REVEALED;
        v.reportHash = digest;
        _outputBackers[subgroup][digest] += 1;
        emit OutputsRevealed(subgroup, msg.sender, digest, outputs);
    }

    /// @notice The owner decrypted the outputs a majority of the subgroup's committee agreed on
    /// (more than half of its members revealed `outputsDigest`) and publishes the scores it
    /// derived, with the CID of its audit record. Backers of the digest are paid the fee; the
    /// other members (another digest, or silent) are slashed. The trust assumption: the owner
    /// could misreport a decryption; the audit record and the agreed ciphertexts let anyone check
    /// it once the owner reveals its key. Publishing stays possible after `scorePublishDeadline`
    /// until someone closes the subgroup (`closeUnresolvedScores`).
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

    /// @notice Closes a subgroup whose scores cannot be published. No digest has a majority (a
    /// dispute: after the reveal window): nothing is paid on its unresolved scores, its
    /// participants score 0, silent members are slashed. A majority exists but the owner has not
    /// published by `scorePublishDeadline`: the backers are paid, the rest slashed, and every
    /// participant of the subgroup that submitted in the final round scores 1 (the owner forfeits
    /// its say).
    function closeUnresolvedScores(uint256 subgroup) external inPhase(Phase.Scoring) {
        (uint256 start, uint256 end) = _scoresDue(subgroup, true);
        bytes32 majority = _majorityOutputs(subgroup);
        uint256[] memory model = new uint256[](end - start);
        if (majority != bytes32(0)) {
            if (block.number <= scorePublishDeadline) revert OutputsAgreed(subgroup, majority);
            bytes32 seed = _rounds[finalRound].seed;
            for (uint256 q = 0; q < model.length; ++q) {
                if (_submitted(finalRound, Shuffle.inverse(start + q, _participants.length, seed))) {
                    model[q] = BlockFlowScoring.ONE;
                }
            }
        }
        _settleOutputVotes(subgroup, majority);
        emit ScoresUnresolved(subgroup, majority);
        _recordScores(subgroup, start, model);
    }

    /// @dev The digest that more than half of the committee's members revealed (counted when
    /// revealed), or zero.
    function _majorityOutputs(uint256 subgroup) private view returns (bytes32) {
        address[] storage c = _committees[finalRound][subgroup][0];
        for (uint256 k = 0; k < c.length; ++k) {
            ScoreVote storage v = _scoreVotes[subgroup][c[k]];
            if (v.state == REVEALED && 2 * _outputBackers[subgroup][v.reportHash] > c.length) return v.reportHash;
        }
        return bytes32(0);
    }

    /// @dev Pays the fee to members who revealed `majority` and slashes the others (silent, or
    /// outside the majority); with no majority only silent members are slashed.
    function _settleOutputVotes(uint256 subgroup, bytes32 majority) private {
        address[] storage c = _committees[finalRound][subgroup][0];
        for (uint256 k = 0; k < c.length; ++k) {
            address ev = c[k];
            if (_banned(ev)) continue;
            ScoreVote storage v = _scoreVotes[subgroup][ev];
            if (v.state != REVEALED) _slash(ev, finalRound, "silent");
            else if (majority == bytes32(0)) continue;
            else if (v.reportHash == majority) _payFee(ev);
            else _slash(ev, finalRound, "outputs outside the majority");
        }
    }

    function _recordScores(uint256 subgroup, uint256 start, uint256[] memory model) private {
        bytes32 seed = _rounds[finalRound].seed;
        uint256 n = _participants.length;
        uint256 total = totalScore;
        for (uint256 q = 0; q < model.length; ++q) {
            uint256 p = Shuffle.inverse(start + q, n, seed);
            _rewards[p] = Reward(uint128(model[q]), uint128(total));
            total += model[q];
            emit ParticipantScored(_participants[p], model[q]);
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
        if (encryptedEvaluation != encrypted) revert WrongEvaluationMode(encryptedEvaluation);
    }

    function _banned(address ev) private view returns (bool banned) {
        (,, banned,) = registry.evaluators(ev);
    }

    function _scoringSubgroup(uint256 subgroup) private view returns (uint256 start, uint256 end) {
        uint256 groups = _rounds[finalRound].numSubgroups;
        if (subgroup >= groups) revert UnknownSubgroup(finalRound, subgroup);
        if (scoresFinal[subgroup]) revert SubgroupFinal(finalRound, subgroup);
        return _bounds(subgroup, groups);
    }

    function _bounds(uint256 subgroup, uint256 groups) private view returns (uint256 start, uint256 end) {
        start = subgroup * _params.subgroupSize;
        end = subgroup + 1 == groups ? _participants.length : start + _params.subgroupSize;
    }

    // ------------------------------------------------------------------ reward, claim

    function _settle() private {
        phase = Phase.Finished;
        uint256 reward = rewardEscrow;
        uint256 publicGoods = (reward * _params.publicGoodsBps) / 10_000;
        uint256 pool = reward - publicGoods;
        rewardEscrow = 0;
        _credit(_params.publicGoodsFund, publicGoods);
        uint256 refund = feeEscrow;
        feeEscrow = 0;
        if (totalScore == 0) {
            refund += pool;
            pool = 0;
        }
        participantPool = pool;
        participantPoolRemaining = pool;
        _credit(owner, refund);
        emit RewardsSettled(pool, totalScore, publicGoods, refund);
    }

    /// @notice A participant's share of the pool, claimed or not:
    /// floor(pool*(before+score)/S) - floor(pool*before/S), so the shares add up to the pool
    /// exactly and no token is left as dust.
    function allocationOf(address participant) public view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0 || phase != Phase.Finished || totalScore == 0) return 0;
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
    function claim() external nonReentrant returns (uint256 amount) {
        amount = claimable[msg.sender];
        if (amount > 0) {
            claimable[msg.sender] = 0;
            totalClaimable -= amount;
        }
        uint256 idx = _indexPlusOne[msg.sender];
        if (idx != 0 && phase == Phase.Finished && !rewardClaimed[idx - 1]) {
            uint256 share = rewardOf(msg.sender);
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

    function _credit(address to, uint256 amount) private {
        if (amount == 0) return;
        claimable[to] += amount;
        totalClaimable += amount;
    }

    function _payFee(address ev) private {
        uint256 fee = _params.evaluatorFee;
        if (fee > feeEscrow) fee = feeEscrow;
        if (fee == 0) return;
        feeEscrow -= fee;
        _credit(ev, fee);
        emit FeePaid(ev, fee);
    }

    function _slash(address ev, uint256 round, string memory reason) private {
        uint256 taken = registry.slash(ev, _params.slashAmount);
        _credit(_params.publicGoodsFund, taken);
        emit EvaluatorSlashed(ev, round, taken, reason);
    }

    function _pendingSubgroup(uint256 round, uint256 subgroup) private view returns (Subgroup storage s) {
        if (round > currentRound) revert WrongRound(currentRound, round);
        if (subgroup >= _rounds[round].numSubgroups) revert UnknownSubgroup(round, subgroup);
        s = _subgroups[round][subgroup];
        if (s.status != SubgroupStatus.Pending) revert SubgroupFinal(round, subgroup);
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

    function _submitted(uint256 round, uint256 p) private view returns (bool) {
        return _submittedBits[round][p / 255] & (1 << (p % 255)) != 0;
    }

    /// @notice The participants of `subgroup` in `round`, in position order.
    function subgroupMembers(uint256 round, uint256 subgroup) external view returns (address[] memory members) {
        uint256 groups = _rounds[round].numSubgroups;
        if (subgroup >= groups) revert UnknownSubgroup(round, subgroup);
        (uint256 start, uint256 end) = _bounds(subgroup, groups);
        members = new address[](end - start);
        bytes32 seed = _rounds[round].seed;
        for (uint256 q = start; q < end; ++q) {
            members[q - start] = _participants[Shuffle.inverse(q, _participants.length, seed)];
        }
    }

    function scoreOf(address participant) external view returns (uint256) {
        uint256 idx = _indexPlusOne[participant];
        if (idx == 0) revert NotRegistered(participant);
        return _rewards[idx - 1].score;
    }

    /// @notice Everything the task owes or holds in escrow; equals its token balance.
    function liabilities() external view returns (uint256) {
        return rewardEscrow + feeEscrow + participantPoolRemaining + totalClaimable;
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
