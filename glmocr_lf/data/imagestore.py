"""Images extracted by `data convert` (Parquet cells, layout crops) are stored under their content's
hash: the same bytes always land in the same file, so a re-run writes nothing new.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from glmocr_lf.data.imagecheck import TAIL_BYTES, _truncation

# (magic prefix, PIL format, file suffix); WEBP is checked apart (RIFF....WEBP)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
    (b"\xff\xd8\xff", "JPEG", ".jpg"),
    (b"GIF87a", "GIF", ".gif"),
    (b"GIF89a", "GIF", ".gif"),
    (b"BM", "BMP", ".bmp"),
    (b"II*\x00", "TIFF", ".tif"),
    (b"MM\x00*", "TIFF", ".tif"),
)
HASH_CHARS = 32


@dataclass(frozen=True)
class Decoded:
    """An image whose bytes PIL reads: its suffix, format and size."""

    suffix: str
    format: str
    width: int
    height: int


def sniff(data: bytes) -> tuple[str, str] | None:
    """(PIL format, suffix) from the first bytes, None for anything we do not store."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", ".webp"
    for magic, fmt, suffix in _MAGIC:
        if data.startswith(magic):
            return fmt, suffix
    return None


def decode_check(data: bytes) -> Decoded | str:
    """The image's format and size, or why it cannot be used (a one-line message)."""
    if not data:
        return "empty image bytes"
    kind = sniff(data)
    if kind is None:
        return f"not an image (starts with {data[:8]!r})"
    fmt, suffix = kind
    problem = _truncation(fmt, data[:33], data[-TAIL_BYTES:], len(data))
    if problem:
        return problem
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                image.verify()  # walks the chunks (PNG CRCs) without keeping pixels
        except Exception as err:  # PIL raises many types for garbage input; all mean "undecodable"
            return f"undecodable {fmt} bytes ({type(err).__name__}: {err})"
    if size[0] <= 0 or size[1] <= 0:
        return f"image has no pixels ({size[0]}x{size[1]})"
    return Decoded(suffix, fmt, size[0], size[1])


def store(folder: Path, data: bytes, suffix: str) -> tuple[Path, bool]:
    """(path, written): `folder/<sha256>.<suffix>`, written only when absent or of another size."""
    path = folder / f"{hashlib.sha256(data).hexdigest()[:HASH_CHARS]}{suffix}"
    try:
        if path.stat().st_size == len(data):
            return path, False
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    # no fsync per image (thousands of them); a file cut short by a crash has another size and is redone
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path, True
