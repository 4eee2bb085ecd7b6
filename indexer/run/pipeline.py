"""Index files into a store: plan, then map the per-video step over the files and commit.

"Work on one video" (:func:`indexer.run.embed.embed_video`: decode + embed -> a
:class:`~indexer.store.VideoRecord`) is kept apart from "commit a result" (the single
:class:`~indexer.store.Writer`): this module is the in-process *runner* that joins them,
decoding ahead in background threads (:mod:`indexer.media.prefetch`) and committing finished videos
together at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from indexer import crashpoints, settings
from indexer.errors import VideoOpenError
from indexer.media import ocr as ocrmod
from indexer.media import speech as speechmod
from indexer.media import transnet
from indexer.media.decode import VideoInfo, probe
from indexer.media.decode_child import ProcessPrefetch
from indexer.media.imageprep import ImagePrep
from indexer.media.prefetch import FramePrefetch, decoder_plan
from indexer.media.timing import StageTimes
from indexer.model import image_tower
from indexer.model.background import background_vectors
from indexer.model.encoder import Encoder
from indexer.store import Reader, Writer, has_catalog

from .backfill import add_text, add_thumbnails
from .commit import Committer
from .discover import discover
from .embed import embed_video
from .hear import HearAhead, add_speech
from .listen import add_sound
from .options import IndexOptions
from .plan import Plan, choose_spec, plan_files
from .ray_runner import RayRunner
from .report import IndexReport, Progress, ProgressFn, no_progress

__all__ = ["Committer", "IndexReport", "Progress", "ProgressFn", "StageTimes", "index_paths"]


def index_paths(
    paths: Sequence[str | os.PathLike[str]],
    store_dir: str | os.PathLike[str],
    options: IndexOptions | None = None,
    progress: ProgressFn = no_progress,
    encoder: Encoder | None = None,
) -> IndexReport:
    """Index video files and folders into a store; unchanged files are skipped.

    In a process that has not imported torch yet, this sets ``GOMP_SPINCOUNT=10000`` for the rest
    of the process (unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is set): torch's idle threads
    then spin about 0.1 ms instead of 3 ms, leaving the cores to the decoders
    (:func:`indexer.settings.idle_threads_sleep`).

    Args:
        paths: files and/or folders (walked recursively).
        store_dir: the store folder (created if missing).
        options: what to do (:class:`~indexer.run.options.IndexOptions`; default: as ``archive index``).
            With ``ocr``, on-screen text (:mod:`indexer.media.ocr`) is read into the ``ocr`` table and
            the store remembers it: later runs read the text of new videos too, and already indexed
            videos without text get it, decoded again but not re-embedded. With ``ray``, the
            per-video step runs on a Ray cluster (:mod:`indexer.run.ray_runner`); commits stay here,
            and Ray is started or joined only when there is work.
        progress: called with :class:`Progress` events.
        encoder: an already loaded encoder to use (its model must match the store).

    Returns:
        An :class:`IndexReport`; bad files are in ``failures``, not raised.

    Raises:
        UsageError: ``fps`` or ``batch_size`` out of range; text asked for without the OCR package.
        StoreLocked: another index run is writing this store.
        ModelMismatch: the store was built with another model.
        ModelLoadError: the model or weights cannot be loaded.
    """
    o = (options or IndexOptions()).checked()
    detector = transnet.detector(o.shots)
    settings.idle_threads_sleep()  # before torch loads: the decoders need the cores it would spin on
    crashpoints.start_run()
    t0 = time.perf_counter()
    store_dir = Path(store_dir)
    meta = Reader(store_dir).meta() if has_catalog(store_dir) else {}  # read once (each read opens the catalog)
    read_text = settings.ocr(o.ocr, meta.get("ocr") == "1")
    engine = ocrmod.engine(settings.ocr_side()) if read_text else None
    hearing = settings.speech(o.speech, meta.get("speech") == "1")
    settings.speech_language()  # a bad ARCHIVE_SPEECH_LANGUAGE fails here, before anything is written
    ears = speechmod.engine(settings.speech_model(), o.device) if hearing else None
    fingerprints = settings.sound(o.sound)
    spec = choose_spec(store_dir, o.model, o.pretrained, encoder.spec if encoder is not None else None, meta)
    report = IndexReport(
        store=str(store_dir.resolve()), model=spec.name, pretrained=spec.pretrained, ocr=read_text, speech=hearing
    )
    files, problems = discover(paths)
    report.files_seen = len(files)

    with Writer(store_dir) as writer:  # fails at once when another writer runs
        if has_catalog(store_dir):
            writer.attach(spec, int(Reader(store_dir).meta()["dim"]))  # reconciles before planning
            report.repaired, report.damaged_file = writer.repaired, writer.damaged_file
        known = Reader(store_dir).known_files(files)
        # a detector asked for explicitly (--shots, ARCHIVE_SHOTS) re-indexes videos made by another
        explicit = detector if settings.shots_asked(o.shots) != "auto" else None
        plan = plan_files(files, known, o.fps, explicit)
        problems.extend(plan.bad)
        runner = _Runner(writer, encoder, o, progress, report, shots=detector, ocr=engine, speech=ears)
        try:
            if plan.todo and encoder is None and o.ray is None:
                # The first videos decode while the model loads, in child processes: importing torch
                # holds the GIL a decoding thread would need (indexer.media.decode_child).
                early = image_tower.prep_for(spec.name, spec.pretrained)
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
            if o.ray is not None and plan.todo:
                _index_on_ray(
                    writer, o, spec, detector, progress, report, plan, problems, infos, no_thumbs, engine, ears
                )
                if engine is not None:
                    add_text(writer, plan.same, engine, progress, report)
                if ears is not None:
                    add_speech(writer, plan.same, ears, progress, report)
                if fingerprints:
                    add_sound(writer, files, progress, report)
                report.missing = _missing(store_dir, paths)
                report.wall_s = time.perf_counter() - t0
                return report
            if plan.todo and encoder is None:
                progress(Progress("model", message=f"{spec.name} ({spec.pretrained})"))
                crashpoints.pause("model.load")
                encoder = Encoder.load(spec.name, spec.pretrained, o.device, precision=o.precision)
                runner.encoder = encoder
            if plan.todo and writer.spec is None:
                assert encoder is not None
                writer.attach(spec, encoder.dim)
            if writer.spec is not None:
                if engine is not None:
                    writer.remember_ocr()
                if ears is not None:
                    writer.remember_speech()
                for p, mtime in plan.touched:
                    writer.touch(p, mtime)
                if plan.todo and encoder is not None:
                    runner.background = background_vectors(encoder)
                runner.run(plan.todo, problems, infos)
                for p in no_thumbs:
                    report.thumbnails_added += add_thumbnails(writer, p, progress)
                if engine is not None:
                    add_text(writer, plan.same, engine, progress, report)
                if ears is not None:
                    add_speech(writer, plan.same, ears, progress, report)
                if fingerprints:
                    add_sound(writer, files, progress, report)
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
    rep = writer.layer.auto_merge()
    report.segments_merged = rep.merged
    if rep.lists_error:
        report.lists_note = (
            f"the IVF index's lists file could not be written ({rep.lists_error}); the videos are "
            "committed, and queries build the index from its codes until a later run writes it."
        )


def _missing(store_dir: Path, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Indexed files of the run's folders (and files) that are no longer where they were
    (``archive prune`` removes them; ``archive check`` names those of the whole archive). Only
    those: an add of one clip to a large archive, perhaps on a network share, does not look up
    every file it holds."""
    return sorted(p for p in Reader(store_dir).indexed_paths(under=paths) if not os.path.exists(p))


