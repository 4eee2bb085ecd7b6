"""Index files into a store: plan, then map the per-video step over the files and commit.

"Work on one video" (:func:`indexer.embed.embed_video`: decode + embed -> a
:class:`~indexer.store.VideoRecord`) is kept apart from "commit a result" (the single
:class:`~indexer.store.Writer`): this module is the in-process *runner* that joins them,
decoding ahead in background threads (:mod:`indexer.prefetch`) and committing finished videos
together at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import hooks, imagefast, settings, terms
from . import ocr as ocrmod
from .decode import VideoInfo, probe
from .decodeproc import ProcessPrefetch
from .discover import discover
from .embed import embed_video
from .encoder import Encoder, ImagePrep
from .errors import VideoOpenError
from .plan import choose_spec, plan_files
from .prefetch import FramePrefetch, decoder_plan
from .report import IndexReport, Progress, ProgressFn, StageTimes, no_progress
from .store import VideoRecord, Writer, has_catalog, indexed_paths, known_files, ocr_row, ocr_todo, read_meta
from .thumbs import add_thumbnails

__all__ = ["Committer", "IndexReport", "Progress", "ProgressFn", "StageTimes", "index_paths"]

if TYPE_CHECKING:
    from .rayrun import RayOptions


def index_paths(
    paths: Sequence[str | os.PathLike[str]],
    store_dir: str | os.PathLike[str],
    model: str | None = None,
    pretrained: str | None = None,
    fps: float = settings.DEFAULT_FPS,
    batch_size: int = settings.DEFAULT_BATCH,
    device: str = settings.DEFAULT_DEVICE,
    progress: ProgressFn = no_progress,
    encoder: Encoder | None = None,
    precision: str = settings.DEFAULT_PRECISION,
    shots: str | None = None,
    ray: "RayOptions | None" = None,
    ocr: bool | None = None,
) -> IndexReport:
    """Index video files and folders into a store; unchanged files are skipped.

    In a process that has not imported torch yet, this sets ``GOMP_SPINCOUNT=10000`` for the rest
    of the process (unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is set): torch's idle threads
    then spin about 0.1 ms instead of 3 ms, leaving the cores to the decoders
    (:func:`indexer.settings.idle_threads_sleep`).

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
        shots: shot detector, ``auto`` (TransNetV2 where installed), ``transnet`` or ``fast``;
            None: ``$ARCHIVE_SHOTS``, else ``auto``. Asked for explicitly (not ``auto``), it
            re-indexes the videos whose shots another detector made.
        ray: run the per-video step on a Ray cluster (:mod:`indexer.rayrun`) instead of in this
            process; commits stay here. Ray is started or joined only when there is work.
        ocr: read on-screen text (:mod:`indexer.ocr`) into the ``ocr`` table. The store remembers
            it: later runs read the text of new videos too (None: ``$ARCHIVE_OCR``, else as the
            store does), and already indexed videos without text get it, decoded again but not
            re-embedded.

    Returns:
        An :class:`IndexReport`; bad files are in ``failures``, not raised.

    Raises:
        UsageError: ``fps`` or ``batch_size`` out of range; text asked for without the OCR package.
        StoreLocked: another index run is writing this store.
        ModelMismatch: the store was built with another model.
        ModelLoadError: the model or weights cannot be loaded.
    """
    fps = settings.check_fps(fps)
    batch_size = settings.check_batch_size(batch_size)
    detector = settings.shots(shots)
    settings.idle_threads_sleep()  # before torch loads: the decoders need the cores it would spin on
    hooks.start_run()
    t0 = time.perf_counter()
    store_dir = Path(store_dir)
    meta = read_meta(store_dir) if has_catalog(store_dir) else {}  # read once (each read opens the catalog)
    read_text = settings.ocr(ocr, meta.get("ocr") == "1")
    engine = ocrmod.engine(settings.ocr_side()) if read_text else None
    spec = choose_spec(store_dir, model, pretrained, encoder.spec if encoder is not None else None, meta)
    report = IndexReport(store=str(store_dir.resolve()), model=spec.name, pretrained=spec.pretrained, ocr=read_text)
    files, problems = discover(paths)
    report.files_seen = len(files)

    with Writer(store_dir) as writer:  # fails at once when another writer runs
        if has_catalog(store_dir):
            writer.attach(spec, int(read_meta(store_dir)["dim"]))  # reconciles before planning
            report.repaired, report.damaged_file = writer.repaired, writer.damaged_file
        known = known_files(store_dir, files)
        # a detector asked for explicitly (--shots, ARCHIVE_SHOTS) re-indexes videos made by another
        explicit = detector if settings.shots_asked(shots) != "auto" else None
        plan = plan_files(files, known, fps, explicit)
        problems.extend(plan.bad)
        runner = _Runner(writer, encoder, fps, batch_size, progress, report, shots=detector, ocr=engine)
        try:
            if plan.todo and encoder is None and ray is None:
                # The first videos decode while the model loads, in child processes: importing torch
                # holds the GIL a decoding thread would need (indexer.decodeproc).
                early = imagefast.prep_for(spec.name, spec.pretrained)
                if early is not None:
                    runner.start_early(plan.todo, early)
            report.skipped = len(plan.same)
            for p in plan.same:
                progress(Progress("skip", path=p))
            no_thumbs = [p for p in plan.same if not known[p].has_thumbnails]
            infos: dict[str, VideoInfo] = {}
            for f in plan.todo:
                try:
                    infos[f] = probe(f)
                except VideoOpenError:
                    pass  # embed_video reports it
            progress(Progress("plan", total=len(plan.todo), seconds=sum(i.duration_s for i in infos.values())))
            if ray is not None and plan.todo:
                _index_on_ray(writer, ray, spec, device, precision, fps, batch_size, progress, report, detector,
                              plan.todo, problems, infos, plan.touched, no_thumbs, engine)
                if engine is not None:
                    add_text(writer, plan.same, engine, progress, report)
                report.missing = _missing(store_dir, paths)
                report.wall_s = time.perf_counter() - t0
                return report
            if plan.todo and encoder is None:
                progress(Progress("model", message=f"{spec.name} ({spec.pretrained})"))
                encoder = Encoder.load(spec.name, spec.pretrained, device, precision=precision)
                runner.encoder = encoder
            if plan.todo and writer.spec is None:
                assert encoder is not None
                writer.attach(spec, encoder.dim)
            if writer.spec is not None:
                if engine is not None:
                    writer.remember_ocr()
                for p, mtime in plan.touched:
                    writer.touch(p, mtime)
                if plan.todo and encoder is not None:
                    runner.background = background_vectors(encoder)
                runner.run(plan.todo, problems, infos)
                for p in no_thumbs:
                    report.thumbnails_added += add_thumbnails(writer, p, progress)
                if engine is not None:
                    add_text(writer, plan.same, engine, progress, report)
                if report.indexed:
                    _merged(writer, report)
            else:  # nothing to embed and no catalog to record failures in
                for p, why in problems:
                    progress(Progress("fail", path=p, message=why))
                report.failures.extend(problems)
                report.failed += len(problems)
        finally:
            runner.close_decoders()  # those started early for a run that then failed
        report.missing = _missing(store_dir, paths)  # (not while the model loads: the import needs the GIL)
    report.encoder = encoder
    report.wall_s = time.perf_counter() - t0
    return report


def _merged(writer: Writer, report: IndexReport) -> None:
    """The end of a run that indexed something: merge its small segments, refresh the IVF lists file."""
    rep = writer.auto_merge()
    report.segments_merged = rep.merged
    if rep.lists_error:
        report.lists_note = (f"the IVF index's lists file could not be written ({rep.lists_error}); the videos are "
                             "committed, and queries build the index from its codes until a later run writes it.")


def _missing(store_dir: Path, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Indexed files of the run's folders (and files) that are no longer where they were
    (``archive prune`` removes them; ``archive check`` names those of the whole archive). Only
    those: an add of one clip to a large archive, perhaps on a network share, does not look up
    every file it holds."""
    return sorted(p for p in indexed_paths(store_dir, under=paths) if not os.path.exists(p))


