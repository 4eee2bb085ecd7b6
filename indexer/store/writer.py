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
from ..errors import ModelMismatch, StoreError, StoreLocked
from . import ivf as ivfmod
from . import matchtables, schema, segments, thumbfile
from . import vectors as vecfile
from .layout import CATALOG, LOCK, VECTORS, connect, fsync_dir, now, transaction
from .records import LabelCalibration, LabelResults, MergeReport, ShotRecord, VideoRecord
from .segments import SegmentRef


def _delete_rows(con: Any, video_ids: Sequence[int]) -> None:
    """Delete videos' rows from every per-video table. Call inside a transaction."""
    if not video_ids:
        return
    ph = ", ".join("?" for _ in video_ids)
    n = con.execute(f"SELECT count(*) FROM matches WHERE video_a IN ({ph}) OR video_b IN ({ph})",
                    list(video_ids) * 2).fetchall()[0][0]
    for table in schema.PER_VIDEO_TABLES:
        con.execute(f"DELETE FROM {table} WHERE video_id IN ({ph})", list(video_ids))
    if n:
        con.execute(f"DELETE FROM matches WHERE video_a IN ({ph}) OR video_b IN ({ph})", list(video_ids) * 2)
        matchtables.regroup(con)




def _range_counts(con: Any, refs: Sequence[SegmentRef]) -> dict[int, int]:
    """Catalog frames in each segment's id range: its live rows (ranges never overlap). One small
    query per segment: a range join over the whole frames table took seconds at 10M frames."""
    return {r.segment_id: int(con.execute("SELECT count(*) FROM frames WHERE frame_id BETWEEN ? AND ?",
                                          [r.min_frame_id, r.max_frame_id]).fetchall()[0][0]) for r in refs}


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
        self._next_frame_id = 0
        self._next_shot_id = 0
        self._next_segment_id = 0
        self.repaired: list[str] = []  # videos dropped because their vectors were missing
        self.damaged_file: str | None = None  # where an unreadable vector file was moved
        self.removed_files: list[str] = []  # orphan segment files deleted by reconcile
        self._ivf_ref: ivfmod.IvfRef | None = None  # the registered IVF index (large archives)
        self._ivf_codec: ivfmod.IvfCodec | None = None  # ... loaded when a commit needs it
        self._lists: ivfmod.ListsRef | None = None  # ... and its registered lists file

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
        self._adopt_single_file()
        self._reconcile()

    def attach_existing(self) -> None:
        """:meth:`attach` an existing store with the model its catalog records.

        Raises:
            StoreNotFound: no catalog there.
        """
        from .reader import read_meta  # noqa: PLC0415

        meta = read_meta(self.dir)
        self.attach(ModelSpec(meta["model"], meta["pretrained"]), int(meta["dim"]))

    def close(self) -> None:
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
        ref = SegmentRef(0, segments.file_name(0), segments.FLAT, len(ids), int(ids.min()) if len(ids) else 0,
                         int(ids.max()) if len(ids) else -1, None)
        del ids, vecs, _owner
        with self._catalog() as con:
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
        with self._catalog() as con:
            refs = segments.registered(con)
            self._ivf_ref = ivfmod.current(con)
            self._ivf_codec = None
            self._lists = ivfmod.current_lists(con)
            keep = [self._ivf_ref.file if self._ivf_ref else None, self._lists.file if self._lists else None]
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
            covered = sum(_range_counts(con, segments.registered(con)).values())
            broken = [] if covered == total else con.execute(
                "SELECT DISTINCT v.video_id, v.path FROM videos v JOIN frames f USING (video_id) WHERE NOT EXISTS "
                "(SELECT 1 FROM vector_segments s WHERE f.frame_id BETWEEN s.min_frame_id AND s.max_frame_id)"
            ).fetchall()
            if broken:
                with transaction(con):
                    _delete_rows(con, [vid for vid, _ in broken])
                self.repaired = [p for _, p in broken]
            one = lambda sql: int(con.execute(sql).fetchall()[0][0])  # noqa: E731
            self._next_video_id = one("SELECT coalesce(max(video_id), -1) + 1 FROM videos")
            self._next_shot_id = one("SELECT coalesce(max(shot_id), -1) + 1 FROM shots")
            # (never below the lists file's: rows up to its frame id are taken to be in it)
            self._next_frame_id = max(one("SELECT coalesce(max(frame_id), -1) + 1 FROM frames"),
                                      one("SELECT coalesce(max(max_frame_id), -1) + 1 FROM vector_segments"),
                                      self._lists.max_frame_id + 1 if self._lists else 0)
            self._next_segment_id = one("SELECT coalesce(max(segment_id), -1) + 1 FROM vector_segments")

    def _reconcile_codes(self, con: Any, refs: Sequence[SegmentRef]) -> None:
        """Segments whose IVF codes are lost (or belong to an index no longer registered) are
        marked as having none: queries then scan their rows exactly; `archive optimize` encodes them."""
        cur = self._ivf_ref
        lost = [r.segment_id for r in refs if r.ivf_id is not None and (
            cur is None or r.ivf_id != cur.ivf_id or not r.ivf_path(self.dir).exists()
            or r.ivf_path(self.dir).stat().st_size != r.n_vectors * cur.code_size)]
        if lost:
            with transaction(con):
                con.execute(f"UPDATE vector_segments SET ivf_id = NULL WHERE segment_id IN ({', '.join('?' * len(lost))})",
                            lost)

    def _codec(self) -> ivfmod.IvfCodec | None:
        """The registered IVF index, loaded once (None: the archive has none)."""
        if self._ivf_ref is not None and self._ivf_codec is None:
            self._ivf_codec = ivfmod.IvfCodec.load(self.dir, self._ivf_ref)
        return self._ivf_codec

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
            with transaction(con):
                _delete_rows(con, vids)  # their vectors become dead rows, dropped by merges
        return len(vids)

    # -- versions (matches between videos) ----------------------------------------------------------
    def save_match_basis(self, mean: np.ndarray, transform: np.ndarray, level: float, candidate_level: float,
                         vectors: int) -> None:
        """Keep how samples are compared for matching (measured once, :mod:`search.versions`)."""
        with self._catalog() as con, transaction(con):
            matchtables.save_basis(con, mean, transform, level, candidate_level, vectors)

    def replace_matches(self, video_ids: Sequence[int], rows: Sequence[tuple[Any, ...]]) -> None:
        """The matches of ``video_ids`` (every pair with one of them) become ``rows``
        (``video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s, score, samples``), the videos
        are marked compared and the versions table is regrouped, in one transaction. Rows of videos
        no longer in the catalog (removed meanwhile) are left out."""
        with self._catalog() as con, transaction(con):
            matchtables.replace(con, video_ids, rows)
            matchtables.regroup(con)

    def repair_matches(self, video_ids: Sequence[int]) -> None:
        """Drop match rows of missing videos or with bad ranges, forget the matches of ``video_ids``
        (the next index run compares them again) and regroup, in one transaction."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM matches WHERE video_a NOT IN (SELECT video_id FROM videos) OR video_b NOT IN "
                        "(SELECT video_id FROM videos) OR video_a >= video_b OR a_end_s <= a_start_s OR b_end_s <= b_start_s")
            con.execute("DELETE FROM matches m USING videos a, videos b WHERE a.video_id = m.video_a AND "
                        "b.video_id = m.video_b AND (m.a_end_s > a.duration_s + 0.05 OR m.b_end_s > b.duration_s + 0.05)")
            ids = [int(v) for v in video_ids]
            if ids:
                con.execute("DELETE FROM matches WHERE video_a IN (SELECT unnest(?::INTEGER[])) OR "
                            "video_b IN (SELECT unnest(?::INTEGER[]))", [ids, ids])
                con.execute("UPDATE videos SET matched = NULL WHERE video_id IN (SELECT unnest(?::INTEGER[]))", [ids])
            matchtables.regroup(con)

    def set_min_shared(self, seconds: float) -> None:
        """Group versions by ``seconds`` of shared footage from now on (``meta.min_shared``)."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM meta WHERE key = 'min_shared'")
            con.execute("INSERT INTO meta VALUES ('min_shared', ?)", [repr(float(seconds))])
            matchtables.regroup(con)

    def save_image_levels(self, levels: dict[str, Any], stamp: str) -> bool:
        """Keep the image rule's levels (``meta.image_levels``, :mod:`search.levels`), measured at
        ``stamp``; kept only when the store is still at that stamp (else False: nothing saved)."""
        import json  # noqa: PLC0415

        from .reader import IMAGE_LEVELS_KEY, levels_stamp  # noqa: PLC0415

        with self._catalog() as con, transaction(con):
            if levels_stamp(con) != stamp:
                return False
            con.execute("DELETE FROM meta WHERE key = ?", [IMAGE_LEVELS_KEY])
            con.execute("INSERT INTO meta VALUES (?, ?)", [IMAGE_LEVELS_KEY, json.dumps({**levels, "stamp": stamp})])
        return True

    # -- labels ---------------------------------------------------------------------------------
    def save_label(self, name: str, prompts: Sequence[str], threshold: float | None,
                   ocr: Sequence[str] = ()) -> None:
        """Add or replace a label (``ocr``: written words that show it too)."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM labels WHERE label = ?", [name])
            con.execute("INSERT INTO labels (label, prompts, threshold, created_at, ocr) VALUES (?, ?, ?, ?, ?)",
                        [name, list(prompts), threshold, now(), list(ocr) or None])

    def calibrate_label(self, name: str, threshold: float, cal: LabelCalibration) -> bool:
        """Give a label the threshold chosen on a truth file and record what it measured there;
        False when there is no such label."""
        with self._catalog() as con, transaction(con):
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            con.execute(
                "UPDATE labels SET threshold = ?, calibrated_at = ?, calib_precision = ?, calib_recall = ?, "
                "calib_videos = ?, calib_positives = ?, calib_target = ?, calib_truth = ? WHERE label = ?",
                [threshold, now(), cal.precision, cal.recall, cal.videos, cal.positives, cal.target_precision,
                 cal.truth, name])
        return bool(n)

    def remove_label(self, name: str) -> bool:
        """Remove a label and its results; False when there was none."""
        with self._catalog() as con:
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            with transaction(con):
                for table in ("labels", "segments", "video_labels"):
                    con.execute(f"DELETE FROM {table} WHERE label = ?", [name])
        return bool(n)

    def replace_label_results(self, results: LabelResults, video_ids: Sequence[int] | None = None) -> None:
        """Swap in freshly computed ``segments`` and ``video_labels`` rows in one transaction: for
        every video, or (``video_ids``) for those videos only."""
        seg, vl = results.segments, results.videos
        with self._catalog() as con, transaction(con):
            if video_ids is None:
                con.execute("DELETE FROM segments")
                con.execute("DELETE FROM video_labels")
            elif video_ids:
                ph = ", ".join("?" for _ in video_ids)
                con.execute(f"DELETE FROM segments WHERE video_id IN ({ph})", list(video_ids))
                con.execute(f"DELETE FROM video_labels WHERE video_id IN ({ph})", list(video_ids))
            if seg:
                con.register("_seg", {
                    "label": np.array([r.label for r in seg], dtype=object),
                    "video_id": np.array([r.video_id for r in seg], np.int32),
                    "start_s": np.array([r.start_s for r in seg], np.float64),
                    "end_s": np.array([r.end_s for r in seg], np.float64),
                    "peak_score": np.array([r.peak_score for r in seg], np.float64),
                    "found_by": np.array([r.found_by for r in seg], dtype=object),
                })
                con.execute("INSERT INTO segments (label, video_id, start_s, end_s, peak_score, found_by) "
                            "SELECT label, video_id, start_s, end_s, peak_score, found_by FROM _seg")
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
                    "rule": np.array([r.rule for r in vl], dtype=object),
                })
                con.execute(
                    "INSERT INTO video_labels SELECT video_id, label, present, "
                    "CASE WHEN isnan(first_seen_s) THEN NULL ELSE first_seen_s END, duration_s, n_segments, "
                    "CASE WHEN isnan(best_s) THEN NULL ELSE best_s END, score, rule FROM _vl"
                )
                con.unregister("_vl")

    # -- on-screen text -------------------------------------------------------------------------
    def remember_ocr(self) -> None:
        """Record that this store reads on-screen text: later index runs read it for new videos too."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM meta WHERE key = 'ocr'")
            con.execute("INSERT INTO meta VALUES ('ocr', '1')")

    def set_ocr(self, video_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
        """Replace one indexed video's text lines (``ocr`` rows, see :func:`ocr_row`) in one transaction."""
        with self._catalog() as con, transaction(con):
            con.execute("DELETE FROM ocr WHERE video_id = ?", [video_id])
            if rows:
                _insert_ocr(con, rows)
            con.execute("UPDATE videos SET ocr_lines = ? WHERE video_id = ?", [len(rows), video_id])

    def note_failure(self, path: str, error: str) -> None:
        """Add a ``failures`` row for an indexed video (its text could not be read, say)."""
        with self._catalog() as con, transaction(con):
            con.execute("INSERT INTO failures VALUES (?, ?, ?)", [path, error, now()])

    # -- thumbnails -----------------------------------------------------------------------------
    def set_thumbnails(self, frame_ids: Sequence[int], jpegs: Sequence[bytes]) -> None:
        """Store thumbnails for frames already in the catalog (appended, then pointed at). An empty
        picture means tried, none found (``thumb_bytes = 0``, no offset)."""
        if not frame_ids:
            return
        (offs, lens), = thumbfile.append(self.dir, [(len(frame_ids), jpegs)])
        with self._catalog() as con:
            con.register("_thumbs", {"frame_id": np.asarray(frame_ids, np.int64), "o": np.asarray(offs, np.int64),
                                     "b": np.asarray(lens, np.int32)})
            try:
                con.execute("UPDATE frames SET thumb_offset = CASE WHEN t.b > 0 THEN t.o END, thumb_bytes = t.b "
                            "FROM _thumbs t WHERE frames.frame_id = t.frame_id")
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
        with self._catalog() as con:
            old_ids = _video_ids_of(con, paths)

            # 0. thumbnails: appended to thumbs.bin (bytes no catalog row points at are harmless).
            thumb_at = thumbfile.append(self.dir, [(len(r.frames), r.thumbs) for r in records])
            if records:
                hooks.pause("commit.thumbs")

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
                bg = np.concatenate(all_bg) if bg_key is not None else None
                seg = segments.write_segment(self.dir, self._next_segment_id, self.dim,
                                             iter([(ids, np.concatenate(all_vecs), bg)]), bg_key,
                                             ivf=self._codec())
                self._next_segment_id += 1
                hooks.pause("commit.vectors")

            # 2. catalog, in one transaction.
            with transaction(con):
                _delete_rows(con, old_ids)
                if rows.videos:
                    con.executemany(f"INSERT INTO videos VALUES ({', '.join('?' * 19)})", rows.videos)
                if rows.frames:
                    rows.insert_frames_and_shots(con)
                if rows.ocr:
                    _insert_ocr(con, rows.ocr)
                if seg is not None:
                    segments.register(con, seg)
                if paths:
                    con.execute(f"DELETE FROM failures WHERE path IN ({', '.join('?' for _ in paths)})", paths)
                if failures:
                    stamp = now()
                    con.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(p, e, stamp) for p, e in failures])
        hooks.pause("commit.catalog")
        return [r[0] for r in rows.videos]

    # -- merging ----------------------------------------------------------------------------------
    def _live_counts(self, con: Any) -> tuple[list[SegmentRef], dict[int, int]]:
        refs = segments.registered(con)
        return refs, _range_counts(con, refs)

    def merge(self, run: Sequence[SegmentRef]) -> SegmentRef | None:
        """Copy the live rows of consecutive segments ``run`` into one new segment (streamed:
        memory stays bounded), swap the registrations in one transaction, delete the old files.
        Returns the new segment (None: no live rows were left, so none was written)."""
        lo, hi = min(r.min_frame_id for r in run), max(r.max_frame_id for r in run)
        keys = {r.bg_key for r in run}
        bg_key = keys.pop() if len(keys) == 1 else None
        with self._catalog() as con:
            live = np.sort(np.asarray(con.execute(
                "SELECT frame_id FROM frames WHERE frame_id BETWEEN ? AND ?", [lo, hi]).fetchnumpy()["frame_id"],
                np.int64))
        new = None
        codec = self._codec()
        if len(live):
            codes_of = (codec.ivf_id, codec.code_size) if codec is not None else None
            new = segments.write_segment(self.dir, self._next_segment_id, self.dim,
                                         segments.stream_live(self.dir, run, live, bg_key is not None, self.dim,
                                                              codes_of),
                                         bg_key, ivf=codec)
            self._next_segment_id += 1
            hooks.pause("merge.written")
        with self._catalog() as con, transaction(con):
            segments.unregister(con, [r.segment_id for r in run])
            if new is not None:
                segments.register(con, new)
        hooks.pause("merge.swapped")
        for ref in run:  # no longer registered: readers that mapped them keep their mapping
            for p in ref.files(self.dir):
                with contextlib.suppress(OSError):
                    p.unlink()
        return new

    def auto_merge(self) -> MergeReport:
        """After an index run: merge the newest runs of small segments (see
        :func:`segments.auto_merge_run`), cascading while there are runs to merge."""
        rep = MergeReport()
        while True:
            with self._catalog() as con:
                refs, live = self._live_counts(con)
            run = segments.auto_merge_run(refs, live)
            if not run:
                break
            rep.add(run, self.merge(run))
        try:
            self.refresh_lists(rep)
        except StoreError as exc:  # only a speed-up: the videos are committed, the next run tries again
            rep.lists_error = str(exc)
        return rep

    def optimize(self, max_vectors: int = segments.OPTIMIZE_MAX_VECTORS, train: bool | None = None,
                 progress: Any = None, retrain: bool = False) -> MergeReport:
        """Merge consecutive segments into as few as possible (each up to ``max_vectors``), drop
        every dead row and rewrite fp32 segments as fp16. ``train`` True makes queries rank through
        an IVF index: the existing one when it fits the archive (:meth:`_ivf_fits`; ``retrain``
        True: never), else a new one; None retrains one that exists when the archive has grown
        ``IVF_RETRAIN_GROWTH`` times past the one it was trained on, and gives every segment its
        codes; False never trains. ``progress(done, total, what)`` is called as vectors are encoded."""
        from .. import settings  # noqa: PLC0415

        with self._catalog() as con:
            refs, live = self._live_counts(con)
        rep = MergeReport()
        for run in segments.optimize_runs(refs, live, max_vectors, rewrite=lambda r: r.kind != segments.F16):
            rep.add(run, self.merge(run))
        with self._catalog() as con:
            refs, live = self._live_counts(con)
        n_live = sum(live.values())
        cur = self._ivf_ref
        asked = bool(train)  # trained because the caller asked (not for growth)
        if train is None:
            train = cur is not None and n_live > settings.IVF_RETRAIN_GROWTH * max(1, cur.archive_vectors)
        elif train and not retrain and cur is not None and self._ivf_fits(cur, n_live):
            # the index an index run trained (for matching versions) is the one a training now would
            # make: queries are opted in to it as it is, and rows without codes get theirs
            self._encode_missing(refs, rep, progress)
            self.refresh_lists(rep, exact=True, progress=progress)
            with self._catalog() as con, transaction(con):
                con.execute("DELETE FROM meta WHERE key = ?", [ivfmod.MATCHING_ONLY_KEY])
            rep.ivf_kept = cur.factory
            return rep
        if train and n_live:
            # `archive optimize --ivf`: queries of large archives may rank through it too; a
            # retraining for growth keeps whatever the index served
            self._train_ivf(refs, n_live, rep, progress, matching_only=False if asked else None)
        elif self._ivf_ref is not None:
            self._encode_missing(refs, rep, progress)
            self.refresh_lists(rep, exact=True, progress=progress)
        return rep

    @staticmethod
    def _ivf_fits(ref: ivfmod.IvfRef, n_live: int) -> bool:
        """Whether ``ref`` is the index a training now would make: the same number of lists, and
        the archive has not doubled since (nor shrunk to half)."""
        return ivfmod.lists_for(n_live) == ref.nlist and 0.5 * ref.archive_vectors <= n_live <= 2 * ref.archive_vectors

    def train_ivf(self, progress: Any = None) -> MergeReport:
        """Train a new IVF index and give every segment its codes, merging nothing (what an index
        run does once its archive is large: :func:`indexer.settings.match_ivf_frames`)."""
        with self._catalog() as con:
            refs, live = self._live_counts(con)
        rep = MergeReport()
        self._train_ivf(refs, sum(live.values()), rep, progress, matching_only=True)
        return rep

    def _train_ivf(self, refs: Sequence[SegmentRef], n_live: int, rep: MergeReport, progress: Any,
                   matching_only: bool | None = None) -> None:
        """Train a new IVF index on a sample of the stored vectors, encode every segment's rows
        into new sidecars, then swap the registrations in one transaction (see :mod:`.ivf`), which
        also marks the index as serving matching only (``matching_only`` True), queries too (False),
        or leaves that as it was (None)."""
        import time  # noqa: PLC0415

        if n_live < ivfmod.MIN_VECTORS:
            raise StoreError(f"an IVF index needs at least {ivfmod.MIN_VECTORS:,} vectors to train on; this archive has "
                             f"{n_live:,}, and queries scan archives of that size faster than an index would. Nothing "
                             "was trained (the merges were done).")
        view, _ids, _bgs = segments.open_segments(self.dir, refs, self.dim)
        nlist, _m = ivfmod.shape_for(n_live, self.dim)
        want = min(len(view), nlist * ivfmod.TRAIN_PER_LIST)
        rows = np.sort(np.random.default_rng(0).choice(len(view), size=want, replace=False))
        sample = np.empty((want, self.dim), np.float32)
        for a in range(0, want, 4096):  # pages handed back as it goes: scattered reads pull in read-ahead
            # (kept on: rows about 60 apart at 10M, so the windows hold the next rows wanted)
            sample[a : a + 4096] = view.take(rows[a : a + 4096], read_around=True)
            view.release_pages()
        with self._catalog() as con:
            new_id = int(con.execute("SELECT coalesce(max(ivf_id), 0) + 1 FROM vector_ivf").fetchall()[0][0])
        if progress:
            progress(0, n_live, f"training the IVF index on {want:,} vectors")
        index, ref = ivfmod.train(sample, n_live, new_id)
        del sample
        ivfmod.write_index(self.dir, ref, index)
        codec = ivfmod.IvfCodec(ref, index)
        t0 = time.perf_counter()
        self._write_codes(refs, codec, progress)
        hooks.pause("ivf.written")
        coded = [r for r in refs if r.n_vectors]
        lists = self._write_lists(coded, codec, rep, progress, ivf_id=ref.ivf_id)
        hooks.pause("ivf.lists_written")
        with self._catalog() as con, transaction(con):
            ivfmod.register(con, ref)
            ivfmod.register_lists(con, lists)
            if matching_only is not None:
                con.execute("DELETE FROM meta WHERE key = ?", [ivfmod.MATCHING_ONLY_KEY])
                if matching_only:
                    con.execute("INSERT INTO meta VALUES (?, '1')", [ivfmod.MATCHING_ONLY_KEY])
            ids = [r.segment_id for r in refs if r.n_vectors]
            if ids:
                con.execute(f"UPDATE vector_segments SET ivf_id = ? WHERE segment_id IN ({', '.join('?' * len(ids))})",
                            [ref.ivf_id, *ids])
        hooks.pause("ivf.swapped")
        old = self._ivf_ref
        self._ivf_ref, self._ivf_codec = ref, codec
        self._drop_old_lists(lists)
        for r in refs:  # the old index's sidecars and file
            if r.ivf_id is not None and r.ivf_id != ref.ivf_id:
                r.ivf_path(self.dir).unlink(missing_ok=True)
        if old is not None and old.file != ref.file:
            old.path(self.dir).unlink(missing_ok=True)
        rep.ivf = ref.factory
        rep.ivf_trained_on = ref.trained_vectors
        rep.train_s = ref.train_s
        rep.encoded = sum(r.n_vectors for r in refs)
        rep.encode_s = round(time.perf_counter() - t0, 2)

    def _encode_missing(self, refs: Sequence[SegmentRef], rep: MergeReport, progress: Any) -> None:
        """Give the segments that have no codes in the registered IVF index their codes."""
        import time  # noqa: PLC0415

        codec = self._codec()
        todo = [r for r in refs if r.n_vectors and r.ivf_id != codec.ivf_id]
        if not todo:
            return
        t0 = time.perf_counter()
        self._write_codes(todo, codec, progress)
        with self._catalog() as con, transaction(con):
            ids = [r.segment_id for r in todo]
            con.execute(f"UPDATE vector_segments SET ivf_id = ? WHERE segment_id IN ({', '.join('?' * len(ids))})",
                        [codec.ivf_id, *ids])
        for r in todo:
            if r.ivf_id is not None:
                r.ivf_path(self.dir).unlink(missing_ok=True)
        rep.encoded += sum(r.n_vectors for r in todo)
        rep.encode_s = round(time.perf_counter() - t0, 2)

    def lists_tail(self, refs: Sequence[SegmentRef] | None = None) -> int:
        """Rows with IVF codes that the registered lists file does not hold (written since it),
        among ``refs`` (default: the registered segments)."""
        if self._ivf_ref is None:
            return 0
        if refs is None:
            with self._catalog() as con:
                refs = segments.registered(con)
        above = self._lists.max_frame_id if self._lists and self._lists.ivf_id == self._ivf_ref.ivf_id else -1
        n = 0
        for r in refs:
            if r.ivf_id != self._ivf_ref.ivf_id or r.max_frame_id <= above or not r.n_vectors:
                continue
            n += r.n_vectors if r.min_frame_id > above else int(
                (np.asarray(segments.vecfile.map_file(r.path(self.dir))[0]) > above).sum())
        return n

    def refresh_lists(self, rep: MergeReport | None = None, exact: bool = False, progress: Any = None,
                      force: bool = False) -> bool:
        """Rewrite the IVF index's lists file (:mod:`.ivf`) when :func:`ivfmod.lists_due` says
        so (``exact``: whenever it lacks any coded row, or holds a row no segment holds; ``force``:
        always), giving codes first to the segments that have none. Returns whether it was written."""
        cur = self._ivf_ref
        if cur is None:
            return False
        with self._catalog() as con:
            refs = segments.registered(con)
        tail = self.lists_tail(refs)
        lists = self._lists if self._lists and self._lists.ivf_id == cur.ivf_id else None
        coded_rows = sum(r.n_vectors for r in refs if r.ivf_id == cur.ivf_id)
        if force:
            due = True
        elif exact:
            due = lists is None or tail > 0 or any(r.n_vectors and r.ivf_id != cur.ivf_id for r in refs) or (
                lists.vectors != coded_rows - tail) or self._codec().open_lists(self.dir, lists) is None
        else:
            due = ivfmod.lists_due(lists, cur.ivf_id, tail)
        if not due:
            return False
        rep = rep if rep is not None else MergeReport()
        self._encode_missing(refs, rep, progress)
        with self._catalog() as con:
            refs = [r for r in segments.registered(con) if r.n_vectors]
        new = self._write_lists(refs, self._codec(), rep, progress)
        hooks.pause("lists.written")
        with self._catalog() as con, transaction(con):
            ivfmod.register_lists(con, new)
        hooks.pause("lists.swapped")
        self._drop_old_lists(new)
        return True

    def repair_lists(self) -> bool:
        """Write the lists file again when it is missing, damaged or of another index
        (:func:`.check.lists_problem`). Returns whether it was written."""
        from .check import lists_problem  # noqa: PLC0415

        if self._ivf_ref is None or self._lists is None:
            return False
        with self._catalog() as con:
            refs = segments.registered(con)
        if lists_problem(self.dir, refs, self._ivf_ref, self._lists) is None:
            return False
        return self.refresh_lists(force=True)

    def _write_lists(self, refs: Sequence[SegmentRef], codec: ivfmod.IvfCodec, rep: MergeReport, progress: Any,
                     ivf_id: int | None = None) -> ivfmod.ListsRef:
        """Write a lists file of the codes of ``refs`` (for index ``ivf_id``; default: their own)."""
        import time  # noqa: PLC0415

        t0 = time.perf_counter()

        def parts() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for r in refs:
                codes = segments.read_codes(self.dir, r, codec.code_size, ivf_id)
                if codes is None:
                    raise StoreError(f"the IVF codes of {r.file} are missing or short: run `archive optimize`.")
                yield np.asarray(segments.vecfile.map_file(r.path(self.dir))[0]), codes

        seq = (self._lists.seq + 1) if self._lists else 1
        new = ivfmod.write_lists(self.dir, codec, parts, seq, self._next_frame_id - 1, progress)
        rep.lists_rows = new.vectors
        rep.lists_s = round(time.perf_counter() - t0, 2)
        return new

    def _drop_old_lists(self, new: ivfmod.ListsRef | None) -> None:
        """After ``new`` was registered: delete the lists file it replaces (readers that mapped it keep it)."""
        old, self._lists = self._lists, new
        if old is not None and (new is None or old.file != new.file):
            old.path(self.dir).unlink(missing_ok=True)

    def _write_codes(self, refs: Sequence[SegmentRef], codec: ivfmod.IvfCodec, progress: Any) -> None:
        total = sum(r.n_vectors for r in refs)
        done = 0
        for r in refs:
            if not r.n_vectors:
                continue
            view, _ids, _bgs = segments.open_segments(self.dir, [r], self.dim)

            def chunks(view: Any = view) -> Iterator[np.ndarray]:
                nonlocal done
                for a in range(0, len(view), ivfmod.ENCODE_ROWS):
                    block = view[a : a + ivfmod.ENCODE_ROWS]
                    yield codec.encode(block)
                    view.release_pages()
                    done += len(block)
                    if progress:
                        progress(done, total, "encoding the vectors into the IVF index")

            ivfmod.write_codes(r.ivf_path(self.dir, codec.ivf_id), chunks)
            del view
        fsync_dir(self.dir / segments.SEGMENTS_DIR)

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
        rows.shots.extend((first_shot + k, vid, s.start_s, s.end_s, s.kind, s.transition, s.trans_start_s,
                           s.trans_end_s) for k, s in enumerate(shots))
        rows.frames.extend(
            (int(i), vid, f.ts_s, f.end_s, first_shot + f.shot, o, b)
            for i, f, o, b in zip(ids, rec.frames, t_off, t_len)
        )
        rows.videos.append((
            vid, rec.path, Path(rec.path).name, rec.size_bytes, rec.mtime, rec.fingerprint,
            rec.duration_s, rec.fps, rec.width, rec.height, rec.codec, n, rec.sample_fps,
            rec.decoded_frames, rec.note, now(), rec.shot_detector, None if rec.ocr is None else len(rec.ocr), None,
        ))
        rows.ocr.extend(ocr_row(int(ids[ln.best]), vid, ln) for ln in rec.ocr or [])
        return ids


