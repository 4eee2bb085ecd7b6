"""``archive eval``: the archive's answers measured against labelled truth (:mod:`search.eval.truth`).

For each query of the truth file and overall, on the judged videos:

* presence per video: TP/FP/FN, precision, recall, F1 (micro: pooled counts; macro: the mean of the
  queries' values);
* ranking: average precision of the ranked video list (mAP over the queries with a present video);
* times, on videos truly and predictedly present: first-seen error (seconds and native frames),
  duration error (seconds and relative), temporal IoU with R@0.5 and R@0.7;
* the presence rule against a plain cosine threshold: the rule's point, then a sweep of cuts over
  each video's best cosine with the best-F1 cut and the lowest cut reaching a target precision.

Answers are computed exactly as ``archive search`` gives them over the whole archive (the image
rule's levels are measured on every indexed frame), then read on the judged videos only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import Reader
from search import presence
from search.labels import rule_of as label_rule
from search.query import Rule, Searcher, rank, rules_for
from search.results import QueryResult
from search.said import search_said
from search.timeline import video_bounds
from search.written import search_text

from . import metrics
from .metrics import Counts, Interval, Point
from .truth import Truth, TruthQuery, read_truth

WORDS = ("ocr", "said")  # queries answered from words read or heard (their scores are similarities, 0-1)

DEFAULT_TARGET_PRECISION = 0.95


@dataclass
class VideoEval:
    """One judged video's truth and answer for one query. Times in seconds."""

    video_id: int
    video: str
    truth: bool
    predicted: bool
    rank: int  # 1-based, among the query's judged videos
    score: float  # best cosine of a non-blank frame (-inf: none)
    fps: float | None
    true_first_s: float | None = None
    first_seen_s: float | None = None
    true_duration_s: float = 0.0
    duration_s: float = 0.0
    iou: float | None = None  # only where both say present
    segments: list[Interval] = field(default_factory=list)

    @property
    def first_error_s(self) -> float | None:
        """Predicted minus true first appearance (positive: late)."""
        if self.true_first_s is None or self.first_seen_s is None:
            return None
        return self.first_seen_s - self.true_first_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "video_id": self.video_id,
            "truth": self.truth,
            "predicted": self.predicted,
            "rank": self.rank,
            "score": _r(self.score if np.isfinite(self.score) else None, 4),
            "true_first_s": _r(self.true_first_s),
            "first_seen_s": _r(self.first_seen_s),
            "first_error_s": _r(self.first_error_s),
            "true_duration_s": _r(self.true_duration_s),
            "duration_s": _r(self.duration_s),
            "iou": _r(self.iou, 4),
            "segments": [[_r(a), _r(b)] for a, b in self.segments],
        }


@dataclass
class TimeStats:
    """Timing errors over videos both truly and predictedly present."""

    videos: int = 0
    first_mean_s: float | None = None  # |predicted - true| first appearance
    first_median_s: float | None = None
    first_max_s: float | None = None
    first_mean_signed_s: float | None = None  # positive: found late on average
    first_mean_frames: float | None = None  # the same in each video's native frames
    first_median_frames: float | None = None
    first_max_frames: float | None = None
    duration_mean_s: float | None = None  # |predicted - true| time on screen
    duration_max_s: float | None = None
    duration_mean_rel: float | None = None  # ... over the true time on screen
    duration_max_rel: float | None = None
    iou_mean: float | None = None
    r_at_05: float | None = None  # share of videos with IoU >= 0.5
    r_at_07: float | None = None

    @classmethod
    def of(cls, videos: Sequence[VideoEval]) -> "TimeStats":
        both = [v for v in videos if v.truth and v.predicted]
        if not both:
            return cls()
        err = np.array([v.first_error_s for v in both], np.float64)
        ferr = np.abs(err) * np.array([v.fps or np.nan for v in both], np.float64)
        derr = np.abs(np.array([v.duration_s - v.true_duration_s for v in both], np.float64))
        rel = derr / np.maximum(np.array([v.true_duration_s for v in both], np.float64), 1e-9)
        ious = np.array([v.iou for v in both], np.float64)
        has_f = np.isfinite(ferr)
        return cls(
            videos=len(both),
            first_mean_s=float(np.mean(np.abs(err))),
            first_median_s=float(np.median(np.abs(err))),
            first_max_s=float(np.max(np.abs(err))),
            first_mean_signed_s=float(np.mean(err)),
            first_mean_frames=float(np.mean(ferr[has_f])) if has_f.any() else None,
            first_median_frames=float(np.median(ferr[has_f])) if has_f.any() else None,
            first_max_frames=float(np.max(ferr[has_f])) if has_f.any() else None,
            duration_mean_s=float(np.mean(derr)),
            duration_max_s=float(np.max(derr)),
            duration_mean_rel=float(np.mean(rel)),
            duration_max_rel=float(np.max(rel)),
            iou_mean=float(np.mean(ious)),
            r_at_05=float(np.mean(ious >= 0.5)),
            r_at_07=float(np.mean(ious >= 0.7)),
        )

    @classmethod
    def mean_of(cls, parts: Sequence["TimeStats"]) -> "TimeStats":
        """Each value's mean over the queries that have one (macro)."""
        out: dict[str, Any] = {"videos": sum(p.videos for p in parts)}
        for f in dataclasses.fields(cls):
            if f.name == "videos":
                continue
            vals = [getattr(p, f.name) for p in parts if getattr(p, f.name) is not None]
            out[f.name] = float(np.mean(vals)) if vals else None
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "first_seen_error_s": {
                "mean": _r(self.first_mean_s),
                "median": _r(self.first_median_s),
                "max": _r(self.first_max_s),
                "mean_signed": _r(self.first_mean_signed_s),
            },
            "first_seen_error_frames": {
                "mean": _r(self.first_mean_frames, 2),
                "median": _r(self.first_median_frames, 2),
                "max": _r(self.first_max_frames, 2),
            },
            "duration_error_s": {"mean": _r(self.duration_mean_s), "max": _r(self.duration_max_s)},
            "duration_error_relative": {"mean": _r(self.duration_mean_rel, 4), "max": _r(self.duration_max_rel, 4)},
            "iou": {"mean": _r(self.iou_mean, 4), "r_at_0.5": _r(self.r_at_05, 4), "r_at_0.7": _r(self.r_at_07, 4)},
        }


