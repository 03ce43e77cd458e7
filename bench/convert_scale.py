"""Convert, validate and register a Parquet file of N rows with embedded PNG bytes; report the time
and peak memory (max RSS) of each step and check that a re-run writes no new file.

    .venv/bin/python bench/convert_scale.py [-n 10000] [--row-group 1000] [--noise SIDE] [--saved] [--keep DIR]

Each row gets its own PNG: a text line drawn by PIL (about 400x48, ~1 KB), as OCR line sets have,
or with --noise 160 incompressible 160x160 pixels (~77 KB; 10,000 rows make a ~750 MB file).
Peak memory is the max RSS of each command, as /usr/bin/time -f %M reports it.
Target: peak memory of the conversion under 1 GiB, whatever N.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def png_line(i: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("L", (360 + i % 80, 40 + i % 9), 255)
    ImageDraw.Draw(image).text((6, 8), f"row {i}: the quick brown fox {i * 7919 % 100003}", fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_noise(i: int, side: int) -> bytes:
    """Incompressible pixels: a PNG of about 3 x side^2 bytes (side 160: ~77 KB)."""
    from PIL import Image

    image = Image.frombytes("RGB", (side, side), random.Random(i).randbytes(3 * side * side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def generate(path: Path, count: int, row_group: int, noise: int = 0) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, count, row_group):
            part = range(start, min(count, start + row_group))
            writer.write_table(pa.table({
                "image": [{"bytes": png_noise(i, noise) if noise else png_line(i), "path": None} for i in part],
                "text": [f"row {i}: the quick brown fox {i * 7919 % 100003}" for i in part]}, schema=schema))
    return path.stat().st_size


def save_to_disk(parquet: Path) -> Path:
    import datasets

    folder = parquet.with_name("saved")
    loaded = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(parquet.with_name("cache")))
    loaded.cast_column("image", datasets.Image()).save_to_disk(str(folder))
    shutil.rmtree(parquet.with_name("cache"), ignore_errors=True)
    return folder


def run(label: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one glmocr-lf command, read by /usr/bin/time (its own max RSS)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "glmocr_lf", *args],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr}")
    *talk, kib = done.stderr.strip().splitlines()
    mib = int(kib) / 1024
    done.stderr = "\n".join(talk)
    print(f"{label:<10} {seconds:7.1f} s   peak RSS {mib:7.1f} MiB   {done.stderr.strip().splitlines()[-1]}")
    return seconds, mib


def files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--row-group", type=int, default=1000)
    parser.add_argument("--noise", type=int, default=0, metavar="SIDE",
                        help="random-pixel images of SIDE x SIDE instead of text lines (a large file)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--saved", action="store_true",
                        help="convert a datasets.save_to_disk folder (Image feature) made from the Parquet file")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.n, args.row_group, args.noise)
        if args.saved:
            save_to_disk(args.generate)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="glmocr-convert-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        source = root / "rows.parquet"
        start = time.perf_counter()
        # in a child: Linux counts the parent's RSS at fork in each later child's ru_maxrss, so this
        # process stays small (no pyarrow buffers) while it measures the commands
        subprocess.run([sys.executable, __file__, "--generate", str(source), "-n", str(args.n),
                        "--row-group", str(args.row_group), "--noise", str(args.noise),
                        *(["--saved"] if args.saved else [])], check=True)
        size = source.stat().st_size
        if args.saved:
            source = root / "saved"
        print(f"generated {args.n} rows, {size / 2**20:.1f} MiB, in {time.perf_counter() - start:.1f} s")
        out = root / "out" / "ocr.json"
        _, peak = run("convert", "data", "convert", str(source), "-o", str(out), "--force")
        before = files(out.parent)
        run("validate", "data", "validate", str(out))
        run("register", "data", "register", "ocr", str(out), "--data-dir", str(root / "data"))
        run("re-run", "data", "convert", str(source), "-o", str(out), "--force")
        after = files(out.parent)
        new = sorted(set(after) - set(before))
        changed = sorted(p for p in before if after.get(p) != before[p])
        print(f"re-run: {len(new)} new files, {len(changed)} rewritten; images: "
              f"{sum(1 for p in after if '/ocr_images/' in p)}")
        print(f"conversion peak RSS {peak:.1f} MiB ({'under' if peak < 1024 else 'OVER'} 1 GiB)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
