"""The archive on disk: ``catalog.duckdb`` (DuckDB) and ``frames.faiss`` (FAISS).

Layout of a store folder::

    catalog.duckdb   meta, videos, frames, failures  (the source of truth)
    frames.faiss     IndexIDMap2(IndexFlatIP): one L2-normalised vector per frame, id = frames.frame_id
    writer.lock      held (flock) by the one process that writes

Commit protocol, one batch of finished videos at a time (each video is all-or-nothing):

1. the new vectors are added to the in-memory FAISS index, written to ``frames.faiss.tmp``,
   fsynced and renamed over ``frames.faiss``;
2. one DuckDB transaction replaces the videos' rows and inserts their frames;
3. the old vectors of re-indexed videos are dropped (persisted by the next vector write).

Vectors are only ever removed after the catalog stops pointing at them, so a crash at any point
leaves, at worst, vectors whose ids the catalog does not know: harmless orphans that readers
ignore and the next writer drops. Every catalog frame always has its vector. (If the vector file
itself is lost or damaged, the videos it held are dropped from the catalog and re-embedded.)

DuckDB allows one read-write process or many read-only ones per file. The writer opens the catalog
only for the length of a commit, and readers open it read-only with a short retry, so search works
while an index run is going.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .encoder import ModelSpec
from .errors import ModelMismatch, StoreError, StoreLocked, StoreNotFound

CATALOG = "catalog.duckdb"
VECTORS = "frames.faiss"
THUMBS = "thumbs.bin"
LOCK = "writer.lock"
SCHEMA_VERSION = 3
_OPEN_RETRY_S = 15.0


def _migrate_1_to_2(con: Any) -> None:
    """v2 adds shots: each existing video becomes one content shot (re-index it for real shots)."""
    con.execute(
        "CREATE TABLE shots (shot_id BIGINT NOT NULL, video_id INTEGER NOT NULL, start_s DOUBLE NOT NULL, "
        "end_s DOUBLE NOT NULL, kind VARCHAR NOT NULL)"
    )
    con.execute("INSERT INTO shots SELECT video_id, video_id, 0.0, coalesce(duration_s, 0.0), 'content' FROM videos")
    con.execute("ALTER TABLE frames ADD COLUMN shot_id BIGINT")
    con.execute("UPDATE frames SET shot_id = video_id")


# Everything keyed by video_id, deleted together when a video is replaced or removed.
_PER_VIDEO_TABLES = ("frames", "shots", "segments", "video_labels", "videos")

def _migrate_2_to_3(con: Any) -> None:
    """v3 adds each frame's thumbnail (bytes in thumbs.bin); NULL until the video is indexed again."""
    con.execute("ALTER TABLE frames ADD COLUMN IF NOT EXISTS thumb_offset BIGINT")
    con.execute("ALTER TABLE frames ADD COLUMN IF NOT EXISTS thumb_bytes INTEGER")


