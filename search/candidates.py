"""Candidate videos of a query in a large archive, from the store's IVF index (:mod:`indexer.store.ivf`).

1. The IVF index returns the query's best frames (``nprobe`` lists, approximate PQ scores), many
   more than are shown. For the text rule it is asked with the query minus the best linear fit of
   the background term over the archive's frames (``lse(x) ~ a + 100 d.x``, least squares on a
   sample of the stored terms), so that it orders frames nearly as the rule does, not by raw cosine.
2. Those frames are rescored exactly from the stored vectors, and their videos become
   candidates, best first by the query's rule (the text rule's per-frame background term included).
3. The read path rescores every frame of each candidate video exactly and builds the timelines
   as for any query (:func:`search.query.rank`), so the answers shown are exact.

Frames of segments that have no codes in the index (written before it, or whose codes were lost)
are scored exactly every time and compete as candidates too: nothing is left out.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer import settings
from indexer.store import FrameTable, IvfCodec

from . import presence
from .timeline import video_bounds

FRAMES_PER_VIDEO = 64  # frames asked of the index (and rescored exactly) per candidate video wanted
FIT_FRAMES = 20_000  # frames the background term's linear fit is made on
FIT_RUNS = 40  # ... in this many runs of consecutive frames


class IvfRanker:
    """The IVF index of one frame table, loaded into memory (its codes: ``m + 2`` bytes a frame)."""

    def __init__(self, store_dir: str | os.PathLike[str], table: FrameTable) -> None:
        t0 = time.perf_counter()
        assert table.ivf is not None
        self.table = table
        self.codec = IvfCodec.load(Path(store_dir), table.ivf)
        self.index, self.bare = table.ivf_search(store_dir, self.codec)
        order = np.argsort(table.frame_id, kind="stable")
        self._fid_sorted = table.frame_id[order]
        self._fid_pos = order

        self.starts, self.stops = video_bounds(table.video_id)
        self.group = (
            np.repeat(np.arange(len(self.starts)), self.stops - self.starts) if len(table) else np.zeros(0, np.int64)
        )
        self.covered = int(self.index.ntotal)
        self._fit: tuple[Any, np.ndarray] | None = None  # (the bg_lse it was made on, direction d)
        self.load_s = time.perf_counter() - t0

    def background_direction(self, bg_lse: np.ndarray) -> np.ndarray:
        """``d`` of the least-squares fit ``bg_lse / 100 ~ a + d.x`` over a sample of the frames."""
        if self._fit is not None and self._fit[0] is bg_lse:
            return self._fit[1]
        t = self.table
        # FIT_RUNS runs of consecutive stored rows (frame ids follow the file order) spread over the
        # archive: a few contiguous reads, not thousands of scattered pages with their read-ahead
        # (which held about 1 GB of mapped pages at 10M frames)
        by_id = self._fid_pos
        run = max(1, FIT_FRAMES // FIT_RUNS)
        starts = np.linspace(0, max(0, len(by_id) - run), FIT_RUNS).astype(np.int64)
        pos = np.unique(np.concatenate([by_id[a : a + run] for a in starts])) if len(by_id) else by_id
        pos = pos[~t.blank[pos] & np.isfinite(bg_lse[pos])]
        x = t.vectors.take(t.row[pos]).astype(np.float64)
        t.release_pages()
        a = np.hstack([x, np.ones((len(x), 1))])
        y = bg_lse[pos] / presence.LOGIT_SCALE
        ridge = 1e-3 * len(x)
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y) if len(x) else np.zeros(x.shape[1] + 1)
        d = w[:-1].astype(np.float32)
        self._fit = (bg_lse, d)
        return d

    def _positions(self, frame_ids: np.ndarray) -> np.ndarray:
        """Table positions of ``frame_ids`` (-1: not in the table: a dead row, or out of scope)."""
        if not len(self._fid_sorted):
            return np.full(len(frame_ids), -1, np.int64)
        pos = np.searchsorted(self._fid_sorted, frame_ids)
        pos_c = np.minimum(pos, len(self._fid_sorted) - 1)
        ok = (frame_ids >= 0) & (self._fid_sorted[pos_c] == frame_ids)
        return np.where(ok, self._fid_pos[pos_c], -1)

    def candidates(
        self, queries: np.ndarray, texts: Sequence[bool], bg_lse: np.ndarray | None, videos: int, exact_at: Any
    ) -> np.ndarray:
        """Positions of every frame of each query's best ``videos`` candidate videos (union over
        the queries), each video's frames together and in time order.

        Args:
            queries: ``(n, dim)`` unit query vectors.
            texts: per query, whether the text rule ranks it (then ``bg_lse`` enters the order).
            bg_lse: per frame, the text rule's background term (None: raw cosine orders).
            videos: candidate videos per query.
            exact_at: ``exact_at(positions, queries)`` gives exact scores of frames (the frames
                the index does not cover are scored so).
        """
        t = self.table
        index = self.index
        k = int(min(max(videos * FRAMES_PER_VIDEO, 256), max(1, self.covered)))
        index.set_nprobe(settings.ivf_nprobe())
        q = np.ascontiguousarray(queries, np.float32)
        probe = q.copy()
        if bg_lse is not None and any(texts):
            d = self.background_direction(bg_lse)
            for j, is_text in enumerate(texts):
                if is_text:
                    probe[j] -= d
        _d, ids = (
            index.search(probe, k)
            if self.covered
            else (np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64))
        )
        found = [p[p >= 0] for p in (self._positions(ids[j]) for j in range(len(q)))]
        every = np.unique(np.concatenate(found + [self.bare])) if len(q) else np.zeros(0, np.int64)
        exact = exact_at(every, q) if len(every) else np.zeros((0, len(q)), np.float32)  # rescored exactly
        groups: set[int] = set()
        for j in range(len(q)):
            pos = np.concatenate([found[j], self.bare])
            score = exact[np.searchsorted(every, pos), j].astype(np.float64)
            keep = ~t.blank[pos]
            pos, score = pos[keep], score[keep]
            z = presence.LOGIT_SCALE * score - bg_lse[pos] if texts[j] and bg_lse is not None else score
            # the videos best first as the read path orders them (search.query._order): by the
            # rule's logit, then by raw score
            g = self.group[pos]
            vids, inv = np.unique(g, return_inverse=True)
            best_z = np.full(len(vids), -np.inf)
            best_raw = np.full(len(vids), -np.inf)
            np.maximum.at(best_z, inv, z)
            np.maximum.at(best_raw, inv, score)
            groups.update(int(v) for v in vids[np.lexsort((-best_raw, -best_z))[:videos]])
        if not groups:
            return np.zeros(0, np.int64)
        gs = np.array(sorted(groups), np.int64)
        return np.concatenate([np.arange(self.starts[g], self.stops[g]) for g in gs])
