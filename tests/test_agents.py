"""Role agents on their own: built with nothing but a handle to the network, driven phase by
phase with no Lab, and never reading one another's private state."""

from __future__ import annotations

import inspect
import sys

import pytest

from din_lab.chain import connect
from din_lab.chain.din import Phase, SubgroupStatus
from din_lab.config import ExperimentConfig
from din_lab.protocol.lab import ROUND_PHASES, Lab, take_turns
from din_lab.protocol.network import agents_of, build
from din_lab.protocol.runtime import LocalRuntime
from din_lab.roles import codec
from din_lab.roles.agent import Agent
from din_lab.roles.auditor import verified_global_model
from din_lab.roles.network import PublicView
from din_lab.storage import open_store

SMALL = dict(participants=8, subgroup_size=4, evaluators=4, evaluators_per_subgroup=3, rounds=2, seed=3)


def test_no_role_module_imports_the_protocol_layer():
    """(import-linter's layers contract enforces it in CI too, for every import path)"""
    import ast
    import pathlib

    import din_lab.roles

    for path in pathlib.Path(din_lab.roles.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module \
                else []
            assert not [n for n in names if n.startswith(("din_lab.protocol", "din_lab.experiment", "din_lab.widgets",
                                                          "din_lab.cli"))], path.name


@pytest.mark.parametrize("secagg", [False, True])
def test_agents_with_only_their_handles_run_a_round_from_chain_state(secagg):
    """No Lab: the network is set up, then the bare agents are given turns phase by phase (the
    clock's ``take_turns``, which only says which phase it is and mines when every agent waits). The round closes on chain with every
    subgroup accepted, and a fresh reader of the chain recomputes the published global model."""
    config = ExperimentConfig(**SMALL, secagg=secagg, secagg_graph="secagg+")
    chain = connect("embedded", accounts=3 + config.participants + config.evaluators, seed=config.seed)
    net = build(config, chain=chain, store=open_store("memory"), seed=config.seed)
    runtime = LocalRuntime(agents_of(net), board=net.board, spec=net.spec)
    for phase in ROUND_PHASES:
        if phase == "train":
            runtime.train(0)
            continue
        # the clock's turn-taking, given bare agents: nothing of a Lab
        take_turns(runtime, phase=phase, round_=0, chain=chain, collect=lambda events: None)
    view = PublicView(chain=chain, store=net.view.store, task=net.task, registry=net.din.registry)
    finalized = view.finalized(0)
    assert len(finalized) == view.groups(0) and all(s == SubgroupStatus.ACCEPTED for s, _ in finalized.values())
    genesis = view.decoded(view.global_model_cid(-1), codec.decode_model, kind="model")
    _, expected = verified_global_model(view, 0, previous=genesis, spec=net.spec)
    assert view.global_model_cid(0) == expected
    assert chain.call(net.task.functions.phase()) == Phase.TRAINING


class _Snooping(Exception):
    pass


def _guard_private_reads(monkeypatch):
    """Make any agent's code that reads another agent's private attribute raise: every attribute
    read of an Agent whose name starts with '_' checks who is asking (the caller's ``self``)."""
    original = Agent.__getattribute__

    def guarded(self, name):
        if name.startswith("_") and not name.startswith("__"):
            frame = sys._getframe(1)
            caller = frame.f_locals.get("self")
            if isinstance(caller, Agent) and caller is not self:
                raise _Snooping(f"{original(caller, 'name')} read {original(self, 'name')}'s {name} "
                                f"in {inspect.getframeinfo(frame).function}")
        return original(self, name)

    monkeypatch.setattr(Agent, "__getattribute__", guarded)


@pytest.mark.parametrize("settings", [
    dict(),
    dict(secagg=True, secagg_graph="secagg+", dropout=0.2),
    dict(malicious_evaluators=("0.25:copycat", "0.25:extreme"), malicious_participants=("0.25:inverted-labels",)),
])
def test_no_agent_reads_another_agents_private_state(monkeypatch, settings):
    """A whole task with every adversary that observes others (copycat, extreme), under the guard:
    no agent's code touches another agent's private attributes; everything they share goes through
    the chain, the store or the board."""
    lab = Lab.create(ExperimentConfig(**{**SMALL, **settings}))
    _guard_private_reads(monkeypatch)
    lab.run()
    monkeypatch.undo()
    assert lab.chain.call(lab.task.functions.phase()) == Phase.FINISHED


def test_the_guard_catches_a_snooping_agent(monkeypatch):
    """The guard above would catch a regression: an agent reading another's data raises."""
    lab = Lab.create(ExperimentConfig(**{**SMALL, "rounds": 1}))
    _guard_private_reads(monkeypatch)
    spy, victim = lab.participants[0], lab.participants[1]

    def snoop(self, other):
        return other._x

    with pytest.raises(_Snooping, match="_x"):
        snoop(spy, victim)


def test_a_half_flipper_relabels_exactly_half_of_its_samples_to_other_classes():
    """The behaviour issue 17's fairness target is about: half of the labels, each to a different class."""
    import numpy as np

    from din_lab.roles.behaviours import participant_behaviour

    y = np.arange(100) % 10
    _, flipped = participant_behaviour("half-flipped-labels").training_data(np.zeros((100, 4)), y, num_classes=10,
                                                                            rng=np.random.default_rng(0))
    assert (flipped != y).sum() == 50 and flipped.min() >= 0 and flipped.max() <= 9
    assert y.tolist() == (np.arange(100) % 10).tolist()  # its own copy: the data set is untouched