# MIGRATIONS[v] turns a version-v catalog into version v + 1, inside one transaction.
MIGRATIONS: dict[int, Any] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS videos (
        video_id INTEGER PRIMARY KEY,
        path VARCHAR NOT NULL UNIQUE,   -- absolute path when indexed
        name VARCHAR,                   -- file name
        size_bytes BIGINT,
        mtime DOUBLE,                   -- seconds since the epoch
        fingerprint VARCHAR,            -- blake2b of size + head + tail of the file
        duration_s DOUBLE,              -- from the first frame's start to the last frame's end
        fps DOUBLE,                     -- native frame rate (average, as the container states it)
        width INTEGER,
        height INTEGER,
        codec VARCHAR,
        n_frames INTEGER,               -- sampled (and embedded) frames
        sample_fps DOUBLE,              -- samples per second asked for at index time
        decoded_frames INTEGER,
        note VARCHAR,                   -- partial decode and other remarks, NULL when clean
        indexed_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS frames (
        frame_id BIGINT NOT NULL,       -- = the vector's id in frames.faiss
        video_id INTEGER NOT NULL,
        ts_s DOUBLE NOT NULL,           -- presentation time of the sampled frame, seconds
        end_s DOUBLE NOT NULL,          -- this sample stands for [ts_s, end_s): next sample or video end
        shot_id BIGINT NOT NULL,        -- the shot it belongs to
        thumb_offset BIGINT,            -- its JPEG thumbnail in thumbs.bin (NULL: none yet)
        thumb_bytes INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS shots (
        shot_id BIGINT NOT NULL,
        video_id INTEGER NOT NULL,
        start_s DOUBLE NOT NULL,        -- first frame's presentation time
        end_s DOUBLE NOT NULL,          -- next shot's first frame, or the video's end
        kind VARCHAR NOT NULL           -- content, black or blank (blank shots never match)
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        label VARCHAR PRIMARY KEY,
        prompts VARCHAR[] NOT NULL,     -- texts whose template ensemble defines the label
        threshold DOUBLE,               -- NULL: the presence rule; else a plain cosine cut
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS segments (   -- materialised: each label's segments per video
        label VARCHAR NOT NULL,
        video_id INTEGER NOT NULL,
        start_s DOUBLE NOT NULL,
        end_s DOUBLE NOT NULL,
        peak_score DOUBLE NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS video_labels (   -- materialised: each label's answer per video
        video_id INTEGER NOT NULL,
        label VARCHAR NOT NULL,
        present BOOLEAN NOT NULL,
        first_seen_s DOUBLE,
        duration_s DOUBLE NOT NULL,
        n_segments INTEGER NOT NULL,
        best_s DOUBLE,
        score DOUBLE
    )""",
    """CREATE TABLE IF NOT EXISTS failures (
        path VARCHAR NOT NULL,
        error VARCHAR NOT NULL,
        seen_at TIMESTAMP NOT NULL
    )""",
]


@dataclass
class FrameRecord:
    ts_s: float
    end_s: float
    shot: int = 0  # index into VideoRecord.shots


@dataclass
class ShotRecord:
    start_s: float
    end_s: float
    kind: str = "content"


@dataclass
class VideoRecord:
    """One finished video ready to commit: its catalog row and its frames' vectors."""

    path: str
    size_bytes: int
    mtime: float
    fingerprint: str
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    sample_fps: float
    decoded_frames: int
    frames: list[FrameRecord]
    vectors: np.ndarray  # (len(frames), dim) float32, unit length
    note: str | None = None
    shots: list[ShotRecord] = field(default_factory=list)
    thumbs: list[bytes] | None = None  # a JPEG per frame (None: no thumbnails)


@dataclass
class StoreInfo:
    """Numbers about a store, as ``archive info`` shows them."""

    path: str
    videos: int
    frames: int
    seconds: float
    model: str
    pretrained: str
    dim: int
    bytes: int
    schema_version: int
    failures: int = 0
    vectors: int = 0


#: Frame tables at least this large are ranked from a bf16 copy of their vectors (half the memory
#: and scan time of fp32); the videos shown are then rescored exactly. Env ARCHIVE_BF16_SCAN_FRAMES.
BF16_SCAN_FRAMES = 50_000


@dataclass
class FrameTable:
    """The frames in scope, sorted by (video_id, ts_s), and where their vectors are.

    ``vectors`` is the whole vector matrix of the store, memory-mapped from ``frames.faiss``;
    ``row[i]`` is the row of frame ``i``. Only frames present in both the catalog and the vector
    file are listed.
    """

    frame_id: np.ndarray  # int64
    video_id: np.ndarray  # int64
    ts_s: np.ndarray  # float64
    end_s: np.ndarray  # float64
    shot_id: np.ndarray  # int64
    shot_len_s: np.ndarray  # float64, length of the frame's shot
    blank: np.ndarray  # bool, the frame's shot is black/blank/slate
    row: np.ndarray  # int64, into vectors
    vectors: np.ndarray  # (N, dim) float32
    thumb_offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: no thumbnail
    thumb_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    videos: dict[int, dict[str, Any]] = field(default_factory=dict)
    _keepalive: Any = None  # what owns the memory behind ``vectors`` (an mmap or a FAISS index)
    _bf16: Any = None  # torch bf16 (len(self), dim), in frame order; built on first approximate scan

    def __len__(self) -> int:
        return len(self.frame_id)

    @property
    def approximate(self) -> bool:
        """Whether :meth:`fast_scores` ranks from bf16 (large tables) rather than exactly."""
        limit = int(os.environ.get("ARCHIVE_BF16_SCAN_FRAMES") or BF16_SCAN_FRAMES)
        return len(self) >= max(limit, 1)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Exact cosine scores ``(n_frames, n_queries)`` of unit query vectors against the frames."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = self.row
        in_file_order = len(rows) == len(self.vectors) and np.array_equal(rows, np.arange(len(rows)))
        out = np.empty((len(rows), len(q)), np.float32)
        step = 65536
        for a in range(0, len(rows), step):
            chunk = self.vectors[a : a + step] if in_file_order else np.asarray(self.vectors[rows[a : a + step]])
            out[a : a + step] = _matvecs(chunk, q)
            self._release()
        return out

    def scores_at(self, idx: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Exact scores ``(len(idx), n_queries)`` of the frames at positions ``idx`` only."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        vecs = np.asarray(self.vectors[self.row[np.asarray(idx, np.int64)]], np.float32)
        self._release()
        return _matvecs(vecs, q)

    def _release(self) -> None:
        """Unmap the vector file's pages from this process (they stay in the OS page cache), so
        reading vectors does not grow resident memory: a query touches only a few of them.
        Only for large tables; smaller ones keep the pages for the next exact scan."""
        import mmap  # noqa: PLC0415

        if self.approximate and isinstance(self._keepalive, mmap.mmap) and hasattr(self._keepalive, "madvise"):
            self._keepalive.madvise(mmap.MADV_DONTNEED)

    def fast_scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores for ranking: exact for tables below ``BF16_SCAN_FRAMES``, else from a bf16 copy of
        the vectors (absolute error about 1e-3 at most), which is kept and reused."""
        if not self.approximate:
            return self.scores(queries)
        import torch  # noqa: PLC0415

        if self._bf16 is None:
            self._bf16 = self._to_bf16()
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(torch.bfloat16)
        out = np.empty((len(self), len(q)), np.float32)
        with torch.inference_mode():
            for j in range(len(q)):
                out[:, j] = torch.mv(self._bf16, q[j]).float().numpy()
        return out

    def _to_bf16(self) -> Any:
        """The vectors in frame order as bf16, converted in chunks; mapped file pages are handed
        back as it goes, so the fp32 file never sits in memory whole."""
        import torch  # noqa: PLC0415

        out = torch.empty((len(self), self.vectors.shape[1]), dtype=torch.bfloat16)
        step = 16384
        for a in range(0, len(self), step):
            b = min(a + step, len(self))
            out[a:b] = torch.from_numpy(np.ascontiguousarray(self.vectors[self.row[a:b]])).to(torch.bfloat16)
            self._release()
        return out


def _matvecs(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
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


def fingerprint(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """A fast content fingerprint: blake2b over the size, the first and the last MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(chunk))
        if size > 2 * chunk:
            fh.seek(-chunk, os.SEEK_END)
            h.update(fh.read(chunk))
    return h.hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _connect(path: Path, read_only: bool, retry_s: float = _OPEN_RETRY_S) -> Any:
    """Open the catalog, waiting out another process's short-lived lock."""
    import duckdb  # noqa: PLC0415

    deadline = time.monotonic() + retry_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _write_atomic_index(index: Any, dest: Path) -> None:
    import faiss  # noqa: PLC0415

    tmp = dest.with_name(dest.name + ".tmp")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except (RuntimeError, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "disk full, file too large or not writable"
        raise StoreError(
            f"could not write the vector file {dest} ({reason}); nothing of this commit was recorded: "
            "run `archive index` again once there is room."
        ) from exc
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_index(path: Path, mmap: bool) -> Any:
    import faiss  # noqa: PLC0415

    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise StoreError(
            f"the vector file {path} is damaged ({str(exc).splitlines()[0][:120]}). "
            "Delete it and run `archive index` again on the same folders to re-embed."
        ) from exc
    return index


def _index_arrays(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) views of an IndexIDMap2(IndexFlat) without copying."""
    import faiss  # noqa: PLC0415

    n = index.ntotal
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, index.d), np.float32)
    flat = faiss.downcast_index(index.index)
    vecs = faiss.rev_swig_ptr(flat.get_xb(), n * index.d).reshape(n, index.d)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return ids, vecs


def _map_vectors(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """(ids, vectors, owner) of a vector file, memory-mapped read-only rather than read.

    ``frames.faiss`` is FAISS's serialisation of IndexIDMap2(IndexFlat): two index headers, the
    float32 vectors, then the int64 ids. Mapping it costs nothing up front and only the pages a
    query touches are read (faiss.read_index copies the whole file into memory, 2 GB at 1M
    frames). A file of any other layout is read through FAISS instead.
    """
    import mmap  # noqa: PLC0415
    import struct  # noqa: PLC0415

    head = 4 + 33  # fourcc + d, ntotal, 2 dummies, is_trained, metric_type
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(2 * head + 8)
            if len(raw) == 2 * head + 8 and raw[:4] in (b"IxM2", b"IxMp") and raw[head : head + 4] in (b"IxFI", b"IxF2"):
                d, n, _, _, _, metric = struct.unpack("<iqqqBi", raw[4:head])
                d2, n2, _, _, _, _ = struct.unpack("<iqqqBi", raw[head + 4 : 2 * head])
                (count,) = struct.unpack("<Q", raw[2 * head :])
                vec_at = 2 * head + 8
                ids_at = vec_at + 4 * count + 8
                if (d, n) == (d2, n2) and metric in (0, 1) and count == n * d and size == ids_at + 8 * n and n > 0:
                    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                    (nids,) = struct.unpack("<Q", mm[ids_at - 8 : ids_at])
                    if nids == n:
                        vecs = np.frombuffer(mm, np.float32, count=n * d, offset=vec_at).reshape(n, d)
                        ids = np.frombuffer(mm, np.int64, count=n, offset=ids_at)
                        return ids, vecs, mm
                    mm.close()
    except OSError as exc:
        raise StoreError(f"cannot read the vector file {path}: {exc.strerror or exc}") from exc
    index = _read_index(path, mmap=True)
    ids, vecs = _index_arrays(index)
    return ids, vecs, index


def read_meta(store_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The ``meta`` table of an existing store (model, pretrained, dim, schema_version).

    Works on catalogs of any schema version (the writer reads it before migrating).

    Raises:
        StoreNotFound: no catalog in that folder.
    """
    con = _connect(_catalog_path(store_dir), read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    finally:
        con.close()


def store_spec(store_dir: str | os.PathLike[str]) -> ModelSpec:
    """Which model made the store's vectors."""
    meta = read_meta(store_dir)
    return ModelSpec(meta["model"], meta["pretrained"])


def _catalog_path(store_dir: str | os.PathLike[str]) -> Path:
    catalog = Path(store_dir) / CATALOG
    if not catalog.is_file():
        raise StoreNotFound(
            f"no archive at {Path(store_dir).resolve()}: run `archive index PATH` first, or pass --store DIR."
        )
    return catalog


@contextlib.contextmanager
def read_connection(store_dir: str | os.PathLike[str]) -> Iterator[Any]:
    """A read-only DuckDB connection to the catalog (works while an index run is going).

    Raises:
        StoreNotFound: no archive in that folder.
        StoreError: the catalog's schema is older or newer than this program's.
    """
    con = _connect(_catalog_path(store_dir), read_only=True)
    try:
        _require_schema(con, store_dir)
        yield con
    finally:
        con.close()


def _require_schema(con: Any, store_dir: str | os.PathLike[str]) -> None:
    row = next(iter(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()), None)
    version = int(row[0]) if row else 0
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"the store {store_dir} has schema version {version}, older than this program's ({SCHEMA_VERSION}): "
            "run `archive index` once on any folder to upgrade it (nothing is re-embedded)."
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {store_dir} has schema version {version}, newer than this program knows "
            f"({SCHEMA_VERSION}): upgrade the archive tool."
        )


def load_frames(store_dir: str | os.PathLike[str], video_ids: Sequence[int] | None = None) -> FrameTable:
    """Everything a query needs, without opening any video: frames, their vectors, video rows.

    Args:
        store_dir: the store folder.
        video_ids: limit to these videos (None: all).

    Raises:
        StoreNotFound: no archive there.
        StoreError: the vector file is missing or damaged while the catalog lists frames.
    """
    with read_connection(store_dir) as con:
        where, params = "", []
        if video_ids is not None:
            if not video_ids:
                video_ids = [-1]
            where = f" WHERE video_id IN ({', '.join('?' for _ in video_ids)})"
            params = list(video_ids)
        fwhere = where.replace("video_id", "f.video_id")
        cols = con.execute(
            "SELECT f.frame_id, f.video_id, f.ts_s, f.end_s, f.shot_id, s.end_s - s.start_s AS shot_len_s, "
            "s.kind <> 'content' AS blank, coalesce(f.thumb_offset, -1) AS thumb_offset, "
            f"coalesce(f.thumb_bytes, 0) AS thumb_bytes FROM frames f JOIN shots s USING (shot_id){fwhere} "
            "ORDER BY f.video_id, f.ts_s",
            params,
        ).fetchnumpy()
        vrows = con.execute(f"SELECT * FROM videos{where}", params)
        names = [d[0] for d in vrows.description]
        videos = {int(r[0]): dict(zip(names, r)) for r in vrows.fetchall()}
        dim = int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])
    frame_id = np.asarray(cols["frame_id"], np.int64)
    path = Path(store_dir) / VECTORS
    if not path.exists():
        if len(frame_id):
            raise StoreError(
                f"the vector file {path} is missing. Run `archive index` again on the same folders "
                "to re-embed what it held."
            )
        ids, vecs, index = np.zeros(0, np.int64), np.zeros((0, dim), np.float32), None
    else:
        ids, vecs, index = _map_vectors(path)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], frame_id)
    pos_c = np.minimum(pos, max(len(ids) - 1, 0))
    ok = (pos < len(ids)) & (ids[order][pos_c] == frame_id) if len(ids) else np.zeros(len(frame_id), bool)
    row = order[pos_c][ok] if len(ids) else np.zeros(0, np.int64)
    return FrameTable(
        frame_id=frame_id[ok],
        video_id=np.asarray(cols["video_id"], np.int64)[ok],
        ts_s=np.asarray(cols["ts_s"], np.float64)[ok],
        end_s=np.asarray(cols["end_s"], np.float64)[ok],
        shot_id=np.asarray(cols["shot_id"], np.int64)[ok],
        shot_len_s=np.asarray(cols["shot_len_s"], np.float64)[ok],
        blank=np.asarray(cols["blank"], bool)[ok],
        row=row.astype(np.int64),
        thumb_offset=np.asarray(cols["thumb_offset"], np.int64)[ok],
        thumb_bytes=np.asarray(cols["thumb_bytes"], np.int64)[ok],
        vectors=vecs,
        videos=videos,
        _keepalive=index,
    )


def store_info(store_dir: str | os.PathLike[str]) -> StoreInfo:
    """Counts, model and size on disk of a store.

    Raises:
        StoreNotFound: no archive there.
    """
    with read_connection(store_dir) as con:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        videos, seconds = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) FROM videos").fetchall()[0]
        frames = con.execute("SELECT count(*) FROM frames").fetchall()[0][0]
        failures = con.execute("SELECT count(DISTINCT path) FROM failures").fetchall()[0][0]
    root = Path(store_dir)
    size = 0
    for p in root.iterdir():  # an index run may rename or delete files meanwhile
        with contextlib.suppress(OSError):
            if p.is_file():
                size += p.stat().st_size
    vectors = 0
    if (root / VECTORS).exists():
        vectors = len(_map_vectors(root / VECTORS)[0])
    return StoreInfo(
        path=str(root.resolve()),
        videos=int(videos),
        frames=int(frames),
        seconds=round(float(seconds), 3),
        model=meta["model"],
        pretrained=meta["pretrained"],
        dim=int(meta["dim"]),
        bytes=int(size),
        schema_version=int(meta["schema_version"]),
        failures=int(failures),
        vectors=int(vectors),
    )


