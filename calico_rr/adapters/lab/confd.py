"""The lab on Calico's own confd (issue 13 item 2).

Each lab node gets a real ``confd`` process (Calico v3.28, built by
``scripts/calico-build.sh``, found by :func:`calico_rr.adapters.calico_bin.locate`)
in watch mode, in the host's network namespace, reading the lab's API server as
that node (``NODENAME``).  It renders ``bird.cfg``, ``bird_aggr.cfg`` and
``bird_ipam.cfg`` into the node's own directory from a per-node copy of Calico's
confdir, changed only where paths and one BIRD-fork attribute demand it
(:func:`node_confdir`):

* every ``dest`` points into the node's directory, and the templates' ``include``
  lines too;
* ``reload_cmd`` reconfigures the node's own BIRD through its control socket
  (``birdc -s SOCK configure``; calico-node runs ``sv hup bird``), ``check_cmd``
  runs the stock ``bird -p``;
* the shim: Debian's BIRD 1.6.8 does not know ``krt_tunnel`` (an attribute of
  Calico's BIRD fork) that ``bird_ipam.cfg`` sets in ``filter
  calico_kernel_programming``; the copy declares it as a local variable of that
  filter (one line).  BGP behaviour is unchanged: the filter only programs the
  kernel, and the lab runs no IPIP.
* the IPv6 templates (``bird6.cfg``, ``bird6_aggr.cfg``, ``bird6_ipam.cfg``) are
  run too when the lab has IPv6 (``LabNetwork.v6``), with the same path changes;
  their reload command reconfigures the node's bird6 (``birdc6 -s SOCK6``) and
  their check command is stock ``bird6 -p``.  They need no shim: stock bird6
  1.6.8 parses them as rendered (``bird6_ipam.cfg`` sets no ``krt_tunnel``).
  In an IPv6-only lab confd runs with ``CALICO_ROUTER_ID=hash``, as calico-node
  must there (the templates' router ID is otherwise the node's IPv4 address);
* optionally (``fast_sessions``, off by default) the second shim, on
  ``bgp_template`` only: Calico's session timers (connect delay 2 s, retry 5 s,
  error wait 5-30 s) become the imitation lab's
  (:class:`~calico_rr.core.lab.bird.BgpTimers`) and ``graceful restart`` is dropped
  from BGP sessions.  This confd makes both ends of a node-specific session
  active; on stock BIRD 1.6 a connection collision on an Established,
  graceful-restart session is taken for a peer restart, and such pairs flap for
  8-40 s (measured; docs/LAB.md "Session shim").  Both changes decide how soon
  a session is back, never which peers a node has or which routes it holds
  once sessions are up; the random-configuration agreement test uses it so
  that 60 configurations fit CI.

:class:`ConfdAgent` is the lab agent for this renderer: it keeps the verifier's
view (the session graph of what the API server holds), starts each node's BIRD
once confd has written that node's files, and names sessions by the peer address
in confd's protocol names (``Mesh_10_99_1_2``, ``Node_...``, ``Global_...``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Collection, Mapping
from pathlib import Path

from calico_rr.adapters.calico_bin import CalicoBinaries
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.net import (
    POD_SUPERNET6,
    LabError,
    LabNetwork,
    LabNode,
    die_with_parent,
)
from calico_rr.core.bgp.families import Family
from calico_rr.core.lab.bird import BgpTimers, bird_nodes
from calico_rr.model import CalicoState
from calico_rr.sandbox.process import stop_process

#: the conf.d entries the lab runs for IPv4, and for IPv6 (a lab with IPv6)
IPV4_TEMPLATES = ("bird", "bird_aggr", "bird_ipam")
IPV6_TEMPLATES = ("bird6", "bird6_aggr", "bird6_ipam")
#: what :func:`shim_ipam_template` inserts after the filter's name
SHIM_LINE = "string krt_tunnel;  # calico-rr: stock BIRD 1.6 lacks Calico's krt_tunnel"
_FILTER_HEAD = "filter calico_kernel_programming {"
#: the timer lines of ``bgp_template`` in Calico's ``bird.cfg.template`` (v3.28)
CALICO_TIMER_LINES = (
    "  connect delay time 2;",
    "  connect retry time 5;",
    "  error wait time 5,30;",
)
#: the graceful-restart line of ``bgp_template`` (the kernel protocol has its own)
CALICO_BGP_GR_LINE = "  graceful restart;  # See comment in kernel section about graceful restart."
_TOML_KEY = re.compile(r'^(\s*)(dest|reload_cmd|check_cmd)\s*=\s*".*"\s*$')
_INCLUDE = re.compile(r'^(\s*include\s+")([^"/][^"]*)(";.*)$', re.MULTILINE)
_PROTO = re.compile(r"^(?:Mesh|Node|Global)_([0-9a-fA-F_]+?)(?:_port_\d+)?$")


def shim_ipam_template(text: str) -> str:
    """``bird_ipam.cfg.template`` with ``krt_tunnel`` declared as a filter-local
    variable; LabError if the filter header is not there exactly once."""
    if text.count(_FILTER_HEAD) != 1:
        raise LabError(f"bird_ipam.cfg.template: expected one {_FILTER_HEAD!r}")
    return text.replace(_FILTER_HEAD, f"filter calico_kernel_programming\n{SHIM_LINE}\n{{")


def shim_fast_sessions(text: str, timers: BgpTimers) -> str:
    """``bird.cfg.template`` with Calico's session timers replaced by ``timers``
    and graceful restart off on BGP sessions; LabError unless each replaced line
    is there exactly once."""
    changes = [*zip(CALICO_TIMER_LINES, timers.lines(), strict=True)]
    changes.append((CALICO_BGP_GR_LINE, "  # calico-rr lab: graceful restart off (session shim)"))
    for old, new in changes:
        if text.count(old + "\n") != 1:
            raise LabError(f"bird.cfg.template: expected one {old.strip()!r}")
        text = text.replace(old + "\n", new + "\n")
    return text


def _rewrite_toml(text: str, name: str, out: Path, sock: Path, bird: str, birdc: str) -> str:
    values = {
        "dest": str(out / f"{name}.cfg"),
        "reload_cmd": f"{birdc} -s {sock} configure >/dev/null 2>&1 || true",
        "check_cmd": f"{bird} -p -c {{{{.src}}}}",
    }
    lines = []
    for line in text.splitlines():
        m = _TOML_KEY.match(line)
        lines.append(f'{m.group(1)}{m.group(2)} = "{values[m.group(2)]}"' if m else line)
    return "\n".join(lines) + "\n"


def protocol_address(name: str) -> str | None:
    """The peer address in a confd protocol name (``Mesh_10_99_1_2`` ->
    ``10.99.1.2``, ``Node_fd99__1_2`` -> ``fd99::1:2``), None for other names."""
    m = _PROTO.match(name)
    if m is None:
        return None
    parts = m.group(1).split("_")
    text = (
        ".".join(parts) if len(parts) == 4 and all(p.isdigit() for p in parts) else ":".join(parts)
    )
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def node_confdir(
    binaries: CalicoBinaries,
    directory: Path,
    sock: Path,
    *,
    bird: str,
    birdc: str,
    fast_sessions: BgpTimers | None = None,
    ipv6: tuple[Path, str, str] | None = None,
) -> Path:
    """Write the node's copy of Calico's confdir under ``directory``
    (``confdir/``; confd renders into ``directory`` itself); the confdir.
    ``fast_sessions`` applies :func:`shim_fast_sessions` (None keeps Calico's)
    to ``bird.cfg`` and ``bird6.cfg``.  ``ipv6``: (bird6's socket, bird6,
    birdc6) adds the IPv6 templates."""
    confdir = directory / "confdir"
    (confdir / "conf.d").mkdir(parents=True, exist_ok=True)
    (confdir / "templates").mkdir(exist_ok=True)
    runs = [(name, sock, bird, birdc) for name in IPV4_TEMPLATES]
    if ipv6 is not None:
        runs += [(name, *ipv6) for name in IPV6_TEMPLATES]
    for name, socket, daemon, client in runs:
        toml = (binaries.confdir / "conf.d" / f"{name}.toml").read_text()
        text = _rewrite_toml(toml, name, directory, socket, daemon, client)
        (confdir / "conf.d" / f"{name}.toml").write_text(text)
        template = (binaries.templates / f"{name}.cfg.template").read_text()
        template = _INCLUDE.sub(lambda m: f"{m[1]}{directory}/{m[2]}{m[3]}", template)
        if name == "bird_ipam":
            template = shim_ipam_template(template)
        if name in ("bird", "bird6") and fast_sessions is not None:
            template = shim_fast_sessions(template, fast_sessions)
        (confdir / "templates" / f"{name}.cfg.template").write_text(template)
    return confdir


def ippool_document(cidr: str = "10.244.0.0/16") -> dict[str, object]:
    """The lab's IPPool (crd.projectcalico.org/v1): no encapsulation, /26 blocks
    (an IPv6 ``cidr``: ``lab-pool-v6``, /122 blocks, Calico's IPv6 default)."""
    six = ":" in cidr
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": "lab-pool-v6" if six else "lab-pool"},
        "spec": {
            "cidr": cidr,
            "blockSize": 122 if six else 26,
            "ipipMode": "Never",
            "vxlanMode": "Never",
            "natOutgoing": False,
            "nodeSelector": "all()",
        },
    }


def block_affinity_document(node: str, cidr: str) -> dict[str, object]:
    """A confirmed BlockAffinity of ``cidr`` to ``node``, named as Calico's IPAM
    names them (``<node>-<cidr with . and / as ->``)."""
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BlockAffinity",
        "metadata": {"name": f"{node}-{re.sub('[.:/]', '-', cidr)}"},
        "spec": {"node": node, "cidr": cidr, "state": "confirmed", "deleted": "false"},
    }


