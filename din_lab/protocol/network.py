"""Setting up the network for one DIN task: the contracts, the funding, and the agents.

The Lab (the clock) calls :func:`build` once. It deploys the DIN contracts, funds the owner and the
evaluators with tokens, splits the data set among the participants (from here on each
participant's data exists only inside that participant, and the test set only inside the owner),
creates every agent with a handle of its own, and has the owner create the task, the evaluators
bond and the participants register: each of those transactions is the agent's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from din_lab.chain import Chain
from din_lab.chain.din import WAD, ZERO_ADDRESS, DinDeployment, EconomySettings, TaskParams, deploy
from din_lab.cid import Cid
from din_lab.config import MIN_STAKE, ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.learning import TrainingConfig, build_model, flatten, lab_model_spec, load_dataset, partition
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import Auditor
from din_lab.roles.behaviours import SYBIL_ACCOUNTS, assign_behaviours, evaluator_behaviour, participant_behaviour
from din_lab.roles.evaluator import LICENCE_BLOCKS, Evaluator
from din_lab.roles.model_owner import ModelOwner
from din_lab.roles.network import Board, Handle, LabEvent, PublicView, TaskSpec
from din_lab.roles.participant import Participant
from din_lab.roles.public_goods import PublicGoodsFund
from din_lab.storage import ContentStore

RELAY_BATCH = 100  # signed updates per relayed transaction (about 1.5M gas; see benchmarks/gas.py)


def wad(amount: float) -> int:
    return int(round(amount * 1e6)) * 10**12


@dataclass
class Network:
    """Everything :func:`build` made: the deployment, the task, the agents and the public view."""

    din: Any
    task: Any
    task_params: TaskParams
    spec: TaskSpec
    view: PublicView
    board: Board
    owner: ModelOwner
    participants: list[Participant]
    evaluators: list[Evaluator]
    fund: PublicGoodsFund
    auditor: Auditor
    dataset: Any  # the data set with its training split emptied (the participants hold it)
    model: Any
    genesis_cid: Cid
    names: dict[str, str]
    setup_events: list[LabEvent]
    balances_raw_before: dict[str, int]
    first_block: int = 0  # the head when the balances before were read: later token flows are counted


def build(config: ExperimentConfig, *, chain: Chain, store: ContentStore, seed: int,
          din: DinDeployment | None = None) -> Network:
    """``seed``: the experiment's randomness (data split, behaviours, initial model, training).
    ``din``: a network already deployed on ``chain`` (a follow-on task, :meth:`Lab.next_task`);
    its deployer must be ``chain.accounts[0]`` and the other accounts new."""
    cfg = config
    deployer, owner_acct, fund_acct = chain.accounts[:3]
    rng = np.random.default_rng(seed)
    dataset = load_dataset(cfg.dataset, seed=seed)
    model = build_model(lab_model_spec(cfg.model), num_features=dataset.num_features,
                        num_classes=dataset.num_classes, seed=seed)
    p_beh = assign_behaviours(cfg.participants, cfg.malicious_participants, make=participant_behaviour, rng=rng,
                              field="malicious_participants")
    e_beh = assign_behaviours(cfg.evaluators, cfg.malicious_evaluators, make=evaluator_behaviour, rng=rng,
                              field="malicious_evaluators")
    parts = partition(dataset.y_train, num_participants=cfg.participants, spec=cfg.partition, seed=seed)
    events: list[LabEvent] = []

    if din is not None:
        if (din.economy is not None) != cfg.economy:
            raise ConfigError("economy: a follow-on task runs in the same network: "
                              f"{'with' if din.economy is not None else 'without'} its economy")
        if din.deployer != deployer.address:
            raise ConfigError("the network's deployer (its funder) must be the chain's first account")
    elif cfg.economy:  # the fund is a contract; fund_acct is the keeper who collects the task's dues into it
        din = deploy(chain, deployer=deployer, economy=economy_settings(cfg), min_bond=wad(MIN_STAKE))
    else:
        din = deploy(chain, deployer=deployer, public_goods_fund=fund_acct.address, min_bond=wad(MIN_STAKE))
    token, registry = din.token, din.registry

    def infrastructure(fn: Any, action: str, amount: float | None) -> None:  # the network's funder
        receipt = chain.transact(fn, sender=deployer)
        events.append(LabEvent(phase="setup", round=None, actor="deployer", action=action, tx_hash=receipt.tx_hash,
                               gas=receipt.gas_used, block=receipt.block, amount=amount))

    infrastructure(token.functions.transfer(owner_acct.address, wad(cfg.owner_tokens)), "fund owner",
                   cfg.owner_tokens)
    evaluator_accounts = chain.accounts[3 + cfg.participants:3 + cfg.participants + cfg.evaluators]
    evaluator_tokens = cfg.evaluator_stake + licence_budget(cfg)
    for acct in evaluator_accounts:
        infrastructure(token.functions.transfer(acct.address, wad(evaluator_tokens)), "fund evaluator",
                       evaluator_tokens)
    first = 3 + cfg.participants + cfg.evaluators
    if len(chain.accounts) < first + sybil_accounts(cfg):
        raise ConfigError(f"the chain has {len(chain.accounts)} accounts; this task needs {account_count(cfg)} "
                          "(connect with accounts=account_count(config))")
    extra_accounts = chain.accounts[first:first + sybil_accounts(cfg)]
    addresses = [owner_acct.address, fund_acct.address, *(a.address for a in chain.accounts[3:3 + cfg.participants]),
                 *(a.address for a in evaluator_accounts), *(a.address for a in extra_accounts)]
    if din.economy is not None:
        addresses += [din.public_goods_fund] + ([din.economy.licence.address] if din.economy.licence else [])
    first_block = chain.block_number  # token flows after this block are this task's, or the economy's
    balances_raw_before = {a: chain.call(token.functions.balanceOf(a)) for a in addresses}
    identity = None
    if din.economy is not None:  # one identity registry for the task and the economy: everyone verified
        identity = din.economy.identity
        people = [owner_acct, *chain.accounts[3:3 + cfg.participants], *evaluator_accounts]
        if cfg.identity == "open":  # the identity provider verifies whoever asks, Sybils' extra accounts too
            people += list(extra_accounts)
        for acct in people:
            infrastructure(identity.functions.setVerified(acct.address, True), "verify identity", None)
    elif cfg.identity == "allowlist":  # the network's identity provider verifies one account per person
        identity = chain.deploy("Allowlist", deployer.address, sender=deployer)
        for acct in chain.accounts[3:3 + cfg.participants]:
            infrastructure(identity.functions.setVerified(acct.address, True), "verify identity", None)

    def handle(account: Any, view: PublicView | None = None, spec: TaskSpec | None = None) -> Handle:
        return Handle(chain=chain, store=store, account=account, token=token, registry=registry, view=view,
                      board=board, spec=spec)

    board = Board()
    owner = ModelOwner(name="owner", handle=handle(owner_acct), x_test=dataset.X_test, y_test=dataset.y_test,
                       tampers=cfg.owner_tampers, target_accuracy=cfg.target_accuracy,
                       stop_on_budget=cfg.stop_on_budget)
    genesis = owner.genesis(flatten(model), model=cfg.model)
    # evaluators exist before the task: under secure aggregation they publish their keys in the registry
    coalition = frozenset(chain.accounts[3 + i].address for i, b in enumerate(p_beh) if b.malicious)
    evaluators = [Evaluator(name=f"evaluator {i}", handle=handle(acct), index=i, behaviour=b, he_workers=cfg.he_workers,
                            allies=coalition if b.name == "extreme" else frozenset())
                  for i, (acct, b) in enumerate(zip(evaluator_accounts, e_beh, strict=True))]
    if cfg.secagg:
        for e in evaluators:
            e.publish_key(None)
    params = task_params(cfg, chain=chain, din=din, genesis=genesis, registrants=cfg.participants + len(extra_accounts),
                         identity_registry=identity.address if identity is not None else None)
    task = chain.at("DINTask", owner.create_task(factory=din.factory, params=params,
                                                 amount=cfg.reward_deposit + cfg.fee_budget))
    view = PublicView(chain=chain, store=store, task=task, registry=registry)
    spec = TaskSpec(model=cfg.model, num_features=dataset.num_features, num_classes=dataset.num_classes,
                    dimension=int(flatten(model).shape[0]), max_samples=dataset.num_train,
                    subgroup_size=cfg.subgroup_size, evaluators_per_subgroup=cfg.evaluators_per_subgroup,
                    training=TrainingConfig(epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.learning_rate,
                                            optimizer=cfg.optimizer),
                    scorer=cfg.scorer, contribution=cfg.contribution_game, secagg=cfg.secagg, secagg_plus=cfg.secagg_graph == "secagg+",
                    evaluation=cfg.evaluation, relayed_submissions=cfg.relayed_submissions, relay_batch=RELAY_BATCH,
                    seed=seed)
    for agent in (owner, *evaluators):
        agent.join(handle(agent.handle.account, view, spec))
    for e in evaluators:
        e.opt_in(None)
    participants = []
    for i, (idx, b) in enumerate(zip(parts, p_beh, strict=True)):
        participants.append(Participant(name=f"participant {i}", handle=handle(chain.accounts[3 + i], view, spec),
                                        index=i, behaviour=b, x=dataset.X_train[idx].copy(),
                                        y=dataset.y_train[idx].copy()))
        participants[-1].register(None)
    sybils = iter(extra_accounts)  # each Sybil party's other accounts, with the same data
    for p in [p for p in participants if p.behaviour.name == "sybil"]:
        for j in range(SYBIL_ACCOUNTS):
            participants.append(Participant(name=f"{p.name} sybil {j + 1}", handle=handle(next(sybils), view, spec),
                                            index=len(participants), behaviour=p.behaviour,
                                            x=dataset.X_train[parts[p.index]].copy(),
                                            y=dataset.y_train[parts[p.index]].copy()))
            participants[-1].register(None)
    # from here on the training data exists only inside the participants
    dataset = dataclasses.replace(dataset, X_train=dataset.X_train[:0], y_train=dataset.y_train[:0])
    fund = PublicGoodsFund(name="fund keeper" if din.economy is not None else "public-goods fund",
                           handle=handle(fund_acct, view, spec))
    auditor = Auditor(name="auditor", handle=handle(deployer, view, spec))
    names = {deployer.address: "deployer"}
    names.update({a.address: a.name for a in (owner, fund, *participants, *evaluators)})
    if din.economy is not None:
        names[din.public_goods_fund] = "public-goods fund"
        if din.economy.licence is not None:
            names[din.economy.licence.address] = "licence deposits"
    return Network(din=din, task=task, task_params=params, spec=spec, view=view, board=board, owner=owner,
                   participants=participants, evaluators=evaluators, fund=fund, auditor=auditor, dataset=dataset,
                   model=model, genesis_cid=genesis, names=names, setup_events=events,
                   balances_raw_before=balances_raw_before, first_block=first_block)


def governed_share(chain: Chain, din: Any, cfg: ExperimentConfig) -> int:
    """The public-goods share a new task must use: the governed one where the network has an economy
    (read from DINParameters as it stands), else the configured one."""
    if getattr(din, "economy", None) is None:
        return cfg.public_goods_bps
    return int(chain.call(din.economy.parameters.functions.publicGoodsBps()))


def economy_settings(cfg: ExperimentConfig) -> EconomySettings:
    """The network's economy for a lab task: the governed public-goods share starts at the task's,
    the least bond is the factory's, one licence per evaluator unless ``licence_supply`` says fewer."""
    return EconomySettings(licences=cfg.licences, licence_supply=cfg.licence_supply or cfg.evaluators,
                           reserve_price=wad(cfg.licence_price),
                           harberger_rate=max(1, int(round(cfg.harberger_rate * WAD))),
                           public_goods_bps=cfg.public_goods_bps, min_bond=wad(MIN_STAKE),
                           # one block per transaction here: room for every agent's gifts and votes
                           qf_round_blocks=20 + 10 * (cfg.participants + cfg.evaluators + 1),
                           voting_blocks=20 + 2 * (cfg.participants + cfg.evaluators + 1))


