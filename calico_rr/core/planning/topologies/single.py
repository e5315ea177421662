"""Single cluster (domain.md 4): one cluster ID, every client peers with every RR.

Good for about 50-500 nodes.  All RRs share one cluster ID, so by lab A two
clients must share an RR: the simplest way is that every client peers with
every RR, which is why ``redundancy`` here is the RR count.  RRs peer with each
other as plain iBGP.  500 nodes, 3 RRs: 497 clients and 2 RR peers per RR,
499 sessions per RR - the talk's table.  Two BGPPeers, whatever the size.
"""

from __future__ import annotations

from calico_rr.core.planning.config import RR_LABEL, PlanConfig, cluster_id
from calico_rr.core.planning.topologies.base import (
    RR_MESH,
    ClusterView,
    Draft,
    Layout,
    PeerRule,
    Slot,
    slot_zones,
)

NAME = "single"


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
    cid = cluster_id(config.cluster_id_base, 1)
    slots = [Slot(f"r{i}", "rr", cid, zone) for i, zone in enumerate(slot_zones(view, config, rrs))]
    draft = Draft.filled(view, slots, config)
    draft.rules += [PeerRule("calico-rr-clients", f"!has({RR_LABEL})", f"has({RR_LABEL})"), RR_MESH]
    return draft.layout(NAME, redundancy=len(draft.holders), shape={"cluster_ids": 1})
