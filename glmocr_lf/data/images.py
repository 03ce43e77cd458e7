"""Cheap image checks: the file is a regular, non-empty image whose header PIL reads and whose
last bytes are the format's end marker (a truncated download fails here, not mid-training).

No full decode: header + tail reads keep 100k images within seconds; big sets use a process pool.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

TAIL_BYTES = 1024
POOL_THRESHOLD = 4000
CHUNK = 512


@dataclass(frozen=True)
class ImageCheck:
    """`error` is None when the image is usable; width/height are 0 then it is not."""

    error: str | None
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class ImageRequest:
    path: str  # absolute, normalised
    root_real: str | None  # refuse symlinks that resolve outside this directory; None: allowed


@lru_cache(maxsize=4096)
def _realdir(directory: str) -> str:
    return os.path.realpath(directory)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _truncation(fmt: str | None, head: bytes, tail: bytes, size: int) -> str | None:
    if fmt == "PNG" and b"IEND\xaeB`\x82" not in tail:
        return "truncated PNG (no IEND chunk at the end)"
    if fmt in {"JPEG", "MPO"} and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "GIF" and not tail.rstrip(b"\0").endswith(b";"):
        return "truncated GIF (no trailer byte)"
    if fmt == "WEBP" and len(head) >= 8 and int.from_bytes(head[4:8], "little") + 8 > size:
        return "truncated WEBP (file shorter than its RIFF header says)"
    if fmt == "BMP" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
        return "truncated BMP (file shorter than its header says)"
    return None


def check_image(request: ImageRequest) -> ImageCheck:
    from PIL import Image

    path = request.path
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if request.root_real is not None and not _inside(os.path.realpath(path), request.root_real):
                return ImageCheck("symlink points outside the media dir (pass --allow-outside to accept)")
            st = os.stat(path)
        elif request.root_real is not None and not _inside(_realdir(os.path.dirname(path)), request.root_real):
            return ImageCheck("path leaves the media dir through a symlinked folder (pass --allow-outside to accept)")
    except FileNotFoundError:
        return ImageCheck(f"image not found: {path}")
    except OSError as err:
        return ImageCheck(f"cannot read image {path}: {err.strerror or err}")
    if stat.S_ISDIR(st.st_mode):
        return ImageCheck(f"is a directory, not an image: {path}")
    if not stat.S_ISREG(st.st_mode):
        return ImageCheck(f"not a regular file: {path}")
    if st.st_size == 0:
        return ImageCheck(f"empty image file (0 bytes): {path}")
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            head = handle.read(16)
            handle.seek(0)
            try:
                image = Image.open(handle)
                width, height = image.size
                fmt = image.format
            except Image.DecompressionBombError:
                return ImageCheck(f"image too large for PIL (decompression-bomb limit), LLaMA-Factory cannot open it: {path}")
            except Exception:  # PIL raises many types for garbage input; all mean "not an image"
                return ImageCheck(f"not an image PIL can read: {path}")
            handle.seek(max(0, st.st_size - TAIL_BYTES))
            tail = handle.read()
    except OSError as err:
        return ImageCheck(f"cannot read image {path}: {err.strerror or err}")
    if width <= 0 or height <= 0:
        return ImageCheck(f"image has no pixels ({width}x{height}): {path}")
    problem = _truncation(fmt, head, tail, st.st_size)
    if problem:
        return ImageCheck(f"{problem}: {path}")
    return ImageCheck(None, width, height)


def check_images(requests: Sequence[ImageRequest], *, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[ImageCheck]:
    """Check each request (in order); `progress(n)` is called as n more are done."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or len(requests) < POOL_THRESHOLD:
        results: list[ImageCheck] = []
        for start in range(0, len(requests), CHUNK):
            results.extend(check_image(r) for r in requests[start:start + CHUNK])
            if progress:
                progress(len(requests[start:start + CHUNK]))
        return results
    import multiprocessing

    chunks = [requests[i:i + CHUNK] for i in range(0, len(requests), CHUNK)]
    out: list[ImageCheck] = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done in pool.imap(_check_chunk, chunks):
            out.extend(done)
            if progress:
                progress(len(done))
    return out


def _check_chunk(requests: Sequence[ImageRequest]) -> list[ImageCheck]:
    return [check_image(r) for r in requests]
