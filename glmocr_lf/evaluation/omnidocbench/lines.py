"""The lines OmniDocBench's matching compares (`get_gt_pred_lines`, utils/match.py at upstream
523fd1d), and its splitting of one-column `array` formulas into one line each.

Lines that are empty, or normalise to empty, are dropped on both sides, but, as in theirs, the item
lists stay whole: the matcher looks up an element's order, attributes and a block's position and
category by the index of its line among the kept ones. Where something was dropped before it,
that is another element's; the scores rest on it, so it is kept."""

from __future__ import annotations

import re
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from glmocr_lf.evaluation.omnidocbench.region import normalize_formula, normalize_text

Item = dict[str, Any]

TEXT_CATEGORIES = ("text_block", "title", "code_txt", "code_txt_caption", "reference", "equation_caption",
                   "figure_caption", "figure_footnote", "table_caption", "table_footnote", "code_algorithm",
                   "code_algorithm_caption", "header", "footer", "page_footnote", "page_number")
IGNORED_CATEGORIES = ("figure_caption", "figure_footnote", "table_caption", "table_footnote", "code_algorithm",
                      "code_algorithm_caption", "header", "footer", "page_footnote", "page_number", "equation_caption")
_ARRAY = re.compile(r"\\begin\{array\}\{(?P<spec>[^}]*)\}(?P<body>.*?)\\end\{array\}", re.S)


@dataclass
class Lines:
    gt: list[str]
    norm_gt: list[str]
    gt_categories: list[str]
    pred: list[str]
    norm_pred: list[str]
    gt_items: list[Item]  # whole, see the module's docstring
    pred_items: list[Item]


def category(item: Item) -> str:
    return str(item.get("fine_category_type") or item["category_type"])


def _one_column(spec: str) -> bool:
    spec = re.sub(r"!{[^}]*}", "", re.sub(r"@{[^}]*}", "", re.sub(r"\s+|\|", "", spec)))
    return spec in {"l", "c", "r"}


def _array_rows(body: str) -> list[str]:
    return [row.strip() for row in re.split(r"\\\\", body) if row.strip()]


def split_gt_arrays(items: list[Item]) -> list[Item]:
    """A ground-truth display formula holding a one-column array: one element per row, orders n.1, n.2..."""
    out: list[Item] = []
    for item in items:
        match = _ARRAY.search(item.get("latex", "")) if item.get("category_type") == "equation_isolated" else None
        if match and "\\begin{array" in item.get("latex", "") and _one_column(match.group("spec")):
            for number, row in enumerate(_array_rows(match.group("body")), start=1):
                row_item = deepcopy(item)
                row_item["latex"] = f"\\[{row}\\]"
                row_item["order"] = round(float(item["order"]) + number / 10, 1)
                out.append(row_item)
            continue
        out.append(item)
    return out


def split_pred_arrays(items: list[Item]) -> list[Item]:
    """The same for predicted formula blocks, each row's position inside the block."""
    out: list[Item] = []
    for item in items:
        content = item.get("content", "")
        match = _ARRAY.search(content) if item.get("category_type") == "equation_isolated" else None
        if not (match and "\\begin{array" in content and _one_column(match.group("spec"))):
            out.append(item)
            continue
        body = match.group("body")
        key = "position" if "position" in item else "positions"
        cursor = 0
        for row in _array_rows(body):
            found = body.find(row, cursor)
            found = cursor if found == -1 else found
            cursor = found + len(row)
            start = item[key][0] + match.start("body") + found
            row_item = deepcopy(item)
            row_item["content"] = f"\\[{row.strip()}\\]"
            row_item[key] = [start, start + len(row) - 1]
            out.append(row_item)
    return out


def _kept(pairs: list[tuple[str, ...]], width: int) -> list[list[str]]:
    kept = [pair for pair in pairs if pair[0] and pair[1]]
    return [list(column) for column in zip(*kept, strict=True)] if kept else [[] for _ in range(width)]


def text_lines(gt_items: list[Item], pred_items: list[Item]) -> Lines:
    """Lines for the mixed text / formula match: text normalised as text, formulas as formulas,
    table cells (of unmatched predicted tables) as they are."""
    pred, norm_pred = [], []
    for item in pred_items:
        content = str(item["content"])
        pred.append(content)
        kind = item["category_type"]
        norm_pred.append(normalize_text(content) if kind == "text_all"
                         else normalize_formula(content) if kind == "equation_isolated" else content)
    gt, norm_gt, categories = [], [], []
    for item in gt_items:
        if item["category_type"] in TEXT_CATEGORIES:
            gt.append(str(item["text"]))
            norm_gt.append(normalize_text(str(item["text"])))
        elif item["category_type"] == "equation_isolated":
            gt.append(str(item["latex"]))
            norm_gt.append(normalize_formula(str(item["latex"])))
        else:
            continue
        categories.append(category(item))
    return _lines(gt, norm_gt, categories, pred, norm_pred, gt_items, pred_items)


def table_lines(gt_items: list[Item], pred_items: list[Item], kind: str) -> Lines:
    """Lines for the table match: raw HTML on both sides, nothing normalised; against LaTeX
    predictions the ground truth's LaTeX is what is compared (and its HTML what is reported)."""
    categories = [category(item) for item in gt_items]
    html = [str(item["html"]) for item in gt_items]
    compared = [str(item["latex"]) for item in gt_items] if kind == "latex_table" else list(html)
    pred = [str(item["content"]) for item in pred_items]
    return _lines(html, compared, categories, pred, list(pred), gt_items, pred_items)


def _lines(gt: list[str], norm_gt: list[str], categories: list[str], pred: list[str], norm_pred: list[str],
           gt_items: list[Item], pred_items: list[Item]) -> Lines:
    gt_kept = _kept(list(zip(gt, norm_gt, categories, strict=True)), 3)
    pred_kept = _kept(list(zip(pred, norm_pred, strict=True)), 2)
    return Lines(gt_kept[0], gt_kept[1], gt_kept[2], pred_kept[0], pred_kept[1], gt_items, pred_items)
