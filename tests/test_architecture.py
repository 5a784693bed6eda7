"""The layers of docs/architecture.md, enforced: an AST walk over every import in src/dimcollapse.

Every ``import`` / ``from ... import`` counts, also those inside functions (lazy imports) and under
``if TYPE_CHECKING:``: a layer rule that a lazy import may break is no rule. The table below is the one
in docs/architecture.md; change both together.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dimcollapse"
BOTTOM = {"errors", "registry", "utils", "contracts", "records"}
COMPONENTS = {"models", "objectives", "regularizers", "data"}

# package -> the dimcollapse packages it may import (the root package ``dimcollapse`` is open to all)
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "registry": {"errors", "contracts"},  # contracts under TYPE_CHECKING: mypy checks what registers
    "utils": {"errors"},
    "contracts": set(),
    "records": {"errors", "utils"},
    "diagnostics": {"diagnostics.engine", "errors", "utils", "records"},
    "diagnostics.engine": {"errors", "utils"},  # the compute engine: never imports a metric definition
    "theory": {"diagnostics", "errors", "utils", "records"},
    "track": {"diagnostics", "errors", "registry", "utils", "contracts", "records"},
    "models": BOTTOM | {"diagnostics"},
    "data": BOTTOM | {"diagnostics"},
    "objectives": BOTTOM | {"diagnostics", "models"},
    "regularizers": BOTTOM | {"diagnostics", "models"},
    "training": BOTTOM | COMPONENTS | {"diagnostics", "track"},
    "launch": {"errors", "utils"},  # executors: start `dimcollapse train` processes; no training engine
    "study": BOTTOM | COMPONENTS | {"diagnostics", "track", "training", "launch"},
    "viz": {"errors", "utils"},
    "report": BOTTOM | COMPONENTS | {"diagnostics", "track", "training", "study", "theory", "viz"},
    "analysis": BOTTOM | COMPONENTS | {"diagnostics", "track", "training", "viz"},
    "cli": BOTTOM
    | COMPONENTS
    | {"diagnostics", "track", "training", "study", "report", "theory", "analysis", "launch", "viz"},
    "__init__": {"errors", "track"},  # the package root re-exports the ways in (lazily)
    "__main__": {"cli"},
}

# third-party packages a layer may import (stdlib always allowed); a layer not listed may use any
THIRD_PARTY: dict[str, set[str]] = {
    "errors": set(),
    "registry": set(),
    "utils": {"numpy", "torch", "matplotlib"},
    "contracts": {"torch"},
    "records": set(),
    "diagnostics": {"numpy", "torch", "scipy", "sklearn", "faiss", "skdim", "threadpoolctl"},
    "diagnostics.engine": {"numpy", "torch", "faiss", "threadpoolctl"},
    "track": {"numpy", "torch", "lightning", "torchmetrics", "wandb"},  # wandb: only for a WandbLogger given
    "viz": {"numpy", "matplotlib", "sklearn", "umap"},
    "launch": {
        "submitit",
        "yaml",
    },  # a launcher starts processes: no torch, no Lightning in the study process
}
# nothing below training may depend on the training engine or the CLI, nor draw (theory draws its figures)
ENGINE = {"lightning", "omegaconf", "typer", "rich"}
FORBIDDEN: dict[str, set[str]] = {
    layer: ENGINE | {"matplotlib"} for layer in COMPONENTS | {"diagnostics", "diagnostics.engine"}
}
FORBIDDEN["theory"] = ENGINE


@dataclass(frozen=True)
class Edge:
    """One import statement: the importing file and line, the importing module and the imported one."""

    file: str
    line: int
    source: str
    target: str


def module_name(path: Path) -> str:
    """dimcollapse.a.b for src/dimcollapse/a/b.py (the package itself for an __init__.py)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in ``tree`` (lazy ones included).

    ``from pkg import name`` yields ``pkg.name`` when that is a module of ours, else ``pkg``.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if is_our_module(full) else base


def is_our_module(name: str) -> bool:
    """True when ``name`` is a module or package under src/dimcollapse."""
    if name != "dimcollapse" and not name.startswith("dimcollapse."):
        return False
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def edges_of_source(text: str, file: str, module: str, is_package: bool = False) -> list[Edge]:
    """Every import of one source text as edges from ``module``."""
    tree = ast.parse(text, filename=file)
    return [Edge(file, line, module, target) for line, target in imports_of(tree, module, is_package)]


