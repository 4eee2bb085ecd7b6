"""Reading a store: everything the read path, the server and the planner need, without a writer.

Readers open the catalog read-only (waiting out a commit's short lock), so they work while an
index run is going, and refuse a catalog of another schema version with a message saying what to
do. Vectors come memory-mapped from the vector file; no video file is opened here.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..encoder import ModelSpec
from ..errors import StoreError
from . import ivf as ivfmod
from . import segments
from .layout import THUMBS, bytes_on_disk, catalog_path, connect, has_catalog
from .records import KnownFile, LabelCalibration, LabelDef, LabelStats, OcrTodo, Row, StoreInfo, ThumbTodo, VideoRef
from .schema import require_current
from .segments import VectorView


def read_meta(store_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The ``meta`` table of an existing store (model, pretrained, dim, schema_version).

    Works on catalogs of any schema version (the writer reads it before migrating).

    Raises:
        StoreNotFound: no catalog in that folder.
    """
    con = connect(catalog_path(store_dir), read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    finally:
        con.close()


def store_spec(store_dir: str | os.PathLike[str]) -> ModelSpec:
    """Which model made the store's vectors."""
    meta = read_meta(store_dir)
    return ModelSpec(meta["model"], meta["pretrained"])


@contextlib.contextmanager
def read_connection(store_dir: str | os.PathLike[str]) -> Iterator[Any]:
    """A read-only DuckDB connection to the catalog (works while an index run is going).

    Raises:
        StoreNotFound: no archive in that folder.
        StoreError: the catalog's schema is older or newer than this program's.
    """
    shared = getattr(_SHARED, "cons", {}).get(_catalog_key(store_dir))
    if shared is not None:  # inside shared_reads: its connection, left open
        yield shared
        return
    con = connect(catalog_path(store_dir), read_only=True)
    try:
        require_current(con, store_dir)
        yield con
    finally:
        con.close()


_SHARED = threading.local()  # per thread: catalog path -> the connection shared_reads opened


def _catalog_key(store_dir: str | os.PathLike[str]) -> str:
    return os.path.realpath(catalog_path(store_dir))


@contextlib.contextmanager
def shared_reads(store_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Inside, every :func:`read_connection` of this store in this thread gets one connection,
    opened and checked once (about 20 ms a connection saved: comparing a new video with the archive
    reads the catalog six times). What it reads is the catalog as of each statement, as always.
    Keep it short: an open read connection holds the catalog's file lock, so a writer in another
    process waits for it (up to ``OPEN_RETRY_S``), and one in this process is refused (DuckDB
    allows no read-write connection beside a read-only one)."""
    cons = _SHARED.__dict__.setdefault("cons", {})
    key = _catalog_key(store_dir)
    if key in cons:  # nested: the outer one keeps it
        yield
        return
    con = connect(catalog_path(store_dir), read_only=True)
    try:
        require_current(con, store_dir)
        cons[key] = con
        yield
    finally:
        cons.pop(key, None)
        con.close()


@dataclass
class FrameTable:
    """The frames in scope, sorted by (video_id, ts_s), and where their vectors are.

    ``vectors`` is every vector of the store, memory-mapped from its segments and seen as one
    matrix; ``row[i]`` is the row of frame ``i``. Only frames present in both the catalog and the
    vector layer are listed. ``bg_lse`` is each frame's stored background term (None when any
    segment has none), computed with ``bg_key``. Scoring is the read path's job (:mod:`search.scan`).
    """

    frame_id: np.ndarray  # int64
    video_id: np.ndarray  # int64
    ts_s: np.ndarray  # float64, when the frame was sampled
    end_s: np.ndarray  # float64, the end of the time it stands for: the next sample, or its shot's end
    shot_id: np.ndarray  # int64
    shot_len_s: np.ndarray  # float64, length of the frame's shot
    blank: np.ndarray  # bool, the frame's shot is black/blank/slate
    row: np.ndarray  # int64, into vectors
    vectors: VectorView  # (N, dim) float32, memory-mapped
    thumb_offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: no thumbnail
    thumb_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    videos: dict[int, dict[str, Any]] = field(default_factory=dict)
    bg_lse: np.ndarray | None = None  # float64 per frame (indexer.terms; NaN: not stored), or None
    bg_key: str | None = None
    segments: list[segments.SegmentRef] = field(default_factory=list)  # the vectors' segments, in view order
    ivf: ivfmod.IvfRef | None = None  # the store's IVF index when the table was read (None: none)
    ivf_lists: ivfmod.ListsRef | None = None  # ... and its lists file (None: none)
    # the start of the time each frame stands for: its shot's start for the first sample of a shot
    # entered by a dissolve (whose middle is only known after the frames around it were sampled),
    # else ts_s; None: ts_s
    from_s: np.ndarray | None = None

    @property
    def start_s(self) -> np.ndarray:
        return self.ts_s if self.from_s is None else self.from_s

    def __len__(self) -> int:
        return len(self.frame_id)

    def subset(self, idx: np.ndarray) -> "FrameTable":
        """The frames at positions ``idx`` (in that order, which must keep each video's frames
        together and in time order), sharing the vectors."""
        idx = np.asarray(idx, np.int64)
        return FrameTable(
            frame_id=self.frame_id[idx], video_id=self.video_id[idx], ts_s=self.ts_s[idx], end_s=self.end_s[idx],
            shot_id=self.shot_id[idx], shot_len_s=self.shot_len_s[idx], blank=self.blank[idx], row=self.row[idx],
            vectors=self.vectors,
            thumb_offset=self.thumb_offset[idx] if len(self.thumb_offset) else self.thumb_offset,
            thumb_bytes=self.thumb_bytes[idx] if len(self.thumb_bytes) else self.thumb_bytes,
            videos=self.videos, bg_lse=None if self.bg_lse is None else self.bg_lse[idx], bg_key=self.bg_key,
            segments=self.segments, ivf=self.ivf, ivf_lists=self.ivf_lists, from_s=None if self.from_s is None else self.from_s[idx])

    def ivf_search(self, store_dir: str | os.PathLike[str], codec: ivfmod.IvfCodec) -> tuple[ivfmod.IvfSearch, np.ndarray]:
        """The IVF index of this table's segments, ready to search (:func:`ivfmod.open_search`:
        its lists file memory-mapped, the rows written since in memory), and the positions of the
        frames whose segments have no codes in it (to be scored exactly)."""
        root = Path(store_dir)
        k_of = {ref.segment_id: k for k, ref in enumerate(self.segments)}
        coded = [r for r in self.segments if self.ivf and r.ivf_id == self.ivf.ivf_id]
        search, lost = ivfmod.open_search(root, codec, self.ivf_lists, coded)
        bare = [r for r in self.segments if r not in coded] + lost
        mask = np.zeros(len(self), bool)
        for r in bare:
            k = k_of[r.segment_id]
            lo, hi = self.vectors.offsets[k], self.vectors.offsets[k + 1]
            mask |= (self.row >= lo) & (self.row < hi)
        return search, np.flatnonzero(mask)

    def release_pages(self) -> None:
        """Hand the mapped vector pages back to the OS page cache (resident memory stays flat)."""
        self.vectors.release_pages()


def load_frames(store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None = None) -> FrameTable:
    """Everything a query needs, without opening any video: frames, their vectors, video rows.

    Args:
        store_dir: the store folder.
        video_ids: limit to these videos (None: all).

    Raises:
        StoreNotFound: no archive there.
        StoreError: the vector file is missing or damaged while the catalog lists frames.
    """
    for attempt in (0, 1):
        try:
            return _load_frames(store_dir, video_ids)
        except StoreError:
            if attempt:  # a merge may have swapped segments between reading the list and the files
                raise
    raise AssertionError("unreachable")


def _load_frames(store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None) -> FrameTable:
    with read_connection(store_dir) as con:
        where, params = "", []
        if video_ids is not None:
            if not video_ids:
                video_ids = [-1]
            where = f" WHERE video_id IN ({', '.join('?' for _ in video_ids)})"
            params = list(video_ids)
        fwhere = where.replace("video_id", "f.video_id")
        cols = con.execute(
            "SELECT f.frame_id, f.video_id, f.ts_s, f.end_s, f.shot_id, s.end_s - s.start_s AS shot_len_s, "
            "coalesce(s.start_s, f.ts_s) AS shot_start_s, coalesce(s.end_s, f.end_s) AS shot_end_s, "
            "s.kind <> 'content' AS blank, coalesce(f.thumb_offset, -1) AS thumb_offset, "
            f"coalesce(f.thumb_bytes, 0) AS thumb_bytes FROM frames f JOIN shots s USING (shot_id){fwhere} "
            "ORDER BY f.video_id, f.ts_s",
            params,
        ).fetchnumpy()
        vrows = con.execute(f"SELECT * FROM videos{where}", params)
        names = [d[0] for d in vrows.description]
        videos = {int(r[0]): dict(zip(names, r)) for r in vrows.fetchall()}
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        dim = int(meta["dim"])
        refs = segments.registered(con)
        # an index trained for matching only does not rank queries (see ivfmod.MATCHING_ONLY_KEY)
        ivf_ref = None if meta.get(ivfmod.MATCHING_ONLY_KEY) else ivfmod.current(con)
        lists_ref = ivfmod.current_lists(con) if ivf_ref is not None else None
    frame_id = np.asarray(cols["frame_id"], np.int64)
    vecs, id_parts, bgs = segments.open_segments(Path(store_dir), refs, dim, concat_ids=False)
    found = _locate(frame_id, refs, id_parts, vecs.offsets) if video_ids is not None else None
    if found is not None:  # a few videos: their rows, without reading every id
        ok, row = found
    else:
        ids = np.concatenate(id_parts).astype(np.int64, copy=False) if id_parts else np.zeros(0, np.int64)
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], frame_id)
        pos_c = np.minimum(pos, max(len(ids) - 1, 0))
        ok = (pos < len(ids)) & (ids[order][pos_c] == frame_id) if len(ids) else np.zeros(len(frame_id), bool)
        row = order[pos_c][ok] if len(ids) else np.zeros(0, np.int64)
    bg_lse, bg_key = None, None
    keyed = Counter(r.bg_key for r, b in zip(refs, bgs) if r.bg_key is not None and b is not None)
    if keyed:  # the commonest key; frames of segments with another key, or none, get NaN
        bg_key = keyed.most_common(1)[0][0]
        bg_lse = np.full(len(row), np.nan)
        seg_of = np.searchsorted(vecs.offsets, row, side="right") - 1
        for k in np.unique(seg_of):
            b = bgs[k]
            if b is not None and refs[k].bg_key == bg_key:
                m = seg_of == k
                bg_lse[m] = b[row[m] - vecs.offsets[k]]
    # Each sample stands for the time up to the next one, within its shot: a shot entered by a
    # dissolve begins at the dissolve's middle, which no sample was taken at (TransNetV2 decides it
    # after those frames went by), so its first sample stands for the time from the shot's start,
    # and the sample before it only up to there (the same holds for a cut or fade TransNetV2 adds).
    # Shots the fast detector starts have their first frame sampled: nothing changes for them.
    ts = np.asarray(cols["ts_s"], np.float64)[ok]
    shot = np.asarray(cols["shot_id"], np.int64)[ok]
    first = np.ones(len(shot), bool)
    first[1:] = shot[1:] != shot[:-1]
    shot_start = np.asarray(cols["shot_start_s"], np.float64)[ok]
    from_s = np.where(first & (shot_start < ts), shot_start, ts)
    end = np.minimum(np.asarray(cols["end_s"], np.float64)[ok], np.maximum(np.asarray(cols["shot_end_s"], np.float64)[ok], ts))
    return FrameTable(
        frame_id=frame_id[ok],
        video_id=np.asarray(cols["video_id"], np.int64)[ok],
        ts_s=ts,
        end_s=end,
        from_s=from_s,
        shot_id=shot,
        shot_len_s=np.asarray(cols["shot_len_s"], np.float64)[ok],
        blank=np.asarray(cols["blank"], bool)[ok],
        row=row.astype(np.int64),
        thumb_offset=np.asarray(cols["thumb_offset"], np.int64)[ok],
        thumb_bytes=np.asarray(cols["thumb_bytes"], np.int64)[ok],
        vectors=vecs,
        videos=videos,
        bg_lse=bg_lse,
        bg_key=bg_key,
        segments=refs,
        ivf=ivf_ref,
        ivf_lists=lists_ref,
    )


def _locate(frame_id: np.ndarray, refs: Sequence[segments.SegmentRef], id_parts: Sequence[np.ndarray],
            offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(found, row)`` of each frame id: its segment by the segments' id ranges, then a binary
    search in that segment's ids (written in ascending order), touching a few pages of them and
    not the whole archive's. None when some frame is not found so (a segment out of order, or a
    lost row): the caller then looks every id up."""
    if not len(frame_id):
        return np.zeros(0, bool), np.zeros(0, np.int64)
    have = np.array([k for k, r in enumerate(refs) if r.n_vectors], np.int64)
    if not len(have):
        return None
    lows = np.array([refs[k].min_frame_id for k in have], np.int64)
    by = np.argsort(lows, kind="stable")
    at = np.searchsorted(lows[by], frame_id, side="right") - 1
    if (at < 0).any():
        return None
    seg = have[by[at]]
    highs = np.array([r.max_frame_id for r in refs], np.int64)
    if (frame_id > highs[seg]).any():
        return None
    row = np.empty(len(frame_id), np.int64)
    for k in np.unique(seg):
        m = seg == k
        ids = id_parts[k]
        pos = np.minimum(np.searchsorted(ids, frame_id[m]), len(ids) - 1)
        if not np.array_equal(np.asarray(ids[pos], np.int64), frame_id[m]):
            return None
        row[m] = offsets[k] + pos
    return np.ones(len(frame_id), bool), row