@dataclass
class Sweep:
    """Plain cosine cuts over the videos' best scores against the truth."""

    curve: list[Point]
    best: Point | None  # highest F1
    target: Point | None  # lowest cut reaching the target precision
    target_precision: float

    def to_dict(self, with_curve: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "best_f1": self.best.to_dict() if self.best else None,
            "target_precision": self.target_precision,
            "at_target_precision": self.target.to_dict() if self.target else None,
        }
        if with_curve:
            d["curve"] = [[round(p.threshold, 6), round(p.precision, 4), round(p.recall, 4)] for p in self.curve]
        return d


def make_sweep(scores: Sequence[float], truth: Sequence[bool], target_precision: float) -> Sweep:
    """The sweep of ``scores`` against ``truth``; with no video truly present no cut is best (every
    F1 is 0), and none reaches a precision."""
    curve = metrics.sweep(scores, truth)
    if not any(truth):
        return Sweep(curve, None, None, target_precision)
    return Sweep(curve, metrics.best_f1(curve), metrics.for_precision(curve, target_precision), target_precision)


@dataclass
class QueryEval:
    """One query measured: presence, ranking, times, and the rule against plain cuts."""

    query: str
    kind: str  # text, image or label
    rule: str  # the rule as used (its description)
    counts: Counts
    ap: float | None
    times: TimeStats
    sweep: Sweep
    videos: list[VideoEval]  # judged videos in rank order

    @property
    def judged(self) -> int:
        return len(self.videos)

    @property
    def positives(self) -> int:
        return sum(v.truth for v in self.videos)

    def to_dict(self, with_videos: bool = True) -> dict[str, Any]:
        d = {
            "query": self.query,
            "kind": self.kind,
            "rule": self.rule,
            "judged": self.judged,
            "positives": self.positives,
            "presence": self.counts.to_dict(),
            "ap": _r(self.ap, 4),
            "times": self.times.to_dict(),
            "sweep": self.sweep.to_dict(),
        }
        if with_videos:
            d["videos"] = [v.to_dict() for v in self.videos]
        return d


