"""Chain.call's lean codec (din_lab.chain.codec) against web3's own ContractFunction.call: the
same values, the same shapes, the same named reverts, on both backends."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from hypothesis import given, settings
from hypothesis import strategies as st
from web3._utils.abi import map_abi_data
from web3._utils.normalizers import BASE_RETURN_NORMALIZERS

from din_lab.chain import reverts
from din_lab.chain.codec import CodecCache, FunctionCodec

ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
SCALARS = {
    "uint256": st.integers(0, 2**256 - 1),
    "int8": st.integers(-128, 127),
    "bool": st.booleans(),
    "bytes32": st.binary(min_size=32, max_size=32),
    "bytes": st.binary(max_size=70),
    "string": st.text(max_size=20),
    "address": ADDRESSES,
}


@st.composite
def typed_values(draw, depth: int = 0):
    """(ABI type, a value of that type), nesting arrays and tuples up to two levels."""
    kind = draw(st.sampled_from(["scalar"] * 3 + (["array", "fixed", "tuple"] if depth < 2 else [])))
    if kind == "scalar":
        t = draw(st.sampled_from(sorted(SCALARS)))
        return t, draw(SCALARS[t])
    if kind == "tuple":
        parts = draw(st.lists(typed_values(depth + 1), min_size=1, max_size=3))
        return "(" + ",".join(t for t, _ in parts) + ")", tuple(v for _, v in parts)
    t, _ = draw(typed_values(depth + 1))
    n = draw(st.integers(0, 3))
    # draw n values of the same type t
    values = [draw(_value_of(t)) for _ in range(n if kind == "array" else max(n, 1))]
    return (f"{t}[]" if kind == "array" else f"{t}[{len(values)}]"), values


def _value_of(t: str):
    if t in SCALARS:
        return SCALARS[t]
    if t.endswith("]"):
        inner, size = t[: t.rindex("[")], t[t.rindex("[") + 1 : -1]
        n = st.integers(0, 3) if size == "" else st.just(int(size))
        return n.flatmap(lambda k: st.lists(_value_of(inner), min_size=k, max_size=k))
    parts, level, start = [], 0, 1  # a tuple: split its components at top level
    for i, ch in enumerate(t):
        if ch in "([":
            level += 1
        elif ch in ")]":
            level -= 1
        if (ch == "," and level == 1) or (ch == ")" and level == 0):
            parts.append(t[start:i])
            start = i + 1
    return st.tuples(*(_value_of(p) for p in parts))


@settings(max_examples=300, deadline=None)
@given(st.lists(typed_values(), min_size=1, max_size=4))
def test_decoding_matches_web3_for_any_output_types(outputs):
    """A function returning ``outputs``: the codec decodes what web3 decodes, shape for shape."""
    types = [t for t, _ in outputs]
    data = encode(types, [v for _, v in outputs])
    abi = {"type": "function", "name": "f", "inputs": [], "outputs": [_abi_param(t) for t in types],
           "stateMutability": "view"}
    codec = FunctionCodec.of(abi)
    assert list(codec.output_types) == types
    expected = map_abi_data(BASE_RETURN_NORMALIZERS, types, decode(types, data))
    expected = expected[0] if len(expected) == 1 else expected
    assert codec.decode(data) == expected
    assert _shape(codec.decode(data)) == _shape(expected)


def _abi_param(t: str) -> dict:
    """The ABI JSON of a parameter of type ``t`` (tuples spelled as components)."""
    if t.endswith("]"):
        inner = _abi_param(t[: t.rindex("[")])
        return {**inner, "type": inner["type"] + t[t.rindex("[") :]}
    if t.startswith("("):
        parts, level, start = [], 0, 1
        for i, ch in enumerate(t):
            level += ch in "([" and 1 or ch in ")]" and -1 or 0
            if (ch == "," and level == 1) or (ch == ")" and level == 0):
                parts.append(t[start:i])
                start = i + 1
        return {"name": "", "type": "tuple", "components": [_abi_param(p) for p in parts]}
    return {"name": "", "type": t}


def _shape(v):
    if isinstance(v, (list, tuple)):
        return type(v).__name__, [_shape(x) for x in v]
    return type(v).__name__


def test_overloaded_names_are_left_to_web3():
    abi = [{"type": "function", "name": "g", "inputs": [], "outputs": [], "stateMutability": "view"},
           {"type": "function", "name": "g", "inputs": [{"name": "", "type": "uint256"}], "outputs": [],
            "stateMutability": "view"},
           {"type": "function", "name": "h", "inputs": [], "outputs": [{"name": "", "type": "bool"}],
            "stateMutability": "view"}]
    cache = CodecCache()
    assert cache.lookup(abi, "g") is None
    assert cache.lookup(abi, "h").selector == bytes.fromhex("b8c9d365")  # keccak("h()")[:4]
    assert cache.lookup(abi, "missing") is None


def test_every_task_view_reads_as_web3_reads_it(net):
    """Every argument-free view of a task in scoring (and a few with arguments) through the codec
    and through web3: equal, on both backends."""
    task = net.started_task()
    net.train_to_scoring(task)
    F = task.functions
    calls = [getattr(F, item["name"])() for item in task.abi
             if item.get("type") == "function" and item["stateMutability"] in ("view", "pure") and not item["inputs"]]
    assert len(calls) > 30
    participant = net.participants[0].address
    calls += [F.roundInfo(0), F.subgroupInfo(0, 0), F.committee(0, 0, 0), F.contributionsOf(participant),
              F.claimable(participant), F.bondOf(net.staked[0].address), net.din.token.functions.balanceOf(participant)]
    for fn in calls:
        assert net.chain.call(fn) == fn.call({"from": net.chain.accounts[0].address}), fn.fn_name


def test_a_view_that_reverts_raises_its_named_error(net):
    task = net.make_task()
    stranger = net.strangers[0].address
    with pytest.raises(reverts.NotRegistered) as raised:
        net.chain.call(task.functions.participantIndex(stranger))
    assert raised.value.args_by_name == {"account": stranger}
    with pytest.raises(reverts.UnknownSubgroup):
        net.chain.call(task.functions.subgroupMembers(0, 0))


def test_call_many_reads_in_one_round_trip_and_keeps_failures_in_place(net):
    """Chain.call_many: the same results as one call at a time (one JSON-RPC batch on anvil), a
    reverted call as CallFailed(its named revert) at its own position, the others unaffected."""
    from din_lab.chain import CallFailed

    task = net.started_task()
    F = task.functions
    stranger = net.strangers[0].address
    fns = [F.phase(), F.participantIndex(stranger), F.evaluators(), F.roundInfo(0),
           net.din.token.functions.balanceOf(task.address), F.subgroupMembers(0, 99)]
    results = net.chain.call_many(fns)
    assert len(results) == len(fns)
    for i in (0, 2, 3, 4):
        assert results[i] == net.chain.call(fns[i])
    assert isinstance(results[1], CallFailed) and isinstance(results[1].error, reverts.NotRegistered)
    assert isinstance(results[5], CallFailed) and isinstance(results[5].error, reverts.UnknownSubgroup)
    assert net.chain.call_many([]) == []


def test_json_rpc_client_refuses_what_is_not_a_node():
    from din_lab.chain.rpc import JsonRpcClient
    from din_lab.errors import ChainError

    with pytest.raises(ChainError, match="not an HTTP JSON-RPC URL"):
        JsonRpcClient("ws://127.0.0.1:8545")
    client = JsonRpcClient("http://127.0.0.1:9", timeout=2)  # the discard port: nobody answers
    with pytest.raises(ChainError, match="no JSON-RPC answer"):
        client.request("eth_blockNumber", [])
