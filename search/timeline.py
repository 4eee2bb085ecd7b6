"""Score series over time -> presence, first appearance, time on screen, segments.

Pure functions over numpy arrays; no I/O. A sampled frame at ``ts_s`` stands for the interval
``[ts_s, end_s)`` (up to the next sample, or the end of the video), so the on-screen time of a
run of matching frames is ``end_s`` of its last frame minus ``ts_s`` of its first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segment:
    """A time range where the query matches. Seconds from the start of the video."""

    start_s: float
    end_s: float
    peak_score: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Timeline:
    """The answer for one video: is it there, when first, how long, where."""

    present: bool
    first_seen_s: float | None
    duration_s: float
    best_s: float | None
    score: float
    segments: list[Segment] = field(default_factory=list)


def runs(mask: np.ndarray, group: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in ``mask``.

    A run also breaks where ``group`` (e.g. the video id of each frame) changes.
    """
    mask = np.asarray(mask, bool)
    if mask.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    brk = np.ones(mask.size, bool)  # True where a new run may start
    if group is not None:
        brk[1:] = group[1:] != group[:-1]
    else:
        brk[1:] = False
    prev = np.zeros(mask.size, bool)
    prev[1:] = mask[:-1]
    starts = np.flatnonzero(mask & (~prev | brk))
    nxt_brk = np.ones(mask.size, bool)
    nxt_brk[:-1] = brk[1:]
    nxt = np.zeros(mask.size, bool)
    nxt[:-1] = mask[1:]
    ends = np.flatnonzero(mask & (~nxt | nxt_brk)) + 1
    return starts, ends


def segments(
    ts_s: np.ndarray,
    end_s: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    merge_gap_s: float = 0.0,
) -> list[Segment]:
    """Segments of one video where ``scores >= threshold``.

    Args:
        ts_s, end_s: each sampled frame's interval, sorted by time.
        scores: each frame's score.
        threshold: a frame matches at or above it.
        merge_gap_s: join segments separated by at most this many seconds.
    """
    starts, ends = runs(np.asarray(scores) >= threshold)
    out: list[Segment] = []
    for a, b in zip(starts, ends):
        seg = Segment(float(ts_s[a]), float(end_s[b - 1]), float(np.max(scores[a:b])))
        if out and seg.start_s - out[-1].end_s <= merge_gap_s:
            last = out[-1]
            out[-1] = Segment(last.start_s, seg.end_s, max(last.peak_score, seg.peak_score))
        else:
            out.append(seg)
    return out


def summarise(ts_s: np.ndarray, end_s: np.ndarray, scores: np.ndarray, threshold: float) -> Timeline:
    """One video's timeline: segments, first appearance, total time on screen, best moment."""
    scores = np.asarray(scores)
    if scores.size == 0:
        return Timeline(False, None, 0.0, None, float("nan"))
    segs = segments(ts_s, end_s, scores, threshold)
    best = int(np.argmax(scores))
    return Timeline(
        present=bool(segs),
        first_seen_s=segs[0].start_s if segs else None,
        duration_s=float(sum(s.duration_s for s in segs)),
        best_s=float(ts_s[best]),
        score=float(scores[best]),
        segments=segs,
    )
