"""Where a store's files are and how they are opened: file names, catalog connections, fsync.

A store folder::

    catalog.duckdb   meta, videos, frames, shots, labels, segments, video_labels, failures,
                     vector_segments (the source of truth)
    vectors/         the vector layer: immutable segment files, one L2-normalised vector per
                     frame, id = frames.frame_id (see segments.py)
    thumbs.bin       the frames' JPEG thumbnails, appended (offsets in frames)
    writer.lock      held (flock) by the one process that writes

(Stores of schema 3 and older kept all vectors in one file, ``frames.faiss``; the writer moves it
into ``vectors/`` as segment 0.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any, Iterator

from indexer.errors import StoreError, StoreNotFound

CATALOG = "catalog.duckdb"
VECTORS = "frames.faiss"  # schema 3 and older: the single vector file
SEGMENTS_DIR = "vectors"
THUMBS = "thumbs.bin"
LOCK = "writer.lock"
OPEN_RETRY_S = 15.0  # a reader waits this long for a commit's short-lived lock


def now() -> dt.datetime:
    """UTC now, naive (as DuckDB TIMESTAMP columns store it)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def catalog_path(store_dir: str | os.PathLike[str]) -> Path:
    """The catalog file of an existing store.

    Raises:
        StoreNotFound: no catalog in that folder.
    """
    catalog = Path(store_dir) / CATALOG
    if not catalog.is_file():
        raise StoreNotFound(
            f"no archive at {Path(store_dir).resolve()}: run `archive index PATH` first, or pass --store DIR."
        )
    return catalog


def has_catalog(store_dir: str | os.PathLike[str]) -> bool:
    return (Path(store_dir) / CATALOG).is_file()


def connect(path: Path, read_only: bool, retry_s: float = OPEN_RETRY_S) -> Any:
    """Open the catalog, waiting out another process's short-lived lock.

    Raises:
        StoreError: still locked after ``retry_s``, or not a DuckDB file.
    """
    import duckdb

    deadline = time.monotonic() + retry_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


@contextlib.contextmanager
def transaction(con: Any) -> Iterator[Any]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (which is re-raised)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file name in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bytes_on_disk(store_dir: str | os.PathLike[str]) -> int:
    """Total size of the store's files, the vector segments included (an index run may rename or
    delete some meanwhile)."""
    size = 0
    root = Path(store_dir)
    for p in [*root.iterdir(), *((root / SEGMENTS_DIR).iterdir() if (root / SEGMENTS_DIR).is_dir() else [])]:
        with contextlib.suppress(OSError):
            if p.is_file():
                size += p.stat().st_size
    return size
