"""The fuzz corpus of issue 23: every malformed input class meets one `Error:` line (no traceback,
no hang, bounded time), or the warning that names its real cause."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from data_fixtures import invoke, make_png, sample, write_json

DEEP = 100_000
BIG_INT = "1" * 5000
SECONDS = 20  # every case answers well within this, on a loaded 2-core machine


def good(tmp: Path) -> None:
    make_png(tmp / "src" / "images" / "a.png")
    write_json(tmp / "src" / "ds.json", [sample()])


def deep_json(tmp: Path) -> None:
    good(tmp)
    (tmp / "src" / "deep.json").write_text("[" * DEEP + "]" * DEEP)


def deep_jsonl(tmp: Path) -> None:
    good(tmp)
    (tmp / "src" / "deep.jsonl").write_text(json.dumps(sample()) + "\n" + "[" * DEEP + "]" * DEEP + "\n")


def big_int(tmp: Path) -> None:
    good(tmp)
    (tmp / "src" / "big.json").write_text(f'[{{"messages": [], "n": {BIG_INT}}}]')
    (tmp / "src" / "big.jsonl").write_text(f'{{"messages": [], "n": {BIG_INT}}}\n')


def nul_path(tmp: Path) -> None:
    good(tmp)
    write_json(tmp / "src" / "nul.json", [sample("images/a\u0000.png")])


def surrogate(tmp: Path) -> None:
    good(tmp)
    (tmp / "src" / "sur.json").write_text(json.dumps([sample(answer="x")]).replace('"x"', '"\\ud800"'))
    (tmp / "src" / "sur.jsonl").write_text('{"image": "images/a.png", "text": "\\udfff"}\n')


def registry(tmp: Path, entries: dict[str, object], files: dict[str, str] | None = None) -> None:
    good(tmp)
    (tmp / "data").mkdir()
    (tmp / "data" / "dataset_info.json").write_text(json.dumps(entries))
    for name, text in (files or {}).items():
        (tmp / "data" / name).write_text(text)


def deep_registered(tmp: Path) -> None:
    registry(tmp, {"deep": {"file_name": "deep.json", "formatting": "sharegpt"}}, {"deep.json": "[" * DEEP})


def deep_info(tmp: Path) -> None:
    good(tmp)
    (tmp / "data").mkdir()
    (tmp / "data" / "dataset_info.json").write_text('{"a": ' + "[" * DEEP + "]" * DEEP + "}")


def big_int_info(tmp: Path) -> None:
    good(tmp)
    (tmp / "data").mkdir()
    (tmp / "data" / "dataset_info.json").write_text(f'{{"a": {{"file_name": "a.json", "n": {BIG_INT}}}}}')


def outside_entries(tmp: Path) -> None:
    (tmp / "secret.json").write_text(json.dumps([sample()]))
    registry(tmp, {"up": {"file_name": "../secret.json", "formatting": "sharegpt"},
                   "abs": {"file_name": "/etc/passwd", "formatting": "sharegpt"}})


def csv_quote(tmp: Path) -> None:
    rows = ["image,text"] + [f"p{i}.png,text {i}" for i in range(100)]
    rows[2] = 'p1.png,"broken text'
    (tmp / "open.csv").write_text("\n".join(rows) + "\n")
    rows[50] = 'p49.png,closed late"'
    (tmp / "late.csv").write_text("\n".join(rows) + "\n")


def csv_nul(tmp: Path) -> None:
    (tmp / "nul.csv").write_text("image,text\na.png,x\u0000y\n")


def yaml_bomb(tmp: Path) -> None:
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp / "bomb.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\n" + "\n".join(levels) + "\n")
    (tmp / "dup.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\nlearning_rate: 1.0e-4\n"
                                  "learning_rate: 2.0e-4\n")
    (tmp / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")


def sparse_target(tmp: Path) -> None:
    make_png(tmp / "pages" / "p.png")
    with (tmp / "pages" / "p.txt").open("wb") as handle:
        handle.truncate(4 * 2**30)  # 4 GB of holes: no disk used


Case = tuple[str, Callable[[Path], None], list[str], str]
# (id, setup, argv, the Error line)
ERRORS: list[Case] = [
    ("deep-json-validate", deep_json, ["data", "validate", "src/deep.json"],
     "Error: src/deep.json: invalid JSON: nested too deep to read (arrays or objects inside each other "
     "hundreds of levels deep)"),
    ("deep-json-register", deep_json, ["data", "register", "ds", "src/deep.json"],
     "Error: src/deep.json: invalid JSON: nested too deep to read (arrays or objects inside each other "
     "hundreds of levels deep)"),
    ("deep-jsonl-validate", deep_jsonl, ["data", "validate", "src/deep.jsonl"],
     "Error: src/deep.jsonl:2: invalid JSON: nested too deep to read"),
    ("deep-registered-validate", deep_registered, ["data", "validate", "deep"],
     "Error: data/deep.json: invalid JSON: nested too deep to read (arrays or objects inside each other "
     "hundreds of levels deep)"),
    ("deep-info-list", deep_info, ["data", "list"],
     "Error: data/dataset_info.json: invalid JSON: nested too deep to read (arrays or objects inside each "
     "other hundreds of levels deep)"),
    ("deep-info-register", deep_info, ["data", "register", "ds", "src/ds.json"],
     "Error: data/dataset_info.json: invalid JSON: nested too deep to read (arrays or objects inside each "
     "other hundreds of levels deep)"),
    ("big-int-json", big_int, ["data", "validate", "src/big.json"],
     "Error: src/big.json: invalid JSON: a number of 5000 digits (Python reads at most 4300)"),
    ("big-int-jsonl", big_int, ["data", "validate", "src/big.jsonl"],
     "Error: src/big.jsonl:1: invalid JSON: a number of 5000 digits (Python reads at most 4300)"),
    ("big-int-info", big_int_info, ["data", "list"],
     "Error: data/dataset_info.json: invalid JSON: a number of 5000 digits (Python reads at most 4300)"),
    ("nul-image-validate", nul_path, ["data", "validate", "src/nul.json"],
     "Error: src/nul.json: 1 samples, 0 OK, 1 error, 0 warnings"),
    ("nul-image-register", nul_path, ["data", "register", "ds", "src/nul.json"],
     "Error: src/nul.json: 1 error; nothing registered"),
    ("surrogate-validate", surrogate, ["data", "validate", "src/sur.json"],
     "Error: src/sur.json: 1 samples, 0 OK, 1 error, 0 warnings"),
    ("surrogate-register", surrogate, ["data", "register", "ds", "src/sur.json"],
     "Error: src/sur.json: 1 error; nothing registered"),
    ("surrogate-convert", surrogate, ["data", "convert", "src/sur.jsonl", "-o", "out.json"],
     "Error: src/sur.jsonl: 1 problem; nothing written"),
    ("outside-up-validate", outside_entries, ["data", "validate", "up"],
     "Error: data/dataset_info.json: dataset up: file_name '../secret.json' leaves the data dir; not read"),
    ("outside-abs-validate", outside_entries, ["data", "validate", "abs"],
     "Error: data/dataset_info.json: dataset abs: file_name '/etc/passwd' leaves the data dir; not read"),
    ("csv-open-quote", csv_quote, ["data", "convert", "open.csv", "-o", "out.json"],
     "Error: open.csv:3: a quoted field opens on this line and never closes; it would swallow every line "
     "after it (read 1 rows, the file has 100 lines after the header)"),
    ("csv-late-quote", csv_quote, ["data", "convert", "late.csv", "-o", "out.json"],
     "Error: late.csv:3: a quoted field opens on this line and holds 48 lines that read as rows "
     "('p2.png,text 2'...): its closing quote is missing"),
    ("csv-nul", csv_nul, ["data", "convert", "nul.csv", "-o", "out.json"],
     "Error: nul.csv:2: NUL byte in a CSV file; is it a CSV text file?"),
    ("yaml-bomb-get", yaml_bomb, ["config", "get", "bomb.yaml", "model_name_or_path"], "Error: bomb.yaml"),
    ("yaml-bomb-validate", yaml_bomb, ["config", "validate", "bomb.yaml"], "Error: bomb.yaml"),
    ("yaml-duplicate-key", yaml_bomb, ["config", "validate", "dup.yaml"], "Error: dup.yaml"),
    ("yaml-deep", yaml_bomb, ["config", "get", "deep.yaml", "a"], "Error: deep.yaml"),
    ("sparse-target", sparse_target, ["data", "convert", "pages", "-o", "out.json"],
     "Error: pages: 1 problem; nothing written"),
]
# the lines under a ConfigError's `Error: FILE` say where
DETAILS = {
    "yaml-bomb-get": "  YAML: aliases expand to more than 100,000 values; write the values out instead of nesting aliases",
    "yaml-bomb-validate": "  YAML: aliases expand to more than 100,000 values; write the values out instead of nesting aliases",
    "yaml-duplicate-key": "  line 3: duplicate key 'learning_rate' (first on line 2); LLaMA-Factory's reader refuses it: keep one",
    "yaml-deep": "  YAML: nested too deep to read",
    "nul-image-validate": "src/nul.json: sample 0: images[0]: path contains a NUL byte (\\u0000)",
    "surrogate-validate": "src/sur.json: sample 0: messages[1].content: lone surrogate \\ud800 at character 0; "
                          "not valid Unicode text (fix the escape in the file)",
    "surrogate-convert": "  src/sur.jsonl:1: text: lone surrogate \\udfff at character 0; not valid Unicode text "
                         "(fix the escape in the file)",
    "sparse-target": "  pages/p.txt: 4,294,967,296 bytes; a target text is at most 16 MiB (is it the right file?)",
}


@pytest.mark.parametrize(("setup", "args", "error"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_each_bad_input_is_one_error_line(tmp_path: Path, request: pytest.FixtureRequest,
                                          setup: Callable[[Path], None], args: list[str], error: str) -> None:
    setup(tmp_path)
    started = time.monotonic()
    result = invoke(*args)  # catch_exceptions=False: a traceback fails the test
    assert time.monotonic() - started < SECONDS
    lines = result.stderr.splitlines()
    assert result.exit_code == 1, result.stderr
    assert [line for line in lines if line.startswith("Error:")] == [error], result.stderr
    assert "Traceback" not in result.stderr
    detail = DETAILS.get(request.node.callspec.id)
    if detail is not None:
        assert detail in lines, result.stderr


def test_a_registry_holding_one_unreadable_file_still_lists(tmp_path: Path) -> None:
    from glmocr_lf.data.registry import sharegpt_entry

    deep_registered(tmp_path)
    (tmp_path / "data" / "ok.json").write_text(json.dumps([sample("../src/images/a.png")]))
    info = json.loads((tmp_path / "data" / "dataset_info.json").read_text())
    info["ok"] = sharegpt_entry("ok.json")
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(info))
    result = invoke("data", "list")
    assert (result.exit_code, result.stdout.splitlines()) == (0, [
        "NAME  SAMPLES  FILE       IMAGES", "deep  -        deep.json  -", "ok    1        ok.json    1"])


def test_entries_outside_the_data_dir_are_listed_but_not_read(tmp_path: Path) -> None:
    outside_entries(tmp_path)
    result = invoke("data", "list")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "Warning: up: file_name '../secret.json' leaves the data dir; not read",
        "Warning: abs: file_name '/etc/passwd' leaves the data dir; not read"]
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [
        ["up", "-", "../secret.json", "-"], ["abs", "-", "/etc/passwd", "-"]]


def test_a_symlinked_dataset_info_is_written_through_its_link(tmp_path: Path) -> None:
    good(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "info.json").write_text('{"theirs": {"file_name": "t.json"}}')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").symlink_to(tmp_path / "shared" / "info.json")
    assert invoke("data", "register", "ds", "src/ds.json").exit_code == 0
    assert (tmp_path / "data" / "dataset_info.json").is_symlink()
    assert sorted(json.loads((tmp_path / "shared" / "info.json").read_text())) == ["ds", "theirs"]


def test_convert_folder_entries_that_are_not_files_name_their_cause(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    make_png(pages / "good.png")
    (pages / "good.txt").write_text("fine")
    os.mkfifo(pages / "fifo.png")
    (pages / "dir.png").mkdir()
    (pages / "zero.png").symlink_to("/dev/zero")
    (pages / "loop.png").symlink_to("loop.png")
    (pages / "gone.png").symlink_to("nowhere.png")
    for stem in ("fifo", "dir", "zero", "loop", "gone"):
        (pages / f"{stem}.txt").write_text(stem)
    result = invoke("data", "convert", "pages", "-o", "out.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "Warning: pages/dir.png: is a directory, not a file; skipped",
        "Warning: pages/fifo.png: is a FIFO (named pipe), not a file; skipped",
        "Warning: pages/gone.png: is a broken symlink (to nowhere.png); skipped",
        "Warning: pages/loop.png: is a symlink loop; skipped",
        "Warning: pages/zero.png: is a device (a symlink to /dev/zero), not a file; skipped",
        "converted: text 1",
        "Wrote out.json (1 samples)",
    ]


def test_a_full_disk_while_appending_records_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval run appends its predictions one by one: ENOSPC there is one error, the records before whole."""
    from glmocr_lf.data import jsonl
    from glmocr_lf.runtime.errors import GlmocrLfError

    path = tmp_path / "predictions.jsonl"
    with jsonl.Appender(path) as appender:
        appender.add({"n": 1})

        def full(_fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(jsonl.os, "fsync", full)
        with pytest.raises(GlmocrLfError) as failed:
            appender.add({"n": 2})
    assert failed.value.message == f"{path}: cannot write: No space left on device"


def test_train_of_a_registry_holding_a_too_deep_file_is_one_data_error(tmp_path: Path) -> None:
    from helpers import put_in_hf_cache

    from glmocr_lf.data.registry import sharegpt_entry
    from glmocr_lf.train.plan import LaunchRequest, prepare

    registry(tmp_path, {"deep": sharegpt_entry("deep.json")}, {"deep.json": "[" * DEEP})
    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    assert invoke("config", "new", "--method", "lora", "--dataset", "deep", "-o", "lora.yaml").exit_code == 0
    plan = prepare(LaunchRequest(config=Path("lora.yaml"), overrides={"bf16": False, "dataset_dir": "data"}))
    assert [p.message for p in plan.problems] == [
        f"{tmp_path / 'data' / 'deep.json'}: invalid JSON: nested too deep to read (arrays or objects inside "
        "each other hundreds of levels deep)"]