def store_info(store_dir: str | os.PathLike[str]) -> StoreInfo:
    """Counts, model and size on disk of a store.

    Raises:
        StoreNotFound: no archive there.
    """
    with read_connection(store_dir) as con:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        videos, seconds = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) FROM videos").fetchall()[0]
        frames = con.execute("SELECT count(*) FROM frames").fetchall()[0][0]
        failures = con.execute("SELECT count(DISTINCT path) FROM failures").fetchall()[0][0]
        n_vectors, n_segments = con.execute(
            "SELECT coalesce(sum(n_vectors), 0), count(*) FROM vector_segments").fetchall()[0]
        detectors = dict(con.execute(
            "SELECT coalesce(shot_detector, 'unknown'), count(*) FROM videos GROUP BY 1 ORDER BY 2 DESC").fetchall())
        transitions = dict(con.execute(
            "SELECT coalesce(transition, 'unknown'), count(*) FROM shots GROUP BY 1 ORDER BY 2 DESC").fetchall())
        kinds = dict(con.execute("SELECT kind, sum(n_vectors) FROM vector_segments GROUP BY 1 ORDER BY 1").fetchall())
        text_lines, text_videos = con.execute(
            "SELECT (SELECT count(*) FROM ocr), count(*) FILTER (WHERE ocr_lines IS NOT NULL) FROM videos").fetchall()[0]
        groups, grouped, n_matches, todo = con.execute(
            "SELECT (SELECT count(DISTINCT group_id) FROM versions), (SELECT count(*) FROM versions), "
            "(SELECT count(*) FROM matches), (SELECT count(*) FROM videos WHERE matched IS NULL)").fetchall()[0]
        from . import matchtables  # noqa: PLC0415

        versions = {"groups": int(groups), "videos_in_groups": int(grouped), "matches": int(n_matches),
                    "not_compared": int(todo), "min_shared_s": matchtables.min_shared(con)}
        image_levels = None
        if IMAGE_LEVELS_KEY in meta:
            try:
                image_levels = json.loads(meta[IMAGE_LEVELS_KEY])
            except ValueError:
                image_levels = None
        if not isinstance(image_levels, dict):
            image_levels = None
        else:
            image_levels["current"] = levels_fresh(image_levels, levels_stamp(con))
        ivf_ref = ivfmod.current(con)
        lists_ref = ivfmod.current_lists(con)
        covered = 0 if ivf_ref is None else int(con.execute(
            "SELECT coalesce(sum(n_vectors), 0) FROM vector_segments WHERE ivf_id = ?", [ivf_ref.ivf_id]).fetchall()[0][0])
    from .. import settings  # noqa: PLC0415

    ivf = None
    if ivf_ref is not None:
        grown = frames / max(1, ivf_ref.archive_vectors)
        ivf = {"factory": ivf_ref.factory, "trained_vectors": ivf_ref.trained_vectors,
               "archive_vectors_at_training": ivf_ref.archive_vectors, "vectors_with_codes": covered,
               "growth_since_training": round(grown, 2), "stale": grown > settings.IVF_RETRAIN_GROWTH or covered < n_vectors,
               "nprobe": settings.ivf_nprobe(), "matching_only": bool(meta.get(ivfmod.MATCHING_ONLY_KEY)),
               # the lists file (rows in it, dead ones included; 0: none yet) and its highest frame id
               "lists_vectors": lists_ref.vectors if lists_ref and lists_ref.ivf_id == ivf_ref.ivf_id else 0,
               "lists_max_frame_id": lists_ref.max_frame_id if lists_ref and lists_ref.ivf_id == ivf_ref.ivf_id else None}
    if ivf_ref is not None and frames >= settings.ivf_frames() and not ivf["matching_only"]:
        how = f"IVF index ({ivf_ref.factory}, nprobe {settings.ivf_nprobe()}): candidates rescored exactly"
        if ivf["stale"]:
            how += "; stale: run `archive optimize`"
    elif frames >= settings.bf16_scan_frames():
        how = "scan of an int8 copy (bf16 without torch's int8 kernel) from the second query of a process, shown videos rescored exactly"
    else:
        how = "exact scan"
    root = Path(store_dir)
    return StoreInfo(
        path=str(root.resolve()),
        videos=int(videos),
        frames=int(frames),
        seconds=round(float(seconds), 3),
        model=meta["model"],
        pretrained=meta["pretrained"],
        dim=int(meta["dim"]),
        bytes=bytes_on_disk(root),
        schema_version=int(meta["schema_version"]),
        failures=int(failures),
        vectors=int(n_vectors),
        segments=int(n_segments),
        shot_detectors={str(k): int(v) for k, v in detectors.items()},
        transitions={str(k): int(v) for k, v in transitions.items()},
        vector_kinds={str(k): int(v) for k, v in kinds.items()},
        query_index=how,
        ivf=ivf,
        ocr=meta.get("ocr") == "1",
        text_lines=int(text_lines),
        text_videos=int(text_videos),
        versions=versions,
        image_levels=image_levels,
    )


