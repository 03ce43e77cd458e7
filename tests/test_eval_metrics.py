"""OCR metrics against hand-computed values."""

from __future__ import annotations

import pytest
from helpers import EVAL_SKIP_REASON

pytest.importorskip("rapidfuzz", reason=EVAL_SKIP_REASON)
pytest.importorskip("apted", reason=EVAL_SKIP_REASON)

from glmocr_lf.evaluation import metrics as m

TABLE = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>apple</td><td>3</td></tr></table>"
# one cell changed: "3" -> "4"
TABLE_ONE_CELL = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>apple</td><td>4</td></tr></table>"


def test_identical_strings() -> None:
    assert m.normalized_edit_distance("Hello world", "Hello world") == 0.0
    assert m.character_error_rate("Hello world", "Hello world") == 0.0
    assert m.exact_match("Hello world", "Hello world") == 1.0


def test_one_substitution_by_hand() -> None:
    # "kitten" vs "sitten": one substitution; max length 6, reference length 6
    assert m.normalized_edit_distance("sitten", "kitten") == pytest.approx(1 / 6)
    assert m.character_error_rate("sitten", "kitten") == pytest.approx(1 / 6)
    assert m.exact_match("sitten", "kitten") == 0.0


def test_ned_uses_max_length_and_cer_the_reference_length() -> None:
    # "kitten" -> "sitting": 3 edits (k->s, e->i, +g); max length 7, reference length 6
    assert m.normalized_edit_distance("sitting", "kitten") == pytest.approx(3 / 7)
    assert m.character_error_rate("sitting", "kitten") == pytest.approx(3 / 6)


def test_empty_strings() -> None:
    assert m.normalized_edit_distance("", "") == 0.0
    assert m.normalized_edit_distance("", "abc") == 1.0
    assert m.character_error_rate("", "abc") == 1.0
    assert m.character_error_rate("", "") == 0.0
    assert m.character_error_rate("x", "") == 1.0
    assert m.exact_match("", "abc") == 0.0


def test_identical_tables_score_teds_1() -> None:
    assert m.teds(TABLE, TABLE) == 1.0
    assert m.teds(TABLE, TABLE, structure_only=True) == 1.0


def test_one_changed_cell_lowers_teds_but_not_teds_s() -> None:
    # nodes under <table>: 2 tr + 4 td = 6; renaming cell "3" -> "4" costs NED 1.0
    assert m.teds(TABLE_ONE_CELL, TABLE) == pytest.approx(1 - 1 / 6)
    assert 0.0 < m.teds(TABLE_ONE_CELL, TABLE) < 1.0
    assert m.teds(TABLE_ONE_CELL, TABLE, structure_only=True) == 1.0


def test_a_missing_row_lowers_teds_s() -> None:
    one_row = "<table><tr><td>Name</td><td>Qty</td></tr></table>"
    # deleting one tr and its two td: 3 of 6 nodes
    assert m.teds(one_row, TABLE, structure_only=True) == pytest.approx(0.5)


def test_spans_and_header_cells_are_structure() -> None:
    spanned = "<table><tr><td colspan=\"2\">Name</td></tr><tr><td>apple</td><td>3</td></tr></table>"
    assert m.teds(spanned, TABLE, structure_only=True) < 1.0
    header = TABLE.replace("<td>Name</td><td>Qty</td>", "<th>Name</th><th>Qty</th>")
    assert m.teds(header, TABLE, structure_only=True) == pytest.approx(1 - 2 / 6)


def test_cell_markup_counts_in_content() -> None:
    bold = TABLE.replace("<td>apple</td>", "<td><b>apple</b></td>")
    assert 0.0 < m.teds(bold, TABLE) < 1.0
    assert m.teds(bold, TABLE, structure_only=True) == 1.0


NESTED = "<table><tr><td>a<table><tr><td>x</td>{tail}</tr></table></td><td>b</td></tr></table>"


def test_the_text_after_a_nested_cell_is_not_content() -> None:
    # PubTabNet's tokenize keeps no cell's tail, nested cells included; "y" after the inner cell
    # is not part of any cell's tokens, so the two tables are the same table
    assert m.teds(NESTED.format(tail="y"), NESTED.format(tail="")) == 1.0
    # the tail of markup inside a cell is content
    assert m.teds(TABLE.replace("apple", "<b>ap</b>ple"), TABLE.replace("apple", "<b>ap</b>")) < 1.0


