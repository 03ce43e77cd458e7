"""OCR metrics, as GLM-OCR's authors measure quality: normalized edit distance for text, TEDS for
tables and CDM for formulas (OmniDocBench v1.5's overall is their mean, as the maintainers explain
in zai-org/GLM-OCR#47); normalized-LaTeX edit distance stands in for CDM, which needs a LaTeX toolchain.

Every function takes (prediction, reference) strings and never raises on odd input: empty strings,
malformed HTML and invalid JSON all get a defined score. Edit distances come from rapidfuzz; TEDS is
the PubTabNet definition (apted tree edit distance over lxml-parsed tables).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from glmocr_lf.runtime.errors import EVAL_EXTRA_HINT, MissingDependencyError

try:
    from rapidfuzz.distance import Levenshtein
except ImportError:  # the light install: one line, not a traceback
    raise MissingDependencyError("rapidfuzz", "score OCR output", hint=EVAL_EXTRA_HINT) from None

# --------------------------------------------------------------------------------------------------
# Text


def normalized_edit_distance(prediction: str, reference: str) -> float:
    """Levenshtein distance / max(len) (OmniDocBench's text metric): 0 = identical, 1 = nothing shared."""
    return float(Levenshtein.normalized_distance(prediction, reference))


def character_error_rate(prediction: str, reference: str) -> float:
    """Levenshtein distance / len(reference); unbounded above. An empty reference scores 0 or 1."""
    if not reference:
        return 0.0 if not prediction else 1.0
    return Levenshtein.distance(prediction, reference) / len(reference)


def exact_match(prediction: str, reference: str) -> float:
    return 1.0 if prediction == reference else 0.0


# --------------------------------------------------------------------------------------------------
# Tables: TEDS (Zhong et al. 2020, PubTabNet's `metric.py`; OmniDocBench uses the same code)

CELL_TAGS = frozenset({"td", "th"})


@dataclass
class _TableNode:
    tag: str
    colspan: int = 1
    rowspan: int = 1
    content: list[str] = field(default_factory=list)
    children: list[_TableNode] = field(default_factory=list)


def _cell_tokens(node: Any) -> list[str]:
    """A cell's content as PubTabNet tokenises it: characters, plus `<tag>`/`</tag>` for markup.

    As PubTabNet's `tokenize` (and OmniDocBench's copy of it): the text after a cell is not the
    cell's, for every cell, so also for the cells of a table nested in this one."""
    tokens: list[str] = []

    def walk(element: Any) -> None:
        tokens.append(f"<{element.tag}>")
        if element.text:
            tokens.extend(element.text)
        for child in element:
            walk(child)
        tokens.append(f"</{element.tag}>")
        if element.tag not in CELL_TAGS and element.tail:
            tokens.extend(element.tail)

    walk(node)
    return tokens[1:-1]


def _span(node: Any, name: str, strict: bool) -> int:
    """A cell's colspan / rowspan; one Python's int() cannot read counts as 1, or raises ValueError
    when `strict` (OmniDocBench's TEDS raises there, and scores the table 0)."""
    try:
        return int(node.attrib.get(name, "1"))
    except ValueError:
        if strict:
            raise
        return 1


def _build_tree(node: Any, structure_only: bool, strict_spans: bool = False) -> _TableNode:
    if node.tag in CELL_TAGS:
        content = [] if structure_only else _cell_tokens(node)
        return _TableNode(node.tag, _span(node, "colspan", strict_spans), _span(node, "rowspan", strict_spans),
                          content)
    tree = _TableNode(node.tag)
    tree.children = [_build_tree(child, structure_only, strict_spans) for child in node
                     if isinstance(child.tag, str)]  # skip comments / processing instructions
    return tree


def _parse_table(markup: str) -> Any | None:
    """The first `<table>` element in `markup`, or None when there is none or it cannot be parsed."""
    if "<table" not in markup.lower():
        return None
    from lxml import etree, html

    try:
        parser = html.HTMLParser(remove_comments=True, encoding="utf-8")
        document = html.document_fromstring(f"<html><body>{markup}</body></html>".encode(),
                                            parser=parser)
    except (etree.ParserError, ValueError):
        return None
    tables = document.xpath("//table")
    return tables[0] if tables else None


def _apted_config() -> Any:
    from apted import Config

    class TedsConfig(Config):  # type: ignore[misc]
        def __init__(self) -> None:
            # APTED asks for the same pair many times (~6x on a 20x10 table): keep each answer
            self._costs: dict[tuple[int, int], float] = {}

        def rename(self, node1: _TableNode, node2: _TableNode) -> float:
            key = (id(node1), id(node2))
            cost = self._costs.get(key)
            if cost is None:
                cost = self._costs[key] = _rename_cost(node1, node2)
            return cost

        def children(self, node: _TableNode) -> list[_TableNode]:
            return node.children

    return TedsConfig()


def _rename_cost(node1: _TableNode, node2: _TableNode) -> float:
    if (node1.tag, node1.colspan, node1.rowspan) != (node2.tag, node2.colspan, node2.rowspan):
        return 1.0
    if node1.tag in CELL_TAGS and (node1.content or node2.content):
        return _sequence_ned(node1.content, node2.content)
    return 0.0


def _shape(node: _TableNode) -> tuple[Any, ...]:
    """Everything rename compares, for the whole tree: equal shapes are at distance 0."""
    return (node.tag, node.colspan, node.rowspan, tuple(node.content), tuple(_shape(c) for c in node.children))


def _sequence_ned(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    longest = max(len(a), len(b))
    return Levenshtein.distance(a, b) / longest if longest else 0.0


def teds(prediction: str, reference: str, *, structure_only: bool = False) -> float:
    """Tree-edit-distance similarity of two HTML tables: 1 - TED / max(nodes), in [0, 1].

    Renaming a cell costs 1 if tag, colspan or rowspan differ, else the normalised edit distance of
    the cell contents (0 with `structure_only`, i.e. TEDS-S). No table in either string scores 0.
    """
    pred_table, ref_table = _parse_table(prediction), _parse_table(reference)
    if pred_table is None or ref_table is None:
        return 0.0
    distance, n_nodes = table_tree_distance(pred_table, ref_table, structure_only=structure_only)
    if n_nodes == 0:  # two empty <table></table>
        return 1.0 if distance == 0 else 0.0
    return max(0.0, 1.0 - distance / n_nodes)


def table_tree_distance(pred_table: Any, ref_table: Any, *, structure_only: bool = False,
                        strict_spans: bool = False) -> tuple[float, int]:
    """(tree edit distance, the larger node count) of two lxml `<table>` elements, as TEDS counts them.

    With `strict_spans`, a span int() cannot read raises ValueError instead of counting as 1."""
    from apted import APTED

    n_nodes = max(len(pred_table.xpath(".//*")), len(ref_table.xpath(".//*")))
    pred_tree = _build_tree(pred_table, structure_only, strict_spans)
    ref_tree = _build_tree(ref_table, structure_only, strict_spans)
    if _shape(pred_tree) == _shape(ref_tree):  # the common TEDS-S case; APTED would also say 0
        return 0.0, n_nodes
    return float(APTED(pred_tree, ref_tree, _apted_config()).compute_edit_distance()), n_nodes


def is_table(reference: str) -> bool:
    return "<table" in reference.lower()


# --------------------------------------------------------------------------------------------------
# Formulas: edit distance on normalised LaTeX (the practical stand-in for CDM)

_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_LATEX_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|\s+|.", re.DOTALL)
# Spacing and sizing commands that change layout, not content.
_LATEX_DROPPED = frozenset({
    "\\,", "\\;", "\\:", "\\!", "\\ ", "~", "\\quad", "\\qquad", "\\displaystyle", "\\textstyle",
    "\\scriptstyle", "\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr",
    "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\Biggl", "\\Biggr", "\\limits", "\\nolimits",
})
_NULL_DELIMITER_OWNERS = frozenset({"\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr",
                                    "\\biggl", "\\biggr", "\\Biggl", "\\Biggr"})
_LATEX_ALIASES = {"\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\le": "\\leq", "\\ge": "\\geq",
                  "\\neq": "\\ne", "\\to": "\\rightarrow", "\\gets": "\\leftarrow"}


def strip_math_delimiters(latex: str) -> str:
    text = latex.strip()
    for left, right in _MATH_DELIMITERS:
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left):len(text) - len(right)].strip()
    return text


