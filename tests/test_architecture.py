"""The rooms of the code and the arrows between them (ARCHITECTURE.md): dependencies point one
way, app → finetune.web → finetune (core) → textgen, with the built-in recipes beside the web
side on top of the core; no import cycle; gradio only in the web side."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("textgen", "finetune")
# the two tabs and what serves only them; everything else serves scripts too
GRADIO_ALLOWED = {"app", "finetune.web.ui", "finetune.web.generate", "finetune.web.generate_tab",
                  "finetune.web.requests", "finetune.web.session", "finetune.web.ui_handlers",
                  "finetune.web.ui_library", "finetune.web.ui_session"}


def _modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in its file (lazy imports in functions count:
    they are arrows too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _external(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _room(module: str) -> str:
    for room in ("finetune.web", "finetune.builtin"):
        if module == room or module.startswith(room + "."):
            return room
    return module.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle():
    # a package's __init__ that names its modules lazily is not a cycle of code: leave it out
    assert [c for c in _cycles(_graph()) if not any(m in PACKAGES for m in c)] == []


def test_dependencies_point_one_way():
    allowed = {
        "textgen": {"textgen"},
        "finetune": {"finetune", "textgen"},
        "finetune.builtin": {"finetune.builtin", "finetune", "textgen"},
        "finetune.web": {"finetune.web", "finetune", "textgen"},
        "app": {"app", "finetune.web", "finetune", "textgen"},
    }
    wrong = sorted(f"{m} → {t}" for m, targets in _graph().items() for t in targets
                   if _room(t) not in allowed[_room(m)])
    assert wrong == []


def test_gradio_only_in_the_tabs():
    importers = sorted(name for name, path in _modules().items() if "gradio" in _external(path))
    assert set(importers) <= GRADIO_ALLOWED and importers, importers


def test_the_core_and_the_library_import_without_gradio_in_a_fresh_interpreter():
    """Importing every module but the two tabs leaves gradio unloaded; importing the packages
    themselves loads neither gradio nor torch (nothing heavy happens at import)."""
    mods = sorted(m for m in _modules() if m not in GRADIO_ALLOWED and not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            "for m in ('textgen', 'finetune', 'finetune.web', 'finetune.builtin'):\n    importlib.import_module(m)\n"
            "light = 'gradio' not in sys.modules and 'torch' not in sys.modules\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            "print(light, 'gradio' not in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]


def test_the_checks_see_a_cycle_and_a_wrong_arrow(tmp_path, monkeypatch):
    """The graph is real: a planted lazy import of the web side from the core is caught."""
    fake = tmp_path / "finetune_config.py"
    fake.write_text("def f():\n    from .web import jobs\n", encoding="utf-8")
    found = _imports("finetune.config", ROOT / "finetune" / "config.py", set(_modules()))
    planted = _imports("finetune.config", fake, set(_modules()))
    assert "finetune.web" not in {_room(t) for t in found}
    assert _room(next(iter(planted - found))) == "finetune.web"
    graph = {**_graph(), "finetune.web.job": _graph()["finetune.web.job"] | {"finetune.web.jobs"}}
    assert any({"finetune.web.job", "finetune.web.jobs"} <= set(c) for c in _cycles(graph))
