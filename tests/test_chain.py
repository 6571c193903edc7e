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
