"""The HTML page ``calico-rr demo`` writes: what the demo did, to read afterwards.

Sections: the result (the numbers the demo prints), the converged topology (the
group-level drawing of ``calico-rr report``), the timeline of the migration (the
operator's phase, route reflectors and message as the demo polled its status,
between the demo's own steps), the node join (the operator's writes and how long
it took) and the zone failure (nodes lost, re-convergence, survivors safe).

Like ``calico-rr report`` (:mod:`calico_rr.adapters.report_html`, whose style and
helpers it shares) the page is self-contained: inline CSS, the drawing as a PNG
``data:`` URI, no script.  The drawing needs the ``plots`` extra (matplotlib); without
it the page is written all the same and says how to get it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico_rr.adapters.demo import DemoTrace, Sample
from calico_rr.adapters.report_html import _STYLE, _document, _e, _img, _rows

#: Where ``calico-rr demo`` writes its page unless told otherwise (``--report``).
DEFAULT_REPORT = "calico-rr-demo-report.html"

#: Result keys the page shows in their own sections, not in the result table.
_OWN_SECTIONS = ("join_writes", "report")

#: One colour per operator phase in the phase bar (unknown phases are grey).
_PHASE_COLOURS = {
    "Steady": "#b6d7a8",
    "Applying": "#a4c2f4",
    "Making": "#f9cb9c",
    "Confirming": "#ffe599",
    "Breaking": "#ea9999",
    "MeshOff": "#b4a7d6",
    "Blocked": "#e06666",
}

_EXTRA_STYLE = """
.phases { display: flex; width: 100%; height: 1.6rem; border: 1px solid #ccc; margin: 0.5rem 0; }
.phases div { overflow: hidden; white-space: nowrap; font-size: 0.75rem; padding: 0.3rem 0.2rem; }
tr.event td { background: #f4f8fd; font-style: italic; }
"""


@dataclass(frozen=True, slots=True)
class DemoPage:
    result: Mapping[str, Any]
    samples: Sequence[Sample]
    events: Sequence[tuple[float, str]]
    datastore: str
    #: when the page was written, shown under the title
    written: str
    #: the group-level drawing (PNG), or None with ``drawing_note`` saying why
    diagram_png: bytes | None = None
    diagram_summary: Sequence[str] = field(default_factory=tuple)
    drawing_note: str = ""


def demo_page(result: Mapping[str, Any], trace: DemoTrace, *, datastore: str) -> DemoPage:
    """The page's data: the drawing made here when matplotlib is installed."""
    from calico_rr.adapters.plots import diagram_figure, require_matplotlib
    from calico_rr.core.report.diagram import group_diagram
    from calico_rr.errors import InputError

    png: bytes | None = None
    summary: Sequence[str] = ()
    note = ""
    if trace.graph is None:
        note = "no drawing: the demo did not converge"
    else:
        diagram = group_diagram(trace.graph, topology=str(result.get("topology") or ""))
        summary = diagram.summary()
        try:
            require_matplotlib()
        except InputError as exc:
            note = f"no drawing: {exc}"
        else:
            png = diagram_figure(diagram, "png")
    return DemoPage(
        result=result,
        samples=list(trace.samples),
        events=list(trace.events),
        datastore=datastore,
        written=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        diagram_png=png,
        diagram_summary=summary,
        drawing_note=note,
    )


def write_demo_report(
    path: str, result: Mapping[str, Any], trace: DemoTrace, *, datastore: str
) -> None:
    """Write the page to ``path`` atomically (InputError when it cannot be written)."""
    from calico_rr.adapters.files import write_atomic

    page = demo_page(result, trace, datastore=datastore)
    write_atomic(path, render_demo_report(page).encode("utf-8"), field="--report")


def _cell(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _phase_bar(samples: Sequence[Sample], end: float) -> str:
    """One segment per run of the same phase, as wide as the time it lasted."""
    spans: list[tuple[str, float, float]] = []
    for s in samples:
        if spans and spans[-1][0] == s.phase:
            continue
        if spans:
            spans[-1] = (spans[-1][0], spans[-1][1], s.seconds)
        spans.append((s.phase, s.seconds, end))
    total = max(end, 1e-9)
    parts = []
    for phase, start, stop in spans:
        width = max(0.5, 100.0 * (stop - start) / total)
        colour = _PHASE_COLOURS.get(phase, "#dddddd")
        label = f"{phase} {start:.1f}-{stop:.1f}s"
        parts.append(
            f'<div style="width:{width:.2f}%;background:{colour}" title="{_e(label)}">'
            f"{_e(phase)}</div>"
        )
    return f'<div class="phases" id="phase-bar">{"".join(parts)}</div>'


def _timeline(page: DemoPage) -> str:
    """Status samples and the demo's own steps, in time order."""
    rows: list[tuple[float, int, str]] = []
    for seconds, text in page.events:
        rows.append(
            (
                seconds,
                0,
                f'<tr class="event"><td class="num">{seconds:.2f}</td>'
                f'<td colspan="3">demo</td><td>{_e(text)}</td></tr>',
            )
        )
    for s in page.samples:
        rrs = "" if s.route_reflectors is None else str(s.route_reflectors)
        mesh = "" if s.mesh_enabled is None else ("on" if s.mesh_enabled else "off")
        rows.append(
            (
                s.seconds,
                1,
                f'<tr><td class="num">{s.seconds:.2f}</td><td>{_e(s.phase)}</td>'
                f'<td class="num">{_e(rrs)}</td><td>{_e(mesh)}</td><td>{_e(s.message)}</td></tr>',
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    end = max([r[0] for r in rows], default=0.0)
    head = "<tr><th>t (s)</th><th>phase</th><th>RRs</th><th>mesh</th><th>message</th></tr>"
    return (
        f"{_phase_bar(page.samples, end)}"
        f'<table id="timeline-table">{head}{"".join(r[2] for r in rows)}</table>'
    )


def _join(result: Mapping[str, Any]) -> str:
    if "api_writes_per_node_join" not in result:
        return "<p>The demo did not get as far as the join.</p>"
    writes = "".join(f"<li><code>{_e(w)}</code></li>" for w in result.get("join_writes") or [])
    table = _rows(
        [
            ("operator writes", result["api_writes_per_node_join"]),
            ("seconds until handled", result.get("seconds_to_converge_after_join", "")),
        ]
    )
    return (
        "<p>One more node joins the converged cluster. The operator's writes for it, as "
        "the datastore counted them (none when the BGPPeers' selectors already cover "
        "the new node), and the time until a pass that saw it ended Steady:</p>"
        f'<table id="join-table">{table}</table><ul id="join-writes">{writes}</ul>'
    )


def _zone_failure(result: Mapping[str, Any]) -> str:
    failure = result.get("zone_failure")
    if not isinstance(failure, Mapping):
        return "<p>No zone failed (the demo ran without zones).</p>"
    safe = bool(failure.get("surviving_nodes_reach_each_other"))
    verdict = "ok" if safe else "fail"
    words = "the surviving nodes reach each other" if safe else "surviving nodes are cut off"
    table = _rows(
        [
            ("zone", failure.get("zone", "")),
            ("nodes lost", failure.get("failed_nodes", "")),
            ("seconds to re-converge", failure.get("seconds_to_reconverge", "")),
            ("survivors safe", safe),
        ]
    )
    return (
        "<p>Every node of one zone goes NotReady at once; the operator plans around the "
        "lost nodes (route reflectors there are replaced) until it is Steady again.</p>"
        f'<p class="verdict {verdict}">{_e(words)}</p><table id="zone-table">{table}</table>'
    )


def render_demo_report(page: DemoPage) -> str:
    """The whole page as one string (UTF-8 when written)."""
    result = page.result
    ok = bool(result.get("converged") and result.get("verified"))
    zone_words = (
        "; after the zone failure the surviving nodes still reach each other"
        if isinstance(result.get("zone_failure"), Mapping)
        else ""
    )
    verdict = (
        "converged and verified: every node reaches every other node and one route "
        f"reflector failing is tolerated{zone_words}"
        if ok
        else "NOT converged or NOT verified: see the numbers below"
    )
    title = f"calico-rr demo: {result.get('nodes', '?')} nodes, {result.get('topology') or '?'}"
    meta = f"datastore {page.datastore}, {result.get('zones', '?')} zones; written {page.written}"
    table = _rows((k, _cell(v)) for k, v in result.items() if k not in _OWN_SECTIONS)
    if page.diagram_png is not None:
        drawing = (
            '<div class="scroll">'
            f"{_img(page.diagram_png, 'group-level session drawing', 'diagram-img')}</div>"
        )
    else:
        drawing = f'<p class="warn" id="drawing-note">{_e(page.drawing_note)}</p>'
    summary = "".join(f"<li>{_e(line)}</li>" for line in page.diagram_summary)
    return _document(
        title,
        meta,
        f"""
<nav><a href="#result">Result</a><a href="#topology">Topology</a><a href="#timeline">Timeline</a>
<a href="#join">Node join</a><a href="#zone-failure">Zone failure</a></nav>

<section id="result">
<h2>Result</h2>
<p class="verdict {"ok" if ok else "fail"}" id="verdict">{_e(verdict)}</p>
<table id="result-table">{table}</table>
</section>

<section id="topology">
<h2>Converged topology</h2>
<p>One box per cluster ID (route reflectors) and per client group; lines carry the BGP
sessions between two boxes, as the verifier read them from the datastore.</p>
{drawing}
<ul>{summary}</ul>
</section>

<section id="timeline">
<h2>Timeline of the migration</h2>
<p>The operator's status each time it changed while the demo waited (seconds since the
operator started), with the demo's own steps in between.</p>
{_timeline(page)}
</section>

<section id="join">
<h2>Node join</h2>
{_join(result)}
</section>

<section id="zone-failure">
<h2>Zone failure</h2>
{_zone_failure(result)}
</section>""",
        _STYLE + _EXTRA_STYLE,
    )
