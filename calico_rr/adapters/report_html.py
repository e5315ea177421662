"""``calico-rr report``: one self-contained HTML page about one plan.

The page holds the plan table (the rows ``calico-rr plan`` prints), the verifier's
report, the topology comparison across cluster sizes and the group-level drawing.
It references nothing outside itself: the images are PNG ``data:`` URIs, the style
sheet is inline, there is no script, and even the favicon is an empty ``data:`` URI
so that a browser makes no request at all.  It can be mailed, attached to a ticket
or opened from a CI artifact as it is.

Text goes through :func:`html.escape`; the page is built from plain data, so it
is easy to test without a browser (tests/test_plots.py) and with one
(tests/integration/test_report_browser.py).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from calico_rr.core.report.series import METRICS, Comparison

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1rem 1.5rem 3rem; color: #1d1d1d; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem;
     margin-top: 2rem; }
p.meta { color: #555; margin-top: 0; font-family: ui-monospace, monospace; font-size: 0.85rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
td.gap { color: #a00; text-align: center; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.6rem; overflow-x: auto; }
.verdict { font-weight: bold; padding: 0.3rem 0.6rem; display: inline-block; border-radius: 4px; }
.ok { background: #dff0d8; color: #22571f; }
.fail { background: #f8d7da; color: #7a1620; }
.warn { color: #8a5a00; }
.gapnote { color: #a00; }
.figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.scroll { overflow-x: auto; border: 1px solid #eee; }
.scroll img { max-width: none; display: block; }
details { margin: 0.5rem 0; }
"""


@dataclass(frozen=True, slots=True)
class ReportPage:
    title: str
    #: The options the plan was made with, shown under the title.
    options: str
    #: (name, value) rows: the table ``calico-rr plan`` prints.
    table: Sequence[tuple[str, str]]
    #: Notes under the table (auto's reason, warnings, input notes).
    notes: Sequence[str]
    warnings: Sequence[str]
    verification: Sequence[str]  # the lines ``calico-rr verify`` prints
    verified: bool
    comparison: Comparison
    comparison_png: bytes
    diagram_png: bytes
    diagram_summary: Sequence[str] = field(default_factory=tuple)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _rows(pairs: Iterable[tuple[str, object]]) -> str:
    """Table rows: a heading cell, then the value right-aligned."""
    return "".join(
        f'<tr><th scope="row">{_e(name)}</th><td class="num">{_e(value)}</td></tr>'
        for name, value in pairs
    )


def _document(title: str, meta: str, body: str, style: str = _STYLE) -> str:
    """The whole page around ``body`` (a newline, then the nav and the sections);
    nothing in the head points outside the page."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{style}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">{_e(meta)}</p>{body}
</body>
</html>
"""


def _img(png: bytes, alt: str, ident: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="{ident}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _numbers(comp: Comparison) -> str:
    """The figures behind the comparison plot: one table per panel."""
    parts: list[str] = []
    for metric, title in METRICS:
        head = "".join(f"<th>{n}</th>" for n in comp.sizes)
        rows: list[str] = []
        for s in comp.series:
            errors = dict(s.errors)
            cells = []
            for size, point, value in zip(comp.sizes, s.points, s.values(metric), strict=True):
                if value is None or point is None:
                    cells.append(f'<td class="gap" title="{_e(errors.get(size, ""))}">gap</td>')
                else:
                    picked = f" ({point.topology})" if s.topology == "auto" else ""
                    cells.append(f'<td class="num">{value}{_e(picked)}</td>')
            rows.append(f"<tr><th>{_e(s.topology)}</th>{''.join(cells)}</tr>")
        parts.append(
            f"<h3>{_e(title)}</h3><table><tr><th>nodes</th>{head}</tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


def render_html(page: ReportPage) -> str:
    """The whole page as one string (UTF-8 when written)."""
    notes = "".join(f"<li>{_e(n)}</li>" for n in page.notes)
    warnings = "".join(f'<li class="warn">warning: {_e(w)}</li>' for w in page.warnings)
    verdict_class = "ok" if page.verified else "fail"
    verdict = (
        "verified: every node reaches every other node and the failures checked are tolerated"
        if page.verified
        else "NOT verified: see the report below"
    )
    gaps = page.comparison.gap_notes()
    gap_list = "".join(f'<li class="gapnote">{_e(g)}</li>' for g in gaps)
    summary = "".join(f"<li>{_e(line)}</li>" for line in page.diagram_summary)
    sizes = ", ".join(str(n) for n in page.comparison.sizes)
    return _document(
        page.title,
        page.options,
        f"""
<nav><a href="#plan">Plan</a><a href="#verification">Verification</a>
<a href="#comparison">Topologies compared</a><a href="#drawing">Sessions by group</a></nav>

<section id="plan">
<h2>Plan</h2>
<table id="plan-table"><tr><th>Numbers</th><th></th></tr>{_rows(page.table)}</table>
<ul>{notes}{warnings}</ul>
</section>

<section id="verification">
<h2>Verification</h2>
<p class="verdict {verdict_class}" id="verdict">{_e(verdict)}</p>
<pre id="verify-report">{_e(chr(10).join(page.verification))}</pre>
</section>

<section id="comparison">
<h2>Topologies compared across cluster sizes</h2>
<p>Every topology planned on synthetic clusters of {_e(sizes)} nodes with this plan's
options, figures measured on the rendered resources as in the table above. Gaps mark
sizes where a topology cannot be planned.</p>
<div class="figure">{_img(page.comparison_png, "topology comparison", "comparison-img")}</div>
<ul>{gap_list}</ul>
<details><summary>Numbers behind the plot</summary>{_numbers(page.comparison)}</details>
</section>

<section id="drawing">
<h2>Sessions by group</h2>
<p>One box per cluster ID (route reflectors) and per client group (a symmetry class of the
session graph); lines carry the sessions between two boxes, coloured by kind.</p>
<div class="scroll">{_img(page.diagram_png, "group-level session drawing", "diagram-img")}</div>
<ul>{summary}</ul>
</section>""",
    )
