"""The lab's network: one namespace per emulated node on a bridge, one BIRD each.

Layout (nothing touches the host's own network stack):

* a *hub* namespace ``<id>-hub`` holding the bridge ``br0``;
* per node a namespace ``<id>-<i>`` with ``eth0`` (a veth whose other end sits in
  the hub, enslaved to the bridge) addressed ``10.99.x.y/16``, and loopback up;
* per node a BIRD 1.6 daemon started inside its namespace in the foreground, with
  its own config file, control socket and log in the lab's work directory;
* with IPv6 (``ip_family`` ``dual`` or ``ipv6``) also ``fd99::x:y/64`` on ``eth0``
  and a second daemon, ``bird6``, per node: :attr:`LabNetwork.v6` is the same
  namespaces seen as IPv6 lab nodes (their address, pod block, socket and
  daemon), so the agent, the sampler and the comparisons run on it unchanged.

Every namespace, link, daemon and temporary directory the lab makes is recorded in a registry file
(``/run/calico-rr-lab/<id>.json``) before it is made.  :meth:`LabNetwork.close`
removes them (deleting a namespace removes its veth ends); daemons are started
with a parent-death signal so they die with the lab process even on SIGKILL, and
:func:`cleanup_stale` removes the namespaces of any lab whose process is gone
(``calico-rr lab --cleanup``, and every new lab does it first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from calico_rr.adapters.lab.birdctl import BirdControl, BirdError
from calico_rr.errors import CalicoRRError
from calico_rr.sandbox.process import stop_process

REGISTRY = Path("/run/calico-rr-lab")
#: How long a clean stop (SIGTERM: BIRD sends every peer a Cease) may take before
#: SIGKILL.  It was 10 s; an RR of a 1000-node lab closing 333 sessions under load
#: may need more (suspected, not measured: :attr:`LabNetwork.forced_stops` says).
CLEAN_STOP_GRACE = 60.0
SUBNET = ipaddress.IPv4Network("10.99.0.0/16")
POD_SUPERNET = ipaddress.IPv4Network("10.244.0.0/16")
SUBNET6 = ipaddress.IPv6Network("fd99::/64")
#: Calico's default IPv6 block size is /122 (64 addresses, like the IPv4 /26)
POD_SUPERNET6 = ipaddress.IPv6Network("fd44::/48")
IP_FAMILIES = ("ipv4", "ipv6", "dual")
MAX_NODES = 1000
#: How long a starting BIRD may take to answer on its control socket.  It answers
#: in milliseconds on an idle host, but CI once saw one of a 20-node lab take over
#: 8 s (test_lab_confd_random, seed 35), on the disk that stalled etcd's fsync for
#: 27 s (docs/CONTROLPLANE.md); waiting longer costs nothing when it is fast.
BIRD_SOCKET_WAIT = 30.0
#: the host's IPv4 neighbour-table thresholds (one ARP table for every namespace)
NEIGH_SYSCTLS = Path("/proc/sys/net/ipv4/neigh/default")
NEIGH_KEYS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")


class LabError(CalicoRRError):
    """The lab could not be built or run (missing tool, not root, a command failed)."""


def require_tools(*, ipv6: bool = False) -> dict[str, str]:
    """Paths of ``ip``, ``bird`` (and ``bird6`` with ``ipv6``) and the check that we
    are root; LabError naming what is missing (``scripts/lab-install.sh`` installs
    BIRD; Debian's package ships bird6 too)."""
    found: dict[str, str] = {}
    missing = []
    for tool in ("ip", "bird", *(("bird6",) if ipv6 else ())):
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if path is None:
            missing.append(tool)
        else:
            found[tool] = path
    if missing:
        raise LabError(
            f"missing {', '.join(missing)}: run scripts/lab-install.sh "
            "(Debian packages iproute2 and bird)"
        )
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces)")
    return found


