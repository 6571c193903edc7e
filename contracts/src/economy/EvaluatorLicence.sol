// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IGovernable} from "../interfaces/IGovernable.sol";
import {IEvaluatorLicence} from "../interfaces/IEvaluatorLicence.sol";

/// @title EvaluatorLicence: the NFT an evaluator holds to serve on scoring committees, under a
/// Harberger tax (paper section 6: "stake an NFT ... to gain the right to evaluate participant
/// models in the rewards process", "a self-assessed value framework, incorporating Harberger
/// taxation, proceeds of which fund public good systems").
/// @notice Rules, each enforced here against a hostile caller:
/// - The supply is minted to the public-goods fund, which sells each licence at `reservePrice`.
/// - A holder names its own price and prepays a deposit; tax accrues every block at
///   `taxRate` (1e18 = 100 %) of the named price and is paid from the deposit to the fund whenever
///   anyone settles the licence (every action on it settles it first).
/// - Anyone may buy any licence at any time at its named price (`maxPrice` guards the buyer against
///   a price raised in front of it); the seller receives the price and its unused deposit.
/// - When the tax due reaches the deposit, the licence is foreclosed: the whole deposit goes to
///   the fund and the licence back to the fund, for sale at `reservePrice`.
/// - A licence moves only by purchase or return (no transfers, so no tax-free parking), and an
///   account holds at most one.
/// - Only the timelock changes `taxRate` (never to 0: hoarding always costs) and the supply
///   (economic DPPs); a rate change applies from its block on, never to blocks already passed
///   (a cumulative tax index).
/// - A task asks `isLicensedSince(evaluator, block the reward phase opened)`: a licence bought
///   after that block does not license its buyer in that task, so one licence lets at most one
///   evaluator score each task, however often it changes hands.
/// Accounting: every token this contract holds is a deposit, and deposited = tax paid + refunded +
/// deposits left, to the wei.
contract EvaluatorLicence is ERC721, ReentrancyGuard, IGovernable, IEvaluatorLicence {
    using SafeERC20 for IERC20;

    bytes32 public constant HARBERGER_RATE = "harbergerRate";
    bytes32 public constant LICENCE_SUPPLY = "licenceSupply";
    uint256 public constant WAD = 1e18;
    uint256 public constant MAX_RATE = 1e16; // 1 % of the price per block
    uint256 public constant MAX_SUPPLY = 256;
    uint256 public constant MAX_PRICE = type(uint128).max;

    error TransferDisabled();
    error NotHolder(address caller, uint256 licence);
    error AlreadyHolder(address caller, uint256 licence);
    error AlreadyLicensed(address account, uint256 licence);
    error PriceAboveOffer(uint256 price, uint256 offered);
    error InvalidPrice(uint256 price);
    error InvalidDeposit(uint256 deposit);
    error InsufficientDeposit(uint256 deposit, uint256 requested);
    error NothingToSweep();

    event Bought(uint256 indexed licence, address indexed buyer, address indexed seller, uint256 price,
        uint256 newPrice, uint256 deposit);
    event PriceSet(uint256 indexed licence, uint256 price);
    event DepositChanged(uint256 indexed licence, uint256 deposit);
    event TaxPaid(uint256 indexed licence, address indexed holder, uint256 amount);
    event Foreclosed(uint256 indexed licence, address indexed holder);
    event Returned(uint256 indexed licence, address indexed holder, uint256 refund);

    struct Licence {
        uint128 price; // the holder's self-assessed price (the fund's: reservePrice)
        uint128 deposit; // prepaid tax still held
        uint256 indexPaid; // the tax index up to which tax has been paid
        uint64 acquiredAt; // the block its holder bought it
    }

    IERC20 public immutable token;
    address public immutable fund;
    address public immutable timelock;
    uint256 public immutable reservePrice;
    uint256 public taxRate;
    uint256 public supply;
    uint256 public totalDeposited; // net of refunds
    uint256 public totalTaxPaid;
    uint256 private _index; // cumulative tax per unit of price (WAD) up to _indexBlock
    uint64 private _indexBlock;
    mapping(uint256 => Licence) private _licences;
    mapping(address => uint256) private _heldPlusOne;
    mapping(uint256 => uint256) public taxPaidOn; // per licence, over all its holders

    constructor(IERC20 token_, address fund_, address timelock_, uint256 reservePrice_, uint256 taxRate_,
        uint256 supply_) ERC721("DIN Evaluator Licence", "DINLIC") {
        if (fund_ == address(0) || timelock_ == address(0)) revert NotTimelock(address(0));
        if (reservePrice_ == 0 || reservePrice_ > MAX_PRICE) revert InvalidPrice(reservePrice_);
        token = token_;
        fund = fund_;
        timelock = timelock_;
        reservePrice = reservePrice_;
        checkValue(HARBERGER_RATE, taxRate_);
        checkValue(LICENCE_SUPPLY, supply_);
        taxRate = taxRate_;
        _indexBlock = uint64(block.number);
        _grow(supply_);
    }

    // ------------------------------------------------------------------ views

    /// @notice The cumulative tax index now: tax due on a licence is price * (index - indexPaid) / 1e18.
    function taxIndex() public view returns (uint256) {
        return _index + taxRate * (block.number - _indexBlock);
    }

    /// @notice The licence an account holds (its id), and whether it holds one.
    function licenceOf(address account) external view returns (uint256 id, bool held) {
        uint256 p = _heldPlusOne[account];
        return (p == 0 ? 0 : p - 1, p != 0);
    }

    /// @notice Tax accrued on a licence and not yet paid (capped at its deposit: all it can pay).
    function taxDue(uint256 id) public view returns (uint256) {
        _requireOwned(id);
        Licence storage l = _licences[id];
        uint256 due = (uint256(l.price) * (taxIndex() - l.indexPaid)) / WAD;
        return due < l.deposit ? due : l.deposit;
    }

    /// @notice (holder, price a buyer pays now, deposit left after the tax due, foreclosable now)
    /// of a licence: the fund's licences, and a licence whose deposit ran out (a buy forecloses it
    /// first), sell at reservePrice.
    function licenceInfo(uint256 id)
        external
        view
        returns (address holder, uint256 price, uint256 deposit, bool foreclosable)
    {
        holder = _requireOwned(id);
        if (holder == fund) return (holder, reservePrice, 0, false);
        Licence storage l = _licences[id];
        uint256 due = (uint256(l.price) * (taxIndex() - l.indexPaid)) / WAD;
        foreclosable = due >= l.deposit;
        if (foreclosable) return (holder, reservePrice, 0, true);
        return (holder, l.price, l.deposit - due, false);
    }

    /// @notice Does `account` hold a licence whose deposit still covers the tax due?
    function isLicensed(address account) external view returns (bool) {
        return isLicensedSince(account, block.number);
    }

    /// @notice Does `account` hold, since block `since` or earlier, a licence whose deposit still
    /// covers the tax due?
    function isLicensedSince(address account, uint256 since) public view returns (bool) {
        uint256 p = _heldPlusOne[account];
        if (p == 0) return false;
        Licence storage l = _licences[p - 1];
        return l.acquiredAt <= since && (uint256(l.price) * (taxIndex() - l.indexPaid)) / WAD < l.deposit;
    }

    // ------------------------------------------------------------------ tax

    /// @notice Anyone pays a licence's tax due from its deposit to the fund, foreclosing it when the
    /// deposit does not cover it. Returns whether the licence is (now) held by the fund.
    function settle(uint256 id) public nonReentrant returns (bool foreclosed) {
        return _settle(id);
    }

    function _settle(uint256 id) private returns (bool foreclosed) {
        address holder = _requireOwned(id);
        if (holder == fund) return true;
        Licence storage l = _licences[id];
        uint256 index = taxIndex();
        uint256 due = (uint256(l.price) * (index - l.indexPaid)) / WAD;
        l.indexPaid = index;
        if (due < l.deposit) {
            if (due > 0) _payTax(id, holder, due);
            l.deposit -= uint128(due);
            return false;
        }
        uint256 all = l.deposit;
        l.deposit = 0;
        l.price = 0;
        delete _heldPlusOne[holder];
        _update(fund, id, address(0));
        if (all > 0) _payTax(id, holder, all);
        emit Foreclosed(id, holder);
        return true;
    }

    function _payTax(uint256 id, address holder, uint256 amount) private {
        totalTaxPaid += amount;
        totalDeposited -= amount;
        taxPaidOn[id] += amount;
        token.safeTransfer(fund, amount);
        emit TaxPaid(id, holder, amount);
    }

    // ------------------------------------------------------------------ market

    /// @notice Buy licence `id` at its price (the fund's licences at reservePrice), paying at most
    /// `maxPrice`, naming `newPrice` and prepaying `deposit` (approve price + deposit first).
    function buy(uint256 id, uint256 maxPrice, uint256 newPrice, uint256 deposit) external nonReentrant {
        _settle(id);
        address seller = _ownerOf(id);
        if (seller == msg.sender) revert AlreadyHolder(msg.sender, id);
        uint256 held = _heldPlusOne[msg.sender];
        if (held != 0) revert AlreadyLicensed(msg.sender, held - 1);
        if (newPrice == 0 || newPrice > MAX_PRICE) revert InvalidPrice(newPrice);
        if (deposit == 0 || deposit > MAX_PRICE) revert InvalidDeposit(deposit);
        Licence storage l = _licences[id];
        bool fromFund = seller == fund;
        uint256 price = fromFund ? reservePrice : l.price;
        if (maxPrice < price) revert PriceAboveOffer(price, maxPrice);
        uint256 refund = fromFund ? 0 : l.deposit;
        if (!fromFund) delete _heldPlusOne[seller];
        l.price = uint128(newPrice);
        l.deposit = uint128(deposit);
        l.indexPaid = taxIndex();
        l.acquiredAt = uint64(block.number);
        totalDeposited = totalDeposited - refund + deposit;
        _heldPlusOne[msg.sender] = id + 1;
        _update(msg.sender, id, address(0));
        token.safeTransferFrom(msg.sender, address(this), price + deposit);
        if (fromFund) {
            token.safeTransfer(fund, price);
        } else {
            if (refund > 0) emit Returned(id, seller, refund);
            token.safeTransfer(seller, price + refund);
        }
        emit Bought(id, msg.sender, seller, price, newPrice, deposit);
    }

    /// @notice The holder names a new price (tax is settled at the old price first).
    function setPrice(uint256 id, uint256 newPrice) external nonReentrant {
        _holding(id);
        if (newPrice == 0 || newPrice > MAX_PRICE) revert InvalidPrice(newPrice);
        _licences[id].price = uint128(newPrice);
        emit PriceSet(id, newPrice);
    }

    /// @notice The holder adds to its deposit (approve first).
    function topUp(uint256 id, uint256 amount) external nonReentrant {
        Licence storage l = _holding(id);
        if (amount == 0 || uint256(l.deposit) + amount > MAX_PRICE) revert InvalidDeposit(amount);
        l.deposit += uint128(amount);
        totalDeposited += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit DepositChanged(id, l.deposit);
    }

    /// @notice The holder takes back part of its deposit (tax due is paid first).
    function withdraw(uint256 id, uint256 amount) external nonReentrant {
        Licence storage l = _holding(id);
        if (amount == 0 || amount > l.deposit) revert InsufficientDeposit(l.deposit, amount);
        l.deposit -= uint128(amount);
        totalDeposited -= amount;
        token.safeTransfer(msg.sender, amount);
        emit DepositChanged(id, l.deposit);
    }

    /// @notice The holder hands its licence back to the fund and takes back what is left of its deposit.
    function giveBack(uint256 id) external nonReentrant {
        Licence storage l = _holding(id);
        uint256 refund = l.deposit;
        l.deposit = 0;
        l.price = 0;
        totalDeposited -= refund;
        delete _heldPlusOne[msg.sender];
        _update(fund, id, address(0));
        if (refund > 0) token.safeTransfer(msg.sender, refund);
        emit Returned(id, msg.sender, refund);
    }

    /// @dev Settles `id` and reverts unless the caller still holds it afterwards (a foreclosure
    /// found here is undone by the revert; anyone may settle it on its own).
    function _holding(uint256 id) private returns (Licence storage l) {
        _settle(id);
        if (_ownerOf(id) != msg.sender) revert NotHolder(msg.sender, id);
        return _licences[id];
    }

    /// @notice Tokens sent straight here (not as a deposit) belong to nobody: anyone hands them to the fund.
    function sweep() external nonReentrant {
        uint256 excess = token.balanceOf(address(this)) - totalDeposited;
        if (excess == 0) revert NothingToSweep();
        token.safeTransfer(fund, excess);
    }

    /// @notice Licences move only by purchase, return or foreclosure.
    function transferFrom(address, address, uint256) public pure override {
        revert TransferDisabled();
    }

    // ------------------------------------------------------------------ governance

    function governs(bytes32 key) public pure returns (bool) {
        return key == HARBERGER_RATE || key == LICENCE_SUPPLY;
    }

    /// @notice The rate is in 1..MAX_RATE; the supply only grows (a held licence is never taken
    /// by vote), up to MAX_SUPPLY.
    function checkValue(bytes32 key, uint256 value) public view {
        if (!governs(key)) revert NotGovernable(key);
        if (key == HARBERGER_RATE ? (value == 0 || value > MAX_RATE) : (value < supply || value == 0 || value > MAX_SUPPLY)) {
            revert ParameterOutOfRange(key, value);
        }
    }

    function valueOf(bytes32 key) external view returns (uint256) {
        if (key == HARBERGER_RATE) return taxRate;
        if (key == LICENCE_SUPPLY) return supply;
        revert NotGovernable(key);
    }

    function set(bytes32 key, uint256 value) external {
        if (msg.sender != timelock) revert NotTimelock(msg.sender);
        checkValue(key, value);
        uint256 previous;
        if (key == HARBERGER_RATE) {
            previous = taxRate;
            _index = taxIndex(); // blocks before this one keep the old rate
            _indexBlock = uint64(block.number);
            taxRate = value;
        } else {
            previous = supply;
            _grow(value);
        }
        emit ParameterChanged(key, previous, value);
    }

    function _grow(uint256 newSupply) private {
        for (uint256 id = supply; id < newSupply; ++id) {
            _mint(fund, id);
        }
        supply = newSupply;
    }
}
