"""The floors of hmgnn, drawn from its imports: every `hmgnn/**/*.py` is parsed with `ast`, and each import in it,
at the top of the module or inside a function, is an arrow from that module to the one it names. The model layer
(`hmgnn.models`) imports nothing of the ranking stage (`hmgnn.ranking`) that sits on it, and the graph of modules
has no cycle, save the lazy arrow back up listed in ALLOWED_UP (taken on first use, never at import). The model
registry (`hmgnn.registry`) sits above both, so its lazy import of the two-stage recommender points down."""

from __future__ import annotations

import ast
from pathlib import Path

import hmgnn

PACKAGE = Path(hmgnn.__file__).parent
BASE = "hmgnn"

ALLOWED_UP = {
    # `hmgnn.load` / `hmgnn.Model`: the package's __getattr__ imports the public API on first use, which reaches
    # every floor (and back to `hmgnn` for its __version__).
    ("hmgnn", "hmgnn.api"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The hmgnn modules `name` imports anywhere in its text: `import a.b`, `from a import b` (module `a.b` where
    it is one, else `a`), relative imports, and a module named by a string constant (a lazy `importlib` import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # importing a.b.c runs a, a.b and a.b.c; the arrow that matters is to the deepest known module
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                add(full if full in known else source)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known \
                and node.value.startswith(BASE + "."):
            add(node.value)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "hmgnn.models.gnn" in graph["hmgnn.ranking.candidates"]  # top level
    assert "hmgnn.api" in graph["hmgnn"]  # inside a function
    assert "hmgnn.ranking.recommender" in graph["hmgnn.registry"]  # by name, for importlib


def test_the_models_import_nothing_of_the_ranking_stage():
    graph = import_graph()
    upward = sorted((source, target) for source, targets in graph.items() for target in targets
                    if (source == "hmgnn.models" or source.startswith("hmgnn.models."))
                    and (target == "hmgnn.ranking" or target.startswith("hmgnn.ranking."))
                    and (source, target) not in ALLOWED_UP)
    assert upward == []


def test_the_registry_stands_above_the_models_and_the_ranking_stage():
    # hmgnn.registry names both floors (the two-stage recommender lazily, by name) and neither names it
    graph = import_graph()
    assert {"hmgnn.models.base", "hmgnn.ranking.recommender"} <= graph["hmgnn.registry"]
    below = [source for source, targets in graph.items() if "hmgnn.registry" in targets
             and source.startswith(("hmgnn.models", "hmgnn.ranking"))]
    assert below == []


def test_no_import_cycle_but_the_allowed_lazy_arrows():
    graph = import_graph()
    for source, target in ALLOWED_UP:
        assert target in graph[source], f"{source} -> {target} is listed but no longer there: drop it"
        graph[source].discard(target)
    assert cycles(graph) == []


def test_packages_form_floors():
    # the same, drawn between packages: each module under hmgnn.models or hmgnn.ranking counts as its package
    def floor(name: str) -> str:
        for package in ("hmgnn.models", "hmgnn.ranking"):
            if name == package or name.startswith(package + "."):
                return package
        return name

    graph: dict[str, set[str]] = {}
    for source, targets in import_graph().items():
        for target in targets:
            if (source, target) not in ALLOWED_UP and floor(source) != floor(target):
                graph.setdefault(floor(source), set()).add(floor(target))
    assert cycles(graph) == []
