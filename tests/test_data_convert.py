"""`glmocr-lf data convert`: folder and JSONL/CSV sources, prompts, val split, round trip to validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import invoke, make_png


def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pages"
    for i, ext in enumerate([".txt", ".md", ".html", ".tex", ".txt", ".txt"]):
        make_png(root / f"p{i}.png", 40 + i, 30)
        (root / f"p{i}{ext}").write_text(f"target {i}\n")
    make_png(root / "orphan.png")
    return root


def test_folder_round_trip_with_val_split(tmp_path: Path) -> None:
    folder(tmp_path)
    result = invoke("data", "convert", "pages", "-o", "ocr.json", "--val-ratio", "0.34", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "Warning: pages/orphan.png: no .txt/.md/.html/.tex target beside it; skipped",
        "converted: text 4, table 1, formula 1",
        "  'Formula Recognition:': 1 train, 0 held out",  # one image: nothing to hold out
        "  'Table Recognition:': 1 train, 0 held out",
        "  'Text Recognition:': 3 train, 1 held out",  # about 0.34 of each task's images
        "Wrote ocr.json (5 samples)",
        "Wrote ocr_val.json (1 samples)",
    ]
    train, val = json.loads(Path("ocr.json").read_text()), json.loads(Path("ocr_val.json").read_text())
    assert not {i for s in train for i in s["images"]} & {i for s in val for i in s["images"]}
    by_image = {s["images"][0]: s for s in train + val}
    assert by_image["pages/p2.png"]["messages"] == [
        {"role": "user", "content": "<image>Table Recognition:"}, {"role": "assistant", "content": "target 2"}]
    assert by_image["pages/p3.png"]["messages"][0]["content"] == "<image>Formula Recognition:"
    for name in ("ocr.json", "ocr_val.json"):
        check = invoke("data", "validate", name)
        assert check.exit_code == 0 and check.stderr.splitlines()[-1].endswith("0 errors, 0 warnings"), check.stderr


def test_csv_and_jsonl_with_task_column_and_prompt(tmp_path: Path) -> None:
    make_png(tmp_path / "src" / "a.png")
    make_png(tmp_path / "src" / "b.png")
    (tmp_path / "src" / "rows.csv").write_text('image,text,task\na.png,"x, y",table\nb.png,plain,\n')
    assert invoke("data", "convert", "src/rows.csv", "-o", "src/out.json", "--task", "formula").exit_code == 0
    rows = json.loads((tmp_path / "src" / "out.json").read_text())
    assert [(r["images"], r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows] == [
        (["a.png"], "<image>Table Recognition:", "x, y"), (["b.png"], "<image>Formula Recognition:", "plain")]
    (tmp_path / "src" / "rows.jsonl").write_text('{"image": "a.png", "text": "t"}\n')
    assert invoke("data", "convert", "src/rows.jsonl", "-o", "src/j.json", "--prompt", "Read:").exit_code == 0
    assert json.loads((tmp_path / "src" / "j.json").read_text())[0]["messages"][0]["content"] == "<image>Read:"
    prompted = invoke("data", "convert", "src/rows.csv", "-o", "src/p.json", "--prompt", "Read:")
    assert prompted.exit_code == 0
    assert "converted: prompt 'Read:' 2" in prompted.stderr.splitlines()  # not the task column's counts
    assert invoke("data", "validate", "src/j.json").exit_code == 0


@pytest.mark.parametrize(("content", "expected"), [
    ('{"image": "a.png"}\n', "Error: rows.jsonl: 1 problem; nothing written\n"
                             "  rows.jsonl:1: text: missing or not a string (columns: image, text[, task])\n"),
    ('{"image": "a.png", "text": "t"\n', "Error: rows.jsonl:1:31: invalid JSON: Expecting ',' delimiter\n"),
    ('{"image": "nope.png", "text": "t"}\n{"image": "a.png", "text": " ", "task": "poem"}\n',
     "Error: rows.jsonl: 2 problems; nothing written\n  rows.jsonl:1: image: image not found: {tmp}/nope.png\n"
     "  rows.jsonl:2: task: unknown task 'poem'; use one of text, table, formula\n"),
])
def test_convert_errors_write_nothing(tmp_path: Path, content: str, expected: str) -> None:
    make_png(tmp_path / "a.png")
    (tmp_path / "rows.jsonl").write_text(content)
    result = invoke("data", "convert", "rows.jsonl", "-o", "out.json")
    assert (result.exit_code, result.stderr) == (1, expected.format(tmp=tmp_path))
    assert not Path("out.json").exists()


def test_convert_refuses_to_overwrite(tmp_path: Path) -> None:
    folder(tmp_path)
    Path("ocr.json").write_text("keep")
    result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert (result.exit_code, result.stderr) == (1, "Error: ocr.json: already exists\nHint: pass --force to overwrite it\n")
    assert Path("ocr.json").read_text() == "keep"


def test_folder_problems_all_at_once_with_the_validators_image_checks(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    make_png(pages / "good.png")
    (pages / "good.txt").write_text("ok")
    (pages / "empty.png").write_bytes(b"")  # 0 bytes
    (pages / "empty.txt").write_text("x")
    make_png(pages / "cut.png")
    (pages / "cut.png").write_bytes((pages / "cut.png").read_bytes()[:-20])  # truncated: no IEND
    (pages / "cut.txt").write_text("y")
    make_png(pages / "two.png")
    (pages / "two.txt").write_text("a")
    (pages / "two.md").write_text("b")
    (pages / "orphan.txt").write_text("no image")
    result = invoke("data", "convert", "pages", "-o", "out.json")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: pages: 3 problems; nothing written"
    assert lines[1] == "  pages/two.png: several targets (two.txt, two.md); keep one"
    assert lines[2].startswith("  pages/cut.txt: image: ") and "cut.png" in lines[2]
    assert lines[3] == f"  pages/empty.txt: image: empty image file (0 bytes): {pages / 'empty.png'}"
    assert lines[4] == "  warning: pages/orphan.txt: no image of the same name beside it; skipped"
    assert not Path("out.json").exists()


def test_val_split_is_stratified_by_task_and_counted(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    for i in range(8):
        make_png(pages / f"t{i}.png", color=i)
        (pages / f"t{i}.txt").write_text(f"text {i}")
    for i in range(2):
        make_png(pages / f"f{i}.png", color=100 + i)
        (pages / f"f{i}.tex").write_text(f"x^{i}")
    result = invoke("data", "convert", "pages", "-o", "out.json", "--val-ratio", "0.25")
    assert result.exit_code == 0, result.stderr
    assert "  'Formula Recognition:': 1 train, 1 held out" in result.stderr.splitlines()
    assert "  'Text Recognition:': 6 train, 2 held out" in result.stderr.splitlines()
    held = json.loads(Path("out_val.json").read_text())
    assert sorted(s["messages"][0]["content"] for s in held) == [
        "<image>Formula Recognition:", "<image>Text Recognition:", "<image>Text Recognition:"]


def test_the_readme_folder_recipe_registers_as_written(tmp_path: Path) -> None:
    """README § Bring your data: convert a folder of scans, then register both files, line by line."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Bring your data"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    recipe = [line for line in block.group(1).splitlines() if line.startswith("glmocr-lf data ")][:2]
    assert recipe[0].startswith("glmocr-lf data convert scans/ ")
    root = tmp_path / "scans"
    for i in range(10):
        make_png(root / f"p{i}.png", 40 + i, 30)
        (root / f"p{i}.txt").write_text(f"line {i}\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}\n")
    commands = [shlex.split(part) for line in recipe for part in line.split("&&")]
    for argv in commands:
        result = invoke(*argv[1:])
        assert result.exit_code == 0, f"{shlex.join(argv)}:\n{result.stderr}"
    info = json.loads((tmp_path / "data" / "dataset_info.json").read_text())
    assert sorted(info) == ["scans", "scans_val"]


def test_output_whose_image_paths_leave_its_folder_names_the_fix(tmp_path: Path) -> None:
    folder(tmp_path)
    (tmp_path / "data").mkdir()
    result = invoke("data", "convert", "pages", "-o", "data/ocr.json")
    assert result.exit_code == 0, result.stderr
    assert ("Warning: image paths leave data (e.g. ../pages/p0.png): `data register` refuses them; write the "
            "output beside or above the images (e.g. -o ocr.json)") in result.stderr.splitlines()