def read_labels(store_dir: str | os.PathLike[str]) -> list[tuple[str, list[str], float | None]]:
    """Saved labels: (name, prompts, threshold or None), sorted by name."""
    with read_connection(store_dir) as con:
        rows = con.execute("SELECT label, prompts, threshold FROM labels ORDER BY label").fetchall()
    return [(r[0], list(r[1]), r[2]) for r in rows]


def known_files(store_dir: str | os.PathLike[str]) -> dict[str, tuple[int, float, str, float, bool]]:
    """path -> (size_bytes, mtime, fingerprint, sample_fps, has_thumbnails) of every indexed video
    ({} if no store)."""
    if not (Path(store_dir) / CATALOG).is_file():
        return {}
    with read_connection(store_dir) as con:
        rows = con.execute(
            "SELECT v.path, v.size_bytes, v.mtime, v.fingerprint, v.sample_fps, "
            "bool_and(f.thumb_bytes IS NOT NULL) IS NOT FALSE "
            "FROM videos v LEFT JOIN frames f USING (video_id) GROUP BY ALL"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4], bool(r[5])) for r in rows}


def read_thumbnail(store_dir: str | os.PathLike[str], offset: int, length: int) -> bytes:
    """One frame's JPEG thumbnail from thumbs.bin.

    Raises:
        StoreError: the thumbnail file is missing or shorter than the catalog says.
    """
    path = Path(store_dir) / THUMBS
    try:
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), length, offset)
    except OSError as exc:
        raise StoreError(f"cannot read thumbnails from {path}: {exc.strerror or exc}") from exc
    if len(data) != length:
        raise StoreError(f"{path} is shorter than the catalog says: run `archive index` again on the same folders.")
    return data


