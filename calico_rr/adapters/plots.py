"""Drawing: the topology comparison (``plan --plot``) and the group-level session picture.

The numbers come from the pure core (``core.report.series``, ``core.report.diagram``); this module
only draws them with matplotlib and returns the image as bytes (PNG or SVG).  It uses
matplotlib's object API (``Figure``) on the Agg canvas, never ``pyplot``: no global
state, no GUI backend, safe in a server.  matplotlib is imported inside the functions
so that ``import calico_rr.cli`` stays fast.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from calico_rr.core.report.diagram import LINK_KINDS, Box, Diagram, Link, Mesh
from calico_rr.core.report.series import METRICS, Comparison, Series
from calico_rr.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


#: What a plotting command says when matplotlib is not installed: plotting is the
#: ``plots`` extra, so the operator image and ``calico-rr run`` never carry it.
MISSING_EXTRA = "plotting needs the plots extra: pip install 'calico-rr[plots]'"


def require_matplotlib() -> None:
    """Raise InputError (exit code 2, nothing computed or written) unless matplotlib
    can be imported.  The commands that draw call it first, so a missing extra is
    one line up front, not a traceback after the planning work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(MISSING_EXTRA) from None


#: File extension -> matplotlib format.
FORMATS: dict[str, str] = {".png": "png", ".svg": "svg"}

#: One colour per topology (matplotlib's default cycle, fixed so figures agree).
TOPOLOGY_COLOURS: dict[str, str] = {
    "single": "#1f77b4",
    "multi": "#ff7f0e",
    "quorum": "#2ca02c",
    "hierarchy": "#9467bd",
    "auto": "#222222",
}

_LineStyle = Literal["solid", "dashed", "dotted"]

#: Link kind -> (colour, line style).
LINK_STYLES: dict[str, tuple[str, _LineStyle]] = {
    "client": ("#8c8c8c", "solid"),
    "rr-rr": ("#d62728", "solid"),
    "ibgp": ("#1f77b4", "dashed"),
    "ebgp": ("#9467bd", "dotted"),
}

#: Box face colours, one per zone in order; boxes spanning several zones are grey.
ZONE_COLOURS = ("#cfe2f3", "#fce5cd", "#d9ead3", "#ead1dc", "#fff2cc", "#d0e0e3", "#e6e0f8")
MULTI_ZONE_COLOUR = "#eeeeee"

#: Edge colour of a box by role.
ROLE_EDGES: dict[str, str] = {
    "spine": "#8b0000",
    "rack-rr": "#1a3d7c",
    "rr": "#1a3d7c",
    "client": "#555555",
}

#: Boxes per drawn row (a multi cluster at the default --max-rrs fits); longer rows wrap.
MAX_ROW = 30
#: Width of one box's place in a row, inches (100 px each in the PNG).
SLOT = 1.25
#: A box's size and the height of one drawn row, inches.
BOX_W, BOX_H = SLOT - 0.17, 1.0
ROW_GAP = 2.0
#: Up to this many links each gets its session count written on it.
LABEL_LINKS = 30


def plot_format(path: str) -> str:
    """The image format for ``path`` by its extension; checks it can be written.

    Raises InputError (nothing written) when matplotlib (the plots extra) is
    missing, on an unknown extension, a missing directory, or a path that is a
    directory.
    """
    require_matplotlib()
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise InputError(
            f"{path}: unknown image type {ext or '(no extension)'!r}; use .png or .svg",
            field="--plot",
        )
    check_writable(path, "--plot")
    return FORMATS[ext]


def check_writable(path: str, field: str) -> None:
    """Raise InputError unless ``path`` names a file that can be created or replaced."""
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory", field=field)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{path}: directory {parent} does not exist", field=field)
    if not os.access(parent, os.W_OK):
        raise InputError(f"{path}: directory {parent} is not writable", field=field)


