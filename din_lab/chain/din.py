"""The DIN contracts on a :class:`~din_lab.chain.core.Chain`: deployment, task creation, and
the off-chain halves of on-chain checks (commitments, EIP-712 signatures).

The contracts themselves are in ``contracts/src``; the Python names follow them
(``register``, ``submitUpdate``, ``commitResult``, ``revealResult``, ``finalizeSubgroup``, ...),
called as ``chain.transact(task.functions.commitResult(...), sender=evaluator)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import astuple, dataclass

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.contract import Contract

from din_lab.chain.core import Chain
from din_lab.cid import EMPTY_CHAIN_CID, Cid
from din_lab.errors import ConfigError, MalformedCidError

WAD = 10**18
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class Phase:
    """DINTask.Phase."""

    REGISTRATION = 0
    TRAINING = 1
    SCORING = 2
    FINISHED = 3
    CANCELLED = 4
    ABANDONED = 5
    NAMES = ("Registration", "Training", "Scoring", "Finished", "Cancelled", "Abandoned")
    ENDED = (FINISHED, CANCELLED, ABANDONED)


class SubgroupStatus:
    PENDING = 0
    ACCEPTED = 1
    FAILED = 2


@dataclass(frozen=True, kw_only=True)
class TaskParams:
    """What a Model Owner fixes when creating a task (DINTask's TaskParams struct, in its order).
    The factory refuses unsafe or unfinishable values (``DINTaskFactory.checkParams``)."""

    genesis_model: Cid
    reward_deposit: int
    fee_budget: int
    evaluator_fee: int
    evaluator_bond: int  # what each evaluator deposits to opt in: all the task can ever slash
    slash_amount: int
    rounds: int
    subgroup_size: int
    evaluators_per_subgroup: int  # odd
    max_participants: int = 200
    max_evaluators: int = 50
    public_goods_bps: int = 0
    encrypted_scoring: bool = False  # fixed at creation
    registration_window: int = 1_000
    submission_window: int = 10
    share_window: int = 0  # blocks for secure aggregation's share reveals before the commit window
    commit_window: int = 10
    reveal_window: int = 10
    publish_window: int = 10
    identity_registry: str = ZERO_ADDRESS

    def to_chain(self) -> tuple:
        values = list(astuple(self))
        values[0] = self.genesis_model.to_chain()
        return tuple(values)


@dataclass(frozen=True, kw_only=True)
class EconomySettings:
    """The network's economy and governance (paper sections 6 and 8), fixed at deployment; the
    parameters marked *governed* change later only by an executed economic DPP.

    Amounts are in token units (wei); ``harberger_rate`` is per block with 1e18 = 100 % of the
    self-assessed price; ``timelock_delay`` is in seconds (the timelock counts time, not blocks)."""

    licences: bool = True  # evaluators need an EvaluatorLicence to opt in and to score
    licence_supply: int = 8  # governed (only grows)
    reserve_price: int = 50 * WAD  # the fund's asking price for a licence it holds
    harberger_rate: int = 10**14  # governed: 0.01 % of the price per block
    public_goods_bps: int = 500  # governed: every new task's public-goods share
    min_bond: int = 100 * WAD  # governed: the least evaluator bond a task may ask
    fee_cap: int = 10 * WAD  # governed: the most a task may pay an evaluator per vote
    timelock_delay: int = 120  # seconds between a passed DPP's queueing and its execution
    voting_blocks: int = 20
    quorum_votes: int = 10
    qf_round_blocks: int = 20
    owner_credits: int = 100  # per finished task in which someone contributed (reward >= owner_min_reward)
    owner_min_reward: int = 100 * WAD
    participant_credits: int = 10  # per accepted update
    evaluator_credits: int = 5  # per vote cast with the majority

    def __post_init__(self) -> None:
        if not isinstance(self.licences, bool):
            raise ConfigError(f"economy setting licences must be true or false, got {self.licences!r}")
        ints = {k: v for k, v in self.__dict__.items() if k != "licences"}
        bad = [k for k, v in ints.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise ConfigError(f"economy settings must be non-negative integers: {', '.join(bad)}")
        zero = [k for k in ("licence_supply", "reserve_price", "harberger_rate", "min_bond", "fee_cap",
                            "voting_blocks", "quorum_votes", "qf_round_blocks") if ints[k] == 0]
        if zero:
            raise ConfigError(f"economy settings must be positive: {', '.join(zero)}")
        big = [k for k, v in ints.items() if v >= 2**128]  # what the contracts hold (uint128 slots)
        if big:
            raise ConfigError(f"economy settings must be below 2**128: {', '.join(big)}")
        if self.public_goods_bps > 5_000 or self.licence_supply > 256 or self.harberger_rate > 10**16:
            raise ConfigError("economy settings out of range: public_goods_bps <= 5000, licence_supply <= 256, "
                              "harberger_rate <= 1e16 (1 % per block)")


@dataclass(frozen=True)
class EconomyDeployment:
    """The economy's contracts: the public-goods fund (QF rounds), the evaluator licences (None when
    off), the governed parameters, the timelock, the voice credits and the DPP registry, and the
    identity registry that gates Sybils in all of them."""

    fund: Contract
    licence: Contract | None
    parameters: Contract
    timelock: Contract
    credits: Contract
    proposals: Contract
    identity: Contract
    settings: EconomySettings


@dataclass(frozen=True)
class DinDeployment:
    """The shared contracts of one DIN network."""

    token: Contract
    registry: Contract
    factory: Contract
    implementation: Contract
    deployer: str
    public_goods_fund: str
    economy: EconomyDeployment | None = None


def deploy(
    chain: Chain,
    *,
    deployer: LocalAccount,
    public_goods_fund: str | None = None,
    supply: int = 10**9 * WAD,
    min_bond: int = 100 * WAD,
    min_window: int = 10,
    economy: EconomySettings | None = None,
    identity: Contract | None = None,
) -> DinDeployment:
    """Deploy token, evaluator registry (keys), the task implementation with its scoring module,
    and the factory, which fixes the network's public-goods fund, the minimum bond and the
    minimum window.

    With ``economy`` the public-goods fund is a :class:`PublicGoodsFund` contract (do not pass
    ``public_goods_fund``), and the factory is governed: DINParameters (owned by a
    TimelockController whose only proposer and executor is the DPP registry) fixes every new task's
    public-goods share, least bond and fee cap, and, with ``economy.licences``, evaluators need an
    EvaluatorLicence. ``identity`` (an IIdentityRegistry; default: a new Allowlist curated by the
    deployer) gates the fund, the credits and the proposals. The deployer keeps no role: it
    renounces the timelock's admin role before returning."""
    if supply <= 0 or min_bond <= 0 or min_window < 2:
        raise ConfigError("supply and min_bond must be positive and min_window at least 2")
    if (economy is None) == (public_goods_fund is None):
        raise ConfigError("give either public_goods_fund (an account) or economy (a fund contract is deployed)")
    if economy is None and identity is not None:
        raise ConfigError("identity gates the economy's fund, credits and proposals: give it with economy")
    token = chain.deploy("DINToken", deployer.address, supply, sender=deployer)
    registry = chain.deploy("EvaluatorRegistry", sender=deployer)
    scoring = chain.deploy("DINTaskScoring", sender=deployer)
    implementation = chain.deploy("DINTask", scoring.address, sender=deployer)
    if economy is None:
        assert public_goods_fund is not None
        factory = chain.deploy("DINTaskFactory", token.address, registry.address, implementation.address,
                               public_goods_fund, min_bond, min_window, ZERO_ADDRESS, ZERO_ADDRESS, sender=deployer)
        return DinDeployment(token=token, registry=registry, factory=factory, implementation=implementation,
                             deployer=deployer.address, public_goods_fund=public_goods_fund)
    s = economy
    if identity is None:
        identity = chain.deploy("Allowlist", deployer.address, sender=deployer)
    fund = chain.deploy("PublicGoodsFund", token.address, identity.address, s.qf_round_blocks, sender=deployer)
    # the deployer is the timelock's admin only until the DPP registry holds its roles
    timelock = chain.deploy("TimelockController", s.timelock_delay, [], [], deployer.address, sender=deployer)
    parameters = chain.deploy("DINParameters", timelock.address, s.public_goods_bps, s.min_bond, s.fee_cap,
                              sender=deployer)
    licence = None
    if s.licences:
        licence = chain.deploy("EvaluatorLicence", token.address, fund.address, timelock.address, s.reserve_price,
                               s.harberger_rate, s.licence_supply, sender=deployer, gas=12_000_000)
    factory = chain.deploy("DINTaskFactory", token.address, registry.address, implementation.address, fund.address,
                           min_bond, min_window, parameters.address,
                           licence.address if licence is not None else ZERO_ADDRESS, sender=deployer)
    credits = chain.deploy("VoiceCredits", factory.address, identity.address, s.owner_credits,
                           s.participant_credits, s.evaluator_credits, s.owner_min_reward, sender=deployer)
    proposals = chain.deploy("DINProposals", timelock.address, credits.address, identity.address, parameters.address,
                             licence.address if licence is not None else ZERO_ADDRESS, s.voting_blocks,
                             s.quorum_votes, sender=deployer)
    T = timelock.functions
    for role in ("PROPOSER_ROLE", "CANCELLER_ROLE", "EXECUTOR_ROLE"):
        chain.transact(T.grantRole(chain.call(getattr(T, role)()), proposals.address), sender=deployer)
    chain.transact(T.renounceRole(chain.call(T.DEFAULT_ADMIN_ROLE()), deployer.address), sender=deployer)
    econ = EconomyDeployment(fund=fund, licence=licence, parameters=parameters, timelock=timelock, credits=credits,
                             proposals=proposals, identity=identity, settings=s)
    return DinDeployment(token=token, registry=registry, factory=factory, implementation=implementation,
                         deployer=deployer.address, public_goods_fund=fund.address, economy=econ)


