"""Time `eval score` on N table predictions (20 rows x 10 columns, a few cells wrong in each).

    .venv/bin/python bench/score_speed.py [-n 1000] [--workers N] [--protocol ours|omnidocbench]

Scores a sample in one process (the CPU cost of a table), then the whole file over `--workers`
processes (default: every core), through `score_file` as `eval score` calls it, and prints wall and
CPU time: on a shared machine the wall time grows with the load, the CPU time does not.
Target: 1,000 tables well under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from glmocr_lf.evaluation.score import score_file
from glmocr_lf.runtime.workers import usable_cpus


def table(rows: int, cols: int, rng: random.Random, wrong: int = 0) -> str:
    cells = [[f"r{r}c{c} {rng.randint(0, 9999)}" for c in range(cols)] for r in range(rows)]
    return "<table>" + "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in cells) + "</table>"


def write(path: Path, count: int, seed: int = 0) -> None:
    lines = []
    for i in range(count):
        reference = table(20, 10, random.Random(seed + i))
        rng = random.Random(seed + i + 10**6)
        predicted = reference
        for _ in range(3):  # three cells misread
            start = predicted.find("<td>", rng.randrange(len(predicted) - 20)) + 4
            predicted = predicted[:start] + "x" + predicted[start + 1:]
        lines.append(json.dumps({"id": str(i), "prompt": "<image>Table Recognition:",
                                 "reference": reference, "prediction": predicted}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=usable_cpus())
    parser.add_argument("--protocol", choices=["ours", "omnidocbench"], default="ours")
    parser.add_argument("--single", type=int, default=20, help="tables scored in one process for the per-table cost")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sample, full = Path(folder) / "sample.jsonl", Path(folder) / "full.jsonl"
        write(sample, min(args.single, args.n))
        write(full, args.n)
        start = time.process_time()
        score_file(sample, protocol=args.protocol, workers=1)
        per_table = (time.process_time() - start) / min(args.single, args.n)
        print(f"one process: {per_table:.3f} s of CPU a 20x10 table ({args.protocol} protocol)")
        start, cpu = time.perf_counter(), _cpu()
        scores = score_file(full, protocol=args.protocol, workers=args.workers)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        teds = scores.tasks[-1].metrics["teds"]
        print(f"{args.n} tables on {args.workers} worker(s): {seconds:.1f} s wall, {cpu:.1f} s CPU "
              f"(on {args.workers} idle cores: {cpu / args.workers:.1f} s), mean teds {teds:.4f}")
        print(f"load average while it ran: {os.getloadavg()[0]:.2f} (other processes share these cores)")


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
