"""The Auditor: anyone who checks (paper 5.1 step 5a: "anyone can verify"). It needs no secret
and holds no stake: it recomputes each round's global model from the accepted results on chain and
compares it with the one the owner published. Participants run the same check before they train
on a model (:func:`verified_global_model`).
"""

from __future__ import annotations

import numpy as np

from din_lab.chain.din import SubgroupStatus
from din_lab.cid import Cid
from din_lab.errors import DinLabError, ProtocolError
from din_lab.roles import codec
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agent import Agent
from din_lab.roles.network import PublicView, TaskSpec


def accepted_results(view: PublicView, r: int, *, spec: TaskSpec) -> tuple[list[codec.SubgroupResult],
                                                                               dict[int, str]]:
    """Round ``r``'s accepted subgroup results that are usable, and why the others are not."""
    results, unusable = [], {}
    for g, (status, cid) in sorted(view.finalized(r).items()):
        if status != SubgroupStatus.ACCEPTED or cid is None:
            continue
        try:
            result = view.decoded(cid, codec.decode_result, kind="result")
            reason = codec.check_result(result, dimension=spec.dimension, round_=r, subgroup=g)
        except DinLabError as e:
            reason = str(e)
        if reason is None:
            results.append(result)
        else:
            unusable[g] = f"{cid}: {reason}"
    return results, unusable


def accepted_result(view: PublicView, r: int, g: int) -> codec.SubgroupResult | None:
    """Subgroup ``g``'s accepted result in round ``r`` as stored (None: not accepted, or not decodable)."""
    status = view.finalized(r).get(g)
    if status is None or status[1] is None:
        return None
    try:
        return view.decoded(status[1], codec.decode_result, kind="result")
    except DinLabError:
        return None


def model_cid(view: PublicView, vector: np.ndarray, *, r: int, spec: TaskSpec) -> Cid:
    """The CID of round ``r``'s global model object (what the owner must publish)."""
    return Cid.coerce(view.store.add(codec.encode_model(vector, round_=r, model=spec.model), cid_version=1,
                                     only_hash=True))


def verified_global_model(view: PublicView, r: int, *, previous: np.ndarray, spec: TaskSpec) -> tuple[np.ndarray, Cid]:
    """Round ``r``'s global model as anyone recomputes it from ``previous`` and the accepted results'
    CIDs in ``SubgroupFinalized`` events (fetched, checked, averaged by sample weight), and its CID."""
    results, _ = accepted_results(view, r, spec=spec)
    vector = codec.next_global_model(previous, results)
    return vector, model_cid(view, vector, r=r, spec=spec)


def read_subgroup(view: PublicView, r: int, g: int, *, spec: TaskSpec) -> sa.SubgroupView:
    """Subgroup ``g`` of round ``r`` under secure aggregation as anyone reads it from the CIDs on
    chain (the masked updates and aux objects of its members, checked)."""
    submitted = view.submitted(r)
    members = view.members(r, g, subgroup_size=spec.subgroup_size)
    return sa.read_subgroup(context=sa.round_context(task=view.task.address, round_=r, subgroup=g), members=members,
                            submitted={m: submitted[m] for m in members if m in submitted}, fetch=view.cat,
                            dimension=spec.dimension + 1, secagg_plus=spec.secagg_plus,
                            seed=sa.graph_seed(view.seed(r), g), parse_masked=lambda c: masked_object(view, c),
                            parse_aux=lambda c: aux_object(view, c))


def masked_object(view: PublicView, cid: Cid) -> sa.MaskedObject:
    """A masked update by its CID, decoded once for every reader in this process (read-only)."""
    return view.decoded(cid, sa.MaskedObject.from_bytes, kind="masked update")


def aux_object(view: PublicView, cid: Cid) -> sa.AuxObject:
    """An aux object (round keys and sealed share bundles) by its CID, decoded once (read-only)."""
    return view.decoded(cid, sa.AuxObject.from_bytes, kind="aux object")


class Auditor(Agent):
    """Checks what anyone can check; sends nothing."""

    def subgroup_view(self, r: int, g: int) -> sa.SubgroupView:
        return read_subgroup(self.view, r, g, spec=self.spec)

    def verify_round(self, r: int) -> bool:
        """Recompute round ``r``'s global model from the published model of round ``r - 1`` (or the
        genesis model) and the accepted results, and compare its CID with the one the owner published."""
        published = self.view.global_model_cid(r)
        if published is None:
            raise ProtocolError(f"no global model has been published for round {r}")
        previous = self.view.decoded(self.view.global_model_cid(r - 1), codec.decode_model, kind="model")
        _, expected = verified_global_model(self.view, r, previous=previous, spec=self.spec)
        if expected != published:
            self._note("publish", r, "published global model does not match", cid=str(published),
                       detail=f"the accepted results give {expected}")
            return False
        return True
