"""The package's layering, checked on its imports (issue 15 item 3).

* The pure core (``calico_rr.core``) imports nothing of the package outside itself,
  ``calico_rr.model`` and ``calico_rr.errors``: no adapter, no sandbox, no test
  support, so it stays data in, data out.
* Nothing in the package imports ``calico_rr.testing`` (fault injection, simulators,
  random configurations are for tests and benchmarks); what ``demo`` and ``lab``
  start locally lives in ``calico_rr.sandbox``.

Every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "calico_rr"
CORE_MAY_IMPORT = ("calico_rr.core", "calico_rr.model", "calico_rr.errors")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            # `from calico_rr import testing` names the module in the alias
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("calico_rr")]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_sources_are_found() -> None:
    names = {_module(p) for p in SOURCES}
    assert {"calico_rr.core.operator.decide", "calico_rr.cli", "calico_rr.sandbox"} <= names


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if _within(_module(p), ("calico_rr.core",))], ids=_module
)
def test_the_core_imports_only_itself_model_and_errors(path: Path) -> None:
    outside = [f"{line}: {name}" for line, name in _imports(path)
               if not _within(name, CORE_MAY_IMPORT)]  # fmt: skip
    assert outside == [], f"{_module(path)} imports outside the core: {outside}"


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if not _within(_module(p), ("calico_rr.testing",))], ids=_module
)
def test_nothing_in_the_package_imports_test_support(path: Path) -> None:
    uses = [f"{line}: {name}" for line, name in _imports(path)
            if _within(name, ("calico_rr.testing",))]  # fmt: skip
    assert uses == [], f"{_module(path)} imports test support: {uses}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    """The walk sees a function-local import (what the checks above rely on)."""
    src = tmp_path / "m.py"
    src.write_text(
        "def f():\n    from calico_rr.testing.sim import x\n    import calico_rr.adapters\n"
    )
    assert _imports(src) == [(2, "calico_rr.testing.sim.x"), (3, "calico_rr.adapters")]
