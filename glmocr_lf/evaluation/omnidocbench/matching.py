"""Predicted blocks matched to ground-truth elements as OmniDocBench's end-to-end evaluation does
(`match_gt2pred_quick` and `match_gt2pred_simple`, utils/match_quick.py and utils/match.py at
upstream 523fd1d): ignore categories (headers, captions, page numbers...) first, by edit ratio
< 0.25; then the rest by an assignment on edit ratios after joining split blocks, pairs above 0.7
undone, unmatched lines found inside longer blocks, the leftovers assigned once more.

A match is a dict as theirs: gt_idx, gt, norm_gt, gt_category_type, gt_position (orders),
gt_attribute, pred_idx, pred, norm_pred, pred_category_type, pred_position, img_id. Their
bookkeeping is kept where the scores rest on it: an extra inline formula's entry is removed while
its list is walked, so the entry after it goes unfinished (no category: it is scored nowhere).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from glmocr_lf.evaluation.omnidocbench import truncation as t
from glmocr_lf.evaluation.omnidocbench.lines import (
    IGNORED_CATEGORIES,
    Item,
    Lines,
    category,
    text_lines,
)

Match = dict[str, Any]
UNDONE = 0.7  # an assigned pair above this edit ratio is no match


def order_of(item: Item) -> Any:
    return item.get("order") if item.get("order") else item.get("position", [""])[0]


def _entry(lines: Lines, gt_index: int | None, pred_index: int | None, img_name: str) -> Match:
    """One element to one block (either may be None), as their shortcut cases build it."""
    gt_items, pred_items = lines.gt_items, lines.pred_items
    return {"gt_idx": [gt_index] if gt_index is not None else [""],
            "gt": lines.gt[gt_index] if gt_index is not None else "",
            "pred_idx": [pred_index] if pred_index is not None else [""],
            "pred": lines.pred[pred_index] if pred_index is not None else "",
            "gt_position": [order_of(gt_items[gt_index])] if gt_index is not None else [""],
            "pred_position": pred_items[pred_index]["position"][0] if pred_index is not None else "",
            "norm_gt": lines.norm_gt[gt_index] if gt_index is not None else "",
            "norm_pred": lines.norm_pred[pred_index] if pred_index is not None else "",
            "gt_category_type": lines.gt_categories[gt_index] if gt_index is not None else "",
            "pred_category_type": category(pred_items[pred_index]) if pred_index is not None else "",
            "gt_attribute": [gt_items[gt_index].get("attribute", {})] if gt_index is not None else [{}],
            "img_id": img_name}


def match_quick(gt_items: list[Item], pred_items: list[Item], img_name: str) -> list[Match]:
    from glmocr_lf.evaluation.omnidocbench.lines import split_gt_arrays, split_pred_arrays

    gt_items = split_gt_arrays(gt_items)
    ranked = sorted(enumerate(pred_items), key=lambda pair: (
        pair[1].get("fine_category_type") == "equation_inline", pair[1]["position"][0], pair[0]))
    lines = text_lines(gt_items, split_pred_arrays([item for _, item in ranked]))
    if not lines.norm_gt:
        return [_entry(lines, None, j, img_name) for j in range(len(lines.norm_pred))]
    if not lines.norm_pred:
        return [_entry(lines, i, None, img_name) for i in range(len(lines.norm_gt))]
    if len(lines.norm_gt) == 1 and len(lines.norm_pred) == 1:
        return [_entry(lines, 0, 0, img_name)]
    ignored = [i for i, name in enumerate(lines.gt_categories) if name in IGNORED_CATEGORIES]
    kept = [i for i, name in enumerate(lines.gt_categories) if name not in IGNORED_CATEGORIES]
    ignored_results: list[Match] = []
    taken_preds: list[Any] = []
    if ignored:
        ignored_results, taken_preds = _match_ignored(lines, ignored, img_name)
    free_preds = [j for j in range(len(lines.norm_pred)) if j not in taken_preds]
    results = _match_rest(_subset(lines, kept, free_preds), img_name, kept, free_preds)
    return results + ignored_results


def _subset(lines: Lines, gt_indices: list[int], pred_indices: list[Any]) -> Lines:
    return Lines([lines.gt[i] for i in gt_indices], [lines.norm_gt[i] for i in gt_indices],
                 [lines.gt_categories[i] for i in gt_indices], [lines.pred[j] for j in pred_indices],
                 [lines.norm_pred[j] for j in pred_indices], [lines.gt_items[i] for i in gt_indices],
                 [lines.pred_items[j] for j in pred_indices])


def _match_ignored(lines: Lines, ignored: list[int], img_name: str) -> tuple[list[Match], list[Any]]:
    """Ignore-category lines against every block: each pair below 0.25 is a match."""
    norm_ignored = [lines.norm_gt[i] for i in ignored]
    matrix = t.distance_matrix(norm_ignored, lines.norm_pred)
    pairs = np.argwhere(matrix < t.MATCHED)
    taken = [pair[1] for pair in pairs]  # one per pair: a block may stand twice
    sub = _subset(lines, ignored, taken)
    matches: dict[Any, dict[str, Any]] = {}
    for position, pair in enumerate(pairs):
        matches[pair[0]] = {"pred_indices": [position]}
    final = merge_matches(matches, {})
    results = merge_duplicates(convert_final_matches(final, sub.norm_gt, sub.norm_pred), sub)
    finish(results, sub, img_name, formulas_as_arrays=False)
    for entry in results:
        _renumber(entry, ignored, taken)
    return results, taken


def _match_rest(sub: Lines, img_name: str, gt_indices: list[int], pred_indices: list[Any]) -> list[Match]:
    cost = t.distance_matrix(sub.norm_gt, sub.norm_pred)
    columns, rows, costs = final_assignment(cost, sub.norm_gt, sub.norm_pred)
    matches, unmatched_gt = process_matches(columns, rows, costs, len(sub.norm_gt))
    final = merge_matches(matches, t.fuzzy_unmatched(unmatched_gt, sub.norm_gt, sub.norm_pred))
    results = merge_duplicates(convert_final_matches(final, sub.norm_gt, sub.norm_pred), sub)
    finish(results, sub, img_name, formulas_as_arrays=True)
    for entry in results:
        _renumber(entry, gt_indices, pred_indices)
    return results


def _renumber(entry: Match, gt_indices: list[int], pred_indices: list[Any]) -> None:
    if isinstance(entry["gt_idx"], list) and entry["gt_idx"] != [""]:
        entry["gt_idx"] = [gt_indices[i] for i in entry["gt_idx"]]
    if isinstance(entry["pred_idx"], list) and entry["pred_idx"] != [""]:
        entry["pred_idx"] = [int(pred_indices[j]) for j in entry["pred_idx"]]


def final_assignment(cost: Any, norm_gt: list[str], norm_pred: list[str]) -> tuple[list[Any], Any, list[float]]:
    from scipy.optimize import linear_sum_assignment

    cost, _, indices = t.deal_with_truncated(cost, norm_gt, norm_pred)
    rows, cols = linear_sum_assignment(cost)
    return [indices[c] for c in cols], rows, [cost[r][c] for r, c in zip(rows, cols, strict=True)]


def process_matches(columns: list[Any], rows: Any, costs: list[float], n_gt: int) -> tuple[dict[int, Any], list[int]]:
    """Assigned pairs under 0.7 are matches; the other lines are unmatched."""
    matches: dict[int, Any] = {}
    unmatched_gt: list[int] = []
    row_list = list(rows)
    for i in range(n_gt):
        if i not in row_list:
            unmatched_gt.append(i)
            continue
        at = row_list.index(i)
        pred = columns[at]
        span = list(range(pred[0], pred[-1] + 1)) if isinstance(pred, list) else [pred]
        if costs[at] > UNDONE:
            unmatched_gt.append(i)
        else:
            matches[i] = {"pred_indices": span}
    return matches, unmatched_gt


def merge_matches(matches: dict[Any, Any], found_inside: dict[int, list[int]]) -> dict[tuple[Any, ...], list[Any]]:
    """Ground-truth lines per predicted block (or run of blocks), each line once."""
    final: dict[tuple[Any, ...], list[Any]] = {}
    done: set[Any] = set()
    for gt_index, info in matches.items():
        key = tuple(sorted(info["pred_indices"]))
        if key in final:
            if gt_index not in done:
                final[key].append(gt_index)
                done.add(gt_index)
        else:
            final[key] = [gt_index]
            done.add(gt_index)
    for pred_index, gt_indices in found_inside.items():
        key = (pred_index,)
        if key in final:
            for gt_index in gt_indices:
                if gt_index not in done:
                    final[key].append(gt_index)
                    done.add(gt_index)
        else:
            final[key] = [g for g in gt_indices if g not in done]
            done.update(final[key])
    return final


def convert_final_matches(final: dict[tuple[Any, ...], list[Any]], norm_gt: list[str], norm_pred: list[str]) -> list[Match]:
    from scipy.optimize import linear_sum_assignment

    results: list[Match] = []
    for key, gt_indices in final.items():
        for gt_index in sorted(set(gt_indices)):
            results.append({"gt_idx": int(gt_index), "gt": norm_gt[gt_index], "pred_idx": list(key)})
    matched_gt = set().union(*[set(g) for g in final.values()])
    # sets, as theirs: the leftovers are assigned in the sets' iteration order
    unmatched_gt = set(range(len(norm_gt))) - matched_gt
    unmatched_pred = set(range(len(norm_pred))) - {i for key in final for i in key if isinstance(i, int)}
    if unmatched_pred and unmatched_gt:
        gt_list, pred_list = list(unmatched_gt), list(unmatched_pred)
        rows, cols = linear_sum_assignment([[t.ratio(norm_gt[g], norm_pred[p]) for p in pred_list] for g in gt_list])
        for i, j in zip(rows, cols, strict=True):
            results.append({"gt_idx": int(gt_list[i]), "gt": norm_gt[gt_list[i]], "pred_idx": [pred_list[j]]})
    elif unmatched_pred:
        results.append({"gt_idx": "", "gt": "", "pred_idx": list(unmatched_pred)})
    else:
        for gt_index in unmatched_gt:
            results.append({"gt_idx": int(gt_index), "gt": norm_gt[gt_index], "pred_idx": ""})
    return results


def merge_duplicates(converted: list[Match], lines: Lines) -> list[Match]:
    """One entry per predicted block (its lines together), then each ground-truth line left alone."""
    merged: list[Match] = []
    seen_pred: set[tuple[Any, ...]] = set()
    seen_gt: set[Any] = set()
    for entry in converted:
        key = tuple(entry["pred_idx"]) if isinstance(entry["pred_idx"], list) else (entry["pred_idx"],)
        if key in seen_pred or key == ("",):
            continue
        joined = {"gt_idx": [entry["gt_idx"]], "pred_idx": entry["pred_idx"]}
        for other in converted:
            other_key = tuple(other["pred_idx"]) if isinstance(other["pred_idx"], list) else (other["pred_idx"],)
            if other_key == key and other is not entry:
                joined["gt_idx"].append(other["gt_idx"])
                seen_gt.add(other["gt_idx"])
        merged.append(joined)
        seen_pred.add(key)
        seen_gt.add(entry["gt_idx"])
    merged += [{"gt_idx": [i], "pred_idx": [""]} for i in range(len(lines.norm_gt)) if i not in seen_gt]
    return merged


def _main_category(categories: list[str]) -> str:
    clean = [name for name in categories if name not in IGNORED_CATEGORIES]
    return Counter(clean or categories).most_common(1)[0][0]


def _as_array(parts: list[str]) -> str:
    # theirs strips "$$", which is the character "$"
    return "\\begin{array}{l} " + " \\\\ ".join("{" + p.strip("$").strip("\n") + "}" for p in parts) + " \\end{array}"


def finish(results: list[Match], lines: Lines, img_name: str, *, formulas_as_arrays: bool) -> None:
    """Their per-entry completion, over the list as it is walked: an unmatched inline formula's
    entry is removed in the walk, and the entry after it is skipped (left unfinished)."""
    index = 0
    while index < len(results):
        entry = results[index]
        gt_idx, pred_idx = entry["gt_idx"], entry["pred_idx"]
        has_gt, has_pred = gt_idx != [""], pred_idx != [""]
        pred_category = category(lines.pred_items[pred_idx[0]]) if has_pred else ""
        if has_gt:
            entry["gt_category_type"] = _main_category([lines.gt_categories[i] for i in gt_idx])
        else:
            entry["gt_category_type"] = ""
            if pred_category == "equation_inline":
                results.remove(entry)
        entry["gt_position"] = [order_of(lines.gt_items[i]) for i in gt_idx] if has_gt else [""]
        entry["pred_position"] = lines.pred_items[pred_idx[0]]["position"][0] if has_pred else ""
        gt_parts = [lines.gt[i] for i in gt_idx] if has_gt else []
        pred_parts = [lines.pred[j] for j in pred_idx] if has_pred else []
        multi_gt = formulas_as_arrays and entry["gt_category_type"] == "equation_isolated" and len(gt_idx) > 1
        entry["gt"] = _as_array(gt_parts) if multi_gt else "".join(gt_parts)
        multi_pred = formulas_as_arrays and "equation" in pred_category and len(pred_idx) > 1
        entry["pred"] = _as_array(pred_parts) if multi_pred else "".join(pred_parts)
        entry["norm_gt"] = "".join(lines.norm_gt[i] for i in gt_idx) if has_gt else ""
        entry["norm_pred"] = "".join(lines.norm_pred[j] for j in pred_idx) if has_pred else ""
        entry["pred_category_type"] = pred_category
        entry["gt_attribute"] = [lines.gt_items[i].get("attribute", {}) for i in gt_idx] if has_gt else [{}]
        entry["img_id"] = img_name
        index += 1
