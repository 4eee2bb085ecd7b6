"""The vector layer: immutable segment files, registered in the catalog's ``vector_segments`` table.

::

    vectors/seg-00000042.faiss     IndexIDMap2(IndexFlatIP) of unit vectors, ids = frames.frame_id
    vectors/seg-00000042.bg.npy    optional: per vector row, the background prompts' term (float64)

**Append.** A commit writes one new segment holding only its own videos' vectors (temp file,
fsync, rename, folder fsync) and registers it in the same catalog transaction that inserts the
frames' rows. Nothing that is already there is rewritten or read again, so a commit costs what
its videos cost. A crash before the transaction leaves an unregistered file: readers never open
it (they list segments from the catalog, in the same read as the frames) and the next writer
deletes it. Readers therefore never see a half-written segment.

**Delete.** Removing or replacing a video never touches a segment: its rows leave the catalog,
and its vectors become dead rows that readers skip (vectors are looked up by the catalog's frame
ids). Merges drop dead rows.

**Merge.** Consecutive segments (in frame-id order, so the id ranges of registered segments never
overlap) are copied, live rows only, into one new segment, streamed in chunks so memory stays
bounded whatever their size; one transaction swaps the registrations, then the old files are
deleted. A crash leaves either the old segments registered (the new file is an orphan) or the
new one (the old files are orphans).

**Kinds.** Each segment records its ``kind``: ``f16`` (written today: FAISS's
``IndexIDMap2(IndexScalarQuantizer fp16)``, half the bytes of fp32, cosine error about 1e-5) or
``flat`` (fp32, written before schema 7; still read, and rewritten as ``f16`` by merges and
``archive optimize``). Both are memory-mapped, never read whole.

**IVF codes.** In a large archive a segment may also have a sidecar ``seg-*.ivf``: for each of its
rows, that row's code in the store's trained IVF index (:mod:`.ivf`), as FAISS's ``sa_encode``
makes it. The sidecar is written before the segment is registered, like the background term, and
merges carry the codes along, so new videos join the existing lists without retraining.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from indexer import crashpoints
from indexer.errors import StoreError

from . import vectors as vecfile
from .layout import SEGMENTS_DIR, fsync_dir, now

FLAT = "flat"  # fp32: IndexIDMap2(IndexFlatIP)


F16 = "f16"  # fp16: IndexIDMap2(IndexScalarQuantizer(QT_fp16)), the kind written today


ITEMSIZE = {FLAT: 4, F16: 2}
# Auto-merge after an index run: when the newest segments include MERGE_FANIN consecutive ones of
# the same size class (each class MERGE_FANIN times the one below), they become one. A vector is
# rewritten about log_8(N) times over its life; larger merges are `archive optimize`'s.


# Auto-merge after an index run: when the newest segments include MERGE_FANIN consecutive ones of
# the same size class (each class MERGE_FANIN times the one below), they become one. A vector is
# rewritten about log_8(N) times over its life; larger merges are `archive optimize`'s.
MERGE_FANIN = 8


AUTO_MERGE_MAX_VECTORS = 1 << 18  # auto-merges never build a segment larger than this


OPTIMIZE_MAX_VECTORS = 1 << 22  # `archive optimize` builds segments up to this many vectors


STREAM_ROWS = 1 << 14  # rows copied at a time while merging


@dataclass(frozen=True)
class SegmentRef:
    """A registered segment: its id, file (under ``vectors/``), kind, size and id range."""

    segment_id: int
    file: str
    kind: str
    n_vectors: int
    min_frame_id: int
    max_frame_id: int
    bg_key: str | None  # the key of its background-term sidecar (None: it has none)
    ivf_id: int | None = None  # the IVF index its .ivf sidecar's codes belong to (None: no codes)

    def path(self, store_dir: Path) -> Path:
        return store_dir / SEGMENTS_DIR / self.file

    def bg_path(self, store_dir: Path) -> Path:
        return store_dir / SEGMENTS_DIR / self.file.replace(".faiss", ".bg.npy")

    def ivf_path(self, store_dir: Path, ivf_id: int | None = None) -> Path:
        """Its codes sidecar for the IVF index ``ivf_id`` (default: its own)."""
        return store_dir / SEGMENTS_DIR / ivf_name(self.file, self.ivf_id if ivf_id is None else ivf_id)

    def files(self, store_dir: Path) -> list[Path]:
        """The segment's file and its sidecars."""
        return [self.path(store_dir), self.bg_path(store_dir)] + (
            [self.ivf_path(store_dir)] if self.ivf_id is not None else []
        )


