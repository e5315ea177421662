"""The HTML page ``calico-rr demo`` writes (calico_rr.adapters.demo_report), built from a
hand-made result and trace, and the trace the demo's flow records (adapters.demo)."""

from __future__ import annotations

import base64
import io
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from calico_rr.adapters.demo import DEMO_KEYS, DemoTrace, Sample, demo_result
from calico_rr.adapters.demo_report import (
    DemoPage,
    demo_page,
    render_demo_report,
    write_demo_report,
)
from calico_rr.adapters.plots import MISSING_EXTRA
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph
from calico_rr.errors import InputError

SECTIONS = ("result", "topology", "timeline", "join", "zone-failure")


def _result(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "nodes": 30,
        "zones": 3,
        "converged": True,
        "verified": True,
        "seconds_to_converge": 3.2,
        "verification": {"reachable": True, "single_rr_failure_tolerant": True, "sessions": 90},
        "topology": "multi",
        "route_reflectors": 3,
        "bgppeer_objects": 2,
        "api_writes_per_node_join": 1,
        "join_writes": ["patch nodes node-00030"],
        "seconds_to_converge_after_join": 0.05,
        "zone_failure": {
            "zone": "zone-a",
            "failed_nodes": 11,
            "seconds_to_reconverge": 1.5,
            "surviving_nodes_reach_each_other": True,
        },
        "api_lists_after_sync": 0,
        "operator_lists_after_sync": 0,
        "api_requests_total": 120,
        "seconds_total": 9.1,
    }
    result.update(changes)
    return demo_result(result)


def _trace() -> DemoTrace:
    trace = DemoTrace()
    trace.samples = [
        Sample(0.0, "(none)", "", None, None),
        Sample(0.4, "Making", "writing 3 RRs", 3, True),
        Sample(1.1, "Confirming", "waiting for sessions", 3, True),
        Sample(2.0, "MeshOff", "switching the mesh off", 3, True),
        Sample(3.2, "Steady", "3 RRs <ok> & done", 3, False),
    ]
    trace.events = [(0.0, "operator started on 30 nodes"), (4.0, "zone zone-a fails")]
    trace.graph = plan_graph(plan(synthetic_cluster(30, zones=3), PlanConfig(topology="multi")))
    return trace


def _page(**changes: Any) -> DemoPage:
    base: dict[str, Any] = {
        "result": _result(),
        "samples": _trace().samples,
        "events": _trace().events,
        "datastore": "kubernetes",
        "written": "2026-12-05 19:00:00 UTC",
        "diagram_png": None,
        "drawing_note": "no drawing: test",
    }
    base.update(changes)
    return DemoPage(**base)


class _Refs(HTMLParser):
    """Every src/href on the page, and the ids of its sections."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.sections: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "section":
            self.sections.append(found.get("id") or "")
        if tag == "script":
            self.scripts += 1


def _parse(text: str) -> _Refs:
    parser = _Refs()
    parser.feed(text)
    return parser


def test_page_has_every_section_and_the_numbers() -> None:
    text = render_demo_report(_page())
    assert _parse(text).sections == list(SECTIONS)
    assert "calico-rr demo: 30 nodes, multi" in text
    assert 'class="verdict ok"' in text
    assert "patch nodes node-00030" in text  # the join's write, in its own section
    assert "zone-a" in text and "seconds to re-converge" in text
    # one timeline row per sample and per event
    timeline = text[text.index('id="timeline-table"') :]
    timeline = timeline[: timeline.index("</table>")]
    assert timeline.count("<tr") == 1 + 5 + 2
    assert "Confirming" in text and "MeshOff" in text
    assert 'id="phase-bar"' in text
    assert "no drawing: test" in text


def test_text_is_escaped() -> None:
    text = render_demo_report(_page(result=_result(topology="<b>x</b>")))
    assert "<b>x</b>" not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert "3 RRs &lt;ok&gt; &amp; done" in text


def test_page_references_nothing_outside_itself() -> None:
    png = b"\x89PNG fake"
    parsed = _parse(render_demo_report(_page(diagram_png=png, drawing_note="")))
    assert parsed.scripts == 0
    assert parsed.refs  # the icon, the nav links and the image were seen
    for ref in parsed.refs:
        assert ref.startswith(("data:", "#")), ref
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in parsed.refs


def test_a_failed_run_says_so() -> None:
    result = _result(verified=False)
    del result["zone_failure"]
    text = render_demo_report(_page(result=result))
    assert 'class="verdict fail"' in text
    assert "No zone failed" in text


def test_demo_page_draws_the_converged_topology() -> None:
    page = demo_page(_result(), _trace(), datastore="etcdv3")
    assert page.diagram_png is not None and page.drawing_note == ""
    assert Image.open(io.BytesIO(page.diagram_png)).format == "PNG"
    assert page.diagram_summary and "multi: 30 BGP nodes" in page.diagram_summary[0]
    assert "datastore etcdv3" in render_demo_report(page)


def test_without_matplotlib_the_page_says_how_to_get_the_drawing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page = demo_page(_result(), _trace(), datastore="kubernetes")
    assert page.diagram_png is None
    assert MISSING_EXTRA in page.drawing_note
    assert MISSING_EXTRA.replace("'", "&#x27;") in render_demo_report(page)


def test_write_is_atomic_and_refuses_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "demo.html"
    write_demo_report(str(out), _result(), _trace(), datastore="kubernetes")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["demo.html"]  # no temporary file left
    with pytest.raises(InputError, match="is a directory"):
        write_demo_report(str(tmp_path), _result(), _trace(), datastore="kubernetes")


def test_trace_keeps_only_changes() -> None:
    trace = DemoTrace()
    steady = {"phase": "Steady", "message": "ok", "routeReflectors": 3, "meshEnabled": False}
    trace.record({"phase": "Making", "message": "m", "routeReflectors": 3, "meshEnabled": True})
    trace.record({"phase": "Making", "message": "m", "routeReflectors": 3, "meshEnabled": True})
    trace.record(steady)
    trace.record(steady)
    trace.record({})  # no status yet (or none readable)
    assert [(s.phase, s.route_reflectors, s.mesh_enabled) for s in trace.samples] == [
        ("Making", 3, True),
        ("Steady", 3, False),
        ("(none)", None, None),
    ]
    assert all(
        b.seconds >= a.seconds for a, b in zip(trace.samples, trace.samples[1:], strict=False)
    )


def test_report_is_the_last_demo_key() -> None:
    """``calico-rr demo`` adds it after run_demo; it is listed, so it cannot drift."""
    assert DEMO_KEYS[-1] == "report"
    assert list(demo_result({**_result(), "report": "/x.html"}))[-1] == "report"
    with pytest.raises(ValueError, match="reports"):
        demo_result({**_result(), "reports": "/x.html"})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("report.txt", "the report is HTML; name it *.html"),
        ("missing-dir/report.html", "does not exist"),
    ],
)
def test_demo_refuses_a_bad_report_path_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, message: str
) -> None:
    from typer.testing import CliRunner

    from calico_rr.cli import app

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["demo", "--nodes", "10", "--report", path])
    assert done.exit_code == 2, done.output
    assert message in done.output
    assert "starting" not in done.output  # nothing was started
    assert list(tmp_path.iterdir()) == []
