"""Observability for the operator: Prometheus metrics, /healthz and /readyz, JSON logs.

One :class:`OperatorMetrics` per operator instance, on its own registry (so
tests can run several operators in one process).  The HTTP server is the
standard library's threading server: three read-only endpoints need no
framework.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from calico_rr.core.operator.state import Phase

log = logging.getLogger(__name__)

#: every value of ``calico_rr_phase{phase}``: the reconcile phases, then the
#: states a pass can end in without a decision
PHASES: tuple[str, ...] = (*(p.value for p in Phase), "NoConfig", "InvalidConfig", "Error")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "calico_rr_reconciles", "Reconcile passes by outcome", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "calico_rr_reconcile_duration_seconds",
            "Time of one reconcile pass (plan + writes)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.api_requests = Counter(
            "calico_rr_api_requests",
            "Requests sent to the datastore (Kubernetes API server, or etcd: resource etcd)",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.writes = Counter(
            "calico_rr_writes", "Objects written by reconciles", ["kind"], registry=r
        )
        self.route_reflectors = Gauge(
            "calico_rr_route_reflectors", "Route reflectors in the current plan", registry=r
        )
        self.sessions_per_rr = Gauge(
            "calico_rr_sessions_per_rr",
            "BGP sessions per route reflector in the current plan",
            ["stat"],
            registry=r,
        )
        self.bgppeers = Gauge("calico_rr_bgppeers", "BGPPeer objects we own", registry=r)
        self.nodes = Gauge("calico_rr_nodes", "Nodes in the cache", registry=r)
        self.transitions = Gauge(
            "calico_rr_transitions_in_progress",
            "Nodes holding old and new peerings during a make-before-break rollout",
            registry=r,
        )
        self.leader = Gauge("calico_rr_leader", "1 while this replica is the leader", registry=r)
        self.phase = Gauge(
            "calico_rr_phase", "Current reconcile phase (1 = active)", ["phase"], registry=r
        )
        self.relists = Counter(
            "calico_rr_relists",
            "Re-lists after a watch expired (410 Gone; on etcd: history compacted)",
            ["resource"],
            registry=r,
        )

    def set_phase(self, phase: str) -> None:
        """``calico_rr_phase``: 1 for ``phase``, 0 for every other phase the
        operator can be in (reconcile phases, plus NoConfig, InvalidConfig, Error)."""
        for name in (*PHASES, phase):
            self.phase.labels(name).set(1 if name == phase else 0)

    def on_request(self, verb: str, resource: str, code: int) -> None:
        self.api_requests.labels(verb, resource, str(code)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Liveness = the main loop ticked recently; readiness = caches synced."""

    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self._beat = time.monotonic()
        self._ready = False
        self._why = "starting"
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def set_ready(self, ready: bool, why: str = "") -> None:
        with self._lock:
            self._ready = ready
            self._why = why

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            age = time.monotonic() - self._beat
        if age > self.stale_after:
            return False, f"main loop silent for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._why or "ok"


class _QuietServer(ThreadingHTTPServer):
    """A probe or scraper that hangs up mid-answer is logged at DEBUG, not printed
    as a traceback on stderr (socketserver's default)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics server: a request from %s failed", client_address, exc_info=True)


def serve(
    port: int, metrics: OperatorMetrics, health: Health, *, host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Start /healthz, /readyz and /metrics in a daemon thread; returns the server
    (``server.server_address[1]`` is the port when ``port`` was 0)."""

    def probe(check: Callable[[], tuple[bool, str]]) -> Callable[[], tuple[int, str, bytes]]:
        def run() -> tuple[int, str, bytes]:
            ok, why = check()
            return (200 if ok else 503), "text/plain; charset=utf-8", (why + "\n").encode()

        return run

    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
        "/healthz": probe(health.alive),
        "/readyz": probe(health.ready),
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.exposition()),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                code, ctype, body = 404, "text/plain", b"not found\n"
            else:
                code, ctype, body = route()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would drown the operator's own log

    server = _QuietServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus ``extra=`` fields."""

    _STD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", *, json_format: bool = True) -> None:
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("calico_rr")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
