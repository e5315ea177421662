"""The BGP rules of the verifier (calico_rr.core.bgp.verify.rules), one rule at a time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.core.bgp.sessions import NodeClass, SessionGraph, SessionKind
from calico_rr.core.bgp.verify.rules import (
    Arrival,
    accepts,
    class_graph,
    encode,
    export_path,
    insert_minimal,
    may_export,
    order_key,
)
from calico_rr.model import CalicoNode

X, Y = 0b01, 0b10  # two cluster IDs
AS1, AS2 = 0b01, 0b10  # two AS numbers


def test_own_prefix_goes_to_every_peer_unchanged() -> None:
    for out in (Arrival.IBGP, Arrival.RR_CLIENT):
        assert export_path(Arrival.ORIGIN, 0, 0, out, 0, AS1) == (0, 0)
    assert export_path(Arrival.ORIGIN, 0, 0, Arrival.EBGP, 0, AS1) == (0, AS1)


def test_plain_node_never_readvertises_ibgp_routes_over_ibgp() -> None:
    assert export_path(Arrival.IBGP, 0, 0, Arrival.IBGP, 0, AS1) is None


def test_reflection_rules_rfc4456() -> None:
    # from a client: to every peer, own cluster ID prepended
    assert export_path(Arrival.RR_CLIENT, 0, 0, Arrival.IBGP, X, AS1) == (X, 0)
    assert export_path(Arrival.RR_CLIENT, Y, 0, Arrival.RR_CLIENT, X, AS1) == (X | Y, 0)
    # from a non-client: to clients only
    assert export_path(Arrival.IBGP, Y, 0, Arrival.RR_CLIENT, X, AS1) == (X | Y, 0)
    assert export_path(Arrival.IBGP, Y, 0, Arrival.IBGP, X, AS1) is None
    # own ID already in CLUSTER_LIST: never reflected (lab A)
    assert export_path(Arrival.IBGP, X, 0, Arrival.RR_CLIENT, X, AS1) is None
    assert export_path(Arrival.RR_CLIENT, X | Y, 0, Arrival.IBGP, X, AS1) is None


def test_ebgp_export_strips_cluster_list_and_prepends_as() -> None:
    assert export_path(Arrival.RR_CLIENT, X | Y, AS2, Arrival.EBGP, X, AS1) == (0, AS1 | AS2)
    assert export_path(Arrival.IBGP, Y, 0, Arrival.EBGP, 0, AS1) == (0, AS1)


def test_ebgp_learned_routes_go_to_ibgp_peers_unchanged() -> None:
    assert export_path(Arrival.EBGP, 0, AS2, Arrival.IBGP, 0, AS1) == (0, AS2)


def test_receive_rules() -> None:
    # AS_PATH loop check on eBGP only
    assert not accepts(0, AS1, Arrival.EBGP, 0, AS1)
    assert accepts(0, AS2, Arrival.EBGP, 0, AS1)
    # own cluster ID: dropped over a client session (lab C) ...
    assert not accepts(X, 0, Arrival.RR_CLIENT, X, AS1)
    # ... accepted over plain iBGP (lab A)
    assert accepts(X, 0, Arrival.IBGP, X, AS1)
    # another cluster's ID is no reason to drop
    assert accepts(Y, 0, Arrival.RR_CLIENT, X, AS1)
    assert accepts(X, 0, Arrival.RR_CLIENT, 0, AS1)


def _key(held: Arrival, cl: int, asp: int) -> tuple[int, int, int]:
    ibgp = held in (Arrival.IBGP, Arrival.RR_CLIENT)
    return asp.bit_count(), cl.bit_count(), int(ibgp)


@given(
    held=st.sampled_from(list(Arrival)),
    out=st.sampled_from([Arrival.IBGP, Arrival.RR_CLIENT, Arrival.EBGP]),
    cl=st.integers(0, 7),
    asp=st.integers(0, 7),
    own_cl=st.sampled_from([1, 2, 4]),
    own_as=st.sampled_from([1, 2, 4]),
)
def test_every_export_strictly_grows_the_loop_key(
    held: Arrival, out: Arrival, cl: int, asp: int, own_cl: int, own_as: int
) -> None:
    """The loop-freedom argument behind VerifyReport.loops, on every reachable input."""
    if held in (Arrival.ORIGIN, Arrival.EBGP) and cl:
        return  # such paths do not exist (own prefix / eBGP-learned carry no CLUSTER_LIST)
    if asp & own_as:
        return  # a speaker never holds a path with its own AS in AS_PATH
    if held is Arrival.ORIGIN and asp:
        return
    sent = export_path(held, cl, asp, out, own_cl, own_as)
    if sent is None:
        return
    arrived = Arrival.EBGP if out is Arrival.EBGP else Arrival.IBGP
    assert _key(arrived, *sent) > _key(held, cl, asp)


def test_export_asserts_on_impossible_inputs() -> None:
    with pytest.raises(AssertionError):
        export_path(Arrival.IBGP, 0, AS1, Arrival.EBGP, 0, AS1)
    with pytest.raises(AssertionError):
        export_path(Arrival.IBGP, 0, 0, Arrival.RR_CLIENT, 0, AS1)


def test_insert_minimal_keeps_an_antichain() -> None:
    chain: list[tuple[int, int]] = []
    assert insert_minimal(chain, 0b110, 0)
    assert not insert_minimal(chain, 0b110, 0)  # duplicate
    assert not insert_minimal(chain, 0b111, 0)  # dominated
    assert insert_minimal(chain, 0b001, 0)  # incomparable
    assert insert_minimal(chain, 0b100, 0)  # dominates 0b110
    assert sorted(chain) == [(0b001, 0), (0b100, 0)]
    assert insert_minimal(chain, 0b100, 0b1) is False
    assert insert_minimal(chain, 0, 0)
    assert chain == [(0, 0)]


def test_class_graph_uses_calico_session_kinds() -> None:
    g = class_graph(
        [
            (["rr-a"], "1.1.1.1", 64512),
            (["rr-b"], "2.2.2.2", 64512),
            (["c1", "c2"], None, 64512),
            (["ext"], None, 65000),
        ],
        [(0, 1), (0, 2), (2, 2), (2, 3)],
    )
    idx = g.index()
    assert g.kind(idx["rr-a"], idx["rr-b"]) is SessionKind.RR_CLIENT
    assert g.kind(idx["rr-b"], idx["rr-a"]) is SessionKind.RR_CLIENT
    assert g.kind(idx["rr-a"], idx["c1"]) is SessionKind.RR_CLIENT
    assert g.kind(idx["c1"], idx["rr-a"]) is SessionKind.IBGP
    assert g.kind(idx["c1"], idx["c2"]) is SessionKind.IBGP
    assert g.kind(idx["c1"], idx["ext"]) is SessionKind.EBGP
    assert g.kind(idx["rr-b"], idx["c1"]) is None
    assert [n.name for n in g.nodes] == ["c1", "c2", "ext", "rr-a", "rr-b"]
    with pytest.raises(ValueError, match="duplicate"):
        class_graph([(["a"], None, 1), (["a"], None, 1)], [])


def test_encode_rejects_graphs_calico_node_cannot_build() -> None:
    nodes = (CalicoNode("a", "10.0.0.1", asn=1), CalicoNode("b", "10.0.0.2", asn=1))
    classes = (NodeClass((0,), None, 1), NodeClass((1,), None, 1))

    def graph(adj: tuple[dict[int, SessionKind], ...]) -> SessionGraph:
        return SessionGraph(nodes=nodes, node_class=(0, 1), classes=classes, adj=adj)

    with pytest.raises(ValueError, match="reverse"):
        encode(graph(({1: SessionKind.IBGP}, {})))
    with pytest.raises(ValueError, match="eBGP"):
        encode(graph(({1: SessionKind.EBGP}, {0: SessionKind.EBGP})))
    with pytest.raises(ValueError, match="cluster ID"):
        encode(graph(({1: SessionKind.RR_CLIENT}, {0: SessionKind.IBGP})))
    enc = encode(graph(({1: SessionKind.IBGP}, {0: SessionKind.IBGP})))
    assert enc.adj == (((1, Arrival.IBGP),), ((0, Arrival.IBGP),))
    assert enc.cluster_bit == (0, 0)


@given(
    held=st.sampled_from([Arrival.IBGP, Arrival.RR_CLIENT, Arrival.EBGP]),
    cl=st.integers(0, 7),
    own_cl=st.sampled_from([0, 1, 2, 4]),
    client_sessions=st.booleans(),
    ebgp_sessions=st.booleans(),
)
def test_may_export_is_never_wrong_about_silence(
    held: Arrival, cl: int, own_cl: int, client_sessions: bool, ebgp_sessions: bool
) -> None:
    if (
        (held is Arrival.EBGP and cl)
        or (client_sessions and not own_cl)
        or (held is Arrival.RR_CLIENT and not own_cl)
    ):
        return  # impossible inputs: client sessions need a cluster ID
    outs = [Arrival.IBGP]
    if client_sessions:
        outs.append(Arrival.RR_CLIENT)
    if ebgp_sessions:
        outs.append(Arrival.EBGP)
    sends = any(export_path(held, cl, 0, out, own_cl, AS1) is not None for out in outs)
    if sends:
        assert may_export(held, cl, own_cl, client_sessions, ebgp_sessions)


def test_order_key_orders_dominated_paths_after_their_dominators() -> None:
    assert order_key(Arrival.IBGP, 0b01, 0) <= order_key(Arrival.IBGP, 0b11, 0)
    assert order_key(Arrival.EBGP, 0b111, 0) < order_key(Arrival.EBGP, 0, 0b1)
    assert order_key(Arrival.ORIGIN, 0, 0) < order_key(Arrival.IBGP, 0, 0)
