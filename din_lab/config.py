"""Validated configuration values shared by every layer (DESIGN.md section 3): the chain
backend (:class:`ChainConfig`) and one whole DIN task (:class:`ExperimentConfig`), with
``to_dict``/``from_dict`` for files and papermill parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from din_lab.errors import ConfigError

CHAIN_ENV = "DIN_LAB_CHAIN"
STORE_ENV = "DIN_LAB_IPFS"
MIN_STAKE = 100.0  # the least bond (DIN tokens) an evaluator deposits to opt in to a task (the factory's minBond)
TOKEN_DECIMALS_USED = 6  # amounts in a config are whole micro-DIN
HOME_ENV = "DIN_LAB_HOME"


def lab_home() -> Path:
    """The lab's data directory: ``$DIN_LAB_HOME``, else ``~/.din-lab`` (created on first use by
    whatever stores data there, e.g. the embedded IPFS store under ``ipfs/``)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".din-lab"


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """Which chain to use: ``"embedded"`` (py-evm in process) or a JSON-RPC URL."""

    backend: str = "embedded"
    accounts: int = 20
    seed: int | None = 0  # None: account keys and block randomness from the operating system
    block_gas_limit: int = 30_000_000  # embedded chain only; a node by URL keeps its own

    def __post_init__(self) -> None:
        if self.backend != "embedded" and not self.backend.startswith(("http://", "https://")):
            raise ConfigError(f"unknown chain backend {self.backend!r}: use 'embedded' or an http(s):// JSON-RPC URL")
        if self.accounts < 1:
            raise ConfigError("accounts must be at least 1")
        if self.seed is not None and self.seed < 0:
            raise ConfigError("seed must be non-negative")
        if self.block_gas_limit < 21_000:
            raise ConfigError("block_gas_limit must be at least 21000")

    @classmethod
    def from_env(cls, **overrides: Any) -> ChainConfig:
        backend = overrides.pop("backend", None) or os.environ.get(CHAIN_ENV) or "embedded"
        return cls(backend=backend, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown chain settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def parse_share(text: str, *, field: str) -> tuple[float, str]:
    """``"FRACTION:BEHAVIOUR"`` (e.g. ``"0.3:inverted-labels"``) as ``(0.3, "inverted-labels")``."""
    fraction, sep, behaviour = str(text).partition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = float("nan")
    if not sep or not behaviour or value != value:
        raise ConfigError(f"{field}: expected FRACTION:BEHAVIOUR such as 0.3:{'random' if 'evaluator' in field else 'scaled'},"
                          f" got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{field}: the fraction {value} is outside [0, 1]")
    return value, behaviour


PLAINTEXT_BASELINE: Mapping[str, Any] = MappingProxyType({"secagg": False, "evaluation": "plaintext"})
"""The settings that turn the paper's protocol into its plaintext baseline: updates travel in the
clear (evaluators can screen each one) and the owner's test set is published in the clear.
``ExperimentConfig(**PLAINTEXT_BASELINE, ...)``; on the CLI ``--secagg off --evaluation plaintext``."""


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """One DIN task, fully specified: who takes part, what is learned, how the chain is paid.

    Structural rules are checked here; names (data set, model, behaviours, scorer) are checked
    against what the lab implements by ``din_lab.experiment.check_config`` before anything is
    deployed. Amounts are in whole DIN tokens.
    """

    participants: int = 20
    evaluators: int = 4
    subgroup_size: int = 5
    evaluators_per_subgroup: int = 3
    rounds: int = 3
    dataset: str = "digits"
    partition: str = "iid"
    model: str = "logreg"
    local_epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 0.01
    optimizer: str = "adam"
    scorer: str = "shapley"
    # whose game a participant is valued in: "task" (every final-round contributor in one game, one
    # scale; issue 17) or "subgroup" (its subgroup's own game, its best scoring 1: the old rule);
    # None (automatic): "task" wherever someone sees every contribution, else "subgroup"; kept as
    # given (so ``dataclasses.replace`` re-decides it), read the decision from ``contribution_game``
    contribution: str | None = None
    # the paper's protocol by default: CKKS-encrypted evaluation and secure aggregation over the
    # SecAgg+ graph; PLAINTEXT_BASELINE names the protocol without its privacy, for comparison
    evaluation: str = "he"
    he_workers: int = 1
    secagg: bool = True
    secagg_graph: str = "secagg+"
    dropout: float = 0.0
    malicious_evaluators: tuple[tuple[float, str], ...] = ()
    malicious_participants: tuple[tuple[float, str], ...] = ()
    # the backends: $DIN_LAB_CHAIN and $DIN_LAB_IPFS when set (read when the config is made), else
    # the embedded chain and an in-memory store
    chain: str = field(default_factory=lambda: os.environ.get(CHAIN_ENV) or "embedded")
    store: str = field(default_factory=lambda: os.environ.get(STORE_ENV) or "memory")
    runtime: str = "local"
    workers: int = 2
    seed: int = 0
    relayed_submissions: bool = True
    reward_deposit: float = 1_000.0
    fee_budget: float = 200.0
    evaluator_fee: float = 2.0
    slash_amount: float = 50.0
    evaluator_stake: float = 500.0
    owner_tokens: float = 10_000.0
    public_goods_bps: int = 500
    owner_tampers: bool = False
    identity: str = "open"  # "allowlist": only accounts the network's identity registry verified may register
    # the network's economy and governance (paper sections 6 and 8; issue 18): a quadratic-funding
    # public-goods fund, governed parameters (the public-goods share starts at public_goods_bps), voice
    # credits and DIN Proposal Protocols, and, with ``licences``, Harberger-taxed evaluator licences
    # that the evaluators buy from the fund before they opt in; participants register through the
    # network's identity registry (credits count only identity-gated tasks)
    economy: bool = False
    licences: bool = True  # with economy: evaluators need a licence to opt in and to score
    licence_supply: int | None = None  # None: one per evaluator; fewer makes them compete
    licence_price: float = 50.0  # the fund's reserve price for a licence (DIN)
    harberger_rate: float = 1e-4  # tax per block, a fraction of the self-assessed price
    # the owner's own criteria for ending training before the last of ``rounds`` (paper 5.1 step 5b-c)
    target_accuracy: float | None = None  # on its own test set
    stop_on_budget: bool = False  # when the fee budget cannot pay the committees of another round and scoring

    @property
    def contribution_game(self) -> str:
        """The game participants are valued in: ``contribution`` when given, else ``"task"`` where
        the task-wide game can be played (see :meth:`task_wide_impossible`) and ``"subgroup"`` elsewhere."""
        if self.contribution is not None:
            return self.contribution
        return "subgroup" if self.task_wide_impossible() else "task"

    def task_wide_impossible(self) -> str | None:
        """Why the task-wide game cannot be played in this configuration (None: it can)."""
        if self.secagg and self.evaluation == "plaintext":
            return ("under secure aggregation with plaintext evaluation each committee sees only its own subgroup's "
                    "updates; use encrypted evaluation (the owner decrypts every subgroup's outputs), the plaintext "
                    "baseline, or contribution='subgroup'")
        if self.evaluation == "he" and self.model != "logreg" and self.scorer != "accuracy":
            return (f"under encrypted evaluation the owner mixes the players' decrypted outputs across subgroups, "
                    f"which equals the FedAvg model's outputs only for logistic regression (--model logreg); "
                    f"{self.model!r} is scored task-wide by the accuracy scorer, or in each subgroup's own game "
                    "(contribution='subgroup')")
        return None

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{field}: {message}")

        for name in ("participants", "evaluators", "subgroup_size", "evaluators_per_subgroup", "rounds",
                     "local_epochs", "batch_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name,
                 f"must be a positive integer, got {value!r}")
        need(self.subgroup_size >= 3, "subgroup_size",
             f"{self.subgroup_size} is below 3: a subgroup sum of fewer than 3 updates reveals them (paper, N >= 3)")
        need(self.participants >= self.subgroup_size, "participants",
             f"{self.participants} participants cannot fill one subgroup of {self.subgroup_size}")
        need(self.evaluators_per_subgroup <= self.evaluators, "evaluators_per_subgroup",
             f"{self.evaluators_per_subgroup} per subgroup but only {self.evaluators} evaluators")
        need(self.evaluators_per_subgroup % 2 == 1 and self.evaluators_per_subgroup <= 15, "evaluators_per_subgroup",
             f"{self.evaluators_per_subgroup}: a committee must be odd and at most 15 (an even committee lets half "
             "of it decide a median)")
        need(self.evaluators <= 200, "evaluators", f"{self.evaluators} is above a task's cap of 200 opted-in evaluators")
        need(self.participants <= 2_000, "participants", f"{self.participants} is above a task's cap of 2,000")
        need(self.learning_rate > 0, "learning_rate", "must be positive")
        need(self.optimizer in ("sgd", "adam"), "optimizer", f"must be sgd or adam, got {self.optimizer!r}")
        need(self.evaluation in ("plaintext", "he"), "evaluation", f"must be plaintext or he, got {self.evaluation!r}")
        need(self.contribution in (None, "task", "subgroup"), "contribution",
             f"must be task (one game over the whole task) or subgroup (each subgroup's own game), got "
             f"{self.contribution!r}")
        why_not = self.task_wide_impossible()
        need(not (self.contribution == "task" and why_not), "contribution", f"task-wide scoring: {why_not}")
        need(isinstance(self.he_workers, int) and not isinstance(self.he_workers, bool)
             and 1 <= self.he_workers <= 64, "he_workers",
             f"must be a number of worker processes in [1, 64], got {self.he_workers!r}")
        need(isinstance(self.secagg, bool), "secagg", f"must be true or false, got {self.secagg!r}")
        need(self.secagg_graph in ("full", "secagg+"), "secagg_graph",
             f"must be full (every pair masks) or secagg+ (a sparse graph), got {self.secagg_graph!r}")
        need(isinstance(self.dropout, int | float) and not isinstance(self.dropout, bool)
             and 0.0 <= self.dropout < 1.0, "dropout",
             f"must be a fraction in [0, 1) of participants that vanish each round, got {self.dropout!r}")
        need(self.seed is None or (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0),
             "seed", f"must be a non-negative integer, or None (keys from the operating system), got {self.seed!r}")
        need(self.target_accuracy is None or (isinstance(self.target_accuracy, int | float)
                                              and not isinstance(self.target_accuracy, bool)
                                              and 0.0 < self.target_accuracy <= 1.0), "target_accuracy",
             f"must be an accuracy in (0, 1], or None (train all rounds), got {self.target_accuracy!r}")
        need(isinstance(self.stop_on_budget, bool), "stop_on_budget", f"must be true or false, got {self.stop_on_budget!r}")
        need(self.identity in ("open", "allowlist"), "identity",
             f"must be open (anyone registers) or allowlist (one verified account per person), got {self.identity!r}")
        need(self.runtime in ("local", "ray"), "runtime",
             f"must be local (agents in this process) or ray (agents over Ray actors), got {self.runtime!r}")
        need(isinstance(self.workers, int) and not isinstance(self.workers, bool) and 1 <= self.workers <= 64,
             "workers", f"must be a number of Ray actors in [1, 64], got {self.workers!r}")
        need(isinstance(self.public_goods_bps, int) and not isinstance(self.public_goods_bps, bool),
             "public_goods_bps", f"must be an integer number of basis points, got {self.public_goods_bps!r}")
        need(isinstance(self.store, str) and bool(self.store)
             and ("://" not in self.store or self.store.startswith(("http://", "https://"))), "store",
             f"must be 'memory', a directory or an http(s):// Kubo RPC URL, got {self.store!r}")
        for name in ("reward_deposit", "fee_budget", "evaluator_fee", "slash_amount", "evaluator_stake",
                     "owner_tokens"):
            value = getattr(self, name)
            need(isinstance(value, int | float) and not isinstance(value, bool) and value == value and value >= 0
                 and value != float("inf"), name, f"must be a finite amount >= 0, got {value!r}")
            micro = value * 10**TOKEN_DECIMALS_USED
            need(abs(micro - round(micro)) < 1e-6 * max(1.0, abs(micro)), name,
                 f"{value!r} has more than {TOKEN_DECIMALS_USED} decimals")
        need(self.reward_deposit >= 10**-TOKEN_DECIMALS_USED, "reward_deposit", "must be positive")
        need(self.evaluator_stake >= MIN_STAKE, "evaluator_stake",
             f"{self.evaluator_stake:g} is below the factory's minimum bond of {MIN_STAKE:g}")
        need(self.slash_amount <= self.evaluator_stake and self.slash_amount > 0, "slash_amount",
             f"{self.slash_amount:g} must be positive and at most the bond ({self.evaluator_stake:g})")
        need(self.reward_deposit + self.fee_budget <= self.owner_tokens, "reward_deposit",
             f"deposit {self.reward_deposit:g} + fee budget {self.fee_budget:g} exceed the owner's balance "
             f"{self.owner_tokens:g}")
        need(0 <= self.public_goods_bps <= 10_000, "public_goods_bps", "must be within [0, 10000]")
        for name in ("economy", "licences"):
            need(isinstance(getattr(self, name), bool), name, f"must be true or false, got {getattr(self, name)!r}")
        if not self.economy:
            given = [n for n, default in (("licences", True), ("licence_supply", None), ("licence_price", 50.0),
                                          ("harberger_rate", 1e-4)) if getattr(self, n) != default]
            need(not given, given[0] if given else "economy",
                 "is a setting of the network's economy: add economy=True (--economy)")
        if self.economy:
            need(self.public_goods_bps <= 5_000, "public_goods_bps",
                 f"{self.public_goods_bps} is above the governed share's bound of 5000 (50 %)")
            need(self.evaluator_fee <= 10.0, "evaluator_fee", "is above the governed fee cap of 10 DIN per vote")
        need(self.licence_supply is None or (isinstance(self.licence_supply, int)
                                             and not isinstance(self.licence_supply, bool)
                                             and 1 <= self.licence_supply <= 256), "licence_supply",
             f"must be a number of licences in [1, 256], or None (one per evaluator), got {self.licence_supply!r}")
        need(isinstance(self.licence_price, int | float) and not isinstance(self.licence_price, bool)
             and 0 < self.licence_price < 1e12, "licence_price", f"must be a positive amount, got {self.licence_price!r}")
        need(isinstance(self.harberger_rate, int | float) and not isinstance(self.harberger_rate, bool)
             and 1e-18 <= self.harberger_rate <= 0.01, "harberger_rate",
             f"must be a fraction of the price per block in [1e-18, 0.01], got {self.harberger_rate!r}")
        for name in ("malicious_evaluators", "malicious_participants"):
            shares = tuple(parse_share(s, field=name) if isinstance(s, str) else (float(s[0]), str(s[1]))
                           for s in getattr(self, name))
            for fraction, _ in shares:
                need(0.0 <= fraction <= 1.0, name, f"fraction {fraction} is outside [0, 1]")
            need(sum(f for f, _ in shares) <= 1.0 + 1e-12, name, "fractions add up to more than 1")
            object.__setattr__(self, name, shares)
        ChainConfig(backend=self.chain)  # validates the chain choice

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("malicious_evaluators", "malicious_participants"):
            data[name] = [f"{f:g}:{b}" for f, b in getattr(self, name)]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown experiment settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        for name in ("malicious_evaluators", "malicious_participants"):
            if name in values:
                raw = values[name]
                values[name] = tuple(parse_share(s, field=name) if isinstance(s, str) else tuple(s)
                                     for s in ([raw] if isinstance(raw, str) else raw))
        return cls(**values)
