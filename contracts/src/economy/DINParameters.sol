// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IGovernable} from "../interfaces/IGovernable.sol";

/// @title DINParameters: the network's governed economic parameters that new tasks must use.
/// @notice The factory reads these when a task is created: the public-goods share every task pays
/// (`publicGoodsBps`), the least evaluator bond a task may ask (`minBond`) and the most it may pay
/// an evaluator per vote (`feeCap`). Only the timelock changes them, so only an economic DIN
/// Proposal Protocol that passed a vote and waited out the delay can (DINProposals). A running task
/// keeps the values it was created with.
contract DINParameters is IGovernable {
    bytes32 public constant PUBLIC_GOODS_BPS = "publicGoodsBps";
    bytes32 public constant MIN_BOND = "minBond";
    bytes32 public constant FEE_CAP = "feeCap";
    /// @notice Upper bounds a vote cannot exceed: at most half the deposit to public goods, and
    /// amounts below 2^128 (what a task's bond slot holds).
    uint256 public constant MAX_PUBLIC_GOODS_BPS = 5_000;
    uint256 public constant MAX_AMOUNT = type(uint128).max;

    address public immutable timelock;
    uint256 public publicGoodsBps;
    uint256 public minBond;
    uint256 public feeCap;

    constructor(address timelock_, uint256 publicGoodsBps_, uint256 minBond_, uint256 feeCap_) {
        if (timelock_ == address(0)) revert NotTimelock(address(0));
        timelock = timelock_;
        checkValue(PUBLIC_GOODS_BPS, publicGoodsBps_);
        checkValue(MIN_BOND, minBond_);
        checkValue(FEE_CAP, feeCap_);
        publicGoodsBps = publicGoodsBps_;
        minBond = minBond_;
        feeCap = feeCap_;
    }

    function governs(bytes32 key) public pure returns (bool) {
        return key == PUBLIC_GOODS_BPS || key == MIN_BOND || key == FEE_CAP;
    }

    function checkValue(bytes32 key, uint256 value) public pure {
        if (!governs(key)) revert NotGovernable(key);
        uint256 top = key == PUBLIC_GOODS_BPS ? MAX_PUBLIC_GOODS_BPS : MAX_AMOUNT;
        bool floorZero = key == PUBLIC_GOODS_BPS; // a zero share is a choice; a zero bond or fee cap is not
        if (value > top || (!floorZero && value == 0)) revert ParameterOutOfRange(key, value);
    }

    function valueOf(bytes32 key) public view returns (uint256) {
        if (key == PUBLIC_GOODS_BPS) return publicGoodsBps;
        if (key == MIN_BOND) return minBond;
        if (key == FEE_CAP) return feeCap;
        revert NotGovernable(key);
    }

    function set(bytes32 key, uint256 value) external {
        if (msg.sender != timelock) revert NotTimelock(msg.sender);
        checkValue(key, value);
        uint256 previous = valueOf(key);
        if (key == PUBLIC_GOODS_BPS) publicGoodsBps = value;
        else if (key == MIN_BOND) minBond = value;
        else feeCap = value;
        emit ParameterChanged(key, previous, value);
    }
}
