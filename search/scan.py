"""One pass of query vectors over the stored frame vectors: cosine scores, exact or for ranking.

A :class:`Scanner` wraps a :class:`~indexer.store.FrameTable` (the frames in scope and their
memory-mapped vectors). On tables of at least ``ARCHIVE_BF16_SCAN_FRAMES`` frames (50,000), every
query after the first is ranked from a compact copy of the vectors kept in memory, and the videos
shown are then rescored exactly, so answers are exact. The copy is int8 with one scale per row
(a quarter of fp32: 0.5 GB at 1M x 512; torch's int8 weight kernel reads it in about a third of
the time a bf16 copy takes, absolute error about 2e-3), or bf16 where torch has no such kernel
(half of fp32, error about 1e-3). The first query scans the stored vectors directly: building the
copy reads them all anyway, so a one-shot process (a CLI query) never pays for a copy it would use
once.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable

import numpy as np

from indexer import settings
from indexer.model.background import background_lse
from indexer.store import FrameTable

_INT8: list[bool] = []  # whether torch's int8 weight kernel works here (checked once)


def int8_kernel() -> bool:
    """Whether ``torch.ops.aten._weight_int8pack_mm`` (int8 rows, one scale each, bf16 queries) is
    there and right: a private torch operator, so it is checked on a small product first."""
    if not _INT8:
        ok = False
        try:
            import torch  # lazy: heavy import (torch)

            g = torch.Generator().manual_seed(0)
            w = torch.randint(-127, 128, (37, 64), dtype=torch.int8, generator=g)
            sc = (torch.rand(37, generator=g) + 0.5).to(torch.bfloat16)
            x = torch.randn(3, 64, generator=g).to(torch.bfloat16)
            got = torch.ops.aten._weight_int8pack_mm(x, w, sc).float()
            ref = x.float() @ (w.float() * sc.float()[:, None]).T
            ok = tuple(got.shape) == (3, 37) and bool(((got - ref).abs() <= 0.02 * ref.abs().max()).all())
        except Exception:  # missing or failing operator: the bf16 copy instead
            ok = False
        _INT8.append(ok)
    return _INT8[0]


class Scanner:
    """Scores query vectors against a frame table; keeps the ranking copy between calls."""

    def __init__(self, table: FrameTable) -> None:
        self.table = table
        # the ranking copy, in frame order, built for the 2nd query: ("int8", rows, row scales) or ("bf16", rows)
        self._copy: tuple[Any, ...] | None = None
        self.queries = 0  # fast_scores calls so far
        self.last_exact = True  # whether the last fast_scores call was exact
        self._order: np.ndarray | None = None  # frame positions sorted by stored row
        self._sorted_rows: np.ndarray | None = None

    @property
    def approximate(self) -> bool:
        """Whether :meth:`fast_scores` ranks from a compact copy (large tables) rather than exactly."""
        return len(self.table) >= settings.bf16_scan_frames()

    def _release(self) -> None:
        """Large tables hand mapped pages back as they go (a query touches few of them again);
        smaller ones keep them for the next exact scan."""
        if self.approximate:
            self.table.release_pages()

    def _blocks(self, step: int = 65536) -> Any:
        """``(vectors, frame positions, rows in the block)`` for each block of stored rows, read in
        file order (sequential pages, no gathering from the mapped files); blocks no frame in
        scope uses are skipped."""
        t = self.table
        if self._order is None:
            self._order = np.argsort(t.row, kind="stable")
            self._sorted_rows = t.row[self._order]
        assert self._sorted_rows is not None  # set with ``_order``
        for r0, block in t.vectors.blocks(step, reuse=True):
            lo, hi = np.searchsorted(self._sorted_rows, [r0, r0 + len(block)])
            if hi > lo:
                yield block, self._order[lo:hi], self._sorted_rows[lo:hi] - r0

    def _dense(self) -> bool:
        """Whether the frames in scope use most stored rows (then blocks are read in file order;
        else only their rows are gathered)."""
        return 2 * len(self.table) >= len(self.table.vectors)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Exact cosine scores ``(n_frames, n_queries)`` of unit query vectors against the frames."""
        t = self.table
        q = np.ascontiguousarray(queries, dtype=np.float32)
        out = np.empty((len(t), len(q)), np.float32)
        if self._dense():
            for block, pos, local in self._blocks():
                s = matvecs(block, q)
                out[pos] = s[local]
                self._release()
            return out
        step = 65536
        for a in range(0, len(t), step):
            out[a : a + step] = matvecs(t.vectors.take(t.row[a : a + step]), q)
            self._release()
        return out

    def scores_at(self, idx: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Exact scores ``(len(idx), n_queries)`` of the frames at positions ``idx`` only."""
        t = self.table
        q = np.ascontiguousarray(queries, dtype=np.float32)
        vecs = np.asarray(t.vectors[t.row[np.asarray(idx, np.int64)]], np.float32)
        self._release()
        return matvecs(vecs, q)

    @property
    def copy_kind(self) -> str | None:
        """``int8`` or ``bf16``: the ranking copy built so far (None: none yet)."""
        return None if self._copy is None else self._copy[0]

    def fast_scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores for ranking: exact below the bf16 size and for the first call; after that from
        the ranking copy (built once and kept). :attr:`last_exact` says which it was."""
        self.queries += 1
        self.last_exact = not self.approximate or (self._copy is None and self.queries == 1)
        if self.last_exact:
            return self.scores(queries)
        import torch  # lazy: heavy import (torch)

        if self._copy is None:
            # (the kernel works on rows of a multiple of 16 values: every open_clip width is one)
            int8 = self.table.vectors.shape[1] % 16 == 0 and int8_kernel()
            self._copy = self._to_int8() if int8 else ("bf16", self._to_bf16())
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(torch.bfloat16)
        out = np.empty((len(self.table), len(q)), np.float32)
        with torch.inference_mode():
            if self._copy[0] == "int8":  # one pass over the rows for every query
                out[:] = torch.ops.aten._weight_int8pack_mm(q, self._copy[1], self._copy[2]).float().T.numpy()
            else:
                for j in range(len(q)):
                    out[:, j] = torch.mv(self._copy[1], q[j]).float().numpy()
        return out

    def _to_int8(self) -> tuple[str, Any, Any]:
        """The vectors in frame order as int8 rows with one bf16 scale each (the row's largest
        magnitude / 127, rounded to bf16 first so that the rows are quantised against the scale
        used), converted in chunks with mapped pages handed back as for the bf16 copy."""
        import torch  # lazy: heavy import (torch)

        t = self.table
        rows = torch.empty((len(t), t.vectors.shape[1]), dtype=torch.int8)
        scales = torch.empty(len(t), dtype=torch.bfloat16)

        def quantise(x: Any) -> tuple[Any, Any]:
            sc = (x.abs().amax(dim=1) / 127.0).to(torch.bfloat16)
            f = sc.float().clamp_min(1e-30)[:, None]
            return torch.round(x / f).clamp_(-127, 127).to(torch.int8), sc

        if self._dense():
            for block, pos, local in self._blocks(16384):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays
                    x = torch.from_numpy(block)
                w, sc = quantise(x)
                p, lo = torch.from_numpy(pos), torch.from_numpy(local)
                rows[p], scales[p] = w[lo], sc[lo]
                self._release()
            return "int8", rows, scales
        step = 16384
        for a in range(0, len(t), step):
            b = min(a + step, len(t))
            rows[a:b], scales[a:b] = quantise(torch.from_numpy(t.vectors.take(t.row[a:b])))
            self._release()
        return "int8", rows, scales

    def _to_bf16(self) -> Any:
        """The vectors in frame order as bf16, converted in chunks; mapped file pages are handed
        back as it goes, so the fp32 file never sits in memory whole."""
        import torch  # lazy: heavy import (torch)

        t = self.table
        out = torch.empty((len(t), t.vectors.shape[1]), dtype=torch.bfloat16)
        if self._dense():
            for block, pos, local in self._blocks(16384):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays
                    b16 = torch.from_numpy(block).to(torch.bfloat16)  # read in file order
                out[torch.from_numpy(pos)] = b16[torch.from_numpy(local)]
                self._release()
            return out
        step = 16384
        for a in range(0, len(t), step):
            b = min(a + step, len(t))
            out[a:b] = torch.from_numpy(t.vectors.take(t.row[a:b])).to(torch.bfloat16)
            self._release()
        return out


def matvecs(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``mat @ q.T``: through torch (one matrix-vector product per query) when torch is loaded,
    else through numpy in row chunks.

    Here (2 cores) a 1M x 512 product with 11 columns took 0.3-1.1 s through torch, one column
    0.1 s (memory-bound), so skinny products go column by column. torch when the model is loaded:
    the encoder runs in torch's thread pool, and OpenBLAS threads left spinning after a numpy
    product slowed the next torch text embedding 2-3x on 2 cores. A text query on the numpy text
    tower has no torch to share the cores with, and importing torch would cost more than the scan.
    """
    out = np.empty((len(mat), len(q)), np.float32)
    if len(mat) == 0:
        return out
    if "torch" not in sys.modules:  # a text query on the numpy text tower: do not import torch for this
        for a in range(0, len(mat), 65536):
            np.matmul(mat[a : a + 65536], q.T, out=out[a : a + 65536])
        return out
    import torch  # lazy: heavy import (torch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays
        m = torch.from_numpy(mat)
    with torch.inference_mode():
        if len(mat) <= 8192:  # small (a query's rescoring): one product
            return torch.mm(m, torch.from_numpy(q).T).numpy()
        for j in range(len(q)):
            out[:, j] = torch.mv(m, torch.from_numpy(q[j])).numpy()
    return out


def background_term(scanner: Scanner, key: str | None, vectors: Callable[[], np.ndarray]) -> np.ndarray:
    """Per frame, the background prompts' term of the text rule (:mod:`indexer.model.background`): the one
    stored at index time where it was computed with ``key``, computed exactly from the stored
    vectors for the other frames (``vectors()`` gives the background prompts' vectors)."""
    t = scanner.table
    if t.bg_lse is None or key is None or t.bg_key != key:
        return background_lse(scanner.scores(vectors()))
    lse = np.array(t.bg_lse, np.float64)
    missing = np.flatnonzero(np.isnan(lse))
    if len(missing):
        lse[missing] = background_lse(scanner.scores_at(missing, vectors()))
    return lse
