"""A page's Markdown from its regions' answers, the way GLM-OCR's SDK writes pages
(glmocr/postprocess/result_formatter.py, zai-org/GLM-OCR at cef4d0e; labels from its config.yaml):
regions in reading order; tables kept as the HTML the model wrote; formulas as display math
(`$$\\n...\\n$$`, a formula number beside one merged in as `\\tag{n}`); titles as `## `; text
cleaned (literal `\\t` at the ends, runs of dots and underscores cut to three, inline `$ x $` to
`$x$`, single newlines doubled); empty answers left out; blocks joined with a blank line.
Not reproduced: its joining of a word hyphenated across two text blocks and its bullet-list
reflow across blocks, both of which need the neighbouring blocks' layout.

OmniDocBench's categories are read as GLM-OCR's layout labels: headers, footers, page numbers and
page footnotes are what its layout step abandons (never recognised), figures are images (no text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# OmniDocBench category -> GLM-OCR layout label
GLM_LABELS = {
    "text_block": "text", "title": "paragraph_title", "equation_isolated": "display_formula", "table": "table",
    "figure": "image", "figure_caption": "figure_title", "table_caption": "figure_title",
    "code_txt_caption": "figure_title", "code_algorithm_caption": "figure_title",
    "figure_footnote": "vision_footnote", "table_footnote": "vision_footnote", "reference": "reference_content",
    "code_txt": "algorithm", "code_algorithm": "algorithm", "equation_caption": "formula_number",
    "header": "header", "footer": "footer", "page_number": "number", "page_footnote": "footnote",
    "abandon": "abandon",
}
# GLM-OCR's label_task_mapping: what each label is recognised as (absent: not recognised)
TASK_OF_LABEL = {
    **dict.fromkeys(("abstract", "algorithm", "content", "doc_title", "figure_title", "paragraph_title",
                     "reference_content", "text", "vertical_text", "vision_footnote", "seal", "formula_number"),
                    "text"),
    "table": "table", "display_formula": "formula", "inline_formula": "formula",
}
_INLINE = re.compile(r"(?<!\$)\$\s*((?:[^$\\]|\\.)+?)\s*\$(?!\$)")


@dataclass(frozen=True)
class Block:
    label: str  # GLM-OCR layout label
    content: str


def task_of(category: str) -> str | None:
    """text / table / formula for an OmniDocBench category, None where GLM-OCR reads nothing."""
    return TASK_OF_LABEL.get(GLM_LABELS.get(category, "text"))


def normalize_inline_formula(content: str) -> str:
    if "$" not in content:
        return content
    parts, last = [], 0
    for match in _INLINE.finditer(content):
        formula = match.group(1).strip()
        if not formula:
            continue
        before = content[last:match.start()]
        parts.append(before + " " if before and before[-1].isalnum() else before)
        parts.append(f"${formula}$")
        if match.end() < len(content) and content[match.end()].isalnum():
            parts.append(" ")
        last = match.end()
    parts.append(content[last:])
    return "".join(parts)


def clean(content: str) -> str:
    content = re.sub(r"^(\\t)+", "", content).lstrip()
    content = re.sub(r"(\\t)+$", "", content).rstrip()
    for pattern in (r"(\.)\1{2,}", r"(·)\1{2,}", r"(_)\1{2,}", r"(\\_)\1{2,}"):
        content = re.sub(pattern, r"\1\1\1", content)
    return normalize_inline_formula(content).strip()


def format_block(label: str, content: str) -> str:
    task = TASK_OF_LABEL.get(label)
    if (task == "table" and content.startswith("<table") and content.endswith("</table>")) or (task == "formula" and content.startswith("$$") and content.endswith("$$")):
        content = content.strip()
    else:
        content = clean(content)
    if label == "doc_title":
        content = "# " + re.sub(r"^#+\s*", "", content)
    elif label == "paragraph_title":
        content = content[2:].lstrip() if content.startswith(("- ", "* ")) else content
        content = "## " + re.sub(r"^#+\s*", "", content).lstrip()
    if task == "formula":
        content = content[2:].strip() if content.startswith(("$$", "\\[", "\\(")) else content
        content = content[:-2].strip() if content.endswith(("$$", "\\]", "\\)")) else content
        content = "$$\n" + content + "\n$$"
    if task == "text":  # theirs: every label its visualisation mapping calls text, titles included
        content = _format_text(content)
    return content


def _format_text(content: str) -> str:
    if content.startswith("```") and not content.endswith("```"):
        content += "\n```"
    if content.startswith(("·", "•", "* ")):
        content = "- " + content[1:].lstrip()
    match = re.match(r"^(\(|\（)(\d+|[A-Za-z])(\)|\）)(.*)$", content)
    if match:
        content = f"({match.group(2)}) {match.group(4).lstrip()}"
    match = re.match(r"^(\d+|[A-Za-z])(\.|\)|\）)(.*)$", content)
    if match:
        content = f"{match.group(1)}{')' if match.group(2) == '）' else match.group(2)} {match.group(3).lstrip()}"
    return re.sub(r"(?<!\n)\n(?!\n)", "\n\n", content)


def _number(content: str) -> str:
    return content.strip().strip("()（）").strip()


def merge_formula_numbers(blocks: Sequence[Block]) -> list[Block]:
    """A formula number next to a formula becomes its `\\tag{}`; one next to none is dropped."""
    merged: list[Block] = []
    skip = -1
    for i, block in enumerate(blocks):
        if i == skip:
            continue
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        formula, number = (after, block) if block.label == "formula_number" else (block, after)
        if (after is not None and formula is not None and number is not None and number.label == "formula_number"
                and TASK_OF_LABEL.get(formula.label) == "formula"):
            content = formula.content
            if content.endswith("\n$$"):
                content = content[:-3] + f" \\tag{{{_number(number.content)}}}\n$$"
            merged.append(Block(formula.label, content))
            skip = i + 1
        elif block.label != "formula_number":
            merged.append(block)
    return merged


def page_markdown(blocks: Sequence[Block]) -> str:
    """The blocks (already in reading order) as one page of Markdown."""
    formatted = [Block(b.label, format_block(b.label, b.content)) for b in blocks]
    kept = [b for b in formatted if b.content.strip()]
    return "\n\n".join(b.content for b in merge_formula_numbers(kept))
