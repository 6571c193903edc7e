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

    /// @return indices `indices[q] = inverse(start + q, count, seed)` for the positions
    /// [start, end): the same permutation as `inverse`, with each round's pivot hashed once and each
    /// round's bit source once per 256 positions (a subgroup of 100 costs ~180 hashes, not 18,000).
    function inverseRange(uint256 start, uint256 end, uint256 count, bytes32 seed)
        internal
        pure
        returns (uint256[] memory indices)
    {
        uint256 blocks = (count + 255) / 256;
        uint256[] memory pivots = new uint256[](ROUNDS);
        uint256[] memory sources = new uint256[](ROUNDS * blocks); // 0: not hashed yet
        indices = new uint256[](end - start);
        assembly ("memory-safe") {
            let ptr := mload(0x40) // scratch past the allocated arrays, as in _round
            mstore(ptr, seed)
            let piv := add(pivots, 0x20)
            for { let r := 0 } lt(r, ROUNDS) { r := add(r, 1) } {
                mstore8(add(ptr, 0x20), r)
                mstore(add(piv, shl(5, r)), mod(keccak256(ptr, 33), count))
            }
            let src := add(sources, 0x20)
            let out := add(indices, 0x20)
            for { let q := start } lt(q, end) { q := add(q, 1) } {
                let index := q
                for { let r := ROUNDS } gt(r, 0) {} {
                    r := sub(r, 1)
                    let flip := mod(sub(add(mload(add(piv, shl(5, r))), count), index), count)
                    let position := index
                    if gt(flip, index) { position := flip }
                    let slot := add(src, shl(5, add(mul(r, blocks), shr(8, position))))
                    let source := mload(slot)
                    if iszero(source) {
                        mstore8(add(ptr, 0x20), r)
                        mstore(add(ptr, 0x21), shl(224, shr(8, position)))
                        source := keccak256(ptr, 37)
                        mstore(slot, source)
                    }
                    if and(shr(and(position, 7), byte(shr(3, and(position, 255)), source)), 1) { index := flip }
                }
                mstore(add(out, shl(5, sub(q, start))), index)
            }
        }
    }
}

/// @notice The library's functions, callable, for the tests that check them against the Python
/// assignment (din_lab.chain.assignment) and each other.
contract ShuffleReference {
    function forward(uint256 index, uint256 count, bytes32 seed) external pure returns (uint256) {
        return Shuffle.forward(index, count, seed);
    }

    function inverse(uint256 position, uint256 count, bytes32 seed) external pure returns (uint256) {
        return Shuffle.inverse(position, count, seed);
    }

    function inverseRange(uint256 start, uint256 end, uint256 count, bytes32 seed)
        external
        pure
        returns (uint256[] memory)
    {
        return Shuffle.inverseRange(start, end, count, seed);
    }
}
