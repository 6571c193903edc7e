// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title DINToken: the network's native ERC-20 token.
/// @notice The whole supply is minted once, at deployment, to `initialHolder`; no function
/// mints or burns afterwards, so every token that ever exists is accounted for by balances.
contract DINToken is ERC20 {
    constructor(address initialHolder, uint256 supply) ERC20("DIN Token", "DIN") {
        _mint(initialHolder, supply);
    }
}
