"""Time `eval score --protocol omnidocbench --pages` on N synthetic pages (default 1,355, the size of
OmniDocBench v1.5).

    .venv/bin/python bench/score_pages.py [-n 1355] [--seed 0]

Each page gets the element mix of the benchmark's own 18 demo pages (per page on average: 11 text
blocks, 3 titles, 1 display formula, 0.56 tables, 4 header/footer/caption/page-number elements; the
exact v1.5 mix is not published with the repository), read back with a few percent of errors, in
tests/omnidocbench_pages.py's forms (inline formulas, split and merged blocks, pipe and truncated
tables, shuffled order...). Prints wall and CPU time of `score_pages`, which runs in one process.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from omnidocbench_pages import Page, add_case, page_record

from glmocr_lf.evaluation.omnidocbench.pagescore import score_pages

TEXT_FORMS = ("plain", "inline", "split_block", "merged_blocks", "truncated_text", "missing", "extra")
TABLE_FORMS = ("html_table", "html_table", "pipe_table", "truncated_table", "no_table_pred")


def demo_mix_page(index: int, seed: int) -> Page:
    rng = random.Random(seed * 100_003 + index)
    page = Page(f"bench_{index:05d}", rng, chinese=rng.random() < 0.4)
    for _ in range(rng.randint(1, 3)):  # with the one below, 3 titles on average
        add_case(page, "title")
    for _ in range(rng.randint(1, 3)):  # with "plain" adding 3 and the others 1-2: ~11 text blocks
        add_case(page, rng.choice(TEXT_FORMS))
    for _ in range(rng.randint(6, 10)):
        page.text()
    if rng.random() < 0.9:
        add_case(page, rng.choice(("display", "display", "array", "array_lines")))
    if rng.random() < 0.56:
        add_case(page, rng.choice(TABLE_FORMS))
    add_case(page, "ignored")
    add_case(page, "title")
    if rng.random() < 0.3:
        rng.shuffle(page.blocks)
    rng.shuffle(page.dets)
    return page


def write(out: Path, count: int, seed: int) -> None:
    (out / "md").mkdir(parents=True)
    records = []
    for index in range(count):
        page = demo_mix_page(index, seed)
        records.append(page_record(page, index))
        (out / "md" / f"{page.name}.md").write_text(page.joiner.join(page.blocks) + "\n", encoding="utf-8")
    (out / "gt.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1355)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="Write the pages here (gt.json, md/) and keep them.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        write(out, args.n, args.seed)
        records = json.loads((out / "gt.json").read_text(encoding="utf-8"))
        elements: dict[str, int] = {}
        for record in records:
            for det in record["layout_dets"]:
                elements[det["category_type"]] = elements.get(det["category_type"], 0) + 1
        print(f"{args.n} pages; elements: {dict(sorted(elements.items(), key=lambda kv: -kv[1]))}")
        cpu, wall = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
        scores = score_pages(out / "gt.json", out / "md")
        cpu, wall = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu, time.perf_counter() - wall
    summary = {name: {k: round(v, 4) for k, v in c.metrics.items() if v is not None}
               for name, c in scores.categories.items()}
    print(json.dumps(summary))
    print(f"scored {len(scores.pages)} pages in {wall:.1f} s wall, {cpu:.1f} s CPU (one process)")


if __name__ == "__main__":
    main()