def parse_neighbors(text: str) -> dict[str, dict[str, str]]:
    """The BGP protocols of a rendered ``bird.cfg``: name -> ``neighbor`` (address),
    ``as``, and the session options the comparison cares about (``rr_client``,
    ``rr_cluster_id``, ``passive``) as strings."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        head = re.match(r"protocol bgp (\S+) from bgp_template \{", line)
        if head:
            current = out.setdefault(head.group(1), {"rr_client": "no", "passive": "no"})
        elif current is not None and line.startswith("neighbor "):
            words = line.rstrip(";").split()
            current["neighbor"], current["as"] = words[1], words[-1]
        elif current is not None and line == "rr client;":
            current["rr_client"] = "yes"
        elif current is not None and line.startswith("rr cluster id "):
            current["rr_cluster_id"] = line.rstrip(";").split()[-1]
        elif current is not None and line == "passive on;":
            current["passive"] = "yes"
        elif current is not None and raw.startswith("}"):
            current = None
    return out


def peer_key(asn: str, rr_client: bool, cluster_id: str | None) -> tuple[str, ...]:
    """A rendered session as compared between confd and the imitation: the peer's
    AS, and ``rr client`` with its cluster ID on the local side."""
    return (f"as {asn}", f"rr client {cluster_id}" if rr_client else "plain")


def kubernetes_datastore(kubeconfig: Path) -> dict[str, str]:
    """calico-node's environment for the Kubernetes datastore."""
    return {"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": str(kubeconfig)}


