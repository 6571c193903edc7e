// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {Cid, CidLib} from "../lib/CidLib.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";
import {IGovernable} from "../interfaces/IGovernable.sol";
import {VoiceCredits} from "./VoiceCredits.sol";

/// @title DINProposals: the registry of DIN Proposal Protocols (DPPs) and their quadratic votes
/// (paper section 8: developers submit DPPs; "only those proposals that impact economic parameters
/// are subject to community voting").
/// @notice Anyone with an identity files a DPP: a title, the CID of its text on IPFS, and a kind.
/// - An Infrastructure DPP is recorded and needs no vote.
/// - An Economic DPP names one governable parameter and its new value (checked against the
///   parameter's bounds when filed). It is voted for `votingBlocks` blocks by quadratic voting with
///   voice credits (VoiceCredits), never tokens: a voter casts n votes on one side for n^2 of the
///   credits it held at the snapshot (the block before the proposal), adding votes up to its budget.
///   It passes with more votes for than against and at least `quorumVotes` votes for (so votes
///   against can never carry a proposal over the quorum). Only verified identities vote.
/// - A passed DPP is queued on the timelock (OpenZeppelin TimelockController) within `votingBlocks`
///   blocks of its vote's end and, once its delay has passed, executed: the timelock calls the
///   parameter's contract, and tasks created afterwards use the new value. This contract is the
///   timelock's only proposer and executor.
/// - A DPP expires if it is not queued in time, or if its parameter was changed by another DPP
///   after it was filed: an old decision never overrides a later one.
contract DINProposals {
    using CidLib for Cid;

    enum Kind {
        Infrastructure,
        Economic
    }

    enum State {
        Recorded, // infrastructure: nothing to vote on
        Active,
        Defeated,
        Succeeded,
        Queued,
        Executed,
        Expired
    }

    uint256 public constant MAX_TITLE_BYTES = 200;
    uint256 public constant MAX_VOTES = type(uint64).max;

    error NotVerified(address account);
    error InvalidTitle();
    error NotGovernable(bytes32 key);
    error UnknownProposal(uint256 id);
    error NotEconomic(uint256 id);
    error VotingClosed(uint256 id, uint256 endBlock);
    error InvalidVotes();
    error CannotSwitchSides(uint256 id, address voter);
    error InsufficientCredits(uint256 budget, uint256 cost);
    error WrongState(uint256 id, State state);
    error InvalidGovernance();

    event ProposalFiled(uint256 indexed id, address indexed proposer, Kind kind, string title, Cid content,
        bytes32 key, uint256 value, uint256 snapshot, uint256 voteEnd);
    event VoteCast(uint256 indexed id, address indexed voter, bool support, uint256 votes, uint256 totalVotes,
        uint256 creditsSpent);
    event ProposalQueued(uint256 indexed id, bytes32 operation, uint256 readyAt);
    event ProposalExecuted(uint256 indexed id);

    struct Proposal {
        address proposer;
        Kind kind;
        bytes32 key;
        uint256 value;
        address target;
        uint64 snapshot;
        uint64 voteEnd;
        uint64 keyVersion; // changes of `key` executed before this DPP was filed
        uint128 forVotes;
        uint128 againstVotes;
        Cid content;
        string title;
    }

    struct Ballot {
        uint64 votes;
        bool support;
    }

    TimelockController public immutable timelock;
    VoiceCredits public immutable credits;
    IIdentityRegistry public immutable identity;
    uint64 public immutable votingBlocks;
    uint256 public immutable quorumVotes;
    IGovernable public immutable parameters;
    IGovernable public immutable licence; // address(0): no licences, their keys are not governable

    Proposal[] private _proposals;
    mapping(uint256 => mapping(address => Ballot)) public ballotOf;
    mapping(uint256 => mapping(address => uint256)) public creditsSpent;
    mapping(bytes32 => uint64) public keyVersion; // executed changes per parameter

    constructor(TimelockController timelock_, VoiceCredits credits_, IIdentityRegistry identity_, IGovernable parameters_,
        IGovernable licence_, uint64 votingBlocks_, uint256 quorumVotes_) {
        if (votingBlocks_ == 0 || quorumVotes_ == 0 || address(timelock_) == address(0)) revert InvalidGovernance();
        timelock = timelock_;
        credits = credits_;
        identity = identity_;
        parameters = parameters_;
        licence = licence_;
        votingBlocks = votingBlocks_;
        quorumVotes = quorumVotes_;
    }

    /// @notice The contract that governs `key`; reverts NotGovernable for any other key.
    function targetOf(bytes32 key) public view returns (IGovernable) {
        if (parameters.governs(key)) return parameters;
        if (address(licence) != address(0) && licence.governs(key)) return licence;
        revert NotGovernable(key);
    }

    function propose(Kind kind, string calldata title, Cid calldata content, bytes32 key, uint256 value)
        external
        returns (uint256 id)
    {
        if (address(identity) != address(0) && !identity.isVerified(msg.sender)) revert NotVerified(msg.sender);
        uint256 length = bytes(title).length;
        if (length == 0 || length > MAX_TITLE_BYTES) revert InvalidTitle();
        content.check();
        id = _proposals.length;
        Proposal storage p = _proposals.push();
        p.proposer = msg.sender;
        p.kind = kind;
        p.content = content;
        p.title = title;
        if (kind == Kind.Economic) {
            IGovernable target = targetOf(key);
            target.checkValue(key, value);
            p.key = key;
            p.value = value;
            p.target = address(target);
            p.keyVersion = keyVersion[key];
            p.snapshot = uint64(block.number - 1);
            p.voteEnd = uint64(block.number) + votingBlocks;
        } else if (key != bytes32(0) || value != 0) {
            revert NotGovernable(key); // an infrastructure DPP changes no parameter
        }
        emit ProposalFiled(id, msg.sender, kind, title, content, p.key, p.value, p.snapshot, p.voteEnd);
    }

    /// @notice Add `votes` votes on one side of economic DPP `id`; the voter's votes on it cost the
    /// square of their total, out of the credits it held at the snapshot.
    function castVote(uint256 id, bool support, uint256 votes) external {
        Proposal storage p = _proposal(id);
        if (p.kind != Kind.Economic) revert NotEconomic(id);
        if (block.number > p.voteEnd) revert VotingClosed(id, p.voteEnd);
        if (votes == 0 || votes > MAX_VOTES) revert InvalidVotes();
        if (address(identity) != address(0) && !identity.isVerified(msg.sender)) revert NotVerified(msg.sender);
        Ballot storage b = ballotOf[id][msg.sender];
        if (b.votes != 0 && b.support != support) revert CannotSwitchSides(id, msg.sender);
        uint256 total = uint256(b.votes) + votes;
        if (total > MAX_VOTES) revert InvalidVotes();
        uint256 cost = total * total;
        uint256 budget = credits.creditsAt(msg.sender, p.snapshot);
        if (cost > budget) revert InsufficientCredits(budget, cost);
        b.votes = uint64(total);
        b.support = support;
        creditsSpent[id][msg.sender] = cost;
        if (support) p.forVotes += uint128(votes);
        else p.againstVotes += uint128(votes);
        emit VoteCast(id, msg.sender, support, votes, total, cost);
    }

    function state(uint256 id) public view returns (State) {
        Proposal storage p = _proposal(id);
        if (p.kind == Kind.Infrastructure) return State.Recorded;
        if (block.number <= p.voteEnd) return State.Active;
        bytes32 op = operationOf(id);
        if (timelock.isOperationDone(op)) return State.Executed;
        if (keyVersion[p.key] != p.keyVersion) return State.Expired;
        if (timelock.isOperation(op)) return State.Queued;
        bool passed = p.forVotes > p.againstVotes && p.forVotes >= quorumVotes;
        if (!passed) return State.Defeated;
        return block.number > uint256(p.voteEnd) + votingBlocks ? State.Expired : State.Succeeded;
    }

    /// @notice Anyone queues a passed DPP on the timelock, to be executable after its minimum delay.
    function queue(uint256 id) external {
        State s = state(id);
        if (s != State.Succeeded) revert WrongState(id, s);
        Proposal storage p = _proposals[id];
        uint256 delay = timelock.getMinDelay();
        timelock.schedule(p.target, 0, _call(p), bytes32(0), bytes32(id), delay);
        emit ProposalQueued(id, operationOf(id), timelock.getTimestamp(operationOf(id)));
    }

    /// @notice Anyone executes a queued DPP once the timelock allows (before: the timelock's
    /// TimelockUnexpectedOperationState revert).
    function execute(uint256 id) external {
        State s = state(id);
        if (s != State.Queued) revert WrongState(id, s);
        Proposal storage p = _proposals[id];
        keyVersion[p.key] += 1;
        timelock.execute(p.target, 0, _call(p), bytes32(0), bytes32(id));
        emit ProposalExecuted(id);
    }

    function operationOf(uint256 id) public view returns (bytes32) {
        Proposal storage p = _proposal(id);
        return timelock.hashOperation(p.target, 0, _call(p), bytes32(0), bytes32(id));
    }

    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    function proposal(uint256 id) external view returns (Proposal memory) {
        return _proposal(id);
    }

    function _proposal(uint256 id) private view returns (Proposal storage) {
        if (id >= _proposals.length) revert UnknownProposal(id);
        return _proposals[id];
    }

    function _call(Proposal storage p) private view returns (bytes memory) {
        return abi.encodeCall(IGovernable.set, (p.key, p.value));
    }
}
