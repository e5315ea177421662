"""The HTML report in a real headless Chromium (Debian's, driven by playwright).

The page is opened from disk (file://) with every request, console message and page
error recorded.  It must render: the plan table, both images decoded with a natural
width, no console error, no failed request and no request leaving the file itself
(``data:`` URIs only), and a screenshot that is a picture, not a blank page.

Needs /usr/bin/chromium (or CALICO_RR_CHROMIUM) and playwright: when either is
missing the test runs scripts/browser-install.sh, and fails if that does not help.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "browser-install.sh"
PLAN = ["--nodes", "2000", "--zones", "3", "--plot-sizes", "50,500,2000,5000"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("CALICO_RR_CHROMIUM", "/usr/bin/chromium")
    missing_driver = importlib.util.find_spec("playwright") is None
    if missing_driver or not os.access(path, os.X_OK):
        env = {**os.environ, "VENV": sys.prefix}
        done = subprocess.run(
            ["bash", str(INSTALL)], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"browser-install.sh failed:\n{done.stderr}"
        path = done.stdout.strip().splitlines()[-1]
        importlib.invalidate_caches()
    assert os.access(path, os.X_OK), f"no chromium at {path}"
    assert importlib.util.find_spec("playwright") is not None, "playwright is not installed"
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", "report", str(out), *PLAN],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    return out


@pytest.fixture(scope="module")
def rendered(chromium: str, report: Path) -> Iterator[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"console": [], "failed": [], "requests": [], "errors": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: seen["console"].append((m.type, m.text)))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("requestfailed", lambda r: seen["failed"].append((r.url, r.failure)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            seen["title"] = page.title()
            seen["table"] = page.eval_on_selector_all(
                "#plan-table tr", "rows => rows.map(r => r.innerText)"
            )
            seen["images"] = page.eval_on_selector_all(
                "img",
                "imgs => imgs.map(i => ({id: i.id, complete: i.complete,"
                " width: i.naturalWidth, height: i.naturalHeight}))",
            )
            seen["verify"] = page.inner_text("#verify-report")
            seen["screenshot"] = page.screenshot(full_page=True)
            seen["plot_shot"] = page.locator("#comparison-img").screenshot()
        finally:
            browser.close()
    yield seen


def test_plan_table_renders(rendered: dict[str, Any]) -> None:
    # auto: multi would need 15 RRs, an add-path table no node holds (test_fanout)
    assert rendered["title"].startswith("calico-rr report: hierarchy, 2000 nodes")
    rows = rendered["table"]
    assert len(rows) >= 13  # header + the rows `calico-rr plan` prints
    assert rows[1].split("\t") == ["# of nodes", "2000"]
    assert any(r.startswith("Every node reaches every node\tyes") for r in rows)


def test_every_image_is_decoded(rendered: dict[str, Any]) -> None:
    images = rendered["images"]
    assert {i["id"] for i in images} == {"comparison-img", "diagram-img"}
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image


def test_no_console_error_and_no_request_leaves_the_file(
    rendered: dict[str, Any], report: Path
) -> None:
    assert [m for m in rendered["console"] if m[0] in ("error", "warning")] == []
    assert rendered["errors"] == []
    assert rendered["failed"] == []
    outside = [u for u in rendered["requests"] if not u.startswith(("data:", report.as_uri()))]
    assert outside == []


def test_verification_is_shown(rendered: dict[str, Any]) -> None:
    text = rendered["verify"]
    assert "reachability: OK" in text
    assert "single RR failure: tolerated" in text
    assert "zone zone-c down" in text


def test_screenshot_is_not_blank(rendered: dict[str, Any], tmp_path: Path) -> None:
    shot = Image.open(io.BytesIO(rendered["screenshot"])).convert("RGB")
    (tmp_path / "report.png").write_bytes(rendered["screenshot"])
    colours = shot.getcolors(1 << 24) or []
    assert len(colours) > 500, f"only {len(colours)} colours"
    white = sum(n for n, rgb in colours if rgb == (255, 255, 255))
    assert white < 0.9 * shot.width * shot.height  # something is drawn
    plot = Image.open(io.BytesIO(rendered["plot_shot"])).convert("RGB")
    assert plot.width > 500 and len(plot.getcolors(1 << 24) or []) > 100