def ocr_lines(store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None = None) -> list[Row]:
    """The ``ocr`` rows (all videos, or ``video_ids``) by video and time, with ``text_norm``."""
    with read_connection(store_dir) as con:
        if video_ids is None:
            return _records(con.execute("SELECT * FROM ocr ORDER BY video_id, start_s, y, x"))
        return _records(con.execute(
            "SELECT * FROM ocr WHERE video_id IN (SELECT unnest(?::INTEGER[])) ORDER BY video_id, start_s, y, x",
            [list(video_ids)]))


def ocr_unread(store_dir: str | os.PathLike[str], video_ids: Sequence[int]) -> int:
    """How many of ``video_ids`` have no on-screen text read."""
    with read_connection(store_dir) as con:
        return int(con.execute("SELECT count(*) FROM videos WHERE ocr_lines IS NULL AND video_id IN "
                               "(SELECT unnest(?::INTEGER[]))", [list(video_ids)]).fetchall()[0][0])


def read_labels(store_dir: str | os.PathLike[str]) -> list[LabelDef]:
    """Saved labels, sorted by name."""
    with read_connection(store_dir) as con:
        rows = con.execute(
            "SELECT label, prompts, threshold, calibrated_at, calib_precision, calib_recall, calib_videos, "
            "calib_positives, calib_target, calib_truth, ocr FROM labels ORDER BY label").fetchall()
    return [LabelDef(r[0], list(r[1]), r[2], None if r[3] is None or r[2] is None else
                     LabelCalibration(r[4], r[5], r[6], r[7], r[8], r[9], r[3]), list(r[10] or [])) for r in rows]


