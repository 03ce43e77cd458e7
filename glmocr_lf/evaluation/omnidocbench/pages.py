"""OmniDocBench's end-to-end matching over a ground-truth JSON and a folder of one Markdown file per
page (`End2EndDataset`, dataset/end2end_dataset.py at upstream 523fd1d, quick_match): per page,
ground-truth elements joined along `truncated` relations; tables matched to predicted tables on
their raw HTML, the leftover predicted tables' cells thrown in with the text; text, titles and
display formulas matched to the other blocks; ignore categories matched, then left out of the
text score; reading order from the matched text. Across pages: a display formula matched to a
text block is scored as text; where a page's predicted tables are mostly LaTeX, the tables matched to
them are scored as empty predictions (theirs blanks them before its LaTeX-to-HTML step could run).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmocr_lf.evaluation.omnidocbench.extract import md_tex_filter
from glmocr_lf.evaluation.omnidocbench.lines import (
    IGNORED_CATEGORIES,
    TEXT_CATEGORIES,
    Item,
    table_lines,
)
from glmocr_lf.evaluation.omnidocbench.matching import Match, match_quick, order_of
from glmocr_lf.evaluation.omnidocbench.region import normalize_table
from glmocr_lf.runtime.errors import DataError

MIXED_CATEGORIES = (*TEXT_CATEGORIES, "equation_isolated")
TABLE_KINDS = ("html_table", "latex_table", "md2html_table")


@dataclass
class Matched:
    """Every page's matches, by what they are scored as."""
    text_block: list[Match] = field(default_factory=list)
    display_formula: list[Match] = field(default_factory=list)
    table: list[Match] = field(default_factory=list)
    reading_order: list[dict[str, Any]] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)  # image names, in the ground truth's order
    missing: list[str] = field(default_factory=list)  # pages without a Markdown file (not scored)


def page_elements(page: dict[str, Any]) -> dict[str, list[Item]]:
    """Elements by category; those a `truncated` relation links are one element, texts joined in order."""
    chains: list[list[Any]] = []
    linked: dict[Any, Any] = {}
    for relation in page.get("extra", {}).get("relation", []):
        if relation.get("relation_type") != "truncated":
            continue
        source, target = relation["source_anno_id"], relation["target_anno_id"]
        linked[source] = linked[target] = ""
        joined = False
        for chain in chains:  # as theirs: appended to every chain it touches, repeats and all
            if source in chain or target in chain:
                chain += [source, target]
                joined = True
        if not joined:
            chains.append([source, target])
    elements: dict[str, list[Item]] = {}
    for item in page["layout_dets"]:
        if item["anno_id"] in linked:
            linked[item["anno_id"]] = item
        else:
            elements.setdefault(item["category_type"], []).append(item)
    for chain in chains:
        parts = sorted((linked[key] for key in chain), key=lambda item: item["order"])
        elements.setdefault(parts[0]["category_type"], []).append({
            "category_type": parts[0]["category_type"], "order": parts[0]["order"], "anno_id": parts[0]["anno_id"],
            "text": "".join(part["text"] for part in parts), "merge_list": parts})
    return elements


def by_order(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda item: item.get("order") or 0)


def match_tables(gt_tables: list[Item], pred_tables: list[Item], kind: str, img_name: str) -> tuple[list[Match], list[Item]]:
    """Their `match_gt2pred_simple` for tables: one assignment on raw-HTML edit ratios; a predicted
    table left over becomes its cells (those with one string), as text blocks."""
    from scipy.optimize import linear_sum_assignment

    from glmocr_lf.evaluation.omnidocbench.truncation import distance_matrix

    lines = table_lines(gt_tables, pred_tables, kind)
    if not lines.norm_gt or not lines.norm_pred:
        return [_table_entry(lines, i, None, 1, img_name) for i in range(len(lines.norm_gt))], []
    cost = distance_matrix(lines.norm_gt, lines.norm_pred)
    rows, cols = linear_sum_assignment(cost)
    row_list, matches = list(rows), []
    for i in range(len(lines.norm_gt)):
        j = int(cols[row_list.index(i)]) if i in row_list else None
        matches.append(_table_entry(lines, i, j, cost[i][j] if j is not None else 1, img_name))
    leftovers = [j for j in range(len(lines.norm_pred)) if j not in cols]
    return matches, [cell for j in leftovers for cell in _cells(lines.pred_items[j])]