@cache
def all_edges() -> list[Edge]:
    """Import edges of every .py file under src/dimcollapse (parsed once per test session)."""
    edges: list[Edge] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        edges += edges_of_source(path.read_text(), rel, module_name(path), path.name == "__init__.py")
    return edges


# sub-packages that are a layer of their own, below their parent package: whoever may import the parent
# may import them, they may import only their own row (the parent's definitions import its engine)
SUBLAYERS = {"diagnostics.engine": "diagnostics"}


def layer_of(module: str) -> str:
    """The layer (top-level package, a sub-layer of SUBLAYERS, or root module) of a dimcollapse module."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    sub = ".".join(parts[1:3])
    return sub if sub in SUBLAYERS else parts[1]


def may_import(src: str, dst: str) -> bool:
    """True when layer ``src`` may import layer ``dst`` (its own layer, the root, its row, or the
    sub-layer of a package its row holds)."""
    if dst in (src, "__init__") or dst in LAYERS.get(src, set()):
        return True
    parent = SUBLAYERS.get(dst)
    return parent is not None and (parent == src or parent in LAYERS.get(src, set()))


def violations(edges: list[Edge]) -> list[str]:
    """Every edge that the layer table or the third-party rules forbid, as 'file:line: a -> b'."""
    bad = []
    for e in edges:
        src = layer_of(e.source)
        top = e.target.split(".")[0]
        if top == "dimcollapse":
            dst = layer_of(e.target)
            if not may_import(src, dst):
                bad.append(f"{e.file}:{e.line}: {src} may not import {e.target}")
        elif top in sys.stdlib_module_names or top == "__future__":
            continue
        elif src in THIRD_PARTY and top not in THIRD_PARTY[src]:
            bad.append(f"{e.file}:{e.line}: {src} may not import the third-party package {top}")
        elif top in FORBIDDEN.get(src, set()):
            bad.append(f"{e.file}:{e.line}: {src} (below training) may not import {top}")
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components (size > 1) of the module graph, lazy imports included.

    Edges into a package's ``__init__`` from its own modules are left out: a package re-exporting its
    modules is not a cycle of concepts.
    """
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.target.startswith("dimcollapse"):
            continue
        if e.source.startswith(e.target + "."):
            continue
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_follows_the_layer_table() -> None:
    bad = violations(all_edges())
    assert not bad, "layer violations (see docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycles_between_modules() -> None:
    found = cycles(all_edges())
    assert not found, "import cycles (lazy imports included):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_package_has_a_layer_and_a_row_in_the_docs() -> None:
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}
    missing = sorted((packages | modules) - set(LAYERS))
    assert not missing, f"add these to LAYERS and docs/architecture.md: {missing}"
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `(?:dimcollapse\.)?([a-z_]+)/?`", doc, flags=re.M))
    assert packages | modules <= rows, (
        f"no row in docs/architecture.md for {sorted(packages | modules - rows)}"
    )
    assert set(LAYERS) - {"__init__", "__main__"} - set(SUBLAYERS) <= rows
    sub_rows = set(re.findall(r"^\| `([a-z_]+/[a-z_]+)/`", doc, flags=re.M))
    assert {s.replace(".", "/") for s in SUBLAYERS} <= sub_rows, f"no docs row for one of {SUBLAYERS}"
    for sub in SUBLAYERS:
        assert (SRC.joinpath(*sub.split(".")) / "__init__.py").is_file(), f"{sub} is no package"


def test_the_checker_sees_lazy_relative_and_from_package_imports() -> None:
    text = """
from dimcollapse.errors import InputError
from dimcollapse import diagnostics as dg
def f():
    from dimcollapse.training.run import train
    from ..study import results
    import lightning
"""
    edges = edges_of_source(text, "x.py", "dimcollapse.regularizers.x")
    targets = {e.target for e in edges}
    assert {"dimcollapse.training.run", "dimcollapse.study.results", "dimcollapse.diagnostics"} <= targets
    bad = violations(edges)
    assert len(bad) == 3, bad  # training, study (lazy / relative) and lightning; errors and diagnostics ok
    fake = [Edge("a.py", 1, "dimcollapse.theory.a", "dimcollapse.theory.b")]
    fake.append(Edge("b.py", 9, "dimcollapse.theory.b", "dimcollapse.theory.a"))
    assert cycles(fake) == [["dimcollapse.theory.a", "dimcollapse.theory.b"]]