def label_stats(store_dir: str | os.PathLike[str]) -> dict[str, LabelStats]:
    """Per saved label with results: how many videos show it, and for how many seconds in all."""
    with read_connection(store_dir) as con:
        rows = con.execute(
            "SELECT label, count(*) FILTER (WHERE present), coalesce(sum(duration_s), 0) FROM video_labels GROUP BY label"
        ).fetchall()
    return {r[0]: LabelStats(int(r[1]), float(r[2])) for r in rows}


FEW_VIDEOS = 1000  # up to this many videos, their frames are looked up by an IN list (not a scan of all)


def known_files(store_dir: str | os.PathLike[str], paths: Sequence[str] | None = None) -> dict[str, KnownFile]:
    """The indexed videos by path, all of them or those of ``paths`` ({} when there is no store yet).
    Asking for ``paths`` reads only their rows of ``videos`` and, for the thumbnail check, only
    their frames."""
    if not has_catalog(store_dir):
        return {}
    if paths is not None and not paths:
        return {}
    with read_connection(store_dir) as con:
        if paths is None:
            con.execute("CREATE TEMP VIEW wanted AS SELECT * FROM videos")
        else:
            con.execute("CREATE TEMP TABLE wanted_paths AS SELECT unnest(?::VARCHAR[]) AS path", [list(paths)])
            con.execute("CREATE TEMP TABLE wanted AS SELECT v.* FROM videos v JOIN wanted_paths USING (path)")
        rows = con.execute("SELECT w.video_id, w.path, w.size_bytes, w.mtime, w.fingerprint, w.sample_fps, "
                           "w.shot_detector FROM wanted w").fetchall()
        ids = [r[0] for r in rows]
        if len(ids) <= FEW_VIDEOS:  # a few: their frames only (frames lie in video order: few row groups)
            no_thumbs = {r[0] for r in con.execute(
                f"SELECT DISTINCT video_id FROM frames WHERE thumb_bytes IS NULL AND video_id IN ({', '.join('?' * len(ids))})",
                ids).fetchall()} if ids else set()
        else:
            no_thumbs = {r[0] for r in con.execute(
                "SELECT DISTINCT video_id FROM frames WHERE thumb_bytes IS NULL").fetchall()}
    return {r[1]: KnownFile(r[2], r[3], r[4], r[5], r[0] not in no_thumbs, r[6]) for r in rows}