@dataclass
class EvalReport:
    """Every query measured, and the totals: micro (pooled) and macro (mean over queries)."""

    truth: str
    judged_videos: int
    queries: list[QueryEval]
    micro: Counts
    macro_precision: float
    macro_recall: float
    macro_f1: float
    map: float | None
    times: TimeStats  # pooled over every query's videos
    times_macro: TimeStats
    sweep: Sweep  # one cut for all queries, over the pooled (query, video) pairs
    threshold: float | None = None  # the plain cut used instead of the rule (--threshold)
    problems: list[str] = field(default_factory=list)
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "truth": self.truth,
            "rows": self.rows,
            "judged_videos": self.judged_videos,
            "rule": "presence rule" if self.threshold is None else f"cosine >= {self.threshold:g}",
            "overall": {
                "micro": {**self.micro.to_dict(), "times": self.times.to_dict()},
                "macro": {
                    "precision": round(self.macro_precision, 4),
                    "recall": round(self.macro_recall, 4),
                    "f1": round(self.macro_f1, 4),
                    "times": self.times_macro.to_dict(),
                },
                "map": _r(self.map, 4),
                "sweep": self.sweep.to_dict(),
            },
            "queries": [q.to_dict() for q in self.queries],
            "problems": self.problems,
        }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def evaluate(
    searcher: Searcher,
    truth_path: str | os.PathLike[str],
    threshold: float | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    queries: Sequence[str] | None = None,
) -> EvalReport:
    """Measure the archive's answers against a truth file.

    Args:
        searcher: a searcher over the store (its model is loaded only for image queries).
        truth_path: the CSV file (see :mod:`search.eval.truth`).
        threshold: measure a plain cosine cut instead of the presence rule.
        target_precision: the precision the sweep looks for the lowest cut to reach.
        queries: measure only these queries of the file (as written there; None: all).

    Raises:
        QueryError: the truth file is unusable as a whole, or ``target_precision`` is not in (0, 1].
        StoreNotFound: no archive at the searcher's store.
    """
    check_target(target_precision)
    store = searcher.store_dir
    labels = Reader.of(store).labels()
    truth = read_truth(truth_path, Reader.of(store).video_refs(), labels)
    todo = truth.queries if queries is None else [q for q in truth.queries if q.query in set(queries)]
    todo, results, best = answers(searcher, truth, todo, {lab.name: lab for lab in labels}, threshold)
    evals = [measure(truth, q, res, sc, target_precision) for q, res, sc in zip(todo, results, best)]
    micro = sum((e.counts for e in evals), Counts(0, 0, 0, 0))
    aps = [e.ap for e in evals if e.ap is not None]
    every = [v for e in evals for v in e.videos]
    # one cut for all: over the picture queries' cosines (written-word queries score similarities),
    # or over the written-word queries when there are only those
    cut = [v for e in evals if e.kind not in WORDS for v in e.videos] or every
    return EvalReport(
        truth=truth.path,
        judged_videos=len(truth.videos),
        queries=evals,
        micro=micro,
        macro_precision=float(np.mean([e.counts.precision for e in evals])) if evals else 1.0,
        macro_recall=float(np.mean([e.counts.recall for e in evals])) if evals else 1.0,
        macro_f1=float(np.mean([e.counts.f1 for e in evals])) if evals else 0.0,
        map=float(np.mean(aps)) if aps else None,
        times=TimeStats.of(every),
        times_macro=TimeStats.mean_of([e.times for e in evals]),
        sweep=make_sweep([v.score for v in cut], [v.truth for v in cut], target_precision),
        threshold=threshold,
        problems=truth.problems,
        rows=truth.rows,
    )


def check_target(target_precision: float) -> None:
    if not 0 < target_precision <= 1:
        raise QueryError(f"--target-precision {target_precision:g}: give a precision above 0 and at most 1, like 0.95.")


