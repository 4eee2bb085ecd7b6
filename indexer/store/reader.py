"""Reading a store: everything the read path, the server and the planner need, without a writer.

A :class:`Reader` opens the catalog read-only (waiting out a commit's short lock), so it works while
an index run is going, and refuses a catalog of another schema version with a message saying what
to do. Vectors come memory-mapped from the segments (:mod:`.frames`); no video file is opened here.

Longer than the project's ~500 lines on purpose: one class with one short method per question the
rest of the program asks the catalog (about thirty), so that every read is in one place.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from indexer import settings
from indexer.errors import StoreError

from . import ivf as ivfmod
from . import segments, shared_footage, vectorview
from .frames import FrameTable, read_table
from .layout import THUMBS, bytes_on_disk, catalog_path, connect, has_catalog
from .levels import IMAGE_LEVELS_KEY, levels_fresh, levels_stamp
from .records import (
    KnownFile,
    LabelCalibration,
    LabelDef,
    LabelStats,
    ModelSpec,
    OcrTodo,
    Row,
    StoreInfo,
    ThumbTodo,
    VideoRef,
)
from .schema import require_current
from .vectorview import VectorView


class Reader:
    """One store, read: every question the read path, the server and the planner ask its catalog.

    ``Reader(store_dir)`` is cheap and holds nothing open: each method opens the catalog read-only
    for its own statements and closes it again, because an open read connection holds the catalog's
    file lock, which a writer in another process waits for (up to ``OPEN_RETRY_S``) and one in this
    process cannot take at all. For a burst of reads, ``with reader:`` opens one connection, checks
    its schema once and shares it with every method until the block ends (about 20 ms a connection
    saved: comparing a new video with the archive reads the catalog six times); keep such a block
    short and in one thread. A reader is also the store's path (``os.fspath(reader)``), so it can
    be handed wherever a store folder is expected.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(store_dir)
        self._con: Any = None
        self._depth = 0

    @classmethod
    def of(cls, store: "str | os.PathLike[str] | Reader") -> "Reader":
        """``store`` itself when it is a reader (its shared connection, if any, is used), else a new one."""
        return store if isinstance(store, Reader) else cls(store)

    def __fspath__(self) -> str:
        return os.fspath(self.dir)

    def __repr__(self) -> str:
        return f"Reader({str(self.dir)!r})"

    def __enter__(self) -> "Reader":
        if self._con is None:
            con = connect(catalog_path(self.dir), read_only=True)
            try:
                require_current(con, self.dir)
            except BaseException:
                con.close()
                raise
            self._con = con
        self._depth += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._con is not None:
            con, self._con = self._con, None
            con.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A read-only DuckDB connection to the catalog (works while an index run is going): the
        shared one inside ``with reader:``, else one opened for the block and closed after.

        Raises:
            StoreNotFound: no archive in that folder.
            StoreError: the catalog's schema is older or newer than this program's.
        """
        if self._con is not None:
            yield self._con
            return
        con = connect(catalog_path(self.dir), read_only=True)
        try:
            require_current(con, self.dir)
            yield con
        finally:
            con.close()

    def meta(self) -> dict[str, str]:
        """The ``meta`` table of an existing store (model, pretrained, dim, schema_version).

        Works on catalogs of any schema version (the writer reads it before migrating).

        Raises:
            StoreNotFound: no catalog in that folder.
        """
        if self._con is not None:
            return dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        con = connect(catalog_path(self.dir), read_only=True)
        try:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()

    def spec(self) -> ModelSpec:
        """Which model made the store's vectors."""
        meta = self.meta()
        return ModelSpec(meta["model"], meta["pretrained"])

    def info(self) -> StoreInfo:
        """Counts, model and size on disk of a store.

        Raises:
            StoreNotFound: no archive there.
        """
        with self.connection() as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            videos, seconds = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) FROM videos").fetchall()[0]
            frames = con.execute("SELECT count(*) FROM frames").fetchall()[0][0]
            failures = con.execute("SELECT count(DISTINCT path) FROM failures").fetchall()[0][0]
            n_vectors, n_segments = con.execute(
                "SELECT coalesce(sum(n_vectors), 0), count(*) FROM vector_segments"
            ).fetchall()[0]
            detectors = dict(
                con.execute(
                    "SELECT coalesce(shot_detector, 'unknown'), count(*) FROM videos GROUP BY 1 ORDER BY 2 DESC"
                ).fetchall()
            )
            transitions = dict(
                con.execute(
                    "SELECT coalesce(transition, 'unknown'), count(*) FROM shots GROUP BY 1 ORDER BY 2 DESC"
                ).fetchall()
            )
            kinds = dict(
                con.execute("SELECT kind, sum(n_vectors) FROM vector_segments GROUP BY 1 ORDER BY 1").fetchall()
            )
            text_lines, text_videos = con.execute(
                "SELECT (SELECT count(*) FROM ocr), count(*) FILTER (WHERE ocr_lines IS NOT NULL) FROM videos"
            ).fetchall()[0]
            speech_lines, speech_words, speech_videos, speech_heard = con.execute(
                "SELECT (SELECT count(*) FROM speech), (SELECT count(*) FROM speech_words WHERE word_norm <> ''), "
                "count(*) FILTER (WHERE speech_lines IS NOT NULL), count(*) FILTER (WHERE speech_lines > 0) FROM videos"
            ).fetchall()[0]
            sound_hashes, sound_videos, sound_heard, sound_s = con.execute(
                "SELECT (SELECT count(*) FROM sound_hashes), count(*) FILTER (WHERE sound_hashes IS NOT NULL), "
                "count(*) FILTER (WHERE sound_hashes > 0), sum(sound_s) FILTER (WHERE sound_hashes > 0) FROM videos"
            ).fetchall()[0]
            groups, grouped, n_matches, todo = con.execute(
                "SELECT (SELECT count(DISTINCT group_id) FROM versions), (SELECT count(*) FROM versions), "
                "(SELECT count(*) FROM matches), (SELECT count(*) FROM videos WHERE matched IS NULL)"
            ).fetchall()[0]

            versions = {
                "groups": int(groups),
                "videos_in_groups": int(grouped),
                "matches": int(n_matches),
                "not_compared": int(todo),
                "min_shared_s": shared_footage.min_shared(con),
            }
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
            covered = (
                0
                if ivf_ref is None
                else int(
                    con.execute(
                        "SELECT coalesce(sum(n_vectors), 0) FROM vector_segments WHERE ivf_id = ?", [ivf_ref.ivf_id]
                    ).fetchall()[0][0]
                )
            )

        ivf = None
        if ivf_ref is not None:
            grown = frames / max(1, ivf_ref.archive_vectors)
            ivf = {
                "factory": ivf_ref.factory,
                "trained_vectors": ivf_ref.trained_vectors,
                "archive_vectors_at_training": ivf_ref.archive_vectors,
                "vectors_with_codes": covered,
                "growth_since_training": round(grown, 2),
                "stale": grown > settings.IVF_RETRAIN_GROWTH or covered < n_vectors,
                "nprobe": settings.ivf_nprobe(),
                "matching_only": bool(meta.get(ivfmod.MATCHING_ONLY_KEY)),
                # the lists file (rows in it, dead ones included; 0: none yet) and its highest frame id
                "lists_vectors": lists_ref.vectors if lists_ref and lists_ref.ivf_id == ivf_ref.ivf_id else 0,
                "lists_max_frame_id": lists_ref.max_frame_id
                if lists_ref and lists_ref.ivf_id == ivf_ref.ivf_id
                else None,
            }
        if ivf is not None and frames >= settings.ivf_frames() and not ivf["matching_only"]:
            how = f"IVF index ({ivf['factory']}, nprobe {settings.ivf_nprobe()}): candidates rescored exactly"
            if ivf["stale"]:
                how += "; stale: run `archive optimize`"
        elif frames >= settings.bf16_scan_frames():
            how = "scan of an int8 copy (bf16 without torch's int8 kernel) from the second query of a process, shown videos rescored exactly"
        else:
            how = "exact scan"
        root = self.dir
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
            speech=meta.get("speech") == "1",
            speech_lines=int(speech_lines),
            speech_words=int(speech_words),
            speech_videos=int(speech_videos),
            speech_heard=int(speech_heard),
            sound_hashes=int(sound_hashes),
            sound_videos=int(sound_videos),
            sound_heard=int(sound_heard),
            sound_seconds=float(sound_s or 0.0),
            versions=versions,
            image_levels=image_levels,
        )

    def frames(self, video_ids: Sequence[int] | None = None) -> FrameTable:
        """Everything a query needs, without opening any video: frames, their vectors, video rows.

        Args:
            video_ids: limit to these videos (None: all).

        Raises:
            StoreNotFound: no archive there.
            StoreError: the vector file is missing or damaged while the catalog lists frames.
        """
        for attempt in (0, 1):
            try:
                with self.connection() as con:
                    return read_table(con, self.dir, video_ids)
            except StoreError:
                if attempt:  # a merge may have swapped segments between reading the list and the files
                    raise
        raise AssertionError("unreachable")

    def ocr_lines(self, video_ids: Sequence[int] | None = None) -> list[Row]:
        """The ``ocr`` rows (all videos, or ``video_ids``) by video and time, with ``text_norm``."""
        with self.connection() as con:
            if video_ids is None:
                return _records(con.execute("SELECT * FROM ocr ORDER BY video_id, start_s, y, x"))
            return _records(
                con.execute(
                    "SELECT * FROM ocr WHERE video_id IN (SELECT unnest(?::INTEGER[])) ORDER BY video_id, start_s, y, x",
                    [list(video_ids)],
                )
            )

    def ocr_unread(self, video_ids: Sequence[int]) -> int:
        """How many of ``video_ids`` have no on-screen text read."""
        with self.connection() as con:
            return int(
                con.execute(
                    "SELECT count(*) FROM videos WHERE ocr_lines IS NULL AND video_id IN (SELECT unnest(?::INTEGER[]))",
                    [list(video_ids)],
                ).fetchall()[0][0]
            )

    def labels(self) -> list[LabelDef]:
        """Saved labels, sorted by name."""
        with self.connection() as con:
            rows = con.execute(
                "SELECT label, prompts, threshold, calibrated_at, calib_precision, calib_recall, calib_videos, "
                "calib_positives, calib_target, calib_truth, ocr, said FROM labels ORDER BY label"
            ).fetchall()
        return [
            LabelDef(
                r[0],
                list(r[1]),
                r[2],
                None if r[3] is None or r[2] is None else LabelCalibration(r[4], r[5], r[6], r[7], r[8], r[9], r[3]),
                list(r[10] or []),
                list(r[11] or []),
            )
            for r in rows
        ]

    def label_stats(self) -> dict[str, LabelStats]:
        """Per saved label with results: how many videos show it, and for how many seconds in all."""
        with self.connection() as con:
            rows = con.execute(
                "SELECT label, count(*) FILTER (WHERE present), coalesce(sum(duration_s), 0) FROM video_labels GROUP BY label"
            ).fetchall()
        return {r[0]: LabelStats(int(r[1]), float(r[2])) for r in rows}

    def known_files(self, paths: Sequence[str] | None = None) -> dict[str, KnownFile]:
        """The indexed videos by path, all of them or those of ``paths`` ({} when there is no store yet).
        Asking for ``paths`` reads only their rows of ``videos`` and, for the thumbnail check, only
        their frames."""
        if not has_catalog(self.dir):
            return {}
        if paths is not None and not paths:
            return {}
        with self.connection() as con:
            if paths is None:
                con.execute("CREATE TEMP VIEW wanted AS SELECT * FROM videos")
            else:
                con.execute("CREATE TEMP TABLE wanted_paths AS SELECT unnest(?::VARCHAR[]) AS path", [list(paths)])
                con.execute("CREATE TEMP TABLE wanted AS SELECT v.* FROM videos v JOIN wanted_paths USING (path)")
            rows = con.execute(
                "SELECT w.video_id, w.path, w.size_bytes, w.mtime, w.fingerprint, w.sample_fps, "
                "w.shot_detector FROM wanted w"
            ).fetchall()
            ids = [r[0] for r in rows]
            if len(ids) <= FEW_VIDEOS:  # a few: their frames only (frames lie in video order: few row groups)
                no_thumbs = (
                    {
                        r[0]
                        for r in con.execute(
                            f"SELECT DISTINCT video_id FROM frames WHERE thumb_bytes IS NULL AND video_id IN ({', '.join('?' * len(ids))})",
                            ids,
                        ).fetchall()
                    }
                    if ids
                    else set()
                )
            else:
                no_thumbs = {
                    r[0]
                    for r in con.execute("SELECT DISTINCT video_id FROM frames WHERE thumb_bytes IS NULL").fetchall()
                }
        return {r[1]: KnownFile(r[2], r[3], r[4], r[5], r[0] not in no_thumbs, r[6]) for r in rows}

    def indexed_paths(self, under: Sequence[str | os.PathLike[str]] | None = None) -> list[str]:
        """Every indexed video's path ([] when there is no store yet); ``under``: only those that
        are one of these paths or lie in one of these folders (absolute paths, as indexed)."""
        if not has_catalog(self.dir):
            return []
        with self.connection() as con:
            if under is None:
                return [r[0] for r in con.execute("SELECT path FROM videos").fetchall()]
            roots = [os.path.abspath(os.path.expanduser(p)) for p in under]
            if not roots:
                return []
            folders = [r.rstrip(os.sep) + os.sep for r in roots]
            cond = " OR ".join(["path = ? OR starts_with(path, ?)"] * len(roots))
            params = [x for pair in zip(roots, folders) for x in pair]
            return [r[0] for r in con.execute(f"SELECT path FROM videos WHERE {cond}", params).fetchall()]

    def video_refs(self) -> list[VideoRef]:
        """Every indexed video's id, path, name, duration and native frame rate."""
        with self.connection() as con:
            rows = con.execute("SELECT video_id, path, name, duration_s, fps FROM videos ORDER BY video_id").fetchall()
        return [VideoRef(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def thumbs_todo(self, path: str) -> list[ThumbTodo]:
        """The frames of the video indexed from ``path`` that have no thumbnail yet, by time."""
        with self.connection() as con:
            rows = con.execute(
                "SELECT f.frame_id, f.ts_s, v.sample_fps FROM frames f JOIN videos v USING (video_id) "
                "WHERE v.path = ? AND f.thumb_bytes IS NULL ORDER BY f.ts_s",
                [path],
            ).fetchall()
        return [ThumbTodo(int(r[0]), float(r[1]), float(r[2])) for r in rows]

    def thumbnail(self, offset: int, length: int) -> bytes:
        """One frame's JPEG thumbnail from thumbs.bin.

        Raises:
            StoreError: the thumbnail file is missing or shorter than the catalog says.
        """
        path = self.dir / THUMBS
        try:
            with open(path, "rb") as fh:
                data = os.pread(fh.fileno(), length, offset)
        except OSError as exc:
            raise StoreError(f"cannot read thumbnails from {path}: {exc.strerror or exc}") from exc
        if len(data) != length:
            raise StoreError(f"{path} is shorter than the catalog says: run `archive index` again on the same folders.")
        return data

    def speech_todo(self, paths: Sequence[str]) -> list[tuple[int, str]]:
        """``(video_id, path)`` of the videos of ``paths`` whose sound was not transcribed."""
        if not paths or not has_catalog(self.dir):
            return []
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, path FROM videos WHERE speech_lines IS NULL "
                "AND path IN (SELECT unnest(?::VARCHAR[])) ORDER BY path",
                [list(paths)],
            ).fetchall()
        return [(int(v), str(p)) for v, p in rows]

    def sound_lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every ``sound_hashes`` row of these hash values: ``(hash, video_id, t)`` arrays. The values
        are inlined as a constant list so that DuckDB prunes row groups by their min/max (the table
        is kept in hash order: :meth:`indexer.store.Writer.sort_sound`)."""
        values = np.unique(np.asarray(hashes, np.int64))
        if not len(values):
            e = np.zeros(0, np.int32)
            return e, e, e
        with self.connection() as con:
            r = con.execute(
                f"SELECT hash, video_id, t FROM sound_hashes WHERE hash IN ({','.join(map(str, values.tolist()))})"
            ).fetchnumpy()
        return np.asarray(r["hash"]), np.asarray(r["video_id"]), np.asarray(r["t"])

    def sound_of(self, video_id: int, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """The landmarks of one video whose anchors lie in frames ``[t0, t1)``: ``(hash, t)``, by time."""
        with self.connection() as con:
            r = con.execute(
                "SELECT hash, t FROM sound_hashes WHERE video_id = ? AND t >= ? AND t < ? ORDER BY t, hash",
                [int(video_id), int(t0), int(t1)],
            ).fetchnumpy()
        return np.asarray(r["hash"], np.int32), np.asarray(r["t"], np.int32)

    def sound_state(self, video_id: int) -> tuple[int | None, float | None]:
        """One video's landmark count (None: not fingerprinted) and seconds of sound."""
        with self.connection() as con:
            row = con.execute("SELECT sound_hashes, sound_s FROM videos WHERE video_id = ?", [int(video_id)]).fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)

    def sound_refs(self, video_ids: Sequence[int]) -> dict[int, tuple[VideoRef, float | None]]:
        """Of these videos, each fingerprinted one's reference and seconds of sound."""
        if not len(video_ids):
            return {}
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, path, name, duration_s, fps, sound_s FROM videos WHERE sound_hashes IS NOT NULL "
                "AND video_id IN (SELECT unnest(?::INTEGER[]))",
                [[int(v) for v in video_ids]],
            ).fetchall()
        return {int(r[0]): (VideoRef(int(r[0]), r[1], r[2], r[3], r[4]), r[5]) for r in rows}

    def sound_counts(self, video_ids: Sequence[int] | None = None) -> tuple[int, int]:
        """Of these videos (None: all), how many there are and how many are not fingerprinted."""
        with self.connection() as con:
            if video_ids is None:
                row = con.execute(
                    "SELECT count(*), count(*) FILTER (WHERE sound_hashes IS NULL) FROM videos"
                ).fetchall()
            else:
                row = con.execute(
                    "SELECT count(*), count(*) FILTER (WHERE sound_hashes IS NULL) FROM videos "
                    "WHERE video_id IN (SELECT unnest(?::INTEGER[]))",
                    [[int(v) for v in video_ids]],
                ).fetchall()
        return int(row[0][0]), int(row[0][1])

    def sound_video_ids(
        self, video_ids: Sequence[int] | None, exclude: Any = (), limit: int | None = None
    ) -> list[int]:
        """Fingerprinted videos of ``video_ids`` (None: all) not in ``exclude``, by id, at most ``limit``."""
        if limit is not None and limit <= 0:
            return []
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id FROM videos WHERE sound_hashes IS NOT NULL "
                + ("" if video_ids is None else "AND video_id IN (SELECT unnest(?::INTEGER[])) ")
                + "AND video_id NOT IN (SELECT unnest(?::INTEGER[])) ORDER BY video_id"
                + ("" if limit is None else f" LIMIT {int(limit)}"),
                ([] if video_ids is None else [[int(v) for v in video_ids]]) + [[int(v) for v in exclude]],
            ).fetchall()
        return [int(r[0]) for r in rows]

    def video_refs_of(self, video_ids: Sequence[int]) -> list[VideoRef]:
        """These videos' references, by id."""
        if not len(video_ids):
            return []
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, path, name, duration_s, fps FROM videos WHERE video_id IN (SELECT unnest(?::INTEGER[])) "
                "ORDER BY video_id",
                [[int(v) for v in video_ids]],
            ).fetchall()
        return [VideoRef(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def sound_todo(self, paths: Sequence[str] | None) -> list[tuple[int, str]]:
        """``(video_id, path)`` of the videos of ``paths`` (None: all) whose sound was not fingerprinted."""
        if paths is not None:  # a name that is not UTF-8 cannot be in the catalog (its video failed)
            paths = [p for p in paths if not any("\udc80" <= c <= "\udcff" for c in p)]
        if (paths is not None and not paths) or not has_catalog(self.dir):
            return []
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, path FROM videos WHERE sound_hashes IS NULL "
                + ("" if paths is None else "AND path IN (SELECT unnest(?::VARCHAR[])) ")
                + "ORDER BY path",
                [] if paths is None else [list(paths)],
            ).fetchall()
        return [(int(v), str(p)) for v, p in rows]

    # -- catalog rows for the search page's API (JSON-shaped: dicts by column name) ------------------
    def ocr_todo(self, paths: Sequence[str]) -> list[OcrTodo]:
        """The videos of ``paths`` whose on-screen text was not read, with their frames and shots."""
        if not paths or not has_catalog(self.dir):
            return []
        with self.connection() as con:
            vids = con.execute(
                "SELECT video_id, path, sample_fps FROM videos WHERE ocr_lines IS NULL AND path IN (SELECT unnest(?::VARCHAR[])) "
                "ORDER BY path",
                [list(paths)],
            ).fetchall()
            out = []
            for vid, path, fps in vids:
                fr = con.execute(
                    "SELECT frame_id, ts_s, end_s FROM frames WHERE video_id = ? ORDER BY ts_s", [vid]
                ).fetchall()
                sh = con.execute("SELECT start_s FROM shots WHERE video_id = ? ORDER BY start_s", [vid]).fetchall()
                out.append(
                    OcrTodo(
                        int(vid),
                        path,
                        float(fps),
                        [int(r[0]) for r in fr],
                        [float(r[1]) for r in fr],
                        [float(r[2]) for r in fr],
                        [float(r[0]) for r in sh],
                    )
                )
        return out

    def list_videos(self) -> list[Row]:
        """Every video with its shot count, a thumbnail frame (its first content frame that has one)
        and its label answers (``labels``: label, present, first_seen_s, duration_s, n_segments, rule)."""
        with self.connection() as con:
            rows = _records(
                con.execute(
                    "SELECT v.video_id, v.name, v.path, v.duration_s, v.fps, v.width, v.height, v.codec, v.n_frames, "
                    "v.note, (SELECT count(*) FROM shots s WHERE s.video_id = v.video_id) AS shots, "
                    "(SELECT min(f.frame_id) FILTER (WHERE f.thumb_bytes IS NOT NULL) FROM frames f JOIN shots s "
                    " USING (shot_id) WHERE f.video_id = v.video_id AND s.kind = 'content') AS thumbnail_frame_id "
                    "FROM videos v ORDER BY v.path"
                )
            )
            labs = _records(
                con.execute(
                    "SELECT video_id, label, present, first_seen_s, duration_s, n_segments, rule FROM video_labels ORDER BY label"
                )
            )
        by_video: dict[int, list[Row]] = {}
        for lab in labs:
            by_video.setdefault(lab.pop("video_id"), []).append(lab)
        for r in rows:
            r["labels"] = by_video.get(r["video_id"], [])
        return rows

    def video_detail(self, video_id: int) -> Row | None:
        """One video's row with its ``shots``, ``labels`` (answers), label ``segments``, ``text_lines``,
        ``failures`` notes and ``versions`` (videos sharing footage with it, and where); None when
        there is no such video."""
        with self.connection() as con:
            rows = _records(con.execute("SELECT * FROM videos WHERE video_id = ?", [video_id]))
            if not rows:
                return None
            v = rows[0]
            v["shots"] = _records(
                con.execute(
                    "SELECT shot_id, start_s, end_s, kind FROM shots WHERE video_id = ? ORDER BY start_s", [video_id]
                )
            )
            v["labels"] = _records(
                con.execute(
                    "SELECT label, present, first_seen_s, duration_s, n_segments, best_s, score, rule FROM video_labels "
                    "WHERE video_id = ? ORDER BY label",
                    [video_id],
                )
            )
            v["segments"] = _records(
                con.execute(
                    "SELECT label, start_s, end_s, peak_score, found_by FROM segments WHERE video_id = ? ORDER BY label, start_s",
                    [video_id],
                )
            )
            v["text_lines"] = _records(
                con.execute(
                    "SELECT frame_id, start_s, end_s, text, confidence, x, y, w, h FROM ocr WHERE video_id = ? "
                    "ORDER BY start_s, y, x",
                    [video_id],
                )
            )
            v["failures"] = _records(con.execute("SELECT error, seen_at FROM failures WHERE path = ?", [v["path"]]))
            v["versions"] = _versions_of(con, video_id)
        return v

    def video_path(self, video_id: int) -> str | None:
        """The path a video was indexed from (None: no such video)."""
        with self.connection() as con:
            row = con.execute("SELECT path FROM videos WHERE video_id = ?", [video_id]).fetchall()
        return row[0][0] if row else None

    # -- versions ------------------------------------------------------------------------------------
    def match_basis(self) -> tuple[np.ndarray, np.ndarray, float, float, int] | None:
        """How the store compares samples for matching (:mod:`.shared_footage`); None: not measured yet."""
        with self.connection() as con:
            return shared_footage.read_basis(con)

    def unmatched_videos(self) -> list[int]:
        """Videos not yet compared with the archive for shared footage."""
        if not has_catalog(self.dir):
            return []
        with self.connection() as con:
            return [
                int(r[0])
                for r in con.execute("SELECT video_id FROM videos WHERE matched IS NULL ORDER BY video_id").fetchall()
            ]

    def match_rows(self, video_ids: Sequence[int] | None = None) -> list[Row]:
        """``matches`` rows (all, or those with one of ``video_ids``) with both videos' names and
        paths, by pair and time."""
        with self.connection() as con:
            where, params = "", []
            if video_ids is not None:
                where = (
                    " WHERE m.video_a IN (SELECT unnest(?::INTEGER[])) OR m.video_b IN (SELECT unnest(?::INTEGER[]))"
                )
                params = [list(video_ids), list(video_ids)]
            return _records(
                con.execute(
                    "SELECT m.*, a.name AS name_a, a.path AS path_a, b.name AS name_b, b.path AS path_b FROM matches m "
                    f"JOIN videos a ON a.video_id = m.video_a JOIN videos b ON b.video_id = m.video_b{where} "
                    "ORDER BY m.video_a, m.video_b, m.a_start_s",
                    params,
                )
            )

    def image_levels_state(self) -> tuple[str, dict[str, Any] | None, np.ndarray, dict[int, float]]:
        """For the image rule's levels: the store's current stamp (:func:`levels_stamp`), the levels kept
        in ``meta`` with the stamp they were measured at (None: none kept), every ``matches`` row as
        ``(video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s)``, and each video's sample rate."""
        with self.connection() as con:
            stamp = levels_stamp(con)
            row = con.execute("SELECT value FROM meta WHERE key = ?", [IMAGE_LEVELS_KEY]).fetchall()
            spans = con.execute(
                "SELECT video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s FROM matches"
            ).fetchall()
            fps = dict(con.execute("SELECT video_id, sample_fps FROM videos").fetchall())
        kept = None
        if row:
            try:
                kept = json.loads(row[0][0])
            except ValueError:
                kept = None
        return stamp, kept, np.asarray(spans, np.float64).reshape(-1, 6), {int(k): float(v) for k, v in fps.items()}

    def version_rows(self) -> tuple[list[Row], float, int, int]:
        """``versions`` rows with each member's name, path and duration (by group, longest first),
        the ``min_shared`` seconds they were grouped by, and how many videos were compared / not yet."""
        with self.connection() as con:
            rows = _records(
                con.execute(
                    "SELECT g.group_id, g.video_id, g.is_longest, g.shared_s, v.name, v.path, v.duration_s FROM versions g "
                    "JOIN videos v USING (video_id) ORDER BY g.group_id, g.is_longest DESC, v.duration_s DESC, g.video_id"
                )
            )
            done, todo = con.execute(
                "SELECT count(*) FILTER (WHERE matched), count(*) FILTER (WHERE matched IS NULL) FROM videos"
            ).fetchall()[0]
            return rows, shared_footage.min_shared(con), int(done), int(todo)

    def vector_layer(self) -> tuple[VectorView, np.ndarray]:
        """Every stored vector (memory-mapped, seen as one matrix; dead rows included) and its frame id."""
        with self.connection() as con:
            dim = int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])
            refs = segments.registered(con)
        vecs, ids, _bgs = vectorview.open_segments(self.dir, refs, dim)
        return vecs, ids

    def frame_videos(self, frame_ids: np.ndarray) -> dict[int, int]:
        """The video of each of ``frame_ids`` that is a live content frame (dead rows and frames of
        black/blank shots are left out)."""
        if not len(frame_ids):
            return {}
        with self.connection() as con:
            con.register("_wanted", {"frame_id": np.unique(np.asarray(frame_ids, np.int64))})
            try:
                rows = con.execute(
                    "SELECT f.frame_id, f.video_id FROM frames f JOIN _wanted USING (frame_id) "
                    "JOIN shots s USING (shot_id) WHERE s.kind = 'content'"
                ).fetchnumpy()
            finally:
                con.unregister("_wanted")
        return dict(zip(rows["frame_id"].tolist(), rows["video_id"].tolist()))

    def common_sample_fps(self) -> float | None:
        """The sample rate most of the archive was indexed at (None: no video)."""
        with self.connection() as con:
            row = con.execute("SELECT sample_fps FROM videos GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchall()
        return float(row[0][0]) if row else None

    def ivf_layer(self) -> tuple[ivfmod.IvfSearch | None, VectorView | None, np.ndarray, tuple[Any, ...]]:
        """For a nearest-neighbour search through the store's IVF index: the index, ready to search
        (:func:`ivfmod.open_search`; None: the store has none), the vectors and frame ids of the
        segments it does not cover (to be scanned exactly), and a key that changes when any of these does."""
        with self.connection() as con:
            dim = int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])
            refs = segments.registered(con)
            ref = ivfmod.current(con)
            lists = ivfmod.current_lists(con) if ref is not None else None
        if ref is None:
            return None, None, np.zeros(0, np.int64), ()
        root = self.dir
        coded = [r for r in refs if r.ivf_id == ref.ivf_id]
        key = (str(root.resolve()), ref.ivf_id, lists, tuple(r.segment_id for r in coded))
        if key not in _IVF_SEARCH:  # built once per store state and process (an index run compares many videos)
            codec = ivfmod.IvfCodec.load(root, ref)
            _IVF_SEARCH.clear()
            _IVF_SEARCH[key] = ivfmod.open_search(root, codec, lists, coded)
        search, lost = _IVF_SEARCH[key]
        bare = [r for r in refs if r not in coded] + lost
        view, ids, _bgs = vectorview.open_segments(root, bare, dim) if bare else (None, np.zeros(0, np.int64), [])
        return search, view, ids, key

    # -- speech: what the read path asks (search/said.py, labels, archive info, the server) -------
    # (added for `archive search --said`; the indexing side of speech is above: speech_todo)
    def has_speech(self) -> bool:
        """Whether the store transcribes speech (``meta`` key ``speech``) or any video was transcribed."""
        with self.connection() as con:
            row = con.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'speech'), "
                "(SELECT count(*) FROM videos WHERE speech_lines IS NOT NULL)"
            ).fetchall()[0]
        return row[0] == "1" or int(row[1]) > 0

    def speech_unheard(self, video_ids: Sequence[int] | None = None) -> list[int]:
        """Of ``video_ids`` (None: all videos), those whose sound was not transcribed (``speech_lines`` NULL)."""
        with self.connection() as con:
            if video_ids is None:
                rows = con.execute("SELECT video_id FROM videos WHERE speech_lines IS NULL ORDER BY 1").fetchall()
            else:
                rows = con.execute(
                    "SELECT video_id FROM videos WHERE speech_lines IS NULL "
                    "AND video_id IN (SELECT unnest(?::INTEGER[])) ORDER BY 1",
                    [list(video_ids)],
                ).fetchall()
        return [int(r[0]) for r in rows]

    def speech_words(self, video_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """The words heard (``speech_words`` rows with a non-empty ``word_norm``) of all videos or of
        ``video_ids``, in the order said (by video, line, start), as columns ``video_id``, ``line``,
        ``word``, ``word_norm``, ``start_s``, ``end_s``, ``probability`` and ``frame_id``: the sampled
        frame on screen when the word starts (the video's first one before its first sample; -1: none)."""
        where, params = "", []
        if video_ids is not None:
            where, params = " AND w.video_id IN (SELECT unnest(?::INTEGER[]))", [list(video_ids)]
        with self.connection() as con:
            got = con.execute(
                "WITH first AS (SELECT video_id, arg_min(frame_id, ts_s) AS frame_id FROM frames GROUP BY 1) "
                "SELECT w.video_id, w.line, w.word, w.word_norm, w.start_s, w.end_s, w.probability, "
                "coalesce(f.frame_id, first.frame_id, -1) AS frame_id FROM speech_words w "
                "ASOF LEFT JOIN frames f ON w.video_id = f.video_id AND w.start_s >= f.ts_s "
                "LEFT JOIN first ON first.video_id = w.video_id "
                f"WHERE w.word_norm <> ''{where} ORDER BY w.video_id, w.line, w.start_s",
                params,
            ).fetchnumpy()
        kinds = {"video_id": np.int64, "line": np.int64, "start_s": np.float64, "end_s": np.float64}
        kinds.update(probability=np.float64, frame_id=np.int64)
        out = {k: np.asarray(got[k], dtype=kinds.get(k, object)) for k in got}
        return out

    def heard_index(self) -> dict[str, np.ndarray]:
        """Every word heard (non-empty ``word_norm``) as a code into the store's vocabulary, in the
        order said (by video, line, start, end): ``video_id``, ``start_s``, ``end_s``, ``code``; and
        the vocabulary, ``vocab`` (sorted) with ``counts`` (words heard per entry). Read in one
        transaction, so codes and vocabulary agree."""
        with self.connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                voc = con.execute(
                    "SELECT word_norm, count(*) AS n FROM speech_words WHERE word_norm <> '' GROUP BY 1 ORDER BY 1"
                ).fetchnumpy()
                got = con.execute(
                    "WITH v AS (SELECT word_norm, (row_number() OVER (ORDER BY word_norm)) - 1 AS code "
                    "FROM (SELECT DISTINCT word_norm FROM speech_words WHERE word_norm <> '')) "
                    "SELECT w.video_id, w.start_s, w.end_s, v.code FROM speech_words w JOIN v USING (word_norm) "
                    "ORDER BY w.video_id, w.line, w.start_s, w.end_s, w.word_norm, w.word"
                ).fetchnumpy()
            finally:
                con.execute("COMMIT")
        return {
            "video_id": np.asarray(got["video_id"], np.int64),
            "start_s": np.asarray(got["start_s"], np.float64),
            "end_s": np.asarray(got["end_s"], np.float64),
            "code": np.asarray(got["code"], np.int64),
            "vocab": np.asarray(voc["word_norm"], dtype=str),
            "counts": np.asarray(voc["n"], np.int64),
        }

    def heard_as_said(self, video_ids: Sequence[int]) -> dict[int, list[str]]:
        """The words of ``video_ids`` as heard (punctuation attached), in :meth:`heard_index`'s order."""
        out: dict[int, list[str]] = {int(v): [] for v in video_ids}
        if not out:
            return out
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, word FROM speech_words WHERE word_norm <> '' "
                "AND video_id IN (SELECT unnest(?::INTEGER[])) "
                "ORDER BY video_id, line, start_s, end_s, word_norm, word",
                [list(out)],
            ).fetchall()
        for v, w in rows:
            out[int(v)].append(w)
        return out

    def frames_at(self, video_ids: Sequence[int], times: Sequence[float]) -> list[int]:
        """Per ``(video, time)``, the sampled frame on screen then (the video's first one before its
        first sample; -1: none)."""
        if not len(video_ids):
            return []
        with self.connection() as con:
            rows = con.execute(
                "WITH h AS (SELECT unnest(?::INTEGER[]) AS video_id, unnest(?::DOUBLE[]) AS t, "
                "unnest(range(len(?::INTEGER[]))) AS k), "
                "f AS (SELECT video_id, frame_id, ts_s FROM frames WHERE video_id IN (SELECT video_id FROM h)), "
                "first AS (SELECT video_id, arg_min(frame_id, ts_s) AS frame_id FROM f GROUP BY 1) "
                "SELECT h.k, coalesce(f.frame_id, first.frame_id, -1) FROM h "
                "ASOF LEFT JOIN f ON h.video_id = f.video_id AND h.t >= f.ts_s "
                "LEFT JOIN first ON first.video_id = h.video_id ORDER BY h.k",
                [list(map(int, video_ids)), list(map(float, times)), list(map(int, video_ids))],
            ).fetchall()
        return [int(r[1]) for r in rows]

    def speech_videos(self) -> list[tuple[int, str, float | None, bool]]:
        """Every video's id, path, duration and whether its sound was transcribed, by path."""
        with self.connection() as con:
            rows = con.execute(
                "SELECT video_id, path, duration_s, speech_lines IS NOT NULL FROM videos ORDER BY path"
            ).fetchall()
        return [(int(r[0]), r[1], r[2], bool(r[3])) for r in rows]

    def transcript(self, video_id: int) -> Row | None:
        """A video's transcript: ``speech_lines`` (None: its sound was not transcribed),
        ``speech_language``, ``speech_language_p``, ``sound_s`` and ``lines`` (``line``, ``start_s``,
        ``end_s``, ``text``, ``language``, ``confidence`` and its ``words``: ``word``, ``start_s``,
        ``end_s``, ``probability``) in the order said; None when there is no such video."""
        with self.connection() as con:
            rows = _records(
                con.execute(
                    "SELECT video_id, name, path, duration_s, speech_lines, speech_language, speech_language_p, sound_s "
                    "FROM videos WHERE video_id = ?",
                    [video_id],
                )
            )
            if not rows:
                return None
            lines = _records(
                con.execute(
                    "SELECT line, start_s, end_s, text, language, confidence FROM speech WHERE video_id = ? "
                    "ORDER BY line",
                    [video_id],
                )
            )
            words = _records(
                con.execute(
                    "SELECT line, word, start_s, end_s, probability FROM speech_words WHERE video_id = ? "
                    "ORDER BY line, start_s",
                    [video_id],
                )
            )
        by_line: dict[int, list[Row]] = {}
        for w in words:
            by_line.setdefault(w.pop("line"), []).append(w)
        for ln in lines:
            ln["words"] = by_line.get(ln["line"], [])
        v = rows[0]
        v["lines"] = lines
        return v