def _save(fig: Figure, fmt: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No software/date metadata: the same data gives the same bytes, and nothing in
    # the file points anywhere (the report must not reference any URL).
    metadata: dict[str, Any] = {"Software": None}
    if fmt == "svg":
        metadata = {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
    return buf.getvalue()


# -- the comparison ---------------------------------------------------------------


def comparison_figure(comp: Comparison, fmt: str = "png") -> bytes:
    """Three panels (sessions per RR, BGPPeers, UPDATEs per RR) over cluster size."""
    from matplotlib.figure import Figure

    notes = comp.gap_notes()
    wrapped = [line for note in notes for line in textwrap.wrap(note, 150)]
    foot = 0.35 + 0.22 * len(wrapped)
    fig = Figure(figsize=(16, 5.2 + foot))
    fig.subplots_adjust(
        left=0.05,
        right=0.99,
        top=1 - 0.9 / (5.2 + foot),
        bottom=(0.95 + foot) / (5.2 + foot),
        wspace=0.22,
    )
    axes = fig.subplots(1, len(METRICS))
    sizes = list(comp.sizes)
    where = _shape_text(comp)
    fig.suptitle(f"Topologies compared on synthetic clusters ({where}); gaps = cannot be planned")
    for ax, (metric, title) in zip(axes, METRICS, strict=True):
        for s in comp.series:
            _plot_series(ax, s, metric, sizes)
        if metric == "sessions_per_rr":
            ax.axhline(comp.session_budget, color="#aa0000", linestyle="--", linewidth=1)
            ax.annotate(
                f"session budget {comp.session_budget}",
                (sizes[0], comp.session_budget),
                textcoords="offset points",
                xytext=(2, 3),
                fontsize=8,
                color="#aa0000",
            )
        if comp.marked is not None:
            _mark_own_size(ax, comp.marked)
        _log_axes(ax, sizes, title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        ["auto (letter: pick)" if lb == "auto" else lb for lb in labels],
        loc="lower center",
        ncol=len(labels),
        frameon=False,
        bbox_to_anchor=(0.5, (foot + 0.05) / (5.2 + foot)),
    )
    for i, line in enumerate(wrapped):
        fig.text(
            0.01,
            (foot - 0.3 - 0.22 * i) / (5.2 + foot),
            line,
            fontsize=8,
            color="#aa0000",
            va="bottom",
        )
    return _save(fig, fmt)


def _shape_text(comp: Comparison) -> str:
    """The synthetic clusters' shape, for the title: zones, racks, unhealthy share."""
    shape = comp.shape
    return (
        f"{shape.zones or 'no'} zone{'s' if shape.zones != 1 else ''}, "
        f"{shape.racks or 'no'} rack label{'s' if shape.racks != 1 else ''}"
        + (f", {shape.unhealthy:.0%} unhealthy" if shape.unhealthy else "")
    )


def _plot_series(ax: Axes, s: Series, metric: str, sizes: list[int]) -> None:
    """One topology's line on one panel; ``auto`` is a wide pale band with, on the
    first panel, the topology it picked lettered above each point."""
    colour = TOPOLOGY_COLOURS.get(s.topology, "#000000")
    ys = [math.nan if v is None else float(v) for v in s.values(metric)]
    if s.topology == "auto":
        ax.plot(sizes, ys, color=colour, linewidth=5, alpha=0.25, zorder=1)
        ax.plot(sizes, ys, "o", color=colour, markersize=3, zorder=4, label="auto")
        if metric == METRICS[0][0]:
            for x, y, p in zip(sizes, ys, s.points, strict=True):
                if p is not None:
                    ax.annotate(
                        p.topology[0],
                        (x, y),
                        textcoords="offset points",
                        xytext=(0, 7),
                        ha="center",
                        fontsize=8,
                        color=colour,
                    )
    else:
        ax.plot(
            sizes, ys, "o-", color=colour, linewidth=1.6, markersize=4, label=s.topology, zorder=3
        )
    for size, _ in s.errors:
        # a gap: a cross at the foot of the panel, in the series' colour
        ax.plot(
            [size],
            [0.02],
            "x",
            color=colour,
            markersize=7,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
        )


def _mark_own_size(ax: Axes, marked: int) -> None:
    """A dotted vertical line at the planned cluster's size."""
    ax.axvline(marked, color="#555555", linestyle=":", linewidth=1.2)
    ax.annotate(
        f"this plan ({marked})",
        (marked, 0.97),
        xycoords=("data", "axes fraction"),
        rotation=90,
        fontsize=8,
        ha="right",
        va="top",
        color="#555555",
    )


def _log_axes(ax: Axes, sizes: list[int], title: str) -> None:
    """Log-log axes with a tick at every compared size and plain numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sizes, [_short(n) for n in sizes], fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("cluster size (nodes)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def _short(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# -- the group-level picture --------------------------------------------------------


def diagram_figure(d: Diagram, fmt: str = "png") -> bytes:
    """Boxes (cluster IDs, client groups) in rows, links coloured by session kind."""
    from matplotlib.figure import Figure

    drawn = _wrap_rows(d.rows)
    widest = max((len(r) for r in drawn), default=1)
    width = max(SLOT * widest + 0.8, 9.0)
    zones = sorted({z for b in d.boxes for z in b.zones})
    zone_colour = {z: ZONE_COLOURS[i % len(ZONE_COLOURS)] for i, z in enumerate(zones)}
    handles = _legend_handles(d, zone_colour)
    ncol = max(1, min(len(handles), int(width // 3.2)))
    legend_h = 0.3 + 0.24 * math.ceil(len(handles) / ncol) if handles else 0.0
    # The totals by kind are Diagram.summary(), printed next to the image (the report
    # lists them); the picture only says when links are too many to label.
    summary = (
        [f"{len(d.links)} links: too many to label each (line width grows with the count)"]
        if len(d.links) > LABEL_LINKS
        else []
    )
    summary_h = 0.15 + 0.2 * len(summary)
    title = textwrap.wrap(
        f"{d.topology or 'plan'}: {d.nodes} nodes, {d.sessions} BGP sessions. Boxes: one per "
        "cluster ID (RRs) and per client group; lines: sessions between them",
        int(width * 10),
    )
    top = 0.45 + 0.22 * len(title)
    height = top + ROW_GAP * len(drawn) + legend_h + summary_h
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(0.3, height - 0.2, "\n".join(title), ha="left", va="top", fontsize=11)

    centre: dict[int, tuple[float, float]] = {}
    for r, row in enumerate(drawn):
        y = height - top - ROW_GAP * r - ROW_GAP / 2
        x0 = (width - SLOT * len(row)) / 2
        for k, i in enumerate(row):
            centre[i] = (x0 + SLOT * (k + 0.5), y)
    for mesh in d.meshes:
        _draw_mesh(ax, mesh, centre)
    biggest = max((x.sessions for x in d.links), default=1)
    for link in d.links:
        _draw_link(ax, link, centre, biggest, labelled=len(d.links) <= LABEL_LINKS)
    for i, box in enumerate(d.boxes):
        if i in centre:
            face = zone_colour[box.zones[0]] if len(box.zones) == 1 else MULTI_ZONE_COLOUR
            _draw_box(ax, box, centre[i], face)

    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            ncol=ncol,
            fontsize=8.5,
            frameon=False,
            bbox_to_anchor=(0.5, (legend_h + summary_h) / height),
        )
    for k, line in enumerate(summary):
        ax.text(
            0.3, summary_h - 0.2 - 0.2 * k, line, fontsize=8.5, va="top", ha="left", color="#333333"
        )
    return _save(fig, fmt)


def _legend_handles(d: Diagram, zone_colour: dict[str, str]) -> list[Any]:
    """One legend entry per link kind drawn, per zone, and for boxes over several zones."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color=LINK_STYLES[k][0], linestyle=LINK_STYLES[k][1], label=LINK_KINDS[k])
        for k in LINK_KINDS
        if any(x.kind == k for x in d.links)
        or any(m.kind == k for m in d.meshes)
        or any(k in b.internal_kinds for b in d.boxes)
    ]
    handles += [Patch(facecolor=c, edgecolor="#555555", label=z) for z, c in zone_colour.items()]
    if any(len(b.zones) > 1 for b in d.boxes):
        handles.append(
            Patch(facecolor=MULTI_ZONE_COLOUR, edgecolor="#555555", label="several zones")
        )
    return handles


def _draw_mesh(ax: Axes, mesh: Mesh, centre: dict[int, tuple[float, float]]) -> None:
    """A rounded frame around RR boxes in a full mesh, with its session count."""
    from matplotlib.patches import FancyBboxPatch

    xs = [centre[i][0] for i in mesh.boxes]
    ys = [centre[i][1] for i in mesh.boxes]
    colour, style = LINK_STYLES[mesh.kind]
    pad = 0.1
    left, low = min(xs) - BOX_W / 2 - pad, min(ys) - BOX_H / 2 - pad
    ax.add_patch(
        FancyBboxPatch(
            (left, low),
            max(xs) - min(xs) + BOX_W + 2 * pad,
            max(ys) - min(ys) + BOX_H + 2 * pad,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor="none",
            edgecolor=colour,
            linestyle=style,
            linewidth=1.6,
            zorder=1,
        )
    )
    ax.text(
        left,
        max(ys) + BOX_H / 2 + pad + 0.06,
        f"full mesh of these {len(mesh.boxes)} RR boxes: {mesh.sessions} sessions",
        fontsize=9,
        color=colour,
        va="bottom",
        ha="left",
    )


def _draw_link(
    ax: Axes,
    link: Link,
    centre: dict[int, tuple[float, float]],
    biggest: int,
    *,
    labelled: bool,
) -> None:
    """The sessions between two boxes: an arc over a row, or a line down to the
    row below; wider the more sessions, with the count on it when ``labelled``."""
    from matplotlib.patches import FancyArrowPatch

    (xa, ya), (xb, yb) = centre[link.a], centre[link.b]
    colour, style = LINK_STYLES[link.kind]
    if abs(ya - yb) < 1e-6:  # same row: an arc over the boxes
        start, end = (xa, ya + BOX_H / 2), (xb, yb + BOX_H / 2)
        conn = "arc3,rad=-0.25"
        mid = ((xa + xb) / 2, ya + BOX_H / 2 + 0.12 * abs(xb - xa))
    else:
        if ya < yb:
            (xa, ya), (xb, yb) = (xb, yb), (xa, ya)
        start, end = (xa, ya - BOX_H / 2), (xb, yb + BOX_H / 2)
        conn = "arc3,rad=0"
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-",
            connectionstyle=conn,
            color=colour,
            linestyle=style,
            linewidth=0.7 + 1.8 * math.sqrt(link.sessions / biggest),
            alpha=0.75,
            zorder=2,
        )
    )
    if labelled:
        ax.text(
            mid[0],
            mid[1],
            str(link.sessions),
            fontsize=8,
            ha="center",
            va="center",
            color=colour,
            zorder=6,
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.85,
            },
        )


