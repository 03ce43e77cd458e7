"""`data convert` from where OCR data is published: Parquet files, Arrow files and
`datasets.save_to_disk` folders, and hub dataset ids found in the local cache.

One streaming pass, a batch of rows at a time (memory stays flat on a large file: Parquet row
group by row group, Arrow files by plain reads rather than a memory map): each image cell
(bytes, the `datasets` Image struct `{"bytes", "path"}`, or a path) is checked and stored under its
hash in OUT_images/, so a re-run writes nothing new. Every row problem is collected with its row index
(counted from 0) and reported together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data.collected import Collected, Progress, images_dir
from glmocr_lf.data.imagestore import decode_check, store
from glmocr_lf.runtime.constants import ENV_HF_HUB_OFFLINE, TASK_PROMPTS
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.host import find_module
from glmocr_lf.runtime.modelfiles import hub_offline

BATCH_ROWS = 256
ARROW_SUFFIXES = (".parquet", ".arrow")
# `datasets.save_to_disk` writes one of these beside its .arrow files
SAVED_MARKERS = ("state.json", "dataset_dict.json")


@dataclass(frozen=True)
class TabularOptions:
    image_col: str = "image"
    text_col: str = "text"
    task_col: str | None = None  # None: a column named `task` when there is one
    split: str | None = None  # for folders and hub ids holding several splits (default: train)


def is_tabular_source(source: Path) -> bool:
    """A Parquet/Arrow file, a save_to_disk folder, or (not a path here) a hub id like `org/name`."""
    if source.is_file():
        return source.suffix.lower() in ARROW_SUFFIXES
    if source.is_dir():
        return any((source / marker).is_file() for marker in SAVED_MARKERS)
    return _hub_id(str(source)) is not None


def _hub_id(text: str) -> str | None:
    parts = text.split("/")
    if len(parts) == 2 and all(parts) and not os.path.splitext(text)[1]:
        return text
    return None


@dataclass
class _Table:
    """Batches of rows, their column names and how many rows there are in all."""

    columns: list[str]
    rows: int  # 0: not known before reading (an Arrow stream file)
    batches: Iterator[Any]  # pyarrow RecordBatch or Table
    base: Path | None  # relative image paths resolve here


def collect_tabular(source: Path, options: TabularOptions, output: Path, *, task: str | None,
                    prompt: str | None, progress: Progress | None = None) -> Collected:
    table = _open(source, options)
    missing = [c for c in (options.image_col, options.text_col, options.task_col) if c and c not in table.columns]
    if missing:
        raise DataError(f"{source}: no column {', '.join(map(repr, missing))}; columns: {', '.join(table.columns)}",
                        hint="name them with --image-col / --text-col / --task-col")
    task_col = options.task_col or ("task" if "task" in table.columns else None)
    folder = images_dir(output)
    collected = Collected(images_dir=folder)
    out_dir = os.path.abspath(output.parent)
    index = 0
    for batch in table.batches:
        images = batch.column(options.image_col).to_pylist()
        texts = batch.column(options.text_col).to_pylist()
        tasks = batch.column(task_col).to_pylist() if task_col else [None] * len(images)
        for image, text, row_task in zip(images, texts, tasks, strict=True):
            _row(collected, f"row {index}", image, text, row_task, table.base, folder, out_dir, task, prompt)
            index += 1
        if progress:
            progress(index, table.rows)
    if index == 0:
        raise DataError(f"{source}: no rows")
    if table.rows and index != table.rows:  # e.g. a dataset whose rows are selected by an index map
        raise DataError(f"{source}: read {index} rows from its Arrow files, but it has {table.rows}",
                        hint="save it again with save_to_disk (it writes the selected rows only)")
    return collected


def _row(collected: Collected, where: str, image: Any, text: Any, row_task: Any, base: Path | None,
         folder: Path, out_dir: str, task: str | None, prompt: str | None) -> None:
    problems = collected.problems
    name = str(row_task) if row_task else (task or "text")
    found = False
    if name not in TASK_PROMPTS:
        problems.append(f"{where}: task: unknown task {name!r}; use one of {', '.join(TASK_PROMPTS)}")
    elif not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: text: {'missing' if text is None else 'empty'} target text")
    else:
        found = True
    data = _image_bytes(image, base)
    if isinstance(data, str):
        problems.append(f"{where}: image: {data}")
        return
    decoded = decode_check(data)
    if isinstance(decoded, str):
        problems.append(f"{where}: image: {decoded}")
        return
    if not found or problems:  # once a row is bad, only check the rest (nothing will be written)
        return
    path, _ = store(folder, data, decoded.suffix)
    rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
    collected.add(rel, name, prompt, text)


def _image_bytes(cell: Any, base: Path | None) -> bytes | str:
    """The image's bytes, or what is wrong with the cell."""
    if isinstance(cell, dict):  # the `datasets` Image feature: {"bytes": ..., "path": ...}
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell) if len(cell) else "empty image bytes"
    if isinstance(cell, str) and cell:
        path = Path(cell) if base is None or os.path.isabs(cell) else base / cell
        try:
            return path.read_bytes()
        except OSError as err:
            return f"cannot read {path}: {err.strerror or err}"
    return "missing image" if cell in (None, "") else f"unsupported image cell ({type(cell).__name__})"