def _index_on_ray(
    writer: Writer,
    opts: IndexOptions,
    spec: Any,
    detector: str,
    progress: ProgressFn,
    report: IndexReport,
    plan: Plan,
    problems: list[tuple[str, str]],
    infos: dict[str, VideoInfo],
    no_thumbs: list[str],
    engine: "ocrmod.OcrEngine | None" = None,
    ears: "speechmod.SpeechEngine | None" = None,
) -> None:
    """The rest of an index run with the per-video step on Ray workers (the writer stays here)."""
    runner = RayRunner(
        writer,
        opts,
        spec,
        progress,
        report,
        detector,
        engine.side if engine is not None else 0,
        ears.name if ears is not None else None,
    )
    # Ray prints its own notices (a worker died, ...) on this process's stdout: they go to stderr,
    # so stdout keeps only what the command prints (its --json report).
    with contextlib.redirect_stdout(sys.stderr):
        try:
            dim = runner.start()
            if writer.spec is None:
                writer.attach(spec, dim)
            if engine is not None:
                writer.remember_ocr()
            if ears is not None:
                writer.remember_speech()
            for p, mtime in plan.touched:
                writer.touch(p, mtime)
            runner.run(plan.todo, problems, infos)
        finally:
            runner.close()
    for p in no_thumbs:
        report.thumbnails_added += add_thumbnails(writer, p, progress)
    if report.indexed:
        _merged(writer, report)


