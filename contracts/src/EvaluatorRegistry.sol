// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title EvaluatorRegistry: evaluator staking (paper 3.2.2, 5.1 step 7a).
/// @notice Anyone staking at least `minStake` tokens is an eligible evaluator. Leaving takes a
/// cooldown (request, wait `unstakeCooldown` blocks, withdraw), during which the stake can
/// still be slashed for what the evaluator did before. Only tasks created by the trusted
/// factory can slash; a slashed evaluator is banned: it leaves the eligible set for good and
/// may only withdraw what remains of its stake.
contract EvaluatorRegistry is ReentrancyGuard {
    using SafeERC20 for IERC20;

    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    error EvaluatorBanned(address evaluator);
    error NotStaked(address evaluator);
    error AlreadyUnstaking(address evaluator);
    error UnstakeNotRequested(address evaluator);
    error CooldownActive(uint256 untilBlock);
    error NotAdmin(address caller);
    error NotFactory(address caller);
    error FactoryAlreadySet(address factory);
    error UntrustedTask(address caller);
    error ZeroAmount();
    error InvalidPublicKey();

    event Staked(address indexed evaluator, uint256 amount, uint256 total);
    event UnstakeRequested(address indexed evaluator, uint256 unlockBlock);
    event Withdrawn(address indexed evaluator, uint256 amount);
    event Slashed(address indexed evaluator, address indexed task, uint256 amount, uint256 remaining);
    event TaskTrusted(address indexed task);
    event FactorySet(address indexed factory);
    event PublicKeySet(address indexed evaluator, bytes32 publicKey);

    struct Evaluator {
        uint128 stake;
        uint64 unlockBlock; // nonzero while unstaking
        bool banned;
        uint32 indexPlusOne; // position in `eligible`, 0 when not eligible
    }

    IERC20 public immutable token;
    uint256 public immutable minStake;
    uint64 public immutable unstakeCooldown;
    address public immutable admin;
    address public factory;
    uint256 public totalStaked;

    mapping(address => Evaluator) public evaluators;
    mapping(address => bool) public trustedTask;
    /// @notice Each evaluator's long-term X25519 public key: participants encrypt their secure-
    /// aggregation shares and their revealed contributions to it.
    mapping(address => bytes32) public publicKeyOf;
    address[] private _eligible;

    constructor(IERC20 token_, uint256 minStake_, uint64 unstakeCooldown_, address admin_) {
        token = token_;
        minStake = minStake_;
        unstakeCooldown = unstakeCooldown_;
        admin = admin_;
    }

    /// @notice One-time wiring: the factory whose tasks may slash.
    function setFactory(address factory_) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        if (factory != address(0)) revert FactoryAlreadySet(factory);
        factory = factory_;
        emit FactorySet(factory_);
    }

    function trustTask(address task) external {
        if (msg.sender != factory) revert NotFactory(msg.sender);
        trustedTask[task] = true;
        emit TaskTrusted(task);
    }

    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Evaluator storage e = evaluators[msg.sender];
        if (e.banned) revert EvaluatorBanned(msg.sender);
        if (e.unlockBlock != 0) revert AlreadyUnstaking(msg.sender);
        uint256 total = uint256(e.stake) + amount;
        if (total < minStake) revert StakeBelowMinimum(total, minStake);
        e.stake = uint128(total);
        totalStaked += amount;
        if (e.indexPlusOne == 0) {
            _eligible.push(msg.sender);
            e.indexPlusOne = uint32(_eligible.length);
        }
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount, total);
    }

    /// @notice Publish (or rotate) the caller's X25519 public key; any address may, a key only
    /// matters once its holder is an eligible evaluator drawn into a committee.
    function setPublicKey(bytes32 publicKey) external {
        if (publicKey == bytes32(0)) revert InvalidPublicKey();
        publicKeyOf[msg.sender] = publicKey;
        emit PublicKeySet(msg.sender, publicKey);
    }

    function requestUnstake() external {
        Evaluator storage e = evaluators[msg.sender];
        if (e.stake == 0) revert NotStaked(msg.sender);
        if (e.unlockBlock != 0) revert AlreadyUnstaking(msg.sender);
        e.unlockBlock = uint64(block.number) + unstakeCooldown;
        _removeEligible(msg.sender);
        emit UnstakeRequested(msg.sender, e.unlockBlock);
    }

    function withdraw() external nonReentrant {
        Evaluator storage e = evaluators[msg.sender];
        if (e.unlockBlock == 0) revert UnstakeNotRequested(msg.sender);
        if (block.number < e.unlockBlock) revert CooldownActive(e.unlockBlock);
        uint256 amount = e.stake;
        e.stake = 0;
        e.unlockBlock = 0;
        totalStaked -= amount;
        if (amount > 0) token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Take up to `amount` of `evaluator`'s stake and send it to the calling task,
    /// which accounts for it; the evaluator is banned. Returns what was actually taken.
    function slash(address evaluator, uint256 amount) external nonReentrant returns (uint256 taken) {
        if (!trustedTask[msg.sender]) revert UntrustedTask(msg.sender);
        Evaluator storage e = evaluators[evaluator];
        taken = amount < e.stake ? amount : e.stake;
        e.stake -= uint128(taken);
        e.banned = true;
        totalStaked -= taken;
        _removeEligible(evaluator);
        if (taken > 0) token.safeTransfer(msg.sender, taken);
        emit Slashed(evaluator, msg.sender, taken, e.stake);
    }

    function _removeEligible(address who) private {
        Evaluator storage e = evaluators[who];
        uint256 idx = e.indexPlusOne;
        if (idx == 0) return;
        address last = _eligible[_eligible.length - 1];
        _eligible[idx - 1] = last;
        evaluators[last].indexPlusOne = uint32(idx);
        _eligible.pop();
        e.indexPlusOne = 0;
    }

    function isEligible(address who) external view returns (bool) {
        return evaluators[who].indexPlusOne != 0;
    }

    function eligibleCount() external view returns (uint256) {
        return _eligible.length;
    }

    function eligibleAt(uint256 index) external view returns (address) {
        return _eligible[index];
    }

    function eligibleEvaluators() external view returns (address[] memory) {
        return _eligible;
    }

    function stakeOf(address who) external view returns (uint256) {
        return evaluators[who].stake;
    }
}
