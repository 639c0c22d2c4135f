"""Imports point down only: top (app, cli) -> api -> core -> engines/store -> the floor.

The floor is what every layer speaks: the core's types, errors and engine port (the port
belongs to its consumer, engines implement it), durations, the JSON Schema vocabulary both
structured output (core) and grammars (engines) use, and process-wide flags. A module may
import its own floor and those below, never one above; floor modules import only the floor.
Every import counts, also those inside functions: a lazy import that runs up is still a cycle.
Two libraries stay in their room: llama.cpp's binding in server/engines/llamacpp/, and the web
framework (Flask, Werkzeug) in the dialects and the app above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "server"

FLOOR = {
    "server",  # __version__
    "server.core",  # the package's docstring
    "server.core.types", "server.core.errors", "server.core.engine", "server.core.durations",
    "server.core.schema", "server.core.regex", "server.core.numbers",
    "server.lifecycle",
}
LEVELS = {"floor": 0, "engines/store": 1, "core": 2, "api": 3, "top": 4}


def floor_of(module: str) -> str:
    if module in FLOOR:
        return "floor"
    if module.startswith(("server.engines", "server.store")):
        return "engines/store"
    if module.startswith("server.core") or module in ("server.config", "server.config_values"):
        return "core"  # the settings and their value syntaxes: below the routes
    if module.startswith("server.api") or module == "server.state":
        return "api"  # State is what the routes reach (app.extensions)
    return "top"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path) -> set[str]:
    """The server modules `path` imports (`from pkg import mod` counts as importing mod)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "server"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "server":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names
                          if is_module(f"{target}.{a.name}")}
            found |= submodules or {target}
            if len(submodules) < len(node.names):
                found.add(target)  # names from the module itself
    return found


def libraries_of(path: Path) -> set[str]:
    """The top-level names of the libraries `path` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


#: Where a library may be imported, by module name prefix.
CONFINED = {"llama_cpp": ("server.engines.llamacpp",),
            "flask": ("server.api", "server.app", "server.state", "server.openapi_doc"),
            "werkzeug": ("server.api", "server.app")}


def upward_imports() -> list[str]:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        name = module_name(path)
        here = floor_of(name)
        for target in sorted(imports_of(path)):
            there = floor_of(target)
            if LEVELS[there] > LEVELS[here]:
                found.append(f"{name} ({here}) imports {target} ({there})")
    return found


def test_no_import_runs_up_a_floor():
    assert upward_imports() == []


def test_libraries_stay_in_their_room():
    strays = [f"{module_name(path)} imports {library}"
              for path in sorted(SERVER.rglob("*.py"))
              for library in sorted(libraries_of(path) & CONFINED.keys())
              if not module_name(path).startswith(CONFINED[library])]
    assert strays == []


def test_the_check_sees_imports():
    """The scan finds what it must (or the first test would pass by finding nothing)."""
    pipeline = imports_of(SERVER / "core" / "pipeline.py")
    assert "server.core.engine" in pipeline and "server.core.runtime" in pipeline
    grammar = imports_of(SERVER / "engines" / "llamacpp" / "grammar.py")
    assert {"server.core.numbers", "server.core.regex", "server.core.schema"} <= grammar
    assert floor_of("server.api.openai") == "api" and floor_of("server.app") == "top"
    assert "llama_cpp" in libraries_of(SERVER / "engines" / "llamacpp" / "model.py")
