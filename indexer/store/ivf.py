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
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StoreError
from .layout import SEGMENTS_DIR, fsync_dir, now

# meta key: the IVF index was trained by an index run for matching versions only; queries keep
# their exact scan until `archive optimize --ivf` (which deletes the key) opts them in
MATCHING_ONLY_KEY = "ivf_matching_only"
TRAIN_PER_LIST = 40  # training vectors per list (FAISS asks for at least 39)
MIN_VECTORS = 256 * TRAIN_PER_LIST  # the fewest lists (256), and PQ's 256 centroids per sub-vector
ENCODE_ROWS = 1 << 15  # rows encoded at a time


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
    from .. import settings  # noqa: PLC0415

    limit = settings.match_ivf_frames()
    return bool(limit) and frames >= max(limit, MIN_VECTORS)


def file_name(ivf_id: int) -> str:
    return f"ivf-{ivf_id:08d}.faiss"


def current(con: Any) -> IvfRef | None:
    """The registered IVF index (None: the archive has none)."""
    rows = con.execute("SELECT ivf_id, file, factory, nlist, code_size, trained_vectors, archive_vectors, train_s "
                       "FROM vector_ivf ORDER BY ivf_id DESC LIMIT 1").fetchall()
    if not rows:
        return None
    r = rows[0]
    return IvfRef(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]), r[7])


def register(con: Any, ref: IvfRef) -> None:
    """Make ``ref`` the one registered index (inside the caller's transaction)."""
    con.execute("DELETE FROM vector_ivf")
    con.execute("INSERT INTO vector_ivf VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [ref.ivf_id, ref.file, ref.factory, ref.nlist, ref.code_size, ref.trained_vectors,
                 ref.archive_vectors, ref.train_s, now()])


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
        import faiss  # noqa: PLC0415

        self.coarse_size = int(faiss.extract_index_ivf(index).coarse_code_size())  # the list number's bytes

    @classmethod
    def load(cls, store_dir: Path, ref: IvfRef) -> "IvfCodec":
        """Raises: StoreError: the index file is missing or damaged."""
        import faiss  # noqa: PLC0415

        path = ref.path(store_dir)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise StoreError(f"the IVF index {path} is missing or damaged: run `archive optimize` to train it "
                             "again (nothing is re-embedded).") from exc
        return cls(ref, index)

    def encode(self, vecs: np.ndarray) -> np.ndarray:
        """Each vector's code ``(n, code_size)`` uint8: its list number, then its PQ code."""
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.code_size), np.uint8)
        return self.index.sa_encode(x)

    def searchable(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
        """A copy of the trained index holding ``(ids, codes)`` of every part, ready to search."""
        import faiss  # noqa: PLC0415

        index = faiss.clone_index(self.index)
        for ids, codes in parts:
            if len(ids):
                index.add_sa_codes(np.ascontiguousarray(codes, np.uint8), np.ascontiguousarray(ids, np.int64))
        return index


def train(sample: np.ndarray, n_vectors: int, ivf_id: int) -> tuple[Any, IvfRef]:
    """Train ``IVF{nlist},PQ{m}`` (inner product) on ``sample`` for an archive of ``n_vectors``."""
    import faiss  # noqa: PLC0415

    dim = sample.shape[1]
    nlist, m = shape_for(n_vectors, dim)
    nlist = min(nlist, max(1, len(sample) // TRAIN_PER_LIST))
    factory = f"IVF{nlist},PQ{m}"
    t0 = time.perf_counter()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivfpq = faiss.downcast_index(index)  # a view of the same index (``index`` keeps it alive)
    ivfpq.do_polysemous_training = False  # the factory turns it on; it costs minutes and is not used here
    ivfpq.pq.cp.niter = 10
    index.train(np.ascontiguousarray(sample, np.float32))
    ref = IvfRef(ivf_id, file_name(ivf_id), factory, nlist, int(index.sa_code_size()), len(sample), n_vectors,
                 round(time.perf_counter() - t0, 2))
    return index, ref


def write_index(store_dir: Path, ref: IvfRef, index: Any) -> None:
    """Write the trained index durably (temp file, fsync, rename).

    Raises:
        StoreError: the disk is full or the folder is not writable.
    """
    import faiss  # noqa: PLC0415

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