class ConfdFleet:
    """One confd process per lab node, in watch mode, recorded with the lab's
    daemons (killed with the lab, and by ``calico-rr lab --cleanup``).

    ``datastore`` is Calico's datastore environment, as calico-node gets it:
    :func:`kubernetes_datastore` (a kubeconfig) or ``DATASTORE_TYPE=etcdv3``
    with ``ETCD_ENDPOINTS`` and the TLS files.  ``fast_sessions`` applies
    :func:`shim_fast_sessions` to every node."""

    def __init__(
        self,
        lab: LabNetwork,
        binaries: CalicoBinaries,
        datastore: Mapping[str, str],
        *,
        fast_sessions: BgpTimers | None = None,
    ) -> None:
        if datastore.get("DATASTORE_TYPE") not in ("kubernetes", "etcdv3"):
            raise LabError(f"confd datastore: DATASTORE_TYPE kubernetes or etcdv3, got {datastore}")
        self.lab = lab
        self.binaries = binaries
        self.datastore = dict(datastore)
        self.fast_sessions = fast_sessions
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        bird = shutil.which("bird", path="/usr/sbin:/sbin:/usr/bin")
        birdc = shutil.which("birdc", path="/usr/sbin:/sbin:/usr/bin")
        if bird is None or birdc is None:
            raise LabError("the confd renderer needs bird and birdc (Debian package bird)")
        self.bird, self.birdc = bird, birdc
        self.bird6 = self.birdc6 = ""
        if lab.v6 is not None:
            bird6 = shutil.which("bird6", path="/usr/sbin:/sbin:/usr/bin")
            birdc6 = shutil.which("birdc6", path="/usr/sbin:/sbin:/usr/bin")
            if bird6 is None or birdc6 is None:
                raise LabError("an IPv6 lab needs bird6 and birdc6 (Debian package bird)")
            self.bird6, self.birdc6 = bird6, birdc6

    def directory(self, node: LabNode) -> Path:
        assert self.lab.workdir is not None
        return self.lab.workdir / f"{node.name}.confd"

    def files(self, node: LabNode, family: Family = "ipv4") -> list[Path]:
        names = IPV6_TEMPLATES if family == "ipv6" else IPV4_TEMPLATES
        return [self.directory(node) / f"{name}.cfg" for name in names]

    def ready(self, node: LabNode, family: Family = "ipv4") -> bool:
        """confd has written all of the node's files (of ``family``)."""
        return all(path.is_file() for path in self.files(node, family))

    def stub(self, node: LabNode, family: Family = "ipv4") -> str:
        """The config BIRD (bird6) is started with: confd's ``bird.cfg``
        (``bird6.cfg``), included."""
        main = self.files(node, family)[0]
        return f'# calico-rr lab: rendered by Calico confd\ninclude "{main}";\n'

    def start(self) -> None:
        for node in self.lab.nodes:
            self._start_one(node)

    def _start_one(self, node: LabNode) -> None:
        out = self.directory(node)
        confdir = node_confdir(
            self.binaries,
            out,
            node.sock,
            bird=self.bird,
            birdc=self.birdc,
            fast_sessions=self.fast_sessions,
            ipv6=None
            if self.lab.v6 is None
            else (self.lab.v6.node(node.name).sock, self.bird6, self.birdc6),
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            **self.datastore,
            "NODENAME": node.name,
        }
        if self.lab.ip_family == "ipv6":
            # no IPv4 address to be the router ID: calico-node's setting for IPv6-only
            env["CALICO_ROUTER_ID"] = "hash"
        with (out / "confd.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(self.binaries.confd), "-confdir", str(confdir)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.procs[node.name] = proc
        self.lab.register_pid(proc.pid)

    def dead(self) -> list[str]:
        """Nodes whose confd exited (with the tail of its log)."""
        out = []
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.directory(self.lab.node(name)) / "confd.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                out.append(f"{name}: exit {proc.returncode} {' '.join(tail)}")
        return out

    def stop(self) -> None:
        for proc in self.procs.values():  # all at once, then wait for each
            if proc.poll() is None:
                proc.terminate()
        stuck = [
            f"{name} (pid {p.pid}) {why}"
            for name, p in self.procs.items()
            if (why := stop_process(p, 5.0))
        ]
        self.procs.clear()
        if stuck:
            raise LabError("confd " + "; ".join(stuck))


class ConfdAgent(LabAgent):
    """The lab agent when confd renders: BIRD configs come from :class:`ConfdFleet`;
    this agent only holds the verifier's view and starts each BIRD once its node's
    files exist (and again after :meth:`restart`)."""

    renderer = "confd"

    def __init__(
        self,
        lab: LabNetwork,
        fleet: ConfdFleet,
        *,
        workload_free: Collection[str] = (),
        family: Family = "ipv4",
    ) -> None:
        super().__init__(lab, workload_free=workload_free, family=family)
        self.fleet = fleet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def apply(self, state: CalicoState) -> list[str]:
        self.set_state(state)
        return self.start_ready()

    def start_ready(self) -> list[str]:
        """Start the BIRD of every node whose files confd has written; their names
        (and the bird6 of an IPv6 sibling's, names marked ``(ipv6)``)."""
        batch = []
        with self._lock:
            if self._closed:  # the lab is going away: start nothing more
                return []
            for node in self.lab.nodes:
                if node.running or node.name in self.held_down:
                    continue
                if not self.fleet.ready(node, self.family):
                    continue
                stub = self.fleet.stub(node, self.family)
                self._last[node.name] = stub
                batch.append((node, stub))
            self.lab.start_birds(batch)
        started = [node.name for node, _ in batch]
        if isinstance(self.v6, ConfdAgent):
            started += [f"{name} (ipv6)" for name in self.v6.start_ready()]
        return started

    def start(self, period: float = 0.2) -> ConfdAgent:
        """Start BIRDs as confd's files appear (nodes that join later, too)."""

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.start_ready()
                except LabError as exc:
                    if str(exc) not in self.errors:
                        self.errors.append(str(exc))

        self._thread = threading.Thread(target=loop, name="lab-confd-birds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop of :meth:`start` (:meth:`start_ready` still works)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def close(self) -> None:
        """Stop the loop, and start no BIRD again, whoever asks (the watcher's
        apply too): the lab's directory is about to be removed."""
        self.stop()
        with self._lock:
            self._closed = True
        if isinstance(self.v6, ConfdAgent):
            self.v6.close()

    def peer_names(self, node: LabNode) -> dict[str, str]:
        """confd's protocol names carry the peer address: protocol -> lab node."""
        control = node.control
        if control is None:
            return {}
        out = {}
        for proto in control.protocols():
            address = protocol_address(proto.name)
            peer = self._by_ip.get(address) if address else None
            if peer is not None:
                out[proto.name] = peer.name
        return out

    def imitation_peers(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """What the imitation (``core.lab.bird``) would render for the current state:
        node -> peer address -> :func:`peer_key`."""
        with self._lock:
            graph, state = self.graph, self.state
        if graph is None or state is None:
            raise LabError("the agent has no state yet")
        blocks: dict[str, str | None] = {n.name: n.block for n in self.lab.nodes}
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for bn in bird_nodes(graph, state, blocks):
            out[bn.name] = {
                p.ip: peer_key(str(p.asn), p.rr_client, bn.cluster_id if p.rr_client else None)
                for p in bn.peers
            }
        return out

    def confd_peers(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """What confd rendered for the same nodes: node -> peer address -> key.

        With the mesh on, confd also renders a ``Node_`` protocol beside the
        ``Mesh_`` one when a BGPPeer selects the same pair (BIRD runs one session
        per address); such twins count once, and twins that disagree on the
        session's options become a key of their own, so they show as a
        difference."""
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for name in self.imitation_peers():
            keys: dict[str, set[tuple[str, ...]]] = {}
            for p in self.rendered_peers(self.lab.node(name)).values():
                key = peer_key(p["as"], p["rr_client"] == "yes", p.get("rr_cluster_id"))
                keys.setdefault(p["neighbor"], set()).add(key)
            out[name] = {
                ip: next(iter(ks))
                if len(ks) == 1
                else ("conflicting protocols", *sorted(map(str, ks)))
                for ip, ks in keys.items()
            }
        return out

    def peer_differences(self) -> list[str]:
        """Where confd's rendered BGP peers differ from the imitation's, one line
        per (node, peer address); [] when they agree."""
        confd, imitation = self.confd_peers(), self.imitation_peers()
        out = []
        for name in sorted(imitation):
            mine, theirs = imitation[name], confd.get(name, {})
            for ip in sorted(mine.keys() | theirs.keys()):
                if mine.get(ip) != theirs.get(ip):
                    out.append(
                        f"{name} peer {ip}: confd {theirs.get(ip)}, imitation {mine.get(ip)}"
                    )
        return out

    def rendered_peers(self, node: LabNode) -> dict[str, dict[str, str]]:
        """The BGP protocols confd rendered for ``node`` (empty before its first file)."""
        path = self.fleet.files(node, self.family)[0]
        return parse_neighbors(path.read_text()) if path.is_file() else {}


def create_ipam(client: KubeClient, lab: LabNetwork, workload_free: Collection[str]) -> None:
    """The IPPool and one BlockAffinity per workload node (its lab /26), as
    Calico's IPAM leaves them; without them confd exports no pod block."""
    group = "crd.projectcalico.org/v1"
    client.create(api_path(group, "ippools"), ippool_document())
    if lab.v6 is not None:  # an IPv6 pool and /122 blocks (every node has both)
        client.create(api_path(group, "ippools"), ippool_document(str(POD_SUPERNET6)))
    for node in lab.nodes:
        if node.name in workload_free:
            continue
        for block in (node.block, node.block6):
            if block is not None:
                doc = block_affinity_document(node.name, block)
                client.create(api_path(group, "blockaffinities"), doc)


def etcd_ipam(lab: LabNetwork, workload_free: Collection[str]) -> list[tuple[str, bytes]]:
    """The same IPAM as :func:`create_ipam` as the etcd datastore holds it: the
    v3 IPPool, and one confirmed block affinity per workload node under
    ``/calico/ipam/v2/host/<node>/ipv4/block/<cidr with / as ->`` (libcalico-go's
    ``BlockAffinityKey``); (key, value) pairs to put."""
    doc = {**ippool_document(), "apiVersion": "projectcalico.org/v3"}
    out = [("/calico/resources/v3/projectcalico.org/ippools/lab-pool", json.dumps(doc).encode())]
    affinity = json.dumps({"state": "confirmed", "deleted": False}).encode()
    for node in lab.nodes:
        if node.name not in workload_free:
            cidr = node.block.replace("/", "-")
            out.append((f"/calico/ipam/v2/host/{node.name}/ipv4/block/{cidr}", affinity))
    return out