def _index_on_ray(writer: Writer, opts: "RayOptions", spec: Any, device: str, precision: str, fps: float,
                  batch_size: int, progress: ProgressFn, report: IndexReport, detector: str, todo: list[str],
                  problems: list[tuple[str, str]], infos: dict[str, VideoInfo], touched: list[tuple[str, float]],
                  no_thumbs: list[str], engine: "ocrmod.OcrEngine | None" = None) -> None:
    """The rest of an index run with the per-video step on Ray workers (the writer stays here)."""
    from .rayrun import RayRunner  # noqa: PLC0415  (Ray is optional: imported only for --ray)

    runner = RayRunner(writer, opts.check(), spec, device, precision, fps, batch_size, progress, report, detector,
                       engine.side if engine is not None else 0)
    # Ray prints its own notices (a worker died, ...) on this process's stdout: they go to stderr,
    # so stdout keeps only what the command prints (its --json report).
    with contextlib.redirect_stdout(sys.stderr):
        try:
            dim = runner.start()
            if writer.spec is None:
                writer.attach(spec, dim)
            if engine is not None:
                writer.remember_ocr()
            for p, mtime in touched:
                writer.touch(p, mtime)
            runner.run(todo, problems, infos)
        finally:
            runner.close()
    for p in no_thumbs:
        report.thumbnails_added += add_thumbnails(writer, p, progress)
    if report.indexed:
        _merged(writer, report)