def ivf_name(file: str, ivf_id: int | None) -> str:
    return file.replace(".faiss", f".i{ivf_id or 0:08d}.ivf")


def file_name(segment_id: int) -> str:
    return f"seg-{segment_id:08d}.faiss"


def registered(con: Any) -> list[SegmentRef]:
    """Every registered segment, in frame-id order."""
    rows = con.execute(
        "SELECT segment_id, file, kind, n_vectors, min_frame_id, max_frame_id, bg_key, ivf_id FROM vector_segments "
        "ORDER BY min_frame_id, segment_id"
    ).fetchall()
    return [
        SegmentRef(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6], None if r[7] is None else int(r[7]))
        for r in rows
    ]


def register(con: Any, seg: SegmentRef) -> None:
    """Record a written segment (inside the commit's transaction)."""
    con.execute(
        "INSERT INTO vector_segments (segment_id, file, kind, n_vectors, min_frame_id, max_frame_id, bg_key, "
        "created_at, ivf_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            seg.segment_id,
            seg.file,
            seg.kind,
            seg.n_vectors,
            seg.min_frame_id,
            seg.max_frame_id,
            seg.bg_key,
            now(),
            seg.ivf_id,
        ],
    )


def unregister(con: Any, segment_ids: Sequence[int]) -> None:
    if segment_ids:
        con.execute(
            f"DELETE FROM vector_segments WHERE segment_id IN ({', '.join('?' for _ in segment_ids)})",
            list(segment_ids),
        )


# -- writing -----------------------------------------------------------------------------------
def _header(dim: int, n: int, kind: str = FLAT) -> bytes:
    """FAISS's serialisation of the segment's index up to its vectors (see vectors.map_file):
    IndexIDMap2(IndexFlatIP), or IndexIDMap2(IndexScalarQuantizer(QT_fp16)) whose header FAISS
    itself writes (for an empty index; the counts are then set to ``n``)."""
    if kind == FLAT:
        head = struct.pack("<iqqqBi", dim, n, 1 << 20, 1 << 20, 1, 0)  # d, ntotal, 2 dummies, is_trained, metric IP
        return b"IxM2" + head + b"IxFI" + head + struct.pack("<Q", n * dim)
    if kind != F16:
        raise StoreError(f"unknown vector segment kind {kind!r}")
    buf = bytearray(_f16_prefix(dim))
    struct.pack_into("<q", buf, 8, n)  # the IDMap's ntotal (after its fourcc and d)
    struct.pack_into("<q", buf, 37 + 8, n)  # the SQ index's ntotal
    return bytes(buf) + struct.pack("<Q", n * dim * 2)


_PREFIX: dict[int, bytes] = {}


def _f16_prefix(dim: int) -> bytes:
    """FAISS's own bytes for an empty IndexIDMap2(IndexScalarQuantizer(dim, QT_fp16, inner product)),
    without its two empty arrays (the codes, then the ids)."""
    if dim not in _PREFIX:
        import faiss  # lazy: FAISS is loaded only where vectors are read or written

        sq = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        raw = faiss.serialize_index(faiss.IndexIDMap2(sq)).tobytes()
        if raw[:4] != b"IxM2" or raw[37:41] != b"IxSQ" or raw[-16:] != bytes(16):
            raise StoreError(
                "this FAISS writes fp16 indexes in a layout the archive does not know; "
                "install the faiss-cpu version pyproject.toml names."
            )
        _PREFIX[dim] = raw[:-16]
    return _PREFIX[dim]


def encode(vecs: np.ndarray, kind: str) -> bytes:
    """The stored bytes of unit vectors: fp32 as they are, or IEEE half precision (round to
    nearest), exactly the codes FAISS's QT_fp16 scalar quantizer makes."""
    if kind == FLAT:
        return np.ascontiguousarray(vecs, dtype=np.float32).tobytes()
    return np.ascontiguousarray(vecs, dtype=np.float32).astype(np.float16).tobytes()


Part = tuple  # (ids, vectors, bg or None[, ivf codes or None])


