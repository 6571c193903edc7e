// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Sybil resistance (paper section 6, second point): a task may require that every
/// participant is verified by an identity registry (decentralised identity, credentials, a
/// manual allowlist). `address(0)` as the registry means open participation.
interface IIdentityRegistry {
    function isVerified(address account) external view returns (bool);
}
