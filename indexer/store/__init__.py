"""The archive on disk: ``catalog.duckdb`` (DuckDB, the source of truth), ``vectors/`` (FAISS
vector segments, ids = ``frames.frame_id``) and ``thumbs.bin`` (JPEG thumbnails).

Everything above reads and writes a store through this package; no other module runs SQL on the
catalog (except the user's own read-only statements in :mod:`search.sql`). One module per job:

* :mod:`.layout`: file names, connecting, transactions, fsync;
* :mod:`.schema`: tables, schema version, numbered migrations;
* :mod:`.records`: the named types that cross this boundary;
* :mod:`.vectors`: one FAISS vector file (memory-mapped reads);
* :mod:`.segments`: the vector layer (append-only segments, live rows, the background term);
* :mod:`.frames`: the frame table every query scores (frames in scope, their vectors mapped);
* :mod:`.ivf`: the IVF index that ranks candidates in large archives, and its lists file;
* :mod:`.reader`: :class:`Reader`, every read (info, labels, known files, the server's rows);
* :mod:`.writer`: :class:`Writer`, the single writer (lock, reconcile, commit, delete, text, thumbnails);
* :mod:`.upkeep`: merges, ``optimize`` and the IVF index's upkeep (``writer.layer``);
* :mod:`.label_tables`: saved labels and their answers (``writer.labels``);
* :mod:`.shared_footage`: matches, versions and the matching basis (``writer.footage``);
* :mod:`.levels`: the image rule's kept levels and when they still hold;
* :mod:`.thumbnails`: appending thumbnails to ``thumbs.bin``;
* :mod:`.check`: verifying and pruning a store.
"""

from .check import CheckReport, check_store, prune
from .frames import FrameTable
from .ivf import IvfCodec, IvfRef
from .layout import CATALOG, LOCK, SEGMENTS_DIR, THUMBS, VECTORS, has_catalog
from .levels import IMAGE_LEVELS_KEY, levels_fresh
from .reader import Reader
from .records import (
    FrameRecord,
    KnownFile,
    LabelCalibration,
    LabelDef,
    LabelResults,
    LabelStats,
    MergeReport,
    ModelSpec,
    OcrTodo,
    SegmentRow,
    ShotRecord,
    StoreInfo,
    ThumbTodo,
    VideoLabelRow,
    VideoRecord,
    VideoRef,
    normalize,
)
from .schema import MIGRATIONS, SCHEMA_VERSION
from .segments import SegmentRef
from .vectorview import VectorView
from .writer import Writer, ocr_row

__all__ = [
    "CATALOG",
    "IMAGE_LEVELS_KEY",
    "LOCK",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SEGMENTS_DIR",
    "THUMBS",
    "VECTORS",
    "CheckReport",
    "FrameRecord",
    "FrameTable",
    "IvfCodec",
    "IvfRef",
    "KnownFile",
    "LabelCalibration",
    "LabelDef",
    "LabelResults",
    "LabelStats",
    "MergeReport",
    "ModelSpec",
    "OcrTodo",
    "Reader",
    "SegmentRef",
    "SegmentRow",
    "ShotRecord",
    "StoreInfo",
    "ThumbTodo",
    "VectorView",
    "VideoLabelRow",
    "VideoRecord",
    "VideoRef",
    "Writer",
    "check_store",
    "has_catalog",
    "levels_fresh",
    "normalize",
    "ocr_row",
    "prune",
]
