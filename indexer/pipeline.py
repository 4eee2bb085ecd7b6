"""decode -> embed -> commit: index files into a store.

"Work on one video" (:func:`embed_video`, decode + embed -> a :class:`~indexer.store.VideoRecord`)
is kept apart from "commit a result" (:class:`~indexer.store.Writer`, the single writer), so the
first can move to worker processes without touching the second.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .decode import DecodeStats, VideoInfo, probe, sample_frames
from .discover import discover
from .encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, Encoder, ModelSpec, resolve_spec
from .errors import ArchiveError, ModelMismatch, VideoOpenError
from .store import FrameRecord, ShotRecord, VideoRecord, Writer, fingerprint, known_files, read_connection, read_meta

DEFAULT_FPS = 2.0
DEFAULT_BATCH = 32
COMMIT_INTERVAL_S = 5.0  # at most this much finished work waits for its commit (env ARCHIVE_COMMIT_INTERVAL_S)


@dataclass
class Progress:
    """One progress event. ``kind`` is one of: ``plan`` (``total`` files to embed, ``seconds``
    of video), ``model`` (loading weights), ``start`` (a file begins), ``frames`` (``done``
    video seconds of the current file so far), ``done``, ``skip``, ``fail`` (``message``),
    ``partial`` (indexed, but not all of it decoded: ``message``)."""

    kind: str
    path: str = ""
    total: int = 0
    seconds: float = 0.0
    done: float = 0.0
    frames: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class IndexReport:
    """What an index run did. Times in seconds."""

    store: str
    model: str
    pretrained: str
    files_seen: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    partial: int = 0  # indexed, but only partly decodable (also in failures)
    frames: int = 0
    video_seconds: float = 0.0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # indexed before, gone from disk now
    indexed_paths: list[str] = field(default_factory=list)
    stages: StageTimes = field(default_factory=lambda: StageTimes())
    repaired: list[str] = field(default_factory=list)  # lost their vectors; re-embedded when indexed again
    damaged_file: str | None = None  # an unreadable vector file, moved aside
    thumbnails_added: int = 0  # frames of already indexed videos that got their thumbnail this run

    @property
    def ok(self) -> bool:
        """True when every file was indexed whole."""
        return self.failed == 0 and self.partial == 0


def _noop(_: Progress) -> None:
    return None


@dataclass
class StageTimes:
    """Seconds spent per indexing stage (decode includes shot detection and scaling)."""

    decode: float = 0.0
    preprocess: float = 0.0
    embed: float = 0.0
    write: float = 0.0
    frames: int = 0
    reused: int = 0  # near-identical samples that reused the previous embedding

    def add(self, other: "StageTimes") -> None:
        for k in ("decode", "preprocess", "embed", "write", "frames", "reused"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


THUMB_LONG_SIDE = 256  # stored thumbnails: 256x144 for 16:9, about 6 KB each (README: Store)
THUMB_QUALITY = 80


def jpeg_thumbnail(rgb: np.ndarray, long_side: int = THUMB_LONG_SIDE, quality: int = THUMB_QUALITY) -> bytes:
    """A sampled frame (RGB, upright) as a small JPEG for the search page."""
    import cv2  # noqa: PLC0415

    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


# A sample whose thumbnail differs from the previous sample of the same shot by less than this
# (mean absolute difference, 0-255) reuses its embedding: held frames, static packshots, logos.
NEAR_DUPLICATE = 1.0
_END = object()


class _Decoder:
    """Decode, sample and preprocess one video in a background thread, one or two batches ahead
    of the model. Started early (while the previous video's last batches are embedded), it keeps
    the decoder busy across video boundaries."""

    def __init__(self, path: str, encoder: Encoder, fps: float, batch_size: int, threads: int = 0) -> None:
        import queue  # noqa: PLC0415

        self.path, self.encoder, self.fps, self.batch_size = path, encoder, fps, batch_size
        self.threads = threads
        self.stats = DecodeStats()
        self.tm = StageTimes()
        self.times: list[float] = []
        self.shot_of: list[int] = []
        self.owner: list[int] = []  # per sample: index into the embedded vectors
        self.thumbs: list[bytes] = []  # per sample: its JPEG thumbnail
        self.q: "queue.Queue[Any]" = queue.Queue(maxsize=2)
        self.on_done: Callable[[], None] | None = None  # called in the thread when decoding ends
        import threading  # noqa: PLC0415

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="decode", daemon=True)

    def start(self, on_done: Callable[[], None] | None = None) -> "_Decoder":
        self.on_done = on_done
        self.thread.start()
        return self

    def _produce(self) -> None:
        import torch  # noqa: PLC0415

        batch: list[torch.Tensor] = []
        prev_thumb: np.ndarray | None = None
        prev_shot = -1
        n_embedded = 0
        tm, times = self.tm, self.times
        try:
            t0 = time.perf_counter()
            for frame in sample_frames(self.path, self.fps, short_side=self.encoder.image_size, stats=self.stats,
                                       threads=self.threads):
                t1 = time.perf_counter()
                tm.decode += t1 - t0
                times.append(frame.ts_s)
                self.shot_of.append(frame.shot)
                self.thumbs.append(jpeg_thumbnail(frame.rgb))
                thumb = frame.thumb.astype(np.int16) if frame.thumb is not None else None
                same = (
                    thumb is not None and prev_thumb is not None and frame.shot == prev_shot
                    and float(np.mean(np.abs(thumb - prev_thumb))) < NEAR_DUPLICATE
                )
                if same:
                    self.owner.append(n_embedded - 1)
                    tm.reused += 1
                else:
                    batch.append(self.encoder.preprocess_array(frame.rgb))
                    self.owner.append(n_embedded)
                    n_embedded += 1
                    prev_thumb = thumb
                prev_shot = frame.shot
                t0 = time.perf_counter()
                tm.preprocess += t0 - t1
                if len(batch) >= self.batch_size:
                    self.q.put((torch.stack(batch), frame.ts_s, len(times)))
                    batch = []
                if self.stop.is_set():
                    return
            if batch:
                self.q.put((torch.stack(batch), times[-1], len(times)))
            self.q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self.q.put(exc)
        finally:
            if self.on_done is not None and not self.stop.is_set():
                self.on_done()

    def close(self) -> None:
        """Stop the thread (after the last batch, or on an error) and wait for it."""
        import queue  # noqa: PLC0415

        self.stop.set()
        while self.thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self.q.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)


def embed_video(
    path: str,
    encoder: Encoder,
    fps: float = DEFAULT_FPS,
    batch_size: int = DEFAULT_BATCH,
    progress: ProgressFn = _noop,
    times_out: StageTimes | None = None,
    info: VideoInfo | None = None,
    decoder: _Decoder | None = None,
) -> VideoRecord:
    """Decode one video, sample ``fps`` frames per second of video time, embed them.

    Decoding and preprocessing run in a background thread, one batch ahead of the model (the
    caller may hand in a decoder it started earlier). A sample nearly identical to the previous
    one of its shot reuses that embedding (its frame row is still stored, so answers do not change).

    Returns:
        A record ready for :meth:`Writer.commit`: frame times, vectors and the file's metadata.

    Raises:
        VideoOpenError: the file is not a decodable video.
    """
    dec = decoder
    try:
        st = os.stat(path)
        fp = fingerprint(path)
        info = info or probe(path)  # the planning step has usually read the header already
        if dec is None:
            dec = _Decoder(path, encoder, fps, batch_size).start()
        chunks: list[np.ndarray] = []
        while True:
            item = dec.q.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            batch_t, ts, n = item
            t0 = time.perf_counter()
            chunks.append(encoder.encode_batch(batch_t))
            dec.tm.embed += time.perf_counter() - t0
            progress(Progress("frames", path=path, done=ts, frames=n))
    finally:
        if dec is not None:
            dec.close()
    stats, tm, times, shot_of, owner = dec.stats, dec.tm, dec.times, dec.shot_of, dec.owner
    embedded = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), np.float32)
    vectors = embedded[np.asarray(owner, np.int64)] if owner else np.zeros((0, encoder.dim), np.float32)
    tm.frames = len(times)
    if times_out is not None:
        times_out.add(tm)
    duration = max(stats.duration_s, times[-1] if times else 0.0)
    ends = times[1:] + [duration]
    problems = list(stats.notes)
    if stats.error:
        problems.insert(0, stats.error)
    problem = None
    if problems:
        problem = f"partly decoded: kept {len(times)} frames up to {duration:.2f} s; " + "; ".join(problems)
    return VideoRecord(
        path=path,
        size_bytes=st.st_size,
        mtime=st.st_mtime,
        fingerprint=fp,
        duration_s=duration,
        fps=info.fps,
        width=info.height if stats.rotation % 180 else info.width,  # as displayed
        height=info.width if stats.rotation % 180 else info.height,
        codec=info.codec,
        sample_fps=fps,
        decoded_frames=stats.decoded_frames,
        frames=[FrameRecord(t, e, s) for t, e, s in zip(times, ends, shot_of)],
        vectors=vectors,
        note=problem,
        shots=[ShotRecord(s.start_s, s.end_s, s.kind) for s in stats.shots],
        thumbs=dec.thumbs,
    )


def _plan(
    files: Sequence[str], known: dict[str, tuple[int, float, str, float, bool]], fps: float
) -> tuple[list[str], list[str], list[tuple[str, float]], list[tuple[str, str]]]:
    """Split files into (to embed, unchanged, [(unchanged but touched, new mtime)], [(unreadable, why)])."""
    todo: list[str] = []
    same: list[str] = []
    touched: list[tuple[str, float]] = []
    bad: list[tuple[str, str]] = []
    for f in files:
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(f).decode("utf-8", "backslashreplace")
            bad.append((shown, "the file name is not valid UTF-8: rename the file to index it"))
            continue
        try:
            st = os.stat(f)
        except OSError as exc:
            bad.append((f, f"cannot read ({exc.strerror})"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the decoder forever
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a pipe, socket or device"
            bad.append((f, f"not a regular file ({kind})"))
            continue
        if not os.access(f, os.R_OK):
            bad.append((f, "cannot read (permission denied)"))
            continue
        old = known.get(f)
        if old is None or old[3] != fps or old[0] != st.st_size:
            todo.append(f)
        elif old[1] == st.st_mtime:
            same.append(f)
        else:
            try:
                unchanged = fingerprint(f) == old[2]
            except OSError as exc:
                bad.append((f, f"cannot read ({exc.strerror})"))
                continue
            if unchanged:
                same.append(f)
                touched.append((f, st.st_mtime))
            else:
                todo.append(f)
    return todo, same, touched, bad


def index_paths(
    paths: Sequence[str | os.PathLike[str]],
    store_dir: str | os.PathLike[str],
    model: str | None = None,
    pretrained: str | None = None,
    fps: float = DEFAULT_FPS,
    batch_size: int = DEFAULT_BATCH,
    device: str = "auto",
    progress: ProgressFn = _noop,
    encoder: Encoder | None = None,
    precision: str = "auto",
) -> IndexReport:
    """Index video files and folders into a store; unchanged files are skipped.

    Args:
        paths: files and/or folders (walked recursively).
        store_dir: the store folder (created if missing).
        model, pretrained: open_clip model and weights; None means the store's own, or the
            defaults (``ViT-B-32`` / ``laion2b_s34b_b79k``) for a new store.
        fps: samples per second of video time.
        batch_size: frames per model call.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        progress: called with :class:`Progress` events.
        encoder: an already loaded encoder to use (its model must match the store).
        precision: image tower precision, ``auto`` (bf16 where native), ``bf16`` or ``fp32``.

    Returns:
        An :class:`IndexReport`; bad files are in ``failures``, not raised.

    Raises:
        StoreLocked: another index run is writing this store.
        ModelMismatch: the store was built with another model.
        ModelLoadError: the model or weights cannot be loaded.
    """
    if fps <= 0 or fps > 1000:
        raise ArchiveError(f"--fps must be between 0 and 1000 samples per second, not {fps}.")
    if batch_size < 1:
        raise ArchiveError(f"--batch-size must be at least 1, not {batch_size}.")
    t0 = time.perf_counter()
    store_dir = Path(store_dir)
    spec = _choose_spec(store_dir, model, pretrained, encoder)
    report = IndexReport(store=str(store_dir.resolve()), model=spec.name, pretrained=spec.pretrained)
    files, problems = discover(paths)
    report.files_seen = len(files)

    with Writer(store_dir) as writer:  # fails at once when another writer runs
        if (store_dir / "catalog.duckdb").is_file():
            writer.attach(spec, int(read_meta(store_dir)["dim"]))  # reconciles before planning
            report.repaired, report.damaged_file = writer.repaired, writer.damaged_file
        known = known_files(store_dir)
        todo, same, touched, bad = _plan(files, known, fps)
        problems.extend(bad)
        report.skipped = len(same)
        report.missing = sorted(p for p in known if not os.path.exists(p))
        for p in same:
            progress(Progress("skip", path=p))
        no_thumbs = [p for p in same if not known[p][4]]
        infos: dict[str, VideoInfo] = {}
        for f in todo:
            try:
                infos[f] = probe(f)
            except VideoOpenError:
                pass  # embed_video reports it
        seconds = sum(i.duration_s for i in infos.values())
        progress(Progress("plan", total=len(todo), seconds=seconds))
        if todo and encoder is None:
            progress(Progress("model", message=f"{spec.name} ({spec.pretrained})"))
            encoder = Encoder.load(spec.name, spec.pretrained, device, precision=precision)
        if todo and writer.spec is None:
            assert encoder is not None
            writer.attach(spec, encoder.dim)
        if writer.spec is not None:
            for p, mtime in touched:
                writer.touch(p, mtime)
            _run(writer, todo, encoder, fps, batch_size, progress, report, problems, infos)
            for p in no_thumbs:
                report.thumbnails_added += add_thumbnails(writer, p, progress)
        else:  # nothing to embed and no catalog to record failures in
            for p, why in problems:
                progress(Progress("fail", path=p, message=why))
            report.failures.extend(problems)
            report.failed += len(problems)
    report.wall_s = time.perf_counter() - t0
    return report


def _run(
    writer: Writer,
    todo: Sequence[str],
    encoder: Encoder | None,
    fps: float,
    batch_size: int,
    progress: ProgressFn,
    report: IndexReport,
    problems: list[tuple[str, str]],
    infos: dict[str, VideoInfo] | None = None,
) -> None:
    pending: list[VideoRecord] = []
    last_commit = time.monotonic()
    for p, why in problems:
        progress(Progress("fail", path=p, message=why))
    failures: list[tuple[str, str]] = list(problems)

    def flush() -> None:
        nonlocal pending, failures, last_commit
        partial = [(rec.path, rec.note) for rec in pending if rec.note]
        t0 = time.perf_counter()
        writer.commit(pending, failures + partial)
        report.stages.write += time.perf_counter() - t0
        for rec in pending:
            report.indexed += 1
            report.indexed_paths.append(rec.path)
            report.frames += len(rec.frames)
            report.video_seconds += rec.duration_s
        report.notes.extend(partial)
        report.partial += len(partial)
        report.failures.extend(failures)
        report.failed += len(failures)
        pending, failures = [], []
        last_commit = time.monotonic()

    import threading  # noqa: PLC0415

    decoders: dict[int, _Decoder] = {}
    lock = threading.Lock()

    ahead, threads = decoder_plan()

    def start(i: int) -> None:
        """Start decoding video ``i``; when it is decoded, start the next one not started, so
        decoders keep working while the model finishes earlier files."""
        with lock:
            if i < len(todo) and i not in decoders and i not in started:
                assert encoder is not None
                started.add(i)
                decoders[i] = _Decoder(todo[i], encoder, fps, batch_size, threads)
                decoders[i].start(on_done=lambda: start(i + ahead))

    started: set[int] = set()

    try:
        for i, path in enumerate(todo):
            progress(Progress("start", path=path))
            for k in range(i, i + ahead):
                start(k)
            try:
                assert encoder is not None
                rec = embed_video(path, encoder, fps, batch_size, progress, times_out=report.stages,
                                  info=(infos or {}).get(path), decoder=_take(decoders, lock, i))
            except VideoOpenError as exc:
                failures.append((path, str(exc).removeprefix(f"{path}: ")))
                progress(Progress("fail", path=path, message=failures[-1][1]))
                continue
            except OSError as exc:
                failures.append((path, f"cannot read ({exc.strerror or exc})"))
                progress(Progress("fail", path=path, message=failures[-1][1]))
                continue
            pending.append(rec)
            if rec.note:
                progress(Progress("partial", path=path, message=rec.note))
            progress(Progress("done", path=path, frames=len(rec.frames), seconds=rec.duration_s))
            if time.monotonic() - last_commit >= _commit_interval():
                flush()
    finally:
        for dec in list(decoders.values()):  # a video started ahead of an interruption
            dec.close()
        flush()  # on Ctrl-C too: finished videos are kept


def add_thumbnails(writer: Writer, path: str, progress: ProgressFn = _noop) -> int:
    """Give an indexed, unchanged video's frames their thumbnails (for stores indexed before
    thumbnails existed). The video is decoded again, but nothing is embedded and its frames keep
    their ids, vectors and times. Returns how many frames got one.

    Samples are matched by time: the sampling is the same as at index time, so nearly all match;
    a frame with no decoded match keeps no thumbnail (the page shows none for it).
    """
    with read_connection(writer.dir) as con:
        rows = con.execute(
            "SELECT f.frame_id, f.ts_s, v.sample_fps FROM frames f JOIN videos v USING (video_id) "
            "WHERE v.path = ? AND f.thumb_bytes IS NULL ORDER BY f.ts_s", [path]).fetchall()
    if not rows:
        return 0
    want: dict[float, list[int]] = {}
    for fid, ts, _ in rows:
        want.setdefault(round(ts, 4), []).append(fid)
    progress(Progress("thumbs", path=path, frames=len(rows)))
    ids: list[int] = []
    jpegs: list[bytes] = []
    try:
        for frame in sample_frames(path, float(rows[0][2]), short_side=THUMB_LONG_SIDE):
            fids = want.pop(round(frame.ts_s, 4), None)
            if fids:
                jpeg = jpeg_thumbnail(frame.rgb)
                ids.extend(fids)
                jpegs.extend([jpeg] * len(fids))
    except (VideoOpenError, OSError):
        pass  # unreadable now: its frames stay without pictures; everything else is unchanged
    # frames with no match are marked as tried (no picture, thumb_bytes = 0), so later runs do not
    # decode the video again for them
    tried = [fid for fids in want.values() for fid in fids]
    writer.set_thumbnails(ids + tried, jpegs + [b""] * len(tried))
    return len(ids)


def decoder_plan() -> tuple[int, int]:
    """(videos decoded at once, threads each). Two single-threaded decoders on two cores did
    more work per CPU-second than one decoder with two threads (FFmpeg's frame threading costs
    about 30% more CPU); env ARCHIVE_DECODERS sets how many run at once."""
    try:
        ahead = max(1, int(os.environ.get("ARCHIVE_DECODERS") or 2))
    except ValueError:
        ahead = 2
    return ahead, max(1, (os.cpu_count() or 2) // ahead)


def _take(decoders: dict[int, _Decoder], lock: Any, i: int) -> _Decoder | None:
    with lock:
        return decoders.pop(i, None)


def _commit_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ARCHIVE_COMMIT_INTERVAL_S", COMMIT_INTERVAL_S)))
    except ValueError:
        return COMMIT_INTERVAL_S


def _choose_spec(
    store_dir: Path, model: str | None, pretrained: str | None, encoder: Encoder | None
) -> ModelSpec:
    """The model for this run: asked for, else the store's, else the defaults; checked against the store."""
    existing: ModelSpec | None = None
    if (store_dir / "catalog.duckdb").is_file():
        meta = read_meta(store_dir)
        existing = ModelSpec(meta["model"], meta["pretrained"])
    if encoder is not None:
        spec = encoder.spec
    elif existing is not None and model in (None, existing.name) and (
        pretrained is None
        or pretrained == existing.pretrained
        or (existing.random_weights and pretrained.strip().lower() in {"none", "random"})
    ):
        return existing  # the store's own model: no need to import open_clip to check it
    else:
        name = model or (existing.name if existing else DEFAULT_MODEL)
        if pretrained is None:
            pretrained = existing.pretrained if existing and existing.name == name else DEFAULT_PRETRAINED
        spec = resolve_spec(name, pretrained)
    if existing is not None and spec != existing:
        raise ModelMismatch(
            f"the store {store_dir} was built with {existing.name} ({existing.pretrained}), not "
            f"{spec.name} ({spec.pretrained}); drop --model/--pretrained to use the store's, or use another --store."
        )
    return spec