def indexed_paths(store_dir: str | os.PathLike[str], under: Sequence[str | os.PathLike[str]] | None = None) -> list[str]:
    """Every indexed video's path ([] when there is no store yet); ``under``: only those that
    are one of these paths or lie in one of these folders (absolute paths, as indexed)."""
    if not has_catalog(store_dir):
        return []
    with read_connection(store_dir) as con:
        if under is None:
            return [r[0] for r in con.execute("SELECT path FROM videos").fetchall()]
        roots = [os.path.abspath(os.path.expanduser(p)) for p in under]
        if not roots:
            return []
        folders = [r.rstrip(os.sep) + os.sep for r in roots]
        cond = " OR ".join(["path = ? OR starts_with(path, ?)"] * len(roots))
        params = [x for pair in zip(roots, folders) for x in pair]
        return [r[0] for r in con.execute(f"SELECT path FROM videos WHERE {cond}", params).fetchall()]


def video_refs(store_dir: str | os.PathLike[str]) -> list[VideoRef]:
    """Every indexed video's id, path, name, duration and native frame rate."""
    with read_connection(store_dir) as con:
        rows = con.execute("SELECT video_id, path, name, duration_s, fps FROM videos ORDER BY video_id").fetchall()
    return [VideoRef(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def thumbs_todo(store_dir: str | os.PathLike[str], path: str) -> list[ThumbTodo]:
    """The frames of the video indexed from ``path`` that have no thumbnail yet, by time."""
    with read_connection(store_dir) as con:
        rows = con.execute(
            "SELECT f.frame_id, f.ts_s, v.sample_fps FROM frames f JOIN videos v USING (video_id) "
            "WHERE v.path = ? AND f.thumb_bytes IS NULL ORDER BY f.ts_s", [path]).fetchall()
    return [ThumbTodo(int(r[0]), float(r[1]), float(r[2])) for r in rows]


def read_thumbnail(store_dir: str | os.PathLike[str], offset: int, length: int) -> bytes:
    """One frame's JPEG thumbnail from thumbs.bin.

    Raises:
        StoreError: the thumbnail file is missing or shorter than the catalog says.
    """
    path = Path(store_dir) / THUMBS
    try:
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), length, offset)
    except OSError as exc:
        raise StoreError(f"cannot read thumbnails from {path}: {exc.strerror or exc}") from exc
    if len(data) != length:
        raise StoreError(f"{path} is shorter than the catalog says: run `archive index` again on the same folders.")
    return data