class Writer:
    """The single writer of a store. Use as a context manager; it holds ``writer.lock``.

    Raises:
        StoreLocked: another process is writing.
        ModelMismatch: the store was made with another model or weights.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(store_dir)
        self.spec: ModelSpec | None = None
        self.dim = 0
        self._lock_fh: Any = None
        self._index: Any = None
        self._next_video_id = 0
        self._next_frame_id = 0
        self._next_shot_id = 0
        self.repaired: list[str] = []  # videos dropped because their vectors were missing
        self.damaged_file: str | None = None  # where an unreadable vector file was moved
        self._dirty = False  # in-memory vectors differ from the file (replaced vectors dropped)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "Writer":
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self) -> None:
        """Become the store's one writer (creating the folder if needed).

        Raises:
            StoreLocked: another process holds the lock.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.dir}: {exc.strerror}") from exc
        self._take_lock()

    def attach(self, spec: ModelSpec, dim: int) -> None:
        """Create or open the catalog and vectors for this model, and reconcile the two.

        Raises:
            ModelMismatch: the store was made with another model or weights.
        """
        self.spec, self.dim = spec, dim
        with self._catalog() as con:
            self._init_schema(con)
            self._check_model(con)
        self._load_and_reconcile()

    def close(self) -> None:
        try:
            if self._index is not None and self._dirty:
                with contextlib.suppress(StoreError, OSError):
                    _write_atomic_index(self._index, self.dir / VECTORS)  # drop replaced vectors now
        finally:
            self._dirty = False
            self._index = None
            if self._lock_fh is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
                self._lock_fh.close()
                self._lock_fh = None

    def _take_lock(self) -> None:
        path = self.dir / LOCK
        try:
            fh = open(path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot write to the store {self.dir.resolve()}: {exc.strerror}") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreLocked(
                f"the store {self.dir.resolve()} is being written by {holder}; wait for it to finish "
                "(search, sql and info work meanwhile)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    @contextlib.contextmanager
    def _catalog(self) -> Iterator[Any]:
        con = _connect(self.dir / CATALOG, read_only=False)
        try:
            yield con
        finally:
            con.close()

    def _init_schema(self, con: Any) -> None:
        assert self.spec is not None
        self._migrate(con)
        for stmt in _SCHEMA:
            con.execute(stmt)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            rows = [
                ("schema_version", str(SCHEMA_VERSION)),
                ("model", self.spec.name),
                ("pretrained", self.spec.pretrained),
                ("dim", str(self.dim)),
                ("created_at", _now().isoformat(timespec="seconds")),
            ]
            con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        elif int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.dir} has schema version {meta['schema_version']}, newer than this "
                f"program knows ({SCHEMA_VERSION}): upgrade the archive tool."
            )

    def _migrate(self, con: Any) -> None:
        """Bring an older catalog up to SCHEMA_VERSION, one numbered migration at a time."""
        has_meta = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        if not has_meta:
            return
        row = next(iter(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()), None)
        version = int(row[0]) if row else SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            step = MIGRATIONS[version]
            con.execute("BEGIN TRANSACTION")
            try:
                step(con)
                con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version + 1)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            version += 1

    def _check_model(self, con: Any) -> None:
        assert self.spec is not None
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if (meta["model"], meta["pretrained"]) != (self.spec.name, self.spec.pretrained):
            raise ModelMismatch(
                f"the store {self.dir} was built with {meta['model']} ({meta['pretrained']}), not "
                f"{self.spec.name} ({self.spec.pretrained}); use the same model, or another --store."
            )

    def _load_and_reconcile(self) -> None:
        """Load the vectors and make them agree with the catalog (see the module docstring)."""
        import faiss  # noqa: PLC0415

        path = self.dir / VECTORS
        self._index = None
        if path.exists():
            try:
                self._index = _read_index(path, mmap=False)
            except StoreError:
                # Unreadable: keep it aside for inspection and start afresh; the videos whose vectors
                # it held are dropped below and re-embedded when their files are indexed again.
                aside = path.with_name(f"{VECTORS}.damaged-{int(time.time())}")
                os.replace(path, aside)
                self.damaged_file = str(aside)
            else:
                if self._index.d != self.dim:
                    raise ModelMismatch(f"{path} holds {self._index.d}-d vectors, the model makes {self.dim}-d ones.")
        if self._index is None:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        ids, _ = _index_arrays(self._index)
        with self._catalog() as con:
            cat_ids = con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"]
            cat_ids = np.asarray(cat_ids, np.int64)
            orphans = np.setdiff1d(ids, cat_ids, assume_unique=False)
            missing = np.setdiff1d(cat_ids, ids, assume_unique=False)
            if len(missing):
                con.register("missing_ids", {"frame_id": missing.astype(np.int64)})
                broken = con.execute(
                    "SELECT DISTINCT v.video_id, v.path FROM videos v JOIN frames f USING (video_id) "
                    "JOIN missing_ids m USING (frame_id)"
                ).fetchall()
                self._delete_videos(con, [vid for vid, _ in broken])
                self.repaired = [p for _, p in broken]
                stale = con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"]
                orphans = np.setdiff1d(ids, np.asarray(stale, np.int64))
            if len(orphans):
                self._index.remove_ids(orphans.astype(np.int64))
                _write_atomic_index(self._index, path)
            self._next_video_id = int(con.execute("SELECT coalesce(max(video_id), -1) + 1 FROM videos").fetchall()[0][0])
            self._next_shot_id = int(con.execute("SELECT coalesce(max(shot_id), -1) + 1 FROM shots").fetchall()[0][0])
        ids, _ = _index_arrays(self._index)
        self._next_frame_id = int(ids.max()) + 1 if len(ids) else 0

    @staticmethod
    def _delete_videos(con: Any, video_ids: Sequence[int]) -> None:
        if not video_ids:
            return
        con.execute("BEGIN TRANSACTION")
        for vid in video_ids:
            for table in _PER_VIDEO_TABLES:
                con.execute(f"DELETE FROM {table} WHERE video_id = ?", [vid])
        con.execute("COMMIT")

    # -- reads the writer needs -----------------------------------------------------------------
    def touch(self, path: str, mtime: float) -> None:
        """Record a new mtime for a file whose content fingerprint did not change."""
        with self._catalog() as con:
            con.execute("UPDATE videos SET mtime = ? WHERE path = ?", [mtime, path])

    def remove_videos(self, paths: Sequence[str]) -> int:
        """Remove videos (rows, shots, label rows, then vectors)."""
        if not paths:
            return 0
        with self._catalog() as con:
            ph = ", ".join("?" for _ in paths)
            vids = [r[0] for r in con.execute(f"SELECT video_id FROM videos WHERE path IN ({ph})", list(paths)).fetchall()]
            if not vids:
                return 0
            vph = ", ".join("?" for _ in vids)
            fids = np.asarray(con.execute(f"SELECT frame_id FROM frames WHERE video_id IN ({vph})", vids)
                              .fetchnumpy()["frame_id"], np.int64)
            con.execute("BEGIN TRANSACTION")
            for table in _PER_VIDEO_TABLES:
                con.execute(f"DELETE FROM {table} WHERE video_id IN ({vph})", vids)
            con.execute("COMMIT")
        if len(fids):  # after the catalog, as in a commit: a crash leaves only orphans
            self._index.remove_ids(fids)
            _write_atomic_index(self._index, self.dir / VECTORS)
        return len(vids)

    # -- labels ---------------------------------------------------------------------------------
    def save_label(self, name: str, prompts: Sequence[str], threshold: float | None) -> None:
        """Add or replace a label."""
        with self._catalog() as con:
            con.execute("DELETE FROM labels WHERE label = ?", [name])
            con.execute("INSERT INTO labels VALUES (?, ?, ?, ?)", [name, list(prompts), threshold, _now()])

    def remove_label(self, name: str) -> bool:
        """Remove a label and its results; False when there was none."""
        with self._catalog() as con:
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM labels WHERE label = ?", [name])
            con.execute("DELETE FROM segments WHERE label = ?", [name])
            con.execute("DELETE FROM video_labels WHERE label = ?", [name])
            con.execute("COMMIT")
        return bool(n)

    def replace_label_results(self, segment_rows: Sequence[tuple[Any, ...]], video_rows: Sequence[tuple[Any, ...]]) -> None:
        """Swap in freshly computed ``segments`` and ``video_labels`` in one transaction."""
        with self._catalog() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM segments")
                con.execute("DELETE FROM video_labels")
                if segment_rows:
                    cols = list(zip(*segment_rows))
                    con.register("_seg", {
                        "label": np.array(cols[0], dtype=object), "video_id": np.array(cols[1], np.int32),
                        "start_s": np.array(cols[2], np.float64), "end_s": np.array(cols[3], np.float64),
                        "peak_score": np.array(cols[4], np.float64),
                    })
                    con.execute("INSERT INTO segments SELECT * FROM _seg")
                    con.unregister("_seg")
                if video_rows:
                    cols = list(zip(*video_rows))
                    con.register("_vl", {
                        "video_id": np.array(cols[0], np.int32), "label": np.array(cols[1], dtype=object),
                        "present": np.array(cols[2], bool),
                        "first_seen_s": np.array([np.nan if x is None else x for x in cols[3]], np.float64),
                        "duration_s": np.array(cols[4], np.float64), "n_segments": np.array(cols[5], np.int32),
                        "best_s": np.array([np.nan if x is None else x for x in cols[6]], np.float64),
                        "score": np.array(cols[7], np.float64),
                    })
                    con.execute(
                        "INSERT INTO video_labels SELECT video_id, label, present, "
                        "CASE WHEN isnan(first_seen_s) THEN NULL ELSE first_seen_s END, duration_s, n_segments, "
                        "CASE WHEN isnan(best_s) THEN NULL ELSE best_s END, score FROM _vl"
                    )
                    con.unregister("_vl")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def set_thumbnails(self, frame_ids: Sequence[int], jpegs: Sequence[bytes]) -> None:
        """Store thumbnails for frames already in the catalog (appended, then pointed at)."""
        if not frame_ids:
            return
        (offs, lens), = self._append_thumbs([(len(frame_ids), jpegs)])
        with self._catalog() as con:
            con.register("_thumbs", {"frame_id": np.asarray(frame_ids, np.int64), "o": np.asarray(offs, np.int64),
                                     "b": np.asarray(lens, np.int32)})
            try:  # an empty picture: tried, none found (thumb_bytes = 0, no offset)
                con.execute("UPDATE frames SET thumb_offset = CASE WHEN t.b > 0 THEN t.o END, thumb_bytes = t.b "
                            "FROM _thumbs t WHERE frames.frame_id = t.frame_id")
            finally:
                con.unregister("_thumbs")

    # -- the commit -----------------------------------------------------------------------------
    def _append_thumbs(
        self, groups: Sequence[tuple[int, Sequence[bytes] | None]]
    ) -> list[tuple[list[int | None], list[int | None]]]:
        """Append groups of thumbnails (a video's frames: ``(n_frames, jpegs or None)``) to
        thumbs.bin, fsynced; per group, each frame's (offsets, lengths), None where it has none."""
        out: list[tuple[list[int | None], list[int | None]]] = []
        if not any(thumbs for _, thumbs in groups):
            return [([None] * n, [None] * n) for n, _ in groups]
        path = self.dir / THUMBS
        new_file = not path.exists()
        try:
            with open(path, "ab") as fh:
                pos = fh.seek(0, os.SEEK_END)
                for n, thumbs in groups:
                    if not thumbs or len(thumbs) != n:
                        out.append(([None] * n, [None] * n))
                        continue
                    offs, lens = [], []
                    for jpeg in thumbs:
                        fh.write(jpeg)
                        offs.append(pos)
                        lens.append(len(jpeg))
                        pos += len(jpeg)
                    out.append((offs, lens))
                fh.flush()
                os.fsync(fh.fileno())
            if new_file:  # the file's name must be on disk before a catalog row points into it
                fd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write thumbnails to {path}: {exc.strerror or exc}") from exc
        return out

    def commit(self, records: Sequence[VideoRecord], failures: Sequence[tuple[str, str]] = ()) -> None:
        """Commit finished videos (each all-or-nothing) and failure rows. Re-indexed paths replace
        their old rows and vectors."""
        if not records and not failures:
            return
        paths = [r.path for r in records]
        with self._catalog() as con:
            old_ids: list[int] = []
            old_frames = np.zeros(0, np.int64)
            if paths:
                placeholders = ", ".join("?" for _ in paths)
                old_ids = [
                    r[0] for r in con.execute(f"SELECT video_id FROM videos WHERE path IN ({placeholders})", paths).fetchall()
                ]
                if old_ids:
                    ph = ", ".join("?" for _ in old_ids)
                    got = con.execute(f"SELECT frame_id FROM frames WHERE video_id IN ({ph})", old_ids).fetchnumpy()
                    old_frames = np.asarray(got["frame_id"], np.int64)

            # 0. thumbnails: appended to thumbs.bin (bytes no catalog row points at are harmless).
            thumb_at = self._append_thumbs([(len(r.frames), r.thumbs) for r in records])

            # 1. vectors: new ones in, replaced ones out, file swapped atomically.
            frame_rows: list[tuple[int, int, float, float, int, int | None, int | None]] = []
            shot_rows: list[tuple[int, int, float, float, str]] = []
            video_rows: list[tuple[Any, ...]] = []
            if records:
                all_vecs = []
                all_ids = []
                for rec, (t_off, t_len) in zip(records, thumb_at):
                    vid = self._next_video_id
                    self._next_video_id += 1
                    n = len(rec.frames)
                    ids = np.arange(self._next_frame_id, self._next_frame_id + n, dtype=np.int64)
                    self._next_frame_id += n
                    all_ids.append(ids)
                    all_vecs.append(np.ascontiguousarray(rec.vectors, dtype=np.float32))
                    shots = rec.shots or [ShotRecord(0.0, rec.duration_s)]
                    first_shot = self._next_shot_id
                    self._next_shot_id += len(shots)
                    shot_rows.extend(
                        (first_shot + k, vid, s.start_s, s.end_s, s.kind) for k, s in enumerate(shots)
                    )
                    frame_rows.extend(
                        (int(i), vid, f.ts_s, f.end_s, first_shot + f.shot, o, b)
                        for i, f, o, b in zip(ids, rec.frames, t_off, t_len)
                    )
                    video_rows.append((
                        vid, rec.path, Path(rec.path).name, rec.size_bytes, rec.mtime, rec.fingerprint,
                        rec.duration_s, rec.fps, rec.width, rec.height, rec.codec, n, rec.sample_fps,
                        rec.decoded_frames, rec.note, _now(),
                    ))
                vecs = np.concatenate(all_vecs) if all_vecs else np.zeros((0, self.dim), np.float32)
                if len(vecs):
                    self._index.add_with_ids(vecs, np.concatenate(all_ids))
                _write_atomic_index(self._index, self.dir / VECTORS)
                self._dirty = False

            # 2. catalog, in one transaction.
            con.execute("BEGIN TRANSACTION")
            try:
                for vid in old_ids:
                    for table in _PER_VIDEO_TABLES:
                        con.execute(f"DELETE FROM {table} WHERE video_id = ?", [vid])
                if video_rows:
                    con.executemany(f"INSERT INTO videos VALUES ({', '.join('?' * 16)})", video_rows)
                if frame_rows:
                    _insert_frames(con, frame_rows, shot_rows)
                if paths:
                    con.execute(f"DELETE FROM failures WHERE path IN ({', '.join('?' for _ in paths)})", paths)
                if failures:
                    now = _now()
                    con.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(p, e, now) for p, e in failures])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        # 3. the replaced videos' old vectors are now unreferenced: drop them from memory; the
        # next vector write persists that (until then they are harmless orphans).
        if len(old_frames):
            self._index.remove_ids(old_frames)
            self._dirty = True


