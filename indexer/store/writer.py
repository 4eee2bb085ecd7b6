"""The single writer of a store: the lock, reconciling the catalog with the vector layer, and
every change to them.

Commit protocol, one batch of finished videos at a time (each video is all-or-nothing):

0. their thumbnails are appended to ``thumbs.bin`` and fsynced;
1. their vectors (and per-frame background terms) are written as one new, immutable segment
   (temp file, fsync, rename; :mod:`.segments`); nothing already stored is read or rewritten;
2. one DuckDB transaction replaces the videos' rows, inserts their frames and shots, and
   registers the segment.

A crash before step 2 leaves an unregistered segment file that no reader opens and the next
writer deletes; after it, the videos are committed. Replaced and removed videos leave dead rows in
their segments (readers skip them); merges (after an index run, or ``archive optimize``) drop them.
If a segment file is lost or damaged, the videos it held are dropped from the catalog and are
re-embedded by the next ``archive index`` of their folders.

DuckDB allows one read-write process or many read-only ones per file. The writer opens the catalog
only for the length of a change, so readers keep working while an index run goes on.

Longer than the project's ~500 lines on purpose: the lock, reconciling and the commit share the
writer's id counters and its view of the vector layer, and stay in one class so they cannot
disagree; labels, shared footage and the layer's upkeep are the writer's parts in their own modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence, cast

import numpy as np

from indexer import crashpoints
from indexer.errors import ModelMismatch, StoreError, StoreLocked

from . import ivf as ivfmod
from . import schema, segments, shared_footage, thumbnails
from . import vectors as vecfile
from .label_tables import LabelWriter
from .layout import CATALOG, LOCK, VECTORS, connect, fsync_dir, now, transaction
from .reader import IMAGE_LEVELS_KEY, Reader, levels_stamp
from .records import ModelSpec, ShotRecord, VideoRecord
from .segments import SegmentRef
from .shared_footage import MatchWriter
from .upkeep import LayerKeeper


def _delete_rows(con: Any, video_ids: Sequence[int]) -> None:
    """Delete videos' rows from every per-video table. Call inside a transaction."""
    if not video_ids:
        return
    ph = ", ".join("?" for _ in video_ids)
    n = con.execute(
        f"SELECT count(*) FROM matches WHERE video_a IN ({ph}) OR video_b IN ({ph})", list(video_ids) * 2
    ).fetchall()[0][0]
    for table in schema.PER_VIDEO_TABLES:
        con.execute(f"DELETE FROM {table} WHERE video_id IN ({ph})", list(video_ids))
    if n:
        con.execute(f"DELETE FROM matches WHERE video_a IN ({ph}) OR video_b IN ({ph})", list(video_ids) * 2)
        shared_footage.regroup(con)


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
        self._next_video_id = 0
        self.next_frame_id = 0
        self._next_shot_id = 0
        self.next_segment_id = 0
        self.repaired: list[str] = []  # videos dropped because their vectors were missing
        self.damaged_file: str | None = None  # where an unreadable vector file was moved
        self.removed_files: list[str] = []  # orphan segment files deleted by reconcile
        self.ivf_ref: ivfmod.IvfRef | None = None  # the registered IVF index (large archives)
        self.ivf_codec: ivfmod.IvfCodec | None = None  # ... loaded when a commit needs it
        self.lists_ref: ivfmod.ListsRef | None = None  # ... and its registered lists file
        self.labels = LabelWriter(self)  # saved labels and their answers
        self.footage = MatchWriter(self)  # shared footage: matches, versions, the matching basis
        self.layer = LayerKeeper(self)  # merges, optimize, the IVF index and its lists file

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
        with self.catalog() as con:
            schema.create(con, self.dir, spec.name, spec.pretrained, dim)
        self._adopt_single_file()
        self._reconcile()

    def attach_existing(self) -> None:
        """:meth:`attach` an existing store with the model its catalog records.

        Raises:
            StoreNotFound: no catalog there.
        """
        meta = Reader(self.dir).meta()
        self.attach(ModelSpec(meta["model"], meta["pretrained"]), int(meta["dim"]))

    def close(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    @contextlib.contextmanager
    def catalog(self) -> Iterator[Any]:
        con = connect(self.dir / CATALOG, read_only=False)
        try:
            yield con
        finally:
            con.close()

    def _move_aside(self, path: Path) -> str:
        aside = segments.damaged_name(path)
        os.replace(path, aside)
        return str(aside)

    def _adopt_single_file(self) -> None:
        """A store of schema 3 or older kept every vector in ``frames.faiss``: it becomes segment
        0 as it is (registered first, then moved, so a crash in between is finished next time)."""
        legacy = self.dir / VECTORS
        if not legacy.exists():
            return
        try:
            ids, vecs, _owner = vecfile.map_file(legacy)
        except StoreError:
            self.damaged_file = self._move_aside(legacy)  # its videos are dropped by _reconcile
            return
        if len(ids) and vecs.shape[1] != self.dim:
            raise ModelMismatch(f"{legacy} holds {vecs.shape[1]}-d vectors, the model makes {self.dim}-d ones.")
        ref = SegmentRef(
            0,
            segments.file_name(0),
            segments.FLAT,
            len(ids),
            int(ids.min()) if len(ids) else 0,
            int(ids.max()) if len(ids) else -1,
            None,
        )
        del ids, vecs, _owner
        with self.catalog() as con:
            if not any(r.segment_id == 0 for r in segments.registered(con)) and ref.n_vectors:
                with transaction(con):
                    segments.register(con, ref)
        if ref.n_vectors:
            ref.path(self.dir).parent.mkdir(exist_ok=True)
            os.replace(legacy, ref.path(self.dir))
            fsync_dir(ref.path(self.dir).parent)
        else:
            legacy.unlink()
        fsync_dir(self.dir)

    def _reconcile(self) -> None:
        """Make the catalog and the vector layer agree, in time proportional to the number of
        segments (see the module docstring): orphan files are deleted, a missing or damaged
        segment is unregistered (a damaged file is moved aside), and videos with frames no
        segment holds are dropped, to be re-embedded by the next index run of their folders."""
        with self.catalog() as con:
            refs = segments.registered(con)
            self.ivf_ref = ivfmod.current(con)
            self.ivf_codec = None
            self.lists_ref = ivfmod.current_lists(con)
            keep = [self.ivf_ref.file if self.ivf_ref else None, self.lists_ref.file if self.lists_ref else None]
            for p in segments.orphan_files(self.dir, refs, keep):
                with contextlib.suppress(OSError):
                    p.unlink()
                    self.removed_files.append(p.name)
            bad = []
            for ref in refs:
                problem = segments.verify_header(self.dir, ref, self.dim)
                if problem is None:
                    continue
                if ref.path(self.dir).exists():
                    self.damaged_file = self._move_aside(ref.path(self.dir))
                bad.append(ref.segment_id)
            if bad:
                with transaction(con):
                    segments.unregister(con, bad)
            self._reconcile_codes(con, [r for r in refs if r.segment_id not in bad])
            # every catalog frame lies in a registered segment's id range? (one cheap count per
            # segment: frame ids grow with insertion, so each count reads a few row groups)
            total = con.execute("SELECT count(*) FROM frames").fetchall()[0][0]
            covered = sum(segments.live_rows(con, segments.registered(con)).values())
            broken = (
                []
                if covered == total
                else con.execute(
                    "SELECT DISTINCT v.video_id, v.path FROM videos v JOIN frames f USING (video_id) WHERE NOT EXISTS "
                    "(SELECT 1 FROM vector_segments s WHERE f.frame_id BETWEEN s.min_frame_id AND s.max_frame_id)"
                ).fetchall()
            )
            if broken:
                with transaction(con):
                    _delete_rows(con, [vid for vid, _ in broken])
                self.repaired = [p for _, p in broken]

            def one(sql: str) -> int:
                return int(con.execute(sql).fetchall()[0][0])

            self._next_video_id = one("SELECT coalesce(max(video_id), -1) + 1 FROM videos")
            self._next_shot_id = one("SELECT coalesce(max(shot_id), -1) + 1 FROM shots")
            # (never below the lists file's: rows up to its frame id are taken to be in it)
            self.next_frame_id = max(
                one("SELECT coalesce(max(frame_id), -1) + 1 FROM frames"),
                one("SELECT coalesce(max(max_frame_id), -1) + 1 FROM vector_segments"),
                self.lists_ref.max_frame_id + 1 if self.lists_ref else 0,
            )
            self.next_segment_id = one("SELECT coalesce(max(segment_id), -1) + 1 FROM vector_segments")

    def _reconcile_codes(self, con: Any, refs: Sequence[SegmentRef]) -> None:
        """Segments whose IVF codes are lost (or belong to an index no longer registered) are
        marked as having none: queries then scan their rows exactly; `archive optimize` encodes them."""
        cur = self.ivf_ref
        lost = [
            r.segment_id
            for r in refs
            if r.ivf_id is not None
            and (
                cur is None
                or r.ivf_id != cur.ivf_id
                or not r.ivf_path(self.dir).exists()
                or r.ivf_path(self.dir).stat().st_size != r.n_vectors * cur.code_size
            )
        ]
        if lost:
            with transaction(con):
                con.execute(
                    f"UPDATE vector_segments SET ivf_id = NULL WHERE segment_id IN ({', '.join('?' * len(lost))})", lost
                )

    def codec(self) -> ivfmod.IvfCodec | None:
        """The registered IVF index, loaded once (None: the archive has none)."""
        if self.ivf_ref is not None and self.ivf_codec is None:
            self.ivf_codec = ivfmod.IvfCodec.load(self.dir, self.ivf_ref)
        return self.ivf_codec

    # -- small changes --------------------------------------------------------------------------
    def touch(self, path: str, mtime: float) -> None:
        """Record a new mtime for a file whose content fingerprint did not change."""
        with self.catalog() as con:
            con.execute("UPDATE videos SET mtime = ? WHERE path = ?", [mtime, path])

    def remove_videos(self, paths: Sequence[str]) -> int:
        """Remove videos (rows, shots, label rows, then vectors); returns how many were known."""
        if not paths:
            return 0
        with self.catalog() as con:
            vids = _video_ids_of(con, paths)
            if not vids:
                return 0
            with transaction(con):
                _delete_rows(con, vids)  # their vectors become dead rows, dropped by merges
        return len(vids)

    def save_image_levels(self, levels: dict[str, Any], stamp: str) -> bool:
        """Keep the image rule's levels (``meta.image_levels``, :mod:`search.levels`), measured at
        ``stamp``; kept only when the store is still at that stamp (else False: nothing saved)."""
        with self.catalog() as con, transaction(con):
            if levels_stamp(con) != stamp:
                return False
            con.execute("DELETE FROM meta WHERE key = ?", [IMAGE_LEVELS_KEY])
            con.execute("INSERT INTO meta VALUES (?, ?)", [IMAGE_LEVELS_KEY, json.dumps({**levels, "stamp": stamp})])
        return True

    # -- on-screen text -------------------------------------------------------------------------
    def remember_ocr(self) -> None:
        """Record that this store reads on-screen text: later index runs read it for new videos too."""
        with self.catalog() as con, transaction(con):
            con.execute("DELETE FROM meta WHERE key = 'ocr'")
            con.execute("INSERT INTO meta VALUES ('ocr', '1')")

    def set_ocr(self, video_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
        """Replace one indexed video's text lines (``ocr`` rows, see :func:`ocr_row`) in one transaction."""
        with self.catalog() as con, transaction(con):
            con.execute("DELETE FROM ocr WHERE video_id = ?", [video_id])
            if rows:
                _insert_ocr(con, rows)
            con.execute("UPDATE videos SET ocr_lines = ? WHERE video_id = ?", [len(rows), video_id])

    # -- speech ---------------------------------------------------------------------------------
    def remember_speech(self) -> None:
        """Record that this store transcribes speech: later index runs transcribe new videos too."""
        with self.catalog() as con, transaction(con):
            con.execute("DELETE FROM meta WHERE key = 'speech'")
            con.execute("INSERT INTO meta VALUES ('speech', '1')")

    def set_speech(self, video_id: int, transcript: Any) -> None:
        """Replace one indexed video's spoken lines and words (an
        :class:`indexer.media.speech.Transcript`) in one transaction."""
        with self.catalog() as con, transaction(con):
            con.execute("DELETE FROM speech WHERE video_id = ?", [video_id])
            con.execute("DELETE FROM speech_words WHERE video_id = ?", [video_id])
            insert_speech(con, video_id, transcript)
            con.execute(
                "UPDATE videos SET speech_lines = ?, speech_language = ?, speech_language_p = ?, sound_s = ? "
                "WHERE video_id = ?",
                [*speech_columns(transcript), video_id],
            )

    # -- sound fingerprints ---------------------------------------------------------------------
    def set_sound(self, prints: Sequence[tuple[int, Any]]) -> None:
        """Replace indexed videos' landmark fingerprints (``(video_id, indexer.media.sound.Prints)``
        pairs) in one transaction; each video's rows are inserted sorted by hash."""
        if not prints:
            return
        ids = [vid for vid, _ in prints]
        h = np.concatenate([p.hashes for _, p in prints]).astype(np.int32)
        v = np.concatenate([np.full(len(p.hashes), vid, np.int32) for vid, p in prints])
        t = np.concatenate([p.t for _, p in prints]).astype(np.int32)
        order = np.argsort(h, kind="stable")
        new = {"hash": h[order], "video_id": v[order], "t": t[order]}
        ph = ", ".join("?" for _ in ids)
        with self.catalog() as con, transaction(con):
            con.execute(f"DELETE FROM sound_hashes WHERE video_id IN ({ph})", ids)
            con.register("_new_hashes", new)
            try:
                con.execute("INSERT INTO sound_hashes SELECT hash, video_id, t FROM _new_hashes")
            finally:
                con.unregister("_new_hashes")
            con.executemany(
                "UPDATE videos SET sound_hashes = ?, sound_s = coalesce(sound_s, ?) WHERE video_id = ?",
                [(len(p.hashes), round(p.seconds, 3), vid) for vid, p in prints],
            )

    def sort_sound(self, min_unsorted: int = 4_000_000, fraction: float = 0.1) -> bool:
        """Rewrite ``sound_hashes`` in hash order once the rows added since the last rewrite pass
        ``min_unsorted`` and ``fraction`` of the table. In hash order, DuckDB's per-row-group
        minimum and maximum (its zone maps) let a lookup of a query's hashes read only the row
        groups that can hold them; rows appended since are read whole (at most the threshold). A
        rewrite costs one sort of the table: done every 10 % of growth, it is paid about ten times
        over the life of an archive. Returns whether it rewrote."""
        with self.catalog() as con:
            total = con.execute("SELECT count(*) FROM sound_hashes").fetchall()[0][0]
            row = con.execute("SELECT value FROM meta WHERE key = 'sound_sorted_rows'").fetchall()
            done = int(row[0][0]) if row else 0
            if total - done < max(min_unsorted, fraction * done):
                return False
            with transaction(con):
                con.execute("DROP TABLE IF EXISTS _sound_sorted")
                con.execute(schema.SOUND_HASHES.replace("sound_hashes", "_sound_sorted", 1))
                con.execute("INSERT INTO _sound_sorted SELECT hash, video_id, t FROM sound_hashes ORDER BY hash")
                con.execute("DROP TABLE sound_hashes")
                con.execute("ALTER TABLE _sound_sorted RENAME TO sound_hashes")
                con.execute("DELETE FROM meta WHERE key = 'sound_sorted_rows'")
                con.execute("INSERT INTO meta VALUES ('sound_sorted_rows', ?)", [str(total)])
            con.execute("CHECKPOINT")
        return True

    def note_failure(self, path: str, error: str) -> None:
        """Add a ``failures`` row for an indexed video (its text could not be read, say)."""
        with self.catalog() as con, transaction(con):
            con.execute("INSERT INTO failures VALUES (?, ?, ?)", [path, error, now()])

    # -- thumbnails -----------------------------------------------------------------------------
    def set_thumbnails(self, frame_ids: Sequence[int], jpegs: Sequence[bytes]) -> None:
        """Store thumbnails for frames already in the catalog (appended, then pointed at). An empty
        picture means tried, none found (``thumb_bytes = 0``, no offset)."""
        if not frame_ids:
            return
        ((offs, lens),) = thumbnails.append(self.dir, [(len(frame_ids), jpegs)])
        with self.catalog() as con:
            con.register(
                "_thumbs",
                {
                    "frame_id": np.asarray(frame_ids, np.int64),
                    "o": np.asarray(offs, np.int64),
                    "b": np.asarray(lens, np.int32),
                },
            )
            try:
                con.execute(
                    "UPDATE frames SET thumb_offset = CASE WHEN t.b > 0 THEN t.o END, thumb_bytes = t.b "
                    "FROM _thumbs t WHERE frames.frame_id = t.frame_id"
                )
            finally:
                con.unregister("_thumbs")

    # -- the commit -----------------------------------------------------------------------------
    def commit(self, records: Sequence[VideoRecord], failures: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Commit finished videos (each all-or-nothing) and ``(path, error)`` failure rows.
        Re-indexed paths replace their old rows (their old vectors become dead rows).

        Returns:
            The new videos' ids, in the order of ``records``.
        """
        if not records and not failures:
            return []
        paths = [r.path for r in records]
        with self.catalog() as con:
            old_ids = _video_ids_of(con, paths)

            # 0. thumbnails: appended to thumbs.bin (bytes no catalog row points at are harmless).
            thumb_at = thumbnails.append(self.dir, [(len(r.frames), r.thumbs) for r in records])
            if records:
                crashpoints.pause("commit.thumbs")

            # 1. vectors: one new segment with these videos' vectors only.
            rows = _Rows()
            all_vecs, all_ids, all_bg = [], [], []
            for rec, (t_off, t_len) in zip(records, thumb_at):
                all_ids.append(self._take_ids(rec, t_off, t_len, rows))
                all_vecs.append(np.ascontiguousarray(rec.vectors, dtype=np.float32))
                all_bg.append(rec.bg_lse)
            keys = {rec.bg_key for rec in records}
            bg_key = keys.pop() if len(keys) == 1 and all(b is not None for b in all_bg) else None
            seg = None
            n = sum(len(i) for i in all_ids)
            if n:
                ids = np.concatenate(all_ids)
                # a key only when every record has its background term
                bg = np.concatenate(cast("list[np.ndarray]", all_bg)) if bg_key is not None else None
                seg = segments.write_segment(
                    self.dir,
                    self.next_segment_id,
                    self.dim,
                    iter([(ids, np.concatenate(all_vecs), bg)]),
                    bg_key,
                    ivf=self.codec(),
                )
                self.next_segment_id += 1
                crashpoints.pause("commit.vectors")

            # 2. catalog, in one transaction.
            with transaction(con):
                _delete_rows(con, old_ids)
                if rows.videos:
                    con.executemany(f"INSERT INTO videos VALUES ({', '.join('?' * 24)})", rows.videos)
                if rows.frames:
                    rows.insert_frames_and_shots(con)
                if rows.ocr:
                    _insert_ocr(con, rows.ocr)
                for vid, transcript in rows.speech:
                    insert_speech(con, vid, transcript)
                if seg is not None:
                    segments.register(con, seg)
                if paths:
                    con.execute(f"DELETE FROM failures WHERE path IN ({', '.join('?' for _ in paths)})", paths)
                if failures:
                    stamp = now()
                    con.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(p, e, stamp) for p, e in failures])
        crashpoints.pause("commit.catalog")
        return [r[0] for r in rows.videos]

    def _take_ids(
        self, rec: VideoRecord, t_off: list[int | None], t_len: list[int | None], rows: "_Rows"
    ) -> np.ndarray:
        """Give a record its video, shot and frame ids, and add its catalog rows to ``rows``."""
        vid = self._next_video_id
        self._next_video_id += 1
        n = len(rec.frames)
        ids = np.arange(self.next_frame_id, self.next_frame_id + n, dtype=np.int64)
        self.next_frame_id += n
        shots = rec.shots or [ShotRecord(0.0, rec.duration_s)]
        first_shot = self._next_shot_id
        self._next_shot_id += len(shots)
        rows.shots.extend(
            (first_shot + k, vid, s.start_s, s.end_s, s.kind, s.transition, s.trans_start_s, s.trans_end_s)
            for k, s in enumerate(shots)
        )
        rows.frames.extend(
            (int(i), vid, f.ts_s, f.end_s, first_shot + f.shot, o, b)
            for i, f, o, b in zip(ids, rec.frames, t_off, t_len)
        )
        rows.videos.append(
            (
                vid,
                rec.path,
                Path(rec.path).name,
                rec.size_bytes,
                rec.mtime,
                rec.fingerprint,
                rec.duration_s,
                rec.fps,
                rec.width,
                rec.height,
                rec.codec,
                n,
                rec.sample_fps,
                rec.decoded_frames,
                rec.note,
                now(),
                rec.shot_detector,
                None if rec.ocr is None else len(rec.ocr),
                None,
                *speech_columns(rec.speech),
                None,  # sound_hashes: fingerprinted after the commit (indexer.run.listen)
            )
        )
        if rec.speech is not None:
            rows.speech.append((vid, rec.speech))
        rows.ocr.extend(ocr_row(int(ids[ln.best]), vid, ln) for ln in rec.ocr or [])
        return ids


def ocr_row(frame_id: int, video_id: int, line: Any) -> tuple[Any, ...]:
    """An ``ocr`` row of an :class:`indexer.media.ocr.OcrLine`, in the table's column order."""
    r = line.reading
    return (frame_id, video_id, line.start_s, line.end_s, r.text, r.confidence, r.x, r.y, r.w, r.h, r.norm)


OCR_COLUMNS = ("frame_id", "video_id", "start_s", "end_s", "text", "confidence", "x", "y", "w", "h", "text_norm")


def _insert_ocr(con: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert ``ocr`` rows (DuckDB's executemany is slow)."""
    kinds = (
        np.int64,
        np.int32,
        np.float64,
        np.float64,
        object,
        np.float64,
        np.float64,
        np.float64,
        np.float64,
        np.float64,
        object,
    )
    con.register(
        "_new_ocr", {c: np.array([r[k] for r in rows], dtype=t) for k, (c, t) in enumerate(zip(OCR_COLUMNS, kinds))}
    )
    try:
        con.execute(f"INSERT INTO ocr ({', '.join(OCR_COLUMNS)}) SELECT {', '.join(OCR_COLUMNS)} FROM _new_ocr")
    finally:
        con.unregister("_new_ocr")


def speech_columns(transcript: Any) -> tuple[Any, Any, Any, Any]:
    """The ``videos`` columns of a transcript: lines, language, its probability, seconds of sound
    (all NULL: not transcribed)."""
    if transcript is None:
        return (None, None, None, None)
    return (len(transcript.lines), transcript.language, transcript.language_p, float(transcript.sound_s))


def insert_speech(con: Any, video_id: int, transcript: Any) -> None:
    """Insert a transcript's ``speech`` and ``speech_words`` rows (bulk, from numpy columns)."""
    lines = transcript.lines
    if not lines:
        return
    con.register(
        "_new_speech",
        {
            "video_id": np.full(len(lines), video_id, np.int32),
            "line": np.arange(len(lines), dtype=np.int32),
            "start_s": np.array([ln.start_s for ln in lines], np.float64),
            "end_s": np.array([ln.end_s for ln in lines], np.float64),
            "text": np.array([ln.text for ln in lines], object),
            "language": np.array([ln.language or transcript.language or "" for ln in lines], object),
            "confidence": np.array([ln.confidence for ln in lines], np.float64),
            "text_norm": np.array([ln.norm for ln in lines], object),
        },
    )
    words = [(k, w) for k, ln in enumerate(lines) for w in ln.words]
    con.register(
        "_new_words",
        {
            "video_id": np.full(len(words), video_id, np.int32),
            "line": np.array([k for k, _ in words], np.int32),
            "word": np.array([w.word for _, w in words], object),
            "start_s": np.array([w.start_s for _, w in words], np.float64),
            "end_s": np.array([w.end_s for _, w in words], np.float64),
            "probability": np.array([w.probability for _, w in words], np.float64),
            "word_norm": np.array([w.norm for _, w in words], object),
        },
    )
    try:
        con.execute(
            "INSERT INTO speech SELECT video_id, line, start_s, end_s, text, NULLIF(language, ''), confidence, "
            "text_norm FROM _new_speech"
        )
        con.execute(
            "INSERT INTO speech_words SELECT video_id, line, word, start_s, end_s, probability, word_norm FROM _new_words"
        )
    finally:
        con.unregister("_new_speech")
        con.unregister("_new_words")


class _Rows:
    """Catalog rows of one commit, in the tables' column order (private to the writer)."""

    def __init__(self) -> None:
        self.videos: list[tuple[Any, ...]] = []
        self.frames: list[tuple[int, int, float, float, int, int | None, int | None]] = []
        self.shots: list[tuple[Any, ...]] = []
        self.ocr: list[tuple[Any, ...]] = []
        self.speech: list[tuple[int, Any]] = []  # (video_id, indexer.media.speech.Transcript)

    def insert_frames_and_shots(self, con: Any) -> None:
        """Bulk insert from numpy columns (DuckDB's executemany is slow: ~1.5k rows/s)."""
        fr, sh = self.frames, self.shots
        con.register(
            "_new_frames",
            {
                "frame_id": np.array([r[0] for r in fr], dtype=np.int64),
                "video_id": np.array([r[1] for r in fr], dtype=np.int32),
                "ts_s": np.array([r[2] for r in fr], dtype=np.float64),
                "end_s": np.array([r[3] for r in fr], dtype=np.float64),
                "shot_id": np.array([r[4] for r in fr], dtype=np.int64),
                "thumb_offset": np.array([-1 if r[5] is None else r[5] for r in fr], dtype=np.int64),
                "thumb_bytes": np.array([0 if r[6] is None else r[6] for r in fr], dtype=np.int32),
            },
        )
        con.register(
            "_new_shots",
            {
                "shot_id": np.array([r[0] for r in sh], dtype=np.int64),
                "video_id": np.array([r[1] for r in sh], dtype=np.int32),
                "start_s": np.array([r[2] for r in sh], dtype=np.float64),
                "end_s": np.array([r[3] for r in sh], dtype=np.float64),
                "kind": np.array([r[4] for r in sh], dtype=object),
                "transition": np.array([r[5] for r in sh], dtype=object),
                "trans_start_s": np.array([np.nan if r[6] is None else r[6] for r in sh], dtype=np.float64),
                "trans_end_s": np.array([np.nan if r[7] is None else r[7] for r in sh], dtype=np.float64),
            },
        )
        try:
            con.execute(
                "INSERT INTO frames SELECT frame_id, video_id, ts_s, end_s, shot_id, "
                "CASE WHEN thumb_bytes > 0 THEN thumb_offset END, CASE WHEN thumb_bytes > 0 THEN thumb_bytes END "
                "FROM _new_frames"
            )
            con.execute(
                "INSERT INTO shots SELECT shot_id, video_id, start_s, end_s, kind, transition, "
                "CASE WHEN isnan(trans_start_s) THEN NULL ELSE trans_start_s END, "
                "CASE WHEN isnan(trans_end_s) THEN NULL ELSE trans_end_s END FROM _new_shots"
            )
        finally:
            con.unregister("_new_frames")
            con.unregister("_new_shots")
