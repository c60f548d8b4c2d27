"""The layout stays what docs/architecture.md says: no import cycles (function-level and
TYPE_CHECKING imports included), few modules at the top, a public API that is what __all__ says.

The layer and independence contracts themselves are import-linter's (``nox -s lint``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import migrate_eval

PACKAGE = Path(migrate_eval.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every import of one of our modules by another, wherever it stands in the file."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                # `from package import submodule` depends on the submodule (a package's
                # __init__ runs first for any of its submodules: not an edge of its own)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                # the longest prefix that is one of our modules
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_at_all() -> None:
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_few_modules_at_the_top_the_stages_in_packages() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for stage in ("core", "ingest", "plan", "replay", "score", "verdict", "report", "export"):
        assert (PACKAGE / stage / "__init__.py").is_file(), stage


def test_core_imports_nothing_above_it() -> None:
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("migrate_eval.core."):
            above = [t for t in targets if not t.startswith("migrate_eval.core")]
            assert above == [], (module, above)


def test_public_api_is_what_all_says() -> None:
    names = set(migrate_eval.__all__)
    assert names == {
        "CandidateSpec",
        "ConfigError",
        "Exchange",
        "ExitCode",
        "InfrastructureError",
        "LogFormat",
        "MetricContext",
        "MigrateEvalError",
        "Provider",
        "ReplayResult",
        "Response",
        "Results",
        "Run",
        "RunOutcome",
        "Suite",
        "UserError",
        "VendorError",
        "WatchOutcome",
        "__version__",
        "adapt",
        "cache_export",
        "cache_import",
        "cache_stats",
        "compare",
        "export_lm_eval",
        "gate",
        "history",
        "init",
        "load_run",
        "load_suite",
        "profile",
        "provider_matrix",
        "register_format",
        "register_metric",
        "register_provider",
        "rerender",
        "run",
        "watch",
    }
    for name in names:
        assert getattr(migrate_eval, name) is not None, name
    assert sorted(dir(migrate_eval)) == sorted(names)


def test_every_command_has_a_function() -> None:
    from click import Group

    from migrate_eval.cli import main

    api = importlib.import_module("migrate_eval.api")
    commands: list[str] = []
    for name, cmd in main.commands.items():
        if isinstance(cmd, Group):
            commands += [f"{name}_{sub}".replace("-", "_") for sub in cmd.commands]
        else:
            commands.append(name)
    wanted = {
        "run": "run",
        "report": "rerender",
        "profile": "profile",
        "init": "init",
        "compare": "compare",
        "gate": "gate",
        "providers": "provider_matrix",
        "cache_export": "cache_export",
        "cache_import": "cache_import",
        "cache_stats": "cache_stats",
        "export_lm_eval": "export_lm_eval",
        "watch": "watch",
        "history": "history",
        "adapt": "adapt",
    }
    assert sorted(commands) == sorted(wanted)
    for command, function in wanted.items():
        assert callable(getattr(api, function)), command
