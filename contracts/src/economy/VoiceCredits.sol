// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";
import {TaskParams} from "../DINTaskBase.sol";

interface ITaskFactoryRecord {
    function isTask(address task) external view returns (bool);
}

interface ITaskActivity {
    function phase() external view returns (uint8);
    function owner() external view returns (address);
    function totalContributions() external view returns (uint256);
    function contributionsOf(address participant) external view returns (uint256);
    function majorityVotesOf(address evaluator) external view returns (uint32);
    function params() external view returns (TaskParams memory);
}

/// @title VoiceCredits: the non-coin voting credits of DIN governance (paper section 8:
/// "non-coin-based voting credits" allocated "based on participant types (e.g., Evaluators, Model
/// Owners, participants)").
/// @notice Credits are granted by the protocol from verified activity in finished tasks of the
/// network's factory, read from the task's own public state: a Model Owner earns `ownerCredits`
/// for a finished task in which someone contributed and whose reward deposit was at least
/// `ownerMinReward` (paid out to others: a task that costs nothing earns no owner credits), a
/// participant `participantCredits` per accepted update, an evaluator `evaluatorCredits` per vote
/// it cast with the majority. Only tasks that admitted participants through the network's identity
/// registry count (so a task's participants are verified people, not its owner's Sybils), and only
/// verified identities receive credits. Anyone may record an account's credits from a task, once per
/// task and account. Credits cannot be transferred, bought or spent on anything but votes, and each
/// account's history is checkpointed by block, so a vote counts the credits held at its snapshot
/// block: credits earned during a vote do not count in it. No token balance is read.
contract VoiceCredits {
    using Checkpoints for Checkpoints.Trace208;

    uint8 public constant OWNER = 0;
    uint8 public constant PARTICIPANT = 1;
    uint8 public constant EVALUATOR = 2;
    uint8 internal constant FINISHED = 3; // DINTask.Phase.Finished

    error NotATask(address task);
    error TaskNotVerified(address task, address identityRegistry);
    error TaskNotFinished(address task);
    error AlreadyGranted(address task, address account);
    error NoActivity(address task, address account);
    error NotVerified(address account);
    error FutureLookup(uint256 blockNumber, uint256 current);

    event CreditsGranted(address indexed account, address indexed task, uint8 indexed kind, uint256 credits);

    ITaskFactoryRecord public immutable factory;
    IIdentityRegistry public immutable identity;
    uint256 public immutable ownerCredits;
    uint256 public immutable participantCredits;
    uint256 public immutable evaluatorCredits;
    uint256 public immutable ownerMinReward;

    mapping(address => Checkpoints.Trace208) private _credits;
    mapping(address => mapping(uint8 => uint256)) public creditsByKind;
    mapping(address => mapping(address => bool)) public granted; // task -> account
    uint256 public totalGranted;

    constructor(ITaskFactoryRecord factory_, IIdentityRegistry identity_, uint256 ownerCredits_,
        uint256 participantCredits_, uint256 evaluatorCredits_, uint256 ownerMinReward_) {
        factory = factory_;
        identity = identity_;
        ownerCredits = ownerCredits_;
        participantCredits = participantCredits_;
        evaluatorCredits = evaluatorCredits_;
        ownerMinReward = ownerMinReward_;
    }

    /// @notice The credits `account` would receive from `task` now, by kind (owner, participant, evaluator).
    function creditsFrom(address task, address account) public view returns (uint256[3] memory byKind) {
        if (!factory.isTask(task)) revert NotATask(task);
        ITaskActivity t = ITaskActivity(task);
        TaskParams memory p = t.params();
        if (p.identityRegistry != address(identity)) revert TaskNotVerified(task, p.identityRegistry);
        if (t.phase() != FINISHED) revert TaskNotFinished(task);
        if (t.owner() == account && t.totalContributions() > 0 && p.rewardDeposit >= ownerMinReward) {
            byKind[OWNER] = ownerCredits;
        }
        byKind[PARTICIPANT] = t.contributionsOf(account) * participantCredits;
        byKind[EVALUATOR] = uint256(t.majorityVotesOf(account)) * evaluatorCredits;
    }

    /// @notice Record `account`'s credits from its activity in finished task `task` (anyone may
    /// call; once per task and account).
    function grant(address task, address account) external returns (uint256 total) {
        if (granted[task][account]) revert AlreadyGranted(task, account);
        if (address(identity) != address(0) && !identity.isVerified(account)) revert NotVerified(account);
        uint256[3] memory byKind = creditsFrom(task, account);
        total = byKind[0] + byKind[1] + byKind[2];
        if (total == 0) revert NoActivity(task, account);
        granted[task][account] = true;
        for (uint8 k = 0; k < 3; ++k) {
            if (byKind[k] == 0) continue;
            creditsByKind[account][k] += byKind[k];
            emit CreditsGranted(account, task, k, byKind[k]);
        }
        totalGranted += total;
        _credits[account].push(SafeCast.toUint48(block.number), SafeCast.toUint208(_credits[account].latest() + total));
    }

    /// @notice Credits `account` holds now.
    function creditsOf(address account) external view returns (uint256) {
        return _credits[account].latest();
    }

    /// @notice Credits `account` held at the end of block `blockNumber` (a past block).
    function creditsAt(address account, uint256 blockNumber) external view returns (uint256) {
        if (blockNumber >= block.number) revert FutureLookup(blockNumber, block.number);
        return _credits[account].upperLookupRecent(SafeCast.toUint48(blockNumber));
    }
}