def ocr_row(frame_id: int, video_id: int, line: Any) -> tuple[Any, ...]:
    """An ``ocr`` row of an :class:`indexer.ocr.OcrLine`, in the table's column order."""
    r = line.reading
    return (frame_id, video_id, line.start_s, line.end_s, r.text, r.confidence, r.x, r.y, r.w, r.h, r.norm)


OCR_COLUMNS = ("frame_id", "video_id", "start_s", "end_s", "text", "confidence", "x", "y", "w", "h", "text_norm")


def _insert_ocr(con: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert ``ocr`` rows (DuckDB's executemany is slow)."""
    kinds = (np.int64, np.int32, np.float64, np.float64, object, np.float64, np.float64, np.float64, np.float64,
             np.float64, object)
    con.register("_new_ocr", {c: np.array([r[k] for r in rows], dtype=t) for k, (c, t) in enumerate(zip(OCR_COLUMNS, kinds))})
    try:
        con.execute(f"INSERT INTO ocr ({', '.join(OCR_COLUMNS)}) SELECT {', '.join(OCR_COLUMNS)} FROM _new_ocr")
    finally:
        con.unregister("_new_ocr")


class _Rows:
    """Catalog rows of one commit, in the tables' column order (private to the writer)."""

    def __init__(self) -> None:
        self.videos: list[tuple[Any, ...]] = []
        self.frames: list[tuple[int, int, float, float, int, int | None, int | None]] = []
        self.shots: list[tuple[Any, ...]] = []
        self.ocr: list[tuple[Any, ...]] = []

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
            "transition": np.array([r[5] for r in sh], dtype=object),
            "trans_start_s": np.array([np.nan if r[6] is None else r[6] for r in sh], dtype=np.float64),
            "trans_end_s": np.array([np.nan if r[7] is None else r[7] for r in sh], dtype=np.float64),
        })
        try:
            con.execute(
                "INSERT INTO frames SELECT frame_id, video_id, ts_s, end_s, shot_id, "
                "CASE WHEN thumb_bytes > 0 THEN thumb_offset END, CASE WHEN thumb_bytes > 0 THEN thumb_bytes END "
                "FROM _new_frames"
            )
            con.execute("INSERT INTO shots SELECT shot_id, video_id, start_s, end_s, kind, transition, "
                        "CASE WHEN isnan(trans_start_s) THEN NULL ELSE trans_start_s END, "
                        "CASE WHEN isnan(trans_end_s) THEN NULL ELSE trans_end_s END FROM _new_shots")
        finally:
            con.unregister("_new_frames")
            con.unregister("_new_shots")