def create_task(chain: Chain, din: DinDeployment, params: TaskParams, *, owner: LocalAccount,
                approve: bool = True) -> Contract:
    """The owner approves the factory for the deposit and creates the task; returns the task."""
    if approve:
        chain.transact(din.token.functions.approve(din.factory.address, params.reward_deposit + params.fee_budget),
                       sender=owner)
    receipt = chain.transact(din.factory.functions.createTask(params.to_chain()), sender=owner)
    return chain.at("DINTask", receipt.event("TaskCreated").args["task"])


def opt_in(chain: Chain, task: Contract, *, evaluator: LocalAccount) -> None:
    """The evaluator approves the task for its bond and opts in (``DINTask.optIn``)."""
    bond = chain.call(task.functions.params())[4]
    token = chain.at("DINToken", chain.call(task.functions.token()))
    chain.transact(token.functions.approve(task.address, bond), sender=evaluator)
    chain.transact(task.functions.optIn(), sender=evaluator)


def mine_past_seed(chain: Chain, task: Contract, *, round_: int | None = None, subgroup: int | None = None) -> None:
    """Mine until the pending draw's seed block (the round's, or a dispute's) is in the past."""
    if subgroup is None:
        block = int(chain.call(task.functions.seedBlock()))
    else:
        block = int(chain.call(task.functions.subgroupInfo(round_, subgroup))[6])
    if block and chain.block_number <= block:
        chain.mine_to(block + 1)


