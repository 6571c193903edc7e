// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Cid, CidLib} from "../lib/CidLib.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";

interface ITaskClaim {
    function claim() external returns (uint256);
}

/// @title PublicGoodsFund: the network's public-goods fund, spent by quadratic funding rounds
/// (paper section 8: a share of network fees funds "open-source public goods infrastructure"
/// through "quadratic funding mechanisms").
/// @notice The matching pool is every token the fund holds that it does not owe: the Harberger tax
/// on evaluator licences, the tasks' public-goods share and slashed stake (`collect` pulls what a
/// task holds for the fund), licence sales, donations, and what earlier rounds left unmatched.
/// A round: anyone starts it; for `roundBlocks` blocks anyone with an identity (the identity
/// registry gates Sybils; address(0) means open) gives tokens to registered projects; then anyone
/// finalizes it. Project p's weight is w_p = (sum over contributors of sqrt(c))^2 - sum of c, where
/// c is one contributor's total to p (a single contributor adds none). Project p receives its
/// contributions plus a match: w_p itself when the pool covers every weight (what is left waits for
/// the next round), else the pool scaled down in proportion to the weights, the matches adding up
/// to the pool to the wei (cumulative floors). Matching never exceeds the weight, so a few dust
/// gifts in a quiet round cannot take a pool larger than what they are worth under the rule.
/// A round takes any number of projects: finalization is paid in chunks of projects (anyone calls
/// `finalizeRound(maxProjects)` until it is done), so no loop outgrows a block. Recipients pull.
contract PublicGoodsFund is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using CidLib for Cid;

    error NotVerified(address account);
    error InvalidRecipient();
    error UnknownProject(uint256 project);
    error RoundOpen(uint256 round, uint256 endBlock);
    error NoOpenRound();
    error RoundNotOver(uint256 endBlock);
    error RoundOver(uint256 endBlock);
    error InvalidAmount();
    error NothingToClaim(address account);
    error InvalidFundParameters();

    event ProjectRegistered(uint256 indexed project, address indexed recipient, address indexed by, Cid metadata);
    event RoundStarted(uint256 indexed round, uint256 endBlock);
    event Contributed(uint256 indexed round, uint256 indexed project, address indexed contributor, uint256 amount);
    event Matched(uint256 indexed round, uint256 indexed project, uint256 contributions, uint256 matching, uint256 weight);
    event RoundFinalized(uint256 indexed round, uint256 pool, uint256 matched, uint256 totalWeight);
    event Collected(address indexed task, uint256 amount);
    event Claimed(address indexed recipient, uint256 amount);

    struct Project {
        address recipient;
        Cid metadata;
    }

    struct Tally {
        uint256 total; // sum of contributions
        uint256 sumSqrt; // sum over contributors of floor(sqrt(their total))
    }

    struct Round {
        uint64 endBlock;
        bool finalizing; // the pool is fixed and projects are being paid
        bool finalized;
        uint256 contributions; // sum over all projects
        uint256 totalWeight; // sum of the projects' weights
        uint256 pool; // matching pool, fixed when finalization starts
        uint256 matched; // matches credited so far (at the end: min(pool, totalWeight))
        uint256 settled; // projects credited so far
        uint256 cumulativeWeight; // of the projects credited so far
        uint256 credited; // contributions and matches credited so far
        uint256[] projects; // projects with at least one contribution, in first-contribution order
    }

    IERC20 public immutable token;
    IIdentityRegistry public immutable identity;
    uint64 public immutable roundBlocks;

    Project[] private _projects;
    Round[] private _rounds;
    mapping(uint256 => mapping(uint256 => Tally)) private _tallies; // round -> project
    mapping(uint256 => mapping(uint256 => mapping(address => uint256))) public contributionOf;
    mapping(uint256 => mapping(uint256 => uint256)) public matchOf; // round -> project -> match
    mapping(address => uint256) public claimable;
    uint256 public totalClaimable;

    constructor(IERC20 token_, IIdentityRegistry identity_, uint64 roundBlocks_) {
        if (address(token_) == address(0) || roundBlocks_ == 0) revert InvalidFundParameters();
        token = token_;
        identity = identity_;
        roundBlocks = roundBlocks_;
    }

    // ------------------------------------------------------------------ views

    function projectCount() external view returns (uint256) {
        return _projects.length;
    }

    function project(uint256 id) external view returns (Project memory) {
        if (id >= _projects.length) revert UnknownProject(id);
        return _projects[id];
    }

    function roundCount() external view returns (uint256) {
        return _rounds.length;
    }

    function roundInfo(uint256 r)
        external
        view
        returns (uint64 endBlock, bool finalized, uint256 contributions, uint256 pool, uint256 matched,
            uint256[] memory projects, uint256 totalWeight, uint256 settled)
    {
        Round storage R = _rounds[r];
        return (R.endBlock, R.finalized, R.contributions, R.pool, R.matched, R.projects, R.totalWeight, R.settled);
    }

    /// @notice (contributions, sum of square roots, weight w = sumSqrt^2 - contributions) of a
    /// project in a round.
    function tally(uint256 r, uint256 p) public view returns (uint256 total, uint256 sumSqrt, uint256 weight) {
        Tally storage t = _tallies[r][p];
        uint256 square = t.sumSqrt * t.sumSqrt;
        return (t.total, t.sumSqrt, square > t.total ? square - t.total : 0);
    }

    /// @notice Tokens owed: unclaimed payouts, the open round's contributions and, while it is
    /// being finalized, what it has still to credit of its contributions and matches.
    function liabilities() public view returns (uint256 owed) {
        owed = totalClaimable;
        uint256 n = _rounds.length;
        if (n == 0) return owed;
        Round storage R = _rounds[n - 1];
        if (R.finalized) return owed;
        uint256 payout = R.finalizing ? _payout(R) : 0;
        owed += R.contributions + payout - R.credited;
    }

    function _payout(Round storage R) private view returns (uint256) {
        return R.totalWeight < R.pool ? R.totalWeight : R.pool;
    }

    /// @notice The matching pool as it stands: what the fund holds beyond what it owes.
    function matchingPool() public view returns (uint256) {
        return token.balanceOf(address(this)) - liabilities();
    }

    // ------------------------------------------------------------------ projects and rounds

    function registerProject(address recipient, Cid calldata metadata) external returns (uint256 id) {
        _verified(msg.sender);
        if (recipient == address(0) || recipient == address(this)) revert InvalidRecipient();
        metadata.check();
        id = _projects.length;
        _projects.push(Project({recipient: recipient, metadata: metadata}));
        emit ProjectRegistered(id, recipient, msg.sender, metadata);
    }

    function startRound() external returns (uint256 r) {
        r = _rounds.length;
        if (r > 0 && !_rounds[r - 1].finalized) revert RoundOpen(r - 1, _rounds[r - 1].endBlock);
        Round storage R = _rounds.push();
        R.endBlock = uint64(block.number) + roundBlocks;
        emit RoundStarted(r, R.endBlock);
    }

    /// @notice Give `amount` tokens to project `p` in the open round (approve the fund first).
    function contribute(uint256 p, uint256 amount) external nonReentrant {
        _verified(msg.sender);
        if (p >= _projects.length) revert UnknownProject(p);
        if (amount == 0 || amount > type(uint128).max) revert InvalidAmount();
        uint256 r = _rounds.length;
        if (r == 0 || _rounds[r - 1].finalized) revert NoOpenRound();
        r -= 1;
        Round storage R = _rounds[r];
        if (block.number > R.endBlock) revert RoundOver(R.endBlock);
        Tally storage t = _tallies[r][p];
        if (t.total == 0) R.projects.push(p);
        (,, uint256 weightBefore) = tally(r, p);
        uint256 before = contributionOf[r][p][msg.sender];
        uint256 after_ = before + amount;
        contributionOf[r][p][msg.sender] = after_;
        t.sumSqrt = t.sumSqrt + Math.sqrt(after_) - Math.sqrt(before);
        t.total += amount;
        (,, uint256 weightAfter) = tally(r, p);
        R.totalWeight = R.totalWeight + weightAfter - weightBefore;
        R.contributions += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Contributed(r, p, msg.sender, amount);
    }

    /// @notice After the round's last block anyone finalizes it, up to `maxProjects` projects per
    /// call (call again until RoundFinalized): the first call fixes the pool; each project is then
    /// credited its contributions plus its match: w_p when the pool covers the total weight W, else
    /// floor(pool*W_<=p/W) - floor(pool*W_<p/W) (cumulative over the round's projects in order), so
    /// the matches add up to min(pool, W) exactly.
    function finalizeRound(uint256 maxProjects) external nonReentrant returns (bool done) {
        uint256 r = _rounds.length;
        if (r == 0 || _rounds[r - 1].finalized) revert NoOpenRound();
        if (maxProjects == 0) revert InvalidAmount();
        r -= 1;
        Round storage R = _rounds[r];
        if (block.number <= R.endBlock) revert RoundNotOver(R.endBlock);
        if (!R.finalizing) {
            R.pool = matchingPool(); // the round's contributions are still owed here
            R.finalizing = true;
        }
        uint256 n = R.projects.length;
        uint256 end = R.settled + maxProjects < n ? R.settled + maxProjects : n;
        uint256 totalWeight = R.totalWeight;
        bool scaled = totalWeight > R.pool;
        for (uint256 i = R.settled; i < end; ++i) {
            uint256 p = R.projects[i];
            (uint256 total,, uint256 w) = tally(r, p);
            uint256 m = w;
            if (scaled) {
                uint256 before = Math.mulDiv(R.pool, R.cumulativeWeight, totalWeight);
                R.cumulativeWeight += w;
                m = Math.mulDiv(R.pool, R.cumulativeWeight, totalWeight) - before;
            }
            matchOf[r][p] = m;
            R.matched += m;
            R.credited += total + m;
            _credit(_projects[p].recipient, total + m);
            emit Matched(r, p, total, m, w);
        }
        R.settled = end;
        done = end == n;
        if (done) {
            R.finalized = true;
            emit RoundFinalized(r, R.pool, R.matched, totalWeight);
        }
    }

    /// @notice Anyone pulls what a task holds for the fund (its public-goods share, slashed stake)
    /// into the matching pool. Accounting is by balance, so a contract that is not a task can only
    /// give tokens, never take them.
    function collect(address task) external nonReentrant returns (uint256 amount) {
        uint256 before = token.balanceOf(address(this));
        ITaskClaim(task).claim();
        amount = token.balanceOf(address(this)) - before;
        emit Collected(task, amount);
    }

    function claim() external nonReentrant returns (uint256 amount) {
        amount = claimable[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        claimable[msg.sender] = 0;
        totalClaimable -= amount;
        token.safeTransfer(msg.sender, amount);
        emit Claimed(msg.sender, amount);
    }

    function _credit(address to, uint256 amount) private {
        if (amount == 0) return;
        claimable[to] += amount;
        totalClaimable += amount;
    }

    function _verified(address account) private view {
        if (address(identity) != address(0) && !identity.isVerified(account)) revert NotVerified(account);
    }
}
