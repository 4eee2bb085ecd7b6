"""The single writer of a store: the lock, reconciling the two files, and every change to them.

Commit protocol, one batch of finished videos at a time (each video is all-or-nothing):

0. their thumbnails are appended to ``thumbs.bin`` and fsynced;
1. the new vectors are added to the in-memory FAISS index, written to ``frames.faiss.tmp``,
   fsynced and renamed over ``frames.faiss``;
2. one DuckDB transaction replaces the videos' rows and inserts their frames and shots;
3. the old vectors of re-indexed videos are dropped (persisted by the next vector write).

Vectors are only ever removed after the catalog stops pointing at them, so a crash at any point
leaves, at worst, vectors whose ids the catalog does not know: harmless orphans that readers
ignore and the next writer drops. Every catalog frame always has its vector. (If the vector file
itself is lost or damaged, the videos it held are dropped from the catalog and re-embedded.)

DuckDB allows one read-write process or many read-only ones per file. The writer opens the catalog
only for the length of a change, so readers keep working while an index run goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .. import hooks
from ..encoder import ModelSpec
from ..errors import StoreError, StoreLocked
from . import schema
from . import vectors as vecfile
from .layout import CATALOG, LOCK, THUMBS, VECTORS, connect, fsync_dir, now, transaction
from .records import LabelResults, ShotRecord, VideoRecord


def _delete_rows(con: Any, video_ids: Sequence[int]) -> None:
    """Delete videos' rows from every per-video table. Call inside a transaction."""
    if not video_ids:
        return
    ph = ", ".join("?" for _ in video_ids)
    for table in schema.PER_VIDEO_TABLES:
        con.execute(f"DELETE FROM {table} WHERE video_id IN ({ph})", list(video_ids))


def _frame_ids_of(con: Any, video_ids: Sequence[int]) -> np.ndarray:
    if not video_ids:
        return np.zeros(0, np.int64)
    ph = ", ".join("?" for _ in video_ids)
    got = con.execute(f"SELECT frame_id FROM frames WHERE video_id IN ({ph})", list(video_ids)).fetchnumpy()
    return np.asarray(got["frame_id"], np.int64)


def _video_ids_of(con: Any, paths: Sequence[str]) -> list[int]:
    if not paths:
        return []
    ph = ", ".join("?" for _ in paths)
    return [r[0] for r in con.execute(f"SELECT video_id FROM videos WHERE path IN ({ph})", list(paths)).fetchall()]


