"""Secure aggregation in a DIN round (paper sections 3.2.3 and 5.1 step 2c): what participants and
evaluators do with :mod:`din_lab.secagg`, and the objects they exchange through IPFS.

The round, for one subgroup (participants at positions ``0..s-1`` of the on-chain subgroup, the
subgroup's evaluator committee of ``k`` members at positions ``0..k-1``):

1. **Advertise** (:func:`advertise`, no transaction). Each participant draws fresh round keys and
   stores an *aux object* on IPFS: its :class:`~din_lab.secagg.AuxMessage` (fresh mask public key,
   seed commitment) and one encrypted share bundle per committee member (sealed to the members'
   long-term keys, which the evaluators publish in the registry). The CID is announced to the
   subgroup off chain. The long-term keys never mask anything.
2. **Mask and submit** (:func:`mask`). Each participant fetches its subgroup's aux objects,
   keeps those that are well formed (the mask graph's vertices ``V``), encodes its FedAvg
   contribution ``[samples * delta, samples]`` in fixed point and masks it. The *masked object*
   names ``V`` (position -> aux CID) and carries a hiding commitment to the encoded update (see
   :mod:`din_lab.secagg.reveal`). The participant records ``(masked CID, aux CID)`` on chain in
   one ``submitUpdate``: that is where its aux CID goes on chain, with no extra transaction. A
   participant that vanishes after advertising is a dropout: its aux object (and so its shares) is
   reachable through the survivors' ``V``.
3. **Unmask** (:func:`read_subgroup`, :func:`committee_reveal`, :func:`unmask`). Every committee
   member reads the same objects by the CIDs on chain: survivors are the submitters whose masked
   object is well formed, agrees on ``V`` with the plurality of valid submitters (ties go to the
   larger peer list) and names its own aux CID; everyone else in ``V`` dropped. Each member opens its bundles and publishes its revealed shares
   (Bonawitz's rule: survivors' self seeds, dropouts' mask keys). From the pooled reveals every
   member reconstructs the same secrets and gets the byte-identical sum, so the committee votes
   by CID as in the plaintext round. A dispute committee uses the same published reveals. A
   member's reveal that breaks Bonawitz's rule, speaks for another member, repeats a share or is
   for another round is refused whole (:func:`decode_share_reveal`); wrong share values are
   corrected while ``t`` consistent ones remain. The reveals' CIDs are recorded on chain
   (``DINTask.revealShares``, one per member, in a share window that closes before the commit
   window opens), so members reading at different times cannot disagree on the pool.
4. **Abort**: when the quorum fails (fewer than 3 survivors, a disconnected SecAgg+ graph, fewer
   than ``t`` holders' shares, a participant whose share bundles do not open for ``t`` members),
   or the unmasked sample total is implausible, every honest member publishes the same *aborted*
   result: the
   committee accepts it by majority, nobody is slashed, no funds move for it, and the subgroup
   adds nothing to the global model; its participants train again in the next round from the
   unchanged model.

Trade-offs the lab shows rather than hides:

- Evaluators cannot screen individual updates for poisoning during a secure round (the plaintext
  round compares every update with the round's median update). Poisoners enter the sums of every
  round, bounded only by the fixed-point clip; the final round's contributions, revealed to the
  committee, are screened and scored, so poisoners earn nothing, but earlier rounds' poisoned
  updates are never seen individually.
- Scoring needs individual contributions: at the reward phase each participant reveals its final
  round's update to its own committee only, sealed to the members' keys, with its commitment salt
  and that round's secrets (its fresh mask key and self-mask seed, fresh per round). The cost: the
  committee learns the revealers' pairwise mask seeds, so a member of the subgroup that does not
  reveal, and whose mask-graph neighbours all do, can be unmasked by its committee (its self-mask
  seed follows from the share reveals): not revealing forgoes the reward, not the committee's
  view of that update. Each member checks the reveal opens the
  commitment in the masked update and *rebuilds the masked update*: the update plus its self mask
  and its pairwise masks (from the revealed mask key and the neighbours' public keys) must be the
  masked vector on chain (:func:`open_contribution`). So a participant who masked one update and
  commits to or reveals another is named and scores 0; the revealed updates that pass add up to
  the agreed sum, which each member checks too.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from din_lab.cid import Cid
from din_lab.errors import DinLabError, ProtocolError, SerializationError
from din_lab.roles.codec import SubgroupResult, Update, decode_update, encode_update
from din_lab.secagg import (
    AuxMessage,
    Committee,
    FixedPoint,
    MaskGraph,
    RoundContext,
    RoundKeys,
    SecAggAbort,
    SecAggError,
    SecretKind,
    Share,
    ShareError,
    check_quorum,
    mask_update,
    open_shares,
    participant_setup,
    recover_secrets,
    reveal_shares,
    seed_commitment,
    shares_for_committee,
    unmask_sum,
    validate_masked,
)
from din_lab.secagg.prg import Rng
from din_lab.secagg.reveal import RevealError, contribution_commitment, open_sealed, seal_for_committee
from din_lab.storage.serialization import metadata_from_bytes, tensors_from_bytes, tensors_to_bytes

log = logging.getLogger(__name__)

AUX_KIND = "din-lab/secagg/aux/v1"
MASKED_KIND = "din-lab/secagg/masked-update/v1"
REVEAL_KIND = "din-lab/secagg/share-reveal/v1"
SEALED_KIND = "din-lab/secagg/sealed-contribution/v1"
SEALED_REVEAL_KIND = "din-lab/secagg/sealed-share-reveal/v1"
_MEMBER = 1 << 32  # a committee member's sender id in the sealed-reveal domain (participants: their positions)

# FedAvg contributions samples * delta reach a few hundred; 2^20 leaves ample room, 2^-24 resolution
# keeps the global model within 1e-7 of the plaintext one, and up to 2^19 - 1 vectors sum exactly.
FIXED_POINT = FixedPoint(clip=float(2**20), frac_bits=24)

Fetch = Callable[[Cid], bytes]


def round_context(*, task: str, round_: int, subgroup: int) -> RoundContext:
    return RoundContext(task=task.lower(), round=round_, subgroup=subgroup)


def graph_seed(round_seed: bytes, subgroup: int) -> bytes:
    """The SecAgg+ ring order of a subgroup, from the round's on-chain seed: no one picks it."""
    return hashlib.sha256(b"din-lab/secagg+/graph" + bytes(round_seed) + subgroup.to_bytes(8, "big")).digest()


