"""`eval score --protocol omnidocbench`: OmniDocBench's normalisations and aggregation, so numbers
can sit beside published OmniDocBench (v1.x) element scores.

Per sample, by task (the prompt decides, as in our protocol):
- text: inline `$...$` / `\\(...\\)` LaTeX to Unicode (pylatexenc), then keep word characters and
  CJK only (`textblock2unicode` + `clean_string`); edit distance / max length;
- formula: OmniDocBench's `normalized_formula` (delimiters, `\\tag`, environments, font and spacing
  commands dropped, lower case); edit distance / max length (CDM, which renders LaTeX, is not run);
- table: `normalized_html_table` (th -> td, thead/tbody/span/sup/sub/div/p dropped, NFKC, HTML
  entities unescaped, style/width/... attributes dropped), then TEDS and TEDS-S, unclamped as in
  its code, and the edit distance of the normalised HTML.

Where a normalised string comes out empty, the raw one is compared, as the file holds it, surrounding
whitespace included (their `calc_section_edit_dist`).
Aggregates, as their `call_Edit_dist`: `edit` is the mean of the per-sample ratios
(`edit_sample_avg`; a sample with both sides empty has none), `edit_total` the sum of edits over
the sum of max lengths (`edit_whole`). Matching regions of a whole page to a prediction is not done:
each sample here is one region.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from glmocr_lf.runtime.errors import EVAL_EXTRA_HINT, MissingDependencyError

try:
    from rapidfuzz.distance import Levenshtein
except ImportError:  # the light install: one line, not a traceback
    raise MissingDependencyError("rapidfuzz", "score OCR output", hint=EVAL_EXTRA_HINT) from None

from glmocr_lf.evaluation import metrics as m
from glmocr_lf.evaluation.predictions import Prediction
from glmocr_lf.evaluation.scoretypes import METRICS, SampleScore, TaskScore, sample_kind

INLINE_MATH = re.compile(r"\$(.*?)\$|\\\((.*?)\\\)")
_ESCAPED = re.compile(r"\\([\\_&%^])")
_NOT_WORD_OR_CJK = re.compile(r"[^\w\u4e00-\u9fff]")
_DISPLAY_MATH = re.compile(r"\\\[(.+?)(?<!\\)\\\]")
_FORMULA_DROPPED_PATTERNS = tuple(re.compile(p) for p in (
    r"\\tag\{.*?\}", r"\\hspace\{.*?\}", r"\\begin\{.*?\}", r"\\end\{.*?\}", r"\\arraycolsep.*?\}"))
# removed as plain substrings, in this order (so `\left` also goes from `\leftarrow`, as theirs does)
_FORMULA_DROPPED = (
    "\\mathbf", "\\mathrm", "\\mathnormal", "\\mathit", "\\mathbb", "\\mathcal", "\\mathscr", "\\mathfrak",
    "\\mathsf", "\\mathtt", "\\textbf", "\\text", "\\boldmath", "\\boldsymbol", "\\operatorname", "\\bm",
    "\\symbfit", "\\mathbfcal", "\\symbf", "\\scriptscriptstyle", "\\notag", "\\setlength", "\\coloneqq",
    "\\space", "\\thickspace", "\\thinspace", "\\medspace", "\\nobreakspace", "\\negmedspace", "\\quad",
    "\\qquad", "\\enspace", "\\substackw", " ", "$$", "\\left", "\\right", "\\displaystyle", "\\text",
)
_TABLE_ATTRIBUTES = tuple(re.compile(f'( {name}=".*?")') for name in ("style", "height", "width", "align", "class"))
_TABLE_TAGS_DROPPED = ("<sup>", "</sup>", "<sub>", "</sub>", "<span>", "</span>", "<div>", "</div>", "<p>", "</p>",
                       '<spandata-span-identity="">')
TABLE_WRAPPER = '<html><body><table border="1" >{}</table></body></html>'


def normalize_text(text: str) -> str:
    """Inline LaTeX to Unicode, then word characters and CJK only."""
    text = inline_latex_to_unicode(text)
    for escape in ("\\t", "\\n", "\t", "\n", "/t", "/n"):
        text = text.replace(escape, "")
    return _NOT_WORD_OR_CJK.sub("", text)


def inline_latex_to_unicode(text: str) -> str:
    """Each `$...$` / `\\(...\\)` holding a backslash, `^` or `_` becomes pylatexenc's Unicode text."""
    from pylatexenc.latex2text import LatexNodes2Text

    replaced: list[tuple[int, int, str]] = []
    for match in INLINE_MATH.finditer(text):
        content = match.group(1) if match.group(1) is not None else match.group(2)
        # as theirs: an escape (`\\_`, `\\%`...) goes with the escaped character
        clean = _ESCAPED.sub("", content)
        if not any(char in clean for char in "\\^_"):
            continue
        if clean.endswith("\\"):
            clean += " "
        try:
            unicode = LatexNodes2Text().latex_to_text(clean)
        except Exception:  # pylatexenc raises several types on broken LaTeX; theirs keeps the source
            continue
        replaced.append((match.start(), match.end(), unicode))
    for start, end, unicode in reversed(replaced):
        text = text[:start] + unicode.strip() + text[end:]
    return text


