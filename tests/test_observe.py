"""calico_rr.adapters.observe: metrics, health probes, the HTTP server, JSON logs.

Fast: no API server; the HTTP server listens on an ephemeral port of 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from calico_rr.adapters.observe import (
    Health,
    JsonFormatter,
    OperatorMetrics,
    serve,
    setup_logging,
)

# -- metrics ----------------------------------------------------------------------


def _samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _request_count(metrics: OperatorMetrics, verb: str | None = None) -> int:
    """API requests sent so far (optionally of one verb), read from the counters."""
    return int(
        sum(
            value
            for (name, labels), value in _samples(metrics).items()
            if name == "calico_rr_api_requests_total" and (verb is None or ("verb", verb) in labels)
        )
    )


def test_exposition_names_every_metric() -> None:
    m = OperatorMetrics()
    m.on_request("list", "nodes", 200)
    m.reconciles.labels("ok").inc()
    m.writes.labels("node").inc()
    m.relists.labels("nodes").inc()
    m.reconcile_seconds.observe(0.02)
    m.leader.set(1)
    m.phase.labels("Steady").set(1)
    m.sessions_per_rr.labels("max").set(7)
    text = m.exposition().decode()
    for name in (
        "calico_rr_api_requests_total",
        "calico_rr_reconciles_total",
        "calico_rr_writes_total",
        "calico_rr_relists_total",
        "calico_rr_reconcile_duration_seconds_bucket",
        "calico_rr_reconcile_duration_seconds_count",
        "calico_rr_route_reflectors",
        "calico_rr_sessions_per_rr",
        "calico_rr_bgppeers",
        "calico_rr_nodes",
        "calico_rr_transitions_in_progress",
        "calico_rr_leader",
        "calico_rr_phase",
    ):
        assert name in text, name
    samples = _samples(m)
    key = (("code", "200"), ("resource", "nodes"), ("verb", "list"))
    assert samples[("calico_rr_api_requests_total", key)] == 1.0
    assert samples[("calico_rr_reconciles_total", (("result", "ok"),))] == 1.0
    assert samples[("calico_rr_leader", ())] == 1.0
    assert samples[("calico_rr_phase", (("phase", "Steady"),))] == 1.0
    assert samples[("calico_rr_reconcile_duration_seconds_count", ())] == 1.0


def test_on_request_counts_by_verb_resource_and_code() -> None:
    m = OperatorMetrics()
    assert _request_count(m) == 0
    for _ in range(3):
        m.on_request("list", "nodes", 200)
    m.on_request("watch", "nodes", 200)
    m.on_request("patch", "nodes", 200)
    m.on_request("patch", "nodes", 409)
    m.on_request("get", "leases", 404)
    assert _request_count(m) == 7
    assert _request_count(m, "list") == 3
    assert _request_count(m, "patch") == 2
    assert _request_count(m, "watch") == 1
    assert _request_count(m, "delete") == 0
    samples = _samples(m)
    conflict = (("code", "409"), ("resource", "nodes"), ("verb", "patch"))
    assert samples[("calico_rr_api_requests_total", conflict)] == 1.0


def test_registries_are_per_instance() -> None:
    a, b = OperatorMetrics(), OperatorMetrics()
    a.on_request("list", "nodes", 200)
    assert _request_count(a) == 1
    assert _request_count(b) == 0
    assert b'verb="list"' not in b.exposition()


# -- health -------------------------------------------------------------------------


def test_health_alive_until_stale() -> None:
    h = Health(stale_after=0.05)
    assert h.alive() == (True, "ok")
    time.sleep(0.1)
    ok, why = h.alive()
    assert not ok
    assert "silent" in why
    h.beat()
    assert h.alive()[0]


def test_health_ready_flag_and_reason() -> None:
    h = Health()
    ok, why = h.ready()
    assert not ok
    assert why == "starting"
    h.set_ready(False, "caches not synced")
    assert h.ready() == (False, "caches not synced")
    h.set_ready(True, "leader")
    assert h.ready() == (True, "leader")
    h.set_ready(True)
    assert h.ready() == (True, "ok")


# -- the HTTP server ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, OperatorMetrics, Health]]:
    metrics = OperatorMetrics()
    health = Health()
    srv = serve(0, metrics, health, host="127.0.0.1")
    try:
        yield srv, metrics, health
    finally:
        srv.shutdown()
        srv.server_close()


def _get(srv: ThreadingHTTPServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_serve_probes_and_metrics(
    server: tuple[ThreadingHTTPServer, OperatorMetrics, Health],
) -> None:
    srv, metrics, health = server
    assert srv.server_address[1] > 0
    status, ctype, body = _get(srv, "/healthz")
    assert status == 200
    assert body == b"ok\n"
    assert ctype.startswith("text/plain")

    status, _, body = _get(srv, "/readyz")
    assert status == 503
    assert body == b"starting\n"
    health.set_ready(True, "follower")
    status, _, body = _get(srv, "/readyz")
    assert status == 200
    assert body == b"follower\n"
    # a query string does not change the route
    assert _get(srv, "/readyz?verbose=1")[0] == 200

    metrics.on_request("list", "nodes", 200)
    status, ctype, body = _get(srv, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=")
    assert b'calico_rr_api_requests_total{code="200",resource="nodes",verb="list"} 1.0' in body

    status, _, body = _get(srv, "/nope")
    assert status == 404
    assert body == b"not found\n"
    assert _get(srv, "/")[0] == 404


def test_serve_liveness_fails_when_loop_stalls() -> None:
    health = Health(stale_after=0.05)
    srv = serve(0, OperatorMetrics(), health, host="127.0.0.1")
    try:
        time.sleep(0.1)
        status, _, body = _get(srv, "/healthz")
        assert status == 503
        assert b"silent" in body
        health.beat()
        assert _get(srv, "/healthz")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


# -- JSON logs ------------------------------------------------------------------------


def _logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("calico_rr.test_observe")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_json_formatter_one_object_per_line_with_extras() -> None:
    stream = io.StringIO()
    logger = _logger(stream)
    logger.info("became leader", extra={"identity": "replica-a", "count": 3})
    logger.warning("lost %s", "leadership\nwith a newline")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "became leader"
    assert first["level"] == "info"
    assert first["logger"] == "calico_rr.test_observe"
    assert first["identity"] == "replica-a"
    assert first["count"] == 3
    assert isinstance(first["ts"], float)
    assert abs(first["ts"] - time.time()) < 60
    # no LogRecord internals leak into the output
    for internal in ("args", "levelno", "pathname", "msecs", "exc_info", "thread"):
        assert internal not in first
    assert second["msg"] == "lost leadership\nwith a newline"
    assert second["level"] == "warning"
    assert "identity" not in second


def test_json_formatter_exception_text_and_unserialisable_extras() -> None:
    stream = io.StringIO()
    logger = _logger(stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("reconcile failed", extra={"where": object(), "names": {"a"}})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["level"] == "error"
    assert "Traceback" in out["error"]
    assert "RuntimeError: boom" in out["error"]
    assert out["where"].startswith("<object object")
    assert out["names"] == "{'a'}"


def test_setup_logging_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger("calico_rr")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        setup_logging("debug")
        logging.getLogger("calico_rr.some.module").debug("hello", extra={"k": "v"})
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1
        record = json.loads(err[0])
        assert record["msg"] == "hello"
        assert record["k"] == "v"
        assert record["logger"] == "calico_rr.some.module"

        setup_logging("warning", json_format=False)
        log = logging.getLogger("calico_rr.some.module")
        log.info("dropped")
        log.warning("kept")
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1
        assert err[0].endswith("WARNING calico_rr.some.module: kept")
        assert len(root.handlers) == 1  # replaced, not stacked
    finally:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def test_set_phase_marks_exactly_one_phase_including_non_reconcile_states() -> None:
    from calico_rr.adapters.observe import PHASES

    m = OperatorMetrics()
    for phase in ("Steady", "InvalidConfig", "Error", "Uninstalling", "NoConfig", "Making"):
        m.set_phase(phase)
        values = {p: m.registry.get_sample_value("calico_rr_phase", {"phase": p}) for p in PHASES}
        assert values[phase] == 1
        assert sum(v or 0 for v in values.values()) == 1, values


def test_a_client_hanging_up_is_logged_at_debug_not_printed(
    server: tuple[ThreadingHTTPServer, OperatorMetrics, Health],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv, _, _ = server
    caplog.set_level(logging.DEBUG, logger="calico_rr.adapters.observe")
    try:
        raise BrokenPipeError("the scraper went away")
    except BrokenPipeError:
        srv.handle_error(None, ("127.0.0.1", 5))  # what socketserver calls in the handler
    assert capsys.readouterr().err == ""
    [record] = [r for r in caplog.records if r.name == "calico_rr.adapters.observe"]
    assert record.levelno == logging.DEBUG and record.exc_info is not None
