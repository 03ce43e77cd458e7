"""Cheap image checks: the file is a regular, non-empty image whose header PIL reads and whose
last bytes are the format's end marker (a truncated download fails here, not mid-training).

No full decode: header + tail reads keep 100k images within seconds; big sets use a process pool.
"""

from __future__ import annotations

import os
import stat
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from glmocr_lf.runtime.fsutil import is_inside
from glmocr_lf.runtime.workers import usable_cpus, worker_pool

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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _png_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (CRC-checked), None when it is not a sane PNG."""
    if len(head) < 33 or head[12:16] != b"IHDR" or int.from_bytes(head[8:12], "big") != 13:
        return None
    if zlib.crc32(head[12:29]) != int.from_bytes(head[29:33], "big"):
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _jpeg_size(fd: int) -> tuple[int, int] | None:
    """Width and height from the first SOF marker, walking segment lengths (no pixel decode)."""
    data = os.pread(fd, 65536, 0)
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in JPEG_SOF:
            return int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if pos + 9 > len(data):  # a long segment (EXIF, ICC): read further
            more = os.pread(fd, pos + 65536, 0)
            if len(more) <= len(data):
                return None
            data = more
    return None


def _stat(request: ImageRequest) -> os.stat_result | ImageCheck:
    path = request.path
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if request.root_real is not None and not is_inside(os.path.realpath(path), request.root_real):
                return ImageCheck("symlink points outside the media dir (pass --allow-outside to accept)")
            st = os.stat(path)
        elif request.root_real is not None and not is_inside(_realdir(os.path.dirname(path)), request.root_real):
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
    return st


def check_image(request: ImageRequest) -> ImageCheck:
    st = _stat(request)
    if isinstance(st, ImageCheck):
        return st
    path = request.path
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        return ImageCheck(f"cannot read image {path}: {err.strerror or err}")
    try:
        head = os.pread(fd, 33, 0)
        size: tuple[int, int] | None = None
        fmt: str | None = None
        # PNG and JPEG (nearly every OCR set) are read here; anything else goes through PIL
        if head.startswith(PNG_SIGNATURE):
            size, fmt = _png_size(head), "PNG"
        elif head.startswith(b"\xff\xd8\xff"):
            size, fmt = _jpeg_size(fd), "JPEG"
        if size is None:
            opened = _pil_open(path)
            if isinstance(opened, ImageCheck):
                return opened
            size, fmt = opened
        tail = os.pread(fd, TAIL_BYTES, max(0, st.st_size - TAIL_BYTES))
    except OSError as err:
        return ImageCheck(f"cannot read image {path}: {err.strerror or err}")
    finally:
        os.close(fd)
    width, height = size
    if width <= 0 or height <= 0:
        return ImageCheck(f"image has no pixels ({width}x{height}): {path}")
    if width * height > _bomb_limit():
        return ImageCheck(f"image is {width}x{height}, beyond PIL's decompression-bomb limit; "
                          f"LLaMA-Factory cannot open it: {path}")
    problem = _truncation(fmt, head, tail, st.st_size)
    if problem:
        return ImageCheck(f"{problem}: {path}")
    return ImageCheck(None, width, height)


@lru_cache(maxsize=1)
def _bomb_limit() -> int:
    from PIL import Image

    return 2 * int(Image.MAX_IMAGE_PIXELS or 0) or 1 << 62


def _pil_open(path: str) -> tuple[tuple[int, int], str | None] | ImageCheck:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                return image.size, image.format
        except Image.DecompressionBombError:
            return ImageCheck(f"image beyond PIL's decompression-bomb limit; LLaMA-Factory cannot open it: {path}")
        except OSError as err:
            if err.errno is not None:
                return ImageCheck(f"cannot read image {path}: {err.strerror or err}")
            return ImageCheck(f"not an image PIL can read: {path}")
        except Exception:  # PIL raises many types for garbage input; all mean "not an image"
            return ImageCheck(f"not an image PIL can read: {path}")


class ImageChecker:
    """Checks images in worker processes while the caller is still parsing samples.

    `submit` queues requests (sent to the pool a chunk at a time); `results` returns one
    ImageCheck per submitted request, in order. Small sets are checked in-process.
    """

    def __init__(self, expected: int, workers: int | None = None) -> None:
        workers = workers if workers is not None else usable_cpus()
        self._pending: list[ImageRequest] = []
        self._parts: list[Any] = []  # AsyncResult or list[ImageCheck]
        self._sizes: list[int] = []
        self._pool: Any = None
        if workers > 1 and expected >= POOL_THRESHOLD:
            self._pool = worker_pool(workers)

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def submit(self, request: ImageRequest) -> None:
        self._pending.append(request)
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk, self._pending = self._pending, []
        self._sizes.append(len(chunk))
        self._parts.append(chunk if self._pool is None else self._pool.apply_async(_check_chunk, (chunk,)))

    def results(self, progress: Callable[[int], None] | None = None) -> list[ImageCheck]:
        self._flush()
        out: list[ImageCheck] = []
        for part in self._parts:
            done = _check_chunk(part) if isinstance(part, list) else part.get()
            out.extend(done)
            if progress:
                progress(len(done))
        return out


def check_images(requests: Sequence[ImageRequest], *, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[ImageCheck]:
    """Check each request (in order); `progress(n)` is called as n more are done."""
    with ImageChecker(len(requests), workers) as checker:
        for request in requests:
            checker.submit(request)
        return checker.results(progress)


def _check_chunk(requests: Sequence[ImageRequest]) -> list[ImageCheck]:
    return [check_image(r) for r in requests]
