"""The steps of OmniDocBench's quick match (utils/match_quick.py at upstream 523fd1d) that join
predicted blocks a model split (a paragraph broken in two) before the assignment, and find
ground-truth lines inside a longer predicted block after it. Their loops are kept as they are,
including where they change a list they walk: the matches depend on it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein

MATCHED = 0.25  # a pair below this edit ratio is matched before any joining
MERGE_THRESHOLD = 0.6
FUZZY_THRESHOLD = 0.4

PredIndex = Any  # an int, or a list of ints for joined blocks


def ratio(a: str, b: str) -> float:
    return Levenshtein.distance(a, b) / max(len(a), len(b))


def distance_matrix(gt_lines: list[str], pred_lines: list[str]) -> Any:
    matrix = np.zeros((len(gt_lines), len(pred_lines)))
    for i, gt in enumerate(gt_lines):
        for j, pred in enumerate(pred_lines):
            matrix[i][j] = 0 if not gt and not pred else ratio(gt, pred)
    return matrix


def best_window(longer: str, shorter: str) -> float | None:
    """The smallest edit ratio of `shorter` against a same-length window of `longer`."""
    if not (len(longer) >= len(shorter) > 0):
        return None
    return min(Levenshtein.distance(longer[i:i + len(shorter)], shorter) / len(shorter)
               for i in range(len(longer) - len(shorter) + 1))


def judge_pred_merge(gt: str, preds: list[str]) -> tuple[bool, bool]:
    """(join the last block too, keep trying longer joins), as their `judge_pred_merge`."""
    if len(preds) == 1:
        return False, False
    current, merged = " ".join(preds[:-1]), " ".join(preds)
    if ratio(gt, merged) > ratio(gt, current):
        return False, False
    parts = [best_window(gt, pred) for pred in preds[:-1]]
    if any(part is None or part > MERGE_THRESHOLD for part in parts):
        return False, False
    added = best_window(gt, preds[-1])
    if added is None:
        return False, False
    return added < MERGE_THRESHOLD, len(merged) <= len(gt)


def _candidate(gt: str, norm_pred: list[str], start: int, masked_pred: list[int]) -> list[int]:
    step = 1
    joined = [norm_pred[start]]
    while not (start + step in masked_pred or start + step >= len(norm_pred)):
        joined.append(norm_pred[start + step])
        merge, go_on = judge_pred_merge(gt, joined)
        if not merge:
            break
        step += 1
        if not go_on:
            break
    return list(range(start, start + step))


def deal_with_truncated(cost: Any, norm_gt: list[str], norm_pred: list[str]) -> tuple[Any, list[str], list[PredIndex]]:
    """Join runs of predicted blocks that together read as one unmatched ground-truth line."""
    matched_first = np.argwhere(cost < MATCHED)
    masked_gt = [i[0] for i in matched_first]
    masked_pred = [i[1] for i in matched_first]
    free_gt = [i for i in range(cost.shape[0]) if i not in masked_gt]
    free_pred = [i for i in range(cost.shape[1]) if i not in masked_pred]
    subsets, subset_costs = [], []
    for gt_index in free_gt:
        candidates = [_candidate(norm_gt[gt_index], norm_pred, start, masked_pred) for start in free_pred]
        costs = [ratio(norm_gt[gt_index], " ".join(norm_pred[i] for i in subset)) for subset in candidates]
        if costs:
            best = min(costs)
            subsets.append(candidates[costs.index(best)])
            subset_costs.append(best)
    final = final_subsets(subsets, subset_costs)
    if not final:
        return cost, norm_pred, list(range(len(norm_pred)))
    indices = merge_with_sublists(list(range(len(norm_pred))), final)
    lines = [" ".join(norm_pred[i[0]:i[-1] + 1]) if isinstance(i, list) else norm_pred[i] for i in indices]
    return distance_matrix(norm_gt, lines), lines, indices


def merge_with_sublists(indices: list[PredIndex], sublists: list[list[int]]) -> list[PredIndex]:
    for sublist in sublists:
        at = indices.index(sublist[0])
        for _ in sublist:
            indices.pop(at)
        indices.insert(at, sublist)
    return indices


def _groups(pairs: list[tuple[list[int], float]]) -> list[list[tuple[list[int], float]]]:
    """Consecutive (by first index) subsets that share an index with the current group."""
    groups = [[pairs[0]]]
    for item in pairs[1:]:
        if any(index in subset[0] for subset in groups[-1] for index in item[0]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def final_subsets(subsets: list[list[int]], costs: list[float]) -> list[list[int]]:
    """Their `get_final_subset`: per overlapping group, the path of disjoint subsets of least mean cost."""
    if not subsets or not costs:
        return []
    final: list[list[int]] = []
    for group in _groups(sorted(zip(subsets, costs, strict=True), key=lambda pair: pair[0][0])):
        if len(group) == 1:
            final.append(group[0][0])
            continue
        paths: dict[int, list[tuple[list[int], float]]] = defaultdict(list)
        paths[0].append(group[0])
        for subset in group[1:]:
            _place(paths, subset)
        best_cost, best = float("inf"), []
        for path in paths.values():
            mean = sum(item[1] for item in path) / len(path)
            if mean < best_cost:
                best, best_cost = [item[0] for item in path], mean
        final.extend(best)
    return final


def _place(paths: dict[int, list[tuple[list[int], float]]], subset: tuple[list[int], float]) -> None:
    new_path = True
    for key, items in paths.items():
        duplicate = same = False
        for item in items:  # as theirs: the list may change under the loop
            if item[0] == subset[0]:
                duplicate = same = True
                if item[1] > subset[1]:
                    paths[key].pop(paths[key].index(item))
                    paths[key].append(subset)
            elif any(a == b for a in item[0] for b in subset[0]):
                duplicate = True
        if not duplicate:
            paths[key].append(subset)
            new_path = False
        if same:
            new_path = False
    if new_path:
        paths[len(paths)].append(subset)


def fuzzy_unmatched(unmatched_gt: list[int], norm_gt: list[str], norm_pred: list[str]) -> dict[int, list[int]]:
    """For each predicted block, the unmatched ground-truth lines found inside it (edit ratio < 0.4)."""
    found: dict[int, list[int]] = {}
    for pred_index, pred in enumerate(norm_pred):
        inside = []
        for gt_index in unmatched_gt:
            window = best_window(pred, norm_gt[gt_index])
            if (1 if window is None else window) < FUZZY_THRESHOLD:
                inside.append(gt_index)
        if inside:
            found[pred_index] = inside
    return found
