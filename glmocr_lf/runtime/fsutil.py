"""Reading user files with one-line errors, and atomic writes: a reader sees the old file or the
new one, never half of either. A place that cannot be written (a file where a folder must go, no
permission, a read-only file system) is one GlmocrLfError, never an OSError traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from glmocr_lf.runtime.errors import DataError, GlmocrLfError


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a directory (`afile` for `afile/x`)."""
    for ancestor in Path(path).parents:
        if ancestor.exists():
            return None if ancestor.is_dir() else ancestor
    return None


def blocked(path: Path) -> GlmocrLfError | None:
    """The error for a `path` that cannot be created because a file stands where a folder must."""
    blocker = file_in_the_way(path)
    if blocker is None:
        return None
    return GlmocrLfError(f"{path}: cannot create it: {blocker} is a file, not a directory",
                         hint="choose a path inside a directory")


def check_file_target(path: Path) -> None:
    """Refuse, before any work, a file target below a file (`afile/out.json`)."""
    error = blocked(path)
    if error is not None:
        raise error


def write_error(path: Path, err: OSError) -> GlmocrLfError:
    """The one-line error for an OSError met while creating or writing `path`."""
    error = blocked(path)
    if error is not None:
        return error
    if err.errno == errno.EROFS:
        reason = "read-only file system"
    elif isinstance(err, PermissionError):
        reason = "permission denied"
    else:
        reason = err.strerror or str(err)
    return GlmocrLfError(f"{path}: cannot write: {reason}")


def check_dir_target(path: Path, what: str = "directory") -> None:
    """Refuse, before any work, a directory target that is a file or lies below one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GlmocrLfError(f"{path}: is a file, expected a {what}")
    check_file_target(path)


def ensure_dir(path: Path, what: str = "directory") -> Path:
    """Create `path` and its parents; anything in the way is one GlmocrLfError."""
    path = Path(path)
    check_dir_target(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None
    return path


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    path = Path(path)
    if path.is_dir():
        raise GlmocrLfError(f"{path}: is a directory")
    if not overwrite and path.exists():
        raise GlmocrLfError(f"{path}: already exists", hint="pass --force to overwrite it")
    try:
        _atomic_write(path, data)
    except OSError as err:
        raise write_error(path, err) from None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def read_bytes(path: Path, what: str = "dataset file") -> bytes:
    """The file's bytes, or a one-line DataError naming what is wrong with the path."""
    try:
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except PermissionError:
        raise DataError(f"{path}: cannot read: permission denied") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None


def decode_utf8(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{raw[start]:02x}); save the file as UTF-8"
        ) from None


def require_empty_dir(path: Path, *, force: bool, what: str = "directory",
                      hint: str = "pass --force to write into it") -> None:
    """Refuse to write into a non-empty directory unless `force` (and a file where a directory goes)."""
    path = Path(path)
    check_dir_target(path, what)
    if path.is_dir() and not force and any(path.iterdir()):
        raise GlmocrLfError(f"{path}: {what} is not empty", hint=hint)


def remove_path(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder tree; nothing if it is not there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
