"""`glmocr-lf data register / list / remove`: staging, dataset_info.json, locking, no data loss."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import good_dataset, invoke, make_png, sample, write_json
from helpers import SAMPLE_JSON

ENTRY = {
    "file_name": "ds.json", "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}
# someone else's hand-written file: odd spacing, non-ASCII, an entry we must keep
FOREIGN_INFO = '{"theirs": {"file_name": "t.json"},   "ünï": {"hf_hub_url": "a/b"}}'


def entry(name: str) -> dict[str, object]:
    return {**ENTRY, "file_name": f"{name}.json"}


def version(name: str, data: Path = Path("data")) -> Path:
    """DATA/NAME/vDIGEST: the one version folder NAME.json points into."""
    found = [p for p in (data / name).iterdir() if re.fullmatch(r"v[0-9a-f]{12}(-[0-9]+)?", p.name)]
    assert len(found) == 1, found
    return found[0]


def info(data: Path = Path("data")) -> dict[str, object]:
    return json.loads((data / "dataset_info.json").read_text())  # type: ignore[no-any-return]


def test_register_stages_links_and_entry(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    result = invoke("data", "register", "ds", "src/ds.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "Registered ds: 3 samples, 3 images -> data/dataset_info.json",
        f"train with: dataset: ds, dataset_dir: {tmp_path / 'data'}",
    ]
    assert info() == {"ds": ENTRY}
    staged = json.loads((tmp_path / "data" / "ds.json").read_text())
    v = version("ds").name
    assert [s["images"] for s in staged] == [[f"ds/{v}/images/0.png"], [f"ds/{v}/images/1.png"],
                                             [f"ds/{v}/images/2.png"]]
    # symlink staging links the top-level image folder, not 100k files one by one
    link = version("ds") / "images"
    assert os.listdir(tmp_path / "data" / "ds") == [v]
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "src" / "images")
    assert (link / "0.png").is_file()
    # the staged copy validates from the data dir (where LLaMA-Factory resolves it): the staging
    # links are ours, so a registered file needs no --allow-outside
    staged_check = invoke("data", "validate", "data/ds.json")
    assert staged_check.exit_code == 0, staged_check.stderr
    assert staged_check.stderr.splitlines()[-1] == "data/ds.json: 3 samples, 3 OK, 0 errors, 0 warnings"
    # an unregistered file beside it that escapes through the same link is still refused
    (tmp_path / "data" / "other.json").write_text((tmp_path / "data" / "ds.json").read_text())
    assert invoke("data", "validate", "data/other.json").exit_code == 1


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_register_hardlink_and_copy(tmp_path: Path, mode: str) -> None:
    good_dataset(tmp_path / "src")
    assert invoke("data", "register", "ds", "src/ds.json", "--link", mode).exit_code == 0
    staged = version("ds") / "images" / "1.png"
    assert staged.is_file() and not staged.is_symlink()
    same_inode = staged.stat().st_ino == (tmp_path / "src" / "images" / "1.png").stat().st_ino
    assert same_inode is (mode == "hardlink")


def test_reregister_identical_is_a_noop(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    assert invoke("data", "register", "ds", "src/ds.json").exit_code == 0
    before = (tmp_path / "data" / "dataset_info.json").stat().st_mtime_ns
    result = invoke("data", "register", "ds", "src/ds.json")
    assert result.exit_code == 0
    assert result.stderr == "ds: already registered in data/dataset_info.json with the same content; nothing to do\n"
    assert (tmp_path / "data" / "dataset_info.json").stat().st_mtime_ns == before


def test_different_content_needs_force(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    good_dataset(tmp_path / "other", count=2)
    assert invoke("data", "register", "ds", "src/ds.json").exit_code == 0
    before = (tmp_path / "data" / "dataset_info.json").read_bytes()
    result = invoke("data", "register", "ds", "other/ds.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: 'ds' is already registered in data/dataset_info.json with different content\n"
        "Hint: pass --force to replace it\n"))
    assert (tmp_path / "data" / "dataset_info.json").read_bytes() == before
    assert len(json.loads((tmp_path / "data" / "ds.json").read_text())) == 3
    result = invoke("data", "register", "ds", "other/ds.json", "--force")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == "Replaced ds: 2 samples, 2 images -> data/dataset_info.json"
    assert len(json.loads((tmp_path / "data" / "ds.json").read_text())) == 2
    assert os.readlink(version("ds") / "images") == str(tmp_path / "other" / "images")
    assert not (version("ds") / "images" / "2.png").exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".dataset_info.json.lock", "dataset_info.json",
                                                                       "ds", "ds.json"]


def test_invalid_dataset_writes_nothing(tmp_path: Path) -> None:
    make_png(tmp_path / "src" / "images" / "a.png")
    write_json(tmp_path / "src" / "ds.json", [sample(), sample(answer="")])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(FOREIGN_INFO)
    result = invoke("data", "register", "ds", "src/ds.json")
    assert (result.exit_code, result.stderr.splitlines()) == (1, [
        "src/ds.json: sample 1: messages[1].content: empty assistant answer",
        "Error: src/ds.json: 1 error; nothing registered",
        "Hint: fix them, then run `glmocr-lf data validate src/ds.json`",
    ])
    assert (tmp_path / "data" / "dataset_info.json").read_text() == FOREIGN_INFO
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dataset_info.json"]


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "Error: data/dataset_info.json:1:2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "Error: data/dataset_info.json: top level must be an object of dataset entries"),
])
def test_broken_dataset_info_is_never_overwritten(tmp_path: Path, content: str, expected: str) -> None:
    good_dataset(tmp_path / "src")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(content)
    result = invoke("data", "register", "ds", "src/ds.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == expected
    assert (tmp_path / "data" / "dataset_info.json").read_text() == content
    assert not (tmp_path / "data" / "ds.json").exists()


def test_foreign_entries_are_kept(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(FOREIGN_INFO)
    assert invoke("data", "register", "ds", "src/ds.json").exit_code == 0
    assert info() == {"theirs": {"file_name": "t.json"}, "ünï": {"hf_hub_url": "a/b"}, "ds": ENTRY}


def test_existing_unregistered_files_need_force(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ds.json").write_text("mine")
    result = invoke("data", "register", "ds", "src/ds.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: data/ds.json: already exists and is not a registered dataset\n"
        "Hint: pick another name, or pass --force to overwrite it\n"))
    assert (tmp_path / "data" / "ds.json").read_text() == "mine"
    assert invoke("data", "register", "ds", "src/ds.json", "--force").exit_code == 0


@pytest.mark.parametrize(("args", "expected"), [
    (["../x", "src/ds.json"], "Error: '../x': invalid dataset name; use ASCII letters, digits, '_', '-' and '.' "
                              "(at most 128, starting with a letter or digit)\n"),
    (["ü_data", "src/ds.json"], "Error: 'ü_data': invalid dataset name; use ASCII letters, digits, '_', '-' and "
                                "'.' (at most 128, starting with a letter or digit)\n"),
    (["ds", "src"], "Error: src: is a directory, expected a dataset file\n"),
    (["ds", "src/ds.json", "--lf-dir", "nope"], "Error: nope: LLaMA-Factory folder does not exist\n"),
    (["ds", "src/ds.json", "--lf-dir", "src"], "Error: src: no data/ folder; is this a LLaMA-Factory checkout?\n"),
    (["ds", "src/ds.json", "--lf-dir", "src", "--data-dir", "d"], "Error: pass either --data-dir or --lf-dir, not both\n"),
    (["ds", "src/ds.json", "--media-dir", "gone"], "Error: gone: media dir does not exist\n"),
])
def test_register_usage_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    good_dataset(tmp_path / "src")
    result = invoke("data", "register", *args)
    assert (result.exit_code, result.stderr) == (1, expected)
    assert not (tmp_path / "data").exists()


def test_lf_dir_stages_into_its_data_folder(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    (tmp_path / "LlamaFactory" / "data").mkdir(parents=True)
    (tmp_path / "LlamaFactory" / "data" / "dataset_info.json").write_text('{"identity": {"file_name": "identity.json"}}')
    result = invoke("data", "register", "my_ocr", "src/ds.json", "--lf-dir", "LlamaFactory")
    assert result.exit_code == 0, result.stderr
    data = tmp_path / "LlamaFactory" / "data"
    assert info(data) == {"identity": {"file_name": "identity.json"}, "my_ocr": entry("my_ocr")}
    assert (version("my_ocr", data) / "images" / "0.png").is_file()
    listing = invoke("data", "list", "--lf-dir", "LlamaFactory")
    assert listing.stdout.splitlines() == [
        "NAME      SAMPLES  FILE           IMAGES",
        "identity  -        identity.json  -",
        "my_ocr    3        my_ocr.json    3",
    ]


def test_list_json_and_empty(tmp_path: Path) -> None:
    result = invoke("data", "list", "--data-dir", "nope")  # a typo is not "nothing registered"
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == ["Error: nope: no such data dir",
                                          "Hint: pass the --data-dir that holds dataset_info.json (default ./data)"]
    (tmp_path / "data").mkdir()
    result = invoke("data", "list")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no datasets registered\n")
    good_dataset(tmp_path / "src")
    invoke("data", "register", "ds", "src/ds.json")
    result = invoke("data", "list", "--json")
    assert json.loads(result.stdout) == [{"name": "ds", "file": "ds.json", "samples": 3, "images": 3,
                                                 "problem": None}]


def test_remove_and_purge(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    invoke("data", "register", "ds", "src/ds.json")
    invoke("data", "register", "keep", "src/ds.json")
    result = invoke("data", "remove", "ds")
    assert (result.exit_code, result.stderr) == (0, "Removed ds\n")
    assert list(info()) == ["keep"]
    assert (tmp_path / "data" / "ds.json").exists()
    result = invoke("data", "remove", "keep", "--purge")
    assert result.stderr.splitlines() == ["deleted data/keep.json", "deleted data/keep", "Removed keep"]
    assert info() == {}
    assert (tmp_path / "src" / "images" / "0.png").exists()  # sources are never touched


def test_remove_unknown_name_suggests(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src")
    invoke("data", "register", "cosyn", "src/ds.json")
    before = (tmp_path / "data" / "dataset_info.json").read_bytes()
    result = invoke("data", "remove", "cosin")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: dataset 'cosin' is not registered in data/dataset_info.json\nHint: did you mean 'cosyn'?\n"))
    assert (tmp_path / "data" / "dataset_info.json").read_bytes() == before
    result = invoke("data", "remove", "x", "--data-dir", "elsewhere")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: elsewhere/dataset_info.json: no such file; nothing is registered there\n"))


def test_concurrent_registration_keeps_every_entry(tmp_path: Path) -> None:
    good_dataset(tmp_path / "src", count=5)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(FOREIGN_INFO)
    env = {**os.environ, "NO_COLOR": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "glmocr_lf", "data", "register", f"ds{i}", "src/ds.json"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(12)]
    results = [(p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    names = [f"ds{i}" for i in range(12)]
    assert info() == {"theirs": {"file_name": "t.json"}, "ünï": {"hf_hub_url": "a/b"},
                      **{n: entry(n) for n in names}}
    for n in names:
        assert len(json.loads((tmp_path / "data" / f"{n}.json").read_text())) == 5


def test_shared_sample_loads_in_llamafactory(tmp_path: Path) -> None:
    """The entry and staged file are read by LLaMA-Factory's own parser, loader format and converter."""
    parser = pytest.importorskip("llamafactory.data.parser")
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.hparams import DataArguments

    result = invoke("data", "register", "cosyn_chemical", SAMPLE_JSON)
    assert result.exit_code == 0, result.stderr
    data_dir = str(tmp_path / "data")
    (attr,) = parser.get_dataset_list(["cosyn_chemical"], data_dir)
    assert (attr.load_from, attr.formatting, attr.messages, attr.images) == ("file", "sharegpt", "messages", "images")
    data_args = DataArguments(dataset_dir=data_dir, template="glm_ocr")
    converter = get_dataset_converter(attr.formatting, attr, data_args)
    rows = json.loads((tmp_path / "data" / attr.dataset_name).read_text())
    for row in rows:
        converted = converter(row)
        assert [m["role"] for m in converted["_prompt"] + converted["_response"]] == ["user", "assistant"]
        (image,) = converted["_images"]
        assert os.path.isfile(image) and image.startswith(data_dir)


