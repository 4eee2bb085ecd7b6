"""One pass of query vectors over the stored frame vectors: cosine scores, exact or for ranking.

A :class:`Scanner` wraps a :class:`~indexer.store.FrameTable` (the frames in scope and their
memory-mapped vectors). Tables of at least ``ARCHIVE_BF16_SCAN_FRAMES`` frames (50,000) are ranked
from a bf16 copy of their vectors (half the memory and scan time of fp32, absolute error about
1e-3); the videos shown are then rescored exactly, so answers are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer import settings
from indexer.store import FrameTable


class Scanner:
    """Scores query vectors against a frame table; keeps the bf16 copy between calls."""

    def __init__(self, table: FrameTable) -> None:
        self.table = table
        self._bf16: Any = None  # torch bf16 (len(table), dim), in frame order; built on first use

    @property
    def approximate(self) -> bool:
        """Whether :meth:`fast_scores` ranks from bf16 (large tables) rather than exactly."""
        return len(self.table) >= settings.bf16_scan_frames()

    def _release(self) -> None:
        """Large tables hand mapped pages back as they go (a query touches few of them again);
        smaller ones keep them for the next exact scan."""
        if self.approximate:
            self.table.release_pages()

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Exact cosine scores ``(n_frames, n_queries)`` of unit query vectors against the frames."""
        t = self.table
        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = t.row
        in_order = t.in_file_order
        out = np.empty((len(rows), len(q)), np.float32)
        step = 65536
        for a in range(0, len(rows), step):
            chunk = t.vectors[a : a + step] if in_order else np.asarray(t.vectors[rows[a : a + step]])
            out[a : a + step] = matvecs(chunk, q)
            self._release()
        return out

    def scores_at(self, idx: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Exact scores ``(len(idx), n_queries)`` of the frames at positions ``idx`` only."""
        t = self.table
        q = np.ascontiguousarray(queries, dtype=np.float32)
        vecs = np.asarray(t.vectors[t.row[np.asarray(idx, np.int64)]], np.float32)
        self._release()
        return matvecs(vecs, q)

    def fast_scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores for ranking: exact below the bf16 size, else from the bf16 copy (kept)."""
        if not self.approximate:
            return self.scores(queries)
        import torch  # noqa: PLC0415

        if self._bf16 is None:
            self._bf16 = self._to_bf16()
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(torch.bfloat16)
        out = np.empty((len(self.table), len(q)), np.float32)
        with torch.inference_mode():
            for j in range(len(q)):
                out[:, j] = torch.mv(self._bf16, q[j]).float().numpy()
        return out

    def _to_bf16(self) -> Any:
        """The vectors in frame order as bf16, converted in chunks; mapped file pages are handed
        back as it goes, so the fp32 file never sits in memory whole."""
        import torch  # noqa: PLC0415

        t = self.table
        out = torch.empty((len(t), t.vectors.shape[1]), dtype=torch.bfloat16)
        step = 16384
        for a in range(0, len(t), step):
            b = min(a + step, len(t))
            out[a:b] = torch.from_numpy(np.ascontiguousarray(t.vectors[t.row[a:b]])).to(torch.bfloat16)
            self._release()
        return out


def matvecs(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``mat @ q.T`` through torch, one matrix-vector product per query.

    Here (2 cores) a 1M x 512 product with 11 columns took 0.3-1.1 s, one column 0.1 s
    (memory-bound), so skinny products go column by column. torch, not numpy: the encoder runs in
    torch's thread pool, and OpenBLAS threads left spinning after a numpy product slowed the next
    text embedding 2-3x on 2 cores.
    """
    import warnings  # noqa: PLC0415

    import torch  # noqa: PLC0415

    out = np.empty((len(mat), len(q)), np.float32)
    if len(mat) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays
        m = torch.from_numpy(mat)
    with torch.inference_mode():
        if len(mat) <= 8192:  # small (a query's rescoring): one product
            return torch.mm(m, torch.from_numpy(q).T).numpy()
        for j in range(len(q)):
            out[:, j] = torch.mv(m, torch.from_numpy(q[j])).numpy()
    return out
