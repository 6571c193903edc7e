"""The public-goods fund's keeper (paper section 6): the tasks' public-goods share and slashed stake
are owed to the network's public-goods fund. Where the fund is an account, this agent is that account
and claims what it is owed; where it is the PublicGoodsFund contract (the economy, issue 18), anyone
may pull a task's dues into its matching pool, and this agent does (``PublicGoodsFund.collect``)."""

from __future__ import annotations

from din_lab.roles.agent import Agent


class PublicGoodsFund(Agent):
    """Claims, or collects into the fund contract, what a task owes the public-goods fund."""

    def claim(self, _: None) -> None:
        fund = self.view.call(self.F.publicGoodsFund())
        if not self.view.call(self.F.claimable(fund)):
            return None
        if fund == self.address:
            self._tx("claim", None, self.F.claim(), "claim")
        else:
            contract = self.handle.chain.at("PublicGoodsFund", fund)
            self._tx("claim", None, contract.functions.collect(self.handle.task.address),
                     "collect the task's dues into the public-goods fund")
        return None
