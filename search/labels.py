"""Saved categories (labels): their per-video answers, materialised from the stored vectors, and
``classify``: which label best describes each video, with each label's share of screen time.

A label is a name and one or more prompts. Its query vector is the template ensemble of all its
prompts, so a label with the single prompt "a beach" answers exactly as ``archive search "a beach"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from indexer.encoder import Encoder
from indexer.errors import QueryError
from indexer.store import Writer, load_frames, read_labels

from . import presence
from .query import Rule, rank, resolve_scope

SOMETHING_ELSE = "something else"


@dataclass
class LabelSummary:
    name: str
    prompts: list[str]
    threshold: float | None
    videos_present: int = 0
    seconds: float = 0.0


@dataclass
class VideoClass:
    """One video's categories: the best one and each label's share of its (non-blank) screen time."""

    video_id: int
    video: str
    best: str
    shares: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "video_id": self.video_id, "best": self.best,
                "shares": {k: round(v, 4) for k, v in self.shares.items()}}


def _label_vectors(labels: Sequence[tuple[str, list[str], float | None]], encoder: Encoder) -> np.ndarray:
    return presence.ensemble([p for _, p, _ in labels], encoder.encode_texts)


def materialise(store_dir: str | os.PathLike[str], encoder: Encoder, writer: Writer | None = None) -> int:
    """Recompute the ``segments`` and ``video_labels`` tables for every saved label.

    Args:
        store_dir: the store.
        encoder: the store's encoder (for the labels' prompts and the background prompts).
        writer: a writer already holding the store's lock (None: take it here).

    Returns:
        The number of (label, video) rows written.
    """
    labels = read_labels(store_dir)
    seg_rows: list[tuple[Any, ...]] = []
    vid_rows: list[tuple[Any, ...]] = []
    if labels:
        table = load_frames(store_dir)
        q = _label_vectors(labels, encoder)
        bg = encoder.encode_texts(list(presence.BACKGROUND_PROMPTS))
        scores = table.scores(np.concatenate([q, bg]))
        raw, bg_lse = scores[:, : len(labels)], presence.background_lse(scores[:, len(labels):])
        rules = [
            Rule("threshold", t, t) if t is not None else Rule("text", presence.TEXT_ENTER, presence.TEXT_STAY)
            for _, _, t in labels
        ]
        results = rank(table, raw, bg_lse, [n for n, _, _ in labels], ["text"] * len(labels), rules, top=None)
        for (name, _, _), res in zip(labels, results):
            for r in res.results:
                vid_rows.append((r.video_id, name, r.present, r.first_seen_s, r.duration_s, len(r.segments),
                                 r.best_s, r.score))
                seg_rows.extend((name, r.video_id, s.start_s, s.end_s, s.peak_score) for s in r.segments)
    if writer is not None:
        writer.replace_label_results(seg_rows, vid_rows)
    else:
        with Writer(store_dir) as w:
            w.replace_label_results(seg_rows, vid_rows)
    return len(vid_rows)


def list_labels(store_dir: str | os.PathLike[str]) -> list[LabelSummary]:
    """Saved labels with how many videos show them and for how long in all."""
    from indexer.store import read_connection  # noqa: PLC0415

    out = [LabelSummary(n, p, t) for n, p, t in read_labels(store_dir)]
    with read_connection(store_dir) as con:
        stats = dict(
            (r[0], (r[1], r[2]))
            for r in con.execute(
                "SELECT label, count(*) FILTER (WHERE present), coalesce(sum(duration_s), 0) FROM video_labels GROUP BY label"
            ).fetchall()
        )
    for lab in out:
        lab.videos_present, lab.seconds = stats.get(lab.name, (0, 0.0))
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
    to "something else". A label's share is its samples' screen time over the video's non-blank
    screen time; ``best`` is the class with the largest share.

    Raises:
        QueryError: no labels saved, or an unknown label name.
    """
    saved = {n: (p, t) for n, p, t in read_labels(store_dir)}
    names = list(labels) if labels else sorted(saved)
    if not names:
        raise QueryError("no labels saved: add some with `archive label add NAME --prompt TEXT`.")
    unknown = [n for n in names if n not in saved]
    if unknown:
        raise QueryError(f"unknown label(s): {', '.join(unknown)}; see `archive label list`.")
    table = load_frames(store_dir, resolve_scope(store_dir, videos))
    q = presence.ensemble([saved[n][0] for n in names], encoder.encode_texts)
    bg = encoder.encode_texts(list(presence.BACKGROUND_PROMPTS))
    scores = table.scores(np.concatenate([q, bg])).astype(np.float64)
    logits = presence.LOGIT_SCALE * scores
    # background prompts pool into one "something else" class (log-sum-exp of their logits)
    lab = logits[:, : len(names)]
    bgl = logits[:, len(names):]
    m = bgl.max(axis=1, keepdims=True) if bgl.size else np.zeros((len(scores), 1))
    other = (m + np.log(np.exp(bgl - m).sum(axis=1, keepdims=True))) if bgl.size else np.full((len(scores), 1), -np.inf)
    winner = np.argmax(np.concatenate([lab, other], axis=1), axis=1)
    classes = names + [SOMETHING_ELSE]
    dur = table.end_s - table.ts_s
    out: list[VideoClass] = []
    for vid in np.unique(table.video_id):
        sel = (table.video_id == vid) & ~table.blank
        total = float(dur[sel].sum())
        shares = {c: (float(dur[sel & (winner == k)].sum()) / total if total > 0 else 0.0) for k, c in enumerate(classes)}
        best = max(classes, key=lambda c: shares[c])
        out.append(VideoClass(int(vid), table.videos[int(vid)]["path"], best, shares))
    return out
