"""Keeping the vector layer compact and its IVF index current: merges of small segments after an
index run, ``archive optimize`` (every dead row dropped, fp32 rewritten as fp16), training the IVF
index and encoding rows into it, and its lists file (:mod:`.ivf`).

Reached as ``writer.layer``: every step runs under the store's single writer, writes new files
first (temp file, fsync, rename) and swaps their registrations in one catalog transaction, so a
crash at any point (the named crash points below) loses nothing and leaves only files the next
writer deletes.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from indexer import crashpoints, settings
from indexer.errors import StoreError

from . import ivf as ivfmod
from . import segments, vectorview
from .ivf import lists_problem
from .layout import fsync_dir, transaction
from .records import MergeReport
from .segments import SegmentRef

if TYPE_CHECKING:
    from .writer import Writer


class LayerKeeper:
    """Merges, ``optimize`` and the IVF index's upkeep; reached as ``writer.layer``."""

    def __init__(self, writer: "Writer") -> None:
        self.w = writer

    # -- merging ----------------------------------------------------------------------------------
    def _live_counts(self, con: Any) -> tuple[list[SegmentRef], dict[int, int]]:
        refs = segments.registered(con)
        return refs, segments.live_rows(con, refs)

    def merge(self, run: Sequence[SegmentRef]) -> SegmentRef | None:
        """Copy the live rows of consecutive segments ``run`` into one new segment (streamed:
        memory stays bounded), swap the registrations in one transaction, delete the old files.
        Returns the new segment (None: no live rows were left, so none was written)."""
        lo, hi = min(r.min_frame_id for r in run), max(r.max_frame_id for r in run)
        keys = {r.bg_key for r in run}
        bg_key = keys.pop() if len(keys) == 1 else None
        with self.w.catalog() as con:
            live = np.sort(
                np.asarray(
                    con.execute("SELECT frame_id FROM frames WHERE frame_id BETWEEN ? AND ?", [lo, hi]).fetchnumpy()[
                        "frame_id"
                    ],
                    np.int64,
                )
            )
        new = None
        codec = self.w.codec()
        if len(live):
            codes_of = (codec.ivf_id, codec.code_size) if codec is not None else None
            new = segments.write_segment(
                self.w.dir,
                self.w.next_segment_id,
                self.w.dim,
                vectorview.stream_live(self.w.dir, run, live, bg_key is not None, self.w.dim, codes_of),
                bg_key,
                ivf=codec,
            )
            self.w.next_segment_id += 1
            crashpoints.pause("merge.written")
        with self.w.catalog() as con, transaction(con):
            segments.unregister(con, [r.segment_id for r in run])
            if new is not None:
                segments.register(con, new)
        crashpoints.pause("merge.swapped")
        for ref in run:  # no longer registered: readers that mapped them keep their mapping
            for p in ref.files(self.w.dir):
                with contextlib.suppress(OSError):
                    p.unlink()
        return new

    def auto_merge(self) -> MergeReport:
        """After an index run: merge the newest runs of small segments (see
        :func:`segments.auto_merge_run`), cascading while there are runs to merge."""
        rep = MergeReport()
        while True:
            with self.w.catalog() as con:
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

    def optimize(
        self,
        max_vectors: int = segments.OPTIMIZE_MAX_VECTORS,
        train: bool | None = None,
        progress: Any = None,
        retrain: bool = False,
    ) -> MergeReport:
        """Merge consecutive segments into as few as possible (each up to ``max_vectors``), drop
        every dead row and rewrite fp32 segments as fp16. ``train`` True makes queries rank through
        an IVF index: the existing one when it fits the archive (:meth:`_ivf_fits`; ``retrain``
        True: never), else a new one; None retrains one that exists when the archive has grown
        ``IVF_RETRAIN_GROWTH`` times past the one it was trained on, and gives every segment its
        codes; False never trains. ``progress(done, total, what)`` is called as vectors are encoded."""
        with self.w.catalog() as con:
            refs, live = self._live_counts(con)
        rep = MergeReport()
        for run in segments.optimize_runs(refs, live, max_vectors, rewrite=lambda r: r.kind != segments.F16):
            rep.add(run, self.merge(run))
        with self.w.catalog() as con:
            refs, live = self._live_counts(con)
        n_live = sum(live.values())
        cur = self.w.ivf_ref
        asked = bool(train)  # trained because the caller asked (not for growth)
        if train is None:
            train = cur is not None and n_live > settings.IVF_RETRAIN_GROWTH * max(1, cur.archive_vectors)
        elif train and not retrain and cur is not None and self._ivf_fits(cur, n_live):
            # the index an index run trained (for matching versions) is the one a training now would
            # make: queries are opted in to it as it is, and rows without codes get theirs
            self._encode_missing(refs, rep, progress)
            self.refresh_lists(rep, exact=True, progress=progress)
            with self.w.catalog() as con, transaction(con):
                con.execute("DELETE FROM meta WHERE key = ?", [ivfmod.MATCHING_ONLY_KEY])
            rep.ivf_kept = cur.factory
            return rep
        if train and n_live:
            # `archive optimize --ivf`: queries of large archives may rank through it too; a
            # retraining for growth keeps whatever the index served
            self._train_ivf(refs, n_live, rep, progress, matching_only=False if asked else None)
        elif self.w.ivf_ref is not None:
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
        with self.w.catalog() as con:
            refs, live = self._live_counts(con)
        rep = MergeReport()
        self._train_ivf(refs, sum(live.values()), rep, progress, matching_only=True)
        return rep

    def _train_ivf(
        self,
        refs: Sequence[SegmentRef],
        n_live: int,
        rep: MergeReport,
        progress: Any,
        matching_only: bool | None = None,
    ) -> None:
        """Train a new IVF index on a sample of the stored vectors, encode every segment's rows
        into new sidecars, then swap the registrations in one transaction (see :mod:`.ivf`), which
        also marks the index as serving matching only (``matching_only`` True), queries too (False),
        or leaves that as it was (None)."""
        if n_live < ivfmod.MIN_VECTORS:
            raise StoreError(
                f"an IVF index needs at least {ivfmod.MIN_VECTORS:,} vectors to train on; this archive has "
                f"{n_live:,}, and queries scan archives of that size faster than an index would. Nothing "
                "was trained (the merges were done)."
            )
        view, _ids, _bgs = vectorview.open_segments(self.w.dir, refs, self.w.dim)
        nlist, _m = ivfmod.shape_for(n_live, self.w.dim)
        want = min(len(view), nlist * ivfmod.TRAIN_PER_LIST)
        rows = np.sort(np.random.default_rng(0).choice(len(view), size=want, replace=False))
        sample = np.empty((want, self.w.dim), np.float32)
        for a in range(0, want, 4096):  # pages handed back as it goes: scattered reads pull in read-ahead
            # (kept on: rows about 60 apart at 10M, so the windows hold the next rows wanted)
            sample[a : a + 4096] = view.take(rows[a : a + 4096], read_around=True)
            view.release_pages()
        with self.w.catalog() as con:
            new_id = int(con.execute("SELECT coalesce(max(ivf_id), 0) + 1 FROM vector_ivf").fetchall()[0][0])
        if progress:
            progress(0, n_live, f"training the IVF index on {want:,} vectors")
        index, ref = ivfmod.train(sample, n_live, new_id)
        del sample
        ivfmod.write_index(self.w.dir, ref, index)
        codec = ivfmod.IvfCodec(ref, index)
        t0 = time.perf_counter()
        self._write_codes(refs, codec, progress)
        crashpoints.pause("ivf.written")
        coded = [r for r in refs if r.n_vectors]
        lists = self._write_lists(coded, codec, rep, progress, ivf_id=ref.ivf_id)
        crashpoints.pause("ivf.lists_written")
        with self.w.catalog() as con, transaction(con):
            ivfmod.register(con, ref)
            ivfmod.register_lists(con, lists)
            if matching_only is not None:
                con.execute("DELETE FROM meta WHERE key = ?", [ivfmod.MATCHING_ONLY_KEY])
                if matching_only:
                    con.execute("INSERT INTO meta VALUES (?, '1')", [ivfmod.MATCHING_ONLY_KEY])
            ids = [r.segment_id for r in refs if r.n_vectors]
            if ids:
                con.execute(
                    f"UPDATE vector_segments SET ivf_id = ? WHERE segment_id IN ({', '.join('?' * len(ids))})",
                    [ref.ivf_id, *ids],
                )
        crashpoints.pause("ivf.swapped")
        old = self.w.ivf_ref
        self.w.ivf_ref, self.w.ivf_codec = ref, codec
        self._drop_old_lists(lists)
        for r in refs:  # the old index's sidecars and file
            if r.ivf_id is not None and r.ivf_id != ref.ivf_id:
                r.ivf_path(self.w.dir).unlink(missing_ok=True)
        if old is not None and old.file != ref.file:
            old.path(self.w.dir).unlink(missing_ok=True)
        rep.ivf = ref.factory
        rep.ivf_trained_on = ref.trained_vectors
        rep.train_s = ref.train_s
        rep.encoded = sum(r.n_vectors for r in refs)
        rep.encode_s = round(time.perf_counter() - t0, 2)

    def _registered_codec(self) -> ivfmod.IvfCodec:
        """The registered IVF index, loaded once (the caller has checked that the archive has one)."""
        codec = self.w.codec()
        assert codec is not None
        return codec

    def _encode_missing(self, refs: Sequence[SegmentRef], rep: MergeReport, progress: Any) -> None:
        """Give the segments that have no codes in the registered IVF index their codes."""
        codec = self._registered_codec()
        todo = [r for r in refs if r.n_vectors and r.ivf_id != codec.ivf_id]
        if not todo:
            return
        t0 = time.perf_counter()
        self._write_codes(todo, codec, progress)
        with self.w.catalog() as con, transaction(con):
            ids = [r.segment_id for r in todo]
            con.execute(
                f"UPDATE vector_segments SET ivf_id = ? WHERE segment_id IN ({', '.join('?' * len(ids))})",
                [codec.ivf_id, *ids],
            )
        for r in todo:
            if r.ivf_id is not None:
                r.ivf_path(self.w.dir).unlink(missing_ok=True)
        rep.encoded += sum(r.n_vectors for r in todo)
        rep.encode_s = round(time.perf_counter() - t0, 2)

    def lists_tail(self, refs: Sequence[SegmentRef] | None = None) -> int:
        """Rows with IVF codes that the registered lists file does not hold (written since it),
        among ``refs`` (default: the registered segments)."""
        if self.w.ivf_ref is None:
            return 0
        if refs is None:
            with self.w.catalog() as con:
                refs = segments.registered(con)
        above = (
            self.w.lists_ref.max_frame_id
            if self.w.lists_ref and self.w.lists_ref.ivf_id == self.w.ivf_ref.ivf_id
            else -1
        )
        n = 0
        for r in refs:
            if r.ivf_id != self.w.ivf_ref.ivf_id or r.max_frame_id <= above or not r.n_vectors:
                continue
            n += (
                r.n_vectors
                if r.min_frame_id > above
                else int((np.asarray(segments.vecfile.map_file(r.path(self.w.dir))[0]) > above).sum())
            )
        return n

    def refresh_lists(
        self, rep: MergeReport | None = None, exact: bool = False, progress: Any = None, force: bool = False
    ) -> bool:
        """Rewrite the IVF index's lists file (:mod:`.ivf`) when :func:`ivfmod.lists_due` says
        so (``exact``: whenever it lacks any coded row, or holds a row no segment holds; ``force``:
        always), giving codes first to the segments that have none. Returns whether it was written."""
        cur = self.w.ivf_ref
        if cur is None:
            return False
        with self.w.catalog() as con:
            refs = segments.registered(con)
        tail = self.lists_tail(refs)
        lists = self.w.lists_ref if self.w.lists_ref and self.w.lists_ref.ivf_id == cur.ivf_id else None
        coded_rows = sum(r.n_vectors for r in refs if r.ivf_id == cur.ivf_id)
        if force:
            due = True
        elif exact:
            due = (
                lists is None
                or tail > 0
                or any(r.n_vectors and r.ivf_id != cur.ivf_id for r in refs)
                or (lists.vectors != coded_rows - tail)
                or self._registered_codec().open_lists(self.w.dir, lists) is None
            )
        else:
            due = ivfmod.lists_due(lists, cur.ivf_id, tail)
        if not due:
            return False
        rep = rep if rep is not None else MergeReport()
        self._encode_missing(refs, rep, progress)
        with self.w.catalog() as con:
            refs = [r for r in segments.registered(con) if r.n_vectors]
        new = self._write_lists(refs, self._registered_codec(), rep, progress)
        crashpoints.pause("lists.written")
        with self.w.catalog() as con, transaction(con):
            ivfmod.register_lists(con, new)
        crashpoints.pause("lists.swapped")
        self._drop_old_lists(new)
        return True

    def repair_lists(self) -> bool:
        """Write the lists file again when it is missing, damaged or of another index
        (:func:`.check.lists_problem`). Returns whether it was written."""
        if self.w.ivf_ref is None or self.w.lists_ref is None:
            return False
        with self.w.catalog() as con:
            refs = segments.registered(con)
        if lists_problem(self.w.dir, refs, self.w.ivf_ref, self.w.lists_ref) is None:
            return False
        return self.refresh_lists(force=True)

    def _write_lists(
        self,
        refs: Sequence[SegmentRef],
        codec: ivfmod.IvfCodec,
        rep: MergeReport,
        progress: Any,
        ivf_id: int | None = None,
    ) -> ivfmod.ListsRef:
        """Write a lists file of the codes of ``refs`` (for index ``ivf_id``; default: their own)."""
        t0 = time.perf_counter()

        def parts() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for r in refs:
                codes = vectorview.read_codes(self.w.dir, r, codec.code_size, ivf_id)
                if codes is None:
                    raise StoreError(f"the IVF codes of {r.file} are missing or short: run `archive optimize`.")
                yield np.asarray(segments.vecfile.map_file(r.path(self.w.dir))[0]), codes

        seq = (self.w.lists_ref.seq + 1) if self.w.lists_ref else 1
        new = ivfmod.write_lists(self.w.dir, codec, parts, seq, self.w.next_frame_id - 1, progress)
        rep.lists_rows = new.vectors
        rep.lists_s = round(time.perf_counter() - t0, 2)
        return new

    def _drop_old_lists(self, new: ivfmod.ListsRef | None) -> None:
        """After ``new`` was registered: delete the lists file it replaces (readers that mapped it keep it)."""
        old, self.w.lists_ref = self.w.lists_ref, new
        if old is not None and (new is None or old.file != new.file):
            old.path(self.w.dir).unlink(missing_ok=True)

    def _write_codes(self, refs: Sequence[SegmentRef], codec: ivfmod.IvfCodec, progress: Any) -> None:
        total = sum(r.n_vectors for r in refs)
        done = 0
        for r in refs:
            if not r.n_vectors:
                continue
            view, _ids, _bgs = vectorview.open_segments(self.w.dir, [r], self.w.dim)

            def chunks(view: Any = view) -> Iterator[np.ndarray]:
                nonlocal done
                for a in range(0, len(view), ivfmod.ENCODE_ROWS):
                    block = view[a : a + ivfmod.ENCODE_ROWS]
                    yield codec.encode(block)
                    view.release_pages()
                    done += len(block)
                    if progress:
                        progress(done, total, "encoding the vectors into the IVF index")

            ivfmod.write_codes(r.ivf_path(self.w.dir, codec.ivf_id), chunks)
            del view
        fsync_dir(self.w.dir / segments.SEGMENTS_DIR)
