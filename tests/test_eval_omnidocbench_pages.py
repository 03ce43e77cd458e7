"""`eval score --protocol omnidocbench --pages`: page-level scores against OmniDocBench's own
end-to-end evaluation.

tests/golden/omnidocbench_pages.json holds the figures OmniDocBench's `pdf_validation.py` printed
and wrote (result/*_metric_result.json, *_per_page_edit.json, *_per_table_TEDS.json) for the 40
pages tests/omnidocbench_pages.py makes with seed 0: upstream commit 523fd1d (the stored copy in
invofox/OmniDocBench), its stock end2end config with CDM_plain removed and the paths pointed at the
pages, run outside this repository in a Python 3.8 venv with its requirements.txt (plus
scikit-image, which its cdm_metric.py imports). Only the numbers are kept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from omnidocbench_pages import write_pages

from glmocr_lf.cli import cli

for _module in ("rapidfuzz", "apted", "lxml", "bs4", "pylatexenc", "scipy"):
    pytest.importorskip(_module, reason="the omnidocbench protocol needs the eval extra")

from glmocr_lf.evaluation.omnidocbench import extract, pages, pagescore, region

GOLDEN = json.loads((Path(__file__).parent / "golden" / "omnidocbench_pages.json").read_text(encoding="utf-8"))
CATEGORIES = ("text_block", "display_formula", "table", "reading_order")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pages")
    write_pages(folder, GOLDEN["pages"]["count"], GOLDEN["pages"]["seed"])
    # the reference scored exactly these pages
    assert hashlib.sha256((folder / "gt.json").read_bytes()).hexdigest() == GOLDEN["pages"]["gt_sha256"]
    return folder


def score(folder: Path, *extra: str) -> Any:
    result = CliRunner().invoke(cli, ["eval", "score", "--protocol", "omnidocbench", "--pages", str(folder / "gt.json"),
                                      str(folder / "md"), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_every_category_equals_omnidocbench(synthetic: Path) -> None:
    report = json.loads(score(synthetic, "--json").stdout)
    assert set(report["categories"]) == set(CATEGORIES)
    for name in CATEGORIES:
        assert report["categories"][name]["metrics"] == pytest.approx(GOLDEN["all"][name], abs=1e-6)
    assert report["pages"] == 39 and report["pages_without_prediction"] == ["synthetic_0022.jpg"]


def test_every_page_equals_omnidocbench(synthetic: Path) -> None:
    per_page = json.loads(score(synthetic, "--json").stdout)["per_page"]
    for name in CATEGORIES:
        expected = GOLDEN["per_page_edit"][name]
        ours = {page: values[f"{name}.edit"] for page, values in per_page.items() if f"{name}.edit" in values}
        assert ours == pytest.approx(expected, abs=1e-6)
    assert len(GOLDEN["per_page_edit"]["text_block"]) == 39


def test_every_table_and_the_page_means_equal_omnidocbench(synthetic: Path) -> None:
    matched = pages.match_all(synthetic / "gt.json", synthetic / "md")
    ours = {}
    for entry in matched.table:
        pred, gt = pagescore.compared(entry)
        key = f"{entry['img_id']}_{entry['gt_idx']}"
        ours[key + ".TEDS"] = region.teds(pred, gt)
        ours[key + ".TEDS_structure_only"] = region.teds(pred, gt, structure_only=True)
    expected = {f"{key}.{metric}": value for key, values in GOLDEN["per_table_teds"].items()
                for metric, value in values.items()}
    assert ours == pytest.approx(expected, abs=1e-6)
    per_page = pagescore.score_matched(matched, "").categories["table"].per_page
    for metric, expected in GOLDEN["page_mean"].items():
        values = [page[metric] for page in per_page.values() if page.get(metric) is not None]
        assert sum(values) / len(values) == pytest.approx(expected, abs=1e-6)


def test_the_leaderboard_overall_needs_cdm(synthetic: Path) -> None:
    overall = json.loads(score(synthetic, "--json").stdout)["overall"]
    assert overall["overall"] is None and overall["formula_cdm"] is None and "CDM" in overall["note"]
    assert overall["table_teds"] == pytest.approx(100 * GOLDEN["all"]["table"]["teds"], abs=1e-4)
    text = score(synthetic)
    text_edit, table_teds = GOLDEN["all"]["text_block"]["edit"], 100 * GOLDEN["all"]["table"]["teds"]
    assert f"leaderboard form: text edit {text_edit:.4f} | table TEDS {table_teds:.2f}" in text.stdout
    assert "Warning: " in text.stderr and "synthetic_0022.jpg" in text.stderr


def test_pages_need_the_omnidocbench_protocol_and_a_folder(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text("[]", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "score", "--pages", str(tmp_path / "gt.json"), str(tmp_path)])
    assert result.exit_code == 2 and "add --protocol omnidocbench" in result.stderr
    result = runner.invoke(cli, ["eval", "score", "--protocol", "omnidocbench", "--pages", str(tmp_path / "gt.json"),
                                 str(tmp_path / "gt.json")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'gt.json'}: not a folder;")
    (tmp_path / "bad.json").write_text('{"pages": []}', encoding="utf-8")
    result = runner.invoke(cli, ["eval", "score", "--protocol", "omnidocbench", "--pages", str(tmp_path / "bad.json"),
                                 str(tmp_path)])
    assert result.exit_code == 1 and "expected OmniDocBench's format" in result.stderr


def test_markdown_blocks_as_omnidocbench_cuts_them() -> None:
    page = "# Title\n\nText with $x^{2}$ inside.\n\n$$\na+b\n$$\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nEnd."
    blocks = extract.md_tex_filter(page)
    formulas = [(b["content"], b.get("fine_category_type")) for b in blocks["equation_isolated"]]
    assert formulas == [("\\[x^{2}\\]", "equation_inline"), ("\\[ a+b \\]", None)]
    # the pipe table: one HTML table, the separator row dropped, header cells as td
    (table,) = blocks["html_table"]
    assert table["fine_category_type"] == "md2html_table"
    assert table["content"].count("<tr>") == 2 and "<th>" not in table["content"] and "---" not in table["content"]
    texts = [b["content"] for b in blocks["text_all"]]
    assert texts == ["# Title", "Text with $x^{2}$ inside.", "End."]  # the inline formula stays in its text too


def test_a_ground_truth_it_cannot_score_is_one_error(tmp_path: Path) -> None:
    page = {"page_info": {"image_path": "p.jpg"}, "extra": {"relation": [
        {"source_anno_id": 0, "target_anno_id": 9, "relation_type": "truncated"}]},
        "layout_dets": [{"category_type": "text_block", "anno_id": 0, "order": 1},
                        {"category_type": "table", "anno_id": 1, "order": 2, "html": "<table></table>"}]}
    (tmp_path / "gt.json").write_text(json.dumps([page]), encoding="utf-8")
    (tmp_path / "md").mkdir()
    (tmp_path / "md" / "p.md").write_bytes(b"caf\xe9")
    result = CliRunner().invoke(cli, ["eval", "score", "--protocol", "omnidocbench", "--pages", str(tmp_path / "gt.json"),
                                      str(tmp_path / "md")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path / 'gt.json'}: 2 problems",
        "  [0].layout_dets[0]: text: missing (the text of a text_block element)",
        "  [0].extra.relation[0].target_anno_id: no element with this anno_id"]
    page["layout_dets"][0]["text"] = "Hello"  # type: ignore[index]
    page["extra"] = {"relation": []}
    (tmp_path / "gt.json").write_text(json.dumps([page]), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "score", "--protocol", "omnidocbench", "--pages", str(tmp_path / "gt.json"),
                                      str(tmp_path / "md")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'md' / 'p.md'}:1:4: not valid UTF-8 (byte 0xe9)")


def test_the_library_takes_path_strings(synthetic: Path) -> None:
    scores = pagescore.score_pages(str(synthetic / "gt.json"), str(synthetic / "md"))  # type: ignore[arg-type]
    assert scores.categories["text_block"].metrics == pytest.approx(GOLDEN["all"]["text_block"], abs=1e-6)


def test_two_page_score_files_side_by_side(synthetic: Path, tmp_path: Path) -> None:
    report = json.loads(score(synthetic, "--json").stdout)
    (tmp_path / "a.json").write_text(json.dumps(report), encoding="utf-8")
    worse = json.loads(json.dumps(report))
    worse["categories"]["text_block"]["metrics"]["edit"] += 0.05
    worse["categories"]["table"]["metrics"]["teds"] -= 0.01
    (tmp_path / "b.json").write_text(json.dumps(worse), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2] == "**B is worse on text_block edit, table teds**"
    assert [line.split() for line in lines if line.startswith(("text_block   ", "table   "))][:1] == [
        ["text_block", "edit", f"{report['categories']['text_block']['metrics']['edit']:.4f}",
         f"{worse['categories']['text_block']['metrics']['edit']:.4f}", "+0.0500", "worse"]]
    mixed = CliRunner().invoke(cli, ["eval", "compare", str(tmp_path / "a.json"), str(synthetic / "gt.json")])
    assert mixed.exit_code == 2 and "compare two page_scores.json files" in mixed.stderr
