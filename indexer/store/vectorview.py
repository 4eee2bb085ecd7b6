"""Reading the vector layer: every segment memory-mapped and seen as one matrix (:class:`VectorView`),
rows read by block or scattered (``preadv``, one call per run of consecutive rows), fp16 decoded to
float32, the IVF codes of a segment, and the live rows of segments streamed for a merge.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from indexer.errors import StoreError

from . import vectors as vecfile
from .segments import STREAM_ROWS, Part, SegmentRef

if TYPE_CHECKING:
    import faiss

SCATTERED_GAP_ROWS = 16  # rows wanted further apart than this on average are read without read-around


FAST_DECODE_ROWS = 4096  # fp16 blocks of at least this many rows are converted by FAISS


# -- reading -----------------------------------------------------------------------------------
class VectorView:
    """The vectors of several segments seen as one ``(N, dim)`` float32 matrix, memory-mapped.

    Row ``r`` is row ``r - offset[k]`` of segment ``k``. ``view[a:b]`` and ``view[rows]`` give
    float32 arrays (a slice inside one fp32 segment without copying; fp16 rows are converted).
    """

    def __init__(
        self,
        parts: Sequence[np.ndarray],
        owners: Sequence[Any],
        dim: int,
        files: Sequence[tuple[Path, int, tuple[int, int]] | None] | None = None,
    ) -> None:
        self.parts = list(parts)
        self.owners = list(owners)
        self.dim = dim
        # per part, the file it is mapped from and the byte offset of its first row (None: not a
        # plain mapping): scattered rows are read from it with pread, not through the mapping
        self.files = list(files) if files is not None else [None] * len(self.parts)
        sizes = np.array([len(p) for p in self.parts], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), self.dim

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                return self.take(np.arange(a, b, step))
            k = int(np.searchsorted(self.offsets, a, side="right")) - 1
            if 0 <= k < len(self.parts) and b <= self.offsets[k + 1]:
                return _f32(self.parts[k][a - self.offsets[k] : b - self.offsets[k]])
            return self.take(np.arange(a, b))
        rows = np.asarray(key, np.int64)
        if rows.ndim == 0:  # one row: a (dim,) vector
            return self.take(rows[None])[0]
        return self.take(rows)

    def take(self, rows: np.ndarray, read_around: bool | None = None) -> np.ndarray:
        """The rows ``rows`` (global), in that order, as one float32 array. ``read_around``: whether
        page faults may read the disk's read-ahead window around them (None: unless the rows lie
        far apart, more than ``SCATTERED_GAP_ROWS`` on average)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        if not len(rows):
            return out
        seg = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(seg):
            sel = np.flatnonzero(seg == k)
            local = rows[sel] - self.offsets[k]
            # rows far apart are read page by page: a fault in a mapped file otherwise reads the
            # device's whole read-ahead window around it (8 MB on some disks), so a few thousand
            # scattered rows (a large archive's candidates) would read gigabytes from a cold cache
            scattered = (
                len(local) * SCATTERED_GAP_ROWS < int(local.max()) - int(local.min()) + 1
                if read_around is None
                else not read_around
            )
            if scattered and self.files[k] is not None and self._pread(k, local, out, sel):
                continue
            with vecfile.random_access(self.owners[k], scattered):
                out[sel] = self.parts[k][local]
        return out

    def _pread(self, k: int, local: np.ndarray, out: np.ndarray, sel: np.ndarray) -> bool:
        """Read the rows ``local`` of part ``k`` into ``out[sel]`` with one ``preadv`` per run of
        consecutive rows, not through the mapping: a fault in a mapped file maps the whole page-cache
        folio around it (up to megabytes on recent kernels), so a few thousand scattered rows had
        2 GB of file pages counted in the process's resident memory until they were released.
        Returns False (nothing read) when the file cannot be read so (the caller maps instead)."""
        file = self.files[k]
        assert file is not None  # the caller reads so only a part whose file it knows
        path, at, ident = file
        part = self.parts[k]
        if not hasattr(os, "preadv"):
            return False
        order = np.argsort(local, kind="stable")
        srt = local[order]
        buf = np.empty((len(srt), self.dim), part.dtype)
        row_bytes = self.dim * part.dtype.itemsize
        cut = np.flatnonzero(np.diff(srt) != 1) + 1
        starts = np.concatenate([[0], cut])
        stops = np.concatenate([cut, [len(srt)]])
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident:  # not the file mapped (its name was given to another since)
                return False
            flat = buf.data.cast("B")
            for a, b in zip(starts.tolist(), stops.tolist()):
                want = (b - a) * row_bytes
                if os.preadv(fd, [flat[a * row_bytes : b * row_bytes]], at + int(srt[a]) * row_bytes) != want:
                    return False
        except OSError:
            return False
        finally:
            os.close(fd)
        out[sel[order]] = _f32(buf)
        return True

    def blocks(self, step: int, reuse: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(first global row, rows)`` in order, each block inside one segment, as float32 (a view
        of an fp32 segment, no copy; fp16 rows are converted). ``reuse``: fp16 rows are converted
        into one buffer, so a block is valid only until the next one is asked for (a scan that
        uses each block once saves allocating and faulting in a new one every time)."""
        buf = (
            np.empty((min(step, max((len(p) for p in self.parts), default=0)), self.dim), np.float32)
            if reuse and any(p.dtype == np.float16 for p in self.parts)
            else None
        )
        for k, part in enumerate(self.parts):
            for a in range(0, len(part), step):
                yield int(self.offsets[k]) + a, _f32(part[a : a + step], buf)

    def release_pages(self) -> None:
        for owner in self.owners:
            vecfile.release_pages(owner)


_FP16: dict[int, faiss.ScalarQuantizer] = {}  # FAISS's fp16 scalar quantizer, per dimension


def _f32(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a`` as float32 (itself when it is). Large fp16 blocks go through FAISS's fp16 decoder
    (vectorised: half the time of numpy's conversion here; both convert every fp16 value exactly),
    into ``out`` when given (its first ``len(a)`` rows are returned)."""
    if a.dtype == np.float32:
        return a
    if a.dtype != np.float16 or a.ndim != 2 or len(a) < FAST_DECODE_ROWS:
        return a.astype(np.float32)
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    codes = np.ascontiguousarray(a).view(np.uint8)
    n, dim = a.shape
    sq = _FP16.get(dim)
    if sq is None:
        sq = _FP16[dim] = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    dst = out[:n] if out is not None and out.shape[0] >= n and out.shape[1] == dim else np.empty((n, dim), np.float32)
    sq.decode_c(faiss.swig_ptr(codes), faiss.swig_ptr(dst), n)  # type: ignore[attr-defined]  # faiss's stub lacks it
    return dst


def read_codes(store_dir: Path, ref: SegmentRef, code_size: int, ivf_id: int | None = None) -> np.ndarray | None:
    """A segment's IVF codes ``(n_vectors, code_size)`` uint8, memory-mapped (None: its sidecar is
    missing or of another size); ``ivf_id``: those for that index (default: its own)."""
    path = ref.ivf_path(store_dir, ivf_id)
    try:
        if path.stat().st_size != ref.n_vectors * code_size or not ref.n_vectors:
            return None
        return np.memmap(path, np.uint8, mode="r", shape=(ref.n_vectors, code_size))
    except (OSError, ValueError):
        return None


def open_segments(
    store_dir: Path, refs: Sequence[SegmentRef], dim: int, concat_ids: bool = True
) -> tuple[VectorView, Any, list[np.ndarray | None]]:
    """Map every segment: (the vectors as one view, every row's frame id, each segment's
    background term or None). ``concat_ids`` False: the frame ids as one mapped array per
    segment (nothing read yet), not one array of all.

    Raises:
        StoreError: a registered segment is missing or damaged (says how to repair).
    """
    parts, owners, ids, bgs, files = [], [], [], [], []
    for ref in refs:
        path = ref.path(store_dir)
        if not path.exists():
            raise StoreError(
                f"the vector segment {path} is missing. Run `archive check --repair`, then `archive index` "
                "on the same folders to re-embed what it held."
            )
        seg_ids, vecs, owner = (
            vecfile.map_file(path) if ref.n_vectors else (np.zeros(0, np.int64), np.zeros((0, dim), np.float32), None)
        )
        if vecs.shape[1] != dim or len(seg_ids) != ref.n_vectors:
            raise StoreError(
                f"the vector segment {path} does not match the catalog ({len(seg_ids)} vectors of "
                f"{vecs.shape[1]} dimensions, expected {ref.n_vectors} of {dim}): run `archive check --repair`."
            )
        parts.append(vecs)
        owners.append(owner)
        ids.append(seg_ids)
        files.append(_file_rows(path, vecs, owner))
        bg = None
        if ref.bg_key is not None:
            try:
                bg = np.load(ref.bg_path(store_dir), mmap_mode="r")
            except (OSError, ValueError):
                bg = None
            if bg is not None and len(bg) != ref.n_vectors:
                bg = None
        bgs.append(bg)
    if not concat_ids:
        return VectorView(parts, owners, dim, files), ids, bgs
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return VectorView(parts, owners, dim, files), all_ids.astype(np.int64, copy=False), bgs


def _file_rows(path: Path, vecs: np.ndarray, owner: Any) -> tuple[Path, int, tuple[int, int]] | None:
    """``(path, byte offset of the first row, (device, inode))`` of vectors mapped from ``path``
    by :func:`vecfile.map_file` (None: not a plain mapping of the file)."""
    if not isinstance(owner, mmap.mmap) or not len(vecs) or not vecs.flags.c_contiguous:
        return None
    at = vecs.ctypes.data - np.frombuffer(owner, np.uint8).ctypes.data
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, int(at), (st.st_dev, st.st_ino)) if 0 <= at < len(owner) else None