def normalize_formula(text: str) -> str:
    text = text.strip().strip("$").strip("\n")
    display = _DISPLAY_MATH.search(text)
    if display:
        text = display.group(1).strip()
    for pattern in _FORMULA_DROPPED_PATTERNS:
        text = pattern.sub("", text)
    text = text.strip(".")
    for dropped in _FORMULA_DROPPED:
        text = text.replace(dropped, "")
    return text.lower()


def normalize_table(text: str) -> str:
    """OmniDocBench's HTML table form, or "" when there is no `<table`."""
    if "<table" not in text.replace(" ", "").replace("'", '"'):
        return ""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for cell in soup.find_all("th"):
        cell.name = "td"
    for tag in soup.find_all("thead"):
        tag.unwrap()
    for math in soup.find_all("math"):
        math.replace_with(f"${math.get('alttext', '')}$")
    for tag in soup.find_all("span"):
        tag.unwrap()
    table = unicodedata.normalize("NFKC", html.unescape(str(soup)).replace("\n", "")).strip()
    table = "".join(re.findall(r"<table\b[^>]*>(.*)</table>", table, re.DOTALL | re.IGNORECASE))
    for attribute in _TABLE_ATTRIBUTES:
        table = attribute.sub("", table)
    table = re.sub(r"\s+", " ", re.sub("</?tbody>", "", table))
    table = TABLE_WRAPPER.format(table)
    for tag in _TABLE_TAGS_DROPPED:
        table = table.replace(tag, "")
    return re.sub("<colgroup>.*?</colgroup>", "", table)


def edit(prediction: str, reference: str) -> tuple[int, int]:
    """(edit distance, max length), as their `calc_section_edit_dist`: one side empty costs its length."""
    longest = max(len(prediction), len(reference))
    if longest == 0:
        return 0, 0
    if not prediction or not reference:
        return longest, longest
    return Levenshtein.distance(prediction, reference), longest


def teds(prediction: str, reference: str, *, structure_only: bool = False) -> float:
    """Their TEDS: 1 - distance / nodes, not clamped; 0 without a table under <body> on either side,
    and 0 where a colspan / rowspan is not an integer to Python's int() (`"x"`, `""`, `"2.0"`: their
    TEDS raises there and `call_TEDS` scores the table 0)."""
    pred_table, ref_table = _body_table(prediction), _body_table(reference)
    if pred_table is None or ref_table is None:
        return 0.0
    try:
        distance, n_nodes = m.table_tree_distance(pred_table, ref_table, structure_only=structure_only,
                                                  strict_spans=True)
    except ValueError:
        return 0.0
    return 1.0 - distance / n_nodes if n_nodes else 0.0  # theirs divides by zero, caught as 0


def _body_table(markup: str) -> Any | None:
    if not markup:
        return None
    from lxml import etree
    from lxml import html as lxml_html

    try:
        parser = lxml_html.HTMLParser(remove_comments=True, encoding="utf-8")
        root = lxml_html.fromstring(markup.encode(), parser=parser)
    except (etree.ParserError, ValueError):
        return None
    tables = root.xpath("body/table")
    return tables[0] if tables else None


def score_sample(prediction: Prediction) -> SampleScore:
    pred, ref = prediction.prediction, prediction.reference
    kind = sample_kind(prediction)
    values: dict[str, float] = {}
    if kind == "table":
        norm_pred, norm_ref = normalize_table(pred) or pred, normalize_table(ref) or ref
        values["teds"] = teds(norm_pred, norm_ref)
        values["teds_s"] = teds(norm_pred, norm_ref, structure_only=True)
    elif kind == "formula":
        norm_pred, norm_ref = normalize_formula(pred) or pred, normalize_formula(ref) or ref
    else:
        kind = "text"  # JSON answers are text to OmniDocBench
        norm_pred, norm_ref = normalize_text(pred) or pred, normalize_text(ref) or ref
    edits, length = edit(norm_pred, norm_ref)
    if length:  # two empty strings have no ratio; their `edit_sample_avg` leaves them out
        values["edit"] = edits / length
    values["quality"] = values["teds"] if kind == "table" else 1.0 - values.get("edit", 0.0)
    ordered = {metric.name: values[metric.name] for metric in METRICS if metric.name in values}
    # the totals' parts travel with the sample (not metrics of their own)
    ordered.update(edit_len=float(edits), max_len=float(length))
    return SampleScore(id=prediction.id, task=prediction.task, kind=kind, metrics=ordered)


def summarize(task: str, samples: Sequence[SampleScore]) -> TaskScore:
    """Means over samples, and `edit_total` = sum of edits / sum of max lengths."""
    values: dict[str, float] = {}
    for metric in METRICS:
        if metric.name == "edit_total":
            length = sum(s.metrics["max_len"] for s in samples)
            values["edit_total"] = sum(s.metrics["edit_len"] for s in samples) / length if length else 0.0
            continue
        found = [s.metrics[metric.name] for s in samples if metric.name in s.metrics]
        if found:
            values[metric.name] = sum(found) / len(found)
    return TaskScore(task=task, samples=len(samples), metrics=values)