def mask_graph(positions: Sequence[int], *, secagg_plus: bool, seed: bytes) -> MaskGraph:
    """The subgroup's mask graph over ``positions`` (public: every member derives the same one)."""
    return _mask_graph(tuple(positions), secagg_plus, bytes(seed))


@functools.lru_cache(maxsize=256)
def _mask_graph(positions: tuple[int, ...], secagg_plus: bool, seed: bytes) -> MaskGraph:
    # a pure function of public data, built once per process rather than once per participant
    return MaskGraph.harary(positions, seed=seed) if secagg_plus else MaskGraph.full(positions)


def contribution_vector(update: Update) -> np.ndarray:
    """What a participant adds to its subgroup's sum: ``[samples * delta, samples]`` (float64)."""
    return np.concatenate([update.samples * update.delta.astype(np.float64), [float(update.samples)]])


def encode_contribution(update: Update) -> np.ndarray:
    return FIXED_POINT.encode(contribution_vector(update))


# ------------------------------------------------------------------ objects on IPFS


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.uint8)


def _read(data: bytes, kind: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    try:
        meta = metadata_from_bytes(data)
        if meta.get("kind") != kind:
            raise ProtocolError(f"expected a {kind} object, got {meta.get('kind')!r}")
        return meta, tensors_from_bytes(data)
    except SerializationError as e:
        raise ProtocolError(f"malformed {kind} object: {e}") from e


@dataclass(frozen=True)
class AuxObject:
    """A participant's round advertisement: aux message and one share bundle per committee member."""

    participant: str
    position: int
    aux: AuxMessage
    bundles: tuple[bytes, ...] = field(repr=False)

    def to_bytes(self) -> bytes:
        tensors = {"aux": _u8(self.aux.to_bytes())}
        tensors.update({f"bundle_{h:03d}": _u8(b) for h, b in enumerate(self.bundles)})
        return tensors_to_bytes(tensors, metadata={"kind": AUX_KIND, "participant": self.participant,
                                                   "position": str(self.position)})

    @classmethod
    def from_bytes(cls, data: bytes) -> AuxObject:
        meta, tensors = _read(data, AUX_KIND)
        try:
            aux = AuxMessage.from_bytes(tensors["aux"].tobytes())
            bundles = tuple(tensors[k].tobytes() for k in sorted(tensors) if k.startswith("bundle_"))
            return cls(participant=meta["participant"], position=int(meta["position"]), aux=aux, bundles=bundles)
        except (KeyError, ValueError) as e:
            raise ProtocolError(f"malformed aux object: {e}") from e


@dataclass(frozen=True)
class MaskedObject:
    """A participant's masked update: ``y_i`` (uint64), the peers it masked against, a commitment."""

    participant: str
    position: int
    round: int
    subgroup: int
    masked: np.ndarray = field(repr=False)
    peers: tuple[tuple[int, str], ...]  # (position, aux CID) = the vertices of the mask graph
    commitment: bytes

    def to_bytes(self) -> bytes:
        return tensors_to_bytes({"masked": self.masked}, metadata={
            "kind": MASKED_KIND, "participant": self.participant, "position": str(self.position),
            "round": str(self.round), "subgroup": str(self.subgroup),
            "peers": ",".join(f"{p}:{c}" for p, c in self.peers), "commitment": self.commitment.hex()})

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedObject:
        meta, tensors = _read(data, MASKED_KIND)
        try:
            peers = tuple((int(p), c) for p, _, c in (x.partition(":") for x in meta["peers"].split(",") if x))
            return cls(participant=meta["participant"], position=int(meta["position"]), round=int(meta["round"]),
                       subgroup=int(meta["subgroup"]), masked=tensors["masked"], peers=peers,
                       commitment=bytes.fromhex(meta["commitment"]))
        except (KeyError, ValueError) as e:
            raise ProtocolError(f"malformed masked update: {e}") from e


def encode_share_reveal(shares: Sequence[Share], *, holder: int, evaluator: str, context: RoundContext) -> bytes:
    tensors = {f"share_{i:05d}": _u8(s.to_bytes()) for i, s in enumerate(shares)}
    return tensors_to_bytes(tensors, metadata={"kind": REVEAL_KIND, "holder": str(holder), "evaluator": evaluator,
                                               "round": str(context.round), "subgroup": str(context.subgroup)})


def seal_share_reveal(data: bytes, *, context: RoundContext, holder: int, long_term_key: X25519PrivateKey,
                      recipients: Sequence[bytes], rng: Rng) -> bytes:
    """A share reveal (:func:`encode_share_reveal` bytes) sealed to ``recipients`` (X25519 keys, in
    order). The final round's reveals travel this way: with the shares anyone could unmask the
    subgroup's sum, which must stay with its committee until rewards settle."""
    sealed = seal_for_committee(data, context=context, participant=_MEMBER + holder, long_term_key=long_term_key,
                                committee=recipients, rng=rng)
    return tensors_to_bytes({"sealed": _u8(sealed)}, metadata={"kind": SEALED_REVEAL_KIND, "holder": str(holder)})


def is_sealed_share_reveal(data: bytes) -> bool:
    try:
        return metadata_from_bytes(data).get("kind") == SEALED_REVEAL_KIND
    except SerializationError:
        return False


def open_share_reveal(data: bytes, *, context: RoundContext, holder: int, recipient: int, key: X25519PrivateKey,
                      sender_public_key: bytes) -> bytes:
    """The share reveal member ``holder`` sealed, opened by recipient number ``recipient`` (a
    :class:`RevealError` if it is not addressed to it, or tampered with)."""
    _, tensors = _read(data, SEALED_REVEAL_KIND)
    if "sealed" not in tensors:
        raise RevealError("a sealed share reveal holds no ciphertext")
    return open_sealed(tensors["sealed"].tobytes(), context=context, participant=_MEMBER + holder, holder=recipient,
                       holder_key=key, participant_public_key=sender_public_key)


def parse_share_reveal(data: bytes) -> tuple[str | None, tuple[Share, ...]]:
    """A share reveal object's holder field and shares, parsed but not yet checked (a reader may
    cache this per CID; :func:`check_share_reveal` checks it for its own view)."""
    meta, tensors = _read(data, REVEAL_KIND)
    return meta.get("holder"), tuple(Share.from_bytes(tensors[k].tobytes()) for k in sorted(tensors))


def decode_share_reveal(data: bytes, *, holder: int, view: SubgroupView) -> list[Share]:
    """A share reveal object's shares, checked (:func:`check_share_reveal`)."""
    return check_share_reveal(parse_share_reveal(data), holder=holder, view=view)


def check_share_reveal(parsed: tuple[str | None, tuple[Share, ...]], *, holder: int,
                       view: SubgroupView) -> list[Share]:
    """The shares committee member ``holder`` revealed for ``view``'s round (as
    :func:`parse_share_reveal` read them), checked against Bonawitz's rule before they are pooled:
    for this round and subgroup, from this holder only (a member speaks only for itself), of
    participants of the mask graph, each survivor's self seed and each dropout's mask key, at most
    one per participant. Anything else is a :class:`~din_lab.secagg.ShareError` and the caller
    drops the holder's whole reveal."""
    meta_holder, shares_parsed = parsed
    if meta_holder != str(holder):
        raise ShareError(f"a share reveal of holder {meta_holder} offered as holder {holder}'s")
    shares = list(shares_parsed)
    graph = set(view.graph.participants) if view.graph is not None else set()
    seen: set[int] = set()
    for s in shares:
        if s.context != view.context:
            raise ShareError(f"committee member {holder} revealed a share for {s.context}, not {view.context}")
        if s.holder != holder:
            raise ShareError(f"committee member {holder} revealed a share as member {s.holder}")
        if s.participant not in graph:
            raise ShareError(f"committee member {holder} revealed a share of {s.participant}, outside the mask graph")
        wanted = SecretKind.SELF_SEED if s.participant in view.masked else SecretKind.MASK_KEY
        if s.kind is not wanted:
            raise ShareError(f"committee member {holder} revealed the {s.kind.name} of participant {s.participant}: "
                             "Bonawitz's rule reveals only survivors' self seeds and dropouts' mask keys")
        if s.participant in seen:
            raise ShareError(f"committee member {holder} revealed two shares of participant {s.participant}")
        seen.add(s.participant)
    return shares


# ------------------------------------------------------------------ participant side


@dataclass(frozen=True)
class RoundSecrets:
    """What a participant keeps to itself for one round: its round keys and commitment salt."""

    keys: RoundKeys = field(repr=False)
    salt: bytes = field(repr=False)


def advertise(*, participant: str, position: int, context: RoundContext, long_term_key: X25519PrivateKey,
              committee: Committee, rng: Rng) -> tuple[RoundKeys, bytes]:
    """Fresh round keys and the aux object (bytes) to store and announce."""
    keys, aux_bytes = participant_setup(context=context, participant=position, rng=rng)
    bundles = shares_for_committee(keys=keys, long_term_key=long_term_key, committee=committee, rng=rng)
    return keys, AuxObject(participant=participant, position=position, aux=AuxMessage.from_bytes(aux_bytes),
                           bundles=tuple(bundles)).to_bytes()


def read_peers(announced: Mapping[int, Cid], *, fetch: Fetch, context: RoundContext,
               members: Sequence[str], parse: Callable[[Cid], AuxObject] | None = None) -> dict[int, tuple[Cid, AuxObject]]:
    """The announced aux objects that are well formed and belong where they are filed: the vertices
    of the subgroup's mask graph as a participant (or an evaluator) sees them. ``parse``: how to
    read one by its CID (default: fetch and decode; a reader may pass a cache of decoded objects)."""
    out = {}
    for position, cid in sorted(announced.items()):
        try:
            obj = parse(cid) if parse is not None else AuxObject.from_bytes(fetch(cid))
            obj.aux.check(context=context, participant=position)
            if obj.position != position or obj.participant.lower() != members[position].lower():
                raise ProtocolError("aux object filed under another participant")
        except DinLabError as e:
            log.info("%s: aux object %s of position %d ignored: %s", context, cid, position, e)
            continue
        out[position] = (cid, obj)
    return out


def mask(update: Update, *, participant: str, position: int, secrets: RoundSecrets,
         peers: Mapping[int, tuple[Cid, AuxObject]], secagg_plus: bool, seed: bytes,
         committed: Update | None = None) -> bytes:
    """The masked object (bytes) of ``update``, masked against the graph over ``peers``, with a
    commitment to it (``committed``: a deviating participant's commitment to another update)."""
    keys = secrets.keys
    graph = mask_graph(sorted(peers), secagg_plus=secagg_plus, seed=seed)
    encoded = encode_contribution(update)
    masked = mask_update(encoded, keys=keys, peers={p: obj.aux for p, (_, obj) in peers.items()}, graph=graph)
    commitment = contribution_commitment(context=keys.context, participant=position,
                                         encoded=encode_contribution(committed or update).tobytes(), salt=secrets.salt)
    return MaskedObject(participant=participant, position=position, round=keys.context.round,
                        subgroup=keys.context.subgroup, masked=masked,
                        peers=tuple((p, str(cid)) for p, (cid, _) in sorted(peers.items())),
                        commitment=commitment).to_bytes()


def seal_contribution(update: Update, *, position: int, secrets: RoundSecrets, long_term_key: X25519PrivateKey,
                      committee: Sequence[bytes], rng: Rng) -> bytes:
    """The participant's update, commitment salt and round secrets (mask key, self-mask seed),
    sealed to its committee's keys."""
    payload = tensors_to_bytes({"salt": _u8(secrets.salt), "update": _u8(encode_update(update)),
                                "mask_key": _u8(secrets.keys.mask_private_key),
                                "self_seed": _u8(secrets.keys.self_seed)},
                               metadata={"kind": "din-lab/secagg/contribution/v2"})
    sealed = seal_for_committee(payload, context=secrets.keys.context, participant=position,
                                long_term_key=long_term_key, committee=committee, rng=rng)
    return tensors_to_bytes({"sealed": _u8(sealed)}, metadata={"kind": SEALED_KIND})


def open_contribution(data: bytes, *, context: RoundContext, position: int, participant: str, holder: int,
                      holder_key: X25519PrivateKey, participant_public_key: bytes, commitment: bytes,
                      view: SubgroupView | None = None) -> Update:
    """A committee member opens a sealed contribution and checks it against the commitment the
    participant published in its masked update; with the subgroup's ``view``, also that the update
    and the revealed round secrets rebuild the participant's masked vector on chain.
    :class:`RevealError` or :class:`ProtocolError`."""
    _, tensors = _read(data, SEALED_KIND)
    if "sealed" not in tensors:
        raise RevealError(f"the sealed contribution of {participant} holds no ciphertext")
    payload = open_sealed(tensors["sealed"].tobytes(), context=context, participant=position, holder=holder,
                          holder_key=holder_key, participant_public_key=participant_public_key)
    _, inner = _read(payload, "din-lab/secagg/contribution/v2")
    if not {"update", "salt", "mask_key", "self_seed"} <= set(inner):
        raise RevealError(f"the revealed contribution of {participant} lacks its update, salt or round secrets")
    update = decode_update(inner["update"].tobytes())
    if update.round != context.round or update.participant.lower() != participant.lower():
        raise RevealError(f"the revealed update of {participant} is for another round or participant")
    encoded = encode_contribution(update)
    if contribution_commitment(context=context, participant=position, encoded=encoded.tobytes(),
                               salt=inner["salt"].tobytes()) != commitment:
        raise RevealError(f"the revealed update of {participant} does not open the commitment in its masked update")
    if view is not None:
        _check_rebuilds(encoded, view=view, position=position, participant=participant,
                        mask_key=inner["mask_key"].tobytes(), self_seed=inner["self_seed"].tobytes())
    return update


def _check_rebuilds(encoded: np.ndarray, *, view: SubgroupView, position: int, participant: str, mask_key: bytes,
                    self_seed: bytes) -> None:
    """The revealed round secrets are the ones the participant announced (its aux object's mask
    public key and seed commitment), and with them the revealed update masks to exactly the vector
    it submitted: otherwise it masked something else than it reveals (:class:`RevealError`)."""
    if view.graph is None or position not in view.masked or position not in view.aux:
        raise RevealError(f"{participant} has no masked update in the subgroup's sum")
    aux = view.aux[position].aux
    try:
        public = X25519PrivateKey.from_private_bytes(mask_key).public_key().public_bytes_raw()
    except ValueError as e:
        raise RevealError(f"the revealed mask key of {participant} is malformed") from e
    if public != aux.mask_public_key or seed_commitment(context=view.context, participant=position,
                                                        seed=self_seed) != aux.seed_commitment:
        raise RevealError(f"the revealed round secrets of {participant} are not the ones it announced")
    keys = RoundKeys(context=view.context, participant=position, mask_private_key=mask_key, self_seed=self_seed,
                     aux=aux)
    rebuilt = mask_update(encoded, keys=keys, peers={p: obj.aux for p, obj in view.aux.items()}, graph=view.graph)
    if not np.array_equal(rebuilt, view.masked[position]):
        raise RevealError(f"the revealed update of {participant} does not rebuild its masked update: it masked "
                          "another update than it reveals")


# ------------------------------------------------------------------ evaluator side


@dataclass(frozen=True)
class SubgroupView:
    """One subgroup's secure-aggregation round as every committee member reads it from the CIDs on
    chain. ``abort`` is the reason the round cannot be unmasked (``None`` if it can)."""

    context: RoundContext
    members: tuple[str, ...]
    graph: MaskGraph | None
    aux: Mapping[int, AuxObject] = field(repr=False)
    masked: Mapping[int, np.ndarray] = field(repr=False)
    commitments: Mapping[int, bytes] = field(repr=False)
    rejected: Mapping[int, str]
    dimension: int
    abort: str | None = None

    @property
    def survivors(self) -> tuple[int, ...]:
        return tuple(sorted(self.masked))

    @property
    def dropped(self) -> tuple[int, ...]:
        return tuple(p for p in (self.graph.participants if self.graph else ()) if p not in self.masked)


def _check_peers(peers: tuple[tuple[int, str], ...], *, members: int) -> None:
    """A masked update's peer list: positions of the subgroup, strictly increasing, each with a CID."""
    problem = _peer_list_problem(peers, members)
    if problem is not None:
        raise ProtocolError(problem)


@functools.lru_cache(maxsize=1024)
def _peer_list_problem(peers: tuple[tuple[int, str], ...], members: int) -> str | None:
    """Why a peer list is malformed, or None (a pure function of the list: the honest members of a
    subgroup all send the same list, so it is checked once, not once per member and reader)."""
    positions = [p for p, _ in peers]
    if not peers or positions != sorted(set(positions)) or not all(0 <= p < members for p in positions):
        return "its peer list is not a strictly increasing list of subgroup positions"
    try:
        for _, c in peers:
            Cid.parse(c)
    except DinLabError as e:
        return str(e)
    return None


def read_subgroup(*, context: RoundContext, members: Sequence[str], submitted: Mapping[str, tuple[Cid, Cid | None]],
                  fetch: Fetch, dimension: int, secagg_plus: bool, seed: bytes,
                  parse_masked: Callable[[Cid], MaskedObject] | None = None,
                  parse_aux: Callable[[Cid], AuxObject] | None = None) -> SubgroupView:
    """What a committee member reads before revealing anything. ``submitted``: each member's
    ``(masked CID, aux CID)`` from ``UpdateSubmitted`` events; ``dimension``: model parameters + 1
    (the sample count travels in the last coordinate). A masked object that does not decode, is for
    another round, subgroup or participant, has the wrong dtype or length, or whose bytes do not
    hash to its CID (the store refuses them) makes its sender a dropout, never a survivor."""
    rejected: dict[int, str] = {}
    valid: dict[int, MaskedObject] = {}
    everyone = MaskGraph.full(range(len(members)))  # for the shape checks; the real graph comes later
    for position, member in enumerate(members):
        if member not in submitted:
            continue
        cid, aux_cid = submitted[member]
        try:
            obj = parse_masked(cid) if parse_masked is not None else MaskedObject.from_bytes(fetch(cid))
            if (obj.round, obj.subgroup, obj.position) != (context.round, context.subgroup, position) \
                    or obj.participant.lower() != member.lower():
                raise ProtocolError("masked update for another round, subgroup or participant")
            validate_masked({position: obj.masked}, dimension=dimension,
                            graph=everyone, dtype=FIXED_POINT.dtype)
            _check_peers(obj.peers, members=len(members))
            if aux_cid is None or (position, str(aux_cid)) not in obj.peers:
                raise ProtocolError("the masked update does not name its own aux CID among its peers")
        except DinLabError as e:
            rejected[position] = f"masked update rejected: {e}"
            continue
        valid[position] = obj
    if not valid:
        return SubgroupView(context=context, members=tuple(members), graph=None, aux={}, masked={}, commitments={},
                            rejected=rejected, dimension=dimension, abort="no well-formed masked update")
    # the graph's vertices: the peer set the majority of valid submitters masked against
    votes = Counter(obj.peers for obj in valid.values())
    peers, _ = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
    for position in [p for p, obj in valid.items() if obj.peers != peers]:
        rejected[position] = "masked against another set of peers than the subgroup"
        del valid[position]
    aux = read_peers({p: Cid.parse(c) for p, c in peers}, fetch=fetch, context=context, members=members,
                     parse=parse_aux)
    if len(aux) != len(peers):
        return SubgroupView(context=context, members=tuple(members), graph=None, aux={}, masked={}, commitments={},
                            rejected=rejected, dimension=dimension,
                            abort="the survivors masked against an aux object that is not well formed")
    graph = mask_graph(sorted(aux), secagg_plus=secagg_plus, seed=seed)
    masked = {p: obj.masked for p, obj in valid.items()}
    abort = None
    try:
        check_quorum(graph=graph, survivors=masked.keys())
    except SecAggAbort as e:
        abort = str(e)
    return SubgroupView(context=context, members=tuple(members), graph=graph, aux={p: obj for p, (_, obj) in aux.items()},
                        masked=masked, commitments={p: obj.commitment for p, obj in valid.items()},
                        rejected=rejected, dimension=dimension, abort=abort)


def committee_reveal(view: SubgroupView, *, holder: int, holder_key: X25519PrivateKey,
                     participant_keys: Mapping[str, bytes]) -> tuple[list[Share], dict[int, str]]:
    """Member ``holder`` opens the bundles addressed to it and reveals by Bonawitz's rule. Returns the
    shares and, per participant whose bundle did not open, why (those get no share from it)."""
    if view.abort is not None or view.graph is None:
        return [], {}
    opened, problems = [], {}
    for position, obj in sorted(view.aux.items()):
        try:
            if holder >= len(obj.bundles):
                raise ProtocolError(f"no share bundle for committee member {holder}")
            opened.append(open_shares(obj.bundles[holder], context=view.context, aux=obj.aux, holder=holder,
                                      holder_key=holder_key,
                                      participant_public_key=participant_keys[view.members[position]]))
        except (DinLabError, KeyError) as e:
            problems[position] = str(e)
    return reveal_shares(opened, graph=view.graph, survivors=view.masked.keys()), problems


def unmask(view: SubgroupView, *, shares: Sequence[Share], committee: Committee, round_: int,
           subgroup: int, max_samples: int) -> SubgroupResult:
    """The subgroup's result from the pooled reveals: the decoded sum with its exact encoding, or
    the aborted result every honest member publishes alike. The sample total travels masked like
    the rest, so it is checked once unmasked: an integer of at least 1 and at most ``max_samples``
    per survivor, or the subgroup aborts (someone inflated or negated its FedAvg weight)."""
    rejected = tuple(view.members[p] for p in sorted(set(range(len(view.members))) - set(view.masked)))
    if view.abort is None and view.graph is not None:
        try:
            recovered = recover_secrets(shares, context=view.context, committee=committee,
                                        aux={p: o.aux for p, o in view.aux.items()}, graph=view.graph,
                                        survivors=view.masked.keys())
            total = unmask_sum(view.masked, context=view.context, aux={p: o.aux for p, o in view.aux.items()},
                               graph=view.graph, recovered=recovered, dimension=view.dimension)
        except SecAggError as e:
            return aborted_result(str(e), members=view.members, round_=round_, subgroup=subgroup,
                                  dimension=view.dimension - 1)
        decoded = FIXED_POINT.decode(total, count=len(view.masked))
        samples = int(round(decoded[-1]))
        if samples != decoded[-1] or not len(view.masked) <= samples <= len(view.masked) * max_samples:
            return aborted_result(f"the unmasked sample total {decoded[-1]:g} is implausible for {len(view.masked)} "
                                  f"updates (1..{max_samples} each): a masked sample count was forged",
                                  members=view.members, round_=round_, subgroup=subgroup,
                                  dimension=view.dimension - 1)
        return SubgroupResult(weighted_sum=decoded[:-1].astype(np.float32), samples=samples, round=round_,
                              subgroup=subgroup, included=included(view),
                              rejected=rejected, encoded_sum=total)
    return aborted_result(view.abort or "no mask graph", members=view.members, round_=round_, subgroup=subgroup,
                          dimension=view.dimension - 1)


def aborted_result(reason: str, *, members: Sequence[str], round_: int, subgroup: int,
                   dimension: int) -> SubgroupResult:
    return SubgroupResult(weighted_sum=np.zeros(dimension, dtype=np.float32), samples=0, round=round_,
                          subgroup=subgroup, included=(), rejected=tuple(members), aborted=reason)


def included(view: SubgroupView) -> tuple[str, ...]:
    """Who an honest unmasked result of ``view`` includes: the survivors, in position order."""
    return tuple(view.members[p] for p in view.survivors)


def revealed_sum_matches(updates: Sequence[Update], encoded_sum: np.ndarray) -> bool:
    """Whether the revealed updates of a subgroup add up exactly to the sum its committee agreed on."""
    total = np.zeros(encoded_sum.shape, dtype=FIXED_POINT.dtype)
    for u in updates:
        encoded = encode_contribution(u)
        if encoded.shape != total.shape:
            return False
        np.add(total, encoded, out=total)
    return bool(np.array_equal(total, encoded_sum))
