"""Written words on screen: a phrase -> the ``ocr`` lines that read it -> per-video answers in the
shape of every query (present, first seen, time on screen, segments).

Matching (:func:`similarity`): the phrase and each line are compared after
:func:`indexer.media.ocr.normalize` (case, accents, punctuation and spaces do not count), with
rapidfuzz's normalised Indel similarity, 0-100:

* a line at least as long as the phrase: ``fuzz.partial_ratio``, the best-matching stretch of the
  line (the phrase may be part of a longer line);
* a shorter line: ``fuzz.ratio`` of the whole line (so "drink" alone never matches "drink responsibly");
* a phrase written over adjacent lines (one under the other, or side by side) on screen at the same
  time: the lines joined in reading order, compared as one line.

A line matches at ``SIMILARITY`` (90) or more: one wrong character in a phrase of 10-19 letters
and digits, two from 20; one missing or extra character from 5. So "drive responsibly" (two wrong
letters in 16) does not match "drink responsibly". Phrases of fewer than ``EXACT_BELOW`` letters and digits must match exactly. The video's
``score`` is its best similarity / 100, also below the cut (the closest reading), so near misses
rank first among the absent.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import Reader
from indexer.store.records import normalize

from .results import QueryResult, VideoResult
from .timeline import Segment

SIMILARITY = 90.0
EXACT_BELOW = 4  # shorter phrases (after normalising) must be read exactly
MAX_JOIN = 3  # lines a phrase may span


def check_phrase(text: str) -> str:
    """The phrase as matched.

    Raises:
        QueryError: nothing to match once case, accents, punctuation and spaces are set aside.
    """
    norm = normalize(text or "")
    if not norm:
        raise QueryError(f"--ocr {text!r}: give letters or digits to look for (punctuation and spaces are ignored).")
    return norm


def similarity(phrase: str, lines: Sequence[str]) -> np.ndarray:
    """Similarity (0-100) of a normalised phrase to each normalised line (see the module docstring)."""
    from rapidfuzz import fuzz, process  # lazy: only phrase matching needs it

    if not len(lines):
        return np.zeros(0, np.float64)
    if len(phrase) < EXACT_BELOW:
        return np.array([100.0 if phrase in ln else 0.0 for ln in lines])
    part = process.cdist([phrase], lines, scorer=fuzz.partial_ratio, dtype=np.float32)[0]
    whole = process.cdist([phrase], lines, scorer=fuzz.ratio, dtype=np.float32)[0]
    longer = np.array([len(ln) >= len(phrase) for ln in lines])
    return np.where(longer, part, whole).astype(np.float64)


def _next_to(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when ``b`` continues ``a`` in reading order: the line under it, or right of it on its row."""
    h = max(a["h"], b["h"])
    if a["video_id"] != b["video_id"] or min(a["end_s"], b["end_s"]) <= max(a["start_s"], b["start_s"]):
        return False
    below = 0 <= b["y"] - (a["y"] + a["h"]) <= 1.2 * h and min(a["x"] + a["w"], b["x"] + b["w"]) > max(a["x"], b["x"])
    beside = abs(b["y"] - a["y"]) <= 0.5 * h and 0 <= b["x"] - (a["x"] + a["w"]) <= 3 * h
    return below or beside


def _hits(
    phrase: str, rows: list[dict[str, Any]], scores: np.ndarray
) -> list[tuple[dict[str, Any], float, float, float, str]]:
    """``(row, similarity, start_s, end_s, text read)`` of every match: single lines, and runs of
    up to ``MAX_JOIN`` adjacent lines on screen together whose joined text matches."""
    out = [(r, float(s), r["start_s"], r["end_s"], r["text"]) for r, s in zip(rows, scores) if s >= SIMILARITY]
    pieces = [r for r, s in zip(rows, scores) if len(r["text_norm"]) < len(phrase) and s < SIMILARITY]
    if len(pieces) < 2:
        return out
    from rapidfuzz import fuzz  # lazy: only phrase matching needs it

    inside = [r for r in pieces if fuzz.partial_ratio(r["text_norm"], phrase) >= SIMILARITY]
    by_video: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in inside:
        by_video[r["video_id"]].append(r)
    for group in by_video.values():
        group.sort(key=lambda r: (r["start_s"], r["y"], r["x"]))
        for first in group:
            chain, start, end = [first], first["start_s"], first["end_s"]
            while len(chain) < MAX_JOIN:
                nxt = next((r for r in group if r is not first and r not in chain and _next_to(chain[-1], r)), None)
                if nxt is None:
                    break
                chain.append(nxt)
                start, end = max(start, nxt["start_s"]), min(end, nxt["end_s"])
                joined = "".join(r["text_norm"] for r in chain)
                s = float(similarity(phrase, [joined])[0])
                if s >= SIMILARITY:
                    out.append((first, s, start, end, " / ".join(r["text"] for r in chain)))
                    break
    return out


