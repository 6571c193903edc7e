// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DINTask, TaskParams} from "./DINTask.sol";
import {EvaluatorRegistry} from "./EvaluatorRegistry.sol";

/// @title DINTaskFactory: a Model Owner creates a training task here (paper 5.1 step 1).
/// @notice Each task is a minimal proxy (EIP-1167) of one DINTask implementation, trusted by
/// the evaluator registry to slash. The owner's reward deposit and evaluator-fee budget are
/// pulled with transferFrom (approve the factory first) straight into the new task.
contract DINTaskFactory {
    using SafeERC20 for IERC20;

    error InsufficientAllowance(uint256 allowance, uint256 needed);
    error InsufficientBalance(uint256 balance, uint256 needed);

    event TaskCreated(address indexed task, address indexed owner, uint256 index);

    IERC20 public immutable token;
    EvaluatorRegistry public immutable registry;
    address public immutable implementation;
    address[] public tasks;

    constructor(IERC20 token_, EvaluatorRegistry registry_, address implementation_) {
        token = token_;
        registry = registry_;
        implementation = implementation_;
    }

    function createTask(TaskParams calldata params) external returns (address task) {
        uint256 needed = params.rewardDeposit + params.feeBudget;
        uint256 allowance = token.allowance(msg.sender, address(this));
        if (allowance < needed) revert InsufficientAllowance(allowance, needed);
        uint256 balance = token.balanceOf(msg.sender);
        if (balance < needed) revert InsufficientBalance(balance, needed);
        task = Clones.clone(implementation);
        DINTask(task).initialize(msg.sender, params, token, registry); // validates params
        registry.trustTask(task);
        tasks.push(task);
        token.safeTransferFrom(msg.sender, task, needed);
        emit TaskCreated(task, msg.sender, tasks.length - 1);
    }

    function taskCount() external view returns (uint256) {
        return tasks.length;
    }
}
