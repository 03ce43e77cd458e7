"""`glmocr-lf data validate`: every check, the exact problem line format, the JSON report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from data_fixtures import good_dataset, invoke, make_jpeg, make_png, sample, write_json, write_jsonl
from helpers import SAMPLE_IMAGES, SAMPLE_JSON


def lines(text: str) -> list[str]:
    return text.splitlines()


def problems_of(samples: Any, tmp_path: Path, *extra: str) -> list[str]:
    make_png(tmp_path / "images" / "a.png")
    make_png(tmp_path / "images" / "b.png", 50, 50)
    write_json(tmp_path / "ds.json", samples)
    result = invoke("data", "validate", "ds.json", *extra)
    return lines(result.stderr)[:-1]


def test_clean_dataset_exits_0(tmp_path: Path) -> None:
    good_dataset(tmp_path)
    result = invoke("data", "validate", "ds.json")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert lines(result.stderr) == ["ds.json: 3 samples, 3 OK, 0 errors, 0 warnings"]


def test_shared_sample_data_is_valid_with_one_custom_prompt_warning(tmp_path: Path) -> None:
    result = invoke("data", "validate", SAMPLE_JSON, "--cutoff-len", "2048")
    assert result.exit_code == 0
    assert lines(result.stderr) == [
        f"{SAMPLE_JSON}: sample 0: messages[0].content: warning: prompt 'Code Generation:' is not one of "
        "GLM-OCR's task prompts (Text Recognition:, Table Recognition:, Formula Recognition:) "
        "(also 9 more samples); fine for a custom task",
        f"{SAMPLE_JSON}: 10 samples, 10 OK, 0 errors, 1 warning",
    ]


def test_error_exit_1_and_summary(tmp_path: Path) -> None:
    result_lines = problems_of([sample(), sample("images/missing.png")], tmp_path)
    assert result_lines == [
        f"ds.json: sample 1: images[0]: image not found: {tmp_path / 'images' / 'missing.png'}"]
    result = invoke("data", "validate", "ds.json")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == "Error: ds.json: 2 samples, 1 OK, 1 error, 0 warnings"


def test_jsonl_lines_carry_line_numbers(tmp_path: Path) -> None:
    make_png(tmp_path / "images" / "a.png")
    path = tmp_path / "ds.jsonl"
    write_jsonl(path, [sample(), sample(answer="")])
    path.write_text("\n" + path.read_text())  # a blank line is skipped, numbering follows the file
    result = invoke("data", "validate", "ds.jsonl")
    assert result.exit_code == 1
    assert lines(result.stderr) == [
        "ds.jsonl:3: sample 1: messages[1].content: empty assistant answer",
        "Error: ds.jsonl: 2 samples, 1 OK, 1 error, 0 warnings",
    ]


@pytest.mark.parametrize(("bad", "expected"), [
    (1, "sample 0: (sample): expected an object with messages and images, got a number"),
    ({"images": []}, "sample 0: messages: missing"),
    ({"conversations": [], "images": []},
     "sample 0: messages: missing (this looks like the conversations/from/value layout; use messages/role/content)"),
    ({"messages": "hi", "images": []}, "sample 0: messages: expected a list of messages, got a string"),
    ({"messages": [], "images": []},
     "sample 0: messages: empty list; a sample needs a user prompt and an assistant answer"),
    ({"messages": ["hi"], "images": []},
     "sample 0: messages[0]: expected an object with role and content, got a string"),
    ({"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}], "images": []},
     "sample 0: messages[0].role: missing"),
    ({"messages": [{"role": 1, "content": "x"}, {"role": "assistant", "content": "y"}], "images": []},
     "sample 0: messages[0].role: expected a string, got a number"),
    ({"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}], "images": []},
     "sample 0: messages[0].role: unknown role 'human'; use user or assistant (or system first)"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}], "images": []},
     "sample 0: messages[0].content: missing"),
    ({"messages": [{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}], "images": []},
     "sample 0: messages[0].content: expected a string, got a list"),
    ({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], "images": []},
     "sample 0: messages[0].role: expected 'user', got 'assistant' (roles alternate user, assistant, starting with user)"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], "images": []},
     "sample 0: messages[1].role: expected 'assistant', got 'system' (system is only allowed as the first message)"),
    ({"messages": [{"role": "user", "content": "x"}], "images": []},
     "sample 0: messages[0]: the last message must be the assistant's answer (LLaMA-Factory drops this sample)"),
    ({"messages": [{"role": "system", "content": "s"}], "images": []},
     "sample 0: messages: only a system message; add a user prompt and an assistant answer"),
    (sample(answer="  "), "sample 0: messages[1].content: empty assistant answer"),
    (sample(images="a.png"), "sample 0: images: expected a list of image paths, got a string"),
    (sample(images=["images/a.png", "images/b.png"]),
     "sample 0: images: 2 images but 1 <image> placeholder in messages; they must be equal"),
    (sample(None, images=["images/a.png"]),
     "sample 0: images: 1 image but 0 <image> placeholders in messages; they must be equal"),
    (sample(images=[3]), "sample 0: images[0]: expected a path string, got a number"),
    (sample(images=[""]), "sample 0: images[0]: empty path"),
    (sample("../a.png"), "sample 0: images[0]: path '../a.png' leaves the media dir . (or pass --allow-outside)"),
    (sample("/etc/passwd"),
     "sample 0: images[0]: absolute path '/etc/passwd'; use a path relative to the media dir . (or pass --allow-outside)"),
])
def test_structure_errors(tmp_path: Path, bad: Any, expected: str) -> None:
    assert problems_of([bad], tmp_path) == [f"ds.json: {expected}"]


def test_system_message_first_is_accepted(tmp_path: Path) -> None:
    good = sample()
    good["messages"].insert(0, {"role": "system", "content": "You are an OCR engine."})
    assert problems_of([good], tmp_path) == []


def test_multi_turn_is_accepted(tmp_path: Path) -> None:
    good = sample()
    good["messages"] += [{"role": "user", "content": "Again?"}, {"role": "assistant", "content": "yes"}]
    assert problems_of([good], tmp_path) == []


def test_every_sample_is_checked_not_only_the_first(tmp_path: Path) -> None:
    assert problems_of([sample(answer=""), sample(), sample("images/nope.png")], tmp_path) == [
        "ds.json: sample 0: messages[1].content: empty assistant answer",
        f"ds.json: sample 2: images[0]: image not found: {tmp_path / 'images' / 'nope.png'}",
    ]


def test_image_file_problems(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "empty.png").parent.mkdir(parents=True)
    (images / "empty.png").write_bytes(b"")
    (images / "text.png").write_text("not an image")
    (images / "dir.png").mkdir()
    good = make_png(images / "good.png").read_bytes()
    (images / "cut.png").write_bytes(good[: len(good) - 20])
    jpeg = make_jpeg(images / "good.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(jpeg[: len(jpeg) - 10])
    names = ["empty.png", "text.png", "dir.png", "cut.png", "cut.jpg", "good.jpg"]
    result = problems_of([sample(f"images/{n}") for n in names], tmp_path)
    assert result == [
        f"ds.json: sample 0: images[0]: empty image file (0 bytes): {images / 'empty.png'}",
        f"ds.json: sample 1: images[0]: not an image PIL can read: {images / 'text.png'}",
        f"ds.json: sample 2: images[0]: is a directory, not an image: {images / 'dir.png'}",
        f"ds.json: sample 3: images[0]: truncated PNG (no IEND chunk at the end): {images / 'cut.png'}",
        f"ds.json: sample 4: images[0]: truncated JPEG (no end-of-image marker): {images / 'cut.jpg'}",
    ]


def test_unreadable_image(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    make_png(tmp_path / "images" / "locked.png").chmod(0)
    assert problems_of([sample("images/locked.png")], tmp_path) == [
        f"ds.json: sample 0: images[0]: cannot read image {tmp_path / 'images' / 'locked.png'}: Permission denied"]


def test_symlink_out_of_media_dir_is_refused_unless_allowed(tmp_path: Path) -> None:
    outside = make_png(tmp_path / "outside" / "x.png")
    (tmp_path / "media" / "images").mkdir(parents=True)
    (tmp_path / "media" / "images" / "x.png").symlink_to(outside)
    (tmp_path / "media" / "linked").symlink_to(tmp_path / "outside")
    write_json(tmp_path / "ds.json", [sample("images/x.png"), sample("linked/x.png")])
    result = invoke("data", "validate", "ds.json", "--media-dir", "media")
    assert lines(result.stderr)[:-1] == [
        "ds.json: sample 0: images[0]: symlink points outside the media dir (pass --allow-outside to accept)",
        "ds.json: sample 1: images[0]: path leaves the media dir through a symlinked folder "
        "(pass --allow-outside to accept)",
    ]
    result = invoke("data", "validate", "ds.json", "--media-dir", "media", "--allow-outside")
    assert result.exit_code == 0, result.stderr


def test_absolute_and_dotdot_paths_with_allow_outside(tmp_path: Path) -> None:
    make_png(tmp_path / "elsewhere" / "y.png")
    write_json(tmp_path / "sub" / "ds.json", [sample(str(tmp_path / "elsewhere" / "y.png")),
                                               sample("../elsewhere/y.png")])
    result = invoke("data", "validate", "sub/ds.json", "--allow-outside")
    assert result.exit_code == 0, result.stderr


def test_media_dir_resolves_relative_paths(tmp_path: Path) -> None:
    make_png(tmp_path / "media" / "p.png")
    write_json(tmp_path / "json" / "ds.json", [sample("p.png")])
    assert invoke("data", "validate", "json/ds.json", "--media-dir", "media").exit_code == 0
    result = invoke("data", "validate", "json/ds.json")
    assert lines(result.stderr)[0] == \
        f"json/ds.json: sample 0: images[0]: image not found: {tmp_path / 'json' / 'p.png'}"


def test_missing_media_dir(tmp_path: Path) -> None:
    good_dataset(tmp_path)
    result = invoke("data", "validate", "ds.json", "--media-dir", "nowhere")
    assert (result.exit_code, result.stderr) == (1, "Error: nowhere: media dir does not exist\n")
    (tmp_path / "afile").write_text("x")
    result = invoke("data", "validate", "ds.json", "--media-dir", "afile")
    assert (result.exit_code, result.stderr) == (1, "Error: afile: media dir is not a directory\n")


def test_warnings_prompt_image_after_duplicates(tmp_path: Path) -> None:
    after = sample(None, prompt="Text Recognition:<image>", images=["images/a.png"])
    result = problems_of([sample(), sample(prompt="Read it:"), sample(), after, sample(prompt="Read it:")],
                         tmp_path)
    assert result == [
        "ds.json: sample 1: messages[0].content: warning: prompt 'Read it:' is not one of GLM-OCR's task "
        "prompts (Text Recognition:, Table Recognition:, Formula Recognition:) (also 1 more sample); "
        "fine for a custom task",
        "ds.json: sample 2: (sample): warning: exact duplicate of sample 0",
        "ds.json: sample 3: messages[0].content: warning: <image> comes after the prompt text; "
        "GLM-OCR is trained with the image first",
        "ds.json: sample 4: (sample): warning: exact duplicate of sample 1",
    ]
    assert invoke("data", "validate", "ds.json").exit_code == 0


def test_token_budget_image_cut_is_error_answer_cut_is_warning(tmp_path: Path) -> None:
    # a 64x32 PNG -> 8 image tokens (+2 boundary); estimated text ~ 1 token per 3 bytes
    long_answer = "x" * 600
    result = problems_of([sample(), sample(answer=long_answer)], tmp_path, "--cutoff-len", "150")
    assert result == [
        "ds.json: sample 1: messages[1].content: warning: answer would be cut: the sample needs "
        "about 223 tokens but cutoff_len is 150",
    ]
    result = problems_of([sample()], tmp_path, "--cutoff-len", "10")
    assert result == [
        "ds.json: sample 0: images: image tokens would be cut: the sample needs about 24 tokens "
        "(10 for images) but cutoff_len is 10; this crashes training, raise cutoff_len or lower image_max_pixels",
    ]


def test_cutoff_and_pixels_from_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model_name_or_path: zai-org/GLM-OCR\ntemplate: glm_ocr\ncutoff_len: 10\n")
    result = problems_of([sample()], tmp_path, "--config", "c.yaml")
    assert result[0].startswith("ds.json: sample 0: images: image tokens would be cut")
    assert problems_of([sample()], tmp_path, "--config", "c.yaml", "--cutoff-len", "100") == []


def test_json_report(tmp_path: Path) -> None:
    make_png(tmp_path / "images" / "a.png")
    write_jsonl(tmp_path / "ds.jsonl", [sample(), sample(answer="")])
    result = invoke("data", "validate", "ds.jsonl", "--json", "--cutoff-len", "100")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "file": "ds.jsonl", "format": "jsonl", "media_dir": ".", "samples": 2, "ok": 1, "errors": 1,
        "warnings": 0, "cutoff_len": 100, "image_max_pixels": 589824, "image_min_pixels": 1024,
        "token_count": "estimated",
        "problems": [{"severity": "error", "sample": 1, "line": 2, "field": "messages[1].content",
                      "message": "empty assistant answer",
                      "text": "ds.jsonl:2: sample 1: messages[1].content: empty assistant answer"}],
    }
    assert lines(result.stderr) == ["Error: ds.jsonl: 2 samples, 1 OK, 1 error, 0 warnings"]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "ds.json: empty file; expected a JSON list of samples or JSON Lines"),
    (b"  \n", "ds.json: empty file; expected a JSON list of samples or JSON Lines"),
    (b"[]", "ds.json: no samples"),
    (b'[\n  {"messages": []},\n  {"messages" []}\n]', "ds.json:3:15: invalid JSON: Expecting ':' delimiter"),
    (b'{"a": 1}', "ds.json: top level is an object; expected a list of samples (or JSON Lines)"),
    (b'"text"', "ds.json: top level is a string; expected a list of samples"),
    (b'[{"messages": []}]\n\xff\xfe', "ds.json:2:1: not valid UTF-8 (byte 0xff); save the file as UTF-8"),
])
def test_file_level_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "ds.json").write_bytes(content)
    result = invoke("data", "validate", "ds.json")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {expected}\n")


def test_malformed_jsonl_reports_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "ds.jsonl").write_text('{"messages": []}\n{"messages": [}\n')
    result = invoke("data", "validate", "ds.jsonl")
    assert (result.exit_code, result.stderr) == (1, "Error: ds.jsonl:2:15: invalid JSON: Expecting value\n")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    result = invoke("data", "validate", "nope.json")
    assert (result.exit_code, result.stderr) == (1, "Error: nope.json: no such file\n")
    (tmp_path / "adir").mkdir()
    result = invoke("data", "validate", "adir")
    assert (result.exit_code, result.stderr) == (1, "Error: adir: is a directory and not a registered dataset name\n")


def test_shared_images_checked_once_and_copy_of_sample_data(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_IMAGES, tmp_path / "cosyn_chemical")
    shutil.copy(SAMPLE_JSON, tmp_path / "c.json")
    result = invoke("data", "validate", "c.json", "--json")
    report = json.loads(result.stdout)
    assert (report["samples"], report["ok"], report["errors"], report["warnings"]) == (10, 10, 0, 1)


def test_help_documents_numbering() -> None:
    result = invoke("data", "validate", "--help")
    assert "N counts samples from 0" in result.stdout
    assert "FILE:LINE: sample N: FIELD: message" in result.stdout


def test_data_commands_do_not_import_the_training_stack() -> None:
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from glmocr_lf.cli import cli\n"
            "for c in ('validate', 'register', 'list', 'remove', 'stats', 'convert'):\n"
            "    CliRunner().invoke(cli, ['data', c, '--help'])\n"
            "print(sorted(m for m in ('torch', 'transformers', 'llamafactory') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"


def test_a_registered_name_without_a_file_says_so_beside_a_folder_of_that_name(tmp_path: Path) -> None:
    """`data validate NAME` of a hub entry, with data/NAME/ (its images, say) on disk."""
    (tmp_path / "data" / "hubds").mkdir(parents=True)
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"hubds": {"hf_hub_url": "someone/ocr"}}))
    os.chdir(tmp_path / "data")
    result = invoke("data", "validate", "hubds", "--data-dir", ".")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: dataset_info.json: dataset hubds is not a local file (someone/ocr)"


def test_hints_quote_their_paths_so_they_paste(tmp_path: Path) -> None:
    (tmp_path / "my data").mkdir()
    (tmp_path / "my data" / "dataset_info.json").write_text("{}")
    result = invoke("data", "validate", "scans", "--data-dir", "my data")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Hint: register it: glmocr-lf data register scans FILE --data-dir 'my data'"
