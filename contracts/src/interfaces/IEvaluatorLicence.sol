// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice What a task asks of the licence contract: may this evaluator serve on a scoring
/// committee now (it holds a licence whose prepaid deposit still covers the tax due)?
interface IEvaluatorLicence {
    function isLicensed(address account) external view returns (bool);
    /// @notice ...and has held that licence since block `since` or earlier.
    function isLicensedSince(address account, uint256 since) external view returns (bool);
}
