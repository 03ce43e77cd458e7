"""A page's Markdown as OmniDocBench's end-to-end evaluation cuts it into predicted blocks (its
`md_tex_filter`, utils/extract.py at upstream 523fd1d), with its quirks kept, since the scores rest
on them: LaTeX, then HTML tables are cut out first; then `$$..$$`, `\\[..\\]`, `$..$` and `\\(..\\)`
(an inline one becomes a block of its own and also stays in its paragraph); pipe tables are turned
into HTML (each line first, then runs of them merged; a line holding ':' or '---' is dropped);
code fences; then paragraphs split on blank lines (on single newlines when there is no blank
line), their positions counted without the separators.

A block is a dict: `category_type` (text_all, equation_isolated, html_table, latex_table),
`position` [start, end], `content`, and maybe `fine_category_type` (equation_inline, code,
text_block, md2html_table).
"""

from __future__ import annotations

import re
from typing import Any

Block = dict[str, Any]

_IMAGE = re.compile(r"!\[.*?\]\(.*?\)")
_DISPLAY = re.compile(r"\$\$(.*?)\$\$|\\\[(.*?)\\\]|\$(.*?)\$|\\\((.*?)\\\)", re.DOTALL)
_DOLLARS = re.compile(r"\$\$(.*?)\$\$|\$(.*?)\$|\\\((.*?)\\\)", re.DOTALL)
_PIPE_LINE = re.compile(r"\|\s*.*?\s*\|\n", re.DOTALL)
_HTML_TABLE = re.compile(r"(<table.*?</table>)", re.DOTALL)
_CODE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_LATEX_STYLES = ((re.compile(r"\\title\{(.*?)\}"), r"\1"), (re.compile(r"\\title\s*\{\s*(.*?)\s*\}", re.DOTALL), r"\1"),
                 (re.compile(r"\\text\s*\{\s*(.*?)\s*\}", re.DOTALL), r"\1"), (re.compile(r"\\section\*?\{(.*?)\}"), r"\1"),
                 (re.compile(r"\\section\*?\{\s*(.*?)\s*\}", re.DOTALL), r"\1"))
_FENCES = ((re.compile(r"^```markdown\n?", re.MULTILINE), ""), (re.compile(r"^```html\n?", re.MULTILINE), ""),
           (re.compile(r"^```latex\n?", re.MULTILINE), ""), (re.compile(r"```\n?$", re.MULTILINE), ""))


def blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def nested_spans(text: str, begin: str, end: str, begin_length: int) -> list[tuple[int, int]]:
    """Outermost begin...end spans, as their `extract_tabular` / `extract_html_table` scan: after a
    begin the scan skips len(end) characters; an unclosed begin restarts the scan `begin_length`
    characters after it (the length of their pattern's source, not of the match)."""
    spans: list[tuple[int, int]] = []
    position, stack = 0, []
    while position < len(text):
        opened, closed = re.search(begin, text[position:]), re.search(end, text[position:])
        if not opened and not closed:
            break
        if opened and (not closed or opened.start() < closed.start()):
            stack.append(position + opened.start())
            position += opened.start() + len(end)
        elif closed:
            if stack:
                start = stack.pop()
                if not stack:
                    spans.append((start, position + closed.start() + len(end)))
            position += closed.start() + len(end)
    if stack:
        restart = stack[0] + begin_length
        spans += [(s + restart, e + restart) for s, e in nested_spans(text[restart:], begin, end, begin_length)]
    return spans


def latex_tables(text: str) -> list[tuple[tuple[int, int], str]]:
    found = [((m.start(), m.end()), m.group(0)) for m in re.finditer(r"\\begin{table}(.*?)\\end{table}", text, re.DOTALL)]
    for (start, end), _ in found:
        text = blank(text, start, end)
    begin = r"\\begin{tabular}"
    for start, end in nested_spans(text, begin, r"\\end{tabular}", len(begin)):
        found.append(((start, end), text[start:end]))
    return sorted(found, key=lambda item: item[0][0])