def write_segment(
    store_dir: Path,
    segment_id: int,
    dim: int,
    parts: Iterator[Part],
    bg_key: str | None = None,
    kind: str = F16,
    ivf: Any = None,
) -> SegmentRef:
    """Write a new segment from ``(ids, vectors, bg or None[, codes or None])`` chunks, streamed,
    then make it durable (temp file, fsync, rename, folder fsync). With ``ivf`` (an
    :class:`~indexer.store.ivf.IvfCodec`) the rows' IVF codes go to the ``.ivf`` sidecar: those a
    chunk carries, or else encoded from its vectors.

    Raises:
        StoreError: the disk is full or the folder is not writable (nothing is left behind).
    """
    folder = store_dir / SEGMENTS_DIR
    name = file_name(segment_id)
    dest, tmp = folder / name, folder / (name + ".tmp")
    bg_dest = folder / name.replace(".faiss", ".bg.npy")
    bg_tmp = folder / (bg_dest.name + ".tmp")
    ivf_dest = folder / ivf_name(name, ivf.ivf_id if ivf is not None else None)
    ivf_tmp = folder / (ivf_dest.name + ".tmp")
    ids_tmp = folder / (name + ".ids.tmp")
    n, lo, hi, with_bg = 0, None, None, bg_key is not None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (
            open(tmp, "wb") as fh,
            open(ids_tmp, "w+b") as ids_fh,
            open(bg_tmp, "wb") if with_bg else contextlib.nullcontext() as bg_fh,
            open(ivf_tmp, "wb") if ivf is not None else contextlib.nullcontext() as ivf_fh,
        ):
            fh.write(_header(dim, 0, kind))  # rewritten with the real count at the end
            bg_parts: list[np.ndarray] = []
            for part in parts:
                ids, vecs, bg = part[0], part[1], part[2]
                codes = part[3] if len(part) > 3 else None
                if not len(ids):
                    continue
                vecs = np.ascontiguousarray(vecs, dtype=np.float32)
                if vecs.shape != (len(ids), dim):
                    raise StoreError(f"segment {name}: vectors of shape {vecs.shape}, expected ({len(ids)}, {dim}).")
                fh.write(encode(vecs, kind))
                ids_fh.write(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
                if ivf is not None:
                    assert ivf_fh is not None  # opened above when there is an index
                    ivf_fh.write(
                        np.ascontiguousarray(codes if codes is not None else ivf.encode(vecs), np.uint8).tobytes()
                    )
                lo = int(ids.min()) if lo is None else min(lo, int(ids.min()))
                hi = int(ids.max()) if hi is None else max(hi, int(ids.max()))
                n += len(ids)
                if with_bg:
                    if bg is None:
                        raise StoreError(f"segment {name}: a chunk has no background term")
                    bg_parts.append(np.asarray(bg, np.float64))
            fh.write(struct.pack("<Q", n))
            ids_fh.seek(0)
            while chunk := ids_fh.read(1 << 20):
                fh.write(chunk)
            fh.seek(0)
            fh.write(_header(dim, n, kind))
            fh.flush()
            os.fsync(fh.fileno())
            if with_bg:
                assert bg_fh is not None  # opened above when there is a background term
                np.save(bg_fh, np.concatenate(bg_parts) if bg_parts else np.zeros(0, np.float64))
                bg_fh.flush()
                os.fsync(bg_fh.fileno())
            if ivf is not None:
                assert ivf_fh is not None
                ivf_fh.flush()
                os.fsync(ivf_fh.fileno())
        crashpoints.pause("segment.written")
        if with_bg:
            os.replace(bg_tmp, bg_dest)
        if ivf is not None:
            os.replace(ivf_tmp, ivf_dest)
        os.replace(tmp, dest)
        fsync_dir(folder)
    except OSError as exc:
        for p in (tmp, bg_tmp, ivf_tmp):
            p.unlink(missing_ok=True)
        reason = exc.strerror or "disk full, file too large or not writable"
        raise StoreError(
            f"could not write the vector segment {dest} ({reason}); nothing of this commit was recorded: "
            "run `archive index` again once there is room."
        ) from exc
    finally:
        ids_tmp.unlink(missing_ok=True)
    return SegmentRef(
        segment_id,
        name,
        kind,
        n,
        lo if lo is not None else -1,
        hi if hi is not None else -1,
        bg_key,
        None if ivf is None else ivf.ivf_id,
    )


# -- merging -----------------------------------------------------------------------------------
def size_class(n: int) -> int:
    """0 for the smallest segments, one more for each MERGE_FANIN times larger."""
    c = 0
    limit = 512
    while n >= limit:
        c += 1
        limit *= MERGE_FANIN
    return c


def auto_merge_run(refs: Sequence[SegmentRef], live: dict[int, int]) -> list[SegmentRef]:
    """The segments an index run should merge now (empty: none): the newest run of MERGE_FANIN
    consecutive segments of one size class (by live rows), if the result stays under
    AUTO_MERGE_MAX_VECTORS; a segment whose rows are at least half dead counts as the smallest."""
    if len(refs) < MERGE_FANIN:
        return []
    classes = [
        size_class(live.get(r.segment_id, 0)) if live.get(r.segment_id, 0) * 2 >= r.n_vectors else 0 for r in refs
    ]
    for end in range(len(refs), MERGE_FANIN - 1, -1):
        run = refs[end - MERGE_FANIN : end]
        cls = classes[end - MERGE_FANIN : end]
        if len(set(cls)) == 1 and sum(live.get(r.segment_id, 0) for r in run) <= AUTO_MERGE_MAX_VECTORS:
            return list(run)
    return []


def optimize_runs(
    refs: Sequence[SegmentRef], live: dict[int, int], max_vectors: int = OPTIMIZE_MAX_VECTORS, rewrite: Any = None
) -> list[list[SegmentRef]]:
    """Runs of consecutive segments that `archive optimize` merges: greedy, each up to
    ``max_vectors`` live rows; runs of one segment only when it has dead rows to drop, or when
    ``rewrite(segment)`` says it must be written again (an fp32 segment becomes fp16)."""
    runs: list[list[SegmentRef]] = []
    cur: list[SegmentRef] = []
    total = 0
    for r in refs:
        n = live.get(r.segment_id, 0)
        if cur and total + n > max_vectors:
            runs.append(cur)
            cur, total = [], 0
        cur.append(r)
        total += n
    if cur:
        runs.append(cur)
    return [
        run
        for run in runs
        if len(run) > 1
        or run[0].n_vectors != live.get(run[0].segment_id, 0)
        or (rewrite is not None and rewrite(run[0]))
    ]


def orphan_files(store_dir: Path, refs: Sequence[SegmentRef], keep_files: Sequence[str | None] = ()) -> list[Path]:
    """Files in ``vectors/`` that no registered segment owns (left by a crash or a merge);
    damaged files moved aside (``*.damaged-*``) are kept for inspection; ``keep_files`` are the
    registered IVF index and its lists file (other ``ivf-*`` files are orphans too)."""
    folder = store_dir / SEGMENTS_DIR
    if not folder.is_dir():
        return []
    keep = {p.name for r in refs for p in r.files(store_dir)} | {f for f in keep_files if f}
    return sorted(p for p in folder.iterdir() if p.name not in keep and ".damaged-" not in p.name)


def verify_header(store_dir: Path, ref: SegmentRef, dim: int) -> str | None:
    """None when the segment's file is there and its layout matches the catalog (without reading
    its vectors); else what is wrong."""
    path = ref.path(store_dir)
    if not path.exists():
        return f"the vector segment {path} is missing"
    try:
        ids, vecs, _owner = vecfile.map_file(path)
    except StoreError as exc:
        return str(exc)
    if len(ids) != ref.n_vectors or (len(ids) and vecs.shape[1] != dim):
        return (
            f"the vector segment {path} holds {len(ids)} vectors of {vecs.shape[1]} dimensions; the catalog "
            f"says {ref.n_vectors} of {dim}"
        )
    return None


def damaged_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.damaged-{int(time.time())}")


def live_rows(con: Any, refs: Sequence[SegmentRef]) -> dict[int, int]:
    """Catalog frames in each segment's id range: its live rows (ranges never overlap). One small
    query per segment: a range join over the whole frames table took seconds at 10M frames."""
    return {
        r.segment_id: int(
            con.execute(
                "SELECT count(*) FROM frames WHERE frame_id BETWEEN ? AND ?", [r.min_frame_id, r.max_frame_id]
            ).fetchall()[0][0]
        )
        for r in refs
    }