def _draw_box(ax: Axes, box: Box, at: tuple[float, float], face: str) -> None:
    """One box: its title in bold, then what it holds (members, cluster ID, the
    sessions inside it, the zones it spans)."""
    from matplotlib.patches import FancyBboxPatch

    x, y = at
    ax.add_patch(
        FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle="round,pad=0.01,rounding_size=0.08",
            facecolor=face,
            edgecolor=ROLE_EDGES.get(box.role, "#555555"),
            linewidth=2.0 if box.is_rr else 1.0,
            zorder=3,
        )
    )
    plural = "s" if box.members != 1 else ""
    kind = {"rack-rr": "rack RR", "spine": "spine RR", "rr": "RR"}.get(box.role, "node")
    lines = [f"{box.members} {kind}{plural}"]
    if box.cluster_id is not None:
        lines.append(f"ID {box.cluster_id}")
    if box.internal:
        lines.append(f"+{box.internal} {'/'.join(box.internal_kinds)} inside")
    if len(box.zones) > 1:
        lines.append(f"{len(box.zones)} zones")
    ax.text(
        x,
        y + BOX_H / 2 - 0.17,
        _fit(box.title, BOX_W, 8.5),
        ha="center",
        va="center",
        fontsize=8.5,
        fontweight="bold",
        zorder=4,
    )
    ax.text(
        x,
        y + BOX_H / 2 - 0.3,
        "\n".join(_fit(t, BOX_W, 7.0) for t in lines),
        ha="center",
        va="top",
        fontsize=7.0,
        zorder=4,
        linespacing=1.15,
    )


def _wrap_rows(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """Rows longer than MAX_ROW split into balanced parts, in order."""
    out: list[list[int]] = []
    for row in rows:
        parts = max(1, math.ceil(len(row) / MAX_ROW))
        size = math.ceil(len(row) / parts)
        for k in range(0, len(row), size):
            out.append(list(row[k : k + size]))
    return out


def _fit(text: str, box_w: float, font: float) -> str:
    """Cut ``text`` to what fits in a box ``box_w`` inches wide at ``font`` points."""
    room = max(4, int(box_w * 72 / (font * 0.62)))
    return text if len(text) <= room else text[: room - 1] + "…"
