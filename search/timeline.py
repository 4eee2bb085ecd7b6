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
    peak_index: int = -1  # position of its best frame in the arrays given to segments()

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
    best_index: int = -1  # position of the best frame


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
    strength: np.ndarray,
    enter: float,
    stay: float | None = None,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
    scores: np.ndarray | None = None,
) -> list[Segment]:
    """Segments of one video where the query is on screen.

    A segment is a run of frames with ``strength >= stay`` that reaches ``strength >= enter`` at
    least once (hysteresis; ``stay`` defaults to ``enter``). Segments separated by at most
    ``merge_gap_s`` are joined, then segments shorter than ``min_duration_s`` are dropped.

    Args:
        ts_s, end_s: each sampled frame's interval, sorted by time.
        strength: each frame's match strength (a probability, or a cosine score).
        enter, stay: the levels to start and to keep a segment.
        merge_gap_s: join segments at most this far apart (seconds).
        min_duration_s: drop shorter segments (after merging).
        scores: the raw scores reported as ``peak_score`` (default: ``strength``).
    """
    strength = np.asarray(strength, np.float64)
    scores = strength if scores is None else np.asarray(scores)
    stay = enter if stay is None else min(stay, enter)
    starts, ends = runs(strength >= stay)
    out: list[Segment] = []
    for a, b in zip(starts, ends):
        if not np.any(strength[a:b] >= enter):
            continue
        k = int(a + np.argmax(scores[a:b]))
        seg = Segment(float(ts_s[a]), float(end_s[b - 1]), float(scores[k]), k)
        if out and seg.start_s - out[-1].end_s <= merge_gap_s:
            last = out[-1]
            top = last if last.peak_score >= seg.peak_score else seg
            out[-1] = Segment(last.start_s, seg.end_s, top.peak_score, top.peak_index)
        else:
            out.append(seg)
    return [sg for sg in out if sg.duration_s >= min_duration_s]


def summarise(
    ts_s: np.ndarray,
    end_s: np.ndarray,
    strength: np.ndarray,
    enter: float,
    stay: float | None = None,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
    scores: np.ndarray | None = None,
    from_s: np.ndarray | None = None,
) -> Timeline:
    """One video's timeline: segments (see :func:`segments`), first appearance, total time on
    screen, and the best moment by raw score. Each frame stands for ``[from_s, end_s)`` (default
    ``from_s = ts_s``, the time it was sampled, which is what ``best_s`` reports)."""
    strength = np.asarray(strength, np.float64)
    scores = strength if scores is None else np.asarray(scores)
    if scores.size == 0:
        return Timeline(False, None, 0.0, None, float("nan"))
    segs = segments(
        ts_s if from_s is None else from_s, end_s, strength, enter, stay, merge_gap_s, min_duration_s, scores
    )
    best = int(np.argmax(scores))
    return Timeline(
        present=bool(segs),
        first_seen_s=segs[0].start_s if segs else None,
        duration_s=float(sum(s.duration_s for s in segs)),
        best_s=float(ts_s[best]),
        score=float(scores[best]),
        segments=segs,
        best_index=best,
    )


def video_bounds(video_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop positions of each video's run of frames."""
    if not len(video_id):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cuts = np.flatnonzero(np.diff(video_id)) + 1
    return np.concatenate([[0], cuts]).astype(np.int64), np.concatenate([cuts, [len(video_id)]]).astype(np.int64)
