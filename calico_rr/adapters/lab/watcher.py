"""What calico-node does around confd, for every lab node at once, over either
datastore: follow the Calico objects, hand each new state to the
:class:`~calico_rr.adapters.lab.agent.LabAgent` (coalesced), and write every lab
node's BIRD session states into the CalicoNodeStatus objects naming it, so the
operator's make-before-break check sees real sessions.

:class:`DatastoreWatcher` is that loop, written once; a datastore provides where
its objects come from (:meth:`~DatastoreWatcher.documents`, its caches) and how a
status is written.  :class:`KubeWatcher` follows the Kubernetes API with
informers; :class:`~calico_rr.adapters.lab.etcd_watcher.EtcdWatcher` follows
Calico's etcd datastore.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.adapters.kube.informer import Informer
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import LabError, LabNode
from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.formats.scalars import format_timestamp
from calico_rr.errors import InputError

log = logging.getLogger(__name__)

#: how often the apply loop looks again when nothing changed
_POLL = 0.2
#: plural -> kind of the objects the agent's state is read from
_STATE_KINDS = {"nodes": "Node", "bgppeers": "BGPPeer", "bgpconfigurations": "BGPConfiguration"}


class DatastoreWatcher(ABC):
    """Feeds a :class:`LabAgent` from a datastore; reports sessions back."""

    #: names the datastore in the parse errors (``where`` of parse_resources)
    where = "cluster"
    #: apply the first synced state even if no event came (an empty etcd prefix
    #: sends none); False waits for the first object, as the Kubernetes lab
    #: creates its Nodes after the informers sync
    apply_first_sync = False
    #: seconds the apply loop waits after an event for more to come
    coalesce = 0.05
    #: seconds between two status reports
    status_period = 1.0

    def __init__(self, agent: LabAgent, *, calico: CalicoVersion | None = None) -> None:
        self.agent = agent
        #: the Calico release whose reading the verifier's view follows (None: newest)
        self.calico = calico
        self.errors: list[str] = []
        self.applied = 0
        self.status_writes = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._status_sent: dict[str, Any] = {}

    # -- what a datastore provides ------------------------------------------

    @abstractmethod
    def _start_caches(self) -> None: ...

    @abstractmethod
    def _stop_caches(self) -> None: ...

    @abstractmethod
    def _caches_synced(self) -> bool: ...

    @abstractmethod
    def documents(self) -> list[dict[str, Any]]:
        """The Nodes, BGPPeers and BGPConfigurations as the datastore holds them."""

    @abstractmethod
    def _node_statuses(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        """(key, document) of every CalicoNodeStatus the caches hold."""

    @abstractmethod
    def _write_status(self, key: str, doc: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Write ``status`` into the CalicoNodeStatus at ``key``; False if not written."""

    # -- the loop, once ---------------------------------------------------------

    def start(self) -> DatastoreWatcher:
        self._start_caches()
        for target in (self._apply_loop, self._status_loop):
            t = threading.Thread(target=target, name=f"lab-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._stop_caches()
        for t in self._threads:
            t.join(timeout=10)

    def _note(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
        log.warning("lab watcher: %s", message)

    def _apply_loop(self) -> None:
        tried = not self.apply_first_sync
        while not self._stop.is_set():
            if not self._dirty.wait(_POLL) and tried:
                continue
            if self._stop.is_set():
                return
            if not self._caches_synced():
                continue
            time.sleep(self.coalesce)
            self._dirty.clear()
            tried = True
            try:
                state = parse_resources(self.documents(), where=self.where, calico=self.calico)
                self.agent.apply(state.state)
                self.applied += 1
            except (InputError, LabError, BirdError) as exc:
                # calico-node keeps its last good config on bad input; so do we
                self._note(str(exc))

    def _status_loop(self) -> None:
        while not self._stop.wait(self.status_period):
            try:
                self.report_status()
            except Exception as exc:  # keep reporting; say why once per kind
                self._note(f"status report: {exc!r}")

    def report_status(self) -> None:
        """Write session states into the CalicoNodeStatus objects naming lab nodes."""
        lab_nodes = {n.name: n for n in self.agent.lab.nodes}
        for key, doc in list(self._node_statuses()):
            node = lab_nodes.get(str((doc.get("spec") or {}).get("node") or ""))
            if node is None:
                continue
            bgp = bgp_status(self.agent, node)
            if bgp is None or self._status_sent.get(key) == bgp:
                continue
            status = {"lastUpdated": format_timestamp(time.time()), "bgp": bgp}
            if not self._write_status(key, doc, status):
                continue
            self._status_sent[key] = bgp
            self.status_writes += 1


class KubeWatcher(DatastoreWatcher):
    """Informers on Nodes, BGPPeers, BGPConfigurations and CalicoNodeStatuses."""

    def __init__(
        self,
        agent: LabAgent,
        client: KubeClient,
        api_group: str,
        *,
        calico: CalicoVersion | None = None,
    ) -> None:
        super().__init__(agent, calico=calico)
        self.client = client
        self.api_group = api_group
        #: plural -> API group (Nodes are core v1, the rest Calico's)
        self.groups = dict.fromkeys([*_STATE_KINDS, "caliconodestatuses"], api_group)
        self.groups["nodes"] = "v1"
        self.informers = {
            name: Informer(client, api_path(group, name), name=f"lab-{name}", on_event=self._event)
            for name, group in self.groups.items()
        }

    def _event(self, _etype: str, _key: str, _value: Any) -> None:
        self._dirty.set()

    def _start_caches(self) -> None:
        for inf in self.informers.values():
            inf.start()

    def _stop_caches(self) -> None:
        for inf in self.informers.values():
            inf.stop()

    def _caches_synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.informers.values())

    def wait_synced(self, timeout: float = 30.0) -> None:
        for inf in self.informers.values():
            if not inf.synced.wait(timeout):
                raise LabError(f"informer {inf.name} did not sync")

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for name, kind in _STATE_KINDS.items():
            for obj in self.informers[name].items().values():
                if not isinstance(obj.get("metadata"), Mapping):
                    continue
                doc = dict(obj)
                doc.setdefault("apiVersion", self.groups[name])
                doc.setdefault("kind", kind)
                docs.append(doc)
        return docs

    def _node_statuses(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        return self.informers["caliconodestatuses"].items().items()

    def _write_status(self, key: str, doc: Mapping[str, Any], status: dict[str, Any]) -> bool:
        path = api_path(self.api_group, "caliconodestatuses", key) + "/status"
        try:
            self.client.patch(path, {"status": status})
        except ApiError as exc:
            self._note(f"CalicoNodeStatus {key}: {exc}")
            return False
        return True


def _peers(agent: LabAgent, node: LabNode) -> list[dict[str, str]] | None:
    """The node's sessions as CalicoNodeStatus peers; None when its BIRD did not
    answer (under load a control socket can stay silent past its timeout)."""
    try:
        sessions = agent.sessions(node)
    except BirdError:
        return None
    ip_of = {n.name: n.ip for n in agent.lab.nodes}
    return [
        {"peerIP": ip_of.get(peer, ""), "type": "NodePeer", "state": _bgp_state(info)}
        for peer, info in sorted(sessions.items())
    ]


def bgp_status(agent: LabAgent, node: LabNode) -> dict[str, Any] | None:
    """The ``status.bgp`` of a CalicoNodeStatus for ``node``, from its BIRD (and
    its bird6 in a lab with IPv6); None when a daemon did not answer.  The last
    report then stands, as calico-node's does: "no peers" would be a false report
    that holds the operator back until the next good one (seen at 100 nodes, where
    one status sweep took minutes)."""
    peers = _peers(agent, node)
    six = [] if agent.v6 is None else _peers(agent.v6, agent.v6.lab.node(node.name))
    if peers is None or six is None:
        return None
    up = sum(1 for p in peers if p["state"] == "Established")
    up6 = sum(1 for p in six if p["state"] == "Established")
    out: dict[str, Any] = {  # the CRD requires the V6 counters even without IPv6
        "numberEstablishedV4": up,
        "numberNotEstablishedV4": len(peers) - up,
        "numberEstablishedV6": up6,
        "numberNotEstablishedV6": len(six) - up6,
        "peersV4": peers,
    }
    if six:
        out["peersV6"] = six
    return out


_BGP_STATES = frozenset({"Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"})


def _bgp_state(info: str) -> str:
    """BIRD's protocol info ("Active  Socket: Connection closed") as one of the
    states CalicoNodeStatus accepts."""
    first = info.split()[0] if info.split() else ""
    return first if first in _BGP_STATES else "Idle"