def looks_like_latex(reference: str) -> bool:
    """A reference wrapped in math delimiters or opening a LaTeX environment."""
    text = reference.strip()
    if text.startswith("\\begin{"):
        return True
    return any(len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right)
               for left, right in _MATH_DELIMITERS)


def normalize_latex(latex: str) -> str:
    """Canonical LaTeX for comparison: no math delimiters, whitespace, spacing/sizing commands;
    aliases unified (`\\dfrac` -> `\\frac`); single-token scripts unbraced (`x^{2}` -> `x^2`)."""
    tokens = [_LATEX_ALIASES.get(t, t) for t in _LATEX_TOKEN.findall(strip_math_delimiters(latex))]
    tokens = [t for t in tokens if not t.isspace()]
    # `\left.` / `\right.` is the null delimiter: the "." goes with the sizing command
    tokens = [t for i, t in enumerate(tokens)
              if not (t == "." and i and tokens[i - 1] in _NULL_DELIMITER_OWNERS)]
    tokens = [t for t in tokens if t not in _LATEX_DROPPED]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        # unbrace a one-token script only: in `x^{}` the next "}" closes something else
        if (token in ("^", "_") and tokens[i + 1:i + 4:2] == ["{", "}"]
                and tokens[i + 2] not in ("{", "}")):
            out += [token, tokens[i + 2]]
            i += 4
            continue
        # keep a control word apart from a following letter (`\alpha b`, not `\alphab`)
        if out and re.fullmatch(r"\\[a-zA-Z]+", out[-1]) and token[0].isalpha():
            out.append(" ")
        out.append(token)
        i += 1
    return "".join(out)


