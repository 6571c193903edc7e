// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Swap-or-not shuffle (Hoang, Morris, Rogaway 2012), the permutation Ethereum's
/// consensus layer uses to draw committees. Any single index is mapped in O(ROUNDS) hashes,
/// without materialising the whole permutation, so the contract can check one assignment
/// and anyone can recompute all of them from the round seed. Each round is an involution,
/// so running the rounds backwards inverts the permutation.
library Shuffle {
    uint256 internal constant ROUNDS = 90;

    function _round(uint256 index, uint256 count, bytes32 seed, uint256 r) private pure returns (uint256) {
        uint256 pivot = uint256(keccak256(abi.encodePacked(seed, uint8(r)))) % count;
        uint256 flip = (pivot + count - index) % count;
        uint256 position = index > flip ? index : flip;
        bytes32 source = keccak256(abi.encodePacked(seed, uint8(r), uint32(position / 256)));
        uint8 b = uint8(source[(position % 256) / 8]);
        return ((b >> (position % 8)) & 1) == 1 ? flip : index;
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