def _open(source: Path, options: TabularOptions) -> _Table:
    columns = [c for c in (options.image_col, options.text_col, options.task_col) if c]
    if source.is_file() and source.suffix.lower() == ".parquet":
        return _open_parquet(source, columns)
    if source.is_file():
        return _open_arrow_file(source)
    return _open_datasets(source, options)


def _require(module: str) -> None:
    if not find_module(module):
        raise DataError(f"reading this source needs the {module} package",
                        hint="pip install 'glmocr-lf[train]' (it brings pyarrow and datasets)")


def _open_parquet(source: Path, wanted: list[str]) -> _Table:
    _require("pyarrow")
    import pyarrow.parquet as pq

    try:
        # pre_buffer would fetch every row group's column chunks up front: the whole file in memory
        parquet = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError...: all mean "not Parquet"
        raise DataError(f"{source}: not a readable Parquet file ({err})") from None
    names = parquet.schema_arrow.names
    columns = [c for c in dict.fromkeys(wanted + (["task"] if "task" in names else [])) if c in names]
    return _Table(names, parquet.metadata.num_rows, _row_group_batches(parquet, columns), source.parent)


def _row_group_batches(parquet: Any, columns: list[str]) -> Iterator[Any]:
    """Batches of one row group at a time: memory holds a row group's wanted columns, not the file."""
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns)


def _open_arrow_file(source: Path) -> _Table:
    _require("pyarrow")
    import pyarrow as pa

    try:
        with pa.OSFile(str(source)) as handle:
            names = _arrow_reader(handle).schema.names
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"{source}: not a readable Arrow file ({err})") from None
    return _Table(names, 0, _arrow_batches([source]), source.parent)


def _arrow_reader(handle: Any) -> Any:
    import pyarrow as pa

    try:
        return pa.ipc.open_file(handle)
    except pa.ArrowInvalid:  # datasets writes the stream format
        handle.seek(0)
        return pa.ipc.open_stream(handle)


def _arrow_batches(paths: list[Path]) -> Iterator[Any]:
    """Record batches read from the files, one at a time. Plain reads, not a memory map: mapped
    pages of a file read through stay resident, so a 700 MB dataset would cost 700 MB of RSS."""
    import pyarrow as pa

    for path in paths:
        with pa.OSFile(str(path)) as handle:
            reader = _arrow_reader(handle)
            if isinstance(reader, pa.ipc.RecordBatchFileReader):
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            else:
                yield from reader


def _open_datasets(source: Path, options: TabularOptions) -> _Table:
    _require("datasets")
    import datasets

    hub = not source.exists()
    try:
        if hub:
            loaded: Any = datasets.load_dataset(str(source), split=options.split or None)
        else:
            loaded = datasets.load_from_disk(str(source))
    except Exception as err:  # datasets raises many types (offline, missing cache, bad folder)
        offline = hub_offline()
        where = f"not in the local cache and {ENV_HF_HUB_OFFLINE} is set" if hub and offline else str(err).splitlines()[0]
        what = "no such file or folder, nor a hub dataset: " if hub else "cannot load the dataset: "
        raise DataError(f"{source}: {what}{where}") from None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        splits = list(loaded)
        split = options.split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
        if split not in splits:
            raise DataError(f"{source}: {'no split ' + repr(options.split) if options.split else 'several splits'}; "
                            f"splits: {', '.join(splits)}", hint="pick one with --split")
        loaded = loaded[split]
    base = None if hub else source
    files = [Path(f["filename"]) for f in loaded.cache_files]
    if files:  # stored cells as they are (Image -> {"bytes", "path"}), without decoding them
        return _Table(list(loaded.column_names), len(loaded), _arrow_batches(files), base)
    arrow = loaded.with_format("arrow")  # an in-memory dataset: nothing to stream from
    return _Table(list(loaded.column_names), len(loaded), arrow.iter(batch_size=BATCH_ROWS), base)
