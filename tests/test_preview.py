"""core.operator.preview: what a paused operator publishes and ``diff`` prints is
where the operator really goes (the in-memory cluster of calico_rr.testing.sim runs
the same reconcile write by write)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from calico_rr.cli.diff import footer
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.fanout import reflected_fanout
from calico_rr.core.operator.preview import MAX_NAMES, preview
from calico_rr.core.operator.settings import OperatorSettings, settings_from_spec
from calico_rr.core.operator.state import Decision, Phase, current_cluster_id
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.testing.sim import SimCluster

GROUP = "crd.projectcalico.org/v1"


def settings(**spec: Any) -> OperatorSettings:
    return settings_from_spec({"waitTimeout": "2s", **spec}, env={}, api_group=GROUP)


def rrs(sim: SimCluster) -> list[str]:
    return sorted(n for n, ns in sim.nodes.items() if current_cluster_id(ns) is not None)


def layout_writes(sim: SimCluster) -> int:
    """The simulator's writes without its status (transition record) writes."""
    return sum(1 for what in sim.log if not what.startswith("status"))


@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy"])
def test_from_the_mesh_the_preview_is_where_the_operator_goes(topology: str) -> None:
    sim = SimCluster.of(synthetic_cluster(120, zones=3, racks=4))
    s = settings(topology=topology, paused=True)
    shown = preview(sim.observed(), s)
    assert shown.changes and shown.outcome == "Steady"
    assert shown.rrs_before == () and shown.mesh_before is True
    sim.run(replace(s, paused=False), tick=5.0)
    assert list(shown.rrs_after) == rrs(sim) == shown.rrs_added
    ours = sorted(n for n, p in sim.peers.items())
    assert shown.peer_names("create") == ours
    assert shown.mesh_after is sim.mesh_enabled is False
    assert shown.writes == layout_writes(sim)
    assert shown.gate is not None and shown.gate.ok
    st = shown.to_status()
    assert st["meshOff"] is True and st["topology"] == topology
    assert st["addRouteReflectors"] == shown.rrs_added[:MAX_NAMES]


def test_a_steady_cluster_previews_no_change() -> None:
    sim = SimCluster.of(synthetic_cluster(60, zones=3))
    s = settings(topology="multi")
    sim.run(s)
    shown = preview(sim.observed(), replace(s, paused=True))
    assert not shown.changes
    assert shown.writes == 0 and shown.nodes == () and shown.peers == ()
    assert shown.summary() == "nothing to change"
    assert shown.to_status()["steps"] == ["Steady"]


def test_a_topology_switch_previews_the_rollout() -> None:
    sim = SimCluster.of(synthetic_cluster(90, zones=3))
    sim.run(settings(topology="single"))
    before_rrs = rrs(sim)
    new = settings(topology="multi", paused=True)
    shown = preview(sim.observed(), new)
    assert "Making" in shown.steps and "Breaking" in shown.steps
    start = len(sim.log)
    sim.run(replace(new, paused=False), tick=5.0)
    assert list(shown.rrs_after) == rrs(sim)
    assert shown.rrs_removed == sorted(set(before_rrs) - set(rrs(sim)))
    assert shown.writes == sum(1 for w in sim.log[start:] if not w.startswith("status"))
    names = set(shown.peer_names("create")) | set(shown.peer_names("update"))
    assert names <= set(sim.peers)
    assert set(shown.peer_names("delete")).isdisjoint(sim.peers)
    assert not any(n.endswith("-prev") for n in shown.peer_names("create"))


def test_a_plan_with_no_eligible_node_is_shown_refused() -> None:
    sim = SimCluster.of(synthetic_cluster(30, zones=3))
    shown = preview(sim.observed(), settings(dedicatedNodeLabel="nobody-has-this", paused=True))
    assert shown.gate is not None and not shown.gate.ok
    st = shown.to_status()
    assert st["safe"] is False and st["refused"]
    assert shown.mesh_after is True  # the operator never switches the mesh off for it
    assert st["meshOff"] is False


def test_long_name_lists_are_cut_in_the_status_but_counted() -> None:
    sim = SimCluster.of(synthetic_cluster(1000, zones=3))
    spec = {"topology": "single", "minRouteReflectors": 150, "maxRouteReflectors": 150}
    shown = preview(sim.observed(), settings(**spec))
    st = shown.to_status()
    assert st["addRouteReflectorsCount"] == len(shown.rrs_added) > MAX_NAMES
    assert len(st["addRouteReflectors"]) == MAX_NAMES


def test_the_crd_keeps_every_field_of_the_preview() -> None:
    """The API server prunes status fields its schema does not declare: every key
    ``to_status`` writes is declared, with the type it writes."""
    from pathlib import Path

    import yaml

    crd_file = (
        Path(__file__).resolve().parents[1] / "deploy/crds/routereflectorconfigs.calico-rr.io.yaml"
    )
    crd = yaml.safe_load(crd_file.read_text(encoding="utf-8"))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    declared = schema["properties"]["status"]["properties"]["preview"]["properties"]
    sim = SimCluster.of(synthetic_cluster(30, zones=3))
    refused = preview(sim.observed(), settings(dedicatedNodeLabel="nobody-has-this")).to_status()
    ok = preview(sim.observed(), settings()).to_status()
    types = {bool: "boolean", int: "integer", str: "string", list: "array"}
    for st in (refused, ok):
        for key, value in st.items():
            assert key in declared, key
            assert declared[key]["type"] == types[type(value)], key
    assert set(refused) | set(ok) >= set(declared) - {"held"}


@pytest.mark.parametrize(
    ("start", "topology", "n"), [("single", "hierarchy", 60), ("hierarchy", "multi", 60)]
)
def test_the_preview_counts_the_make_state_the_operator_confirms(
    start: str, topology: str, n: int
) -> None:
    """``diff`` prints the add-path table of the make state, where old and new
    peerings coexist while the new sessions are confirmed: the table of the very
    state the operator holds then (the in-memory cluster at its first confirming
    pass), with the warning when it is over the budget (``hierarchy`` -> ``multi``
    is: each new RR has an ID of its own and is still peered with the old ones)."""
    sim = SimCluster.of(synthetic_cluster(n, zones=3))
    sim.run(settings(topology=start))
    shown = preview(sim.observed(), settings(topology=topology, paused=True))
    table = shown.make_state_table()
    assert table is not None
    confirmed: list[int] = []

    def at_confirm(state: SimCluster, d: Decision) -> None:
        if d.phase == Phase.CONFIRMING and not confirmed:
            graph = build_session_graph(parse_resources(state.calico_documents()).state)
            found = reflected_fanout(graph)  # stops once over the budget, as the preview
            assert found is not None
            confirmed.append(found.routes_per_node)

    sim.run(settings(topology=topology), before=at_confirm)
    assert confirmed == [table.routes_per_node]
    lines = footer(shown, "flags", None, GROUP)
    said = [line for line in lines if "make state" in line]
    assert said and str(f"{table.routes_per_node:,}") in said[0]
    assert any("plan the final topology" in line for line in lines) == table.warns
    assert table.warns == (topology == "multi"), table.describe()


def test_no_make_state_no_count() -> None:
    sim = SimCluster.of(synthetic_cluster(30, zones=3))
    sim.run(settings(topology="single"))
    shown = preview(sim.observed(), settings(topology="single", paused=True))
    assert shown.made is None and shown.make_state_table() is None
    assert not any("make state" in line for line in footer(shown, "flags", None, GROUP))