def test_file_already_in_the_data_dir_is_registered_as_it_is(tmp_path: Path) -> None:
    # the vendor guide's layout: the JSON copied into data/, image paths relative to data/
    source = good_dataset(tmp_path / "data", name="foo.json")
    original = source.read_bytes()
    for attempt in range(2):
        result = invoke("data", "register", "foo", "data/foo.json", "--force")
        assert result.exit_code == 0, result.stderr
        assert source.read_bytes() == original, f"run {attempt + 1} modified the user's file"
    first = invoke("data", "register", "foo", "data/foo.json")
    assert first.stderr == "foo: already registered in data/dataset_info.json with the same content; nothing to do\n"
    assert info() == {"foo": entry("foo")}
    assert not (tmp_path / "data" / "foo").exists()
    assert invoke("data", "validate", "data/foo.json").exit_code == 0


def test_first_in_place_registration_says_so(tmp_path: Path) -> None:
    good_dataset(tmp_path / "data", name="foo.json")
    result = invoke("data", "register", "foo", "data/foo.json")
    assert (result.exit_code, result.stderr.splitlines()[:2]) == (0, [
        "Registered foo in place: 3 samples, 3 images -> data/dataset_info.json",
        "data/foo.json is used as it is (its image paths resolve from data)"])


@pytest.mark.parametrize(("source", "extra", "message"), [
    # inside the folder register replaces
    ("data/foo/ds.json", (), "it or its images lie inside data/foo/, which registering 'foo' replaces"),
    # the file register would write, images elsewhere
    ("data/foo.json", ("--media-dir", "pages"),
     "is the file registering 'foo' writes, and its images resolve from pages, not from data"),
])
def test_source_that_staging_would_overwrite_is_refused(tmp_path: Path, source: str, extra: tuple[str, ...],
                                                        message: str) -> None:
    path = tmp_path / source
    media = tmp_path / extra[1] if extra else path.parent
    for i in range(3):
        make_png(media / "images" / f"{i}.png", color=i)
    write_json(path, [sample(f"images/{i}.png", answer=f"text {i}") for i in range(3)])
    original = path.read_bytes()
    result = invoke("data", "register", "foo", source, "--force", *extra)
    assert (result.exit_code, result.stderr) == (1, (
        f"Error: {source}: {message}\n"
        "Hint: register it from outside data (register stages a copy), or keep its image paths relative to data "
        "and pass --media-dir data\n"))
    assert path.read_bytes() == original
    assert not (tmp_path / "data" / "dataset_info.json").exists()
