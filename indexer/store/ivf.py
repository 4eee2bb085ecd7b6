"""The IVF index of a large archive: a trained FAISS ``IVF{nlist},PQ{m}`` that ranks candidates.

Past ``ARCHIVE_IVF_FRAMES`` live frames (2M), a brute-force pass over every vector costs more per
query than an answer should, so ``archive optimize`` trains an inverted-file index with product
quantisation (FAISS) on a sample of the stored vectors:

* ``vectors/ivf-00000003.faiss``: the trained, empty index (coarse centroids and PQ codebooks),
  registered in the catalog's ``vector_ivf`` table;
* per segment, ``seg-*.i00000003.ivf``: each row's code in it (``sa_encode``: the list number,
  then ``m`` bytes), registered by the segment's ``ivf_id``.

Commits encode their new rows with the registered index (new videos join the existing lists, no
retraining), and merges carry the codes along. A query process loads the codes into one FAISS
index (``add_sa_codes``: ``m + 2`` bytes a frame in memory) that returns candidate frames; the
read path then rescores the candidates' videos exactly from the stored vectors (see
:mod:`search.scan`), so the answers shown are exact.

Training writes a new index and new sidecars next to the old ones, then swaps the registrations
in one transaction: a crash leaves either the old index registered (the new files are orphans the
next writer deletes) or the new one.

**Lists file.** Building the searchable index from every segment's codes costs a fresh process
time and memory in proportion to the archive (about 1.5 s and 700 MB at 10M frames), which an
``archive index`` of one clip (comparing it for versions) or a cold query would pay. So the codes
are also kept grouped by list, in ``vectors/ivf-00000003.lists-00000007.faiss``: a plain FAISS
index file (its inverted lists in FAISS's own contiguous layout) that a reader memory-maps
(``IO_FLAG_MMAP``): opening it reads nothing, and a search reads only the lists it probes. It is
registered in ``meta`` (:data:`LISTS_KEY`) with the highest frame id it covers: it holds every
coded row with a frame id up to that one, and frame ids are never given out again below it
(:class:`~indexer.store.writer.Writer` starts above it), so the rows written since are exactly
the coded rows above it; a reader adds their codes in memory (:func:`open_search`). Dead rows
in it are filtered out by the catalog, as dead rows of segments are. Training writes it with the
new sidecars; ``archive optimize`` and an index run that has added more than :func:`lists_due`
allows rewrite it (streamed: memory stays bounded), durably, before one transaction registers
it; a reader that finds it unusable builds the index from the codes as before.

Longer than the project's ~500 lines on purpose: the index, its codes and its lists file share one
binary layout (FAISS's own), kept in one module so that what is written and what is read cannot
drift apart.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, cast

import numpy as np

from indexer import settings
from indexer.errors import StoreError

from . import segments, vectorview
from .layout import SEGMENTS_DIR, fsync_dir, now

# meta key: the IVF index was trained by an index run for matching versions only; queries keep
# their exact scan until `archive optimize --ivf` (which deletes the key) opts them in
MATCHING_ONLY_KEY = "ivf_matching_only"
TRAIN_PER_LIST = 40  # training vectors per list (FAISS asks for at least 39)
MIN_VECTORS = 256 * TRAIN_PER_LIST  # the fewest lists (256), and PQ's 256 centroids per sub-vector
ENCODE_ROWS = 1 << 15  # rows encoded at a time
LISTS_KEY = "ivf_lists"  # meta key: the registered lists file (ListsRef as JSON)
LISTS_CHUNK = 1 << 19  # rows sorted into lists at a time while a lists file is written
LISTS_TAIL_MIN = 100_000  # an index run rewrites the lists file once more rows than this, and than
LISTS_TAIL_SHARE = 0.1  # ... this share of the rows in it, were written since


@dataclass(frozen=True)
class IvfRef:
    """A registered IVF index."""

    ivf_id: int
    file: str
    factory: str
    nlist: int
    code_size: int
    trained_vectors: int
    archive_vectors: int
    train_s: float | None

    def path(self, store_dir: Path) -> Path:
        return store_dir / SEGMENTS_DIR / self.file


def match_index_due(frames: int) -> bool:
    """Whether an archive of ``frames`` frames without an IVF index should get one for matching
    versions (``ARCHIVE_MATCH_IVF_FRAMES``, and enough vectors to train on)."""
    limit = settings.match_ivf_frames()
    return bool(limit) and frames >= max(limit, MIN_VECTORS)


def file_name(ivf_id: int) -> str:
    return f"ivf-{ivf_id:08d}.faiss"


def current(con: Any) -> IvfRef | None:
    """The registered IVF index (None: the archive has none)."""
    rows = con.execute(
        "SELECT ivf_id, file, factory, nlist, code_size, trained_vectors, archive_vectors, train_s "
        "FROM vector_ivf ORDER BY ivf_id DESC LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    r = rows[0]
    return IvfRef(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]), r[7])


@dataclass(frozen=True)
class ListsRef:
    """A registered lists file: the codes of every coded row with a frame id up to
    ``max_frame_id`` (``vectors`` rows, dead ones included) grouped by list, for index ``ivf_id``."""

    ivf_id: int
    seq: int
    max_frame_id: int
    vectors: int

    @property
    def file(self) -> str:
        return f"ivf-{self.ivf_id:08d}.lists-{self.seq:08d}.faiss"

    def path(self, store_dir: Path) -> Path:
        return store_dir / SEGMENTS_DIR / self.file


def current_lists(con: Any) -> ListsRef | None:
    """The registered lists file (None: none; readers then build the index from the codes)."""
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [LISTS_KEY]).fetchall()
    if not rows:
        return None
    try:
        d = json.loads(rows[0][0])
        return ListsRef(int(d["ivf_id"]), int(d["seq"]), int(d["max_frame_id"]), int(d["vectors"]))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: as if there were none (the next optimize writes a new one)


def register_lists(con: Any, ref: ListsRef | None) -> None:
    """Make ``ref`` the registered lists file (None: none), inside the caller's transaction."""
    con.execute("DELETE FROM meta WHERE key = ?", [LISTS_KEY])
    if ref is not None:
        con.execute(
            "INSERT INTO meta VALUES (?, ?)",
            [
                LISTS_KEY,
                json.dumps(
                    {"ivf_id": ref.ivf_id, "seq": ref.seq, "max_frame_id": ref.max_frame_id, "vectors": ref.vectors}
                ),
            ],
        )


