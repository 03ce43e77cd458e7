"""Page-level OmniDocBench scores from the matches (`call_Edit_dist`, `call_TEDS` in
metrics/cal_metric.py and `get_page_split` in metrics/show_result.py, upstream 523fd1d).

Per category (text_block, display_formula, table, reading_order): `edit` is the mean over pages
of each page's sum of edit distances over its sum of max lengths (their ALL_page_avg, the number
the leaderboard prints), `edit_whole` the same sum over all pages, `edit_sample_avg` the mean of
the per-match ratios; tables also `teds` and `teds_s`, means over matched ground-truth tables.
A match is compared on its normalised strings, on the raw one where a side normalised to empty.
The leaderboard's Overall, ((1 - text edit) x 100 + table TEDS + formula CDM) / 3, needs CDM,
which renders LaTeX: it is not computed here and is reported as null, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

from glmocr_lf.evaluation.omnidocbench.pages import Matched, match_all
from glmocr_lf.evaluation.omnidocbench.region import teds
from glmocr_lf.runtime.errors import DataError

CATEGORIES = ("text_block", "display_formula", "table", "reading_order")
CDM_NOTE = ("CDM (formula) is not computed: it renders LaTeX with a TeX toolchain and ImageMagick; "
            "the leaderboard's Overall needs it, so overall is null")


@dataclass(frozen=True)
class CategoryScore:
    samples: int
    metrics: dict[str, float | None]
    per_page: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class PageScores:
    source: str
    pages: list[str]
    missing: list[str]
    categories: dict[str, CategoryScore] = field(default_factory=dict)

    def overall(self) -> dict[str, Any]:
        text, table = self.categories["text_block"].metrics, self.categories["table"].metrics
        text_edit, table_teds = text.get("edit"), table.get("teds")
        return {"text_edit": text_edit, "table_teds": None if table_teds is None else 100 * table_teds,
                "table_teds_s": None if table.get("teds_s") is None else 100 * table["teds_s"],  # type: ignore[operator]
                "formula_cdm": None, "reading_order_edit": self.categories["reading_order"].metrics.get("edit"),
                "overall": None, "note": CDM_NOTE}

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "protocol": "omnidocbench-pages", "pages": len(self.pages),
                "pages_without_prediction": self.missing, "overall": self.overall(),
                "categories": {name: {"samples": c.samples, "metrics": c.metrics} for name, c in self.categories.items()},
                "per_page": {page: {f"{name}.{metric}": value for name, c in self.categories.items()
                                    for metric, value in c.per_page.get(page, {}).items()} for page in self.pages}}


def compared(entry: dict[str, Any]) -> tuple[Any, Any]:
    """(prediction, ground truth) as scored: normalised, raw where the normalised one is empty."""
    return (entry["norm_pred"] if entry.get("norm_pred") else entry["pred"],
            entry["norm_gt"] if entry.get("norm_gt") else entry["gt"])


def image_name(img_id: str) -> str:
    return img_id if img_id.endswith((".jpg", ".png")) else "_".join(img_id.split("_")[:-1])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def edit_scores(samples: list[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(edit, edit_whole, edit_sample_avg), and each page's sum of edits over its sum of lengths."""
    edits: dict[str, list[tuple[int, int]]] = {}
    ratios: list[float] = []
    for sample in samples:
        pred, gt = compared(sample)
        longest = max(len(pred), len(gt))
        distance = Levenshtein.distance(pred, gt) if longest else 0  # two empty sides: no edit, length 0
        edits.setdefault(image_name(str(sample["img_id"])), []).append((distance, longest))
        if longest:
            ratios.append(distance / longest)
    per_page: dict[str, float | None] = {}
    for page, pairs in edits.items():
        length = sum(p[1] for p in pairs)
        per_page[page] = sum(p[0] for p in pairs) / length if length else None
    total = sum(p[1] for pairs in edits.values() for p in pairs)
    whole = sum(p[0] for pairs in edits.values() for p in pairs) / total if total else None
    return ({"edit": _mean([v for v in per_page.values() if v is not None]), "edit_whole": whole,
             "edit_sample_avg": _mean(ratios)}, per_page)


def teds_scores(tables: list[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, dict[str, float | None]]]:
    by_page: dict[str, dict[str, list[float]]] = {}
    values: dict[str, list[float]] = {"teds": [], "teds_s": []}
    for table in tables:
        pred, gt = compared(table)
        page = by_page.setdefault(image_name(str(table["img_id"])), {"teds": [], "teds_s": []})
        for name, structure_only in (("teds", False), ("teds_s", True)):
            value = teds(pred, gt, structure_only=structure_only)
            values[name].append(value)
            page[name].append(value)
    per_page = {name: {page: _mean(v[name]) for page, v in by_page.items()} for name in values}
    return {name: _mean(v) for name, v in values.items()}, per_page


