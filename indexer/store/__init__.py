"""The archive on disk: ``catalog.duckdb`` (DuckDB, the source of truth), ``vectors/`` (FAISS
vector segments, ids = ``frames.frame_id``) and ``thumbs.bin`` (JPEG thumbnails).

Everything above reads and writes a store through this package; no other module runs SQL on the
catalog (except the user's own read-only statements in :mod:`search.sql`). One module per job:

* :mod:`.layout`: file names, connecting, transactions, fsync;
* :mod:`.schema`: tables, schema version, numbered migrations;
* :mod:`.records`: the named types that cross this boundary;
* :mod:`.vectors`: one FAISS vector file (memory-mapped reads);
* :mod:`.segments`: the vector layer (append-only segments, merges, the background term);
* :mod:`.ivf`: the IVF index that ranks candidates in large archives;
* :mod:`.reader`: every read (frame tables for queries, info, labels, the server's rows);
* :mod:`.writer`: the single writer (lock, reconcile, commit, delete, labels, thumbnails);
* :mod:`.thumbfile`: appending thumbnails to ``thumbs.bin``;
* :mod:`.check`: verifying and pruning a store.
"""

from .check import CheckReport, check_store, prune
from .ivf import IvfCodec, IvfRef
from .layout import CATALOG, LOCK, SEGMENTS_DIR, THUMBS, VECTORS, has_catalog
from .reader import (
    FrameTable,
    indexed_paths,
    known_files,
    label_stats,
    list_videos,
    load_frames,
    match_rows,
    common_sample_fps,
    frame_videos,
    image_levels_state,
    levels_fresh,
    ivf_layer,
    ocr_lines,
    ocr_todo,
    ocr_unread,
    read_connection,
    read_labels,
    read_match_basis,
    read_meta,
    read_thumbnail,
    shared_reads,
    store_info,
    store_spec,
    thumbs_todo,
    unmatched_videos,
    vector_layer,
    version_rows,
    video_detail,
    video_path,
    video_refs,
)
from .records import (
    FrameRecord,
    KnownFile,
    LabelCalibration,
    LabelDef,
    LabelResults,
    LabelStats,
    MergeReport,
    OcrTodo,
    SegmentRow,
    ShotRecord,
    StoreInfo,
    ThumbTodo,
    VideoLabelRow,
    VideoRecord,
    VideoRef,
)
from .schema import MIGRATIONS, SCHEMA_VERSION
from .segments import SegmentRef, VectorView
from .writer import Writer, ocr_row

__all__ = [
    "CATALOG", "LOCK", "SEGMENTS_DIR", "THUMBS", "VECTORS", "MIGRATIONS", "SCHEMA_VERSION",
    "CheckReport", "FrameRecord", "IvfCodec", "IvfRef", "FrameTable", "KnownFile", "LabelCalibration", "LabelDef", "LabelResults", "LabelStats", "MergeReport", "OcrTodo",
    "SegmentRef", "SegmentRow", "ShotRecord", "StoreInfo", "ThumbTodo", "VectorView", "VideoLabelRow", "VideoRecord",
    "VideoRef", "Writer",
    "check_store", "has_catalog", "indexed_paths", "known_files", "label_stats", "list_videos", "load_frames", "match_rows", "ocr_lines", "ocr_row", "ocr_todo", "ocr_unread", "prune",
    "read_connection", "read_labels", "read_match_basis", "read_meta", "read_thumbnail", "shared_reads", "store_info", "store_spec", "thumbs_todo",
    "unmatched_videos", "vector_layer", "version_rows", "video_detail", "frame_videos", "common_sample_fps", "ivf_layer", "video_path", "video_refs",
]
