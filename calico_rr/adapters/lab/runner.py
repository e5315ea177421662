"""``calico-rr lab``: real BIRD daemons driven from a real API server, with or
without the operator, and transitions watched by the route sampler.

:class:`ClusterLab` puts the pieces together: a local kube-apiserver + etcd
(``calico_rr.sandbox.ControlPlane``, as ``calico-rr demo`` uses), Calico's CRDs
and ours, one lab namespace + BIRD per node (:class:`LabNetwork`), Kubernetes
Nodes carrying the lab addresses, and the agent watching the API server
(:class:`KubeWatcher`) — so BIRD follows exactly what is written in the API
server, by whoever writes it.  Without the operator, the planner's rendered
resources are applied directly; with it, the cluster starts on the full mesh
and the operator migrates it.  :meth:`ClusterLab.step` runs one change with the
sampler on and reports losses and re-convergence time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.demo import config_document
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import (
    CONFIG_PATH,
    create_nodes,
    ready_status,
    status,
)
from calico_rr.adapters.kube.operator import Operator, uninstall
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.confd import ConfdAgent, ConfdFleet, create_ipam, kubernetes_datastore
from calico_rr.adapters.lab.net import IP_FAMILIES, LabError, LabNetwork, neighbour_limits
from calico_rr.adapters.lab.sampler import RouteSampler
from calico_rr.adapters.lab.watcher import KubeWatcher
from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.lab.bird import BgpTimers
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.lab_tools import ensure_lab_tools
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

#: who renders each node's BIRD config: Calico's confd, or the project's imitation
RENDERERS = ("confd", "imitation")

#: the label of dedicated route-reflector nodes (no workloads, no pod block)
DEDICATED_LABEL = "node-role.kubernetes.io/route-reflector"

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


class ClusterLab:
    """``size`` nodes in the API server (plus ``spare`` lab nodes that can join).

    ``dedicated``: that many of the ``size`` nodes carry no workloads (no pod
    block: BIRD announces nothing of their own) and the label
    :data:`DEDICATED_LABEL`; with the operator they are the only RR candidates
    (``dedicatedNodeLabel``), as in clusters that keep RRs off workload nodes."""

    def __init__(
        self,
        size: int,
        *,
        spare: int = 0,
        zones: int = 0,
        racks: int = 0,
        dedicated: int = 0,
        progress: Progress = _quiet,
        timeout: float = 180.0,
        renderer: str = "confd",
        confd_fast_sessions: BgpTimers | None = None,
        ip_family: str = "ipv4",
    ) -> None:
        if renderer not in RENDERERS:
            raise LabError(f"renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")
        if ip_family not in IP_FAMILIES:
            raise LabError(f"ip family must be ipv4, ipv6 or dual, got {ip_family!r}")
        if ip_family != "ipv4" and renderer != "confd":
            raise LabError(
                f"ip family {ip_family} runs on the confd renderer only "
                "(the imitation renders IPv4 BIRD configs)"
            )
        #: ipv4, ipv6 or dual: the addresses the lab's Nodes announce (bird6 with IPv6)
        self.ip_family = ip_family
        self.renderer = renderer
        #: confd's templates with these timers and no BGP graceful restart
        #: (``confd.shim_fast_sessions``; None: Calico's own sessions)
        self.confd_fast_sessions = confd_fast_sessions
        #: Calico's version facts when confd renders (``calico_bin.locate().as_dict()``)
        self.calico: dict[str, str] | None = None
        #: the release of that confd, whose reading the verifier's view follows
        self.release: CalicoVersion | None = None
        if size < 2:
            raise LabError(f"a lab needs at least 2 nodes, got {size}")
        if not 0 <= dedicated <= size - 2:
            raise LabError(f"dedicated RR nodes must leave 2 workload nodes: {dedicated} of {size}")
        self.dedicated = dedicated
        self.size = size
        self.spare = spare
        self.zones = zones
        self.racks = racks
        self.progress = progress
        self.timeout = timeout
        self.operator: Operator | None = None
        self._stack: list[Callable[[], None]] = []

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> ClusterLab:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._stack:
            undo = self._stack.pop()
            try:
                undo()
            except Exception as exc:  # keep cleaning up
                self.progress(f"cleanup: {exc}")

    def _start(self) -> None:
        ensure_lab_tools()
        total = self.size + self.spare
        self.progress(f"building the lab network: {total} namespaces, one BIRD each")
        # the mesh the lab starts from has every node hold every other node in the
        # host's one ARP table: 200 nodes are 39,800 entries, 39 times the default
        # limit; past it the kernel drops packets and BGP hold timers expire
        self.lab = LabNetwork(total, ip_family=self.ip_family)
        self.lab.up()
        self._stack.append(self.lab.close)
        limits = contextlib.ExitStack()
        limits.enter_context(neighbour_limits(total * total + 1024, lab=self.lab))
        self._stack.append(limits.close)
        self.progress("starting kube-apiserver + etcd")
        self.cp = ControlPlane()
        self.cp.start()
        self._stack.append(self.cp.stop)
        self.lab.register_directory(self.cp.directory)  # its processes die with ours
        apply_crds(self.cp, calico_crds())
        install_operator_rbac(self.cp)  # our CRDs too
        self.admin = KubeClient.from_kubeconfig(self.cp.admin_kubeconfig)
        self.api_group = "crd.projectcalico.org/v1"
        synthetic = synthetic_cluster(total, zones=self.zones, racks=self.racks)
        self.nodes: list[Node] = [
            dataclasses.replace(
                n,
                name=ln.name,
                ip=None if self.ip_family == "ipv6" else ln.ip,
                ip6=ln.ip6,
            )
            for n, ln in zip(synthetic, self.lab.nodes, strict=True)
        ]
        first = self.size - self.dedicated
        for i in range(first, self.size):
            n = self.nodes[i]
            self.nodes[i] = dataclasses.replace(n, labels={**n.labels, DEDICATED_LABEL: "true"})
        self.dedicated_nodes = frozenset(n.name for n in self.nodes[first : self.size])
        self.agent = self._agent()
        # confd of an older Calico reads the resources its own way (core.bgp.calico_version)
        self.watcher = KubeWatcher(self.agent, self.admin, self.api_group, calico=self.release)
        self.watcher.start()
        self._stack.append(self.watcher.stop)
        self.watcher.wait_synced()
        self.progress(f"creating {self.size} nodes (full mesh on)")
        create_nodes(self.admin, self.nodes[: self.size])
        self._await_members(self.nodes[: self.size])

    def _agent(self) -> LabAgent:
        """The imitation agent, or Calico's confd per node (docs/LAB.md)."""
        if self.renderer == "imitation":
            return LabAgent(self.lab, workload_free=self.dedicated_nodes)
        binaries = locate()
        self.calico = binaries.as_dict()
        self.release = binaries.release
        self.progress(f"starting {len(self.lab.nodes)} confd ({binaries.label})")
        create_ipam(self.admin, self.lab, self.dedicated_nodes)
        fleet = ConfdFleet(
            self.lab,
            binaries,
            kubernetes_datastore(self.cp.admin_kubeconfig),
            fast_sessions=self.confd_fast_sessions,
        )
        fleet.start()
        self._stack.append(fleet.stop)
        agent = ConfdAgent(self.lab, fleet, workload_free=self.dedicated_nodes)
        if self.lab.v6 is not None:  # bird6 beside BIRD, fed the IPv6 projection
            agent.v6 = ConfdAgent(
                self.lab.v6, fleet, workload_free=self.dedicated_nodes, family="ipv6"
            )
        agent.start()
        self._stack.append(agent.close)
        return agent

    # -- helpers --------------------------------------------------------------

    @property
    def members(self) -> list[str]:
        """Names of the nodes in the API server, as the lab's watcher has seen them
        (it may lag a write by the watch's delay; :meth:`_await_members`)."""
        return sorted(self.watcher.informers["nodes"].keys())

    def _await_members(self, nodes: list[Node], timeout: float = 60.0) -> None:
        """Wait until the watcher has seen the Nodes just created: callers pick the
        nodes to delete or join from :attr:`members`, and a watch lagging the
        creation under load made a case delete 2 of 24 (seen in CI)."""
        names = {n.name for n in nodes}
        deadline = time.monotonic() + timeout
        while not names <= set(self.members):
            if time.monotonic() > deadline:
                late = sorted(names - set(self.members))
                raise LabError(f"the lab's watcher has not seen nodes {late[:5]} in {timeout}s")
            time.sleep(0.05)

    def cluster_ids(self) -> dict[str, str]:
        """Route reflector name -> its cluster ID, as in the API server."""
        out: dict[str, str] = {}
        for name, obj in self.watcher.informers["nodes"].items().items():
            ann = (obj.get("metadata") or {}).get("annotations") or {}
            if ANN_CLUSTER_ID in ann:
                out[name] = str(ann[ANN_CLUSTER_ID])
        return out

    def route_reflectors(self) -> list[str]:
        return sorted(self.cluster_ids())

    def wait_bird(
        self, *, since: float, down: frozenset[str] = frozenset(), stable: float = 1.5
    ) -> dict[str, Any]:
        """Wait until the agent has applied the API server's latest state and BIRD
        matches the verifier on it; the agent's status with seconds from ``since``."""
        applied = self.watcher.applied
        deadline = time.monotonic() + 5.0
        while self.watcher.applied == applied and time.monotonic() < deadline:
            time.sleep(0.05)  # the watcher re-applies after the last event
        return self.agent.wait(self.timeout, stable=stable, down=down, since=since)

    def apply_plan(self, topology: str, **cfg: Any) -> dict[str, Any]:
        """Without the operator: write the planner's rendered resources (nodes'
        labels and annotations, BGPPeers, BGPConfiguration) to the API server."""
        members = set(self.members)
        p = plan(
            [n for n in self.nodes if n.name in members],
            PlanConfig(topology=topology, api_group=self.api_group, **cfg),  # type: ignore[arg-type]
        )
        t0 = time.monotonic()
        for change in p.node_changes():
            obj = self.admin.get(api_path("v1", "nodes", change.name)) or {}
            meta = obj.setdefault("metadata", {})
            meta.setdefault("labels", {}).update(change.labels)
            ann = meta.setdefault("annotations", {})
            if change.cluster_id is not None:
                ann[ANN_CLUSTER_ID] = change.cluster_id
            self.admin.replace(api_path("v1", "nodes", change.name), obj)
        plural = {"BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}
        for doc in [*p.bgppeers(), p.bgp_configuration()]:
            path = api_path(self.api_group, plural[doc["kind"]], doc["metadata"]["name"])
            self.admin.apply(path, doc, force=True)
        st = self.wait_bird(since=t0)
        st["topology"] = p.topology
        st["route_reflectors"] = sum(1 for c in p.node_changes() if c.cluster_id)
        return st

    def start_operator(self, spec: dict[str, Any]) -> None:
        if self.dedicated:
            spec = {"dedicatedNodeLabel": DEDICATED_LABEL, **spec}
        apply_documents(self.cp, [config_document(spec)])
        client = KubeClient.from_kubeconfig(self.cp.operator_kubeconfig)
        self.operator = Operator(client, identity="lab-0", env={})
        self.operator.start()
        self._stack.append(self.operator.stop)

    def wait_operator(self, since: float, *, quiet: float = 1.5) -> float:
        """Seconds from ``since`` until the operator is done with the change: a
        reconcile pass started after ``since``, the last pass ended with the layout
        Steady, and no pass started for ``quiet`` seconds after it (the operator
        coalesces events for at most a second, so pending work would have started
        one)."""
        op = self.operator
        assert op is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            s = op.stats
            done = s.last_start > since and s.last_end > s.last_start
            if done and s.last_phase == "Steady" and time.monotonic() - s.last_end > quiet:
                return s.last_end - since
            time.sleep(0.05)
        raise LabError(f"operator not steady after {self.timeout:.0f}s: {op.stats.last_message}")

    def step(
        self,
        name: str,
        action: Callable[[], None],
        *,
        operator: bool = True,
        down: frozenset[str] = frozenset(),
        ignore_origins: frozenset[str] = frozenset(),
        ignore_nodes: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Run ``action`` with the sampler on; wait for the operator (if running)
        and for BIRD; report losses and seconds to converge."""
        self.progress(f"step: {name}")
        ids_before = self.cluster_ids()
        sampler = RouteSampler(self.agent).start()
        t0 = time.monotonic()
        try:
            action()
            if operator and self.operator is not None:
                self.wait_operator(t0)
            st = self.wait_bird(since=t0, down=down)
        finally:
            sampler.stop()
        # A node whose cluster ID appears, goes or changes gets new options on its
        # sessions (rr client / rr cluster id), and BIRD restarts a session whose
        # options change: that node's own sessions drop for a moment.
        ids_after = self.cluster_ids()
        role_changed = frozenset(
            n for n in ids_before.keys() | ids_after.keys() if ids_before.get(n) != ids_after.get(n)
        )
        allowed_nodes = ignore_nodes | down
        allowed_origins = ignore_origins | down
        report = sampler.report(ignore_nodes=allowed_nodes, ignore_origins=allowed_origins)
        outside = sampler.report(
            ignore_nodes=allowed_nodes | role_changed,
            ignore_origins=allowed_origins | role_changed,
        )
        # what pods would see: losses on nodes that run workloads (every origin
        # announces a block, so every origin runs workloads)
        workload = sampler.report(
            ignore_nodes=allowed_nodes | self.dedicated_nodes, ignore_origins=allowed_origins
        )
        out = {
            "step": name,
            "converged": st["converged"],
            "seconds_to_converge": st["seconds_to_converge"],
            "nodes": st["nodes"],
            "sessions_established": st["sessions_established"],
            "sessions_expected": st["sessions_expected"],
            "bird_reachable": st["bird_reachable"],
            "missing_pairs": st["missing_pairs"],
            "matches_verifier": st["matches_verifier"],
            **report,
            **({"families": st["families"]} if "families" in st else {}),
            "role_changed_nodes": sorted(role_changed),
            "route_losses_outside_role_changes": outside["route_losses"],
            "loss_examples_outside_role_changes": outside["examples"],
            "route_losses_on_workload_nodes": workload["route_losses"],
            "workload_nodes_with_loss": workload["nodes_with_loss"],
            "loss_examples_on_workload_nodes": workload["examples"],
        }
        self.progress(
            f"  {name}: converged={out['converged']} in {out['seconds_to_converge']}s, "
            f"matches verifier {out['matches_verifier']}, route losses {out['route_losses']} "
            f"({out['route_losses_outside_role_changes']} outside the {len(role_changed)} "
            f"nodes whose RR role changed; longest {out['loss_seconds_max']}s)"
            + (
                f"; the sampler lagged (samples of a node up to "
                f"{out['sample_gap_seconds_max']}s apart): loss times are bounds"
                if out["sampler_lagged"]
                else ""
            )
        )
        return out

    # -- cluster changes --------------------------------------------------------

    def join(self, count: int) -> list[str]:
        members = set(self.members)
        new = [n for n in self.nodes if n.name not in members][:count]
        if len(new) < count:
            raise LabError(f"only {len(new)} spare lab nodes left, {count} asked")
        create_nodes(self.admin, new)
        self._await_members(new)
        return [n.name for n in new]

    def delete(self, names: list[str]) -> None:
        for name in names:
            self.admin.delete(api_path("v1", "nodes", name))

    def cordon(self, name: str) -> None:
        self.admin.patch(api_path("v1", "nodes", name), {"spec": {"unschedulable": True}})

    def set_ready(self, name: str, ready: bool) -> None:
        self.admin.patch(api_path("v1", "nodes", name) + "/status", ready_status(ready))

    def set_topology(self, spec: dict[str, Any]) -> None:
        self.admin.patch(f"{CONFIG_PATH}/{CONFIG_NAME}", {"spec": spec})

    def current_topology(self) -> str | None:
        topology = status(self.admin).get("topology")
        return str(topology) if topology else None

    def uninstall(self) -> None:
        """`calico-rr uninstall` with the operator still running: mesh on first,
        then every calico-rr peering, label and annotation goes."""
        uninstall(self.admin, timeout=self.timeout)

    def kill_bird(self, name: str) -> None:
        self.agent.kill(self.lab.node(name))

    def restart_bird(self, name: str) -> None:
        self.agent.restart(self.lab.node(name))


def run_lab(
    *,
    nodes: int = 16,
    topology: str = "auto",
    zones: int = 0,
    racks: int = 0,
    operator: bool = True,
    scenarios: bool = False,
    dedicated: int = 0,
    progress: Progress = _quiet,
    timeout: float = 180.0,
    renderer: str = "confd",
    ip_family: str = "ipv4",
) -> dict[str, Any]:
    """The lab end to end; the JSON-able result of ``calico-rr lab``.  With
    ``ip_family`` ``ipv6`` or ``dual`` the result names it, the counts cover both
    families, and ``families`` gives each family's own (``full_mesh`` and every
    step too)."""
    spare = max(2, nodes // 8) if scenarios else 0
    result: dict[str, Any] = {
        "nodes": nodes,
        "topology": topology,
        "operator": operator,
        "renderer": renderer,
    }
    if ip_family != "ipv4":  # an IPv4 lab's output stays as it was
        result["ip_family"] = ip_family
    t_start = time.monotonic()
    with ClusterLab(
        nodes,
        spare=spare,
        zones=zones,
        racks=racks,
        dedicated=dedicated,
        progress=progress,
        timeout=timeout,
        renderer=renderer,
        ip_family=ip_family,
    ) as lab:
        result["calico"] = lab.calico
        mesh = lab.wait_bird(since=t_start)
        result["full_mesh"] = {
            "sessions_established": mesh["sessions_established"],
            "matches_verifier": mesh["matches_verifier"],
            "seconds_to_converge": mesh["seconds_to_converge"],
            **({"families": mesh["families"]} if "families" in mesh else {}),
        }
        steps = [_first_step(lab, operator, topology, racks=racks, dedicated=dedicated)]
        if operator and scenarios:
            steps += _scenarios(lab)
        result.update(_outcome(lab, steps))
    result["seconds_total"] = round(time.monotonic() - t_start, 1)
    return result


def _first_step(
    lab: ClusterLab, operator: bool, topology: str, *, racks: int, dedicated: int
) -> dict[str, Any]:
    """From the full mesh to ``topology``: the operator migrates the cluster, or
    (without it) the planner's rendered resources are applied directly."""
    if operator:
        spec: dict[str, Any] = {"topology": topology, "waitTimeout": "60s"}
        if racks:
            spec["racks"] = racks
        return lab.step("migrate from the full mesh", lambda: lab.start_operator(spec))
    label = DEDICATED_LABEL if dedicated else None
    st = lab.apply_plan(topology, racks=racks or None, dedicated_label=label)
    return {"step": "apply the rendered plan", **{k: v for k, v in st.items() if k != "comparison"}}


def _outcome(lab: ClusterLab, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the lab ended: BIRD's final state against the verifier, the first
    step's convergence time and the route losses summed over every step."""

    def total(key: str) -> int:
        return sum(int(s.get(key, 0)) for s in steps)

    final = lab.agent.status()
    out: dict[str, Any] = {}
    if isinstance(lab.agent, ConfdAgent):
        diffs = lab.agent.peer_differences()
        if isinstance(lab.agent.v6, ConfdAgent):  # bird6.cfg against the IPv6 projection
            diffs += [f"{d} (ipv6)" for d in lab.agent.v6.peer_differences()]
        out["imitation_peer_differences"] = len(diffs)
        out["imitation_peer_difference_examples"] = diffs[:5]
    out.update(
        {
            "nodes": final["nodes"],
            "sessions_expected": final["sessions_expected"],
            "sessions_established": final["sessions_established"],
            "bird_reachable": final["bird_reachable"],
            "missing_pairs": final["missing_pairs"],
            "matches_verifier": final["matches_verifier"],
            "seconds_to_converge": steps[0].get("seconds_to_converge"),
            "route_reflectors": len(lab.route_reflectors()),
            "kernel_mismatches": lab.agent.kernel_mismatches(),
            "route_losses": total("route_losses"),
            "route_losses_outside_role_changes": total("route_losses_outside_role_changes"),
            "route_losses_on_workload_nodes": total("route_losses_on_workload_nodes"),
            "dedicated_nodes": sorted(lab.dedicated_nodes),
            "steps": steps,
            "bird_reloads": lab.agent.reloads,
            "agent_errors": [*lab.watcher.errors, *lab.agent.errors][:5],
        }
    )
    if "families" in final:
        out["families"] = final["families"]
    return out


def _scenarios(lab: ClusterLab) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    joined: list[str] = []

    def join() -> None:
        joined.extend(lab.join(lab.spare))

    steps.append(lab.step(f"scale up: {lab.spare} nodes join", join))
    rrs = set(lab.route_reflectors())
    leaving = [n for n in reversed(lab.members) if n not in rrs][: max(1, lab.spare // 2)]
    gone = frozenset(leaving)
    steps.append(
        lab.step(
            f"scale down: {len(leaving)} nodes deleted",
            lambda: lab.delete(leaving),
            ignore_origins=gone,
            ignore_nodes=gone,
        )
    )
    victim = lab.route_reflectors()[0]
    steps.append(
        lab.step(
            f"BIRD of route reflector {victim} killed",
            lambda: lab.kill_bird(victim),
            operator=False,
            down=frozenset({victim}),
        )
    )
    steps.append(
        lab.step(
            f"BIRD of {victim} restarted",
            lambda: lab.restart_bird(victim),
            operator=False,
            ignore_origins=frozenset({victim}),  # its block: stale (GR) until it is back
        )
    )
    cordoned = lab.route_reflectors()[-1]
    steps.append(lab.step(f"route reflector {cordoned} cordoned", lambda: lab.cordon(cordoned)))
    target = "multi" if "multi" not in str(lab.current_topology()) else "single"
    steps.append(
        lab.step(f"topology switch to {target}", lambda: lab.set_topology({"topology": target}))
    )
    lab.set_topology({"waitTimeout": "10s"})  # how long uninstall lets the mesh come up
    steps.append(
        lab.step("calico-rr uninstall: back to the full mesh", lab.uninstall, operator=False)
    )
    return steps
