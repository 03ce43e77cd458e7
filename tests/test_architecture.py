"""The package's shape: one home per concern, no import circle, small modules."""

from __future__ import annotations

import ast
import re
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
        parses_json = any((isinstance(n, ast.Attribute) and n.attr in ("loads", "load")
                           and isinstance(n.value, ast.Name) and n.value.id == "json")
                          or (isinstance(n, ast.Name) and n.id == "load_document")  # jsonl's JSON reader
                          for n in nodes)
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
    names = ("glmocr_lf_run.json", "glmocr_lf_export.json", "eval_run.json", "page_run.json")
    naming = sorted(name for name, path in modules().items()
                    if any(record in text for text in string_constants(path) for record in names))
    assert naming == ["glmocr_lf.runtime.records"]


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def environment_literals(path: Path) -> list[str]:
    """Environment variable names a module spells out itself: a literal key of something named
    `environ` or `env` (`os.environ.get("X")`, `env["X"] = ...`, `"X" in environ`, `os.getenv("X")`),
    an `ENV_X = "..."` assignment, or any literal naming one of our own `GLMOCR_LF_` variables."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [s for s in string_constants(path) if s.startswith("GLMOCR_LF_")]

    def is_environment(node: ast.expr) -> bool:
        return ast.unparse(node).split(".")[-1] in ("environ", "env", "environment")

    def literal(node: ast.AST | None) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and is_environment(node.value):
            key = literal(node.slice)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args and (
                (node.func.attr in ("get", "pop", "setdefault") and is_environment(node.func.value))
                or ast.unparse(node.func) == "os.getenv"):
            key = literal(node.args[0])
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                and is_environment(node.comparators[-1]):
            key = literal(node.left)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.startswith("ENV_")
                                                  for t in node.targets):
            key = literal(node.value)
        if key is not None:
            found.append(key)
    return found


def test_environment_names_only_in_constants() -> None:
    spelled = {name: environment_literals(path) for name, path in modules().items()
               if name != "glmocr_lf.runtime.constants"}
    assert {name: keys for name, keys in spelled.items() if keys} == {}


def test_one_cache_folder() -> None:
    """runtime/paths.cache_dir is the one function that knows where the cache is; nobody else reads
    its variables (the tokenised data once read a second, undocumented one)."""
    defining = sorted(name for name, path in modules().items()
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                      if isinstance(node, ast.FunctionDef) and node.name == "cache_dir")
    assert defining == ["glmocr_lf.runtime.paths"]
    readers = sorted(name for name, path in modules().items()
                     if any(isinstance(n, (ast.Name, ast.Attribute)) and
                            (n.id if isinstance(n, ast.Name) else n.attr) in ("ENV_CACHE_DIR", "ENV_XDG_CACHE_HOME")
                            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
                     and name != "glmocr_lf.runtime.constants")
    assert readers == ["glmocr_lf.runtime.paths"]


def test_one_default_data_folder() -> None:
    """The default data folder is constants.DATA_DIR; a literal "data" elsewhere is a second copy
    (the click group named `data` aside)."""
    copies = []
    for name, path in modules().items():
        if name == "glmocr_lf.runtime.constants":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = _parents(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "data":
                parent = parents.get(id(node))
                if not (isinstance(parent, ast.Call) and ast.unparse(parent.func) == "click.group"):
                    copies.append(f"{name}:{node.lineno}")
    assert copies == []


def test_one_model_folder_check() -> None:
    """What a usable model folder holds is runtime/modelfiles.model_dir_checks; doctor renders it
    (it once had its own, which said ok to a folder train refused)."""
    parts = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "video_preprocessor_config.json")
    naming = sorted(name for name, path in modules().items()
                    if any(part in text for text in string_constants(path) for part in parts)
                    or "processor_sources" in path.read_text(encoding="utf-8"))
    assert naming == ["glmocr_lf.runtime.modelfiles"]
    assert "model_dir_checks" in (PACKAGE / "project" / "doctor.py").read_text(encoding="utf-8")


def test_one_function_turns_a_registered_name_into_a_file() -> None:
    """data/info.local_file joins an entry's file_name to the data folder, after the entry's checks;
    nobody else reads `file_name` off an entry (data/layout reads COCO's own `file_name`)."""
    readers = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = (node.slice if isinstance(node, ast.Subscript) else
                   node.args[0] if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                   and node.func.attr == "get" and node.args else None)
            if isinstance(key, ast.Constant) and key.value == "file_name":
                readers.append(name)
    assert sorted(set(readers) - {"glmocr_lf.data.layout"}) == ["glmocr_lf.data.info"]


def _calls(path: Path) -> set[str]:
    """The dotted names a module calls (`os.cpu_count`, `difflib.get_close_matches`, ...)."""
    return {ast.unparse(n.func) for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Call)}