def cid_arg(cid: Cid | None) -> tuple[bytes, int]:
    """The on-chain tuple for an optional CID."""
    return EMPTY_CHAIN_CID if cid is None else cid.to_chain()


def new_salt() -> bytes:
    return os.urandom(32)


def result_commitment(result: Cid, salt: bytes, evaluator: str, *, aborted: bool = False) -> bytes:
    """keccak256(abi.encode(result.digest, result.kind, salt, evaluator)) as commitResult expects
    (opened by ``revealResult``); with ``aborted`` the encoding ends in ``true`` (opened by
    ``revealAbortedResult``: a secure-aggregation abort)."""
    digest, kind = result.to_chain()
    if aborted:
        return keccak(abi_encode(["bytes32", "uint16", "bytes32", "address", "bool"],
                                 [digest, kind, salt, evaluator, True]))
    return keccak(abi_encode(["bytes32", "uint16", "bytes32", "address"], [digest, kind, salt, evaluator]))


HOLD_TAG = keccak(b"din-lab/held-final-result/v1")  # DINTaskBase.HOLD_TAG


def held_envelope(ciphertext: Cid, key: bytes) -> bytes:
    """The 128-byte envelope a held final-round result is voted on as (a raw IPFS block):
    abi.encode(HOLD_TAG, ciphertext.digest, ciphertext.kind, keccak256(key)). Its CID commits to the
    sealed result and to the key's hash, which is what ``releaseFinalModel`` checks a key against."""
    if len(key) != 32:
        raise ConfigError(f"a final-model key is 32 bytes, got {len(key)}")
    digest, kind = ciphertext.to_chain()
    return abi_encode(["bytes32", "bytes32", "uint16", "bytes32"], [HOLD_TAG, digest, kind, keccak(key)])


