"""Text or image -> vector -> one pass over the stored vectors in scope -> ranked per-video answers.

How "present" is decided is :mod:`search.presence`'s rule; ``threshold=`` replaces it with a plain
cosine cut.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from indexer import settings
from indexer.errors import QueryError
from indexer.model import background
from indexer.model.encoder import Encoder, TextEncoder
from indexer.store import CATALOG, VECTORS, FrameTable, Reader

from . import levels, presence
from .candidates import IvfRanker
from .presence import Rule
from .results import QueryResult, VideoResult
from .said import check_heard, check_said, search_said
from .scan import Scanner, background_term
from .sound import SoundQuery, query_from_video, search_sound
from .timeline import summarise, video_bounds
from .written import check_phrase, search_text

DEFAULT_TOP = settings.DEFAULT_TOP


def resolve_scope(store_dir: str | os.PathLike[str], videos: Sequence[str] | None) -> list[int] | None:
    """Video ids for ``--video`` arguments: an indexed file's path, a folder above indexed files,
    or a file name. None means every video.

    Raises:
        QueryError: an argument matches no indexed video.
    """
    if not videos:
        return None
    refs = Reader.of(store_dir).video_refs()
    ids: list[int] = []
    for v in videos:
        absv = os.path.abspath(os.path.expanduser(v))
        prefix = absv.rstrip(os.sep) + os.sep
        hit = [r.video_id for r in refs if r.path == absv or r.path.startswith(prefix) or r.name == v]
        if not hit:
            raise QueryError(
                f'--video {v}: no indexed video has that path, folder or name (see `archive sql "SELECT path FROM videos"`).'
            )
        ids.extend(hit)
    return sorted(set(ids))


def rules_for(
    kinds: Sequence[str],
    table: FrameTable,
    threshold: float | None = None,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
    calib: presence.ImageCalibration | None = None,
    rate: float = presence.IMAGE_RATE,
) -> list[Rule]:
    """The rule of each query: the text rule, the image rule at ``calib`` (the archive's levels,
    :mod:`search.levels`; None: measured on ``table`` alone) for at most ``rate`` false videos per
    video, or a plain cut."""
    if threshold is not None:
        return [Rule("threshold", threshold, threshold, min_duration_s, merge_gap_s) for _ in kinds]
    if "image" in kinds and calib is None:
        calib = presence.calibrate_images(
            table.vectors, table.row, table.shot_id, table.blank, table.video_id, table.ts_s
        )
    out = []
    for k in kinds:
        if k == "text":
            out.append(Rule("text", presence.TEXT_ENTER, presence.TEXT_STAY, min_duration_s, merge_gap_s))
        else:
            assert calib is not None
            cal = calib
            level = cal.threshold(rate=rate)
            out.append(
                Rule(
                    "image",
                    level,
                    level,
                    min_duration_s,
                    merge_gap_s,
                    per_video=lambda shots, cal=cal: cal.levels(shots, rate),  # type: ignore[misc]
                    rate=rate,
                )
            )
    return out


def strengths(
    raw: np.ndarray,
    bg_lse: np.ndarray | None,
    rule: Rule,
    shot_id: np.ndarray,
    shot_len_s: np.ndarray,
    blank: np.ndarray,
) -> np.ndarray:
    """Per-frame match strength for one query, at shot level (see :func:`presence.shot_level`)."""
    s = presence.text_probability(raw, bg_lse) if rule.kind == "text" and bg_lse is not None else raw
    return presence.shot_level(s, shot_id, shot_len_s, blank)


def _order(
    col: np.ndarray,
    bg_lse: np.ndarray | None,
    rule: Rule,
    blank: np.ndarray,
    starts: np.ndarray,
    enter: np.ndarray | float | None = None,
) -> np.ndarray:
    """Videos (indices into ``starts``) best first: those that match, then by best strength, then
    by best raw score.

    One vectorised pass: a video's best shot-level strength is its best non-blank frame's
    strength, and the text rule's probability rises with ``100 * score - background``, so the
    maximum is taken before the probability. Strengths are compared by that logit, not by the
    probability: a probability of a strong match rounds to 1.0, and ties there would otherwise be
    broken by the raw score, an order the IVF index's candidates (which follow the logit) do not
    know (:mod:`.candidates`).
    """
    if not len(starts):
        return np.zeros(0, np.int64)
    text = rule.kind == "text" and bg_lse is not None
    z = np.asarray(col, np.float64)
    if text:
        assert bg_lse is not None  # (``text`` says so)
        z = presence.LOGIT_SCALE * z - bg_lse
    z = np.where(blank, -np.inf, z)
    best_z = np.maximum.reduceat(z, starts)
    best_st = presence.text_probability(best_z, 0.0, 1.0) if text else best_z
    best_st = np.where(np.isneginf(best_z), -np.inf, best_st)
    best_raw = np.maximum.reduceat(col, starts)
    hits = (best_st >= (rule.enter if enter is None else enter)).astype(np.int8)
    return np.lexsort((-best_raw, -np.nan_to_num(best_z, neginf=-1e9), -hits))


Exact = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]


def rank(
    table: FrameTable,
    raw: np.ndarray,
    bg_lse: np.ndarray | None,
    labels: Sequence[str],
    kinds: Sequence[str],
    rules: Sequence[Rule],
    top: int | None = DEFAULT_TOP,
    exact: Exact | None = None,
    shots: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[QueryResult]:
    """Per-video answers for each query from its raw scores.

    Args:
        table: frames in scope.
        raw: ``(n_frames, n_queries)`` cosine scores.
        bg_lse: per frame, :func:`presence.background_lse` of the background prompts' scores.
        labels, kinds, rules: per query, its label, kind and rule.
        top: keep this many videos per query, best first (None: all).
        exact: when ``raw`` and ``bg_lse`` are approximate (bf16), a function giving the exact
            ``(raw, bg_lse)`` of the frames at given positions. The best ``2 * top + 10`` videos
            by the approximate scores are then rescored exactly, re-ranked, and cut to ``top``.
        shots: each video's content shots (:func:`presence.content_shots` of the whole archive;
            default: counted in ``table``, right when it holds whole videos), for the image
            rule's per-video levels.
    """
    starts, stops = video_bounds(table.video_id)
    if shots is None and any(r.per_video is not None for r in rules):
        shots = presence.content_shots(table.video_id, table.shot_id, table.blank)
    n_shots = presence.shots_of(table.video_id[starts], shots) if shots is not None else None
    out: list[QueryResult] = []
    for j, (label, kind, rule) in enumerate(zip(labels, kinds, rules)):
        col = raw[:, j]
        res = QueryResult(
            query=label,
            kind=kind,
            threshold=float(rule.enter),
            rule=rule.describe(),
            videos_searched=len(starts),
            frames_searched=len(table),
        )
        enter = rule.levels(n_shots) if n_shots is not None else np.full(len(starts), rule.enter)
        order = _order(col, bg_lse, rule, table.blank, starts, enter)
        if exact is not None and len(order):
            cand = order if top is None else order[: 2 * top + 10]
            idx = np.concatenate([np.arange(starts[g], stops[g]) for g in cand])
            ex_raw, ex_lse = exact(idx)
            c_stops = np.cumsum(stops[cand] - starts[cand])
            c_starts = np.concatenate([[0], c_stops[:-1]]).astype(np.int64)
            sub = _order(ex_raw[:, j], ex_lse, rule, table.blank[idx], c_starts, enter[cand])
            picks = [
                (
                    int(cand[k]),
                    ex_raw[c_starts[k] : c_stops[k], j],
                    None if ex_lse is None else ex_lse[c_starts[k] : c_stops[k]],
                )
                for k in sub
            ]
        else:
            picks = [
                (int(g), col[starts[g] : stops[g]], None if bg_lse is None else bg_lse[starts[g] : stops[g]])
                for g in order
            ]
        for g, c, lse in picks[:top] if top is not None else picks:
            a, b = starts[g], stops[g]
            st = strengths(c, lse, rule, table.shot_id[a:b], table.shot_len_s[a:b], table.blank[a:b])
            tl = summarise(
                table.ts_s[a:b],
                table.end_s[a:b],
                st,
                float(enter[g]),
                float(enter[g]) - (rule.enter - rule.stay),
                rule.merge_gap_s,
                rule.min_duration_s,
                scores=c,
                from_s=table.start_s[a:b],
            )
            v = table.videos[int(table.video_id[a])]
            res.results.append(
                VideoResult(
                    video_id=int(table.video_id[a]),
                    video=v["path"],
                    present=tl.present,
                    first_seen_s=tl.first_seen_s,
                    duration_s=tl.duration_s,
                    segments=tl.segments,
                    best_s=tl.best_s,
                    score=tl.score,
                    video_duration_s=float(v["duration_s"] or 0.0),
                    match=float(np.max(st)),
                    best_frame_id=int(table.frame_id[a + tl.best_index]) if tl.best_index >= 0 else None,
                    segment_frame_ids=[int(table.frame_id[a + sg.peak_index]) for sg in tl.segments],
                    level=float(enter[g]) if rule.per_video is not None else None,
                )
            )
        out.append(res)
    return out


def _store_stamp(store_dir: Path) -> tuple[Any, ...]:
    """Changes whenever a commit touches the catalog or the vectors."""
    out: list[tuple[str, int | None, int | None]] = []
    for name in (CATALOG, CATALOG + ".wal", VECTORS):
        try:
            st = (store_dir / name).stat()
            out.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


class Searcher:
    """Answers queries over one store. Loads the store's model once, on first use.

    Example::

        s = Searcher("data")
        [res] = s.search(["a beach"])
        for v in res.results:
            print(v.video, v.present, v.first_seen_s, v.duration_s)
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        device: str = settings.DEFAULT_DEVICE,
        encoder: Encoder | None = None,
        templates: Sequence[str] = presence.TEMPLATES,
        backgrounds: Sequence[str] = presence.BACKGROUND_PROMPTS,
        exact: bool = False,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.exact = exact  # rank large archives from exact fp32 scores too (slower; for checks)
        self.device = device
        self._encoder = encoder
        # what embeds texts when no whole model is loaded (None: looked for on first use; False: none)
        self._text_encoder: TextEncoder | Literal[False] | None = text_encoder
        self.templates = tuple(templates)
        self.backgrounds = tuple(backgrounds)
        self._bg: np.ndarray | None = None
        self._table: tuple[Any, list[int] | None, Scanner] | None = None
        self._lse: tuple[FrameTable, np.ndarray] | None = None
        self._shots: tuple[FrameTable, tuple[np.ndarray, np.ndarray]] | None = None
        self._ivf: tuple[FrameTable, Any] | None = None
        self._levels: tuple[Any, presence.ImageCalibration] | None = None
        self._text_cache: dict[str, np.ndarray] = {}
        self.last_timings: dict[str, float] = {}
        for t in self.templates:
            if t.count("{}") != 1:
                raise QueryError(f"prompt template {t!r} must contain one {{}} where the query goes.")

    def frames(self, scope: list[int] | None) -> FrameTable:
        """The frame table for ``scope``, kept between calls until the store changes on disk."""
        return self.scanner(scope).table

    def scanner(self, scope: list[int] | None) -> Scanner:
        """A scanner over the frame table for ``scope`` (kept, with its bf16 copy, until the store
        changes on disk)."""
        key = _store_stamp(self.store_dir)
        if self._table is not None and self._table[0] == key and self._table[1] == scope:
            return self._table[2]
        scanner = Scanner(Reader.of(self.store_dir).frames(scope))
        self._table = (key, scope, scanner)
        return scanner

    def ivf_ranker(self, scanner: Scanner) -> "IvfRanker | None":
        """The IVF index of the whole archive's frame table, loaded once per table; None when the
        archive is below ``ARCHIVE_IVF_FRAMES`` or has no IVF index (then queries scan)."""
        table = scanner.table
        if table.ivf is None or len(table) < settings.ivf_frames():
            return None
        if self._ivf is None or self._ivf[0] is not table:
            self._ivf = (table, IvfRanker(self.store_dir, table))
        return self._ivf[1]

    def image_levels(self, scope: list[int] | None = None) -> presence.ImageCalibration:
        """The image rule's levels of the whole archive (kept in the store by the index run, else
        measured on it; :mod:`search.levels`), whatever the scope; kept until the store changes."""
        key = _store_stamp(self.store_dir)
        if self._levels is None or self._levels[0] != key:
            whole = (lambda: self.frames(None)) if scope is None else None
            self._levels = (key, levels.image_levels(self.store_dir, whole))
        return self._levels[1]

    def content_shots(self, table: FrameTable) -> tuple[np.ndarray, np.ndarray]:
        """Each video's content shots in ``table`` (:func:`presence.content_shots`), once per table."""
        if self._shots is None or self._shots[0] is not table:
            self._shots = (table, presence.content_shots(table.video_id, table.shot_id, table.blank))
        return self._shots[1]

    def background_lse(self, scanner: Scanner) -> np.ndarray:
        """Per-frame background term of the text rule: the one stored at index time when it was
        computed as this searcher would (same model, weights, precision and prompts), else
        computed once per frame table (exactly)."""
        table = scanner.table
        if self._lse is None or self._lse[0] is not table:
            self._lse = (table, background_term(scanner, self.background_key(), self.background_vectors))
        return self._lse[1]

    def background_key(self) -> str | None:
        """The key a stored background term must have to be used here (None: never use one)."""
        if tuple(self.backgrounds) != tuple(presence.BACKGROUND_PROMPTS):
            return None
        enc = self.text_encoder
        return background.background_key(enc.spec.name, enc.spec.pretrained, enc.text_precision)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's template-ensemble unit vector; recent ones are remembered."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            vecs = presence.ensemble([[t] for t in todo], self.text_encoder.encode_texts, self.templates)
            for t, v in zip(todo, vecs):
                self._text_cache[t] = v
            while len(self._text_cache) > 512:
                self._text_cache.pop(next(iter(self._text_cache)))
        return np.stack([self._text_cache[t] for t in texts])

    def background_vectors(self) -> np.ndarray:
        """The background prompts' unit vectors (the "something else" class), embedded once."""
        if self._bg is None:
            self._bg = self.text_encoder.encode_fixed(list(self.backgrounds))
        return self._bg

    @property
    def encoder(self) -> Encoder:
        """The store's whole model (image and text towers), loaded on first use."""
        if self._encoder is None:
            spec = Reader.of(self.store_dir).spec()
            self._encoder = Encoder.load(spec.name, spec.pretrained, self.device)
        return self._encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The whole model if this searcher has loaded it (or was given it), else None."""
        return self._encoder

    @property
    def text_encoder(self) -> Encoder | TextEncoder:
        """What embeds texts: the whole model when it is loaded, else the numpy text tower when
        this machine has its export (no torch is imported), else the whole model."""
        if self._encoder is not None:
            return self._encoder
        if self._text_encoder is None:
            self._text_encoder = TextEncoder.open(Reader.of(self.store_dir).spec()) or False
        return self._text_encoder or self.encoder

    def search(
        self,
        texts: Sequence[str] = (),
        images: Sequence[str | os.PathLike[str]] = (),
        videos: Sequence[str] | None = None,
        top: int | None = DEFAULT_TOP,
        threshold: float | None = None,
        merge_gap_s: float = 0.0,
        min_duration_s: float = 0.0,
        ocr: Sequence[str] = (),
        said: Sequence[str] = (),
        sound: Sequence[SoundQuery] = (),
        sound_from: Sequence[tuple[str, float, float]] = (),
        false_videos: float | None = None,
    ) -> list[QueryResult]:
        """Answer text, image, written-word, spoken-word and example-sound queries; one
        :class:`QueryResult` per query: the texts, then the images, then the ``ocr`` phrases, then
        the ``said`` phrases, then the ``sound`` files, then the ``sound_from`` stretches.

        Args:
            texts: free-text queries ("a beach", "football").
            images: example image files (query by example).
            ocr: words written on screen ("drink responsibly"), matched in the ``ocr`` table
                (:mod:`search.written`); ``threshold``, ``merge_gap_s`` and ``min_duration_s``
                do not apply to them.
            said: phrases spoken ("just do it"), matched word by word in the ``speech_words``
                table (:mod:`search.said`); like ``ocr``, the cut and the segment options do not
                apply to them.
            sound: query sounds, fingerprinted (:func:`archive.sound_query.query_from_file` makes
                one of a sound or video file): where each plays, by landmark fingerprints
                (:mod:`search.sound`).
            sound_from: ``(video, start_s, end_s)``: a stretch of an indexed video's sound as the
                query (its fingerprints, from the catalog).
            videos: limit to these indexed files, folders or names (None: the whole archive).
            top: videos per query, best first (None: all).
            threshold: a plain cosine cut instead of the presence rule (:mod:`search.presence`).
            merge_gap_s: join segments at most this many seconds apart.
            min_duration_s: drop segments shorter than this.
            false_videos: example images: at most this many videos per query, across the
                archive, where an example not in the archive is reported present (default: at
                most 1 video in 1,000, :data:`presence.IMAGE_RATE`, whatever the archive's size).

        Raises:
            QueryError: no query, an empty text, a missing image, a phrase without letters or digits,
                an unknown --video, ``said`` phrases on a store with no transcribed speech.
            StoreNotFound: no archive at ``store_dir``.
        """
        texts = list(texts)
        image_files = [str(i) for i in images]
        ocr = list(ocr)
        said = list(said)
        sounds = list(sound)
        settings.check_queries(
            texts, image_files, ocr + said + [q.label for q in sounds] + [v for v, _, _ in sound_from]
        )
        settings.check_top(top)
        settings.check_seconds("--merge-gap", merge_gap_s)
        settings.check_seconds("--min-duration", min_duration_s)
        if false_videos is not None and not (0 < false_videos < float("inf")):
            raise QueryError(
                f"--false-videos {false_videos}: give how many false videos per query to allow "
                "across the archive, a number above 0 (e.g. 0.01)."
            )
        if ocr:
            for phrase in ocr:
                check_phrase(phrase)
        for phrase in said:
            check_said(phrase)
        heard_results: list[QueryResult] = []
        if said or sounds or sound_from:  # first (their errors before any picture work), on one catalog connection
            with Reader(self.store_dir) as reader:
                if said:
                    check_heard(reader)
                scope = resolve_scope(reader, videos)
                for v, a, b in sound_from:
                    try:
                        (vid,) = resolve_scope(reader, [v]) or [-1]
                    except ValueError:
                        raise QueryError(f"--sound-from {v}: names several indexed videos; give its path.") from None
                    except QueryError as exc:
                        raise QueryError(str(exc).replace("--video", "--sound-from", 1)) from None
                    sounds.append(query_from_video(reader, v, vid, a, b))
                if said:
                    heard_results = search_said(reader, said, scope, top)
                if sounds:
                    heard_results += search_sound(reader, sounds, scope, top)
        else:
            scope = resolve_scope(self.store_dir, videos)
        results = (
            self._search_pictures(texts, image_files, scope, top, threshold, merge_gap_s, min_duration_s, false_videos)
            if texts or image_files
            else []
        )
        if ocr:
            results += search_text(self.store_dir, ocr, scope, top)
        return results + heard_results

    def _search_pictures(
        self,
        texts: list[str],
        images: list[str],
        scope: list[int] | None,
        top: int | None,
        threshold: float | None,
        merge_gap_s: float,
        min_duration_s: float,
        false_videos: float | None = None,
    ) -> list[QueryResult]:
        """The text and image queries of :meth:`search`, checked already."""
        t0 = time.perf_counter()
        scanner = self.scanner(scope)
        table = scanner.table
        t1 = time.perf_counter()
        enc = self.encoder if images else self.text_encoder  # a text query needs no image tower
        vecs = []
        if texts:
            vecs.append(self.text_vectors(texts))
        for i in images:
            vecs.append(self.encoder.encode_image_file(i)[None, :])  # the whole model: ``enc`` when there are images
        allv = np.concatenate(vecs) if vecs else np.zeros((0, enc.dim), np.float32)
        bg_lse = self.background_lse(scanner) if texts else None
        t2 = time.perf_counter()
        kinds = ["text"] * len(texts) + ["image"] * len(images)
        labels = texts + [f"image:{Path(i).name}" for i in images]
        ranker = None if self.exact or scope is not None or top is None else self.ivf_ranker(scanner)
        calib = self.image_levels(scope) if "image" in kinds and threshold is None else None
        rate = calib.rate_for(false_videos) if calib is not None else presence.IMAGE_RATE
        shots = self.content_shots(table) if calib is not None else None
        if ranker is not None:  # a large archive: candidates from the IVF index, rescored exactly
            assert top is not None  # a ranker is made only for a top
            idx = ranker.candidates(
                allv,
                [k == "text" and threshold is None for k in kinds],
                bg_lse,
                settings.ivf_candidate_videos(top),
                scanner.scores_at,
            )
            sub = table.subset(idx)
            raw = scanner.scores_at(idx, allv)
            t3 = time.perf_counter()
            rules = rules_for(kinds, table, threshold, merge_gap_s, min_duration_s, calib, rate)
            results = rank(sub, raw, None if bg_lse is None else bg_lse[idx], labels, kinds, rules, top, None, shots)
            for res in results:
                res.videos_searched, res.frames_searched = len(ranker.starts), len(table)
        else:
            raw = scanner.scores(allv) if self.exact else scanner.fast_scores(allv)
            t3 = time.perf_counter()
            rules = rules_for(kinds, table, threshold, merge_gap_s, min_duration_s, calib, rate)
            exact = None
            if not self.exact and not scanner.last_exact:

                def exact(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
                    return scanner.scores_at(idx, allv), None if bg_lse is None else bg_lse[idx]

            results = rank(table, raw, bg_lse, labels, kinds, rules, top, exact, shots)
        self.last_timings = {"load": t1 - t0, "embed": t2 - t1, "scan": t3 - t2, "timeline": time.perf_counter() - t3}
        for res, text in zip(results, texts):
            if enc.too_long(text):
                res.warnings.append(
                    f"the query is longer than the model's {enc.context_length}-token context; only its start was used."
                )
        if calib is not None:
            for res in results:
                if res.kind == "image":
                    line = calib.overlap_line()
                    res.warnings += [line] if line else []
                    res.expected_false = calib.expected_false(rate)
                    if res.expected_false is None:
                        res.warnings.append(
                            "this archive has too few shots to measure how often unrelated footage reaches a "
                            "video's best shot: the level for single pairs of samples stands in, and no rate of "
                            "false videos is promised."
                        )
        return results
