"""`data convert` from Parquet, Arrow files, `datasets.save_to_disk` folders and hub ids (cache only)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from data_fixtures import invoke

pa = pytest.importorskip("pyarrow", reason="Parquet/Arrow sources need pyarrow (the train extra)")
pq = pytest.importorskip("pyarrow.parquet", reason="Parquet sources need pyarrow (the train extra)")


def png(width: int, height: int, shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 255 - shade, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def rows(count: int) -> list[dict[str, object]]:
    # 7 distinct images for `count` rows: duplicates share one stored file
    return [{"image": png(30 + i % 7, 20, i % 7 * 30), "text": f"line {i} \u2028 end",
             "task": ["text", "table", "formula"][i % 3]} for i in range(count)]


def snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_parquet_with_png_bytes_converts_validates_registers_and_reruns_idempotently(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(rows(300))
    pq.write_table(table, "src.parquet", row_group_size=64)
    result = invoke("data", "convert", "src.parquet", "-o", "out/ocr.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == ["converted: text 100, table 100, formula 100",
                                          "Wrote out/ocr.json (300 samples)"]
    samples = json.loads(Path("out/ocr.json").read_text(encoding="utf-8"))
    assert samples[1]["messages"] == [{"role": "user", "content": "<image>Table Recognition:"},
                                      {"role": "assistant", "content": "line 1 \u2028 end"}]
    images = sorted(Path("out/ocr_images").iterdir())
    assert len(images) == 7 and all(p.suffix == ".png" for p in images)
    assert (Path("out") / samples[8]["images"][0]).read_bytes() == rows(9)[8]["image"]
    check = invoke("data", "validate", "out/ocr.json")
    assert check.exit_code == 0, check.stderr
    assert invoke("data", "register", "ocr", "out/ocr.json").exit_code == 0
    before = snapshot(Path("out"))
    again = invoke("data", "convert", "src.parquet", "-o", "out/ocr.json", "--force")
    assert again.exit_code == 0, again.stderr
    assert snapshot(Path("out")) == before  # no new file, none rewritten


def test_image_structs_and_paths_and_column_names(tmp_path: Path) -> None:
    Path("pics").mkdir()
    Path("pics/a.png").write_bytes(png(40, 30, 1))
    table = pa.table({
        "img": pa.array([{"bytes": png(31, 20, 2), "path": None}, {"bytes": None, "path": "pics/a.png"},
                         {"bytes": None, "path": str(Path("pics/a.png").resolve())}],
                        pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": ["one", "two", "three"]})
    pq.write_table(table, "s.parquet")
    result = invoke("data", "convert", "s.parquet", "-o", "o.json", "--image-col", "img",
                    "--text-col", "label", "--task", "formula")
    assert result.exit_code == 0, result.stderr
    samples = json.loads(Path("o.json").read_text())
    assert [s["messages"][0]["content"] for s in samples] == ["<image>Formula Recognition:"] * 3
    assert samples[1]["images"] == samples[2]["images"]  # same bytes, same file


def test_every_row_problem_is_reported_with_its_index(tmp_path: Path) -> None:
    good = png(30, 20, 3)
    table = pa.table({"image": [good, None, b"not an image", good[:-30], good, good],
                      "text": ["ok", "t", "t", "t", "  ", "ok"],
                      "task": ["text", "text", "text", "text", "text", "poem"]})
    pq.write_table(table, "bad.parquet")
    result = invoke("data", "convert", "bad.parquet", "-o", "o.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "  row 1: image: missing image",
        "  row 2: image: not an image (starts with b'not an i')",
        "  row 3: image: truncated PNG (no IEND chunk at the end)",
        "  row 4: text: empty target text",
        "  row 5: task: unknown task 'poem'; use one of text, table, formula",
    ]
    assert result.stderr.startswith("Error: bad.parquet: 5 problems; o.json not written (images already "
                                    "extracted stay in o_images)")
    assert not Path("o.json").exists()


def test_missing_column_names_the_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"picture": [png(30, 20, 1)], "text": ["x"]}), "s.parquet")
    result = invoke("data", "convert", "s.parquet", "-o", "o.json")
    assert (result.exit_code, result.stderr) == (
        1, "Error: s.parquet: no column 'image'; columns: picture, text\n"
           "Hint: name them with --image-col / --text-col / --task-col\n")


def test_column_options_are_refused_for_a_jsonl_source(tmp_path: Path) -> None:
    Path("rows.jsonl").write_text('{"image": "a.png", "text": "t"}\n')
    result = invoke("data", "convert", "rows.jsonl", "-o", "o.json", "--image-col", "img")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --image-col, --text-col, --task-col and --split apply to")


def test_save_to_disk_folder_with_an_image_feature(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="save_to_disk folders need datasets (the train extra)")
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    data = [{"image": {"bytes": png(30 + i, 20, i), "path": None}, "text": f"t{i}"} for i in range(5)]
    dataset = datasets.Dataset.from_list(data, features=features)
    datasets.DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk("saved")
    result = invoke("data", "convert", "saved", "-o", "o.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Wrote o.json (5 samples)"
    assert invoke("data", "validate", "o.json").exit_code == 0
    result = invoke("data", "convert", "saved", "-o", "t.json", "--split", "test")
    assert result.stderr.splitlines()[-1] == "Wrote t.json (1 samples)"
    result = invoke("data", "convert", "saved", "-o", "x.json", "--split", "dev")
    assert (result.exit_code, result.stderr) == (
        1, "Error: saved: no split 'dev'; splits: train, test\nHint: pick one with --split\n")


def test_a_hub_id_not_in_the_cache_says_so_offline(tmp_path: Path) -> None:
    pytest.importorskip("datasets", reason="hub sources need datasets (the train extra)")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    result = invoke("data", "convert", "someone/not-cached", "-o", "o.json")
    assert (result.exit_code, result.stderr) == (
        1, "Error: someone/not-cached: no such file or folder, nor a hub dataset: not in the local cache "
           "and HF_HUB_OFFLINE is set\n")


def test_a_missing_path_that_is_no_hub_id(tmp_path: Path) -> None:
    result = invoke("data", "convert", "nope/rows.jsonl", "-o", "o.json")
    assert (result.exit_code, result.stderr) == (1, "Error: nope/rows.jsonl: no such file or directory\n")


@pytest.mark.parametrize("writer", ["stream", "file"])
def test_arrow_files_in_both_ipc_formats(tmp_path: Path, writer: str) -> None:
    table = pa.table({"image": [png(30, 20, 1), png(31, 20, 2)], "text": ["a", "b"]})
    with pa.OSFile("rows.arrow", "wb") as sink:
        new = pa.ipc.new_stream if writer == "stream" else pa.ipc.new_file
        with new(sink, table.schema) as out:
            out.write_table(table)
    result = invoke("data", "convert", "rows.arrow", "-o", "o.json")
    assert result.exit_code == 0, result.stderr
    assert [s["messages"][1]["content"] for s in json.loads(Path("o.json").read_text())] == ["a", "b"]


def test_a_cached_hub_id_is_read_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the hub is out of reach in tests: stand in for the cache lookup, keep everything after it real
    datasets = pytest.importorskip("datasets", reason="hub sources need datasets (the train extra)")
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    cached = datasets.Dataset.from_list([{"image": {"bytes": png(30, 20, 5), "path": None}, "text": "hub"}],
                                        features=features)
    calls: list[tuple[str, str | None]] = []

    def load_dataset(path: str, split: str | None = None) -> object:
        calls.append((path, split))
        return cached if split else datasets.DatasetDict({"train": cached})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert invoke("data", "convert", "someone/lines", "-o", "a.json").exit_code == 0
    assert invoke("data", "convert", "someone/lines", "-o", "b.json", "--split", "train").exit_code == 0
    assert calls == [("someone/lines", None), ("someone/lines", "train")]
    assert json.loads(Path("b.json").read_text())[0]["messages"][1]["content"] == "hub"


def test_a_file_in_the_way_of_the_output_is_one_error_before_any_image_is_written(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(rows(3)), "src.parquet")
    Path("afile").write_text("not a folder")
    result = invoke("data", "convert", "src.parquet", "-o", "afile/ocr.json")  # raised NotADirectoryError before
    assert (result.exit_code, result.stderr) == (1, "Error: afile/ocr.json: cannot create it: afile is a file, "
                                                    "not a directory\nHint: choose a path inside a directory\n")
    assert Path("afile").read_text() == "not a folder"