class _Runner(Committer):
    """Maps :func:`embed_video` over files in this process and hands finished videos to the writer,
    committing at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds (and on the way out, Ctrl-C too)."""

    def __init__(
        self,
        writer: Writer,
        encoder: Encoder | None,
        options: IndexOptions,
        progress: ProgressFn,
        report: IndexReport,
        shots: str = "fast",
        ocr: "ocrmod.OcrEngine | None" = None,
        speech: "speechmod.SpeechEngine | None" = None,
    ) -> None:
        super().__init__(writer, progress, report)
        self.ocr = ocr  # reads on-screen text in the decoding threads (None: not)
        self.speech = speech  # transcribes the sound tracks in a thread of its own (None: not)
        self.encoder, self.fps, self.batch_size = encoder, options.fps, options.batch_size
        self.background: tuple[Any, str] | None = None  # the background prompts' vectors and key, once loaded
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
        # wait for it, a decoding process runs beside it (indexer.media.decode_child). One: a child that meets
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
        process (:mod:`indexer.media.decode_child`)."""
        ahead, threads = decoder_plan()
        with self._lock:
            if i < len(self.todo) and i not in self.started and self._prep is not None:
                self.started.add(i)
                if in_child:
                    self.decoders[i] = ProcessPrefetch(
                        self.todo[i], self._prep, self.fps, self.batch_size, threads, self.shots
                    )
                else:
                    self.decoders[i] = FramePrefetch(
                        self.todo[i], self._prep, self.fps, self.batch_size, threads, self.shots, self.ocr
                    )
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
        ears = HearAhead(self.speech, todo) if self.speech is not None and todo else None
        try:
            for i, path in enumerate(todo):
                self.progress(Progress("start", path=path))
                for k in range(i, i + ahead):
                    self._start(k)
                assert encoder is not None
                try:
                    rec = embed_video(
                        path,
                        encoder,
                        self.fps,
                        self.batch_size,
                        self.progress,
                        times_out=self.report.stages,
                        info=infos.get(path),
                        decoder=self._take(i),
                        background=self.background,
                        shots=self.shots,
                        ocr=self.ocr,
                        speech=ears.waiter(path) if ears is not None else None,
                    )
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
                if rec.speech_note:
                    self.progress(Progress("nospeech", path=path, message=rec.speech_note))
                self.progress(Progress("done", path=path, frames=len(rec.frames), seconds=rec.duration_s))
                crashpoints.pause("video.done")
                if time.monotonic() - self.last_commit >= settings.commit_interval_s():
                    self.flush()
        finally:
            if ears is not None:
                ears.close()
            self.close_decoders()  # a video started ahead of an interruption
            self.flush()  # on Ctrl-C too: finished videos are kept
