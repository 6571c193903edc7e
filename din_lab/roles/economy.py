"""What any agent does in the network's economy with its own account (paper sections 6 and 8):
buy, price and keep an evaluator licence (Harberger tax), give to public-goods projects in a
quadratic-funding round, claim its voice credits from a finished task, file a DIN Proposal Protocol
and vote on one quadratically.

Each function takes the acting agent and public contracts only (addresses read from the chain); it
sends the agent's own transactions through ``Agent._tx`` so the journal records them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from din_lab.chain.din import WAD, ZERO_ADDRESS
from din_lab.errors import ContractRevert, ProtocolError
from din_lab.roles.agent import Agent

log = logging.getLogger(__name__)

INFRASTRUCTURE, ECONOMIC = 0, 1
STATES = ("Recorded", "Active", "Defeated", "Succeeded", "Queued", "Executed", "Expired")


def parameter_key(name: str) -> bytes:
    """The bytes32 key of a governed parameter (``"publicGoodsBps"`` ...), as the contracts spell it."""
    raw = name.encode()
    if not raw or len(raw) > 32:
        raise ProtocolError(f"parameter name {name!r} must be 1 to 32 bytes")
    return raw.ljust(32, b"\0")


@dataclass(frozen=True, kw_only=True)
class LicenceView:
    """One licence as anyone reads it: its holder, the price a buyer pays now, the deposit left after
    the tax due, whether it is foreclosable, and the tax it has paid over all its holders."""

    licence: int
    holder: str
    price: float
    deposit: float
    foreclosable: bool
    tax_paid: float


def licences(chain: Any, *, licence: Any) -> list[LicenceView]:
    """Every licence's public state."""
    f = licence.functions
    out = []
    for i in range(int(chain.call(f.supply()))):
        holder, price, deposit, foreclosable = chain.call(f.licenceInfo(i))
        out.append(LicenceView(licence=i, holder=holder, price=price / WAD, deposit=deposit / WAD,
                               foreclosable=bool(foreclosable), tax_paid=chain.call(f.taxPaidOn(i)) / WAD))
    return out


def licence_of_task(agent: Agent) -> Any | None:
    """The licence contract the agent's task requires (None: none required), read from the task."""
    address = agent.view.call(agent.F.licence())
    return None if address == ZERO_ADDRESS else agent.handle.chain.at("EvaluatorLicence", address)


def acquire_licence(agent: Agent, licence: Any, *, valuation: float, blocks: int, keep: int = 0,
                    phase: str = "setup") -> int | None:
    """Hold a licence: keep the one held, else buy the cheapest licence priced below ``valuation``
    (what the agent thinks one is worth; the fund's sell at its reserve price), naming ``valuation``
    as its own price and prepaying the tax on it for ``blocks`` blocks, if it can pay that and still
    hold ``keep`` (wei, e.g. its bond). Returns the licence id, or None when no licence is worth its
    price to the agent or it cannot afford one."""
    chain, f = agent.handle.chain, licence.functions
    held, holds = chain.call(f.licenceOf(agent.address))
    if holds and chain.call(f.isLicensed(agent.address)):
        return int(held)
    if holds:  # its own licence's deposit ran out: settle it (the fund takes it back) before buying another
        settle(agent, licence, licence_id=int(held), phase=phase)
    rate = int(chain.call(f.taxRate()))
    offers = sorted((v for v in licences(chain, licence=licence) if v.holder != agent.address), key=lambda v: v.price)
    if not offers or offers[0].price >= valuation:
        log.info("%s: no licence below its valuation %.2f (cheapest %s)", agent.name, valuation,
                 f"{offers[0].price:.2f}" if offers else "none")
        return None
    return offers[0].licence if buy_licence(agent, licence, licence_id=offers[0].licence, valuation=valuation,
                                            blocks=blocks, keep=keep, phase=phase, rate=rate) else None