def test_small_helpers_have_one_home() -> None:
    """Path inside a folder (fsutil.is_inside), the worker pool (workers.worker_pool) and
    did-you-mean (errors.nearest) were copied into 2-4 modules each."""
    defining_inside = sorted(name for name, path in modules().items()
                             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                             if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in ("inside", "is_inside"))
    assert defining_inside == ["glmocr_lf.runtime.fsutil"]
    pools = sorted(name for name, path in modules().items()
                   if {"multiprocessing.get_context", "multiprocessing.get_all_start_methods"} & _calls(path))
    assert pools == ["glmocr_lf.runtime.workers"]
    suggesting = sorted(name for name, path in modules().items()
                        if "difflib.get_close_matches" in _calls(path))
    assert suggesting == ["glmocr_lf.runtime.errors"]
    counting = sorted(name for name, path in modules().items()
                      if {"os.cpu_count", "os.sched_getaffinity"} & _calls(path))
    assert counting == ["glmocr_lf.runtime.workers"]  # one copy counted the machine, not the affinity
    finding = sorted(name for name, path in modules().items() if "importlib.util.find_spec" in _calls(path))
    # the kernels hook's import finder locates the module it patches: not an "is it installed"
    assert finding == ["glmocr_lf.kernels.hook.sitecustomize", "glmocr_lf.runtime.host"]


def test_one_home_for_the_prompt_template() -> None:
    """The glm_ocr strings live in data/template.py; nobody formats a prompt another way (smoke
    once used the model's chat template, which drops the newline training puts after <|user|>)."""
    pieces = ("[gMASK]", "<|user|>", "<|assistant|>", "<|begin_of_image|>")
    spelling = sorted(name for name, path in modules().items()
                      if any(piece in text for text in string_constants(path) for piece in pieces))
    # the tiny model's vocabulary and its own chat template are model files, as on the hub
    assert spelling == ["glmocr_lf.data.template", "glmocr_lf.smoke.tiny_model"]
    templating = sorted(name for name, path in modules().items()
                        if any(call.endswith("apply_chat_template") for call in _calls(path)))
    assert templating == []


def test_config_rules_have_one_home() -> None:
    """bf16, fp16 and quantization (and every other config rule) are refused in the rule table only."""
    keys = ("train.fp16", "train.bf16", "model.quantization_bit", "model.enable_liger_kernel", "output.report_to")
    homes = {name for name, path in modules().items()
             if any(f'"{key}"' in path.read_text(encoding="utf-8") for key in keys)}
    assert homes == {"glmocr_lf.config.rules"}


