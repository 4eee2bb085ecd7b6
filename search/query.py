"""Text or image -> vector -> one pass over the stored vectors in scope -> ranked per-video answers.

How "present" is decided: a frame matches a query when its cosine score is at least the
threshold; a video is present when any of its frames matches. The default threshold depends on
the kind of query (``DEFAULT_TEXT_THRESHOLD`` for text, ``DEFAULT_IMAGE_THRESHOLD`` for an example
image) and is calibrated for pretrained CLIP weights; ``threshold=`` overrides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer.encoder import Encoder
from indexer.errors import QueryError
from indexer.store import FrameTable, load_frames, read_connection, store_spec

from .timeline import Segment, summarise

DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_IMAGE_THRESHOLD = 0.80
DEFAULT_TOP = 20


@dataclass
class VideoResult:
    """One video's answer to one query. Times in seconds from the start of the video."""

    video_id: int
    video: str  # path as indexed
    present: bool
    first_seen_s: float | None
    duration_s: float  # total time on screen
    segments: list[Segment]
    best_s: float | None  # time of the best-matching frame
    score: float  # best frame's cosine score
    video_duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "video_id": self.video_id,
            "present": self.present,
            "first_seen_s": _r(self.first_seen_s),
            "duration_s": _r(self.duration_s),
            "segments": [
                {"start_s": _r(s.start_s), "end_s": _r(s.end_s), "peak_score": _r(s.peak_score, 4)}
                for s in self.segments
            ],
            "best_s": _r(self.best_s),
            "score": _r(self.score, 4),
            "video_duration_s": _r(self.video_duration_s),
        }


@dataclass
class QueryResult:
    """All videos' answers to one query, best first."""

    query: str
    kind: str  # "text" or "image"
    threshold: float
    results: list[VideoResult] = field(default_factory=list)
    videos_searched: int = 0
    frames_searched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "kind": self.kind,
            "threshold": self.threshold,
            "results": [r.to_dict() for r in self.results],
        }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def resolve_scope(store_dir: str | os.PathLike[str], videos: Sequence[str] | None) -> list[int] | None:
    """Video ids for ``--video`` arguments: an indexed file's path, a folder above indexed files,
    or a file name. None means every video.

    Raises:
        QueryError: an argument matches no indexed video.
    """
    if not videos:
        return None
    with read_connection(store_dir) as con:
        rows = con.execute("SELECT video_id, path, name FROM videos").fetchall()
    ids: list[int] = []
    for v in videos:
        absv = os.path.abspath(os.path.expanduser(v))
        prefix = absv.rstrip(os.sep) + os.sep
        hit = [vid for vid, path, name in rows if path == absv or path.startswith(prefix) or name == v]
        if not hit:
            raise QueryError(f"--video {v}: no indexed video has that path, folder or name (see `archive sql \"SELECT path FROM videos\"`).")
        ids.extend(hit)
    return sorted(set(ids))


def rank(
    table: FrameTable,
    queries: np.ndarray,
    labels: Sequence[str],
    kinds: Sequence[str],
    thresholds: Sequence[float],
    top: int | None = DEFAULT_TOP,
) -> list[QueryResult]:
    """Score every frame in ``table`` against every query in one pass, then build timelines.

    Args:
        table: frames in scope with their vectors.
        queries: ``(q, dim)`` unit vectors.
        labels, kinds, thresholds: per query, its text (or image name), kind and threshold.
        top: keep this many videos per query (None: all).
    """
    scores = table.scores(queries) if len(queries) else np.zeros((len(table), 0), np.float32)
    vid = table.video_id
    # Group boundaries: frames are sorted by video, so each video is one contiguous slice.
    bounds = np.flatnonzero(np.diff(vid)) + 1 if len(vid) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(vid) else np.zeros(0, np.int64)
    stops = np.concatenate([bounds, [len(vid)]]).astype(np.int64) if len(vid) else np.zeros(0, np.int64)
    out: list[QueryResult] = []
    for j, (label, kind, thr) in enumerate(zip(labels, kinds, thresholds)):
        col = scores[:, j]
        best = np.maximum.reduceat(col, starts) if len(starts) else np.zeros(0)
        hits = np.maximum.reduceat((col >= thr).astype(np.int8), starts) if len(starts) else np.zeros(0)
        # present first, then by best score
        order = np.lexsort((-best, -hits))
        if top is not None:
            order = order[:top]
        res = QueryResult(query=label, kind=kind, threshold=float(thr), videos_searched=len(starts), frames_searched=len(vid))
        for g in order:
            a, b = starts[g], stops[g]
            tl = summarise(table.ts_s[a:b], table.end_s[a:b], col[a:b], thr)
            v = table.videos[int(vid[a])]
            res.results.append(
                VideoResult(
                    video_id=int(vid[a]), video=v["path"], present=tl.present, first_seen_s=tl.first_seen_s,
                    duration_s=tl.duration_s, segments=tl.segments, best_s=tl.best_s, score=tl.score,
                    video_duration_s=float(v["duration_s"] or 0.0),
                )
            )
        out.append(res)
    return out


class Searcher:
    """Answers queries over one store. Loads the store's model once, on first use.

    Example::

        s = Searcher("data")
        [res] = s.search(["a beach"])
        for v in res.results:
            print(v.video, v.present, v.first_seen_s, v.duration_s)
    """

    def __init__(self, store_dir: str | os.PathLike[str], device: str = "auto", encoder: Encoder | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.device = device
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            spec = store_spec(self.store_dir)
            self._encoder = Encoder.load(spec.name, spec.pretrained, self.device)
        return self._encoder

    def search(
        self,
        texts: Sequence[str] = (),
        images: Sequence[str | os.PathLike[str]] = (),
        videos: Sequence[str] | None = None,
        top: int | None = DEFAULT_TOP,
        threshold: float | None = None,
    ) -> list[QueryResult]:
        """Answer text and/or image queries; one :class:`QueryResult` per query, in order.

        Args:
            texts: free-text queries ("a beach", "football").
            images: example image files (query by example).
            videos: limit to these indexed files, folders or names (None: the whole archive).
            top: videos per query, best first (None: all).
            threshold: the score at which a frame matches (None: the default for the query kind).

        Raises:
            QueryError: no query, an empty text, a missing image, an unknown --video.
            StoreNotFound: no archive at ``store_dir``.
        """
        texts = list(texts)
        images = [str(i) for i in images]
        if not texts and not images:
            raise QueryError("nothing to search for: give a text query, or --image FILE.")
        for t in texts:
            if not t.strip():
                raise QueryError("empty query text: give words to search for, or --image FILE.")
        for i in images:
            if not Path(i).expanduser().is_file():
                raise QueryError(f"image file not found: {i}")
        if top is not None and top < 1:
            raise QueryError(f"--top must be at least 1, not {top}.")
        scope = resolve_scope(self.store_dir, videos)
        table = load_frames(self.store_dir, scope)
        enc = self.encoder
        vecs = []
        if texts:
            vecs.append(enc.encode_texts(texts))
        for i in images:
            vecs.append(enc.encode_image_file(i)[None, :])
        q = np.concatenate(vecs) if vecs else np.zeros((0, enc.dim), np.float32)
        kinds = ["text"] * len(texts) + ["image"] * len(images)
        thresholds = [
            threshold if threshold is not None else (DEFAULT_TEXT_THRESHOLD if k == "text" else DEFAULT_IMAGE_THRESHOLD)
            for k in kinds
        ]
        labels = texts + [f"image:{Path(i).name}" for i in images]
        return rank(table, q, labels, kinds, thresholds, top)