@pytest.mark.parametrize("prediction", [
    "", "   ", "no table here", "<table><tr><td>Name<td", "<<<>>>", "</table>", "<table",
    "<table><tr><td colspan='x'>a</td></tr></table>", "\x00<table>",
])
def test_malformed_or_empty_predictions_do_not_crash(prediction: str) -> None:
    value = m.teds(prediction, TABLE)
    assert 0.0 <= value <= 1.0
    assert 0.0 <= m.teds(prediction, TABLE, structure_only=True) <= 1.0
    assert 0.0 <= m.normalized_edit_distance(prediction, TABLE) <= 1.0


def test_unclosed_table_is_repaired_and_partly_right() -> None:
    truncated = TABLE[: TABLE.index("<td>3")]  # generation cut off mid-table
    assert 0.0 < m.teds(truncated, TABLE) < 1.0


def test_no_table_scores_0() -> None:
    assert m.teds("plain text", TABLE) == 0.0
    assert m.teds("", "") == 0.0


def test_latex_normalisation() -> None:
    assert m.normalize_latex(r"$$ x^{2} + \dfrac{a}{b} $$") == r"x^2+\frac{a}{b}"
    assert m.normalize_latex(r"\[ \left( \alpha b \right) \, \]") == r"(\alpha b)"
    assert m.latex_edit_distance(r"\( x^{2} \)", r"x^2") == 0.0
    assert m.latex_exact_match(r"x ^ { 2 }", r"$x^2$") == 1.0
    # "x^2+1" vs "x^3+1": one substitution in five characters
    assert m.latex_edit_distance(r"x^{3} + 1", r"x^2+1") == pytest.approx(1 / 5)


def test_looks_like_latex() -> None:
    assert m.looks_like_latex(r"$$E = mc^2$$")
    assert m.looks_like_latex(r"\begin{aligned} a &= b \end{aligned}")
    assert not m.looks_like_latex("costs $5 and $6 more")  # ends without a delimiter pair
    assert not m.looks_like_latex("$")


def test_json_answers() -> None:
    reference = '{"name": "Acme", "total": 12.5, "items": ["a", "b"]}'
    assert m.json_valid(reference) == 1.0
    assert m.json_valid("```json\n" + reference + "\n```") == 1.0
    assert m.json_valid('{"name": ') == 0.0
    assert m.json_field_f1(reference, reference) == 1.0
    # fields: name, total, items[]=a, items[]=b -> 3 of 4 right on both sides
    assert m.json_field_f1('{"name": "Acme", "total": 12.5, "items": ["b", "c"]}',
                           reference) == pytest.approx(0.75)
    assert m.json_field_f1("not json", reference) == 0.0
    assert m.json_field_f1("{}", "{}") == 1.0


def test_repetition() -> None:
    loop = "The total is 5. " + "and so on " * 10
    assert m.repeated_tail(loop) == " " + "and so on " * 10  # the loop starts one space earlier
    assert m.is_repetitive(loop, "The total is 5.") == 1.0
    assert m.is_repetitive("Chapter 1" + "." * 60 + "3", "Chapter 1" + "." * 60 + "3") == 0.0
    # the reference's own leader dots are not a loop
    assert m.is_repetitive("Intro" + "." * 50, "Intro" + "." * 50 + " 1") == 0.0
    assert m.is_repetitive("short text", "short text") == 0.0
    assert m.is_repetitive("", "") == 0.0


def test_empty_script_keeps_its_braces_and_null_delimiters_vanish() -> None:
    # the "}" after an empty script closes the \frac argument, it is not the script's
    assert m.normalize_latex(r"\frac{x^{}}{2}") == r"\frac{x^{}}{2}"
    assert m.normalize_latex(r"x_{}^{2}") == r"x_{}^2"
    assert m.normalize_latex(r"\left. \frac{a}{b} \right|_{0}") == r"\frac{a}{b}|_0"
    assert m.normalize_latex(r"\left( x \right.") == r"(x"
    assert m.normalize_latex(r"a . b") == r"a.b"  # a plain full stop stays
