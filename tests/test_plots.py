"""The comparison series, the group drawing, ``plan --plot`` and ``calico-rr report``."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from calico_rr.adapters.plots import comparison_figure, diagram_figure
from calico_rr.adapters.report_html import ReportPage, render_html
from calico_rr.cli import app
from calico_rr.cli.planning import summary_rows
from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.diagram import group_diagram
from calico_rr.core.report.series import (
    COMPARED,
    ClusterShape,
    compare,
    parse_sizes,
    sizes_with,
)
from calico_rr.core.report.summary import plan_graph, summarize
from calico_rr.errors import InputError

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


# -- the series ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [40, 120])
def test_series_match_plan_summary_and_verifier(size: int) -> None:
    """Every point equals what `plan` and `verify` report for that cluster (at 40 nodes
    the verifier uses its per-node engine, the series the class engine)."""
    comp = compare(PlanConfig(), sizes=(size,), shape=ClusterShape(zones=3))
    assert [s.topology for s in comp.series] == list(COMPARED)
    for s in comp.series:
        (point,) = s.points
        assert point is not None and not s.errors
        made = plan(synthetic_cluster(size, zones=3), PlanConfig(topology=s.topology))  # type: ignore[arg-type]
        summary = summarize(made)
        report = verify(plan_graph(made))
        assert point.topology == made.topology
        assert point.nodes == summary["nodes"] == size
        assert point.route_reflectors == summary["route_reflectors"]
        assert point.sessions_per_rr == summary["sessions_per_rr"]["max"]
        assert point.bgppeers == summary["bgppeer_objects"]
        assert point.updates_per_rr == report.updates_per_rr.max
    by_name = {s.topology: s for s in comp.series}
    # the topologies really differ: quorum writes more BGPPeers than single
    assert by_name["quorum"].values("bgppeers")[0] > by_name["single"].values("bgppeers")[0]  # type: ignore[operator]


def test_unplannable_sizes_are_gaps_with_the_reason() -> None:
    # room for 5 cluster IDs: single needs 1, multi one per RR (3 at 50 nodes, 11 at 2000)
    comp = compare(
        PlanConfig(cluster_id_base="255.255.255.250"),
        sizes=(50, 2000),
        topologies=("single", "multi"),
    )
    single, multi = comp.series
    assert single.errors == () and None not in single.points
    assert multi.points[0] is not None and multi.points[1] is None
    assert multi.values("sessions_per_rr")[1] is None
    assert [n for n, _ in multi.errors] == [2000]
    assert "no room" in multi.errors[0][1]
    (note,) = comp.gap_notes()
    assert note.startswith("multi cannot be planned at 2000 nodes")


def test_cluster_shape_is_read_off_the_nodes() -> None:
    nodes = synthetic_cluster(300, zones=3, racks=6, unhealthy=0.1)
    shape = ClusterShape.of(nodes, PlanConfig())
    assert (shape.zones, shape.racks) == (3, 6)
    assert shape.unhealthy == pytest.approx(0.1, abs=0.01)
    assert ClusterShape.of(nodes, PlanConfig(zone_label=None)).zones == 0


def test_sizes_parsing_and_own_size() -> None:
    assert parse_sizes("1000, 50,50,200") == (50, 200, 1000)
    for bad in ("", "a,100", "0", "-5"):
        with pytest.raises(InputError):
            parse_sizes(bad)
    assert sizes_with((50, 500), 120) == (50, 120, 500)
    assert sizes_with((50, 500), 500) == (50, 500)
    assert sizes_with((50,), 10**6) == (50,)  # too big to add


# -- the group drawing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "zones", "topology"),
    [(300, 0, "single"), (2000, 3, "multi"), (2000, 3, "quorum"), (5000, 3, "hierarchy")],
)
def test_diagram_counts_every_session_once(nodes: int, zones: int, topology: str) -> None:
    made = plan(synthetic_cluster(nodes, zones=zones), PlanConfig(topology=topology))  # type: ignore[arg-type]
    graph = plan_graph(made)
    d = group_diagram(graph, topology=made.topology)
    assert d.sessions == graph.total_sessions()
    assert d.counted_sessions() == d.sessions
    assert sum(b.members for b in d.boxes) == len(graph.nodes)
    rr_boxes = [b for b in d.boxes if b.is_rr]
    assert len(rr_boxes) == len({cls.cluster_id for cls in graph.classes if cls.cluster_id})
    assert sorted(i for row in d.rows for i in row) == list(range(len(d.boxes)))


def test_diagram_shapes_of_the_topologies() -> None:
    single = group_diagram(plan_graph(plan(synthetic_cluster(300), PlanConfig(topology="single"))))
    (rr,) = [b for b in single.boxes if b.is_rr]
    assert (rr.members, rr.internal, rr.internal_kinds) == (3, 3, ("ibgp",))
    (link,) = single.links
    assert (link.kind, link.sessions) == ("client", 3 * 297)

    multi = plan(synthetic_cluster(2000), PlanConfig(topology="multi", rrs=11))
    d = group_diagram(plan_graph(multi))
    (mesh,) = d.meshes
    assert (len(mesh.boxes), mesh.sessions, mesh.kind) == (11, 55, "rr-rr")
    assert {x.kind for x in d.links} == {"client"}

    hier = plan(synthetic_cluster(5000, racks=10), PlanConfig(topology="hierarchy"))
    d = group_diagram(plan_graph(hier))
    (spine,) = [i for i, b in enumerate(d.boxes) if b.role == "spine"]
    racks = [b for b in d.boxes if b.role == "rack-rr"]
    assert len(racks) == 10 and d.rows[0] == (spine,)
    up = [x for x in d.links if spine in (x.a, x.b)]
    assert len(up) == 10 and {(x.kind, x.sessions) for x in up} == {("rr-rr", 9)}
    assert d.boxes[spine].internal == 3  # the spines' own iBGP mesh


# -- images ----------------------------------------------------------------------------


def test_figures_are_real_images() -> None:
    comp = compare(PlanConfig(), sizes=(50, 100), shape=ClusterShape(zones=3), marked=100)
    png = comparison_figure(comp, "png")
    assert png.startswith(PNG)
    image = Image.open(io.BytesIO(png))
    assert image.width > 1000 and image.height > 300
    assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # drawn, not blank
    svg = comparison_figure(comp, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    d = group_diagram(plan_graph(plan(synthetic_cluster(500, zones=3), PlanConfig())))
    assert diagram_figure(d).startswith(PNG)


# -- plan --plot -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "magic"), [("cmp.png", PNG), ("cmp.SVG", b"<?xml")])
def test_plan_plot_writes_the_image(tmp_path: Path, name: str, magic: bytes) -> None:
    out = tmp_path / name
    result = runner.invoke(
        app, ["plan", "--nodes", "100", "--plot", str(out), "--plot-sizes", "50,200", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nodes"] == 100  # stdout stays the JSON
    assert out.read_bytes().startswith(magic)
    assert f"wrote the topology comparison to {out}" in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("plot.gif", "use .png or .svg"),
        ("plot", "use .png or .svg"),
        ("missing/plot.png", "does not exist"),
        ("adir.png", "is a directory"),
    ],
)
def test_plan_plot_bad_path_exits_2_and_writes_nothing(
    tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "adir.png").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = runner.invoke(app, ["plan", "--nodes", "100", "--plot", str(tmp_path / target)])
    assert result.exit_code == 2
    assert message in result.stderr and "--plot" in result.stderr
    assert result.stdout == ""  # not even the plan table
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_plan_plot_reports_gaps(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    args = ["--plot", str(out), "--plot-sizes", "50,2000", "--cluster-id-base", "255.255.255.250"]
    result = runner.invoke(app, ["plan", "--nodes", "50", *args])
    assert result.exit_code == 0, result.output
    assert "plot gap: multi cannot be planned at 2000 nodes" in result.stderr
    assert out.read_bytes().startswith(PNG)


def test_plan_plot_bad_sizes_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    result = runner.invoke(
        app, ["plan", "--nodes", "100", "--plot", str(out), "--plot-sizes", "100,x"]
    )
    assert result.exit_code == 2 and "--plot-sizes" in result.stderr
    assert not out.exists()


# -- the HTML report -------------------------------------------------------------------


def test_report_is_one_self_contained_page(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    args = ["--nodes", "300", "--zones", "3", "--plot-sizes", "50,100"]
    result = runner.invoke(app, ["report", str(out), *args])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    for section in ("plan", "verification", "comparison", "drawing"):
        assert f'<section id="{section}">' in page
    # the plan table holds exactly the rows `plan` prints
    made = plan(synthetic_cluster(300, zones=3), PlanConfig())
    graph = plan_graph(made)
    expected = summary_rows(summarize(made, graph=graph, verification=verify(graph).to_dict()))
    table = page.split('id="plan-table">', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r'<th scope="row">(.*?)</th><td class="num">(.*?)</td>', table)
    assert [(name.replace("&#x27;", "'"), v) for name, v in cells] == expected
    assert "reachability: OK" in page and "zone zone-a down" in page
    # nothing outside the page: no URL at all, no script, every image inline
    assert "http://" not in page and "https://" not in page and "<script" not in page
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2
    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).width > 0


def test_report_bad_name_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    result = runner.invoke(app, ["report", str(out), "--nodes", "100"])
    assert result.exit_code == 2 and "name it *.html" in result.stderr
    assert not out.exists()
    out = tmp_path / "no" / "r.html"
    result = runner.invoke(app, ["report", str(out), "--nodes", "100"])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_render_html_escapes_and_shows_a_failed_verification() -> None:
    comp = compare(PlanConfig(), sizes=(50,), topologies=("single",))
    page = render_html(
        ReportPage(
            title="<b>x</b>",
            options="--nodes 50",
            table=[("Topology", "single & co")],
            notes=[],
            warnings=["w<1>"],
            verification=["reachability: FAILED"],
            verified=False,
            comparison=comp,
            comparison_png=PNG,
            diagram_png=PNG,
        )
    )
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "single &amp; co" in page and "w&lt;1&gt;" in page
    assert 'class="verdict fail"' in page and "NOT verified" in page
