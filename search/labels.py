"""Saved categories (labels): their per-video answers computed from the stored vectors, and
``classify``: which label best describes each video, with each label's share of screen time.

A label is a name and one or more prompts. Its query vector is the template ensemble of all its
prompts, so a label with the single prompt "a beach" answers exactly as ``archive search "a beach"``.

This is read-path work: :func:`label_results` computes the rows of the ``segments`` and
``video_labels`` tables, and the caller commits them through the writer
(:meth:`indexer.store.Writer.replace_label_results`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.model import background
from indexer.model.encoder import Encoder
from indexer.store import LabelCalibration, LabelDef, LabelResults, Reader, SegmentRow, VideoLabelRow

from . import presence
from .query import Rule, rank, resolve_scope
from .said import said_segments
from .scan import Scanner, background_term
from .timeline import Segment
from .written import search_text

SOMETHING_ELSE = "something else"


@dataclass
class LabelSummary:
    name: str
    prompts: list[str]
    threshold: float | None
    videos_present: int = 0
    seconds: float = 0.0
    calibration: LabelCalibration | None = None  # set when the threshold was calibrated on a truth file
    ocr: list[str] = field(default_factory=list)  # written words that show it too
    said: list[str] = field(default_factory=list)  # spoken phrases that show it too

    @property
    def rule(self) -> str:
        """presence, threshold or calibrated."""
        return rule_name(self.threshold, self.calibration)

    def to_dict(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "label": self.name,
            "prompts": self.prompts,
            "ocr": self.ocr,
            "said": self.said,
            "threshold": self.threshold,
            "rule": self.rule,
            "videos_present": self.videos_present,
            "seconds": round(self.seconds, 3),
            "calibration": None
            if c is None
            else {
                "precision": round(c.precision, 4),
                "recall": round(c.recall, 4),
                "judged_videos": c.videos,
                "present_videos": c.positives,
                "target_precision": c.target_precision,
                "truth": c.truth,
                "calibrated_at": c.calibrated_at.isoformat(timespec="seconds") if c.calibrated_at else None,
            },
        }


def rule_name(threshold: float | None, calibration: LabelCalibration | None) -> str:
    """How a label decides presence: presence (the presence rule), threshold or calibrated."""
    if threshold is None:
        return "presence"
    return "calibrated" if calibration is not None else "threshold"


@dataclass
class VideoClass:
    """One video's categories: the best one and each label's share of its (non-blank) screen time."""

    video_id: int
    video: str
    best: str
    shares: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "video_id": self.video_id,
            "best": self.best,
            "shares": {k: round(v, 4) for k, v in self.shares.items()},
        }


def label_results(
    store_dir: str | os.PathLike[str], encoder: Encoder, video_ids: Sequence[int] | None = None
) -> LabelResults:
    """The ``segments`` and ``video_labels`` rows of every saved label, from the stored vectors.

    Each video's answer depends on that video's frames only, so the rows of new videos are
    computed for them alone (``video_ids``) and added to the tables as they are.

    Args:
        store_dir: the store.
        encoder: the store's encoder (for the labels' prompts and the background prompts).
        video_ids: only these videos (None: all).
    """
    labels = Reader.of(store_dir).labels()
    out = LabelResults()
    if not labels or (video_ids is not None and not video_ids):
        return out
    scanner = Scanner(Reader.of(store_dir).frames(video_ids))
    table = scanner.table
    q = presence.ensemble([lab.prompts for lab in labels], encoder.encode_texts)
    key = background.background_key(encoder.spec.name, encoder.spec.pretrained, encoder.text_precision)
    raw = scanner.scores(q)
    bg_lse = background_term(scanner, key, lambda: encoder.encode_fixed(list(presence.BACKGROUND_PROMPTS)))
    rules = [rule_of(lab) for lab in labels]
    results = rank(table, raw, bg_lse, [lab.name for lab in labels], ["text"] * len(labels), rules, top=None)
    for lab, res in zip(labels, results):
        ids = sorted({r.video_id for r in res.results})
        words = written(store_dir, lab.ocr, ids) if lab.ocr else {}
        spoken = said_segments(store_dir, lab.said, ids) if lab.said else {}
        for r in res.results:
            segs = combine(r.segments, words.get(r.video_id, []), spoken.get(r.video_id, []))
            first = segs[0].start_s if segs else None
            best = r.best_s if r.present or not segs else segs[0].start_s  # words alone: where first read or said
            out.videos.append(
                VideoLabelRow(
                    r.video_id,
                    lab.name,
                    bool(segs),
                    first,
                    sum(s.end_s - s.start_s for s in segs),
                    len(segs),
                    best,
                    r.score,
                    rule_name(lab.threshold, lab.calibration),
                )
            )
            out.segments.extend(
                SegmentRow(lab.name, r.video_id, s.start_s, s.end_s, s.peak_score, s.found_by) for s in segs
            )
    return out


@dataclass
class _Span:
    start_s: float
    end_s: float
    peak_score: float
    found_by: str


def written(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], video_ids: Sequence[int]
) -> dict[int, list[Segment]]:
    """Per video, the segments where any of ``phrases`` is read on screen (:mod:`search.written`)."""
    out: dict[int, list[Segment]] = {}
    for res in search_text(store_dir, phrases, list(video_ids), None):
        for r in res.results:
            out.setdefault(r.video_id, []).extend(r.segments)
    return out


_SOURCES = ("picture", "text", "speech")


def found_by(sources: set[str]) -> str:
    """What found a segment: ``picture``, ``text``, ``speech``, ``both`` (picture and text, as
    before speech was searched), or a mix with speech joined by ``+`` (``picture+speech``, ...)."""
    if sources == {"picture", "text"}:
        return "both"
    return "+".join(k for k in _SOURCES if k in sources)


def combine(picture: Sequence[Segment], text: Sequence[Segment], speech: Sequence[Segment] = ()) -> list[_Span]:
    """A label's segments in one video: where the picture, the written words or the spoken words
    are found, joined where they overlap or touch; each says what found it (:func:`found_by`). A
    joined segment's ``peak_score`` is the picture's best cosine in it (one found by words alone:
    the words' best similarity, 0-1)."""
    spans = sorted(
        [(s.start_s, s.end_s, s.peak_score, "picture") for s in picture]
        + [(s.start_s, s.end_s, s.peak_score, "text") for s in text]
        + [(s.start_s, s.end_s, s.peak_score, "speech") for s in speech]
    )
    out: list[_Span] = []
    seen: list[set[str]] = []
    for a, b, peak, by in spans:
        if out and a <= out[-1].end_s + 1e-6:
            cur, had = out[-1], seen[-1]
            cur.end_s = max(cur.end_s, b)
            if by == "picture":
                cur.peak_score = max(cur.peak_score, peak) if "picture" in had else peak
            elif "picture" not in had:
                cur.peak_score = max(cur.peak_score, peak)
            had.add(by)
            cur.found_by = found_by(had)
        else:
            out.append(_Span(a, b, peak, by))
            seen.append({by})
    return out


def rule_of(label: LabelDef) -> Rule:
    """The rule a saved label answers with: its threshold as a plain cut, else the presence rule."""
    if label.threshold is not None:
        return Rule("threshold", label.threshold, label.threshold)
    return Rule("text", presence.TEXT_ENTER, presence.TEXT_STAY)


def list_labels(store_dir: str | os.PathLike[str]) -> list[LabelSummary]:
    """Saved labels with how many videos show them and for how long in all."""
    stats = Reader.of(store_dir).label_stats()
    out = []
    for lab in Reader.of(store_dir).labels():
        st = stats.get(lab.name)
        out.append(
            LabelSummary(
                lab.name,
                lab.prompts,
                lab.threshold,
                st.videos_present if st else 0,
                st.seconds if st else 0.0,
                lab.calibration,
                lab.ocr,
                lab.said,
            )
        )
    return out


def classify(
    store_dir: str | os.PathLike[str],
    encoder: Encoder,
    videos: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> list[VideoClass]:
    """Which label best describes each video.

    Every non-blank sample is given to the label whose ensemble scores highest against it, under
    CLIP's softmax over the labels and the background prompts; a sample the backgrounds win goes
    to "something else"; a sample where a label's written words (``--ocr``) are read or its
    phrases (``--said``) said goes to that label. A label's share is its samples' screen time over the video's non-blank screen time;
    ``best`` is the class with the largest share.

    Raises:
        QueryError: no labels saved, or an unknown label name.
    """
    saved = {lab.name: lab for lab in Reader.of(store_dir).labels()}
    names = list(labels) if labels else sorted(saved)
    if not names:
        raise QueryError("no labels saved: add some with `archive label add NAME --prompt TEXT`.")
    unknown = [n for n in names if n not in saved]
    if unknown:
        raise QueryError(f"unknown label(s): {', '.join(unknown)}; see `archive label list`.")
    scanner = Scanner(Reader.of(store_dir).frames(resolve_scope(store_dir, videos)))
    table = scanner.table
    q = presence.ensemble([saved[n].prompts for n in names], encoder.encode_texts)
    bg = encoder.encode_fixed(list(presence.BACKGROUND_PROMPTS))
    scores = scanner.scores(np.concatenate([q, bg])).astype(np.float64)
    logits = presence.LOGIT_SCALE * scores
    # background prompts pool into one "something else" class (log-sum-exp of their logits)
    lab = logits[:, : len(names)]
    bgl = logits[:, len(names) :]
    m = bgl.max(axis=1, keepdims=True) if bgl.size else np.zeros((len(scores), 1))
    other = (m + np.log(np.exp(bgl - m).sum(axis=1, keepdims=True))) if bgl.size else np.full((len(scores), 1), -np.inf)
    winner = np.argmax(np.concatenate([lab, other], axis=1), axis=1)
    # a sample where a label's written words are read goes to that label (to the likeliest of several)
    read = np.zeros(lab.shape, bool)
    for k, n in enumerate(names):
        found = [written(store_dir, saved[n].ocr, sorted(set(table.videos))) if saved[n].ocr else {}]
        found.append(said_segments(store_dir, saved[n].said, sorted(set(table.videos))) if saved[n].said else {})
        for per_video in found:
            for vid, segs in per_video.items():
                sel = table.video_id == vid
                for sg in segs:
                    read[:, k] |= sel & (table.ts_s < sg.end_s) & (table.end_s > sg.start_s)
    if read.any():
        rows = read.any(axis=1)
        winner[rows] = np.argmax(np.where(read[rows], lab[rows], -np.inf), axis=1)
    classes = names + [SOMETHING_ELSE]
    dur = table.end_s - table.start_s
    out: list[VideoClass] = []
    for vid in np.unique(table.video_id):
        sel = (table.video_id == vid) & ~table.blank
        total = float(dur[sel].sum())
        shares = {
            c: (float(dur[sel & (winner == k)].sum()) / total if total > 0 else 0.0) for k, c in enumerate(classes)
        }
        best = max(classes, key=lambda c: shares[c])
        out.append(VideoClass(int(vid), table.videos[int(vid)]["path"], best, shares))
    return out
