"""The package's shape: one home per concern, no import circle, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glmocr_lf"
MAX_MODULE_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every glmocr_lf module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    # a package's __init__ importing its own submodules is not a circle
    return {name: {m for m in imports_of(path, known) if not name.startswith(m + ".") and m != name}
            for name, path in mods.items()}


def test_no_import_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_export_does_not_import_train() -> None:
    assert not {m for m in graph()["glmocr_lf.export.merge"] if m.startswith("glmocr_lf.train")}


def test_one_module_reads_dataset_info_and_one_reads_json_lines() -> None:
    readers_of_info, json_lines_parsers = [], []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        nodes = list(ast.walk(ast.parse(text)))
        names_info = any((isinstance(n, ast.Name) and n.id == "DATASET_INFO")
                         or (isinstance(n, ast.Attribute) and n.attr == "DATASET_INFO")
                         or (isinstance(n, ast.Constant) and n.value == "dataset_info.json") for n in nodes)
        parses_json = any(isinstance(n, ast.Attribute) and n.attr in ("loads", "load")
                          and isinstance(n.value, ast.Name) and n.value.id == "json" for n in nodes)
        if names_info and parses_json:
            readers_of_info.append(name)
        if any(isinstance(loop, (ast.For, ast.comprehension)) and _parses_json(loop) for loop in nodes):
            json_lines_parsers.append(name)
    assert readers_of_info == ["glmocr_lf.data.info"]
    assert json_lines_parsers == ["glmocr_lf.data.jsonl"]


def _parses_json(loop: ast.For | ast.comprehension) -> bool:
    """A loop over the lines of a text or file whose body decodes JSON: a JSON Lines reader."""
    over_lines = any(word in ast.unparse(loop.iter) for word in ("split", "readline", "open(", "handle"))
    parts = loop.body if isinstance(loop, ast.For) else [loop]
    return over_lines and any(isinstance(n, ast.Attribute) and n.attr in ("loads", "decode")
                              for part in parts for n in ast.walk(part))


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n >= MAX_MODULE_LINES} == {}


def string_constants(path: Path) -> list[str]:
    """The string literals of a module, docstrings left out (they may name anything)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_one_module_names_the_run_records() -> None:
    names = ("glmocr_lf_run.json", "glmocr_lf_export.json", "eval_run.json")
    naming = sorted(name for name, path in modules().items()
                    if any(record in text for text in string_constants(path) for record in names))
    assert naming == ["glmocr_lf.runtime.records"]