# -- catalog rows for the search page's API (JSON-shaped: dicts by column name) ------------------
def ocr_todo(store_dir: str | os.PathLike[str], paths: Sequence[str]) -> list[OcrTodo]:
    """The videos of ``paths`` whose on-screen text was not read, with their frames and shots."""
    if not paths or not has_catalog(store_dir):
        return []
    with read_connection(store_dir) as con:
        vids = con.execute(
            "SELECT video_id, path, sample_fps FROM videos WHERE ocr_lines IS NULL AND path IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY path", [list(paths)]).fetchall()
        out = []
        for vid, path, fps in vids:
            fr = con.execute("SELECT frame_id, ts_s, end_s FROM frames WHERE video_id = ? ORDER BY ts_s", [vid]).fetchall()
            sh = con.execute("SELECT start_s FROM shots WHERE video_id = ? ORDER BY start_s", [vid]).fetchall()
            out.append(OcrTodo(int(vid), path, float(fps), [int(r[0]) for r in fr], [float(r[1]) for r in fr],
                               [float(r[2]) for r in fr], [float(r[0]) for r in sh]))
    return out


def _records(cur: Any) -> list[Row]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def list_videos(store_dir: str | os.PathLike[str]) -> list[Row]:
    """Every video with its shot count, a thumbnail frame (its first content frame that has one)
    and its label answers (``labels``: label, present, first_seen_s, duration_s, n_segments, rule)."""
    with read_connection(store_dir) as con:
        rows = _records(con.execute(
            "SELECT v.video_id, v.name, v.path, v.duration_s, v.fps, v.width, v.height, v.codec, v.n_frames, "
            "v.note, (SELECT count(*) FROM shots s WHERE s.video_id = v.video_id) AS shots, "
            "(SELECT min(f.frame_id) FILTER (WHERE f.thumb_bytes IS NOT NULL) FROM frames f JOIN shots s "
            " USING (shot_id) WHERE f.video_id = v.video_id AND s.kind = 'content') AS thumbnail_frame_id "
            "FROM videos v ORDER BY v.path"
        ))
        labs = _records(con.execute(
            "SELECT video_id, label, present, first_seen_s, duration_s, n_segments, rule FROM video_labels ORDER BY label"
        ))
    by_video: dict[int, list[Row]] = {}
    for lab in labs:
        by_video.setdefault(lab.pop("video_id"), []).append(lab)
    for r in rows:
        r["labels"] = by_video.get(r["video_id"], [])
    return rows


def video_detail(store_dir: str | os.PathLike[str], video_id: int) -> Row | None:
    """One video's row with its ``shots``, ``labels`` (answers), label ``segments``, ``text_lines``,
    ``failures`` notes and ``versions`` (videos sharing footage with it, and where); None when
    there is no such video."""
    with read_connection(store_dir) as con:
        rows = _records(con.execute("SELECT * FROM videos WHERE video_id = ?", [video_id]))
        if not rows:
            return None
        v = rows[0]
        v["shots"] = _records(con.execute(
            "SELECT shot_id, start_s, end_s, kind FROM shots WHERE video_id = ? ORDER BY start_s", [video_id]))
        v["labels"] = _records(con.execute(
            "SELECT label, present, first_seen_s, duration_s, n_segments, best_s, score, rule FROM video_labels "
            "WHERE video_id = ? ORDER BY label", [video_id]))
        v["segments"] = _records(con.execute(
            "SELECT label, start_s, end_s, peak_score, found_by FROM segments WHERE video_id = ? ORDER BY label, start_s",
            [video_id]))
        v["text_lines"] = _records(con.execute(
            "SELECT frame_id, start_s, end_s, text, confidence, x, y, w, h FROM ocr WHERE video_id = ? "
            "ORDER BY start_s, y, x", [video_id]))
        v["failures"] = _records(con.execute("SELECT error, seen_at FROM failures WHERE path = ?", [v["path"]]))
        v["versions"] = _versions_of(con, video_id)
    return v