def stream_live(
    store_dir: Path,
    run: Sequence[SegmentRef],
    live_ids: np.ndarray,
    with_bg: bool,
    dim: int,
    codes_of: tuple[int, int] | None = None,
) -> Iterator[Part]:
    """The live rows of ``run`` (those whose id is in the sorted ``live_ids``) in chunks of
    STREAM_ROWS, in id order, with their background term when every segment has one, and with
    ``codes_of = (ivf_id, code_size)`` their IVF codes where a segment has codes of that index
    (None where not: the writer encodes those)."""
    for ref in run:
        view, ids, bgs = open_segments(store_dir, [ref], dim)
        bg = bgs[0]
        codes = read_codes(store_dir, ref, codes_of[1]) if codes_of and ref.ivf_id == codes_of[0] else None
        try:
            for a in range(0, len(ids), STREAM_ROWS):
                chunk = ids[a : a + STREAM_ROWS]
                pos = np.searchsorted(live_ids, chunk)
                pos_c = np.minimum(pos, max(len(live_ids) - 1, 0))
                keep = (live_ids[pos_c] == chunk) if len(live_ids) else np.zeros(len(chunk), bool)
                sel = np.flatnonzero(keep)
                if len(sel):
                    rows = a + sel
                    yield (
                        chunk[sel].copy(),
                        view.take(rows),
                        np.asarray(bg[rows], np.float64) if with_bg and bg is not None else None,
                        None if codes is None else np.asarray(codes[rows]),
                    )
                view.release_pages()
        finally:
            del view, codes
