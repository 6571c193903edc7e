// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice A contract whose named economic parameters an executed DIN Proposal Protocol (DPP)
/// changes, through the timelock only (paper section 8). `checkValue` reverts with the same named
/// errors `set` would, so a proposal is refused when it is filed, not when it is executed.
interface IGovernable {
    error NotGovernable(bytes32 key);
    error ParameterOutOfRange(bytes32 key, uint256 value);
    error NotTimelock(address caller);

    event ParameterChanged(bytes32 indexed key, uint256 previous, uint256 value);

    function governs(bytes32 key) external view returns (bool);
    function checkValue(bytes32 key, uint256 value) external view;
    function valueOf(bytes32 key) external view returns (uint256);
    function set(bytes32 key, uint256 value) external;
}
