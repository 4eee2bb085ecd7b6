"""One FAISS vector file: an ``IndexIDMap2`` of unit vectors, ids = ``frames.frame_id``, over an
``IndexFlatIP`` (fp32) or an ``IndexScalarQuantizer`` of type QT_fp16 (a segment of the vector
layer, or the single ``frames.faiss`` of a schema-3 store). Read memory-mapped, so opening it
costs nothing up front; :mod:`.segments` writes them.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from pathlib import Path
from typing import Any, Iterator, cast

import numpy as np

from indexer.errors import StoreError


def read(path: Path, mmap: bool = False) -> Any:
    """The vector index in ``path`` (a copy in memory, or memory-mapped read-only).

    Raises:
        StoreError: the file is damaged (says how to rebuild it).
    """
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise StoreError(
            f"the vector file {path} is damaged ({str(exc).splitlines()[0][:120]}). "
            "Delete it and run `archive index` again on the same folders to re-embed."
        ) from exc


def arrays(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) views of an IndexIDMap2(IndexFlat) without copying."""
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    n = index.ntotal
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, index.d), np.float32)
    flat = cast("faiss.IndexFlat", faiss.downcast_index(index.index))  # the flat index under the id map
    vecs = faiss.rev_swig_ptr(flat.get_xb(), n * index.d).reshape(n, index.d)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return ids, vecs


def map_file(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """(ids, vectors, owner) of a vector file, memory-mapped read-only rather than read.

    The file is FAISS's serialisation of IndexIDMap2(IndexFlat) or IndexIDMap2(IndexScalarQuantizer
    fp16): two index headers (and the quantizer's fields), the float32 or float16 vectors, then the
    int64 ids; ``vectors`` is float32 or float16 accordingly. Mapping it costs nothing up front and only the pages a
    query touches are read (faiss.read_index copies the whole file into memory, 2 GB at 1M
    frames). A file of any other layout is read through FAISS instead. ``owner`` keeps the memory
    alive (an ``mmap.mmap`` or a FAISS index).

    Raises:
        StoreError: unreadable or damaged.
    """
    head = 4 + 33  # fourcc + d, ntotal, 2 dummies, is_trained, metric_type
    sq_at = 2 * head  # an fp16 SQ index: qtype, rangestat, rangestat_arg, d, code_size, trained (empty)
    sq_len = 4 + 4 + 4 + 8 + 8 + 8
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(2 * head + sq_len + 8)
            if len(raw) >= 2 * head + 8 and raw[:4] in (b"IxM2", b"IxMp"):
                d, n, _, _, _, metric = struct.unpack("<iqqqBi", raw[4:head])
                d2, n2, _, _, _, _ = struct.unpack("<iqqqBi", raw[head + 4 : 2 * head])
                layout: tuple[type[np.floating[Any]], int, int, int] | None = None  # (dtype, at, count, bytes)
                if raw[head : head + 4] in (b"IxFI", b"IxF2"):
                    (count,) = struct.unpack("<Q", raw[2 * head : 2 * head + 8])
                    layout = (np.float32, 2 * head + 8, count, 4 * count)
                elif raw[head : head + 4] == b"IxSQ" and len(raw) == 2 * head + sq_len + 8:
                    qtype, _, _, sq_d, code_size, trained = struct.unpack("<iifQQQ", raw[sq_at : sq_at + sq_len])
                    (nbytes,) = struct.unpack("<Q", raw[sq_at + sq_len :])
                    if qtype == 4 and sq_d == d and code_size == 2 * d and trained == 0:  # QT_fp16
                        layout = (np.float16, sq_at + sq_len + 8, nbytes // 2, nbytes)
                if layout is not None:
                    dtype, vec_at, count, nbytes = layout
                    ids_at = vec_at + nbytes + 8
                    if (d, n) == (d2, n2) and metric in (0, 1) and count == n * d and size == ids_at + 8 * n and n > 0:
                        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                        (nids,) = struct.unpack("<Q", mm[ids_at - 8 : ids_at])
                        if nids == n:
                            vecs = np.frombuffer(mm, dtype, count=n * d, offset=vec_at).reshape(n, d)
                            ids = np.frombuffer(mm, np.int64, count=n, offset=ids_at)
                            return ids, vecs, mm
                        mm.close()
    except OSError as exc:
        raise StoreError(f"cannot read the vector file {path}: {exc.strerror or exc}") from exc
    index = read(path, mmap=True)
    ids, vecs = arrays(index)
    return ids, vecs, index


def release_pages(owner: Any) -> None:
    """Unmap a mapped vector file's pages from this process (they stay in the OS page cache), so
    scanning vectors does not grow resident memory. A no-op for anything but an ``mmap``."""
    if isinstance(owner, mmap.mmap) and hasattr(owner, "madvise"):
        owner.madvise(mmap.MADV_DONTNEED)


@contextlib.contextmanager
def random_access(owner: Any, scattered: bool = True) -> Iterator[None]:
    """While inside, faults in a mapped vector file read only the page they touch (``MADV_RANDOM``),
    not the read-ahead window around it; afterwards the default again. A no-op when ``scattered``
    is False or for anything but an ``mmap``."""
    advise = scattered and isinstance(owner, mmap.mmap) and hasattr(mmap, "MADV_RANDOM")
    if advise:
        owner.madvise(mmap.MADV_RANDOM)
    try:
        yield
    finally:
        if advise:
            owner.madvise(mmap.MADV_NORMAL)