def test_one_module_runs_child_processes() -> None:
    """runtime/process.py is the one place a child process starts (nvidia-smi and the key-table child too)."""
    starters = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] == "subprocess" for n in names):
                    starters.add(name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("system", "popen", "spawnv", "spawnvp", "execv", "execvp", "fork"):
                starters.add(name)
    assert starters == {"glmocr_lf.runtime.process"}


def test_cited_documents_are_in_the_repository() -> None:
    """A docstring or comment that cites `folder/file.md` points at a file of this repository
    (generate.py and metrics.py once cited reference/*.md, which is not in it)."""
    root = PACKAGE.parent
    cited = {(name, match) for name, path in modules().items()
             for match in re.findall(r"\b((?:[\w-]+/)+[\w-]+\.md)\b", path.read_text(encoding="utf-8"))
             if not match.startswith("md/")}  # omnidocbench's page layout, md/PAGE.md
    assert sorted((name, doc) for name, doc in cited if not (root / doc).is_file()) == []


MAX_FUNCTION_LINES = 50


def function_lengths() -> dict[str, int]:
    """module.[Class.]function -> its lines, from `def` to its last line (nested functions included)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, name)

    for module, path in modules().items():
        visit(ast.parse(path.read_text(encoding="utf-8")), module)
    return found


def test_functions_stay_short() -> None:
    """Every function (methods and nested ones too) fits on a screen; no exceptions."""
    assert {name: n for name, n in function_lengths().items() if n > MAX_FUNCTION_LINES} == {}


def test_prepare_reads_as_the_list_of_steps() -> None:
    """train/plan.prepare: load, build the context, run the steps, apply once, decide kernels,
    gather the problems, assemble; each a call, the whole readable at a glance."""
    assert function_lengths()["glmocr_lf.train.plan.prepare"] <= 25
    source = (PACKAGE / "train" / "plan.py").read_text(encoding="utf-8")
    assert "for step in STEPS:" in source


def test_click_choices_come_from_the_library() -> None:
    """A `click.Choice` lists a closed set the library defines (constants.HUBS, METHODS, ...); a
    literal copy drifted from it and cost five `type: ignore[arg-type]` in cli/."""
    literal = []
    for name, path in modules().items():
        if not name.startswith("glmocr_lf.cli"):
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "click.Choice" and node.args \
                    and isinstance(node.args[0], (ast.List, ast.Tuple, ast.Set)):
                literal.append(f"{name}:{node.lineno}")
        if "type: ignore[arg-type]" in text:
            literal.append(f"{name}: type: ignore[arg-type]")
    assert literal == []


def test_train_and_eval_check_a_model_with_one_function() -> None:
    """Whether a model can be loaded here (a complete folder, or a hub id cached or reachable) is
    modelfiles.model_problems, for train and eval alike; only doctor reports the pieces itself."""
    callers = sorted(name for name, path in modules().items()
                     if any(isinstance(n, ast.Name) and n.id == "uncached_hub_model"
                            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert callers == ["glmocr_lf.project.doctor", "glmocr_lf.runtime.modelfiles"]
    for user in ("glmocr_lf.train.plan", "glmocr_lf.evaluation.run"):
        assert "model_problems" in modules()[user].read_text(encoding="utf-8"), user


def test_data_depends_on_neither_launch_nor_config() -> None:
    """data/ sits under config and train: it once imported launch (registry's whitespace note) and
    config (report's load_config); and train's helpers read TrainConfig's typed properties
    (`packing`, `trackers`) instead of reaching into config's rule helpers."""
    edges = graph()
    upward = {name: sorted(m for m in deps if m == "glmocr_lf.runtime.launch" or m.startswith("glmocr_lf.config"))
              for name, deps in edges.items() if name.startswith("glmocr_lf.data.")}
    assert {name: deps for name, deps in upward.items() if deps} == {}
    for helper in ("glmocr_lf.train.datacheck", "glmocr_lf.train.tracking"):
        assert {m for m in edges[helper] if m.startswith("glmocr_lf.config")} <= {"glmocr_lf.config.models"}, helper


def test_tests_share_helpers_not_conftest() -> None:
    """Shared test helpers are imported from tests/helpers.py; conftest.py holds fixtures only."""
    tests = PACKAGE.parent / "tests"
    importing = sorted(path.name for path in tests.glob("*.py")
                       if any(line.lstrip().startswith(("from conftest import", "import conftest"))
                              for line in path.read_text(encoding="utf-8").splitlines()))
    assert importing == []