def parse_held_envelope(data: bytes) -> tuple[Cid, bytes] | None:
    """The sealed result's CID and the key's hash in a held envelope, or None when ``data`` is not one."""
    if len(data) != 128 or data[:32] != HOLD_TAG:
        return None
    try:
        return Cid(digest=data[32:64], kind=int.from_bytes(data[64:96], "big")), data[96:128]
    except MalformedCidError:  # not an envelope
        return None


def scores_commitment(scores: Sequence[int], salt: bytes, evaluator: str) -> bytes:
    """keccak256(abi.encode(scores, salt, evaluator)) as commitScores expects."""
    return keccak(abi_encode(["uint256[]", "bytes32", "address"], [list(scores), salt, evaluator]))


def outputs_commitment(digest: bytes, outputs: Cid, salt: bytes, evaluator: str) -> bytes:
    """keccak256(abi.encode(digest, outputs.digest, outputs.kind, salt, evaluator)): what
    commitScores takes under encrypted evaluation, opened by revealOutputs."""
    cid_digest, kind = outputs.to_chain()
    return keccak(abi_encode(["bytes32", "bytes32", "uint16", "bytes32", "address"],
                             [digest, cid_digest, kind, salt, evaluator]))


def to_wad(score: float) -> int:
    """A score in [0, 1] as 18-decimal fixed point (what the contract stores)."""
    if not 0.0 <= score <= 1.0:
        raise ConfigError(f"score {score} outside [0, 1]")
    return round(score * WAD)


def sign_update(
    *, participant: LocalAccount, task: Contract, chain_id: int, round_: int, update: Cid, aux: Cid | None = None
) -> tuple:
    """An EIP-712 signed update for ``submitUpdatesRelayed`` (compact EIP-2098 signature)."""
    aux_digest, aux_kind = cid_arg(aux)
    upd_digest, upd_kind = update.to_chain()
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Update": [
                {"name": "round", "type": "uint256"},
                {"name": "updateDigest", "type": "bytes32"},
                {"name": "updateKind", "type": "uint16"},
                {"name": "auxDigest", "type": "bytes32"},
                {"name": "auxKind", "type": "uint16"},
            ],
        },
        "primaryType": "Update",
        "domain": {"name": "DINTask", "version": "1", "chainId": chain_id, "verifyingContract": task.address},
        "message": {"round": round_, "updateDigest": upd_digest, "updateKind": upd_kind,
                    "auxDigest": aux_digest, "auxKind": aux_kind},
    }
    signed = participant.sign_typed_data(full_message=typed)
    r = signed.r.to_bytes(32, "big")
    vs = signed.s | ((signed.v - 27) << 255)
    return (participant.address, (upd_digest, upd_kind), (aux_digest, aux_kind), r, vs.to_bytes(32, "big"))