def score_matched(matched: Matched, source: str) -> PageScores:
    scores = PageScores(source=source, pages=matched.pages, missing=matched.missing)
    for name in CATEGORIES:
        samples = getattr(matched, name)
        metrics, per_page_edit = edit_scores(samples)
        per_page: dict[str, dict[str, float | None]] = {page: {"edit": value} for page, value in per_page_edit.items()}
        if name == "table":
            table_metrics, table_pages = teds_scores(samples)
            metrics = {**table_metrics, **metrics}
            for metric, pages in table_pages.items():
                for page, value in pages.items():
                    per_page.setdefault(page, {})[metric] = value
        scores.categories[name] = CategoryScore(samples=len(samples), metrics=metrics, per_page=per_page)
    return scores


def score_pages(gt_path: Path, pred_dir: Path) -> PageScores:
    """`eval score --protocol omnidocbench --pages GT.json PRED_DIR`."""
    if not Path(pred_dir).is_dir():
        raise DataError(f"{pred_dir}: not a folder; --pages scores a folder of one Markdown file per page "
                        "(PAGE.md for the ground truth's PAGE.jpg)")
    return score_matched(match_all(gt_path, pred_dir), source=str(pred_dir))


def _value(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_page_scores(scores: PageScores) -> str:
    """The categories as a table, then the leaderboard's columns (TEDS in percent, as it prints them)."""
    from glmocr_lf.evaluation.score import render_table

    columns = ("edit", "edit_whole", "edit_sample_avg", "teds", "teds_s")
    rows = [["category", "n", *columns]]
    for name, category in scores.categories.items():
        rows.append([name, str(category.samples), *(_value(category.metrics.get(c)) for c in columns)])
    overall = scores.overall()
    line = (f"leaderboard form: text edit {_value(overall['text_edit'])} | table TEDS "
            f"{_value(overall['table_teds'], 2)} | table TEDS-S {_value(overall['table_teds_s'], 2)} | "
            f"reading order edit {_value(overall['reading_order_edit'])} | formula CDM - | overall -")
    pages = f"{len(scores.pages)} pages scored"
    if scores.missing:
        pages += f"; {len(scores.missing)} without a Markdown file, left out as OmniDocBench does"
    return render_table(rows) + "\n" + line + "\n" + pages + "\n" + CDM_NOTE + "\n"


# --------------------------------------------------------------------------------------------------
# Two page_scores.json side by side (`eval compare A/page_scores.json B/page_scores.json`)

PAGE_SCORES_PROTOCOL = "omnidocbench-pages"
HIGHER_IS_BETTER = ("teds", "teds_s")
CHANGE = 0.005  # a move this large in a metric is called out


def read_page_scores(path: Path) -> dict[str, Any] | None:
    """A page_scores.json (`eval run --pages`, `eval score --pages --json`), or None for another file."""
    import json

    if Path(path).suffix != ".json" or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("protocol") == PAGE_SCORES_PROTOCOL else None


def compare_page_scores(a: dict[str, Any], b: dict[str, Any], source_a: str, source_b: str) -> str:
    """Markdown: every category's metrics of A and B, B - A, and which moved the wrong way."""
    from glmocr_lf.evaluation.score import render_table

    rows = [["category", "metric", "A", "B", "B - A", ""]]
    worse = []
    for name in CATEGORIES:
        metrics_a = a["categories"].get(name, {}).get("metrics", {})
        metrics_b = b["categories"].get(name, {}).get("metrics", {})
        for metric in dict.fromkeys([*metrics_a, *metrics_b]):
            value_a, value_b = metrics_a.get(metric), metrics_b.get(metric)
            delta = None if value_a is None or value_b is None else value_b - value_a
            flag = ""
            if delta is not None and abs(delta) >= CHANGE:
                flag = "better" if (delta > 0) == (metric in HIGHER_IS_BETTER) else "worse"
                if flag == "worse" and metric in ("edit", "teds"):
                    worse.append(f"{name} {metric}")
            rows.append([name, metric, _value(value_a), _value(value_b),
                         "-" if delta is None else f"{delta:+.4f}", flag])
    layouts = f" ({a.get('layout', 'pages')} / {b.get('layout', 'pages')})" if "layout" in a or "layout" in b else ""
    verdict = ("**B is worse on " + ", ".join(worse) + "**" if worse
               else "**No category is worse in B by " + f"{CHANGE} or more**")
    return (f"# OmniDocBench pages: A = {source_a}, B = {source_b}{layouts}\n\n{verdict}\n\n```text\n"
            + render_table(rows) + "```\n\n" + CDM_NOTE + "\n")
