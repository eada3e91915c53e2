"""The UI package's shape: a thin app.py, one module per tab, and no tab importing another."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
UI = ROOT / "search" / "ui"


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_tab_imports_another_tab():
    tabs = sorted(UI.glob("tab_*.py"))
    assert {p.stem for p in tabs} == {"tab_search", "tab_compare", "tab_evaluate", "tab_admin"}
    for tab in tabs:
        others = {f"search.ui.{p.stem}" for p in tabs if p != tab}
        assert not _imported_modules(tab) & others, f"{tab.name} imports another tab"


def test_each_tab_has_a_build_function_and_app_stays_thin():
    import importlib

    for name in ("tab_search", "tab_compare", "tab_evaluate", "tab_admin"):
        assert callable(importlib.import_module(f"search.ui.{name}").build)
    assert len((ROOT / "app.py").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_read_side_and_render_import_no_gradio():
    for name in ("backend.py", "admin_ops.py", "messages.py", "benchmarks.py", "render.py", "context.py"):
        assert "gradio" not in _imported_modules(UI / name), name