def licence_budget(cfg: ExperimentConfig) -> float:
    """What the network's funder gives each evaluator on top of its bond to buy a licence at the
    fund's reserve price and prepay its tax (Evaluator.opt_in: valuation twice the reserve,
    LICENCE_BLOCKS blocks of tax): 0 without licences."""
    if not (cfg.economy and cfg.licences):
        return 0.0
    valuation = 2 * cfg.licence_price
    return cfg.licence_price + valuation * cfg.harberger_rate * LICENCE_BLOCKS + 1.0


def sybil_accounts(cfg: ExperimentConfig) -> int:
    """The extra accounts the configured Sybil parties register (``SYBIL_ACCOUNTS`` each)."""
    parties = sum(int(round(f * cfg.participants)) for f, name in cfg.malicious_participants if name == "sybil")
    return parties * SYBIL_ACCOUNTS


def account_count(cfg: ExperimentConfig) -> int:
    """The chain accounts a task needs: deployer, owner, fund, participants, evaluators, Sybils' extras."""
    return 3 + cfg.participants + cfg.evaluators + sybil_accounts(cfg)


def task_params(cfg: ExperimentConfig, *, chain: Chain, din: Any, genesis: Cid, registrants: int | None = None,
                identity_registry: str | None = None) -> TaskParams:
    """The owner's task: deposit, fees, bonds, and windows in blocks sized to the transactions each
    needs (the embedded chain and anvil mine one block per transaction): every member's vote, plus a
    dispute's finalize and larger committee; never below the factory's minimum window."""
    n, s, k = registrants or cfg.participants, cfg.subgroup_size, cfg.evaluators_per_subgroup
    groups = n // s
    least = int(chain.call(din.factory.functions.minWindow()))
    votes = max(least, groups * (2 * k + 2) + 4)
    batches = -(-n // RELAY_BATCH) if cfg.relayed_submissions else n
    share_reveals = max(least, groups * k + 2) if cfg.secagg else 0  # one revealShares per committee member
    return TaskParams(
        genesis_model=genesis, reward_deposit=wad(cfg.reward_deposit), fee_budget=wad(cfg.fee_budget),
        evaluator_fee=wad(cfg.evaluator_fee), evaluator_bond=wad(cfg.evaluator_stake),
        slash_amount=wad(cfg.slash_amount), rounds=cfg.rounds, subgroup_size=s,
        evaluators_per_subgroup=k, max_participants=n, max_evaluators=cfg.evaluators,
        public_goods_bps=governed_share(chain, din, cfg), encrypted_scoring=cfg.evaluation == "he",
        registration_window=n + 2 * cfg.evaluators + 10 + (cfg.participants if cfg.identity == "allowlist" else 0), submission_window=max(least, batches + 4),
        share_window=share_reveals, commit_window=votes, reveal_window=votes, publish_window=max(least, 10),
        identity_registry=identity_registry or ZERO_ADDRESS)


def agents_of(network: Network) -> list[Agent]:
    """Every agent, in the order the clock gives them turns."""
    return [network.owner, *network.participants, *network.evaluators, network.fund]
