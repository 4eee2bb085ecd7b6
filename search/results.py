"""What a query answers: per video, present or not, when first seen, how long, in which segments.

Every kind of query (text, image, written words, a video) answers in these types, so the CLI, the
server and a notebook render them alike. Times are in seconds from the start of the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, TypeVar

import numpy as np

from .timeline import Segment

_T = TypeVar("_T")


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
    match: float = 0.0  # best match strength under the rule (text: probability against the backgrounds)
    best_frame_id: int | None = None  # the best frame (its thumbnail: /api/thumbnails/{id})
    segment_frame_ids: list[int] = field(default_factory=list)  # each segment's best frame
    store: str | None = None  # the store it comes from, when several answer as one (search.shards)
    segment_texts: list[str] | None = (
        None  # written-word queries: the text read in each segment; spoken: the words heard
    )
    segment_sources: list[tuple[float, float]] | None = None  # --like-video: each segment's time range in the file
    transcribed: bool | None = None  # spoken-word queries: False when the video's sound was not transcribed
    sources_of: str = "like"  # what segment_sources are times in: like (the --like-video file), query (--sound)
    level: float | None = None  # example images: the cosine this video's frames needed (its own level)

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"store": self.store} if self.store is not None else {}),
            "video": self.video,
            "video_id": self.video_id,
            "present": self.present,
            "first_seen_s": _r(self.first_seen_s),
            "duration_s": _r(self.duration_s),
            "segments": [
                {
                    "start_s": _r(s.start_s),
                    "end_s": _r(s.end_s),
                    "peak_score": _r(s.peak_score, 4),
                    "peak_frame_id": f,
                    **({"text": t} if t is not None else {}),
                    **(
                        {f"{self.sources_of}_start_s": _r(src[0]), f"{self.sources_of}_end_s": _r(src[1])}
                        if src is not None
                        else {}
                    ),
                }
                for s, f, t, src in zip(
                    self.segments,
                    _or_nones(self.segment_frame_ids, len(self.segments)),
                    _or_nones(self.segment_texts, len(self.segments)),
                    _or_nones(self.segment_sources, len(self.segments)),
                )
            ],
            "best_s": _r(self.best_s),
            "best_frame_id": self.best_frame_id,
            "score": _r(self.score, 4),
            "match": _r(self.match if np.isfinite(self.match) else None, 4),
            "video_duration_s": _r(self.video_duration_s),
            **({"transcribed": self.transcribed} if self.transcribed is not None else {}),
            **({"level": _r(self.level, 4)} if self.level is not None else {}),
        }


@dataclass
class QueryResult:
    """All videos' answers to one query, best first."""

    query: str
    kind: str  # "text" or "image"
    threshold: float  # the level a frame's strength must reach (rule.enter)
    results: list[VideoResult] = field(default_factory=list)
    rule: str = ""
    warnings: list[str] = field(default_factory=list)
    videos_searched: int = 0
    frames_searched: int = 0
    expected_false: float | None = None  # example images: false videos to expect per query across the archive

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "kind": self.kind,
            "threshold": round(self.threshold, 6),
            "rule": self.rule,
            "warnings": self.warnings,
            **({"expected_false_videos": _r(self.expected_false, 4)} if self.expected_false is not None else {}),
            "results": [r.to_dict() for r in self.results],
        }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _or_nones(values: Sequence[_T] | None, n: int) -> Sequence[_T | None]:
    """``values``, or ``n`` Nones when there are none (None or empty)."""
    return values or [None] * n
