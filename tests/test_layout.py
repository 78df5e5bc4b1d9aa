"""
The package's structure: imports point one way (no module imports, even
for type checking only, a module that imports it back), and importing the
server's modules installs no reactor and loads no optional driver.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "jmap_twisted"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """
    Every module of the package and the package modules it imports, wherever
    the import statement is (top level, function, ``TYPE_CHECKING``).
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "jmap_twisted":
                    graph[name].add(target)
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components with more than one module (Tarjan).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    """
    No two modules of the package import each other, directly or through
    others.
    """
    graph = import_graph()
    assert len(graph) > 100
    assert graph["jmap_twisted.service"] >= {"jmap_twisted.server", "jmap_twisted.web"}
    assert cycles(graph) == []


def test_the_finder_sees_a_cycle() -> None:
    """
    The check above can fail: a cycle through three modules is found.
    """
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_front_ends_and_configuration_point_down() -> None:
    """
    The container imports no front end; configuration does not depend on
    the WebSocket package; methods do not import the smarthost; mail
    delivery does not import the methods.
    """
    graph = import_graph()

    def reaches(start: str, prefix: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(graph[module])
        return any(m.startswith(prefix) for m in seen - {start})

    assert not reaches("jmap_twisted.server", "jmap_twisted.http")
    assert not reaches("jmap_twisted.server", "jmap_twisted.ws")
    assert not reaches("jmap_twisted.config", "jmap_twisted.ws")
    assert not any(
        m.startswith("jmap_twisted.mail.smarthost") for m in _all("jmap_twisted.methods", graph)
    )
    assert not any(m.startswith("jmap_twisted.methods") for m in _all("jmap_twisted.mail", graph))


def _all(prefix: str, graph: dict[str, set[str]]) -> set[str]:
    return {t for m, targets in graph.items() if m.startswith(prefix) for t in targets}


def test_importing_the_server_installs_no_reactor_and_loads_no_driver() -> None:
    """
    Importing the package's API, server, service and resource tree leaves
    the reactor to be chosen later and loads neither txamqp nor psycopg.
    """
    code = (
        "import sys, jmap_twisted, jmap_twisted.service, jmap_twisted.web\n"
        "jmap_twisted.JMAPServer, jmap_twisted.resource, jmap_twisted.JMAPService\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('txamqp', 'psycopg', 'psycopg_pool')]\n"
        "print('twisted.internet.reactor' in sys.modules, loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False []"


def direct_store_calls(path: Path) -> list[str]:
    """
    The ``<…>.store.read(…)``/``.write(…)`` calls (or through ``_store``) of
    a module, as ``line: call``.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("read", "write")
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr in ("store", "_store")
        ):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_methods_reach_the_store_through_the_rights_checks() -> None:
    """
    No method module reads or writes the mail store but through
    :class:`jmap_twisted.methods.access.MailAccess` (``MailMethods.read``
    and ``write``), which shows a sharee only what they may see and checks
    their every change.
    """
    methods = PACKAGE / "methods"
    offenders = {
        path.name: calls
        for path in sorted(methods.glob("*.py"))
        if path.name != "access.py" and (calls := direct_store_calls(path))
    }
    assert offenders == {}
    assert direct_store_calls(methods / "access.py")


def test_the_store_call_finder_sees_a_direct_call(tmp_path: Path) -> None:
    """
    The check above can fail: direct calls through ``store`` and
    ``_store`` are found, calls through the access wrapper are not.
    """
    module = tmp_path / "m.py"
    module.write_text(
        "async def f(self):\n"
        "    await self.store.read(a, g)\n"
        "    await self._store.write(a, g)\n"
        "    await self.read(a, g)\n"
    )
    assert direct_store_calls(module) == ["2: self.store.read", "3: self._store.write"]
