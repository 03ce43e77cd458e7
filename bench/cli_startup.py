"""Median wall time of `glmocr-lf --help` and `glmocr-lf config validate` (warm key-table cache)
vs `llamafactory-cli version` (start-up cost of each CLI).

Usage: python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Keys beyond glmocr-lf's typed sections: validating them needs LLaMA-Factory's key table.
CONFIG = """model_name_or_path: zai-org/GLM-OCR
template: glm_ocr
optim: adamw_torch_fused
neftune_noise_alpha: 5
save_strategy: steps
lr_scheduler_kwargs: {min_lr: 1.0e-6}
weight_decay: 0.01
seed: 42
report_to: tensorboard
"""


def console_script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (run `make install` first)")
    return found


def median_seconds(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    subprocess.run(argv, capture_output=True, check=True, env=env)  # warm the file cache (and key table)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ours = median_seconds([console_script("glmocr-lf"), "--help"], args.runs)
    with tempfile.TemporaryDirectory(prefix="glmocr-lf-bench-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        # a cache of its own, filled by the warm-up run: the timed runs read it
        env = {**os.environ, "GLMOCR_LF_CACHE_DIR": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        subprocess.run([console_script("glmocr-lf"), "config", "validate", str(config)],
                       capture_output=True, check=True, env=env)
        cold = time.perf_counter() - start
        validate = median_seconds([console_script("glmocr-lf"), "config", "validate", str(config)],
                                  args.runs, env)
    theirs = median_seconds([console_script("llamafactory-cli"), "version"], args.runs)
    print(f"runs per command:                        {args.runs}")
    print(f"glmocr-lf --help (median):               {ours * 1000:8.0f} ms")
    print(f"glmocr-lf config validate, warm cache:   {validate * 1000:8.0f} ms")
    print(f"  (first run, building the key table:    {cold * 1000:8.0f} ms)")
    print(f"llamafactory-cli version:                {theirs * 1000:8.0f} ms")
    print(f"ratio (llamafactory / --help):           {theirs / ours:8.1f}x")
    print(f"ratio (llamafactory / config validate):  {theirs / validate:8.1f}x")


if __name__ == "__main__":
    main()
