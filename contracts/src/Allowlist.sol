// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";

/// @title Allowlist: the simplest identity registry, kept by one curator.
contract Allowlist is IIdentityRegistry {
    error NotCurator(address caller);

    event Verified(address indexed account, bool verified);

    address public immutable curator;
    mapping(address => bool) public isVerified;

    constructor(address curator_) {
        curator = curator_;
    }

    function setVerified(address account, bool verified) external {
        if (msg.sender != curator) revert NotCurator(msg.sender);
        isVerified[account] = verified;
        emit Verified(account, verified);
    }
}