def test_the_diagnostics_engine_sits_below_the_metric_definitions() -> None:
    engine = "dimcollapse.diagnostics.engine.k"
    up = edges_of_source("from dimcollapse.diagnostics.rank import rankme\n", "e.py", engine)
    assert violations(up) == ["e.py:1: diagnostics.engine may not import dimcollapse.diagnostics.rank"]
    down = "from dimcollapse.diagnostics.engine.knn import knn_core\n"
    for importer in ("dimcollapse.diagnostics.lid", "dimcollapse.regularizers.x", "dimcollapse.track.x"):
        assert violations(edges_of_source(down, "d.py", importer)) == [], importer
    assert len(violations(edges_of_source(down, "r.py", "dimcollapse.records.x"))) == 1
    assert len(violations(edges_of_source("import scipy\n", "s.py", engine))) == 1
    assert {e.source for e in all_edges() if layer_of(e.source) == "diagnostics.engine"}, "no engine modules"


@pytest.mark.parametrize(
    "package", ["diagnostics", "diagnostics.engine", "utils", "errors", "registry", "contracts"]
)
def test_bottom_layers_import_nothing_above_them(package: str) -> None:
    above = {"training", "study", "report", "cli", "analysis", "theory", "track"}
    hits = [e for e in all_edges() if layer_of(e.source) == package and layer_of(e.target) in above]
    assert not hits, hits


def test_only_utils_distributed_asks_torch_distributed_for_the_world() -> None:
    # one notion of the world, so that local_only() holds everywhere (a second one made LDReg hang)
    owner = "dimcollapse.utils.distributed"
    by_import = [e for e in all_edges() if e.target.startswith("torch.distributed") and e.source != owner]
    by_attribute = [
        str(path.relative_to(ROOT))
        for path in SRC.rglob("*.py")
        if module_name(path) != owner and re.search(r"\btorch\.distributed\.\w+\(", path.read_text())
    ]
    assert not by_import and not by_attribute, (by_import, by_attribute)


MAX_FUNCTION_LINES = 80


def long_functions(text: str, file: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'file:line name (n lines)' of every function or method in ``text`` longer than ``limit`` lines
    (from its ``def`` line to its last line; nested functions count in their parent and on their own)."""
    out = []
    for node in ast.walk(ast.parse(text, filename=file)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = int(node.end_lineno or node.lineno) - node.lineno + 1
            if n > limit:
                out.append(f"{file}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    found = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        for hit in long_functions(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, "split these functions (at most 80 lines each):\n" + "\n".join(found)


def test_the_length_check_counts_def_to_last_line() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    assert long_functions(f"def f():\n{body}\n", "x.py") == []  # def + 79 lines = 80
    method = "\n".join(f"        x{i} = {i}" for i in range(80))
    assert long_functions(f"class A:\n    def g(self):\n{method}\n", "x.py") == ["x.py:2 g (81 lines)"]


def test_the_how_to_add_recipes_name_files_and_names_that_exist() -> None:
    """Every `path.py` / `path.py:Name` the five recipes of docs/architecture.md name exists (paths without
    a placeholder such as <name>; relative to src/dimcollapse unless they start with tests/ or docs/)."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    start = doc.index("## How to add")
    section = doc[start : doc.index("\n## ", start + 3)]
    for kind in ("An objective", "A projector", "A regularizer", "A dataset", "A metric"):
        assert f"**{kind}.**" in section, f"no recipe for {kind.lower()}"
    refs = re.findall(r"`([a-z_/]+\.(?:py|md))(?::(\w+))?", section)
    assert len(refs) >= 15, refs
    for path, name in refs:
        base = ROOT if path.startswith(("tests/", "docs/")) else SRC
        file = base / path
        assert file.is_file(), f"docs/architecture.md names {path}, which does not exist"
        if name:
            assert re.search(rf"^\s*(?:class|def) {name}\b|^{name}\b", file.read_text(), flags=re.M), (
                f"{path} has no {name}"
            )