def latex_edit_distance(prediction: str, reference: str) -> float:
    return normalized_edit_distance(normalize_latex(prediction), normalize_latex(reference))


def latex_exact_match(prediction: str, reference: str) -> float:
    return exact_match(normalize_latex(prediction), normalize_latex(reference))


# --------------------------------------------------------------------------------------------------
# JSON answers (information extraction)

_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_json_answer(text: str) -> tuple[bool, Any]:
    """(True, value) if `text` (optionally inside a ```json fence) is a JSON object or array."""
    stripped = text.strip()
    fenced = _CODE_FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    if not stripped or stripped[0] not in "[{":
        return False, None
    try:
        return True, json.loads(stripped)
    except ValueError:
        return False, None


def is_json_answer(reference: str) -> bool:
    return parse_json_answer(reference)[0]


def json_fields(value: Any, path: str = "") -> Counter[tuple[str, str]]:
    """Leaf (path, value) pairs; list positions are not part of the path, so order does not matter."""
    fields: Counter[tuple[str, str]] = Counter()
    if isinstance(value, dict):
        for key, item in value.items():
            fields += json_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            fields += json_fields(item, f"{path}[]")
    else:
        text = value.strip() if isinstance(value, str) else json.dumps(value)
        fields[(path, text)] += 1
    return fields


def json_field_f1(prediction: str, reference: str) -> float:
    """F1 over leaf (path, value) pairs; invalid predicted JSON scores 0; two empty answers score 1."""
    ref_ok, ref_value = parse_json_answer(reference)
    pred_ok, pred_value = parse_json_answer(prediction)
    if not (ref_ok and pred_ok):
        return 0.0
    pred_fields, ref_fields = json_fields(pred_value), json_fields(ref_value)
    total = sum(pred_fields.values()) + sum(ref_fields.values())
    if total == 0:
        return 1.0
    return 2 * sum((pred_fields & ref_fields).values()) / total


def json_valid(prediction: str) -> float:
    return 1.0 if parse_json_answer(prediction)[0] else 0.0


# --------------------------------------------------------------------------------------------------
# Repetition (answers that degenerate into loops)

REPETITION_MIN_CHARS = 40
REPETITION_MIN_REPEATS = 3
REPETITION_MAX_UNIT = 200


def repeated_tail(text: str, *, min_chars: int = REPETITION_MIN_CHARS,
                  min_repeats: int = REPETITION_MIN_REPEATS,
                  max_unit: int = REPETITION_MAX_UNIT) -> str:
    """The looping tail of `text` (a unit repeated >= min_repeats times over >= min_chars), or ''."""
    n = len(text)
    for unit in range(1, min(max_unit, n // min_repeats) + 1):
        run = 0
        while run < n - unit and text[n - 1 - run] == text[n - 1 - run - unit]:
            run += 1
        span = run + unit
        if span >= min_chars and span // unit >= min_repeats:
            return text[n - span:]
    return ""


def is_repetitive(prediction: str, reference: str) -> float:
    """1.0 when the prediction ends in a loop that the reference does not contain (leader dots
    or rows that really repeat in the reference are not loops)."""
    tail = repeated_tail(prediction)
    return 1.0 if tail and tail not in reference else 0.0