def union_spans(spans: list[tuple[float, float, float, int, str]]) -> list[tuple[Segment, int, str]]:
    """Merge ``(start, end, score, frame_id, text)`` spans that overlap or touch into segments, each
    with its best span's score, frame and text."""
    out: list[tuple[Segment, int, str]] = []
    for a, b, s, f, text in sorted(spans):
        if out and a <= out[-1][0].end_s + 1e-6:
            seg = out[-1][0]
            seg.end_s = max(seg.end_s, b)
            if s > seg.peak_score:
                out[-1] = (Segment(seg.start_s, seg.end_s, s), f, text)
        else:
            out.append((Segment(a, b, s), f, text))
    return out


def search_text(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], scope: list[int] | None, top: int | None
) -> list[Any]:
    """One :class:`search.query.QueryResult` (kind ``ocr``) per phrase, over the videos in ``scope``
    (None: all), best first: videos where it is read, by similarity then time on screen, then the
    others by their closest reading.

    Raises:
        QueryError: a phrase with no letter or digit.
    """
    norms = [check_phrase(p) for p in phrases]
    refs = {r.video_id: r for r in Reader.of(store_dir).video_refs()}
    ids = sorted(refs) if scope is None else scope
    rows = Reader.of(store_dir).ocr_lines(ids)
    texts = [r["text_norm"] for r in rows]
    has_ocr = Reader.of(store_dir).meta().get("ocr") == "1"
    unread = Reader.of(store_dir).ocr_unread(ids) if has_ocr else len(ids)
    out = []
    for phrase, norm in zip(phrases, norms):
        res = QueryResult(
            query=phrase,
            kind="ocr",
            threshold=SIMILARITY / 100,
            rule=f"written words: similarity >= {SIMILARITY / 100:.2f} (rapidfuzz, after normalising)",
            videos_searched=len(ids),
            frames_searched=len(rows),
        )
        if not has_ocr:
            res.warnings.append(
                "this store has no on-screen text: index it with `archive index FOLDER --ocr` "
                "(already indexed videos are read, not re-embedded)."
            )
        elif unread:
            res.warnings.append(
                f"{unread} of {len(ids)} video(s) have no text read yet: run `archive index` on their "
                "folders with --ocr."
            )
        scores = similarity(norm, texts)
        best: defaultdict[int, float] = defaultdict(float)
        for r, s in zip(rows, scores):
            best[r["video_id"]] = max(best[r["video_id"]], float(s))
        spans: dict[int, list[tuple[float, float, float, int, str]]] = defaultdict(list)
        for r, s, a, b, text in _hits(norm, rows, scores):
            spans[r["video_id"]].append((a, b, s / 100, int(r["frame_id"]), text))
        answers = []
        for vid in ids:
            ref = refs[vid]
            segs = union_spans(spans.get(vid, []))
            top_seg = max(segs, key=lambda sg: sg[0].peak_score, default=None)
            score = max(best.get(vid, 0.0) / 100, top_seg[0].peak_score if top_seg else 0.0)
            answers.append(
                VideoResult(
                    video_id=vid,
                    video=ref.path,
                    present=bool(segs),
                    first_seen_s=segs[0][0].start_s if segs else None,
                    duration_s=sum(sg[0].duration_s for sg in segs),
                    segments=[sg[0] for sg in segs],
                    best_s=top_seg[0].start_s if top_seg else None,
                    score=score,
                    video_duration_s=float(ref.duration_s or 0.0),
                    match=score,
                    best_frame_id=top_seg[1] if top_seg else None,
                    segment_frame_ids=[sg[1] for sg in segs],
                    segment_texts=[sg[2] for sg in segs],
                )
            )
        answers.sort(key=lambda v: (not v.present, -v.score, -v.duration_s, v.video))
        res.results = answers if top is None else answers[:top]
        out.append(res)
    return out
