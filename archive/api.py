"""The Python API: what the CLI calls, and what a notebook user calls directly.

Example::

    from archive import Archive

    a = Archive("data")                      # the store folder
    report = a.index(["ads/"], fps=2.0)      # once; unchanged files are skipped next time
    [beach] = a.search("a beach")            # one QueryResult per query
    for v in beach.results:
        print(v.video, v.present, v.first_seen_s, v.duration_s, v.segments)
    a.sql("SELECT path, duration_s FROM videos").records()
    a.info()
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Sequence

from indexer import settings
from indexer.errors import ArchiveError, StoreError, StoreLocked
from indexer.model.encoder import Encoder, TextEncoder
from indexer.run.embed import embed_video
from indexer.run.options import IndexOptions, RayOptions
from indexer.run.pipeline import IndexReport, ProgressFn, index_paths
from indexer.run.report import Progress
from indexer.store import (
    CheckReport,
    LabelCalibration,
    MergeReport,
    Reader,
    StoreInfo,
    VideoRecord,
    Writer,
    check_store,
    has_catalog,
    prune,
)
from indexer.store import ivf as ivfmod
from search import labels as labels_mod
from search import levels
from search import versions as versions_mod
from search.eval import evaluate as evaluate_mod
from search.eval.calibrate import Calibration, calibrate
from search.eval.evaluate import EvalReport
from search.labels import LabelSummary, VideoClass
from search.query import Searcher, resolve_scope
from search.results import QueryResult
from search.said import check_said
from search.shards import ShardedSearcher
from search.sql import SqlResult, run_sql
from search.versions import VersionsReport
from search.written import check_phrase

from .sound_query import query_from_file

SHARED_READS_VIDEOS = 8  # new videos compared through one catalog connection (about 0.2 s each at 1M frames)
SLOW_VERSIONS_S = 1.0  # seconds a video's comparing may take before the index report says how to speed it up


def search_stores(
    stores: Sequence[str | os.PathLike[str]],
    *texts: str,
    image: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    videos: Sequence[str] | None = None,
    top: int | None = settings.DEFAULT_TOP,
    threshold: float | None = None,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
    device: str = settings.DEFAULT_DEVICE,
    encoder: Encoder | None = None,
    ocr: Sequence[str] = (),
    said: Sequence[str] = (),
    false_videos: float | None = None,
) -> list[QueryResult]:
    """Answer each query over several stores as one ranked list; each result names its ``store``.
    See :mod:`search.shards`.

    Raises:
        QueryError: the stores were built with different models (or any error of a search).
    """
    images: list[str | os.PathLike[str]] = []
    if image is not None:
        images = [image] if isinstance(image, (str, os.PathLike)) else list(image)
    return ShardedSearcher(stores, device, encoder=encoder).search(
        texts,
        images,
        videos=videos,
        top=top,
        threshold=threshold,
        merge_gap_s=merge_gap_s,
        min_duration_s=min_duration_s,
        ocr=ocr,
        said=said,
        false_videos=false_videos,
    )


class Archive:
    """A video archive in one store folder (``catalog.duckdb``, the vector segments in ``vectors/`` and ``thumbs.bin``).

    Args:
        store: the store folder; None means ``$ARCHIVE_STORE`` or ``./data``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` for the model.
        encoder: an already loaded :class:`~indexer.model.encoder.Encoder` to use (tests and notebooks
            share one); it is used when it is the store's model, and otherwise loaded on first use.

    The model is loaded once, on first use, and kept for later calls.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | None = None,
        device: str = settings.DEFAULT_DEVICE,
        encoder: Encoder | None = None,
    ) -> None:
        self.store = settings.store_dir(store)
        self.device = device
        self._encoder: Encoder | None = encoder
        self._text: TextEncoder | None = None

    def index(
        self,
        paths: Sequence[str | os.PathLike[str]],
        fps: float = settings.DEFAULT_FPS,
        model: str | None = None,
        pretrained: str | None = None,
        batch_size: int = settings.DEFAULT_BATCH,
        progress: ProgressFn | None = None,
        precision: str = settings.DEFAULT_PRECISION,
        shots: str | None = None,
        ray: RayOptions | str | None = None,
        ocr: bool | None = None,
        min_shared: float | None = None,
        speech: bool | None = None,
        sound: bool | None = None,
    ) -> IndexReport:
        """Index video files and folders. See :func:`indexer.run.pipeline.index_paths`.

        ``ray`` runs the per-video step on Ray (:mod:`indexer.run.ray_runner`): ``"local"``, ``"auto"``, an
        address, or :class:`~indexer.run.options.RayOptions`; commits stay in this process.

        ``model``/``pretrained`` default to ``$ARCHIVE_MODEL``/``$ARCHIVE_PRETRAINED``, then the
        store's own, then ViT-B-32 / laion2b_s34b_b79k.

        ``ocr=True`` reads on-screen text into the ``ocr`` table (:mod:`indexer.media.ocr`); the store
        remembers it, and videos indexed before without text get theirs (not re-embedded).
        ``speech=True`` transcribes what is said into the ``speech`` and ``speech_words`` tables
        (:mod:`indexer.media.speech`), beside the picture work; the store remembers it, and videos
        indexed before get theirs from their sound track alone.
        ``sound`` fingerprints each video's sound track for ``--sound`` queries
        (:mod:`indexer.media.sound`; None: ``$ARCHIVE_SOUND``, else on); videos indexed before
        without fingerprints get theirs from their sound alone.

        Every new video is then compared with the archive for shared footage (versions of one
        film, :mod:`search.versions`) into the ``matches`` and ``versions`` tables; ``min_shared``
        sets the seconds of shared footage that group two videos (kept by the store; default 2).
        """
        model = model or settings.env_model()
        pretrained = pretrained or settings.env_pretrained()
        enc = self._encoder if self._encoder is not None and model is None and pretrained is None else None
        options = IndexOptions(
            fps=fps,
            batch_size=batch_size,
            model=model,
            pretrained=pretrained,
            device=self.device,
            precision=precision,
            shots=shots,
            ocr=ocr,
            speech=speech,
            sound=sound,
            ray=RayOptions(address=ray) if isinstance(ray, str) else ray,
        )
        report = index_paths(paths, self.store, options, progress=progress or (lambda _e: None), encoder=enc)
        if report.encoder is not None:
            self._encoder = report.encoder  # the model is loaded once per Archive
        changed = report.indexed_ids + report.text_ids + report.speech_ids
        if changed and Reader(self.store).labels():
            with Writer(self.store) as w:  # label tables follow the new videos and new text (theirs only)
                self._refresh_labels(w, changed)
        if min_shared is not None:
            self._set_min_shared(min_shared)
        if has_catalog(self.store) and settings.versions_enabled():
            self._train_match_ivf(report, progress)
            self._compare_versions(report, progress)
        if has_catalog(self.store):
            self._refresh_image_levels()
        return report

    def _refresh_image_levels(self) -> None:
        """Measure and keep the image rule's levels when the archive changed (:mod:`search.levels`)."""
        try:
            with Writer(self.store) as w:
                levels.refresh(self.store, w)
        except StoreLocked:  # another program is writing: queries measure them until an index run keeps them
            pass

    def _train_match_ivf(self, report: IndexReport, progress: ProgressFn | None) -> None:
        """Once an index run has grown the archive to ``ARCHIVE_MATCH_IVF_FRAMES`` frames, train its
        IVF index (once), so that comparing each new video for shared footage takes a fraction of a
        second instead of a scan of every frame. Queries keep their exact scan below
        ``ARCHIVE_IVF_FRAMES``; later commits give new rows their codes without retraining."""
        if not report.indexed_ids:
            return
        info = Reader(self.store).info()
        if info is None or info.ivf is not None or not ivfmod.match_index_due(info.frames):
            return

        t0 = time.perf_counter()
        step = (
            None
            if progress is None
            # called with 0 done first
            else (lambda done, total, _what=None: progress(Progress("ivf", frames=int(total), done=float(done))))
        )
        try:
            with Writer(self.store) as w:
                w.attach_existing()
                w.layer.train_ivf(progress=step)
        except StoreLocked:  # another program is writing: a later run trains it
            return
        except (StoreError, MemoryError, RuntimeError) as exc:  # the videos are committed: say so and go on
            report.versions_note = (
                f"the IVF index for matching could not be trained ({exc}); new videos are compared "
                "by scanning every frame until a later run or `archive optimize --ivf` trains it."
            )
            return
        report.ivf_trained_s = round(time.perf_counter() - t0, 3)
        report.ivf_frames = info.frames

    def _compare_versions(self, report: IndexReport, progress: ProgressFn | None) -> None:
        """Compare the videos not yet compared (the new ones, and on the first run after an upgrade
        every one) with the archive, and commit their matches (:mod:`search.versions`)."""
        t0 = time.perf_counter()
        todo = Reader(self.store).unmatched_videos()
        if not todo:
            return
        if progress is not None:
            progress(Progress("versions", frames=len(todo)))
        step = (
            None
            if progress is None
            else (lambda done, total: progress(Progress("versions", frames=total, done=float(done))))
        )
        # a few new videos (an add): one catalog connection for the comparing's reads. Not for
        # many: an open read connection holds the catalog's file lock, and a writer in another
        # process waits for it only so long (OPEN_RETRY_S)
        reader = Reader(self.store)
        with reader if len(todo) <= SHARED_READS_VIDEOS else contextlib.nullcontext():
            basis, new, found = versions_mod.compare(reader, todo, progress=step)
        rows = [
            (m.video_a, m.video_b, m.a_start_s, m.a_end_s, m.b_start_s, m.b_end_s, m.score, m.samples) for m in found
        ]
        with Writer(self.store) as w:
            if new:
                w.footage.save_basis(basis.mean, basis.transform, basis.level, basis.candidate_level, basis.vectors)
            w.footage.replace(todo, rows)
        report.versions_compared = len(todo)
        report.matches_found = len(rows)
        report.versions_s = round(time.perf_counter() - t0, 3)
        slow = report.versions_s > SLOW_VERSIONS_S * len(todo)
        info = Reader(self.store).info() if slow else None
        if info is not None and info.ivf is None and info.frames >= 200_000:
            report.versions_note = (
                f"comparing took {report.versions_s:.1f} s: the archive ({info.frames:,} frames) is "
                "scanned in full for each new video; `archive optimize --ivf` gives it an IVF "
                "index (queries of archives past ARCHIVE_IVF_FRAMES use it too), and matching then "
                "takes about 0.2 s a video at 1M frames. From ARCHIVE_MATCH_IVF_FRAMES frames "
                f"({settings.match_ivf_frames():,}) an index run trains one for matching only."
            )

    def _set_min_shared(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ArchiveError(
                f"--min-shared {seconds}: give the seconds of shared footage (0 or more) that make two videos versions."
            )
        Reader(self.store).meta()
        with Writer(self.store) as w:
            w.footage.set_min_shared(seconds)

    def versions(self, videos: Sequence[str] | None = None, min_shared: float | None = None) -> VersionsReport:
        """Versions of the same film: groups of videos that share footage, and (for ``videos``:
        indexed paths, folders or names) their group and the aligned shared segments.

        ``min_shared`` regroups the archive by that many seconds of shared footage, kept for later
        runs (default 2 s). See :mod:`search.versions`.

        Raises:
            QueryError: a video argument matches no indexed video.
        """
        Reader(self.store).meta()
        if min_shared is not None:
            self._set_min_shared(min_shared)
        ids = resolve_scope(self.store, videos) if videos else None
        return versions_mod.report(self.store, ids)

    def matches(self, videos: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every aligned shared segment (``matches`` rows with both videos' paths and names), or those
        of ``videos``."""
        ids = resolve_scope(self.store, videos) if videos else None
        return [versions_mod.segment_dict(r) for r in Reader(self.store).match_rows(ids)]

    def _refresh_labels(self, writer: Writer, video_ids: Sequence[int] | None = None) -> None:
        """Compute label rows (read path) for ``video_ids`` (None: all) and commit them through the
        writer, which holds the lock."""
        rows = labels_mod.label_results(self.store, self._texts(), video_ids)
        writer.labels.replace_results(rows, video_ids)

    def search(
        self,
        *texts: str,
        image: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        videos: str | Sequence[str] | None = None,
        top: int | None = settings.DEFAULT_TOP,
        threshold: float | None = None,
        merge_gap_s: float = 0.0,
        min_duration_s: float = 0.0,
        templates: Sequence[str] | None = None,
        ocr: str | Sequence[str] = (),
        said: str | Sequence[str] = (),
        sound: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
        sound_from: tuple[str, float, float] | Sequence[tuple[str, float, float]] = (),
        false_videos: float | None = None,
    ) -> list[QueryResult]:
        """Answer each text (and each example image, each ``ocr`` phrase written on screen and each
        ``said`` phrase spoken, each ``sound`` file heard and each ``sound_from`` stretch
        ``(video, start_s, end_s)`` of an indexed video's sound): one :class:`QueryResult` per
        query. ``image``, ``videos``, ``ocr``, ``said``, ``sound`` and ``sound_from`` each take one
        value or a list.

        ``templates`` replaces the prompt templates of text queries (each with one ``{}``).
        ``false_videos``: example images may be reported present, across the archive, in at most
        this many videos per query where their footage is not (default: 1 video in 1,000).
        See :meth:`search.query.Searcher.search`.
        """
        images: list[str | os.PathLike[str]] = []
        if image is not None:
            images = [image] if isinstance(image, (str, os.PathLike)) else list(image)
        videos = [videos] if isinstance(videos, str) else videos
        ocr = [ocr] if isinstance(ocr, str) else ocr
        said = [said] if isinstance(said, str) else said
        sound = [sound] if isinstance(sound, (str, os.PathLike)) else list(sound)
        sounds = [query_from_file(f) for f in sound]  # decoded here, not by the read path
        sound_from = [sound_from] if len(sound_from) == 3 and isinstance(sound_from[0], str) else list(sound_from)  # type: ignore[list-item]
        searcher = Searcher(
            self.store, self.device, encoder=self._loaded_encoder(), **({"templates": templates} if templates else {})
        )
        results = searcher.search(
            texts,
            images,
            videos=videos,
            top=top,
            threshold=threshold,
            merge_gap_s=merge_gap_s,
            min_duration_s=min_duration_s,
            ocr=ocr,
            said=said,
            sound=sounds,
            sound_from=sound_from,  # type: ignore[arg-type]
            false_videos=false_videos,
        )
        self._encoder = searcher.loaded_encoder or self._encoder  # kept for later calls
        return results

    def like_video(
        self, path: str | os.PathLike[str], videos: Sequence[str] | None = None, top: int | None = settings.DEFAULT_TOP
    ) -> QueryResult:
        """Query by video: which indexed videos contain this file's footage, and where (each
        segment also gives its time range in the file). An indexed file's stored vectors are used;
        another is decoded and embedded once, and the store is not changed. See
        :func:`search.versions.like_video`.

        Raises:
            QueryError: the file is missing or not a decodable video, or a ``videos`` argument
                matches no indexed video.
        """
        Reader(self.store).meta()
        ids = resolve_scope(self.store, videos) if videos else None

        def embed(file: str, fps: float) -> VideoRecord:  # a file not indexed: decoded here, not by the read path
            if self._loaded_encoder() is None:
                self._encoder = Searcher(self.store, self.device).encoder
            return embed_video(file, self._encoder, fps=fps)

        return versions_mod.like_video(self.store, path, embed, ids, top)

    def label_add(
        self,
        name: str,
        prompts: Sequence[str] = (),
        threshold: float | None = None,
        ocr: Sequence[str] = (),
        said: Sequence[str] = (),
    ) -> int:
        """Save a label (a category) and materialise its answers for every video.

        Args:
            name: the label's name (no commas).
            prompts: texts that describe it (default: the name itself).
            threshold: a plain cosine cut instead of the presence rule.
            ocr: written words that show it too (a store indexed with ``--ocr``): it is present
                where the picture or the words are; each segment says which found it.
            said: spoken phrases that show it too (a store indexed with ``--speech``): present
                where they are said as well (``found_by`` then names ``speech``).

        Returns:
            How many videos show it.
        """
        name = (name or "").strip()
        if not name or "," in name:
            raise ArchiveError(f"label name {name!r}: give a non-empty name without commas.")
        prompts = [p.strip() for p in prompts if p and p.strip()] or [name]
        words = [w.strip() for w in ocr if w and w.strip()]
        for w in words:
            check_phrase(w)
        phrases = [p.strip() for p in said if p and p.strip()]
        for p in phrases:
            check_said(p)
        Reader(self.store).meta()  # StoreNotFound before anything else
        self._texts()  # ModelLoadError before the label is saved
        with Writer(self.store) as w:
            w.labels.save(name, prompts, threshold, words, phrases)
            self._refresh_labels(w)
        return next(lab.videos_present for lab in self.labels() if lab.name == name)

    def label_remove(self, name: str) -> None:
        """Remove a saved label and its rows in ``segments`` and ``video_labels``."""
        Reader(self.store).meta()
        with Writer(self.store) as w:
            if not w.labels.remove(name):
                raise ArchiveError(f"no label named {name!r}; see `archive label list`.")

    def label_calibrate(
        self, name: str, truth: str | os.PathLike[str], target_precision: float | None = None
    ) -> Calibration:
        """Set a label's threshold from labelled truth and recompute its answers everywhere.

        The threshold is the plain cosine cut of best F1 on the truth file's rows for
        ``label:NAME`` (or for its name or prompts), or the lowest cut reaching
        ``target_precision``. The ``labels`` table records it with the precision and recall it
        measured, the videos judged and when; ``video_labels.rule`` becomes ``calibrated``.

        Raises:
            QueryError: no such label, no rows for it, fewer than 3 present videos in the truth, or
                no cut reaching the target precision.
        """
        Reader(self.store).meta()
        cal = calibrate(self._searcher(), name, truth, target_precision)
        with Writer(self.store) as w:
            w.labels.calibrate(
                name,
                cal.threshold,
                LabelCalibration(
                    cal.precision, cal.recall, cal.judged, cal.positives, target_precision, cal.truth, None
                ),
            )
            self._refresh_labels(w)
        return cal

    def evaluate(
        self,
        truth: str | os.PathLike[str],
        threshold: float | None = None,
        target_precision: float = evaluate_mod.DEFAULT_TARGET_PRECISION,
    ) -> EvalReport:
        """Measure the answers against a truth file (``video,query,start_s,end_s``).

        See :mod:`search.eval.evaluate` for what is measured and :mod:`search.eval.truth` for the file.
        Bad rows do not stop the run: each is one line in ``report.problems``.
        """
        searcher = self._searcher()
        report = evaluate_mod.evaluate(searcher, truth, threshold=threshold, target_precision=target_precision)
        self._encoder = searcher.loaded_encoder or self._encoder
        return report

    def _searcher(self) -> Searcher:
        return Searcher(
            self.store,
            self.device,
            encoder=self._loaded_encoder(),
            text_encoder=self._text
            if self._text is not None and self._text.spec == Reader(self.store).spec()
            else None,
        )

    def labels(self) -> list[LabelSummary]:
        """Saved labels, with how many videos show each and for how many seconds in all."""
        return labels_mod.list_labels(self.store)

    def classify(self, videos: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> list[VideoClass]:
        """Which saved label best describes each video, with each label's share of screen time."""
        return labels_mod.classify(self.store, self._texts(), videos, labels)

    def check(self, repair: bool = False) -> CheckReport:
        """Verify that the catalog and every vector segment agree; each problem says how to fix it.
        ``repair`` first does what the writer does on opening a store: orphan segment files are
        deleted, damaged ones moved aside, and videos whose vectors are lost dropped (index their
        folders again to re-embed them)."""
        return check_store(self.store, repair=repair)

    def optimize(self, ivf: bool = False, progress: Any = None, retrain: bool = False) -> MergeReport:
        """Merge the vector segments into as few as possible, drop dead rows (replaced and removed
        videos) and rewrite fp32 segments as fp16. ``ivf`` has large-archive queries rank candidates
        through an IVF index (see the docs' "Scaling out" page): the one an index run trained for
        matching versions when it fits the archive's size, else a new one (``retrain``: always a
        new one); an existing one is retrained once the archive has grown 4 times past it.
        Searches keep working meanwhile."""
        Reader(self.store).meta()  # StoreNotFound before taking the lock
        with Writer(self.store) as w:
            w.attach_existing()
            return w.layer.optimize(train=True if ivf or retrain else None, progress=progress, retrain=retrain)

    def prune(self, dry_run: bool = False) -> list[str]:
        """Remove indexed videos whose files are gone; returns their paths."""
        gone = prune(self.store, dry_run)
        if gone and not dry_run:
            self._refresh_image_levels()
        return gone

    def sql(self, query: str) -> SqlResult:
        """Run one read-only SQL statement on the catalog; ``clip_score(frame_id, 'text')`` is available."""
        return run_sql(self.store, query, encoder=self._texts)

    def info(self) -> StoreInfo:
        """Videos, frames, seconds indexed, model, weights, dimension and bytes on disk."""
        return Reader(self.store).info()

    def _texts(self) -> Encoder | TextEncoder:
        """What embeds texts for the store: its loaded model, else the numpy text tower (no torch),
        else the model, loaded once."""
        enc = self._loaded_encoder()
        if enc is not None:
            return enc
        if self._text is None or self._text.spec != Reader(self.store).spec():
            self._text = TextEncoder.open(Reader(self.store).spec())
        if self._text is not None:
            return self._text
        self._encoder = Searcher(self.store, self.device).encoder
        return self._encoder

    def _loaded_encoder(self) -> Encoder | None:
        if self._encoder is None:
            return None
        return self._encoder if self._encoder.spec == Reader(self.store).spec() else None