def _table_entry(lines: Any, i: int, j: int | None, edit: float, img_name: str) -> Match:
    item = lines.gt_items[i]
    return {"gt_idx": [i], "gt": lines.gt[i], "norm_gt": lines.norm_gt[i], "gt_category_type": lines.gt_categories[i],
            "gt_position": [order_of(item)], "gt_attribute": [item.get("attribute", {})],
            "pred_idx": [j if j is not None else ""], "pred": lines.pred[j] if j is not None else "",
            "norm_pred": lines.norm_pred[j] if j is not None else "", "edit": edit, "img_id": img_name}


def _cells(table: Item) -> list[Item]:
    from bs4 import BeautifulSoup

    cells = []
    for cell in BeautifulSoup(table.get("content"), "html.parser").find_all("td"):
        if cell.string:
            cells.append({**table, "content": re.sub(r"\$\\cdot\$", "", cell.string).strip(), "category_type": "text_all"})
    return cells


def match_page(page: dict[str, Any], markdown: str, img_name: str, matched: Matched) -> None:
    predicted = md_tex_filter(markdown)
    mixed = [block for name, blocks in predicted.items() if name not in TABLE_KINDS for block in blocks]
    elements = page_elements(page)
    gt_mixed = by_order([item for name in MIXED_CATEGORIES for item in elements.get(name, [])])
    if elements.get("table"):
        latex, html = predicted.get("latex_table", []), predicted.get("html_table", [])
        kind, tables = ("latex_table", latex) if len(latex) > len(html) else ("html_table", html)
        gt_tables = by_order(elements["table"])
        if kind == "latex_table" and not all("latex" in table for table in gt_tables):
            raise DataError(f"{img_name}: its predicted tables are LaTeX, so OmniDocBench matches them to the "
                            "ground truth's latex field, which a table element of the page lacks")
        found, leftovers = match_tables(gt_tables, tables, kind, img_name)
        if kind == "latex_table":  # theirs blanks every prediction matched to a LaTeX table
            found = [{**entry, "pred": "", "norm_pred": ""} for entry in found]
        matched.table += found
        mixed += leftovers
    matches = match_quick(gt_mixed, mixed, img_name)
    text = [m for m in matches if m.get("gt_category_type") in TEXT_CATEGORIES]
    matched.display_formula += [m for m in matches if m.get("gt_category_type") == "equation_isolated"
                                and m["gt_idx"] != [""]]
    text = [m for m in text if m["gt_category_type"] not in IGNORED_CATEGORIES]
    matched.text_block += text
    if text:
        order = reading_order(text, img_name)
        if order:
            matched.reading_order.append(order)


def reading_order(text: list[Match], img_name: str) -> dict[str, Any]:
    """Ground-truth orders sorted, against the same orders sorted by where their blocks stand."""
    pairs = [(m["gt_position"], m["pred_position"]) for m in text if m["gt_position"] != [""] and m["pred_position"] != ""]
    gt = sorted(x for m in text if m["gt_position"] != [""] for x in m["gt_position"] if x)
    pred = [x for orders, _ in sorted(pairs, key=lambda pair: pair[1]) for x in orders if x]
    if not pred and not gt:
        return {}
    return {"gt": gt, "pred": pred, "img_id": img_name}


def prediction_path(folder: Path, img_name: str) -> Path | None:
    """The Markdown file for a page image, looked up under the names their evaluation tries."""
    stem = img_name[:-4]
    for name in (stem + ".md", stem.replace(".pdf", "") + ".mmd", stem.replace(".pdf", "") + ".md", img_name + ".md"):
        if (folder / name).exists():
            return folder / name
    return None


# the field OmniDocBench's matching reads of an element, by category
ANSWER_FIELD = {**dict.fromkeys(TEXT_CATEGORIES, "text"), "equation_isolated": "latex", "table": "html"}
LISTED_PROBLEMS = 5


