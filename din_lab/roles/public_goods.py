"""The public-goods fund: the address that receives the tasks' public-goods share and slashed stake
(paper section 6). Here it only claims what it is owed; what it funds is issue 18's."""

from __future__ import annotations

from din_lab.roles.agent import Agent


class PublicGoodsFund(Agent):
    """The address that receives the public-goods share and slashed stake; it claims what it is owed."""

    def claim(self, _: None) -> None:
        if self.view.call(self.F.claimable(self.address)):
            self._tx("claim", None, self.F.claim(), "claim")
        return None
