"""Calico v3 documents for a lab's nodes, as the etcd datastore holds them."""

from __future__ import annotations

import dataclasses
from typing import Any

from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_IPV4, Node

__all__ = ["lab_nodes", "planned_v3_docs"]


def lab_nodes(lab: LabNetwork, zones: int = 2) -> list[Node]:
    """A synthetic cluster (``zones`` zones) on the lab's node names and addresses."""
    return [
        dataclasses.replace(
            n, name=ln.name, ip=ln.ip, annotations={**n.annotations, ANN_IPV4: f"{ln.ip}/16"}
        )
        for n, ln in zip(synthetic_cluster(len(lab.nodes), zones=zones), lab.nodes, strict=True)
    ]


def planned_v3_docs(lab: LabNetwork) -> list[dict[str, Any]]:
    """The planner's single-cluster layout for the lab's nodes (two zones): v3
    Nodes with the RR cluster IDs in ``spec.bgp``, the BGPPeers and the
    BGPConfiguration."""
    p = plan(lab_nodes(lab), PlanConfig(topology="single", api_group="projectcalico.org/v3"))
    return [
        *(node_to_calico(n) for n in p.applied_nodes()),
        *p.bgppeers(),
        p.bgp_configuration(),
    ]
