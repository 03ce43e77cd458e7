"""Reading user files with one-line errors, atomic writes (a reader sees the old file or the new
one, never half of either) and output locks (one writer at a time). A place that cannot be written
(a file where a folder must go, no permission, a read-only file system) is one GlmocrLfError,
never an OSError traceback."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from glmocr_lf.runtime.constants import ENV_PAUSE_AT
from glmocr_lf.runtime.errors import DataError, GlmocrLfError


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether `path` is `folder` or lies below it, by their spelling (resolve both first for
    links): cheap enough for every image of a dataset."""
    path, folder = os.fspath(path), os.fspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


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


def check_writable(path: Path, what: str = "directory") -> None:
    """Refuse, before any work and without writing anything, a target that could not be created:
    a file in the way, or a nearest existing folder that is read-only or not ours to write."""
    check_dir_target(path, what)
    existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("."))
    if os.access(existing, os.W_OK | os.X_OK):
        return
    read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    raise GlmocrLfError(f"{path}: cannot write: {'read-only file system' if read_only else 'permission denied'}")


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
    tmp = _staged(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _staged(path: Path, data: bytes) -> str:
    """`data` in a synced hidden file beside `path` (`.NAME.*.tmp`), with `path`'s permissions."""
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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def pause_point(name: str) -> None:
    """Crash tests stop a writer here: with GLMOCR_LF_PAUSE_AT=NAME:FLAG the writer creates FLAG
    and sleeps until it is killed. Without the variable this does nothing."""
    point, _, flag = os.environ.get(ENV_PAUSE_AT, "").partition(":")
    if point != name or not flag:
        return
    Path(flag).touch()
    while True:
        time.sleep(60)


def journal_path(first: Path) -> Path:
    """The journal of a set of files written together, named after its first file."""
    return first.parent / f".{first.name}.set.json"


def replace_together(changes: dict[Path, str | None]) -> None:
    """Put several files of one folder in place as one result (`None` removes a file).

    Every new text is staged and synced first, so a full disk or a crash there leaves the old set
    (`finish_pending` removes the staged files). Then a journal names the moves and they run; a
    crash among them leaves the journal, and `finish_pending` completes the new set."""
    if not changes:
        return
    first = next(iter(changes))
    journal = journal_path(first)
    moves: list[tuple[str, str]] = []
    try:
        for path, text in changes.items():
            if text is not None:
                moves.append((os.path.basename(_staged(path, text.encode("utf-8"))), path.name))
        removals = [path.name for path, text in changes.items() if text is None]
        _atomic_write(journal, json.dumps({"moves": moves, "remove": removals}).encode("utf-8"))
    except OSError as err:
        for tmp, _ in moves:
            with contextlib.suppress(OSError):
                os.unlink(first.parent / tmp)
        raise write_error(first, err) from None
    except BaseException:
        for tmp, _ in moves:
            with contextlib.suppress(OSError):
                os.unlink(first.parent / tmp)
        raise
    _apply_journal(journal)


def _apply_journal(journal: Path) -> None:
    folder = journal.parent
    plan = json.loads(journal.read_text(encoding="utf-8"))
    for index, (tmp, target) in enumerate(plan["moves"]):
        if index:
            pause_point("set-swap")
        if (folder / tmp).exists():
            os.replace(folder / tmp, folder / target)
    for target in plan["remove"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / target)
    journal.unlink()


def pending_set(path: Path) -> Path | None:
    """The journal of a set `path` belongs to whose moves have not all run (a writer is among its
    renames now, or was killed there): `path` may not match the files written with it."""
    for journal in path.parent.glob(".*.set.json"):
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
            targets = [target for _, target in plan["moves"]] + list(plan["remove"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone since, or not ours
        if path.name in targets:
            return journal
    return None


def finish_pending(paths: list[Path]) -> bool:
    """Before writing the set `paths` again: complete a set a crash cut short among its moves
    (True), and remove files staged by one cut short before them. Call it under the set's lock."""
    journal = journal_path(paths[0])
    finished = False
    try:
        if journal.is_file():
            try:
                _apply_journal(journal)
                finished = True
            except (ValueError, KeyError, TypeError):  # not ours (it is written atomically): drop it
                journal.unlink()
        for path in paths:
            for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                tmp.unlink()
    except OSError as err:
        raise write_error(journal, err) from None
    return finished


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


@contextlib.contextmanager
def file_lock(lock_path: Path, *, timeout_s: float, busy: str, hint: str | None = None) -> Iterator[None]:
    """Hold the lock file `lock_path` (flock: released when the holder dies, even by SIGKILL);
    `busy` is the error when another process still holds it after `timeout_s` (0: refuse at once)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise GlmocrLfError(busy, hint=hint) from None
    except OSError as err:
        raise write_error(Path(lock_path), err) from None
    try:
        yield
    finally:
        lock.release()


def output_lock_path(target: Path) -> Path:
    """The lock file of an output: hidden beside it, so a folder holds only what its writer wrote."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def output_lock(target: Path, *, what: str = "output") -> Iterator[None]:
    """Write `target` (a file or a folder; it need not exist yet) as its only writer: a second
    glmocr-lf writing the same output is refused at once, so two runs never mix their files and
    both report success."""
    target = Path(target)
    ensure_dir(target.parent)
    busy = f"{target}: another glmocr-lf is writing this {what} now"
    with file_lock(output_lock_path(target), timeout_s=0, busy=busy,
                   hint="wait for it to finish, or write to another path"):
        yield