def html_tables(text: str) -> list[tuple[tuple[int, int], str]]:
    begin = r"<table(?:[^>]*)>"
    return [((s, e), text[s:e]) for s, e in nested_spans(text, begin, r"</table>", len(begin))]


def md_tex_filter(content: str) -> dict[str, list[Block]]:
    """The page's predicted blocks by category, each list in page position order."""
    content = _IMAGE.sub("", content)
    for pattern, replacement in _FENCES:
        content = pattern.sub(replacement, content)
    content = re.sub(r" {4,}", "    ", re.sub(r"_{4,}", "____", content))
    for tag in ("<html>", "</html>", "<body>", "</body>"):
        content = content.replace(tag, "")
    blocks: list[Block] = []
    for category, finder in (("latex_table", latex_tables), ("html_table", html_tables)):
        for (start, _), table in finder(content):
            end = start + len(table)
            blocks.append({"category_type": category, "position": [start, end], "content": table})
            content = blank(content, start, end)
    content = _display_formulas(content, blocks)
    if len(_PIPE_LINE.findall(content + "\n")) >= 2:
        content = _pipe_tables(content, blocks)
    for match in _CODE.finditer(content):
        blocks.append({"category_type": "text_all", "position": [match.start(), match.end()],
                       "content": match.group(2).strip(), "language": match.group(1), "fine_category_type": "code"})
        content = blank(content, match.start(), match.end())
    for pattern, replacement in _LATEX_STYLES:
        content = pattern.sub(replacement, content)
    blocks += _paragraphs(content)
    by_category: dict[str, list[Block]] = {}
    for block in sorted(blocks, key=lambda b: b["position"][0]):
        by_category.setdefault(block["category_type"], []).append(block)
    return by_category


def _display_formulas(content: str, blocks: list[Block]) -> str:
    for match in _DISPLAY.finditer(content):  # over the text as it was: blanking keeps positions
        if not match.group(0):
            continue
        line = " ".join(match.group(0).strip().split("\n"))
        position = [match.start(), match.end()]
        dollars = _DOLLARS.search(line)
        if dollars is None:  # \[...\]
            blocks.append({"category_type": "equation_isolated", "position": position, "content": line})
            content = blank(content, *position)
        elif dollars.group(1):
            blocks.append({"category_type": "equation_isolated", "position": position,
                           "content": _DOLLARS.sub(r"\\[\1\\]", line)})
            content = blank(content, *position)
        else:  # inline: a block, and the paragraph keeps it too
            blocks.append({"category_type": "equation_isolated", "position": position,
                           "content": _DOLLARS.sub(r"\\[\2\3\\]", line), "fine_category_type": "equation_inline"})
    return content


def _pipe_tables(content: str, blocks: list[Block]) -> str:
    from glmocr_lf.evaluation.omnidocbench.pipetables import markdown_tables_to_html

    content = markdown_tables_to_html(content)
    for match in _HTML_TABLE.finditer(content):
        blocks.append({"category_type": "html_table", "position": [match.start(), match.end()],
                       "content": match.group(0).strip(), "fine_category_type": "md2html_table"})
        content = blank(content, match.start(), match.end())
    return content


def _paragraphs(content: str) -> list[Block]:
    parts = content.split("\n\n")
    if len(parts) == 1:
        parts = content.split("\n")
    blocks: list[Block] = []
    offset = 0
    for part in parts:
        position = [offset, offset + len(part)]
        offset += len(part)  # theirs counts no separator
        text = "\n".join(line.strip() for line in part.strip().strip("\n").split("\n") if line.strip())
        if not text:
            continue
        if text.startswith("<table") and text.endswith("</table>"):
            blocks.append({"category_type": "html_table", "position": position, "content": text})
        elif text.startswith("$") and text.endswith("$"):
            if text.replace("$", "").strip():
                blocks.append({"category_type": "equation_isolated", "position": position, "content": text.strip()})
        else:
            blocks.append({"category_type": "text_all", "position": position, "content": text,
                           "fine_category_type": "text_block"})
    return blocks
