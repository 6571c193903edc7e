"""The Chain object: backends, time travel, event index, errors."""

from __future__ import annotations

import pytest

from din_lab.chain import connect
from din_lab.chain.din import WAD
from din_lab.errors import ChainError, ConfigError


def test_snapshot_revert_and_mine(net):
    chain = net.chain
    T = net.din.token.functions
    start = chain.block_number
    n_events = len(chain.events)
    snap = chain.snapshot()
    chain.transact(T.transfer(net.stranger.address, 5 * WAD), sender=net.owner)
    assert net.balance(net.stranger.address) == 5 * WAD
    assert chain.mine(3) == start + 4
    assert chain.mine_to(start + 10) == start + 10
    assert chain.mine_to(start) == start + 10  # never backwards
    assert chain.events.where("Transfer", to=net.stranger.address)
    chain.revert(snap)
    assert chain.block_number == start
    assert net.balance(net.stranger.address) == 0
    assert len(chain.events) == n_events
    # nonces resync after a revert
    chain.transact(T.transfer(net.stranger.address, 1), sender=net.owner)
    with pytest.raises(ConfigError):
        chain.mine(-1)
    with pytest.raises(ChainError):
        chain.revert("no such snapshot")


def test_events_are_decoded_with_contract_names(net):
    receipt = net.tx(net.din.token.functions.transfer(net.stranger.address, 1), net.owner)
    (ev,) = receipt.events
    assert ev.event == "Transfer" and ev.contract == "DINToken" and ev.args["value"] == 1
    assert ev.args["to"] == net.stranger.address and ev.block == receipt.block
    task = net.make_task()
    assert net.chain.events.where("TaskInitialized")[-1].contract == "DINTask"
    assert net.chain.events.names[task.address] == "DINTask"


def test_embedded_runs_reproduce_bit_for_bit():
    from tests.helpers import Net, deploy_network

    seeds = []
    for _ in range(2):
        chain = connect("embedded", accounts=40)
        n = Net(chain=chain, din=deploy_network(chain), backend="embedded")
        task = n.started_task()
        seeds.append((task.address, n.round_info(task, 0)[0], chain.w3.eth.get_block("latest")["hash"]))
    assert seeds[0] == seeds[1]


def test_a_reverted_transaction_leaves_no_trace_on_the_embedded_chain():
    """The embedded chain mines a transaction at once and, when it reverts, returns to the block
    before it: the same chain with and without a reverted transaction in between reaches the same
    head, hash for hash, and the revert still raises its named error."""
    from din_lab.errors import ContractRevert
    from tests.helpers import Net, deploy_network

    heads = []
    for with_revert in (False, True):
        chain = connect("embedded", accounts=40)
        n = Net(chain=chain, din=deploy_network(chain), backend="embedded")
        T = n.din.token.functions
        n.tx(T.transfer(n.stranger.address, 5), n.owner)
        if with_revert:
            before = (chain.block_number, chain.w3.eth.get_block("latest")["hash"], chain.nonce(n.stranger.address))
            with pytest.raises(ContractRevert, match="ERC20InsufficientBalance"):
                chain.transact(T.transfer(n.owner.address, 6), sender=n.stranger)
            assert (chain.block_number, chain.w3.eth.get_block("latest")["hash"],
                    chain.nonce(n.stranger.address)) == before
        n.tx(T.transfer(n.owner.address, 2), n.stranger)
        heads.append((chain.block_number, chain.w3.eth.get_block("latest")["hash"], chain.timestamp))
    assert heads[0] == heads[1]


def test_bad_backends():
    with pytest.raises(ConfigError):
        connect("ganache")
    with pytest.raises(ConfigError):
        connect("embedded", accounts=0)
    with pytest.raises(ChainError, match="no JSON-RPC node"):
        connect("http://127.0.0.1:9")


def test_environment_variable_picks_the_backend(monkeypatch, anvil_url):
    monkeypatch.setenv("DIN_LAB_CHAIN", anvil_url)
    chain = connect(accounts=2)
    assert chain.backend == anvil_url and chain.chain_id == 31337
    assert chain.eth_balance(chain.accounts[1].address) > 0
    monkeypatch.delenv("DIN_LAB_CHAIN")
    assert connect(accounts=1).backend == "embedded"


# ------------------------------------------------------------------ the shuffle, batched


@pytest.fixture(scope="module")
def shuffle_reference():
    chain = connect("embedded", accounts=1, seed=0)
    return chain, chain.deploy("ShuffleReference", sender=chain.accounts[0])


def test_a_subgroups_members_in_one_pass_match_the_python_assignment(shuffle_reference):
    """``Shuffle.inverseRange`` (one pivot hash per round, one bit source per round and 256
    positions) is the same permutation as ``inverse`` one index at a time and as
    din_lab.chain.assignment, across counts that span several 256-position blocks."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from din_lab.chain import assignment

    chain, ref = shuffle_reference
    F = ref.functions

    @settings(max_examples=25, deadline=None)
    @given(count=st.integers(1, 1100), seed=st.binary(min_size=32, max_size=32), data=st.data())
    def check(count, seed, data):
        start = data.draw(st.integers(0, count - 1))
        end = data.draw(st.integers(start, min(count, start + 120)))
        got = chain.call(F.inverseRange(start, end, count, seed))
        assert got == [assignment.inverse(q, count, seed) for q in range(start, end)]
        if end > start:
            assert chain.call(F.inverse(start, count, seed)) == got[0]
            assert chain.call(F.forward(got[0], count, seed)) == start

    check()