FEW_VIDEOS = 1000  # up to this many videos, their frames are looked up by an IN list (not a scan of all)


def _records(cur: Any) -> list[Row]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _versions_of(con: Any, video_id: int) -> list[Row]:
    """The videos sharing footage with ``video_id`` (longest shared first), each with the aligned
    segments seen from this video (``start_s``/``end_s`` here, ``other_start_s``/``other_end_s``
    there), its group and whether it is the group's longest."""
    rows = _records(
        con.execute(
            "SELECT CASE WHEN m.video_a = ? THEN m.video_b ELSE m.video_a END AS other, "
            "CASE WHEN m.video_a = ? THEN m.a_start_s ELSE m.b_start_s END AS start_s, "
            "CASE WHEN m.video_a = ? THEN m.a_end_s ELSE m.b_end_s END AS end_s, "
            "CASE WHEN m.video_a = ? THEN m.b_start_s ELSE m.a_start_s END AS other_start_s, "
            "CASE WHEN m.video_a = ? THEN m.b_end_s ELSE m.a_end_s END AS other_end_s, m.score "
            "FROM matches m WHERE m.video_a = ? OR m.video_b = ? ORDER BY start_s",
            [video_id] * 7,
        )
    )
    if not rows:
        return []
    others = sorted({r["other"] for r in rows})
    info = {
        r["video_id"]: r
        for r in _records(
            con.execute(
                "SELECT v.video_id, v.name, v.path, v.duration_s, g.group_id, coalesce(g.is_longest, false) AS is_longest "
                "FROM videos v LEFT JOIN versions g USING (video_id) WHERE v.video_id IN (SELECT unnest(?::INTEGER[]))",
                [others],
            )
        )
    }
    out = []
    for o in others:
        segs = [
            {k: r[k] for k in ("start_s", "end_s", "other_start_s", "other_end_s", "score")}
            for r in rows
            if r["other"] == o
        ]
        out.append(
            {
                **info.get(o, {"video_id": o}),
                "segments": segs,
                "shared_s": round(sum(x["end_s"] - x["start_s"] for x in segs), 3),
            }
        )
    return sorted(out, key=lambda x: -x["shared_s"])


_IVF_SEARCH: dict[Any, Any] = {}  # ivf_layer's searchable index, per store state (one kept)
