"""Markdown pipe tables to HTML as OmniDocBench's end-to-end evaluation converts them
(`convert_markdown_to_html`, utils/table_utils.py at upstream 523fd1d; the row converter is from
intsig-textin/markdown_tester): every `|...|` line becomes a one-row table of header cells, then
runs of such tables are merged into one, header cells turned into td; a line in the run holding
':' or '---' (the separator row, and any row with a colon) is dropped from the merged table."""

from __future__ import annotations

import re

_PIPE_LINE = re.compile(r"\|\s*.*?\s*\|\n", re.DOTALL)
_ALIGNMENT_ROW = (re.compile(r"-*?:"), re.compile(r"---"), re.compile(r":-*?"))
_TABLE_FRAME = re.compile(r"</?t(able|head|body)>")


def row_to_html(markdown: str) -> str:
    rows = [row.strip() for row in markdown.strip().split("\n")]
    html = "<table>\n  <thead>\n    <tr>\n"
    for cell in (cell.strip() for cell in rows[0].split("|")[1:-1]):
        html += f"      <th>{cell}</th>\n"
    html += "    </tr>\n  </thead>\n  <tbody>\n"
    for row in rows[2:]:
        html += "    <tr>\n"
        for cell in (cell.strip() for cell in row.split("|")[1:-1]):
            html += f"      <td>{cell}</td>\n"
        html += "    </tr>\n"
    return html + "  </tbody>\n</table>\n"


def _is_alignment_row(line: str) -> bool:
    return any(pattern.search(line) for pattern in _ALIGNMENT_ROW)


def merge_tables(block: str) -> str:
    block = re.sub(r"<!--[\s\S]*?-->", "", block)
    lines: list[str] = []
    for table in re.findall(r"<table>[\s\S]*?</table>", block):
        rows = [line.replace("<th>", "<td>").replace("</th>", "</td>") if "<th>" in line else line
                for line in table.split("\n")]
        kept = [line for line in rows if not _TABLE_FRAME.search(line)]
        if len(kept) > 2:
            lines.extend(kept)
    return "\n\n" + "<table>\n{}\n</table>".format("\n".join(lines)) + "\n\n"


def merge_table_runs(text: str) -> str:
    """Their `replace_table_with_placeholder`: each run of tables, line by line, one step behind."""
    output: list[str] = []
    in_run, run, last = False, "", ""
    for line in text.split("\n"):
        if "<table>" in line:
            in_run = True
            run += last
        elif in_run:
            if not _is_alignment_row(last) and "</thead>" not in last:
                run += "\n" + last
            if "</table>" in last and "<table>" not in line:
                in_run = False
                output.append(merge_tables(run))
                run = ""
        else:
            output.append(last)
        last = line
    if last:
        if in_run or "</table>" in last:
            output.append(merge_tables(run + "\n" + last))
        else:
            output.append(last)
    return "\n".join(output)


def markdown_tables_to_html(content: str) -> str:
    content = content.replace("\r", "") + "\n"
    for match in _PIPE_LINE.findall(content):
        content = content.replace(match, row_to_html(match), 1)
    merged = merge_table_runs(content)
    return merged.replace("<table>", '<table border="1" >').replace("<td>", '<td colspan="1" rowspan="1">')
