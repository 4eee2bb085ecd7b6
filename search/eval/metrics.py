"""Measures of answers against labelled truth: intervals, temporal IoU, average precision, and
precision/recall over a swept threshold. Pure functions over plain values; no I/O.

Conventions (as in scikit-learn's ``zero_division=1``): a ratio with nothing to count is 1.
Precision with no video claimed present is 1 (no false claim was made); recall with no video truly
present is 1 (nothing was missed). F1 is 0 when either of them is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time (touching ones are joined)."""
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def length(intervals: Iterable[Interval]) -> float:
    """Total time covered (overlaps counted once)."""
    return float(sum(b - a for a, b in merge(intervals)))


def overlap(x: Sequence[Interval], y: Sequence[Interval]) -> float:
    """Time covered by both ``x`` and ``y`` (seconds)."""
    x, y = merge(x), merge(y)
    i = j = 0
    total = 0.0
    while i < len(x) and j < len(y):
        a, b = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if b > a:
            total += b - a
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return total


def iou(pred: Sequence[Interval], true: Sequence[Interval]) -> float:
    """Temporal intersection over union of two sets of intervals (0 when both are empty)."""
    inter = overlap(pred, true)
    union = length(pred) + length(true) - inter
    return inter / union if union > 0 else 0.0


def average_precision(relevant: Sequence[bool]) -> float | None:
    """Average precision of a ranked list: the mean, over the relevant items, of the precision
    of the list cut just after each one. None when nothing is relevant.

    ``relevant`` is in rank order and holds every judged item, so each relevant one has a rank.
    """
    rel = np.asarray(relevant, bool)
    if not rel.any():
        return None
    hits = np.cumsum(rel)
    ranks = np.flatnonzero(rel) + 1
    return float(np.mean(hits[rel] / ranks))


@dataclass(frozen=True)
class Counts:
    """Per-video presence: true/false positives and negatives, and the ratios."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        return f1(self.precision, self.recall)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def to_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def counts(truth: Sequence[bool], predicted: Sequence[bool]) -> Counts:
    t = np.asarray(truth, bool)
    p = np.asarray(predicted, bool)
    return Counts(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)), int(np.sum(~t & ~p)))


@dataclass(frozen=True)
class Point:
    """One threshold of a sweep: a video counts as present when its best score >= ``threshold``."""

    threshold: float
    counts: Counts

    @property
    def precision(self) -> float:
        return self.counts.precision

    @property
    def recall(self) -> float:
        return self.counts.recall

    @property
    def f1(self) -> float:
        return self.counts.f1

    def to_dict(self) -> dict[str, float]:
        return {"threshold": round(self.threshold, 6), **self.counts.to_dict()}


def sweep(scores: Sequence[float], truth: Sequence[bool]) -> list[Point]:
    """Precision and recall of every plain cut of ``scores`` (each video's best cosine), highest
    threshold first.

    The cuts lie halfway between consecutive distinct scores seen (and just below the lowest one),
    so each point counts the videos at and above one score: a threshold in the middle of a gap
    answers the same on these videos and does not hang on the last digit of a score. Videos with
    no usable frame (score ``-inf``) are never present.
    """
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, bool)
    finite = np.isfinite(s)
    levels = np.unique(s[finite])[::-1]  # distinct scores, high to low
    if not len(levels):
        return []
    below = np.append(levels[1:], levels[-1] - max(1e-3, 0.01 * abs(levels[-1])))
    cuts = (levels + below) / 2
    order = np.argsort(-np.where(finite, s, -np.inf), kind="stable")
    ss, tt = s[order], t[order]
    n_pos, n = int(t.sum()), len(t)
    out = []
    for level, cut in zip(levels, cuts):
        k = int(np.searchsorted(-ss, -level, side="right"))  # videos with score >= level
        tp = int(tt[:k].sum())
        out.append(Point(float(cut), Counts(tp, k - tp, n_pos - tp, n - k - (n_pos - tp))))
    return out


def best_f1(points: Sequence[Point]) -> Point | None:
    """The cut with the highest F1 (ties: the higher threshold, the fewer claims)."""
    if not points:
        return None
    return max(points, key=lambda p: (round(p.f1, 12), p.threshold))


def for_precision(points: Sequence[Point], target: float) -> Point | None:
    """The lowest cut whose precision is at least ``target`` (the most recall at that precision);
    None when no cut reaches it with any video claimed."""
    ok = [p for p in points if p.counts.tp + p.counts.fp > 0 and p.precision >= target - 1e-12]
    return min(ok, key=lambda p: p.threshold) if ok else None
