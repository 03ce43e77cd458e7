"""Time `glmocr-lf data validate` and `data register --link symlink` on N generated samples.

    .venv/bin/python bench/validate_scale.py [-n 100000] [--keep DIR]

Each sample gets its own small real PNG (images/<i // 1000>/<i>.png, a few sizes), so both
commands do their full work: parse, check every image header and end marker, stage every link.
Target on the 2-core machine: 100k validated in <= 30 s, registered in <= 10 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["Text Recognition:", "Table Recognition:", "Formula Recognition:"]


def png_bytes(width: int, height: int, shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 255 - shade, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def generate(root: Path, count: int) -> Path:
    variants = [png_bytes(32 + 8 * k, 24 + 4 * k, 20 * k) for k in range(8)]
    lines = []
    for i in range(count):
        rel = f"images/{i // 1000}/{i}.png"
        if i % 1000 == 0:
            (root / "images" / str(i // 1000)).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(variants[i % len(variants)])
        sample = {"messages": [{"role": "user", "content": f"<image>{PROMPTS[i % 3]}"},
                               {"role": "assistant", "content": f"sample text number {i}"}],
                  "images": [rel]}
        lines.append(json.dumps(sample))
    path = root / "bench.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--samples", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="generate here and keep it (default: a temp dir, removed)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="glmocr-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "glmocr_lf"]
    try:
        start = time.perf_counter()
        dataset = generate(root, args.samples)
        print(f"generated {args.samples} samples + images in {time.perf_counter() - start:.1f} s ({root})")
        print(f"cpus: {os.cpu_count()}")
        validate_s = timed([*cli, "data", "validate", str(dataset), "--cutoff-len", "2048"], root)
        print(f"validate: {validate_s:.2f} s, {args.samples / validate_s:,.0f} samples/s")
        shutil.rmtree(root / "data", ignore_errors=True)
        register_s = timed([*cli, "data", "register", "bench", str(dataset), "--link", "symlink",
                            "--data-dir", str(root / "data")], root)
        print(f"register --link symlink (validates again, then stages): {register_s:.2f} s, "
              f"{args.samples / register_s:,.0f} samples/s")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