def add_text(writer: Writer, paths: Sequence[str], engine: "ocrmod.OcrEngine", progress: ProgressFn,
             report: IndexReport) -> None:
    """Read the on-screen text of indexed videos (of ``paths``) that have none: each is decoded
    again, nothing is re-embedded; each video's lines are committed on their own. A video whose
    text cannot be read gets a ``failures`` note and stays without text (tried again next run)."""
    for todo in ocr_todo(writer.dir, paths):
        progress(Progress("text", path=todo.path, frames=len(todo.frame_ids)))
        t0 = time.perf_counter()
        try:
            lines, n_read = ocrmod.read_video_text(todo.path, todo.sample_fps, todo.ts_s, todo.end_s, engine,
                                                   todo.shot_starts)
        except VideoOpenError as exc:
            why = f"on-screen text not read: {str(exc).removeprefix(f'{todo.path}: ')}"
        except OSError as exc:
            why = f"on-screen text not read: cannot read ({exc.strerror or exc})"
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            why = f"on-screen text not read: {type(exc).__name__}: {str(exc)[:200]}"
        else:
            writer.set_ocr(todo.video_id, [ocr_row(todo.frame_ids[ln.best], todo.video_id, ln) for ln in lines])
            report.stages.ocr += time.perf_counter() - t0
            report.stages.ocr_frames += n_read
            report.text_lines += len(lines)
            report.text_added += 1
            report.text_ids.append(todo.video_id)
            continue
        writer.note_failure(todo.path, why)
        report.text_notes.append((todo.path, why))
        progress(Progress("notext", path=todo.path, message=why))


def background_vectors(encoder: Encoder) -> tuple[Any, str]:
    """The background prompts' vectors the stored per-frame term is computed with (fp32, as every
    process embeds texts), and the term's key."""
    spec = encoder.spec
    return (encoder.encode_fixed(list(terms.BACKGROUND_PROMPTS)),
            terms.background_key(spec.name, spec.pretrained, encoder.text_precision))


class Committer:
    """What every runner shares: finished videos and failures wait here for the single writer,
    committed together at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds (and on the way out)."""

    def __init__(self, writer: Writer, progress: ProgressFn, report: IndexReport) -> None:
        self.writer, self.progress, self.report = writer, progress, report
        self.pending: list[VideoRecord] = []
        self.failures: list[tuple[str, str]] = []
        self.last_commit = time.monotonic()

    def flush(self) -> None:
        """Commit what is finished: the pending videos and the failures seen so far."""
        rep = self.report
        partial = [(rec.path, rec.note) for rec in self.pending if rec.note]
        no_text = [(rec.path, rec.ocr_note) for rec in self.pending if rec.ocr_note]
        t0 = time.perf_counter()
        rep.indexed_ids.extend(self.writer.commit(self.pending, self.failures + partial + no_text))
        rep.stages.write += time.perf_counter() - t0
        for rec in self.pending:
            rep.indexed += 1
            rep.indexed_paths.append(rec.path)
            rep.frames += len(rec.frames)
            rep.video_seconds += rec.duration_s
            rep.text_lines += len(rec.ocr or [])
        rep.notes.extend(partial)
        rep.text_notes.extend(no_text)
        rep.partial += len(partial)
        rep.failures.extend(self.failures)
        rep.failed += len(self.failures)
        self.pending, self.failures = [], []
        self.last_commit = time.monotonic()

    def _fail(self, path: str, why: str) -> None:
        self.failures.append((path, why))
        self.progress(Progress("fail", path=path, message=why))