def _insert_frames(
    con: Any, frames: list[tuple[int, int, float, float, int, int | None, int | None]],
    shots: list[tuple[int, int, float, float, str]],
) -> None:
    """Bulk insert from numpy columns (DuckDB's executemany is slow: ~1.5k rows/s)."""
    fcols = {
        "frame_id": np.array([r[0] for r in frames], dtype=np.int64),
        "video_id": np.array([r[1] for r in frames], dtype=np.int32),
        "ts_s": np.array([r[2] for r in frames], dtype=np.float64),
        "end_s": np.array([r[3] for r in frames], dtype=np.float64),
        "shot_id": np.array([r[4] for r in frames], dtype=np.int64),
        "thumb_offset": np.array([-1 if r[5] is None else r[5] for r in frames], dtype=np.int64),
        "thumb_bytes": np.array([0 if r[6] is None else r[6] for r in frames], dtype=np.int32),
    }
    scols = {
        "shot_id": np.array([r[0] for r in shots], dtype=np.int64),
        "video_id": np.array([r[1] for r in shots], dtype=np.int32),
        "start_s": np.array([r[2] for r in shots], dtype=np.float64),
        "end_s": np.array([r[3] for r in shots], dtype=np.float64),
        "kind": np.array([r[4] for r in shots], dtype=object),
    }
    con.register("_new_frames", fcols)
    con.register("_new_shots", scols)
    try:
        con.execute(
            "INSERT INTO frames SELECT frame_id, video_id, ts_s, end_s, shot_id, "
            "CASE WHEN thumb_bytes > 0 THEN thumb_offset END, CASE WHEN thumb_bytes > 0 THEN thumb_bytes END "
            "FROM _new_frames"
        )
        con.execute("INSERT INTO shots SELECT shot_id, video_id, start_s, end_s, kind FROM _new_shots")
    finally:
        con.unregister("_new_frames")
        con.unregister("_new_shots")
