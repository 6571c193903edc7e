// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice A content identifier kept compact on chain: the 32-byte SHA-256 digest of the
/// IPFS object plus a 16-bit kind that says how to rebuild the full CID:
///   0x0070  CIDv0 (dag-pb, base58btc "Qm..."), what `ipfs add` gives by default;
///   0x0170  CIDv1 dag-pb;
///   0x0155  CIDv1 raw (what `ipfs add --cid-version=1` gives for a single-block file).
/// The multihash is always sha2-256. (0, 0) means "no CID" where a CID is optional.
struct Cid {
    bytes32 digest;
    uint16 kind;
}

library CidLib {
    uint16 internal constant V0_DAG_PB = 0x0070;
    uint16 internal constant V1_DAG_PB = 0x0170;
    uint16 internal constant V1_RAW = 0x0155;

    error MalformedCid(bytes32 digest, uint16 kind);

    function isEmpty(Cid calldata cid) internal pure returns (bool) {
        return cid.digest == bytes32(0) && cid.kind == 0;
    }

    /// @dev Reverts with MalformedCid unless `cid` is a well-formed, non-empty CID.
    function check(Cid calldata cid) internal pure {
        if (!_wellFormed(cid.digest, cid.kind)) revert MalformedCid(cid.digest, cid.kind);
    }

    /// @dev Accepts the empty CID as well as well-formed ones.
    function checkOptional(Cid calldata cid) internal pure {
        if (cid.digest == bytes32(0) && cid.kind == 0) return;
        if (!_wellFormed(cid.digest, cid.kind)) revert MalformedCid(cid.digest, cid.kind);
    }

    function _wellFormed(bytes32 digest, uint16 kind) private pure returns (bool) {
        return digest != bytes32(0) && (kind == V0_DAG_PB || kind == V1_DAG_PB || kind == V1_RAW);
    }

    function hash(Cid calldata cid) internal pure returns (bytes32) {
        return keccak256(abi.encode(cid.digest, cid.kind));
    }
}
