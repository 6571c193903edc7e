"""The Auditor: anyone who checks (paper 5.1 step 5a: "anyone can verify"). It needs no secret
and holds no stake: it recomputes each round's global model from the accepted results on chain and
compares it with the one the owner published. Participants run the same check before they train
on a model (:func:`verified_global_model`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from eth_utils import keccak

from din_lab.chain.din import SubgroupStatus, parse_held_envelope
from din_lab.cid import V1_RAW, Cid
from din_lab.errors import DinLabError, ProtocolError
from din_lab.roles import codec
from din_lab.roles import final_model as fm
from din_lab.roles import secure_aggregation as sa
from din_lab.roles.agent import Agent
from din_lab.roles.network import PublicView, TaskSpec

HELD = "held until rewards settle: no key released for it yet"


def accepted_results(view: PublicView, r: int, *, spec: TaskSpec, keys: Mapping[Cid, bytes] | None = None
                     ) -> tuple[list[codec.SubgroupResult], dict[int, str]]:
    """Round ``r``'s accepted subgroup results that are usable, and why the others are not. A held
    final-round result opens with the key released on chain, or one of ``keys`` (a backer's own)."""
    results, unusable = [], {}
    for g, (status, cid) in sorted(view.finalized(r).items()):
        if status != SubgroupStatus.ACCEPTED or cid is None:
            continue
        try:
            result = _open(view, r, g, cid, keys)
            reason = HELD if result is None else codec.check_result(result, dimension=spec.dimension, round_=r,
                                                                    subgroup=g)
        except DinLabError as e:
            reason = str(e)
        if reason is None:
            results.append(result)
        else:
            unusable[g] = f"{cid}: {reason}"
    return results, unusable


def accepted_result(view: PublicView, r: int, g: int, *, keys: Mapping[Cid, bytes] | None = None
                    ) -> codec.SubgroupResult | None:
    """Subgroup ``g``'s accepted result in round ``r`` as stored (None: not accepted, not
    decodable, or held with no key at hand)."""
    status = view.finalized(r).get(g)
    if status is None or status[1] is None:
        return None
    try:
        return _open(view, r, g, status[1], keys)
    except DinLabError:
        return None


def held_result(view: PublicView, r: int, g: int) -> tuple[Cid, bytes] | None:
    """``(sealed object's CID, key hash)`` when subgroup ``g``'s accepted result in round ``r`` is
    held (the final round's, sealed until rewards settle), else None."""
    status = view.finalized(r).get(g)
    if status is None or status[1] is None or status[1].kind != V1_RAW:  # an envelope is a raw block
        return None
    return view.decoded(status[1], lambda data: parse_held_envelope(data) or False, kind="held envelope") or None


def held_header(view: PublicView, r: int, g: int) -> fm.HeldHeader | None:
    """The public header of a held result (who is in the sum), or None when it is not held."""
    held = held_result(view, r, g)
    if held is None:
        return None
    try:
        return view.decoded(held[0], fm.held_header, kind="held header")
    except DinLabError:
        return None


def released_key(view: PublicView, g: int) -> bytes | None:
    """The key released on chain for the final round's subgroup ``g`` (None: not yet)."""
    key = bytes(view.call(view.task.functions.finalKeys(g)))
    return key if any(key) else None


def _open(view: PublicView, r: int, g: int, cid: Cid, keys: Mapping[Cid, bytes] | None) -> codec.SubgroupResult | None:
    held = held_result(view, r, g)
    if held is None:
        return view.decoded(cid, codec.decode_result, kind="result")
    sealed, key_hash = held
    key = (keys or {}).get(cid) or released_key(view, g)
    if key is None or keccak(key) != key_hash:
        return None
    return view.decoded(sealed, lambda data: _opened(data, key), kind=f"opened {key.hex()}")


def _opened(sealed: bytes, key: bytes) -> codec.SubgroupResult:
    """A sealed result opened and decoded; its public header must say what the result says (the
    participants decided from the header whether to reveal their updates)."""
    result, header = codec.decode_result(fm.open_sealed(sealed, key)), fm.held_header(sealed)
    if (header.included, header.rejected, header.samples, header.round, header.subgroup) != \
            (result.included, result.rejected, result.samples, result.round, result.subgroup):
        raise ProtocolError("a sealed result's public header does not match the result inside it")
    return result


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
