"""Synthetic OmniDocBench pages: a ground-truth JSON in OmniDocBench's format and one Markdown file
per page, as a page-level model would write it, with the cases its end-to-end evaluation treats
specially (issue 22).

    python tests/omnidocbench_pages.py OUT_DIR [-n 24] [--seed 0]

writes OUT_DIR/gt.json and OUT_DIR/md/<page>.md. The first pages each stress one case (titles,
inline and display formulas, arrays, HTML / pipe / truncated / several tables, empty elements,
ignore categories, missing and extra blocks, shuffled order, truncated text, single-newline
joins, a page without a Markdown file); the rest mix them at random. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORDS = ("model", "layout", "table", "document", "region", "formula", "page", "reading", "order", "text",
         "benchmark", "score", "block", "title", "caption", "value", "result", "method", "data", "figure",
         "training", "sample", "image", "column", "row", "header", "metric", "error", "distance", "edit")
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你而学"
IGNORED = ("header", "footer", "page_number", "figure_caption", "table_caption", "page_footnote",
           "table_footnote", "equation_caption", "figure_footnote", "code_algorithm")
FORMULAS = (r"E = m c^{2}", r"\frac{a}{b} + \sqrt{x}", r"\sum_{i=1}^{n} x_{i}", r"\int_{0}^{1} f(x) \, d x",
            r"\alpha + \beta = \gamma", r"\mathbf{A} \mathbf{x} = b", r"\left( a + b \right)^{2}")
SOURCES = ("academic_literature", "book", "exam_paper", "magazine", "newspaper", "note", "research_report")
LANGUAGES = ("english", "simplified_chinese", "en_ch_mixed")
# the cases the first pages are built around, one each; later pages draw several
CASES = ("plain", "title", "inline", "display", "array", "html_table", "pipe_table", "truncated_table",
         "two_tables", "empty", "ignored", "missing", "extra", "shuffled", "truncated_text", "newline_join",
         "no_table_pred", "table_not_in_gt", "code", "merged_blocks", "split_block", "array_lines",
         "no_prediction", "figure", "latex_table")


def words(rng: random.Random, count: int, chinese: bool = False) -> str:
    if chinese:
        return "".join(rng.choice(HANZI) for _ in range(count * 2)) + "。"
    return " ".join(rng.choice(WORDS) for _ in range(count)).capitalize() + "."


def noisy(rng: random.Random, text: str, rate: float) -> str:
    """`text` with about `rate` of its letters replaced, dropped or doubled."""
    out = []
    for char in text:
        roll = rng.random()
        if char.isalpha() and roll < rate / 3:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
        elif char.isalpha() and roll < 2 * rate / 3:
            continue
        elif char.isalpha() and roll < rate:
            out.append(char * 2)
        else:
            out.append(char)
    return "".join(out)


def html_table(rng: random.Random, rows: int, cols: int, header: bool) -> list[list[str]]:
    cells = [[f"{rng.choice(WORDS)} {rng.randint(0, 99)}" for _ in range(cols)] for _ in range(rows)]
    if header:
        cells[0] = [rng.choice(WORDS).upper() for _ in range(cols)]
    return cells


def render_html(cells: list[list[str]], header: bool, span: bool = False) -> str:
    rows = []
    for i, row in enumerate(cells):
        tag = "th" if header and i == 0 else "td"
        if span and i == len(cells) - 1 and len(row) > 1:
            rows.append(f'<tr><td colspan="{len(row)}">{" ".join(row)}</td></tr>')
            continue
        rows.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in row) + "</tr>")
    if header:
        return f"<table><thead>{rows[0]}</thead><tbody>{''.join(rows[1:])}</tbody></table>"
    return "<table>" + "".join(rows) + "</table>"


def render_latex(cells: list[list[str]]) -> str:
    rows = " \\\\\n".join(" & ".join(row) for row in cells)
    return "\\begin{tabular}{" + "l" * len(cells[0]) + "}\n" + rows + "\n\\end{tabular}"


def render_pipe(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


@dataclass
class Page:
    name: str
    rng: random.Random
    chinese: bool
    dets: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    relations: list[dict[str, Any]] = field(default_factory=list)
    joiner: str = "\n\n"

    def add(self, category: str, key: str, value: str, block: str | None, **extra: Any) -> int:
        anno_id = len(self.dets)
        self.dets.append({"category_type": category, "poly": [0, 0, 1, 0, 1, 1, 0, 1], "ignore": False,
                          "order": len(self.dets) + 1, "anno_id": anno_id, key: value,
                          "attribute": {"text_language": "text_simplified_chinese" if self.chinese else "text_english"},
                          **extra})
        if block is not None:
            self.blocks.append(block)
        return anno_id

    def text(self, rate: float = 0.05, count: int = 12) -> str:
        value = words(self.rng, count, self.chinese)
        self.add("text_block", "text", value, noisy(self.rng, value, rate))
        return value


def add_case(page: Page, case: str) -> None:
    rng = page.rng
    if case in ("plain", "shuffled", "newline_join", "no_prediction"):
        for _ in range(3):
            page.text()
    elif case == "title":
        value = words(rng, 4, page.chinese)
        page.add("title", "text", value, "# " + noisy(rng, value, 0.05))
    elif case == "inline":
        value = f"{words(rng, 6)} The area is $x^{{2}}$ and $\\alpha_{{i}}$ here, costs $5 and $6."
        page.add("text_block", "text", value, noisy(rng, value.replace("x^{2}", "x^2"), 0.03))
    elif case == "display":
        latex = rng.choice(FORMULAS)
        pred = noisy(rng, latex, 0.05)
        page.add("equation_isolated", "latex", f"$$\n{latex}\n$$", rng.choice((f"$$\n{pred}\n$$", f"\\[{pred}\\]")))
    elif case in ("array", "array_lines"):
        lines = rng.sample(FORMULAS, 3)
        latex = "\\begin{array}{l} " + " \\\\ ".join(lines) + " \\end{array}"
        pred = f"$$\n{latex}\n$$" if case == "array" else "\n\n".join(f"$$\n{line}\n$$" for line in lines)
        page.add("equation_isolated", "latex", f"$$\n{latex}\n$$", pred)
    elif "table" in case:
        add_table_case(page, case)
    else:
        add_other_case(page, case)


def add_table_case(page: Page, case: str) -> None:
    rng = page.rng
    header = rng.random() < 0.5
    cells = html_table(rng, rng.randint(2, 5), rng.randint(2, 4), header)
    gt = render_html(cells, header, span=rng.random() < 0.3)
    pred_cells = [[noisy(rng, c, 0.1) for c in row] for row in cells]
    if case == "table_not_in_gt":
        page.blocks.append(render_html(pred_cells, header))
        return
    if case == "pipe_table":
        block: str | None = render_pipe(pred_cells)
    elif case == "truncated_table":
        block = render_html(pred_cells, False).rsplit("<tr>", 1)[0]  # generation cut short: no </table>
    elif case == "no_table_pred":
        block = None
    elif case == "latex_table":  # their evaluation scores a page's LaTeX tables as empty predictions
        block = render_latex(pred_cells)
    else:
        block = render_html(pred_cells, header)
    page.add("table", "html", gt, block, latex=render_latex(cells))
    if case == "two_tables":
        add_table_case(page, "html_table")


def add_other_case(page: Page, case: str) -> None:
    rng = page.rng
    if case == "empty":
        page.add("text_block", "text", "", None)
        page.add("text_block", "text", "——", "***")
        page.add("title", "text", "  ", "#")
    elif case == "ignored":
        for category in rng.sample(IGNORED, 3):
            value = words(rng, 5, page.chinese)
            page.add(category, "text", value, noisy(rng, value, 0.05) if rng.random() < 0.7 else None)
    elif case == "missing":
        page.add("text_block", "text", words(rng, 10, page.chinese), None)
    elif case == "extra":
        page.blocks.append(words(rng, 9, page.chinese))
    elif case == "truncated_text":
        first, second = words(rng, 8, page.chinese), words(rng, 7, page.chinese)
        source = page.add("text_block", "text", first, None)
        target = page.add("text_block", "text", second, noisy(rng, first + second, 0.04))
        page.relations.append({"source_anno_id": source, "target_anno_id": target, "relation_type": "truncated"})
    elif case == "code":
        code = "def f(x):\n    return x + 1"
        page.add("code_txt", "text", code, f"```python\n{code}\n```")
    elif case == "merged_blocks":
        first, second = words(rng, 9, page.chinese), words(rng, 9, page.chinese)
        page.add("text_block", "text", first, None)
        page.add("text_block", "text", second, noisy(rng, first + " " + second, 0.03))
    elif case == "split_block":
        value = words(rng, 20, page.chinese)
        cut = len(value) // 2
        page.add("text_block", "text", value, noisy(rng, value[:cut], 0.03))
        page.blocks.append(noisy(rng, value[cut:], 0.03))
    elif case == "figure":
        page.add("figure", "text", "", "![](images/figure.jpg)")


def build_page(index: int, seed: int) -> tuple[Page, bool]:
    rng = random.Random(seed * 100_003 + index)
    name = f"synthetic_{index:04d}"
    page = Page(name, rng, chinese=rng.random() < 0.25)
    drawn = [case for case in CASES if case != "no_prediction"]
    cases = [CASES[index]] if index < len(CASES) else rng.sample(drawn, rng.randint(3, 7))
    page.text()
    for case in cases:
        add_case(page, case)
    page.text(rate=0.0)
    if "shuffled" in cases:
        rng.shuffle(page.blocks)
    if "newline_join" in cases:
        page.joiner = "\n"
    rng.shuffle(page.dets)  # OmniDocBench lists regions in no particular order; `order` says it
    return page, "no_prediction" not in cases


def page_record(page: Page, index: int) -> dict[str, Any]:
    rng = page.rng
    attribute = {"data_source": rng.choice(SOURCES),
                 "language": "simplified_chinese" if page.chinese else rng.choice(LANGUAGES[::2]),
                 "layout": rng.choice(("single_column", "double_column")),
                 "special_issue": rng.sample(["fuzzy_scan", "watermark", "colorful_backgroud"], rng.randint(0, 2))}
    return {"layout_dets": page.dets, "extra": {"relation": page.relations},
            "page_info": {"page_attribute": attribute, "page_no": index, "height": 1000, "width": 800,
                          "image_path": f"{page.name}.jpg"}}


def draw_page(page: Page, path: Path) -> None:
    """A page image with each region in its own band, in reading order, its text drawn in it;
    the regions' polys are set to their bands."""
    from PIL import Image, ImageDraw

    width, height = 800, 1000
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    ordered = sorted(page.dets, key=lambda det: det["order"])
    band = height // max(1, len(ordered))
    for slot, det in enumerate(ordered):
        top, bottom = slot * band + 2, (slot + 1) * band - 2
        det["poly"] = [20, top, width - 20, top, width - 20, bottom, 20, bottom]
        text = str(det.get("text") or det.get("latex") or det.get("html") or "")
        draw.text((24, top + 2), text[:90], fill="black")
    image.save(path)


def write_pages(out: Path, count: int, seed: int = 0, *, images: bool = False) -> list[str]:
    """gt.json and md/*.md for `count` pages under `out`; the page names that have a Markdown file.
    With `images`, also images/PAGE.jpg, each region drawn in a band of its own (and its poly set)."""
    (out / "md").mkdir(parents=True, exist_ok=True)
    if images:
        (out / "images").mkdir(exist_ok=True)
    records, written = [], []
    for index in range(count):
        page, has_prediction = build_page(index, seed)
        if images:
            draw_page(page, out / "images" / f"{page.name}.jpg")
        records.append(page_record(page, index))
        if has_prediction:
            (out / "md" / f"{page.name}.md").write_text(page.joiner.join(page.blocks) + "\n", encoding="utf-8")
            written.append(page.name)
    (out / "gt.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("-n", type=int, default=len(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", action="store_true", help="Also draw page images (and set the regions' boxes).")
    args = parser.parse_args()
    write_pages(args.out, args.n, args.seed, images=args.images)


if __name__ == "__main__":
    main()
