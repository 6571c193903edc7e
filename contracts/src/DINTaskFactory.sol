// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DINTask, TaskParams} from "./DINTask.sol";
import {EvaluatorRegistry} from "./EvaluatorRegistry.sol";
import {DINParameters} from "./economy/DINParameters.sol";

/// @title DINTaskFactory: a Model Owner creates a training task here (paper 5.1 step 1).
/// @notice Each task is a minimal proxy (EIP-1167) of one DINTask implementation. The factory
/// refuses parameters a hostile creator could use against evaluators or that could never finish:
/// windows shorter than `minWindow` blocks, a bond below `minBond` or a slash above the bond, an
/// even or oversized committee, and any size whose worst-case transaction would not fit in
/// `BLOCK_GAS_BUDGET` (from the per-seat and per-participant costs measured by benchmarks/gas.py).
/// Slashed stake and the public-goods share go to the network's `publicGoodsFund`, fixed here at
/// deployment: a task creator cannot choose where they go. The owner's reward deposit and fee
/// budget are pulled with transferFrom (approve the factory first) straight into the new task.
/// In a governed network (`parameters` set) a task must also use the governed public-goods share
/// and stay within the governed minimum bond and fee cap, as they stand when it is created; where
/// `licence` is set its evaluators need an evaluator licence to opt in and to score.
contract DINTaskFactory {
    using SafeERC20 for IERC20;

    error InsufficientAllowance(uint256 allowance, uint256 needed);
    error InsufficientBalance(uint256 balance, uint256 needed);
    error InvalidParameters(string reason);
    error ExceedsBlockGas(string transaction, uint256 gas, uint256 budget);

    event TaskCreated(address indexed task, address indexed owner, uint256 index);

    // hard bounds (every loop in DINTask is bounded by one of these)
    uint256 public constant MAX_COMMITTEE = 15;
    uint256 public constant MAX_ROUNDS = 64;
    uint256 public constant MAX_PARTICIPANTS = 2_000;
    uint256 public constant MAX_EVALUATORS = 200;
    // worst-case gas model, measured (benchmarks/gas.py prints the measured values beside these)
    uint256 public constant BLOCK_GAS_BUDGET = 16_000_000; // under EIP-7825's per-transaction cap (2^24 = 16,777,216)
    uint256 public constant DRAW_FIXED_GAS = 400_000; // drawRound without its subgroups and seats (~200k measured)
    uint256 public constant SUBGROUP_GAS = 70_000; // one subgroup's windows, committee array and event (~50k)
    uint256 public constant SEAT_GAS = 100_000; // one committee seat (shuffle, storage, event): 81-97k measured
    uint256 public constant CANDIDATE_GAS = 6_000; // one opted-in evaluator checked once per draw
    uint256 public constant MEMBER_GAS = 30_000; // one subgroup member counted at acceptance
    uint256 public constant SCORE_FIXED_GAS = 500_000; // finalizeScores without its participants
    uint256 public constant SCORE_GAS = 70_000; // one participant's scores reduced and recorded (~60-67k)
    uint256 public constant REPORT_GAS = 1_000; // one member's report of one participant
    uint256 public constant VOTE_PAIR_GAS = 1_500; // one pair comparison in a majority count
    uint256 public constant BITMAP_WORD_GAS = 25_000; // one submission-bitmap word pre-touched

    IERC20 public immutable token;
    EvaluatorRegistry public immutable registry;
    address public immutable implementation;
    address public immutable publicGoodsFund;
    uint256 public immutable minBond;
    uint32 public immutable minWindow;
    DINParameters public immutable parameters; // address(0): ungoverned
    address public immutable licence; // address(0): no licences required
    address[] public tasks;
    mapping(address => bool) public isTask;

    constructor(
        IERC20 token_,
        EvaluatorRegistry registry_,
        address implementation_,
        address publicGoodsFund_,
        uint256 minBond_,
        uint32 minWindow_,
        DINParameters parameters_,
        address licence_
    ) {
        if (publicGoodsFund_ == address(0) || minBond_ == 0 || minWindow_ < 2) revert InvalidParameters("factory");
        token = token_;
        registry = registry_;
        implementation = implementation_;
        publicGoodsFund = publicGoodsFund_;
        minBond = minBond_;
        minWindow = minWindow_;
        parameters = parameters_;
        licence = licence_;
    }

    function createTask(TaskParams calldata params) external returns (address task) {
        if (msg.sender == publicGoodsFund) revert InvalidParameters("owner is the public-goods fund");
        checkParams(params);
        uint256 needed = params.rewardDeposit + params.feeBudget;
        uint256 allowance = token.allowance(msg.sender, address(this));
        if (allowance < needed) revert InsufficientAllowance(allowance, needed);
        uint256 balance = token.balanceOf(msg.sender);
        if (balance < needed) revert InsufficientBalance(balance, needed);
        task = Clones.clone(implementation);
        DINTask(task).initialize(msg.sender, params, token, registry, publicGoodsFund, licence);
        tasks.push(task);
        isTask[task] = true;
        token.safeTransferFrom(msg.sender, task, needed);
        emit TaskCreated(task, msg.sender, tasks.length - 1);
    }

    /// @notice Reverts with the reason unless `p` is acceptable; view, so a creator can check first.
    function checkParams(TaskParams calldata p) public view {
        if (p.rewardDeposit == 0) revert InvalidParameters("rewardDeposit is zero");
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert InvalidParameters("rounds outside 1..64");
        uint256 k = p.evaluatorsPerSubgroup;
        if (k == 0 || k % 2 == 0 || k > MAX_COMMITTEE) revert InvalidParameters("committee not odd in 1..15");
        if (p.subgroupSize == 0) revert InvalidParameters("subgroupSize is zero");
        if (p.maxParticipants < p.subgroupSize || p.maxParticipants > MAX_PARTICIPANTS) {
            revert InvalidParameters("maxParticipants outside subgroupSize..2000");
        }
        if (p.maxEvaluators < k || p.maxEvaluators > MAX_EVALUATORS) {
            revert InvalidParameters("maxEvaluators outside committee..200");
        }
        if (p.publicGoodsBps > 10_000) revert InvalidParameters("publicGoodsBps above 10000");
        if (p.evaluatorBond < minBond) revert InvalidParameters("evaluatorBond below minBond");
        if (address(parameters) != address(0)) {
            if (p.publicGoodsBps != parameters.publicGoodsBps()) revert InvalidParameters("publicGoodsBps not the governed share");
            if (p.evaluatorBond < parameters.minBond()) revert InvalidParameters("evaluatorBond below governed minBond");
            if (p.evaluatorFee > parameters.feeCap()) revert InvalidParameters("evaluatorFee above governed feeCap");
        }
        if (p.slashAmount == 0 || p.slashAmount > p.evaluatorBond) {
            revert InvalidParameters("slashAmount outside 1..evaluatorBond");
        }
        uint32 w = minWindow;
        if (
            p.registrationWindow < w || p.submissionWindow < w || p.commitWindow < w || p.revealWindow < w
                || p.publishWindow < w || (p.shareWindow != 0 && p.shareWindow < w)
        ) revert InvalidParameters("a window is shorter than minWindow");
        // worst-case transactions: the round draw, a dispute, scoring the largest subgroup
        uint256 groups = p.maxParticipants / p.subgroupSize;
        uint256 largest = groups == 1 ? p.maxParticipants : 2 * p.subgroupSize - 1;
        _fits(
            "drawRound",
            DRAW_FIXED_GAS + groups * (SUBGROUP_GAS + k * SEAT_GAS) + p.maxEvaluators * CANDIDATE_GAS
                + (p.maxParticipants / 255 + 1) * BITMAP_WORD_GAS
        );
        uint256 dispute = 2 * k + 1;
        if (dispute > p.maxEvaluators) dispute = p.maxEvaluators;
        _fits(
            "finalizeSubgroup",
            (dispute + k) * (dispute + k) * VOTE_PAIR_GAS + largest * MEMBER_GAS + 2 * (dispute + k) * SEAT_GAS
        );
        _fits("drawDispute", DRAW_FIXED_GAS + dispute * SEAT_GAS + p.maxEvaluators * 2 * CANDIDATE_GAS);
        _fits("finalizeScores", SCORE_FIXED_GAS + largest * (SCORE_GAS + k * REPORT_GAS) + k * k * VOTE_PAIR_GAS);
    }

    function _fits(string memory what, uint256 gas) private pure {
        if (gas > BLOCK_GAS_BUDGET) revert ExceedsBlockGas(what, gas, BLOCK_GAS_BUDGET);
    }

    function taskCount() external view returns (uint256) {
        return tasks.length;
    }
}