def node_ip(index: int) -> str:
    """Node ``index``'s address: 10.99.(1 + i // 250).(1 + i % 250)."""
    return str(SUBNET.network_address + 256 * (1 + index // 250) + 1 + index % 250)


def node_ip6(index: int) -> str:
    """Node ``index``'s IPv6 address: fd99::(1 + i // 250):(1 + i % 250), the
    IPv4 address's last two numbers as hex groups."""
    return str(SUBNET6.network_address + 65536 * (1 + index // 250) + 1 + index % 250)


def pod_block6(index: int) -> str:
    """Node ``index``'s /122 pod block in fd44::/48."""
    return str(ipaddress.IPv6Network((int(POD_SUPERNET6.network_address) + index * 64, 122)))


def pod_block(index: int) -> str:
    """Node ``index``'s /26 pod block in 10.244.0.0/16 (up to 1024 nodes)."""
    return str(ipaddress.IPv4Network((int(POD_SUPERNET.network_address) + index * 64, 26)))


def _run(args: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(args[:4])}...: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def die_with_parent() -> None:
    """``preexec_fn`` of the lab's daemons: die with the lab, own session."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the daemon dies with the lab
    os.setsid()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> set[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _list(record: dict[str, object], key: str) -> list[object]:
    value = record.get(key)
    return list(value) if isinstance(value, list) else []


def _remove(record: dict[str, object], sysctls: Path = NEIGH_SYSCTLS) -> None:
    for pid in _list(record, "pids"):
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError, ValueError):
            os.kill(int(str(pid)), signal.SIGKILL)
    present = _namespaces()
    for ns in _list(record, "namespaces"):
        if ns in present:
            _run(["ip", "netns", "delete", str(ns)], check=False)
    for work in [record.get("workdir"), *_list(record, "directories")]:
        # only ever a temporary directory: the record is a file anyone could edit
        if isinstance(work, str) and work.startswith(tempfile.gettempdir()):
            shutil.rmtree(work, ignore_errors=True)
    _restore_limits(record.get("neighbour_limits"), sysctls)


def _restore_limits(limits: object, root: Path) -> None:
    """Put back the neighbour-table thresholds a lab raised (a SIGKILLed lab cannot
    itself), each only while it still holds the lab's value: a later lab that
    raised it further keeps its own."""
    if not isinstance(limits, dict):
        return
    for key in NEIGH_KEYS:  # lowering: thresh1 first keeps 1 <= 2 <= 3
        pair = limits.get(key)
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)):
            continue
        with contextlib.suppress(OSError, ValueError):
            if int((root / key).read_text()) == pair[1]:
                (root / key).write_text(str(pair[0]))


@contextlib.contextmanager
def neighbour_limits(
    entries: int, root: Path = NEIGH_SYSCTLS, lab: LabNetwork | None = None
) -> Iterator[dict[str, int]]:
    """Raise the host's IPv4 neighbour-table thresholds so ``entries`` entries fit
    without garbage collection; restore the old values afterwards.  With ``lab``,
    the change is recorded in the lab's registry file before it is made, so that
    :func:`cleanup_stale` restores them after a SIGKILL.

    The ARP table is one per host, shared by every namespace (its ``gc_thresh``
    sysctls exist only in the initial namespace): past ``gc_thresh3`` (1024 by
    default) the kernel refuses new entries ("neighbour table overflow") and
    sessions fail to start.  Yields the thresholds in force, or nothing (an
    empty dict) where they cannot be read: not the host's initial namespace."""
    try:
        old = {k: int((root / k).read_text()) for k in NEIGH_KEYS}
    except OSError:
        yield {}
        return
    want = {"gc_thresh1": entries, "gc_thresh2": 2 * entries, "gc_thresh3": 4 * entries}
    new = {k: max(old[k], want[k]) for k in NEIGH_KEYS}
    if lab is not None:
        lab.register_neighbour_limits({k: (old[k], new[k]) for k in NEIGH_KEYS})
    try:
        for k in reversed(NEIGH_KEYS):  # thresh3 first: the kernel keeps 1 <= 2 <= 3
            (root / k).write_text(str(new[k]))
        yield new
    finally:
        for k in NEIGH_KEYS:
            (root / k).write_text(str(old[k]))


def cleanup_stale(registry: Path = REGISTRY, sysctls: Path = NEIGH_SYSCTLS) -> list[str]:
    """Remove what labs whose process has died left behind; their ids."""
    removed: list[str] = []
    if not registry.is_dir():
        return removed
    for path in sorted(registry.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        owner = record.get("owner")
        if isinstance(owner, int) and _pid_alive(owner) and owner != os.getpid():
            continue
        _remove(record, sysctls)
        path.unlink(missing_ok=True)
        removed.append(path.stem)
    return removed


@dataclass
class LabNode:
    name: str
    ns: str
    ip: str
    block: str
    conf: Path
    sock: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    control: BirdControl | None = None
    #: the node's IPv6 address and /122 block (None: the lab has no IPv6)
    ip6: str | None = None
    block6: str | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LabNetwork:
    """``size`` emulated nodes, named ``f"{name_prefix}{i:02d}"``.

    ``ip_family`` ``dual`` or ``ipv6`` gives every node an IPv6 address and pod
    block too, and :attr:`v6`: the IPv6 side as a network of its own (same
    namespaces and names; ``ip``/``block`` the IPv6 ones; daemons are ``bird6``).
    The IPv4 address stays on ``eth0`` in an IPv6 lab: it is the lab's plumbing
    (and BIRD's router ID), whether the Nodes announce it or not."""

    size: int
    name_prefix: str = "lab-n"
    registry: Path = REGISTRY
    lab_id: str = field(default_factory=lambda: f"crr{os.getpid() % 100000}")
    nodes: list[LabNode] = field(default_factory=list)
    workdir: Path | None = None
    _record: dict[str, object] = field(default_factory=dict)
    ip_family: str = "ipv4"
    #: "ipv4": this network's daemons are ``bird``; "ipv6": a :attr:`v6` view
    family: str = "ipv4"
    v6: LabNetwork | None = None
    #: nodes whose clean stop ran out of :data:`CLEAN_STOP_GRACE` and was SIGKILLed
    #: (their peers then saw a crash, not a Cease)
    forced_stops: list[str] = field(default_factory=list)

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> LabNetwork:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_ipv6(self) -> bool:
        return self.ip_family in ("ipv6", "dual")

    @property
    def hub(self) -> str:
        return f"{self.lab_id}-hub"

    def _save(self) -> None:
        self.registry.mkdir(parents=True, exist_ok=True)
        path = self.registry / f"{self.lab_id}.json"
        path.write_text(json.dumps(self._record))

    def up(self) -> None:
        if not 1 <= self.size <= MAX_NODES:
            raise LabError(f"lab size must be 1..{MAX_NODES}, got {self.size}")
        if self.ip_family not in IP_FAMILIES:
            raise LabError(f"lab ip family must be ipv4, ipv6 or dual, got {self.ip_family!r}")
        require_tools(ipv6=self.has_ipv6)
        cleanup_stale(self.registry)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"calico-rr-{self.lab_id}-"))
        names = [f"{self.lab_id}-{i}" for i in range(self.size)]
        self._record = {
            "owner": os.getpid(),
            "workdir": str(self.workdir),
            "namespaces": [self.hub, *names],
            "pids": [],
        }
        self._save()  # before anything exists: an interrupted build is still cleaned
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    def _build(self, names: list[str]) -> None:
        assert self.workdir is not None
        existing = _namespaces()
        clash = [n for n in [self.hub, *names] if n in existing]
        if clash:
            raise LabError(f"namespace {clash[0]} already exists (another lab with this id?)")
        batch = [f"netns add {n}" for n in [self.hub, *names]]
        _run(["ip", "-batch", "-"], stdin="\n".join(batch) + "\n")
        hub_cmds = [
            "link add br0 type bridge",
            "link set br0 up",
            "link set lo up",
        ]
        root_cmds = []
        for i, ns in enumerate(names):
            hub_if = f"h{i}"
            root_cmds.append(
                f"link add {hub_if} netns {self.hub} type veth peer name eth0 netns {ns}"
            )
            hub_cmds += [f"link set {hub_if} master br0", f"link set {hub_if} up"]
        _run(["ip", "-batch", "-"], stdin="\n".join(root_cmds) + "\n")
        _run(["ip", "-n", self.hub, "-batch", "-"], stdin="\n".join(hub_cmds) + "\n")
        for i, ns in enumerate(names):
            ip = node_ip(i)
            cmds = [
                "link set lo up",
                f"addr add {ip}/{SUBNET.prefixlen} dev eth0",
                "link set eth0 up",
            ]
            if self.has_ipv6:
                _enable_ipv6(ns)
                # nodad: duplicate address detection would hold the address
                # "tentative" (BIRD cannot bind it) for a second or more
                cmds.insert(2, f"addr add {node_ip6(i)}/{SUBNET6.prefixlen} dev eth0 nodad")
            _run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(cmds) + "\n")
            name = f"{self.name_prefix}{i:02d}"
            self.nodes.append(
                LabNode(
                    name=name,
                    ns=ns,
                    ip=ip,
                    block=pod_block(i),
                    conf=self.workdir / f"{name}.conf",
                    sock=self.workdir / f"{name}.ctl",
                    log=self.workdir / f"{name}.log",
                    ip6=node_ip6(i) if self.has_ipv6 else None,
                    block6=pod_block6(i) if self.has_ipv6 else None,
                )
            )
        if self.has_ipv6:
            self.v6 = self._ipv6_view()

    def _ipv6_view(self) -> LabNetwork:
        """The IPv6 side: the same namespaces as lab nodes of their own, sharing
        this network's registry record (its daemons die with the lab too)."""
        assert self.workdir is not None
        view = LabNetwork(
            self.size,
            name_prefix=self.name_prefix,
            registry=self.registry,
            lab_id=self.lab_id,
            workdir=self.workdir,
            ip_family=self.ip_family,
            family="ipv6",
        )
        view._record = self._record
        for n in self.nodes:
            assert n.ip6 is not None and n.block6 is not None
            view.nodes.append(
                dataclasses.replace(
                    n,
                    ip=n.ip6,
                    block=n.block6,
                    conf=self.workdir / f"{n.name}.conf6",
                    sock=self.workdir / f"{n.name}.ctl6",
                    log=self.workdir / f"{n.name}.log6",
                )
            )
        return view

    def close(self) -> None:
        if self.v6 is not None:
            self.v6.close()
        for node in self.nodes:
            self.stop_bird(node)
        if self.family != "ipv6":  # a view leaves the rest to the owning network
            _remove(self._record)
            (self.registry / f"{self.lab_id}.json").unlink(missing_ok=True)
        self.nodes = []

    # -- daemons ----------------------------------------------------------

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def start_bird(self, node: LabNode, config: str) -> None:
        """Write ``config`` and start the node's BIRD; returns once its socket answers."""
        self.start_birds([(node, config)])

    def start_birds(self, configs: list[tuple[LabNode, str]]) -> None:
        """Start several BIRDs at once, then wait for each socket.  Started one after
        the other, the first would connect to peers not listening yet and sit out
        BIRD's error wait (5-30 s with Calico's timers) before trying again."""
        for node, config in configs:
            self._spawn_bird(node, config)
        # one deadline for the batch: a thousand daemons that start exchanging
        # a million routes at once answer their sockets late on two cores
        deadline = time.monotonic() + BIRD_SOCKET_WAIT + 0.2 * len(configs)
        for node, _ in configs:
            self._await_bird(node, max(deadline - time.monotonic(), 1.0))

    def _spawn_bird(self, node: LabNode, config: str) -> None:
        if node.running:
            raise LabError(f"BIRD of {node.name} is already running")
        node.conf.write_text(config)
        node.sock.unlink(missing_ok=True)
        bird = require_tools(ipv6=self.family == "ipv6")[
            "bird6" if self.family == "ipv6" else "bird"
        ]
        log = node.log.open("ab")
        try:
            node.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    node.ns,
                    bird,
                    "-f",
                    "-c",
                    str(node.conf),
                    "-s",
                    str(node.sock),
                    "-P",
                    str(node.sock.with_suffix(".pid")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        self.register_pid(node.proc.pid)
        node.control = BirdControl(node.sock)

    def _await_bird(self, node: LabNode, timeout: float) -> None:
        assert node.proc is not None and node.control is not None
        deadline = time.monotonic() + timeout
        while True:
            if node.proc.poll() is not None:
                try:
                    tail = node.log.read_text(errors="replace").strip().splitlines()[-3:]
                except OSError as exc:  # e.g. the lab's directory removed meanwhile
                    tail = [f"(no log: {exc})"]
                raise LabError(f"BIRD of {node.name} exited: {' | '.join(tail)}")
            if node.sock.exists():
                try:
                    node.control.call("show status")
                    return
                except BirdError:  # not ready yet
                    pass
            if time.monotonic() > deadline:
                raise LabError(f"BIRD of {node.name} did not open its control socket")
            time.sleep(0.02)

    def stop_bird(self, node: LabNode, *, kill: bool = True) -> None:
        """Stop the node's BIRD: SIGKILL (a crash: no NOTIFICATION to peers) or
        SIGTERM (a clean shutdown, SIGKILL after :data:`CLEAN_STOP_GRACE`)."""
        if node.control is not None:
            node.control.close()
            node.control = None
        proc = node.proc
        if proc is None:
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        stuck = stop_process(proc, 10.0 if kill else CLEAN_STOP_GRACE, sig)
        if stuck is not None:  # the lab cannot reuse the node while it runs
            raise LabError(f"BIRD of {node.name} (pid {proc.pid}) {stuck}")
        if not kill and proc.returncode == -signal.SIGKILL:
            self.forced_stops.append(node.name)
        node.proc = None

    def register_pid(self, pid: int) -> None:
        """Record a daemon of the lab (killed by :meth:`close` and by
        :func:`cleanup_stale` once the lab's process is gone)."""
        pids = self._record.setdefault("pids", [])
        assert isinstance(pids, list)
        pids.append(pid)
        self._save()

    def register_neighbour_limits(self, limits: dict[str, tuple[int, int]]) -> None:
        """Record the host's neighbour-table thresholds the lab raises (key: (old,
        new)), put back by :func:`cleanup_stale` once the lab's process is gone."""
        self._record["neighbour_limits"] = {k: list(v) for k, v in limits.items()}
        self._save()

    def register_directory(self, path: Path) -> None:
        """Record a temporary directory the lab's parts live in (a control plane's),
        removed by :func:`cleanup_stale` once the lab's process is gone: a SIGKILLed
        lab cannot remove it itself."""
        directories = self._record.setdefault("directories", [])
        assert isinstance(directories, list)
        directories.append(str(path))
        self._save()

    def kernel_routes(self, node: LabNode) -> set[str]:
        """Pod-block routes in the node's kernel table (installed by BIRD)."""
        family = ["-6"] if self.family == "ipv6" else []
        out = _run(
            ["ip", "-n", node.ns, *family, "-j", "route", "show", "proto", "bird"], check=False
        )
        try:
            rows = json.loads(out or "[]")
        except ValueError:
            return set()
        return {str(r.get("dst")) for r in rows if isinstance(r, dict)}


def _enable_ipv6(ns: str) -> None:
    """IPv6 on in the namespace (a host may boot with it disabled by default)."""
    keys = [f"net.ipv6.conf.{dev}.disable_ipv6=0" for dev in ("all", "default", "eth0")]
    _run(["ip", "netns", "exec", ns, "sysctl", "-qw", *keys])