def _versions_of(con: Any, video_id: int) -> list[Row]:
    """The videos sharing footage with ``video_id`` (longest shared first), each with the aligned
    segments seen from this video (``start_s``/``end_s`` here, ``other_start_s``/``other_end_s``
    there), its group and whether it is the group's longest."""
    rows = _records(con.execute(
        "SELECT CASE WHEN m.video_a = ? THEN m.video_b ELSE m.video_a END AS other, "
        "CASE WHEN m.video_a = ? THEN m.a_start_s ELSE m.b_start_s END AS start_s, "
        "CASE WHEN m.video_a = ? THEN m.a_end_s ELSE m.b_end_s END AS end_s, "
        "CASE WHEN m.video_a = ? THEN m.b_start_s ELSE m.a_start_s END AS other_start_s, "
        "CASE WHEN m.video_a = ? THEN m.b_end_s ELSE m.a_end_s END AS other_end_s, m.score "
        "FROM matches m WHERE m.video_a = ? OR m.video_b = ? ORDER BY start_s", [video_id] * 7))
    if not rows:
        return []
    others = sorted({r["other"] for r in rows})
    info = {r["video_id"]: r for r in _records(con.execute(
        "SELECT v.video_id, v.name, v.path, v.duration_s, g.group_id, coalesce(g.is_longest, false) AS is_longest "
        "FROM videos v LEFT JOIN versions g USING (video_id) WHERE v.video_id IN (SELECT unnest(?::INTEGER[]))",
        [others]))}
    out = []
    for o in others:
        segs = [{k: r[k] for k in ("start_s", "end_s", "other_start_s", "other_end_s", "score")} for r in rows if r["other"] == o]
        out.append({**info.get(o, {"video_id": o}), "segments": segs,
                    "shared_s": round(sum(x["end_s"] - x["start_s"] for x in segs), 3)})
    return sorted(out, key=lambda x: -x["shared_s"])


def video_path(store_dir: str | os.PathLike[str], video_id: int) -> str | None:
    """The path a video was indexed from (None: no such video)."""
    with read_connection(store_dir) as con:
        row = con.execute("SELECT path FROM videos WHERE video_id = ?", [video_id]).fetchall()
    return row[0][0] if row else None


# -- versions ------------------------------------------------------------------------------------
def read_match_basis(store_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, float, float, int] | None:
    """How the store compares samples for matching (:mod:`.matchtables`); None: not measured yet."""
    from . import matchtables  # noqa: PLC0415

    with read_connection(store_dir) as con:
        return matchtables.read_basis(con)


def unmatched_videos(store_dir: str | os.PathLike[str]) -> list[int]:
    """Videos not yet compared with the archive for shared footage."""
    if not has_catalog(store_dir):
        return []
    with read_connection(store_dir) as con:
        return [int(r[0]) for r in con.execute(
            "SELECT video_id FROM videos WHERE matched IS NULL ORDER BY video_id").fetchall()]


def match_rows(store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None = None) -> list[Row]:
    """``matches`` rows (all, or those with one of ``video_ids``) with both videos' names and
    paths, by pair and time."""
    with read_connection(store_dir) as con:
        where, params = "", []
        if video_ids is not None:
            where = " WHERE m.video_a IN (SELECT unnest(?::INTEGER[])) OR m.video_b IN (SELECT unnest(?::INTEGER[]))"
            params = [list(video_ids), list(video_ids)]
        return _records(con.execute(
            "SELECT m.*, a.name AS name_a, a.path AS path_a, b.name AS name_b, b.path AS path_b FROM matches m "
            f"JOIN videos a ON a.video_id = m.video_a JOIN videos b ON b.video_id = m.video_b{where} "
            "ORDER BY m.video_a, m.video_b, m.a_start_s", params))


IMAGE_LEVELS_KEY = "image_levels"  # meta key: the image rule's levels (search.levels), JSON


def levels_stamp(con: Any) -> str:
    """What the image rule's levels depend on: the live frames and the matches. Changes whenever a
    video is added, replaced or removed, or the matches change."""
    f = con.execute("SELECT count(*), coalesce(max(frame_id), -1), coalesce(sum(frame_id), 0) FROM frames").fetchone()
    m = con.execute("SELECT count(*), coalesce(sum(hash(video_a, video_b, a_start_s, b_start_s) % 1000000007), 0) "
                    "FROM matches").fetchone()
    return ":".join(str(int(x)) for x in (*f, *m))


LEVELS_DRIFT = 0.01  # kept image levels hold while at most this share of the frames (and of the matches) changed


def levels_fresh(kept: dict | None, stamp: str) -> bool:
    """Whether levels kept at ``kept["stamp"]`` still hold for a store now at ``stamp``
    (:func:`levels_stamp`: frames, max frame id, sum of ids, matches, hash)."""
    if not isinstance(kept, dict) or not isinstance(kept.get("stamp"), str):
        return False
    if kept["stamp"] == stamp:
        return True
    try:
        f0, m0, _s0, k0, _h0 = (int(x) for x in kept["stamp"].split(":"))
        f1, m1, _s1, k1, _h1 = (int(x) for x in stamp.split(":"))
    except ValueError:
        return False
    # new frames get ids above the largest one (ids that `archive optimize` frees may be given again:
    # then a change reads up to twice too small)
    added = max(0, m1 - m0)
    removed = max(0, f0 + added - f1)
    # matches: 1% of them, and at least one per 10,000 frames (a big archive with few matches takes a
    # clip that matches something without measuring again)
    return added + removed <= LEVELS_DRIFT * f0 and abs(k1 - k0) <= LEVELS_DRIFT * max(k0, f0 / 100)


