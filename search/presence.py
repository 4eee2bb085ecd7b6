"""The presence rule: from raw cosine scores to "is it there", without a threshold per query.

Text queries
    A text is embedded through an ensemble of prompt templates ("a photo of {}.", ...): the mean of
    the unit embeddings, normalised. Each frame is then contrasted with a fixed set of generic
    background prompts ("a photo.", "a video frame.", ...), the "something else" class: under
    CLIP's own softmax (logit scale 100) the query's probability against the backgrounds is

        p = exp(100 s_q) / (exp(100 s_q) + sum_b exp(100 s_b))

    A frame matches when ``p >= 0.5``: the query explains it better than all the generic
    descriptions together. When nothing in the archive fits the query, the backgrounds win
    everywhere and nothing is shown.

Image queries (query by example)
    Two levels, both measured on this archive's own vectors at query time; a frame must pass both:

    1. same footage: its distance to the example (``1 - cosine``) is at most four times the
       distance between two consecutive samples of one shot (their 10th-percentile cosine, so
       camera and subject motion within a shot is allowed for);
    2. above chance: its cosine is higher than 99.9% of the cosines between frames of different
       shots (the archive's "unrelated footage" level).

    It finds the same footage (a shot, a packshot, a logo card) wherever it recurs, and nothing
    when the example is not in the archive. An object seen in other footage scores lower than its
    own shot and needs ``--threshold``.

Over time
    A shot's strength is its best sample's (shots longer than ``LONG_SHOT_S`` are refined per
    sample); black, blank and slate shots never match. Segments use hysteresis (enter at the rule's
    level, stay while above a lower one), then an optional gap merge and minimum duration.

``threshold=`` replaces all of this with a plain cosine cut: a frame matches when its raw score is
at least the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from indexer.terms import BACKGROUND_PROMPTS, LOGIT_SCALE, background_lse

__all__ = ["BACKGROUND_PROMPTS", "LOGIT_SCALE", "TEMPLATES", "Rule", "background_lse", "calibrate_images",
           "ensemble", "shot_level", "text_probability"]

TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of {}.",
    "a video frame of {}.",
    "a still from a video showing {}.",
    "a picture of {}.",
)
TEXT_ENTER = 0.5  # probability against the backgrounds to start a segment
TEXT_STAY = 0.35  # ... and to stay in one
IMAGE_SPREAD = 4.0  # level 1: distance at most 4x that of two samples of one shot
IMAGE_SAME_PERCENTILE = 10.0  # ... taken at this percentile of same-shot cosines
IMAGE_CHANCE_PERCENTILE = 99.9  # level 2: above this percentile of different-shot cosines
IMAGE_FALLBACK = 0.80  # the chance level when the archive has too few pairs to measure
MIN_PAIRS = 10
LONG_SHOT_S = 4.0


@dataclass(frozen=True)
class Rule:
    """How strengths become segments for one query."""

    kind: str  # "text", "image" or "threshold"
    enter: float
    stay: float
    min_duration_s: float = 0.0
    merge_gap_s: float = 0.0

    def describe(self) -> str:
        if self.kind == "text":
            return f"p(query vs background) >= {self.enter:g} (stay >= {self.stay:g})"
        if self.kind == "image":
            return f"cosine >= {self.enter:.4f} (same-footage level of this archive, above chance)"
        return f"cosine >= {self.enter:g}"


def ensemble(texts_by_query: Sequence[Sequence[str]], encode: "callable", templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One unit vector per query: the normalised mean of its prompts x templates embeddings.

    Args:
        texts_by_query: for each query, its prompts (a text query has one; a label may have several).
        encode: texts -> ``(n, dim)`` unit vectors, called once with every filled template.
        templates: format strings with one ``{}``.
    """
    filled: list[str] = []
    spans: list[tuple[int, int]] = []
    for prompts in texts_by_query:
        a = len(filled)
        filled.extend(t.format(p.strip()) for p in prompts for t in templates)
        spans.append((a, len(filled)))
    emb = encode(filled)
    out = np.stack([emb[a:b].mean(axis=0) for a, b in spans]) if spans else np.zeros((0, emb.shape[1]), np.float32)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def text_probability(query_scores: np.ndarray, bg_lse: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """p(query) under a softmax over [query, backgrounds...] for each frame.

    Args:
        query_scores: ``(n,)`` cosine of each frame with the query.
        bg_lse: ``(n,)`` :func:`background_lse` of each frame.
    """
    z = scale * np.asarray(query_scores, np.float64) - bg_lse
    return np.exp(-np.logaddexp(0.0, -z))


def same_shot_cosine(vectors: np.ndarray, rows: np.ndarray, shot_id: np.ndarray, blank: np.ndarray,
                     percentile: float = IMAGE_SAME_PERCENTILE, max_pairs: int = 20000) -> float | None:
    """The ``percentile`` of cosine between consecutive samples of one content shot (None: too few pairs)."""
    if len(rows) < 2:
        return None
    same = (shot_id[1:] == shot_id[:-1]) & ~blank[1:]
    idx = np.flatnonzero(same)
    if len(idx) < MIN_PAIRS:
        return None
    if len(idx) > max_pairs:
        idx = idx[np.linspace(0, len(idx) - 1, max_pairs).astype(np.int64)]
    a = vectors[rows[idx]]
    b = vectors[rows[idx + 1]]
    return float(np.percentile(np.einsum("ij,ij->i", a, b), percentile))


def different_shot_cosine(vectors: np.ndarray, rows: np.ndarray, shot_id: np.ndarray, blank: np.ndarray,
                          percentile: float = IMAGE_CHANCE_PERCENTILE, max_pairs: int = 20000) -> float | None:
    """The ``percentile`` of cosine between samples of different content shots (None: too few)."""
    keep = np.flatnonzero(~blank)
    n = len(keep)
    if n < 4:
        return None
    half = n // 2
    a = keep[:half]
    b = keep[half : 2 * half]
    diff = shot_id[a] != shot_id[b]
    a, b = a[diff], b[diff]
    if len(a) < MIN_PAIRS:
        return None
    if len(a) > max_pairs:
        pick = np.linspace(0, len(a) - 1, max_pairs).astype(np.int64)
        a, b = a[pick], b[pick]
    sims = np.einsum("ij,ij->i", vectors[rows[a]], vectors[rows[b]])
    return float(np.percentile(sims, percentile))


@dataclass(frozen=True)
class ImageCalibration:
    """The archive's two levels for the image rule."""

    same_shot: float | None  # 10th-percentile cosine of consecutive samples in one shot
    chance: float  # the 99.9th percentile of cosines between different shots

    def threshold(self) -> float:
        """The cosine a frame needs to match an example image."""
        same = -1.0 if self.same_shot is None else 1.0 - IMAGE_SPREAD * (1.0 - self.same_shot)
        return float(max(same, self.chance))


def calibrate_images(vectors: np.ndarray, rows: np.ndarray, shot_id: np.ndarray, blank: np.ndarray) -> ImageCalibration:
    """Measure the image rule's levels on the frames given (see the module docstring)."""
    chance = different_shot_cosine(vectors, rows, shot_id, blank)
    return ImageCalibration(same_shot_cosine(vectors, rows, shot_id, blank),
                            IMAGE_FALLBACK if chance is None else chance)


def shot_level(strength: np.ndarray, shot_id: np.ndarray, shot_len_s: np.ndarray, blank: np.ndarray,
               long_shot_s: float = LONG_SHOT_S) -> np.ndarray:
    """Each sample takes its shot's best strength (short shots); long shots keep per-sample values;
    blank shots get ``-inf``. Samples must be grouped by shot (sorted by video and time)."""
    out = np.asarray(strength, np.float64).copy()
    if out.size == 0:
        return out
    starts = np.flatnonzero(np.concatenate([[True], shot_id[1:] != shot_id[:-1]]))
    best = np.maximum.reduceat(out, starts)
    counts = np.diff(np.append(starts, len(out)))
    per_shot = np.repeat(best, counts)
    short = shot_len_s <= long_shot_s
    out[short] = per_shot[short]
    out[blank] = -np.inf
    return out