class Writer:
    """The single writer of a store. Use as a context manager; it holds ``writer.lock``.

    Example::

        with Writer("data") as w:
            w.attach(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), 512)
            w.commit([record])

    Raises:
        StoreLocked: another process is writing.
        ModelMismatch: the store was made with another model or weights.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(store_dir)
        self.spec: ModelSpec | None = None
        self.dim = 0
        self._lock_fh: Any = None
        self._index: Any = None
        self._next_video_id = 0
        self._next_frame_id = 0
        self._next_shot_id = 0
        self.repaired: list[str] = []  # videos dropped because their vectors were missing
        self.damaged_file: str | None = None  # where an unreadable vector file was moved
        self._dirty = False  # in-memory vectors differ from the file (replaced vectors dropped)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "Writer":
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self) -> None:
        """Become the store's one writer (creating the folder if needed).

        Raises:
            StoreLocked: another process holds the lock.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.dir}: {exc.strerror}") from exc
        path = self.dir / LOCK
        try:
            fh = open(path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot write to the store {self.dir.resolve()}: {exc.strerror}") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreLocked(
                f"the store {self.dir.resolve()} is being written by {holder}; wait for it to finish "
                "(search, sql and info work meanwhile)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    def attach(self, spec: ModelSpec, dim: int) -> None:
        """Create or open the catalog (migrating an older one) and the vectors, and reconcile them.

        Raises:
            ModelMismatch: the store was made with another model or weights.
            StoreError: the catalog is newer than this program.
        """
        self.spec, self.dim = spec, dim
        with self._catalog() as con:
            schema.create(con, self.dir, spec.name, spec.pretrained, dim)
        self._load_and_reconcile()

    def close(self) -> None:
        try:
            if self._index is not None and self._dirty:
                with contextlib.suppress(StoreError, OSError):
                    vecfile.write_atomic(self._index, self.dir / VECTORS)  # drop replaced vectors now
        finally:
            self._dirty = False
            self._index = None
            if self._lock_fh is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
                self._lock_fh.close()
                self._lock_fh = None

    @contextlib.contextmanager
    def _catalog(self) -> Iterator[Any]:
        con = connect(self.dir / CATALOG, read_only=False)
        try:
            yield con
        finally:
            con.close()

    def _load_and_reconcile(self) -> None:
        """Load the vectors and make them agree with the catalog (see the module docstring)."""
        path = self.dir / VECTORS
        self._index, self.damaged_file = vecfile.read_or_move_aside(path, self.dim)
        ids, _ = vecfile.arrays(self._index)
        with self._catalog() as con:
            cat_ids = np.asarray(con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"], np.int64)
            orphans = np.setdiff1d(ids, cat_ids)
            missing = np.setdiff1d(cat_ids, ids)
            if len(missing):
                con.register("missing_ids", {"frame_id": missing.astype(np.int64)})
                broken = con.execute(
                    "SELECT DISTINCT v.video_id, v.path FROM videos v JOIN frames f USING (video_id) "
                    "JOIN missing_ids m USING (frame_id)"
                ).fetchall()
                con.unregister("missing_ids")
                with transaction(con):
                    _delete_rows(con, [vid for vid, _ in broken])
                self.repaired = [p for _, p in broken]
                kept = np.asarray(con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"], np.int64)
                orphans = np.setdiff1d(ids, kept)
            if len(orphans):
                self._index.remove_ids(orphans.astype(np.int64))
                vecfile.write_atomic(self._index, path)
            self._next_video_id = int(con.execute("SELECT coalesce(max(video_id), -1) + 1 FROM videos").fetchall()[0][0])
            self._next_shot_id = int(con.execute("SELECT coalesce(max(shot_id), -1) + 1 FROM shots").fetchall()[0][0])
        ids, _ = vecfile.arrays(self._index)
        self._next_frame_id = int(ids.max()) + 1 if len(ids) else 0

    # -- small changes --------------------------------------------------------------------------
    def touch(self, path: str, mtime: float) -> None:
        """Record a new mtime for a file whose content fingerprint did not change."""
        with self._catalog() as con:
            con.execute("UPDATE videos SET mtime = ? WHERE path = ?", [mtime, path])

    def remove_videos(self, paths: Sequence[str]) -> int:
        """Remove videos (rows, shots, label rows, then vectors); returns how many were known."""
        if not paths:
            return 0
        with self._catalog() as con:
            vids = _video_ids_of(con, paths)
            if not vids:
                return 0
            fids = _frame_ids_of(con, vids)
            with transaction(con):
                _delete_rows(con, vids)
        if len(fids):  # after the catalog, as in a commit: a crash leaves only orphans
            self._index.remove_ids(fids)
            vecfile.write_atomic(self._index, self.dir / VECTORS)
        return len(vids)

    # -- labels ---------------------------------------------------------------------------------
    def save_label(self, name: str, prompts: Sequence[str], threshold: float | None) -> None:
        """Add or replace a label."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM labels WHERE label = ?", [name])
            con.execute("INSERT INTO labels VALUES (?, ?, ?, ?)", [name, list(prompts), threshold, now()])

    def remove_label(self, name: str) -> bool:
        """Remove a label and its results; False when there was none."""
        with self._catalog() as con:
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            with transaction(con):
                for table in ("labels", "segments", "video_labels"):
                    con.execute(f"DELETE FROM {table} WHERE label = ?", [name])
        return bool(n)

    def replace_label_results(self, results: LabelResults) -> None:
        """Swap in freshly computed ``segments`` and ``video_labels`` in one transaction."""
        seg, vl = results.segments, results.videos
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM segments")
            con.execute("DELETE FROM video_labels")
            if seg:
                con.register("_seg", {
                    "label": np.array([r.label for r in seg], dtype=object),
                    "video_id": np.array([r.video_id for r in seg], np.int32),
                    "start_s": np.array([r.start_s for r in seg], np.float64),
                    "end_s": np.array([r.end_s for r in seg], np.float64),
                    "peak_score": np.array([r.peak_score for r in seg], np.float64),
                })
                con.execute("INSERT INTO segments SELECT label, video_id, start_s, end_s, peak_score FROM _seg")
                con.unregister("_seg")
            if vl:
                nan = float("nan")
                con.register("_vl", {
                    "video_id": np.array([r.video_id for r in vl], np.int32),
                    "label": np.array([r.label for r in vl], dtype=object),
                    "present": np.array([r.present for r in vl], bool),
                    "first_seen_s": np.array([nan if r.first_seen_s is None else r.first_seen_s for r in vl], np.float64),
                    "duration_s": np.array([r.duration_s for r in vl], np.float64),
                    "n_segments": np.array([r.n_segments for r in vl], np.int32),
                    "best_s": np.array([nan if r.best_s is None else r.best_s for r in vl], np.float64),
                    "score": np.array([r.score for r in vl], np.float64),
                })
                con.execute(
                    "INSERT INTO video_labels SELECT video_id, label, present, "
                    "CASE WHEN isnan(first_seen_s) THEN NULL ELSE first_seen_s END, duration_s, n_segments, "
                    "CASE WHEN isnan(best_s) THEN NULL ELSE best_s END, score FROM _vl"
                )
                con.unregister("_vl")

    # -- thumbnails -----------------------------------------------------------------------------
    def set_thumbnails(self, frame_ids: Sequence[int], jpegs: Sequence[bytes]) -> None:
        """Store thumbnails for frames already in the catalog (appended, then pointed at). An empty
        picture means tried, none found (``thumb_bytes = 0``, no offset)."""
        if not frame_ids:
            return
        (offs, lens), = self._append_thumbs([(len(frame_ids), jpegs)])
        with self._catalog() as con:
            con.register("_thumbs", {"frame_id": np.asarray(frame_ids, np.int64), "o": np.asarray(offs, np.int64),
                                     "b": np.asarray(lens, np.int32)})
            try:
                con.execute("UPDATE frames SET thumb_offset = CASE WHEN t.b > 0 THEN t.o END, thumb_bytes = t.b "
                            "FROM _thumbs t WHERE frames.frame_id = t.frame_id")
            finally:
                con.unregister("_thumbs")

    def _append_thumbs(
        self, groups: Sequence[tuple[int, Sequence[bytes] | None]]
    ) -> list[tuple[list[int | None], list[int | None]]]:
        """Append groups of thumbnails (a video's frames: ``(n_frames, jpegs or None)``) to
        thumbs.bin, fsynced; per group, each frame's (offsets, lengths), None where it has none."""
        out: list[tuple[list[int | None], list[int | None]]] = []
        if not any(thumbs for _, thumbs in groups):
            return [([None] * n, [None] * n) for n, _ in groups]
        path = self.dir / THUMBS
        new_file = not path.exists()
        try:
            with open(path, "ab") as fh:
                pos = fh.seek(0, os.SEEK_END)
                for n, thumbs in groups:
                    if not thumbs or len(thumbs) != n:
                        out.append(([None] * n, [None] * n))
                        continue
                    offs, lens = [], []
                    for jpeg in thumbs:
                        fh.write(jpeg)
                        offs.append(pos)
                        lens.append(len(jpeg))
                        pos += len(jpeg)
                    out.append((offs, lens))
                fh.flush()
                os.fsync(fh.fileno())
            if new_file:  # the file's name must be on disk before a catalog row points into it
                fsync_dir(self.dir)
        except OSError as exc:
            raise StoreError(f"cannot write thumbnails to {path}: {exc.strerror or exc}") from exc
        return out

    # -- the commit -----------------------------------------------------------------------------
    def commit(self, records: Sequence[VideoRecord], failures: Sequence[tuple[str, str]] = ()) -> None:
        """Commit finished videos (each all-or-nothing) and ``(path, error)`` failure rows.
        Re-indexed paths replace their old rows and vectors."""
        if not records and not failures:
            return
        paths = [r.path for r in records]
        with self._catalog() as con:
            old_ids = _video_ids_of(con, paths)
            old_frames = _frame_ids_of(con, old_ids)

            # 0. thumbnails: appended to thumbs.bin (bytes no catalog row points at are harmless).
            thumb_at = self._append_thumbs([(len(r.frames), r.thumbs) for r in records])
            if records:
                hooks.pause("commit.thumbs")

            # 1. vectors: the new ones in, the file swapped atomically.
            rows = _Rows()
            if records:
                all_vecs, all_ids = [], []
                for rec, (t_off, t_len) in zip(records, thumb_at):
                    ids = self._take_ids(rec, t_off, t_len, rows)
                    all_ids.append(ids)
                    all_vecs.append(np.ascontiguousarray(rec.vectors, dtype=np.float32))
                vecs = np.concatenate(all_vecs) if all_vecs else np.zeros((0, self.dim), np.float32)
                if len(vecs):
                    self._index.add_with_ids(vecs, np.concatenate(all_ids))
                vecfile.write_atomic(self._index, self.dir / VECTORS)
                self._dirty = False
                hooks.pause("commit.vectors")

            # 2. catalog, in one transaction.
            with transaction(con):
                _delete_rows(con, old_ids)
                if rows.videos:
                    con.executemany(f"INSERT INTO videos VALUES ({', '.join('?' * 16)})", rows.videos)
                if rows.frames:
                    rows.insert_frames_and_shots(con)
                if paths:
                    con.execute(f"DELETE FROM failures WHERE path IN ({', '.join('?' for _ in paths)})", paths)
                if failures:
                    stamp = now()
                    con.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(p, e, stamp) for p, e in failures])
        hooks.pause("commit.catalog")
        # 3. the replaced videos' old vectors are now unreferenced: drop them from memory; the
        # next vector write persists that (until then they are harmless orphans).
        if len(old_frames):
            self._index.remove_ids(old_frames)
            self._dirty = True

    def _take_ids(self, rec: VideoRecord, t_off: list[int | None], t_len: list[int | None], rows: "_Rows") -> np.ndarray:
        """Give a record its video, shot and frame ids, and add its catalog rows to ``rows``."""
        vid = self._next_video_id
        self._next_video_id += 1
        n = len(rec.frames)
        ids = np.arange(self._next_frame_id, self._next_frame_id + n, dtype=np.int64)
        self._next_frame_id += n
        shots = rec.shots or [ShotRecord(0.0, rec.duration_s)]
        first_shot = self._next_shot_id
        self._next_shot_id += len(shots)
        rows.shots.extend((first_shot + k, vid, s.start_s, s.end_s, s.kind) for k, s in enumerate(shots))
        rows.frames.extend(
            (int(i), vid, f.ts_s, f.end_s, first_shot + f.shot, o, b)
            for i, f, o, b in zip(ids, rec.frames, t_off, t_len)
        )
        rows.videos.append((
            vid, rec.path, Path(rec.path).name, rec.size_bytes, rec.mtime, rec.fingerprint,
            rec.duration_s, rec.fps, rec.width, rec.height, rec.codec, n, rec.sample_fps,
            rec.decoded_frames, rec.note, now(),
        ))
        return ids


class _Rows:
    """Catalog rows of one commit, in the tables' column order (private to the writer)."""

    def __init__(self) -> None:
        self.videos: list[tuple[Any, ...]] = []
        self.frames: list[tuple[int, int, float, float, int, int | None, int | None]] = []
        self.shots: list[tuple[int, int, float, float, str]] = []

    def insert_frames_and_shots(self, con: Any) -> None:
        """Bulk insert from numpy columns (DuckDB's executemany is slow: ~1.5k rows/s)."""
        fr, sh = self.frames, self.shots
        con.register("_new_frames", {
            "frame_id": np.array([r[0] for r in fr], dtype=np.int64),
            "video_id": np.array([r[1] for r in fr], dtype=np.int32),
            "ts_s": np.array([r[2] for r in fr], dtype=np.float64),
            "end_s": np.array([r[3] for r in fr], dtype=np.float64),
            "shot_id": np.array([r[4] for r in fr], dtype=np.int64),
            "thumb_offset": np.array([-1 if r[5] is None else r[5] for r in fr], dtype=np.int64),
            "thumb_bytes": np.array([0 if r[6] is None else r[6] for r in fr], dtype=np.int32),
        })
        con.register("_new_shots", {
            "shot_id": np.array([r[0] for r in sh], dtype=np.int64),
            "video_id": np.array([r[1] for r in sh], dtype=np.int32),
            "start_s": np.array([r[2] for r in sh], dtype=np.float64),
            "end_s": np.array([r[3] for r in sh], dtype=np.float64),
            "kind": np.array([r[4] for r in sh], dtype=object),
        })
        try:
            con.execute(
                "INSERT INTO frames SELECT frame_id, video_id, ts_s, end_s, shot_id, "
                "CASE WHEN thumb_bytes > 0 THEN thumb_offset END, CASE WHEN thumb_bytes > 0 THEN thumb_bytes END "
                "FROM _new_frames"
            )
            con.execute("INSERT INTO shots SELECT shot_id, video_id, start_s, end_s, kind FROM _new_shots")
        finally:
            con.unregister("_new_frames")
            con.unregister("_new_shots")