def buy_licence(agent: Agent, licence: Any, *, licence_id: int, valuation: float, blocks: int, keep: int = 0,
                phase: str = "economy", rate: int | None = None) -> bool:
    """Buy licence ``licence_id`` if its price now is below ``valuation`` and the agent can pay it
    and the tax on ``valuation`` for ``blocks`` blocks while keeping ``keep`` wei; it names
    ``valuation`` as its price (under a Harberger tax, naming what the licence is worth to you is
    the price you lose nothing by). Returns whether it bought."""
    chain, f = agent.handle.chain, licence.functions
    rate = int(chain.call(f.taxRate())) if rate is None else rate
    holder, price, _, _ = chain.call(f.licenceInfo(licence_id))
    if holder == agent.address or price >= valuation * WAD:
        return False
    new_price = int(round(valuation * WAD))
    deposit = max(1, new_price * rate * blocks // WAD)
    if chain.call(agent.handle.token.functions.balanceOf(agent.address)) < price + deposit + keep:
        log.info("%s cannot afford licence %d at %.2f with its deposit", agent.name, licence_id, price / WAD)
        return False
    agent._tx(phase, None, agent.handle.token.functions.approve(licence.address, price + deposit),
              "approve licence purchase")
    agent._tx(phase, None, f.buy(licence_id, price, new_price, deposit),
              f"buy licence {licence_id} (self-assessed {valuation:g}, tax prepaid for {blocks} blocks)",
              amount=(price + deposit) / WAD)
    return True


def give_back(agent: Agent, licence: Any, *, phase: str = "economy") -> None:
    """Hand the agent's licence back to the fund, taking back what is left of its deposit."""
    held, holds = agent.handle.chain.call(licence.functions.licenceOf(agent.address))
    if not holds:
        raise ProtocolError(f"{agent.name} holds no licence")
    agent._tx(phase, None, licence.functions.giveBack(held), f"give licence {held} back to the fund")


def withdraw_deposit(agent: Agent, licence: Any, *, keep_blocks: int, phase: str = "economy") -> None:
    """Take back the agent's deposit but ``keep_blocks`` blocks of tax (tax due is paid first)."""
    chain, f = agent.handle.chain, licence.functions
    held, holds = chain.call(f.licenceOf(agent.address))
    if not holds:
        raise ProtocolError(f"{agent.name} holds no licence")
    _, price, deposit, _ = chain.call(f.licenceInfo(held))
    keep = price * int(chain.call(f.taxRate())) * (keep_blocks + 1) // WAD + 1
    if deposit > keep:
        agent._tx(phase, None, f.withdraw(held, deposit - keep), f"withdraw deposit of licence {held}",
                  amount=(deposit - keep) / WAD)


def settle(agent: Agent, licence: Any, *, licence_id: int, phase: str = "economy") -> bool:
    """Anyone pays a licence's tax due to the fund (foreclosing it if its deposit ran out); returns
    whether the fund holds it afterwards."""
    receipt = agent._tx(phase, None, licence.functions.settle(licence_id), f"settle the tax of licence {licence_id}")
    return any(ev.event == "Foreclosed" for ev in receipt.events) or \
        agent.handle.chain.call(licence.functions.ownerOf(licence_id)) == \
        agent.handle.chain.call(licence.functions.fund())


def contribute(agent: Agent, fund: Any, *, project: int, amount: float, phase: str = "economy") -> None:
    """Give ``amount`` DIN to ``project`` in the fund's open round."""
    raw = int(round(amount * WAD))
    agent._tx(phase, None, agent.handle.token.functions.approve(fund.address, raw), "approve contribution")
    agent._tx(phase, None, fund.functions.contribute(project, raw), f"contribute to project {project}", amount=amount)


def claim_credits(agent: Agent, credits: Any, *, task: str, phase: str = "economy") -> int:
    """Record the agent's voice credits from its activity in finished task ``task``; returns the
    credits granted (0 when it did nothing there that earns credits)."""
    chain = agent.handle.chain
    if chain.call(credits.functions.granted(task, agent.address)):
        return 0
    by_kind = chain.call(credits.functions.creditsFrom(task, agent.address))
    if not sum(by_kind):
        return 0
    agent._tx(phase, None, credits.functions.grant(task, agent.address), "claim voice credits",
              detail=f"owner {by_kind[0]}, participant {by_kind[1]}, evaluator {by_kind[2]}")
    return int(sum(by_kind))


def propose(agent: Agent, proposals: Any, *, title: str, text: bytes, parameter: str | None = None,
            value: int = 0, phase: str = "economy") -> int:
    """File a DIN Proposal Protocol whose text is stored on IPFS; an economic one when ``parameter``
    names a governed parameter (changed to ``value``), an infrastructure one otherwise."""
    content = agent._add(text)
    kind = ECONOMIC if parameter else INFRASTRUCTURE
    key = parameter_key(parameter) if parameter else b"\0" * 32
    receipt = agent._tx(phase, None, proposals.functions.propose(kind, title, content.to_chain(), key,
                                                                 value if parameter else 0),
                        f"file DPP: {title}", cid=content)
    return int(receipt.event("ProposalFiled").args["id"])


def vote(agent: Agent, proposals: Any, credits: Any, *, proposal: int, support: bool, share: float = 1.0,
         phase: str = "economy") -> int:
    """Cast the most votes the agent's credits at the proposal's snapshot buy (``share`` of its
    budget: n votes cost n^2 credits) on one side; returns the votes cast (0: none affordable)."""
    chain = agent.handle.chain
    snapshot = chain.call(proposals.functions.proposal(proposal))[5]
    budget = int(chain.call(credits.functions.creditsAt(agent.address, snapshot)))
    already = int(chain.call(proposals.functions.ballotOf(proposal, agent.address))[0])
    votes = math.isqrt(int(budget * share)) - already
    if votes <= 0:
        return 0
    try:
        agent._tx(phase, None, proposals.functions.castVote(proposal, support, votes),
                  f"vote {'for' if support else 'against'} DPP {proposal}", detail=f"{votes} votes")
    except ContractRevert as e:  # e.g. its identity was revoked since it earned its credits
        log.info("%s could not vote on DPP %d: %s", agent.name, proposal, e)
        return 0
    return votes


def transfer(agent: Agent, *, to: str, amount: float, phase: str = "economy", why: str = "transfer") -> None:
    """Send ``amount`` DIN of the agent's own to ``to``."""
    agent._tx(phase, None, agent.handle.token.functions.transfer(to, int(round(amount * WAD))), why, amount=amount)


# ---------------------------------------------------------------- what anyone may do (permissionless calls)


def start_round(agent: Agent, fund: Any, *, phase: str = "economy") -> int:
    """Open the fund's next quadratic-funding round (anyone may, once the last one is finalized)."""
    receipt = agent._tx(phase, None, fund.functions.startRound(), "start a QF round")
    return int(receipt.event("RoundStarted").args["round"])


def finalize_round(agent: Agent, fund: Any, *, chunk: int = 50, phase: str = "economy") -> None:
    """Finalize the fund's open round once its last block has passed, ``chunk`` projects per
    transaction, until it is done (anyone may)."""
    chain, F = agent.handle.chain, fund.functions
    r = int(chain.call(F.roundCount())) - 1
    while r >= 0 and not chain.call(F.roundInfo(r))[1]:
        agent._tx(phase, None, F.finalizeRound(chunk), f"finalize QF round {r}")


def queue_dpp(agent: Agent, proposals: Any, *, proposal: int, phase: str = "economy") -> None:
    """Queue a passed DPP on the timelock (anyone may)."""
    agent._tx(phase, None, proposals.functions.queue(proposal), f"queue DPP {proposal} on the timelock")


def execute_dpp(agent: Agent, proposals: Any, *, proposal: int, phase: str = "economy") -> None:
    """Execute a queued DPP whose timelock delay has passed (anyone may)."""
    agent._tx(phase, None, proposals.functions.execute(proposal), f"execute DPP {proposal}")


class ProjectMaintainer(Agent):
    """A public-goods project's maintainer: registers its project with the fund and claims what
    the fund owes it after a round."""

    def register_project(self, fund: Any, *, title: str, phase: str = "economy") -> int:
        """Register a project paid to this maintainer, its description stored on IPFS."""
        receipt = self._tx(phase, None, fund.functions.registerProject(self.address,
                                                                      self._add(title.encode()).to_chain()),
                           f"register project {title}")
        return int(receipt.event("ProjectRegistered").args["project"])

    def claim_payout(self, fund: Any, *, phase: str = "economy") -> float:
        """Pull what the fund owes this maintainer (DIN; 0 when nothing)."""
        owed = int(self.handle.chain.call(fund.functions.claimable(self.address)))
        if owed:
            self._tx(phase, None, fund.functions.claim(), "claim project payout", amount=owed / WAD)
        return owed / WAD
