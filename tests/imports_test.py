"""The package's shape: module-level imports between mixlab's modules form no circle, and every module
basename is unique (one meaning per name; experiments/ entry modules aside)."""

import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """mixlab modules imported at module level (not inside functions or `if TYPE_CHECKING`)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from mixlab.models import dispatch` imports the submodule when there is one.
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        out |= {n for n in names if n in modules}
    return out


def test_no_import_circle():
    paths = {module_name(p): p for p in (ROOT / "mixlab").rglob("*.py")}
    graph = {m: top_level_imports(p, set(paths)) - {m} for m, p in paths.items()}
    # A package imports its children by being their parent: only the child -> parent direction counts.
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import circle: " + " -> ".join(stack[stack.index(d) :] + [d])
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert len(graph) > 80 and "mixlab.models.dispatch" in graph["mixlab.models.moe"]  # it saw the edges


def test_module_basenames_are_unique():
    names = collections.defaultdict(list)
    for folder in ("mixlab", "tests"):
        for p in (ROOT / folder).rglob("*.py"):
            if p.name not in ("__init__.py", "conftest.py"):
                names[p.name].append(str(p.relative_to(ROOT)))
    assert {n: ps for n, ps in names.items() if len(ps) > 1} == {}