def read_ground_truth(path: Path) -> list[dict[str, Any]]:
    """The pages, checked for what OmniDocBench's evaluation reads (it stops with a traceback there)."""
    from glmocr_lf.runtime.fsutil import decode_utf8, read_bytes

    try:
        pages = json.loads(decode_utf8(Path(path), read_bytes(Path(path), "OmniDocBench ground truth")))
    except ValueError as error:
        raise DataError(f"{path}: not JSON ({error})") from None
    if not isinstance(pages, list) or not all(isinstance(p, dict) and "layout_dets" in p and "page_info" in p
                                                for p in pages):
        raise DataError(f"{path}: expected OmniDocBench's format, a list of pages with layout_dets and page_info")
    problems = [problem for index, page in enumerate(pages) for problem in _page_problems(index, page)]
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - LISTED_PROBLEMS} more" if len(problems) > LISTED_PROBLEMS else ""
        raise DataError(f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}\n{listed}{more}")
    return pages


def _page_problems(index: int, page: dict[str, Any]) -> list[str]:
    info = page["page_info"]
    if not (isinstance(info, dict) and isinstance(info.get("image_path"), str)):
        return [f"[{index}].page_info.image_path: missing"]
    if not isinstance(page["layout_dets"], list):
        return [f"[{index}].layout_dets: expected a list"]
    problems, ids = [], set()
    for j, det in enumerate(page["layout_dets"]):
        where = f"[{index}].layout_dets[{j}]"
        if not (isinstance(det, dict) and isinstance(det.get("category_type"), str) and "anno_id" in det):
            problems.append(f"{where}: expected category_type and anno_id")
            continue
        ids.add(det["anno_id"])
        field = ANSWER_FIELD.get(det["category_type"])
        if field is not None and field not in det:
            problems.append(f"{where}: {field}: missing (the text of a {det['category_type']} element)")
    for k, relation in enumerate(page.get("extra", {}).get("relation", [])):
        if isinstance(relation, dict) and relation.get("relation_type") == "truncated":
            missing = [key for key in ("source_anno_id", "target_anno_id") if relation.get(key) not in ids]
            problems += [f"[{index}].extra.relation[{k}].{key}: no element with this anno_id" for key in missing]
    return problems


def read_markdown(path: Path) -> str:
    from glmocr_lf.runtime.fsutil import read_bytes

    raw = read_bytes(path, "page Markdown file")
    try:
        return raw.decode("utf-8")  # as theirs: a byte-order mark stays part of the text
    except UnicodeDecodeError:
        from glmocr_lf.runtime.fsutil import decode_utf8

        return decode_utf8(path, raw)  # raises the Error line with the position


def match_all(gt_path: Path, pred_dir: Path) -> Matched:
    matched = Matched()
    for page in read_ground_truth(gt_path):
        img_name = os.path.basename(page["page_info"]["image_path"])
        path = prediction_path(Path(pred_dir), img_name)
        if path is None:
            matched.missing.append(img_name)
            continue
        matched.pages.append(img_name)
        match_page(page, read_markdown(path), img_name, matched)
    _formulas_read_as_text(matched)
    for entry in matched.table:
        entry["norm_gt"], entry["norm_pred"] = normalize_table(entry["gt"]), normalize_table(entry["pred"])
    return matched


def _formulas_read_as_text(matched: Matched) -> None:
    """A display formula whose block was text is scored as text, its LaTeX read as Unicode."""
    from pylatexenc.latex2text import LatexNodes2Text

    formulas, as_text = [], []
    for entry in matched.display_formula:
        if entry.get("pred_category_type") in ("equation_inline", "equation_isolated", ""):
            formulas.append(entry)
            continue
        entry["gt"] = LatexNodes2Text().latex_to_text(entry["gt"])
        entry["norm_gt"] = re.sub(r"[^\w\u4e00-\u9fff]", "", _drop_escapes(entry["gt"]))
        as_text.append(entry)
    matched.display_formula = formulas
    if as_text and matched.text_block:
        matched.text_block += as_text


def _drop_escapes(text: str) -> str:
    for escape in ("\\t", "\\n", "\t", "\n", "/t", "/n"):
        text = text.replace(escape, "")
    return text

