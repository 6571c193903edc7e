// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title EvaluatorRegistry: the evaluators' directory of long-term keys (paper 3.2.2).
/// @notice An evaluator publishes its X25519 public key here once; participants seal their
/// secure-aggregation shares and their revealed contributions to it. The registry holds no
/// tokens and nobody can act on an evaluator through it: an evaluator's money is only ever
/// the bond it deposits into one task when it opts in (DINTask.optIn), which that task alone
/// may slash, within that bond.
contract EvaluatorRegistry {
    error InvalidPublicKey();

    event PublicKeySet(address indexed evaluator, bytes32 publicKey);

    /// @notice Each evaluator's long-term X25519 public key.
    mapping(address => bytes32) public publicKeyOf;

    /// @notice Publish (or rotate) the caller's X25519 public key.
    function setPublicKey(bytes32 publicKey) external {
        if (publicKey == bytes32(0)) revert InvalidPublicKey();
        publicKeyOf[msg.sender] = publicKey;
        emit PublicKeySet(msg.sender, publicKey);
    }
}