def answers(
    searcher: Searcher, truth: Truth, todo: Sequence[TruthQuery], labels: dict[str, Any], threshold: float | None
) -> tuple[list[TruthQuery], list[QueryResult], list[dict[int, float]]]:
    """The queries answered, each one's answers on the judged videos in rank order (as ``archive
    search`` gives them over the whole archive), and each judged video's best non-blank cosine.

    A query whose example image the model cannot read is left out, and its lines become problems.
    Written-word queries (``ocr:``) are answered from the ``ocr`` table, spoken ones (``said:``)
    from the ``speech_words`` table; their "score" is the closest reading's (or hearing's)
    similarity (0-1), which their precision/recall sweep cuts.
    """
    words = [q for q in todo if q.kind in WORDS]
    if words:
        rest = [q for q in todo if q.kind not in WORDS]
        got = answers(searcher, truth, rest, labels, threshold) if rest else ([], [], [])
        written = [q for q in words if q.kind == "ocr"]
        spoken = [q for q in words if q.kind == "said"]
        judged = sorted(truth.videos)
        res = search_text(searcher.store_dir, [q.target for q in written], judged, None) if written else []
        res += search_said(searcher.store_dir, [q.target for q in spoken], judged, None) if spoken else []
        words = written + spoken
        for r, q in zip(res, words):
            r.query = q.query
        best = [{v.video_id: v.score for v in r.results} for r in res]
        by_query = dict(zip([q.query for q in got[0]] + [q.query for q in words], zip(got[1] + res, got[2] + best)))
        order = [q for q in todo if q.query in by_query]
        return order, [by_query[q.query][0] for q in order], [by_query[q.query][1] for q in order]
    scanner = searcher.scanner(None)
    table = scanner.table
    idx = np.flatnonzero(np.isin(table.video_id, np.asarray(truth.videos, np.int64)))
    images: dict[str, np.ndarray] = {}
    for q in [q for q in todo if q.kind == "image"]:
        try:
            images[q.query] = searcher.encoder.encode_image_file(q.target)
        except QueryError as exc:
            truth.problems.extend(f"line {n}: {q.query}: {str(exc).rstrip('.')}." for n in q.lines)
    todo = [q for q in todo if q.kind != "image" or q.query in images]
    if not todo:
        return [], [], []
    vecs, kinds, rules = [], [], []
    texts = [q.target for q in todo if q.kind == "text"]
    text_vecs = iter(searcher.text_vectors(texts)) if texts else iter(())
    label_vecs: dict[str, np.ndarray] = {}
    if any(q.kind == "label" for q in todo):  # all labels in one batch, as their tables are computed
        names = sorted(labels)
        label_vecs = dict(
            zip(names, presence.ensemble([labels[n].prompts for n in names], searcher.text_encoder.encode_texts))
        )
    for q in todo:
        if q.kind == "text":
            vecs.append(next(text_vecs))
            kinds.append("text")
        elif q.kind == "label":
            vecs.append(label_vecs[q.target])
            kinds.append("text")
        else:
            vecs.append(images[q.query])
            kinds.append("image")
    if threshold is not None:
        rules = rules_for(kinds, table, threshold)
    else:
        base = rules_for(kinds, table, calib=searcher.image_levels() if "image" in kinds else None)
        rules = [label_rule(labels[q.target]) if q.kind == "label" else r for q, r in zip(todo, base)]
    allv = np.stack(vecs).astype(np.float32)
    raw = scanner.scores_at(idx, allv)
    needs_bg = any(r.kind == "text" for r in rules)
    bg = searcher.background_lse(scanner)[idx] if needs_bg else None
    sub = _subset(table, idx)
    results = rank(sub, raw, bg, [q.query for q in todo], kinds, rules, top=None)
    starts, _ = video_bounds(sub.video_id)
    best_raw = [
        np.maximum.reduceat(np.where(sub.blank, -np.inf, raw[:, j].astype(np.float64)), starts)
        if len(starts)
        else np.zeros(0)
        for j in range(len(todo))
    ]
    ids = sub.video_id[starts] if len(starts) else np.zeros(0, np.int64)
    return list(todo), results, [dict(zip(ids.tolist(), b.tolist())) for b in best_raw]


def _subset(table: Any, idx: np.ndarray) -> Any:
    """The frame table cut to the frames at positions ``idx`` (same vectors)."""
    per_frame = {
        f.name: getattr(table, f.name)[idx]
        for f in dataclasses.fields(table)
        if isinstance(getattr(table, f.name), np.ndarray) and len(getattr(table, f.name)) == len(table)
    }
    return dataclasses.replace(table, **per_frame)


def measure(
    truth: Truth, q: TruthQuery, res: QueryResult, best: dict[int, float], target_precision: float
) -> QueryEval:
    """One query's numbers from its answers on the judged videos."""
    judged = set(truth.judged(q))
    by_id = {r.video_id: r for r in res.results}
    order = [r.video_id for r in res.results if r.video_id in judged]
    order += [v for v in truth.judged(q) if v not in by_id]  # judged videos with no frame: last
    videos: list[VideoEval] = []
    for k, vid in enumerate(order, 1):
        ref = truth.refs[vid]
        r = by_id.get(vid)
        true_iv = q.intervals.get(vid) or []
        pred_iv = [(s.start_s, s.end_s) for s in r.segments] if r else []
        t, p = bool(true_iv), bool(r and r.present)
        videos.append(
            VideoEval(
                video_id=vid,
                video=ref.path,
                truth=t,
                predicted=p,
                rank=k,
                score=float(best.get(vid, -np.inf)),
                fps=ref.fps,
                true_first_s=true_iv[0][0] if t else None,
                first_seen_s=r.first_seen_s if p and r else None,
                true_duration_s=metrics.length(true_iv),
                duration_s=float(r.duration_s) if r else 0.0,
                iou=metrics.iou(pred_iv, true_iv) if t and p else None,
                segments=pred_iv,
            )
        )
    c = metrics.counts([v.truth for v in videos], [v.predicted for v in videos])
    return QueryEval(
        query=q.query,
        kind=q.kind,
        rule=res.rule,
        counts=c,
        ap=metrics.average_precision([v.truth for v in videos]),
        times=TimeStats.of(videos),
        sweep=make_sweep([v.score for v in videos], [v.truth for v in videos], target_precision),
        videos=videos,
    )


__all__ = [
    "DEFAULT_TARGET_PRECISION",
    "EvalReport",
    "QueryEval",
    "Rule",
    "Sweep",
    "TimeStats",
    "VideoEval",
    "evaluate",
    "make_sweep",
    "measure",
]
