"""The frame table: the frames in scope, sorted by video and time, and where their vectors are.

What every query scores (:mod:`search.scan`): frame times, shots, thumbnails and the background
term, with the store's vectors memory-mapped from their segments and seen as one matrix.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import ivf as ivfmod
from . import segments, vectorview
from .vectorview import VectorView


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
    bg_lse: np.ndarray | None = None  # float64 per frame (indexer.model.background; NaN: not stored), or None
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
            frame_id=self.frame_id[idx],
            video_id=self.video_id[idx],
            ts_s=self.ts_s[idx],
            end_s=self.end_s[idx],
            shot_id=self.shot_id[idx],
            shot_len_s=self.shot_len_s[idx],
            blank=self.blank[idx],
            row=self.row[idx],
            vectors=self.vectors,
            thumb_offset=self.thumb_offset[idx] if len(self.thumb_offset) else self.thumb_offset,
            thumb_bytes=self.thumb_bytes[idx] if len(self.thumb_bytes) else self.thumb_bytes,
            videos=self.videos,
            bg_lse=None if self.bg_lse is None else self.bg_lse[idx],
            bg_key=self.bg_key,
            segments=self.segments,
            ivf=self.ivf,
            ivf_lists=self.ivf_lists,
            from_s=None if self.from_s is None else self.from_s[idx],
        )

    def ivf_search(
        self, store_dir: str | os.PathLike[str], codec: ivfmod.IvfCodec
    ) -> tuple[ivfmod.IvfSearch, np.ndarray]:
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


def read_table(con: Any, store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None) -> FrameTable:
    """The frames of ``video_ids`` (None: all) and their vectors, read through the catalog connection
    ``con`` (:meth:`indexer.store.reader.Reader.frames` retries it once when a merge swapped segments)."""
    if True:
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
    vecs, id_parts, bgs = vectorview.open_segments(Path(store_dir), refs, dim, concat_ids=False)
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
    end = np.minimum(
        np.asarray(cols["end_s"], np.float64)[ok], np.maximum(np.asarray(cols["shot_end_s"], np.float64)[ok], ts)
    )
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


def _locate(
    frame_id: np.ndarray, refs: Sequence[segments.SegmentRef], id_parts: Sequence[np.ndarray], offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
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
