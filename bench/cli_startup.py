"""Median wall time of `glmocr-lf --help` vs `llamafactory-cli version` (start-up cost of each CLI).

Usage: python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def console_script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (run `make install` first)")
    return found


def median_seconds(argv: list[str], runs: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ours = median_seconds([console_script("glmocr-lf"), "--help"], args.runs)
    theirs = median_seconds([console_script("llamafactory-cli"), "version"], args.runs)
    print(f"runs per command:              {args.runs}")
    print(f"glmocr-lf --help (median):     {ours * 1000:8.0f} ms")
    print(f"llamafactory-cli version:      {theirs * 1000:8.0f} ms")
    print(f"ratio (llamafactory / ours):   {theirs / ours:8.1f}x")


if __name__ == "__main__":
    main()