def image_levels_state(store_dir: str | os.PathLike[str]) -> tuple[str, dict[str, Any] | None, np.ndarray, dict[int, float]]:
    """For the image rule's levels: the store's current stamp (:func:`levels_stamp`), the levels kept
    in ``meta`` with the stamp they were measured at (None: none kept), every ``matches`` row as
    ``(video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s)``, and each video's sample rate."""
    with read_connection(store_dir) as con:
        stamp = levels_stamp(con)
        row = con.execute("SELECT value FROM meta WHERE key = ?", [IMAGE_LEVELS_KEY]).fetchall()
        spans = con.execute("SELECT video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s FROM matches").fetchall()
        fps = dict(con.execute("SELECT video_id, sample_fps FROM videos").fetchall())
    kept = None
    if row:
        try:
            kept = json.loads(row[0][0])
        except ValueError:
            kept = None
    return stamp, kept, np.asarray(spans, np.float64).reshape(-1, 6), {int(k): float(v) for k, v in fps.items()}


def version_rows(store_dir: str | os.PathLike[str]) -> tuple[list[Row], float, int, int]:
    """``versions`` rows with each member's name, path and duration (by group, longest first),
    the ``min_shared`` seconds they were grouped by, and how many videos were compared / not yet."""
    from . import matchtables  # noqa: PLC0415

    with read_connection(store_dir) as con:
        rows = _records(con.execute(
            "SELECT g.group_id, g.video_id, g.is_longest, g.shared_s, v.name, v.path, v.duration_s FROM versions g "
            "JOIN videos v USING (video_id) ORDER BY g.group_id, g.is_longest DESC, v.duration_s DESC, g.video_id"))
        done, todo = con.execute("SELECT count(*) FILTER (WHERE matched), count(*) FILTER (WHERE matched IS NULL) "
                                 "FROM videos").fetchall()[0]
        return rows, matchtables.min_shared(con), int(done), int(todo)


def vector_layer(store_dir: str | os.PathLike[str]) -> tuple[VectorView, np.ndarray]:
    """Every stored vector (memory-mapped, seen as one matrix; dead rows included) and its frame id."""
    with read_connection(store_dir) as con:
        dim = int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])
        refs = segments.registered(con)
    vecs, ids, _bgs = segments.open_segments(Path(store_dir), refs, dim)
    return vecs, ids


def frame_videos(store_dir: str | os.PathLike[str], frame_ids: np.ndarray) -> dict[int, int]:
    """The video of each of ``frame_ids`` that is a live content frame (dead rows and frames of
    black/blank shots are left out)."""
    if not len(frame_ids):
        return {}
    with read_connection(store_dir) as con:
        con.register("_wanted", {"frame_id": np.unique(np.asarray(frame_ids, np.int64))})
        try:
            rows = con.execute("SELECT f.frame_id, f.video_id FROM frames f JOIN _wanted USING (frame_id) "
                               "JOIN shots s USING (shot_id) WHERE s.kind = 'content'").fetchnumpy()
        finally:
            con.unregister("_wanted")
    return dict(zip(rows["frame_id"].tolist(), rows["video_id"].tolist()))


def common_sample_fps(store_dir: str | os.PathLike[str]) -> float | None:
    """The sample rate most of the archive was indexed at (None: no video)."""
    with read_connection(store_dir) as con:
        row = con.execute("SELECT sample_fps FROM videos GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchall()
    return float(row[0][0]) if row else None


def ivf_layer(store_dir: str | os.PathLike[str]) -> tuple[ivfmod.IvfSearch | None, VectorView | None, np.ndarray,
                                                       tuple[Any, ...]]:
    """For a nearest-neighbour search through the store's IVF index: the index, ready to search
    (:func:`ivfmod.open_search`; None: the store has none), the vectors and frame ids of the
    segments it does not cover (to be scanned exactly), and a key that changes when any of these does."""
    with read_connection(store_dir) as con:
        dim = int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])
        refs = segments.registered(con)
        ref = ivfmod.current(con)
        lists = ivfmod.current_lists(con) if ref is not None else None
    if ref is None:
        return None, None, np.zeros(0, np.int64), ()
    root = Path(store_dir)
    coded = [r for r in refs if r.ivf_id == ref.ivf_id]
    key = (str(root.resolve()), ref.ivf_id, lists, tuple(r.segment_id for r in coded))
    if key not in _IVF_SEARCH:  # built once per store state and process (an index run compares many videos)
        codec = ivfmod.IvfCodec.load(root, ref)
        _IVF_SEARCH.clear()
        _IVF_SEARCH[key] = ivfmod.open_search(root, codec, lists, coded)
    search, lost = _IVF_SEARCH[key]
    bare = [r for r in refs if r not in coded] + lost
    view, ids, _bgs = segments.open_segments(root, bare, dim) if bare else (None, np.zeros(0, np.int64), [])
    return search, view, ids, key


_IVF_SEARCH: dict[Any, Any] = {}  # ivf_layer's searchable index, per store state (one kept)
