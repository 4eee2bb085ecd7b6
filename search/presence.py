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
    2. above chance: its cosine is higher than what unrelated footage reaches in that video's
       best shot in 1 case in 1,000 (:data:`IMAGE_RATE`), for the video's number of shots, plus
       the level's confidence margin (:mod:`search.chance`). So an example whose footage is not in
       the archive is reported present in at most 1 video in 1,000, whatever the archive's size.
       The single-pair 99.9th percentile (the archive's "chance" per pair) is still measured: it
       stands in when too few shots can be probed.

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
    (left out the same way). When the chance level of a median video still reaches the same-footage
    level (random weights; an archive of one look) the archive cannot tell, and says so
    (:meth:`ImageCalibration.overlap_line`): the chance level with its margin then decides.

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

from .chance import (
    IMAGE_RATE,
    SHOT_SAMPLES,
    Linked,
    VideoChance,
    _take,
    content_shots,
    measure_video_chance,
    shots_of,
)

__all__ = [
    "BACKGROUND_PROMPTS",
    "LOGIT_SCALE",
    "TEMPLATES",
    "IMAGE_RATE",
    "ImageCalibration",
    "Linked",
    "Rule",
    "background_lse",
    "calibrate_images",
    "content_shots",
    "ensemble",
    "shots_of",
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
    per_video: Callable[[np.ndarray], np.ndarray] | None = None  # content shots -> each video's level
    rate: float = 0.0  # the image rule: false videos per video it allows

    def levels(self, shots: np.ndarray) -> np.ndarray:
        """The level of each video of ``shots`` content shots (``enter`` for every video when the
        rule has no per-video level)."""
        if self.per_video is None:
            return np.full(len(shots), self.enter)
        return np.asarray(self.per_video(np.asarray(shots)), np.float64)

    def describe(self) -> str:
        if self.kind == "text":
            return f"p(query vs background) >= {self.enter:g} (stay >= {self.stay:g})"
        if self.kind == "image":
            return (
                f"cosine >= {self.enter:.4f} in a video of the archive's median length (each video's own level: "
                f"the same footage, and above what unrelated footage reaches in {self.rate * 1000:g} of "
                "1,000 videos of its number of shots)"
            )
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


LEVELS_VERSION = 3  # how the kept levels were measured (kept levels of another version are measured again)


@dataclass(frozen=True)
class ImageCalibration:
    """The archive's levels for the image rule, and what they were measured on."""

    same_shot: float | None  # 10th-percentile cosine of consecutive samples in one shot
    chance: float  # the 99.9th percentile of cosines between single samples of unrelated footage
    pairs: int = 0  # pairs of unrelated footage the chance level was measured on (0: the fallback)
    left_out: int = 0  # pairs left out as the same footage
    over: str = "videos"  # "videos", "shots" (an archive of one video) or "fallback" (too few pairs)
    video: VideoChance | None = None  # the per-video chance (None: too few to measure; ``chance`` is used)
    archive_videos: int = 0  # videos in the archive when measured
    version: int = LEVELS_VERSION

    def same_footage(self) -> float:
        """Level 1: the lowest cosine of the same footage (-1: unknown)."""
        return -1.0 if self.same_shot is None else 1.0 - IMAGE_SPREAD * (1.0 - self.same_shot)

    def chance_level(self, shots: Any = None, rate: float = IMAGE_RATE) -> np.ndarray:
        """Level 2: what unrelated footage reaches in a video of ``shots`` content shots (default:
        the archive's median video) with probability at most ``rate``, plus the level's
        confidence margin (:attr:`VideoChance.margin`)."""
        if self.video is None:
            return np.broadcast_to(np.float64(self.chance), np.shape(shots) if shots is not None else ())
        k = self.video.median_shots if shots is None else shots
        return self.video.level(k, rate) + self.video.margin

    def overlap(self) -> bool:
        """Whether the archive cannot tell the same footage from chance: the median video's
        chance level reaches the same-footage level."""
        return self.same_shot is not None and float(self.chance_level()) >= self.same_footage()

    def levels(self, shots: Any = None, rate: float = IMAGE_RATE) -> np.ndarray:
        """The cosine a frame of a video with ``shots`` content shots needs to match an example
        image, for at most ``rate`` false videos per video: both levels, chance with its margin."""
        return np.maximum(self.same_footage(), self.chance_level(shots, rate))

    def threshold(self, shots: Any = None, rate: float = IMAGE_RATE) -> float:
        """The level of the archive's median video (or of a video of ``shots`` shots)."""
        return float(self.levels(shots, rate))

    def rate_for(self, false_videos: float | None) -> float:
        """The rate per video that gives at most ``false_videos`` false videos per query across
        the archive (None: the default, :data:`IMAGE_RATE`)."""
        if false_videos is None:
            return IMAGE_RATE
        return float(false_videos) / max(self.archive_videos, 1)

    def expected_false(self, rate: float = IMAGE_RATE) -> float | None:
        """False videos to expect per query by example at this archive size: at most ``rate`` of
        each video. None when the per-video chance could not be measured (too few shots to probe):
        the per-pair level then stands in, and it bounds no rate per video."""
        return None if self.video is None else rate * self.archive_videos

    def overlap_line(self) -> str:
        """One line saying that the archive cannot tell (empty when it can)."""
        if not self.overlap():
            return ""
        margin = 0.0 if self.video is None else self.video.margin
        return (
            f"this archive cannot always tell the same footage from chance by picture: unrelated footage "
            f"reaches {float(self.chance_level()):.4f} in a typical video (1 in {1 / IMAGE_RATE:,.0f}, with a "
            f"{margin:.4f} margin of error), the same footage can score as low as {self.same_footage():.4f}; "
            "an example is present only above the first, so the same footage scoring below it is missed."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "ImageCalibration | None":
        """Levels kept as :meth:`to_dict`; None when ``d`` is not that (or of another version)."""
        try:
            if int(d["version"]) != LEVELS_VERSION:
                return None
            same = None if d["same_shot"] is None else float(d["same_shot"])
            v = d.get("video")
            video = (
                None
                if v is None
                else VideoChance(
                    curve=tuple(float(x) for x in v["curve"]),
                    shots=float(v["shots"]),
                    probes=int(v["probes"]),
                    videos=int(v["videos"]),
                    median_shots=int(v["median_shots"]),
                    margin=float(v["margin"]),
                    checked_pairs=int(v["checked_pairs"]),
                    checked_over=int(v["checked_over"]),
                )
            )
            return cls(
                same,
                float(d["chance"]),
                int(d["pairs"]),
                int(d["left_out"]),
                str(d["over"]),
                video,
                int(d.get("archive_videos", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
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
    archive_videos: int | None = None,
) -> ImageCalibration:
    """Measure the image rule's levels on the samples given (see the module docstring); positions
    must be sorted by video and time. Without ``video_id`` every sample counts as one video's.
    ``archive_videos``: the archive's videos when the samples are of some of them (default: the
    videos of the samples)."""
    video_id = np.zeros(len(rows), np.int64) if video_id is None else video_id
    ts_s = np.zeros(len(rows)) if ts_s is None else ts_s
    same = same_shot_cosine(vectors, rows, shot_id, blank)
    m = chance_cosine(vectors, rows, video_id, ts_s, shot_id, blank, same, linked, tol_s)
    vc = measure_video_chance(vectors, rows, video_id, ts_s, shot_id, blank, same, linked, tol_s)
    n = len(np.unique(video_id)) if archive_videos is None else int(archive_videos)
    if m.level is None:
        return ImageCalibration(same, IMAGE_FALLBACK, 0, m.left_out, "fallback", vc, n)
    return ImageCalibration(same, m.level, m.pairs, m.left_out, m.over, vc, n)


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