class _Runner(Committer):
    """Maps :func:`embed_video` over files in this process and hands finished videos to the writer,
    committing at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds (and on the way out, Ctrl-C too)."""

    def __init__(self, writer: Writer, encoder: Encoder | None, fps: float, batch_size: int,
                 progress: ProgressFn, report: IndexReport, background: tuple[Any, str] | None = None,
                 shots: str = "fast", ocr: "ocrmod.OcrEngine | None" = None) -> None:
        super().__init__(writer, progress, report)
        self.ocr = ocr  # reads on-screen text in the decoding threads (None: not)
        self.encoder, self.fps, self.batch_size, self.background = encoder, fps, batch_size, background
        self.todo: list[str] = []
        self.decoders: dict[int, FramePrefetch | ProcessPrefetch] = {}
        self.started: set[int] = set()
        self._lock = threading.Lock()
        self._prep: ImagePrep | None = None
        self.shots = shots  # the shot detector: fast or transnet

    def start_early(self, todo: Sequence[str], prep: ImagePrep) -> None:
        """Start decoding the first videos with ``prep`` before the model is loaded; :meth:`run`
        keeps them when the model's preprocessing turns out the same."""
        self._prep = prep
        ahead, _ = decoder_plan()
        self.todo = list(todo)
        # importing torch holds the GIL for about a second and a half: a decoding thread would mostly
        # wait for it, a decoding process runs beside it (indexer.decodeproc). One: a child that meets
        # a dissolve loads TransNetV2 (torch) too, up to about 0.9 GB. Text reading stays in threads.
        for k in range(min(ahead, len(todo))):
            self._start(k, in_child=k == 0 and self.ocr is None and settings.early_decode() == "process")

    def close_decoders(self) -> None:
        """Stop every decoder, and start no more."""
        with self._lock:
            decs, self.decoders, self._prep = list(self.decoders.values()), {}, None
        for dec in decs:
            dec.close()

    def _start(self, i: int, in_child: bool = False) -> None:
        """Start decoding video ``i``; when it is decoded, start the next one not started, so
        decoders keep working while the model finishes earlier files; ``in_child``: in a child
        process (:mod:`indexer.decodeproc`)."""
        ahead, threads = decoder_plan()
        with self._lock:
            if i < len(self.todo) and i not in self.started and self._prep is not None:
                self.started.add(i)
                if in_child:
                    self.decoders[i] = ProcessPrefetch(self.todo[i], self._prep, self.fps, self.batch_size, threads,
                                                       self.shots)
                else:
                    self.decoders[i] = FramePrefetch(self.todo[i], self._prep, self.fps, self.batch_size, threads,
                                                     self.shots, self.ocr)
                self.decoders[i].start(on_done=lambda: self._start(i + ahead))

    def _take(self, i: int) -> FramePrefetch | ProcessPrefetch | None:
        with self._lock:
            return self.decoders.pop(i, None)

    def run(self, todo: Sequence[str], problems: Sequence[tuple[str, str]], infos: dict[str, VideoInfo]) -> None:
        for p, why in problems:
            self.progress(Progress("fail", path=p, message=why))
        self.failures = list(problems)
        encoder = self.encoder
        if self._prep is not None and (encoder is None or not self._prep.same_input(encoder.prep)):
            self.close_decoders()  # started for another input size: decoded again
            self.started.clear()
        self.todo = list(todo)
        with self._lock:
            self._prep = encoder.prep if encoder is not None else None
        ahead, _ = decoder_plan()
        try:
            for i, path in enumerate(todo):
                self.progress(Progress("start", path=path))
                for k in range(i, i + ahead):
                    self._start(k)
                assert encoder is not None
                try:
                    rec = embed_video(path, encoder, self.fps, self.batch_size, self.progress,
                                      times_out=self.report.stages, info=infos.get(path), decoder=self._take(i),
                                      background=self.background, shots=self.shots, ocr=self.ocr)
                except VideoOpenError as exc:
                    self._fail(path, str(exc).removeprefix(f"{path}: "))
                    continue
                except OSError as exc:
                    self._fail(path, f"cannot read ({exc.strerror or exc})")
                    continue
                self.pending.append(rec)
                if rec.note:
                    self.progress(Progress("partial", path=path, message=rec.note))
                if rec.ocr_note:
                    self.progress(Progress("notext", path=path, message=rec.ocr_note))
                self.progress(Progress("done", path=path, frames=len(rec.frames), seconds=rec.duration_s))
                hooks.pause("video.done")
                if time.monotonic() - self.last_commit >= settings.commit_interval_s():
                    self.flush()
        finally:
            self.close_decoders()  # a video started ahead of an interruption
            self.flush()  # on Ctrl-C too: finished videos are kept
