// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Swap-or-not shuffle (Hoang, Morris, Rogaway 2012), the permutation Ethereum's
/// consensus layer uses to draw committees. Any single index is mapped in O(ROUNDS) hashes,
/// without materialising the whole permutation, so the contract can check one assignment
/// and anyone can recompute all of them from the round seed. Each round is an involution,
/// so running the rounds backwards inverts the permutation.
library Shuffle {
    uint256 internal constant ROUNDS = 90;

    /// @dev Hashes in the free memory area without moving the free-memory pointer: with
    /// abi.encodePacked every hash allocated fresh memory, and memory cost is quadratic, so
    /// drawing 300 committee seats for 1,000 participants cost ~90M gas instead of a few M.
    function _round(uint256 index, uint256 count, bytes32 seed, uint256 r) private pure returns (uint256 result) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, seed)
            mstore8(add(ptr, 0x20), r)
            let pivot := mod(keccak256(ptr, 33), count)
            let flip := mod(sub(add(pivot, count), index), count)
            let position := index
            if gt(flip, index) { position := flip }
            mstore(add(ptr, 0x21), shl(224, div(position, 256)))
            let source := keccak256(ptr, 37)
            let b := byte(div(mod(position, 256), 8), source)
            result := index
            if and(shr(mod(position, 8), b), 1) { result := flip }
        }
    }

    /// @return the position that `index` moves to.
    function forward(uint256 index, uint256 count, bytes32 seed) internal pure returns (uint256) {
        for (uint256 r = 0; r < ROUNDS; ++r) {
            index = _round(index, count, seed, r);
        }
        return index;
    }

    /// @return the index that moves to `position` (the inverse of `forward`).
    function inverse(uint256 position, uint256 count, bytes32 seed) internal pure returns (uint256) {
        for (uint256 r = ROUNDS; r > 0; --r) {
            position = _round(position, count, seed, r - 1);
        }
        return position;
    }
}
