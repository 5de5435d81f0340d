"""The package's layers (DESIGN.md), checked on the source: nothing imports upward.

Bottom up: the base (errors, kinds, names, settings, utils), the stores, the workspace, the
project file and the prediction log, the stages, pipelines, the CLI. A module may import its
own top-level package, or one strictly below it; stages of one rank never import each other
(serving never imports training, monitoring reads the log through ``loopml.predictions``).
Imports inside functions count too; only ``if TYPE_CHECKING:`` blocks are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "loopml"

BASE = 0
RANK = {
    "errors": BASE,
    "kinds": BASE,
    "names": BASE,
    "settings": BASE,
    "utils": BASE,
    "stores": 10,
    "workspace": 20,
    "testing": 25,  # the store contract kit
    "project": 30,
    "spool": 28,  # the prediction log's local segment log
    "predictions": 30,
    "feedback": 35,
    "data": 40,
    "features": 41,
    "evaluate": 41,
    "registry": 42,
    "train": 50,
    "serve": 50,
    "monitor": 50,
    "lineage": 50,
    "engines": 55,  # where batch work runs (in process, Spark); above the stages it runs
    "pipeline": 60,
    "quickstart": 60,
    "cli": 70,
    "__init__": 80,
    "__main__": 80,
}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level loopml package) of every import outside TYPE_CHECKING blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("loopml."):
                        found.append((child.lineno, alias.name.split(".")[1]))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                parts = child.module.split(".")
                if parts[0] == "loopml":
                    if len(parts) > 1:
                        found.append((child.lineno, parts[1]))
                    else:
                        found.extend((child.lineno, a.name) for a in child.names)
            visit(child)

    visit(tree)
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_every_top_level_part_has_a_rank() -> None:
    tops = {_top(p) for p in MODULES if "migrations" not in p.parts}
    assert tops <= set(RANK), f"give these a layer in RANK: {sorted(tops - set(RANK))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_import(path: Path) -> None:
    if "migrations" in path.parts:
        return
    top = _top(path)
    rank = RANK[top]
    wrong = []
    for line, target in _imports(ast.parse(path.read_text(), str(path))):
        if target == top or target not in RANK:
            continue
        if rank == BASE and RANK[target] == BASE:
            continue
        if RANK[target] >= rank:
            wrong.append(f"line {line}: {top} (rank {rank}) imports {target} (rank {RANK[target]})")
    assert not wrong, "\n".join(wrong)
