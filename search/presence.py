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
    2. above chance: its cosine is higher than 99.9% of the cosines between samples of unrelated
       footage (the archive's "chance" level).

    "Unrelated footage" are samples of two different videos that are not the same footage. An
    archive of ads holds the same footage many times (cut-downs, re-encodes, packshots, stock
    shots in several spots), and those pairs would lift the chance level up to the same-footage
    scores: the more versions, the more stills missed in their own shots. So a pair is left out
    when
      * the versions matching (:mod:`search.versions`) aligns its two samples (``matches``), or
      * its two shots are the same footage by their closest samples: some sample of one is as
        alike to some sample of the other as two consecutive samples of one shot (the archive's
        ``same_shot`` level, their 10th-percentile cosine) - or the pair itself is that alike.
    The chance level is therefore below the ``same_shot`` level: footage that alike cannot be told
    from the same footage by its picture. Archives of one video use pairs of its different shots
    (left out the same way).

    Both levels are the archive's, measured on all of it (not on a ``--video`` scope) when videos
    are indexed, and kept in the store (:mod:`search.levels`). The rule finds the same footage (a
    shot, a packshot, a logo card) wherever it recurs, and nothing when the example is not in the
    archive. An object seen in other footage scores lower than its own shot and needs
    ``--threshold``.

Over time
    A shot's strength is its best sample's (shots longer than ``LONG_SHOT_S`` are refined per
    sample); black, blank and slate shots never match. Segments use hysteresis (enter at the rule's
    level, stay while above a lower one), then an optional gap merge and minimum duration.

``threshold=`` replaces all of this with a plain cosine cut: a frame matches when its raw score is
at least the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from indexer.model.background import BACKGROUND_PROMPTS, LOGIT_SCALE, background_lse

__all__ = [
    "BACKGROUND_PROMPTS",
    "LOGIT_SCALE",
    "TEMPLATES",
    "ImageCalibration",
    "Linked",
    "Rule",
    "background_lse",
    "calibrate_images",
    "ensemble",
    "shot_level",
    "text_probability",
]

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
IMAGE_CHANCE_PERCENTILE = 99.9  # level 2: above this percentile of cosines of unrelated footage
IMAGE_CHANCE_PAIRS = 20000  # pairs the chance level is measured on (at most)
IMAGE_FALLBACK = 0.80  # the chance level when the archive has too few pairs to measure
SHOT_SAMPLES = 8  # samples of each shot compared to decide whether two shots are the same footage
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


def ensemble(
    texts_by_query: Sequence[Sequence[str]],
    encode: Callable[[list[str]], np.ndarray],
    templates: Sequence[str] = TEMPLATES,
) -> np.ndarray:
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


def text_probability(query_scores: np.ndarray, bg_lse: np.ndarray | float, scale: float = LOGIT_SCALE) -> np.ndarray:
    """p(query) under a softmax over [query, backgrounds...] for each frame.

    Args:
        query_scores: ``(n,)`` cosine of each frame with the query.
        bg_lse: ``(n,)`` :func:`background_lse` of each frame (or one value for every frame).
    """
    z = scale * np.asarray(query_scores, np.float64) - bg_lse
    return np.exp(-np.logaddexp(0.0, -z))


def same_shot_cosine(
    vectors: np.ndarray,
    rows: np.ndarray,
    shot_id: np.ndarray,
    blank: np.ndarray,
    percentile: float = IMAGE_SAME_PERCENTILE,
    max_pairs: int = 20000,
) -> float | None:
    """The ``percentile`` of cosine between consecutive samples of one content shot (None: too few pairs)."""
    if len(rows) < 2:
        return None
    idx = np.flatnonzero((shot_id[1:] == shot_id[:-1]) & ~blank[1:])
    if len(idx) < MIN_PAIRS:
        return None
    if len(idx) > max_pairs:
        idx = idx[np.linspace(0, len(idx) - 1, max_pairs).astype(np.int64)]
    cos = np.einsum("ij,ij->i", _take(vectors, rows[idx]), _take(vectors, rows[idx + 1]))
    return float(np.percentile(cos, percentile))


def _take(vectors: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(vectors[np.asarray(rows, np.int64)], np.float32)


@dataclass(frozen=True)
class Linked:
    """Stretches of two videos that are the same footage (``matches`` rows, both ways round):
    row ``k`` says video ``a[k]`` from ``a0[k]`` to ``a1[k]`` s is video ``b[k]`` from ``b0[k]`` to ``b1[k]`` s."""

    a: np.ndarray
    b: np.ndarray
    a0: np.ndarray
    a1: np.ndarray
    b0: np.ndarray
    b1: np.ndarray

    @classmethod
    def from_rows(cls, rows: np.ndarray | Sequence[Sequence[float]]) -> "Linked":
        """From ``(video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s)`` rows."""
        m = np.asarray(rows, np.float64).reshape(-1, 6)
        both = np.concatenate([m, m[:, [1, 0, 4, 5, 2, 3]]])
        order = np.lexsort((both[:, 1], both[:, 0]))
        both = both[order]
        return cls(
            both[:, 0].astype(np.int64), both[:, 1].astype(np.int64), both[:, 2], both[:, 3], both[:, 4], both[:, 5]
        )

    def covers(self, va: np.ndarray, ta: np.ndarray, vb: np.ndarray, tb: np.ndarray, tol: np.ndarray) -> np.ndarray:
        """Whether each sample pair (video ``va`` at ``ta`` s, video ``vb`` at ``tb`` s) is one moment
        of a linked stretch: ``ta`` in the stretch of ``va`` and ``tb`` at the time it maps to in
        ``vb`` (the stretch's two ranges mapped onto each other linearly), give or take ``tol`` s."""
        out = np.zeros(len(va), bool)
        if not len(self.a) or not len(va):
            return out
        key = self.a * (1 << 32) + self.b
        want = np.asarray(va, np.int64) * (1 << 32) + np.asarray(vb, np.int64)
        lo, hi = np.searchsorted(key, want, "left"), np.searchsorted(key, want, "right")
        for i in np.flatnonzero(hi > lo):
            k = slice(lo[i], hi[i])
            a0, a1, b0, b1 = self.a0[k], self.a1[k], self.b0[k], self.b1[k]
            scale = np.where(a1 > a0, (b1 - b0) / np.maximum(a1 - a0, 1e-9), 1.0)
            at = b0 + (ta[i] - a0) * scale
            out[i] = bool(np.any((a0 - tol[i] <= ta[i]) & (ta[i] <= a1 + tol[i]) & (np.abs(tb[i] - at) <= tol[i])))
        return out


def _shot_bounds(shot_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position, the start and stop positions of its run of one shot."""
    n = len(shot_id)
    starts = np.flatnonzero(np.concatenate([[True], shot_id[1:] != shot_id[:-1]]))
    stops = np.append(starts[1:], n)
    which = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    return starts[which], stops[which]


def same_footage_shots(
    vectors: Any,
    rows: np.ndarray,
    shot_id: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    level: float,
    per_shot: int = SHOT_SAMPLES,
    chunk: int = 1024,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """For each pair of positions ``a[i]``, ``b[i]``: whether their shots are the same footage, i.e.
    some sample of one (``per_shot`` of each, evenly spread) has cosine >= ``level`` with some
    sample of the other. Positions must be grouped by shot (sorted by video and time); ``bounds``
    is :func:`_shot_bounds` of ``shot_id`` when already computed."""
    out = np.zeros(len(a), bool)
    if not len(a):
        return out
    start, stop = _shot_bounds(shot_id) if bounds is None else bounds
    pairs, inverse = np.unique(np.column_stack([start[a], start[b]]), axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    k = np.arange(per_shot)

    def spread(first: np.ndarray) -> np.ndarray:  # (m, per_shot) positions inside each shot
        length = stop[first] - first
        return first[:, None] + (k[None, :] * length[:, None]) // per_shot

    dup = np.zeros(len(pairs), bool)
    for c in range(0, len(pairs), chunk):
        p = pairs[c : c + chunk]
        pa, pb = spread(p[:, 0]), spread(p[:, 1])
        va = _take(vectors, rows[pa.ravel()]).reshape(len(p), per_shot, -1)
        vb = _take(vectors, rows[pb.ravel()]).reshape(len(p), per_shot, -1)
        dup[c : c + chunk] = np.einsum("pkd,pld->pkl", va, vb).reshape(len(p), -1).max(axis=1) >= level
    return dup[inverse]


@dataclass(frozen=True)
class ChanceMeasure:
    """The chance level and what it was measured on."""

    level: float | None  # None: too few pairs
    pairs: int  # pairs of unrelated footage measured
    left_out: int  # pairs left out as the same footage (linked by matches, or shots that alike)
    over: str  # "videos": pairs of different videos; "shots": different shots of the archive's one video


def _draw_pairs(keep: np.ndarray, group: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``m`` random pairs of positions ``keep`` (sorted by ``group``) whose ``group`` differs: the
    first uniform, the second uniform among the positions of other groups."""
    g = group[keep]
    starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    sizes = np.diff(np.append(starts, len(keep)))
    which = np.repeat(np.arange(len(starts)), sizes)
    i = rng.integers(0, len(keep), m)
    own_start, own_size = starts[which[i]], sizes[which[i]]
    r = (rng.random(m) * (len(keep) - own_size)).astype(np.int64)
    j = np.where(r >= own_start, r + own_size, r)
    return keep[i], keep[j]


def chance_cosine(
    vectors: Any,
    rows: np.ndarray,
    video_id: np.ndarray,
    ts_s: np.ndarray,
    shot_id: np.ndarray,
    blank: np.ndarray,
    same_level: float | None,
    linked: Linked | None = None,
    tol_s: np.ndarray | float = 0.5,
    percentile: float = IMAGE_CHANCE_PERCENTILE,
    max_pairs: int = IMAGE_CHANCE_PAIRS,
    seed: int = 0,
) -> ChanceMeasure:
    """The ``percentile`` of cosines between samples of unrelated footage (see the module docstring).

    Pairs are drawn at random (seeded: the same archive gives the same level) among content
    samples of different videos, or every such pair when there are few; an archive of one video
    uses pairs of its different shots. Left out: pairs ``linked`` aligns (give or take ``tol_s``,
    per position or one for all), and pairs whose shots (or themselves) are the same footage by
    :func:`same_footage_shots` at ``same_level`` (None: none left out that way). Positions must be
    sorted by video and time.
    """
    keep = np.flatnonzero(~blank)
    n = len(keep)
    over = "videos" if len(np.unique(video_id[keep])) >= 2 else "shots"
    group = video_id if over == "videos" else shot_id
    if n < 2:
        return ChanceMeasure(None, 0, 0, over)
    if n * (n - 1) // 2 <= 3 * max_pairs:  # few: every pair, in a seeded random order
        i, j = np.triu_indices(n, 1)
        shuffle = np.random.default_rng(seed).permutation(len(i))
        a, b = keep[i[shuffle]], keep[j[shuffle]]
        ok = group[a] != group[b]
        a, b = a[ok], b[ok]
    elif len(np.unique(group[keep])) >= 2:
        a, b = _draw_pairs(keep, group, 3 * max_pairs, np.random.default_rng(seed))
    else:
        a = b = keep[:0]
    tol = np.broadcast_to(np.asarray(tol_s, np.float64), video_id.shape)
    bounds = _shot_bounds(shot_id) if same_level is not None else None
    kept_a: list[np.ndarray] = []
    kept_b: list[np.ndarray] = []
    left_out, done = 0, 0
    step = max(1000, max_pairs // 4)
    while done < len(a) and sum(len(x) for x in kept_a) < max_pairs:  # in batches: stop once enough are kept
        ba, bb = a[done : done + step], b[done : done + step]
        done += len(ba)
        n0 = len(ba)
        if linked is not None and over == "videos":
            ok = ~linked.covers(video_id[ba], ts_s[ba], video_id[bb], ts_s[bb], np.maximum(tol[ba], tol[bb]))
            ba, bb = ba[ok], bb[ok]
        if same_level is not None:
            own = np.einsum("ij,ij->i", _take(vectors, rows[ba]), _take(vectors, rows[bb]))
            ok = (own < same_level) & ~same_footage_shots(vectors, rows, shot_id, ba, bb, same_level, bounds=bounds)
            ba, bb = ba[ok], bb[ok]
        left_out += n0 - len(ba)
        kept_a.append(ba)
        kept_b.append(bb)
    a = np.concatenate(kept_a)[:max_pairs] if kept_a else a[:0]
    b = np.concatenate(kept_b)[:max_pairs] if kept_b else b[:0]
    if len(a) < MIN_PAIRS:
        return ChanceMeasure(None, len(a), left_out, over)
    sims = np.einsum("ij,ij->i", _take(vectors, rows[a]), _take(vectors, rows[b]))
    return ChanceMeasure(float(np.percentile(sims, percentile)), len(a), left_out, over)


LEVELS_VERSION = 2  # how the kept levels were measured (kept levels of another version are measured again)


@dataclass(frozen=True)
class ImageCalibration:
    """The archive's two levels for the image rule, and what they were measured on."""

    same_shot: float | None  # 10th-percentile cosine of consecutive samples in one shot
    chance: float  # the 99.9th percentile of cosines between samples of unrelated footage
    pairs: int = 0  # pairs of unrelated footage the chance level was measured on (0: the fallback)
    left_out: int = 0  # pairs left out as the same footage
    over: str = "videos"  # "videos", "shots" (an archive of one video) or "fallback" (too few pairs)
    version: int = LEVELS_VERSION

    def threshold(self) -> float:
        """The cosine a frame needs to match an example image."""
        same = -1.0 if self.same_shot is None else 1.0 - IMAGE_SPREAD * (1.0 - self.same_shot)
        return float(max(same, self.chance))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "ImageCalibration | None":
        """Levels kept as :meth:`to_dict`; None when ``d`` is not that (or of another version)."""
        try:
            if int(d["version"]) != LEVELS_VERSION:
                return None
            same = None if d["same_shot"] is None else float(d["same_shot"])
            return cls(same, float(d["chance"]), int(d["pairs"]), int(d["left_out"]), str(d["over"]))
        except (KeyError, TypeError, ValueError):
            return None


def calibrate_images(
    vectors: Any,
    rows: np.ndarray,
    shot_id: np.ndarray,
    blank: np.ndarray,
    video_id: np.ndarray | None = None,
    ts_s: np.ndarray | None = None,
    linked: Linked | None = None,
    tol_s: np.ndarray | float = 0.5,
) -> ImageCalibration:
    """Measure the image rule's levels on the samples given (see the module docstring); positions
    must be sorted by video and time. Without ``video_id`` every sample counts as one video's."""
    video_id = np.zeros(len(rows), np.int64) if video_id is None else video_id
    ts_s = np.zeros(len(rows)) if ts_s is None else ts_s
    same = same_shot_cosine(vectors, rows, shot_id, blank)
    m = chance_cosine(vectors, rows, video_id, ts_s, shot_id, blank, same, linked, tol_s)
    if m.level is None:
        return ImageCalibration(same, IMAGE_FALLBACK, 0, m.left_out, "fallback")
    return ImageCalibration(same, m.level, m.pairs, m.left_out, m.over)


def shot_level(
    strength: np.ndarray,
    shot_id: np.ndarray,
    shot_len_s: np.ndarray,
    blank: np.ndarray,
    long_shot_s: float = LONG_SHOT_S,
) -> np.ndarray:
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