def lists_due(lists: ListsRef | None, ivf_id: int, rows_since: int) -> bool:
    """Whether an index run should rewrite the lists file: there is none for the registered index,
    or more rows were written since than ``LISTS_TAIL_MIN`` and ``LISTS_TAIL_SHARE`` of it (so a
    reader adds a bounded share in memory, and the rewrites cost a constant per row added)."""
    if lists is None or lists.ivf_id != ivf_id:
        return True
    return rows_since > max(LISTS_TAIL_MIN, LISTS_TAIL_SHARE * lists.vectors)


def register(con: Any, ref: IvfRef) -> None:
    """Make ``ref`` the one registered index (inside the caller's transaction)."""
    con.execute("DELETE FROM vector_ivf")
    con.execute(
        "INSERT INTO vector_ivf VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ref.ivf_id,
            ref.file,
            ref.factory,
            ref.nlist,
            ref.code_size,
            ref.trained_vectors,
            ref.archive_vectors,
            ref.train_s,
            now(),
        ],
    )


def lists_for(n_vectors: int) -> int:
    """How many lists a training for an archive of ``n_vectors`` makes: about sqrt(N), a power of
    two from 256 to 16,384, and no more than its ``TRAIN_PER_LIST`` training vectors a list allow."""
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n_vectors))))
    nlist = int(min(16384, max(256, nlist)))
    return min(nlist, max(1, n_vectors // TRAIN_PER_LIST))


def shape_for(n_vectors: int, dim: int) -> tuple[int, int]:
    """``(nlist, m)`` for an archive of ``n_vectors``: :func:`lists_for` lists, and PQ codes of one
    byte per 8 dimensions."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return lists_for(n_vectors), m


class IvfCodec:
    """A trained IVF index: encodes vectors into its codes, and builds the searchable index."""

    def __init__(self, ref: IvfRef, index: Any) -> None:
        self.ref = ref
        self.ivf_id = ref.ivf_id
        self.index = index
        self.code_size = int(index.sa_code_size())
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        ivf = faiss.extract_index_ivf(index)
        # the list number's bytes
        self.coarse_size = int(ivf.coarse_code_size())  # type: ignore[attr-defined]  # faiss's stub lacks it

    @classmethod
    def load(cls, store_dir: Path, ref: IvfRef) -> "IvfCodec":
        """Raises: StoreError: the index file is missing or damaged."""
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        path = ref.path(store_dir)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise StoreError(
                f"the IVF index {path} is missing or damaged: run `archive optimize` to train it "
                "again (nothing is re-embedded)."
            ) from exc
        return cls(ref, index)

    def encode(self, vecs: np.ndarray) -> np.ndarray:
        """Each vector's code ``(n, code_size)`` uint8: its list number, then its PQ code."""
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.code_size), np.uint8)
        return self.index.sa_encode(x)

    def open_lists(self, store_dir: Path, lists: ListsRef | None) -> Any:
        """The lists file as a searchable FAISS index, memory-mapped (None: there is none for this
        index, or it is missing or damaged: the caller builds the index from the codes)."""
        if lists is None or lists.ivf_id != self.ivf_id:
            return None
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        try:
            index = faiss.read_index(str(lists.path(store_dir)), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            ivf = faiss.extract_index_ivf(index)
            assert ivf.invlists is not None  # an IVF index read from a file holds its lists
            inv = faiss.downcast_InvertedLists(ivf.invlists)
        except (RuntimeError, MemoryError):
            return None
        if hasattr(inv, "prefetch_nthread"):  # no prefetch threads per search: 7 ms a query at 10M, not 9-28
            inv.prefetch_nthread = 0
        if (
            int(index.ntotal) != lists.vectors
            or ivf.nlist != self.ref.nlist
            or index.d != self.index.d
            or int(index.sa_code_size()) != self.code_size
        ):
            return None
        return index

    def searchable(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
        """A copy of the trained index holding ``(ids, codes)`` of every part, ready to search."""
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        index = faiss.clone_index(self.index)
        for ids, codes in parts:
            if len(ids):
                index.add_sa_codes(np.ascontiguousarray(codes, np.uint8), np.ascontiguousarray(ids, np.int64))
        return index


def train(sample: np.ndarray, n_vectors: int, ivf_id: int) -> tuple[Any, IvfRef]:
    """Train ``IVF{nlist},PQ{m}`` (inner product) on ``sample`` for an archive of ``n_vectors``."""
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    dim = sample.shape[1]
    nlist, m = shape_for(n_vectors, dim)
    nlist = min(nlist, max(1, len(sample) // TRAIN_PER_LIST))
    factory = f"IVF{nlist},PQ{m}"
    t0 = time.perf_counter()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivfpq = cast("faiss.IndexIVFPQ", faiss.downcast_index(index))  # a view of the same index (``index`` keeps it alive)
    # the factory turns polysemous training on; it costs minutes and is not used here
    ivfpq.do_polysemous_training = False  # type: ignore[attr-defined]  # faiss's stub lacks it
    ivfpq.pq.cp.niter = 10
    index.train(np.ascontiguousarray(sample, np.float32))
    ref = IvfRef(
        ivf_id,
        file_name(ivf_id),
        factory,
        nlist,
        int(index.sa_code_size()),
        len(sample),
        n_vectors,
        round(time.perf_counter() - t0, 2),
    )
    return index, ref


def write_index(store_dir: Path, ref: IvfRef, index: Any) -> None:
    """Write the trained index durably (temp file, fsync, rename).

    Raises:
        StoreError: the disk is full or the folder is not writable.
    """
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    dest = ref.path(store_dir)
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write the IVF index {dest} ({exc}); the archive is unchanged.") from exc


def write_codes(path: Path, chunks: Callable[[], Any]) -> None:
    """Write a segment's codes sidecar from ``chunks()`` (uint8 arrays), durably.

    Raises:
        StoreError: the disk is full or the folder is not writable.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            for c in chunks():
                fh.write(np.ascontiguousarray(c, np.uint8).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write {path} ({exc.strerror or exc}); the archive is unchanged.") from exc


def list_numbers(codes: np.ndarray, coarse_size: int) -> np.ndarray:
    """The list each code is filed under (its first ``coarse_size`` bytes, little-endian)."""
    lst = np.zeros(len(codes), np.int64)
    for k in range(coarse_size):
        lst |= np.asarray(codes[:, k], np.int64) << (8 * k)
    return lst


def _lists_header(codec: IvfCodec, n: int, sizes: np.ndarray) -> bytes:
    """The bytes of a FAISS index file for ``codec``'s index holding ``n`` rows in lists of
    ``sizes``, up to where the lists' data begins (FAISS's own layout: each list's codes, then its
    ids, list after list; what ``write_index`` writes and ``IO_FLAG_MMAP`` maps)."""
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    empty = faiss.clone_index(codec.index)
    ivf = faiss.extract_index_ivf(empty)
    assert ivf.invlists is not None  # a clone of a trained IVF index holds its lists
    ivf.invlists.reset()  # type: ignore[attr-defined]  # faiss's stub lacks InvertedLists.reset
    empty.ntotal = n
    data = faiss.serialize_index(empty).tobytes()
    nlist, cs = int(ivf.nlist), int(ivf.code_size)
    tail = b"ilar" + struct.pack("<QQ", nlist, cs) + b"sprs" + struct.pack("<Q", 0)
    if not data.endswith(tail):  # pragma: no cover (a FAISS whose file layout differs)
        raise StoreError(
            "this FAISS version writes IVF index files in an unknown layout; the lists file was not written."
        )
    return (
        data[: -len(tail)]
        + b"ilar"
        + struct.pack("<QQ", nlist, cs)
        + b"full"
        + struct.pack("<Q", nlist)
        + np.asarray(sizes, "<u8").tobytes()
    )


def write_lists(
    store_dir: Path,
    codec: IvfCodec,
    parts: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    seq: int,
    max_frame_id: int,
    progress: Any = None,
) -> ListsRef:
    """Write the lists file of ``parts()`` (``(frame ids, codes)`` of every coded row with a frame
    id up to ``max_frame_id``; called twice: once to size the lists, once to fill them), durably
    (temp file, fsync, rename). Memory stays bounded: ``LISTS_CHUNK`` rows are sorted at a time
    and written to their lists' places in the file.

    Raises:
        StoreError: the disk is full or the folder is not writable.
    """
    nlist, coarse = codec.ref.nlist, codec.coarse_size
    cs = codec.code_size - coarse  # bytes of a code inside a list (its list number is implied)

    def chunks() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for ids, codes in parts():
            for a in range(0, len(ids), LISTS_CHUNK):
                yield np.asarray(ids[a : a + LISTS_CHUNK], np.int64), np.asarray(codes[a : a + LISTS_CHUNK], np.uint8)

    sizes = np.zeros(nlist, np.int64)
    for _ids, codes in chunks():
        lst = list_numbers(codes, coarse)
        if len(lst) and int(lst.max()) >= nlist:
            raise StoreError(
                "some IVF codes name a list the index does not have (damaged): run `archive optimize "
                "--ivf --retrain` to encode them again; the lists file was not written."
            )
        sizes += np.bincount(lst, minlength=nlist)
    n = int(sizes.sum())
    ref = ListsRef(codec.ivf_id, seq, int(max_frame_id), n)
    head = _lists_header(codec, n, sizes)
    at = len(head) + np.concatenate([[0], np.cumsum(sizes * (cs + 8))])[:-1]  # each list's codes, then its ids
    dest = ref.path(store_dir)
    tmp = dest.with_name(dest.name + ".tmp")
    fill = np.zeros(nlist, np.int64)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        try:
            os.ftruncate(fd, int(len(head) + n * (cs + 8)))
            _pwrite_all(fd, head, 0)
            done = 0
            for ids, codes in chunks():
                lst = list_numbers(codes, coarse)
                order = np.argsort(lst, kind="stable")  # rows keep their order inside a list
                lst = lst[order]
                pq = np.ascontiguousarray(codes[order, coarse:])
                rid = np.ascontiguousarray(ids[order], "<i8")
                cut = np.flatnonzero(np.diff(lst)) + 1
                for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(lst)]])):
                    if b <= a:
                        continue
                    k = int(lst[a])
                    f = int(fill[k])
                    if f + (b - a) > sizes[k]:
                        raise StoreError("the codes changed while the lists file was written; nothing was registered.")
                    _pwrite_all(fd, pq[a:b], int(at[k] + f * cs))
                    _pwrite_all(fd, rid[a:b], int(at[k] + sizes[k] * cs + f * 8))
                    fill[k] = f + (b - a)
                done += len(ids)
                if progress:
                    progress(done, n, "writing the IVF index's lists")
            if not np.array_equal(fill, sizes):
                raise StoreError("the codes changed while the lists file was written; nothing was registered.")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(
            f"could not write the IVF lists file {dest} ({exc.strerror or exc}); the archive is unchanged."
        ) from exc
    except StoreError:
        tmp.unlink(missing_ok=True)
        raise
    return ref


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a short write, as on a full disk, is an error)."""
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(28, "No space left on device")
        view, offset = view[n:], offset + n


class IvfSearch:
    """The store's IVF index, ready to search: the lists file (memory-mapped) and an in-memory
    index of the rows written since (either may be missing). Results of the two are merged."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = [p for p in parts if p is not None and p.ntotal]
        self.ntotal = sum(int(p.ntotal) for p in self.parts)

    def set_nprobe(self, nprobe: int) -> None:
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        for p in self.parts:
            faiss.extract_index_ivf(p).nprobe = int(nprobe)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows of each query (inner product, best first; id -1 where fewer)."""
        q = np.ascontiguousarray(q, np.float32)
        if not self.parts:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if len(self.parts) == 1:
            return self.parts[0].search(q, k)
        found = [p.search(q, k) for p in self.parts]
        dist = np.hstack([d for d, _ in found])
        ids = np.hstack([i for _, i in found])
        dist = np.where(ids >= 0, dist, -np.inf)
        order = np.argsort(-dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)


def open_search(
    store_dir: Path, codec: IvfCodec, lists: ListsRef | None, coded: Sequence[Any]
) -> tuple[IvfSearch, list[Any]]:
    """The searchable index of segments ``coded`` (those registered with codes in ``codec``'s
    index): the lists file plus, in memory, the rows above its highest frame id (all rows when
    the file is missing or unusable). Returns it and the segments whose codes turned out to be
    unreadable (to be scanned exactly)."""
    main = codec.open_lists(store_dir, lists)
    above = lists.max_frame_id if main is not None and lists is not None else -1
    parts, bare = [], []
    for r in coded:
        if r.max_frame_id <= above:
            continue  # every row of it is in the lists file
        codes = vectorview.read_codes(store_dir, r, codec.code_size)
        if codes is None:
            bare.append(r)
            continue
        ids = np.asarray(segments.vecfile.map_file(r.path(store_dir))[0])
        if r.min_frame_id <= above:
            keep = ids > above
            ids, codes = ids[keep], np.asarray(codes)[keep]
        parts.append((ids, codes))
    tail = codec.searchable(parts) if any(len(i) for i, _ in parts) else None
    return IvfSearch([main, tail]), bare


def lists_problem(
    root: Path, refs: list[segments.SegmentRef], ivf_ref: IvfRef | None, lists_ref: ListsRef | None
) -> str | None:
    """What is wrong with the IVF index's lists file (None: nothing, or there is none to check):
    it opens as the registered index's lists, holds as many rows as registered, and a sample of
    its rows lies in range and in the list its segment's code names."""
    if ivf_ref is None or lists_ref is None:
        return None
    fix = (
        "queries and comparisons build the index from the codes instead (slower); `archive check --repair` "
        "(or `archive optimize`) writes it again."
    )
    if lists_ref.ivf_id != ivf_ref.ivf_id:
        return f"the IVF lists file {lists_ref.file} belongs to another IVF index: {fix}"
    try:
        codec = IvfCodec.load(root, ivf_ref)
    except StoreError:
        return None  # said by _check_ivf
    index = codec.open_lists(root, lists_ref)
    if index is None:
        return f"the IVF lists file vectors/{lists_ref.file} is missing or damaged: {fix}"
    import faiss  # lazy: FAISS is loaded only where vectors are read or written

    inv = faiss.extract_index_ivf(index).invlists
    assert inv is not None  # an IVF index read from a file holds its lists
    dim = int(codec.index.d)
    by_range = sorted(
        (r.min_frame_id, r.max_frame_id, r)
        for r in refs
        if r.n_vectors and r.ivf_id == ivf_ref.ivf_id and segments.verify_header(root, r, dim) is None
    )  # (a damaged segment is said elsewhere)
    lows = np.array([b[0] for b in by_range], np.int64)
    opened: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    bad = 0
    for lst in np.linspace(0, codec.ref.nlist - 1, min(codec.ref.nlist, 64)).astype(np.int64):
        n = inv.list_size(int(lst))
        if not n:
            continue
        ids = faiss.rev_swig_ptr(inv.get_ids(int(lst)), n).copy()[:: max(1, n // 4)]
        if (ids < 0).any() or (ids > lists_ref.max_frame_id).any():
            return f"the IVF lists file vectors/{lists_ref.file} holds ids it should not (damaged): {fix}"
        for fid in ids:  # a row some segment still holds has its code filed under this list
            k = int(np.searchsorted(lows, fid, side="right")) - 1
            if k < 0 or fid > by_range[k][1]:
                continue  # a dead row merged away: readers skip it
            r = by_range[k][2]
            if r.segment_id not in opened:
                try:
                    seg_ids = np.asarray(segments.vecfile.map_file(r.path(root))[0])
                except StoreError:
                    seg_ids = np.zeros(0, np.int64)
                opened[r.segment_id] = (seg_ids, vectorview.read_codes(root, r, codec.code_size))
            seg_ids, codes = opened[r.segment_id]
            at = min(int(np.searchsorted(seg_ids, fid)), max(len(seg_ids) - 1, 0))
            if not len(seg_ids) or seg_ids[at] != fid or codes is None:
                continue  # out of order, gone, or without codes: said elsewhere
            if list_numbers(np.asarray(codes[at : at + 1]), codec.coarse_size)[0] != lst:
                bad += 1
    if bad:
        return f"the IVF lists file vectors/{lists_ref.file} files {bad} sampled row(s) under the wrong list: {fix}"
    return None
