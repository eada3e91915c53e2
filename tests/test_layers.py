"""Imports only go down: indexing < reranker < search < UI (app.py, search/ui/); trainer sits beside search.

An AST scan of every import statement of the product packages — module-level and inside functions (lazy imports
count), relative imports resolved, and ``importlib.import_module`` / ``__import__`` of a literal name or of the
dotted names a module keeps for a lazy ``__getattr__``. Rules:

- a module may import its own layer or a lower one (indexing 0, reranker 1, search 2, UI 3);
- trainer may import indexing, reranker and search, never the UI;
- nothing in the product imports trainer (only bench/ and tests/ may).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("indexing", "reranker", "search", "trainer")
UI = 3
LAYER = {"indexing": 0, "reranker": 1, "search": 2}
UI_MODULES = ("search.ui", "search.ui_render")  # (ui_render: the old path of search.ui.render, re-exported)
_DOTTED = re.compile(r"^(?:app|indexing|reranker|search|trainer)(?:\.[A-Za-z_]\w*)+$")


def module_name(root: Path, path: Path) -> str:
    """``search/ui/tabs.py`` → ``search.ui.tabs``; ``indexing/__init__.py`` → ``indexing``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | str | None:
    """The layer of a module name (an int, ``"trainer"``), or None outside the product (stdlib, third party)."""
    top = module.split(".")[0]
    if top == "app" or module in UI_MODULES or module.startswith("search.ui."):
        return UI
    if top == "trainer":
        return "trainer"
    return LAYER.get(top)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    """``[(line, module)]`` of every import in ``path`` (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me, is_pkg = module_name(root, path), path.name == "__init__.py"
    out: list[tuple[int, str]] = []
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(me, is_pkg, node.level, node.module) if node.level else (node.module or "")
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append((node.lineno, arg.value))
                else:
                    dynamic = True
    if dynamic:  # a lazy table: {"Name": "package.module"} resolved at run time
        out += [(n.lineno, n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and _DOTTED.match(n.value)]
    return out


def product_files(root: Path) -> list[Path]:
    """app.py and every module of the product packages under ``root``."""
    files = [root / "app.py"] if (root / "app.py").is_file() else []
    for pkg in PACKAGES:
        files += sorted((root / pkg).rglob("*.py"))
    return files


def upward_imports(root: Path) -> list[str]:
    """Every import statement under ``root`` that breaks the layering, as ``"file:line: importer -> imported"``
    (one entry per statement: the first offending module it names)."""
    bad: dict[str, str] = {}
    for path in product_files(root):
        me = module_name(root, path)
        mine = layer_of(me)
        for line, target in imported_modules(root, path):
            theirs = layer_of(target)
            if theirs is None or target.split(".")[0] == me.split(".")[0] and theirs == mine:
                continue
            # trainer: anything but the UI; the rest: never trainer, never a higher layer
            ok = theirs != UI if mine == "trainer" else theirs != "trainer" and int(theirs) <= int(mine)  # type: ignore[arg-type]
            where = f"{path.relative_to(root)}:{line}"
            if not ok and where not in bad:
                bad[where] = f"{where}: {me} -> {target}"
    return sorted(bad.values())


def test_no_upward_imports():
    assert upward_imports(REPO) == []


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def test_the_scan_sees_lazy_relative_and_dynamic_imports(tmp_path: Path):
    for pkg in PACKAGES:
        _write(tmp_path, f"{pkg}/__init__.py", "")
    _write(tmp_path, "search/ui/__init__.py", "")
    _write(tmp_path, "indexing/build.py", "def f():\n    from search.diacritics import X\n")  # lazy
    _write(tmp_path, "reranker/a.py", "from ..search import pipeline\nimport indexing.settings\n")  # relative
    _write(tmp_path, "search/b.py", "import importlib\nimportlib.import_module('search.ui.tabs')\n")
    _write(tmp_path, "search/c.py", "from importlib import import_module\n_LAZY = {'T': 'trainer.mine'}\n"
                                    "def g(n):\n    return import_module(_LAZY[n])\n")
    _write(tmp_path, "search/ui/d.py", "from search import eval\nimport app\n")  # UI may import down
    _write(tmp_path, "trainer/e.py", "from search.eval import load_beir\nfrom app import main\n")
    _write(tmp_path, "app.py", "import trainer.blend\n")
    assert upward_imports(tmp_path) == [
        "app.py:1: app -> trainer.blend",
        "indexing/build.py:2: indexing.build -> search.diacritics",
        "reranker/a.py:1: reranker.a -> search",
        "search/b.py:2: search.b -> search.ui.tabs",
        "search/c.py:2: search.c -> trainer.mine",
        "trainer/e.py:2: trainer.e -> app",
    ]


@pytest.mark.parametrize("module, layer", [("indexing.jsonl", 0), ("reranker", 1), ("search.eval", 2),
                                           ("search.ui.tabs", UI), ("app", UI), ("app.x", UI), ("search.ui_render", UI), ("trainer.mine", "trainer"),
                                           ("numpy", None), ("searchlight", None)])
def test_layer_of(module: str, layer: int | str | None):
    assert layer_of(module) == layer
