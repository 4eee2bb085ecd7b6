"""The per-video chance level of the image rule (:mod:`search.presence`): how high an example
from footage that is not in the archive reaches in the best of a video's shots, measured on the
archive's own shots (probes), for any number of shots and any rate.

The question a video answers is "is the example's footage anywhere in me?", so it is judged by its
best shot, and a level for single pairs of samples would let unrelated footage through far more
often than its stated rate (a multiple-comparisons error). See :class:`VideoChance`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

__all__ = [
    "IMAGE_RATE",
    "SHOT_SAMPLES",
    "Linked",
    "VideoChance",
    "content_shots",
    "exceedance_curve",
    "measure_video_chance",
    "shots_of",
]

SHOT_SAMPLES = 8  # samples of each shot compared to decide whether two shots are the same footage

IMAGE_RATE = 1e-3  # an example not in the archive is present in at most this share of videos
BOOTSTRAP = 200  # resamples of the probes the chance level's confidence margin is measured on


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


@dataclass(frozen=True)
class VideoChance:
    """How high an example from unrelated footage reaches in a video's *best* shot.

    Measured with probes: samples of the archive's own shots (one per shot, at random), each
    compared with every content shot of up to :data:`TARGET_VIDEOS` other videos (an archive of
    one video: its other shots), the shots that are the probe's own footage left out (see
    :func:`measure_video_chance`). A (probe, shot) pair scores the shot's best sample.

    ``q(x)``, the share of (probe, shot) pairs scoring ``x`` or more (each probe weighing the
    same), is the chance that one shot of unrelated footage reaches ``x``. A video of ``k``
    content shots is reached with probability at most ``k * q(x)`` (the union bound; on average
    over an archive's videos it is exact for ``k`` their mean), so a video's level at a rate ``r``
    is the ``x`` where ``q(x) = r / k`` (:meth:`level`). ``q`` is read off the pairs where at
    least :data:`TAIL_VALUES` of them reach ``x``; beyond, it is extrapolated from the top
    :data:`TAIL_VALUES` by a power-law tail of the distance ``1 - x`` (peaks over a threshold,
    :func:`exceedance_curve`). ``q`` is kept at :data:`GRID` (``log10 q`` from -9 to 0 in
    quarter decades).

    The probes are the archive's own footage standing for footage that is not in it; how far that
    holds is the confidence ``margin``: the median video's level at :data:`IMAGE_RATE` over
    :data:`BOOTSTRAP` resamples of the probes, its 95th percentile minus the level itself.
    """

    curve: tuple[float, ...]  # the cosine x where q(x) = 10 ** GRID[i]
    shots: float  # target shots each probe was compared with (mean)
    probes: int
    videos: int  # videos (or shots, in an archive of one video) the probes were compared with
    median_shots: int  # content shots of the archive's median video
    margin: float = 0.0  # the 95% confidence margin of the median video's level at IMAGE_RATE
    checked_pairs: int = 0  # (probe, video) pairs the levels were checked on ...
    checked_over: int = 0  # ... and how many of them had a shot at or above their video's level

    def level(self, shots: Any, rate: float) -> np.ndarray:
        """The cosine that unrelated footage reaches in a video of ``shots`` content shots with
        probability at most ``rate`` (the margin not added)."""
        k = np.maximum(np.asarray(shots, np.float64), 1.0)
        lq = np.log10(np.clip(rate / k, 10.0 ** GRID[0], 1.0))
        return np.interp(lq, GRID, np.asarray(self.curve, np.float64))


GRID = np.arange(-9.0, 0.001, 0.25)


def exceedance_curve(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The cosine ``x`` at each ``q = 10 ** GRID`` for pair scores ``values`` of weights
    ``weights`` (each probe's pairs weigh ``1 / (probes * its pairs)``): read off where
    :data:`TAIL_VALUES` or more pairs reach it, else extrapolated by an exponential tail fitted
    to the top :data:`TAIL_VALUES`. Non-increasing in ``q``."""
    order = np.argsort(-values, kind="stable")
    v, w = values[order].astype(np.float64), np.cumsum(weights[order])
    q = 10.0**GRID
    idx = np.minimum(np.searchsorted(w, q, side="right"), len(v) - 1)  # first value whose mass passes q
    read = v[idx]
    n_t = min(TAIL_VALUES, len(v) - 1)
    u, q_u = v[n_t], w[n_t - 1]
    d_u = max(1.0 - u, MIN_DISTANCE)
    d = np.maximum(1.0 - v[:n_t], MIN_DISTANCE)
    mass = np.diff(np.concatenate([[0.0], w[:n_t]]))
    slope = max(float(np.sum(mass * np.log(d_u / np.minimum(d, d_u))) / max(q_u, 1e-300)), MIN_SLOPE)
    tail = 1.0 - d_u * np.minimum(q / q_u, 1.0) ** slope
    out = np.where(q < q_u, np.maximum(tail, read), read)
    return np.maximum.accumulate(out[::-1])[::-1]  # rounding aside, non-increasing


PROBES = 400  # probes the per-video chance is measured with (at most)
TARGET_VIDEOS = 200  # ... each compared with every content shot of this many other videos (at most)
MIN_PROBES = 20  # fewer probes with footage to compare with: no per-video chance (the per-pair level is used)
TAIL_VALUES = 50  # q is read off the pairs where at least this many reach a level, else extrapolated
MIN_DISTANCE = 1e-6  # distances (1 - cosine) below this count as this
MIN_SLOPE = 0.05  # the tail's log distance falls at least this fast with log q
KEEP_PER_PROBE = 256  # each probe's best pairs kept for q (the rest are far below any level)
PROBE_CHUNK = 64


def _content_runs(video_id: np.ndarray, shot_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of runs of one shot of one video."""
    n = len(shot_id)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.concatenate([[True], (shot_id[1:] != shot_id[:-1]) | (video_id[1:] != video_id[:-1])])
    starts = np.flatnonzero(change)
    return starts, np.append(starts[1:], n)


def content_shots(video_id: np.ndarray, shot_id: np.ndarray, blank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each video's number of content (not blank) shots: ``(video ids, counts)``, ids ascending.
    Positions must be grouped by video and shot."""
    keep = np.flatnonzero(~np.asarray(blank, bool))
    starts, _ = _content_runs(video_id[keep], shot_id[keep])
    vids, counts = np.unique(video_id[keep][starts], return_counts=True)
    return vids.astype(np.int64), counts.astype(np.int64)


def shots_of(videos: np.ndarray, shots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The content shots of each of ``videos`` from :func:`content_shots` (1 when unknown)."""
    vids, counts = shots
    if not len(vids):
        return np.ones(len(videos), np.int64)
    i = np.clip(np.searchsorted(vids, videos), 0, len(vids) - 1)
    return np.where(vids[i] == videos, counts[i], 1)


def measure_video_chance(
    vectors: Any,
    rows: np.ndarray,
    video_id: np.ndarray,
    ts_s: np.ndarray,
    shot_id: np.ndarray,
    blank: np.ndarray,
    same_level: float | None,
    linked: Linked | None = None,
    tol_s: np.ndarray | float = 0.5,
    rate: float = IMAGE_RATE,
    seed: int = 0,
) -> VideoChance | None:
    """Measure :class:`VideoChance` (None: too few shots to measure). Positions must be sorted by
    video and time.

    Probes are random content samples, one per random shot (seeded). A probe is compared with
    every content sample of the target videos (a seeded random set of up to
    :data:`TARGET_VIDEOS`); a target shot is left out when it is of the probe's own video (its own
    shot, in an archive of one video), when ``linked`` aligns it with the probe's moment, or when
    it is the probe's footage by :func:`search.presence.same_footage_shots`' test at ``same_level`` (some of
    :data:`SHOT_SAMPLES` samples of the probe's shot that alike to one of its samples)."""
    keep = np.flatnonzero(~np.asarray(blank, bool))
    vid, sid = video_id[keep], shot_id[keep]
    starts, stops = _content_runs(vid, sid)
    if len(starts) < 3:
        return None
    run_vid = vid[starts]
    per_video = len(np.unique(run_vid)) >= 2
    group = run_vid if per_video else np.arange(len(starts))
    rng = np.random.default_rng(seed)
    if per_video:
        tv = np.unique(run_vid)
        pick = np.sort(rng.choice(tv, min(TARGET_VIDEOS, len(tv)), replace=False))
        t_runs = np.flatnonzero(np.isin(run_vid, pick))
    else:
        t_runs = np.arange(len(starts))
    t_len = stops[t_runs] - starts[t_runs]
    t_pos = np.concatenate([np.arange(starts[r], stops[r]) for r in t_runs])
    t_starts = np.concatenate([[0], np.cumsum(t_len)[:-1]]).astype(np.int64)
    targets = _take(vectors, rows[keep[t_pos]])
    t_group = group[t_runs]
    # the target shots of each target group (video, or shot): runs are grouped by it
    g_starts = np.flatnonzero(np.concatenate([[True], t_group[1:] != t_group[:-1]]))
    g_shots = np.diff(np.append(g_starts, len(t_runs)))
    t_t0 = ts_s[keep[starts[t_runs]]] if per_video else None
    t_t1 = ts_s[keep[stops[t_runs] - 1]] if per_video else None
    tol = np.broadcast_to(np.asarray(tol_s, np.float64), video_id.shape)

    probe_runs = rng.choice(len(starts), min(PROBES, len(starts)), replace=False)
    length = stops[probe_runs] - starts[probe_runs]
    probe_pos = starts[probe_runs] + (rng.random(len(probe_runs)) * length).astype(np.int64)
    k = np.arange(SHOT_SAMPLES)
    values: list[np.ndarray] = []  # each probe's best (probe, shot) scores ...
    owner: list[np.ndarray] = []  # ... which probe they are of
    compared = np.zeros(len(probe_runs), np.int64)  # target shots each probe was compared with
    video_max: list[np.ndarray] = []
    video_k: list[np.ndarray] = []
    keep_n = min(KEEP_PER_PROBE, len(t_runs))
    for c in range(0, len(probe_runs), PROBE_CHUNK):
        pr, pp = probe_runs[c : c + PROBE_CHUNK], probe_pos[c : c + PROBE_CHUNK]
        m = len(pr)
        probe = _take(vectors, rows[keep[pp]])
        shot_max = np.maximum.reduceat(probe @ targets.T, t_starts, axis=1)  # (m, target shots)
        out = group[pr][:, None] == t_group[None, :]  # the probe's own video (or shot)
        if same_level is not None:
            spread = starts[pr][:, None] + (k[None, :] * length[c : c + m, None]) // SHOT_SAMPLES
            own = _take(vectors, rows[keep[spread.ravel()]])
            alike = (own @ targets.T).reshape(m, SHOT_SAMPLES, -1).max(axis=1)
            out |= np.maximum.reduceat(alike, t_starts, axis=1) >= same_level
        if linked is not None and per_video and len(linked.a):
            assert t_t0 is not None and t_t1 is not None
            out |= _linked_shots(linked, vid[pp], ts_s[keep[pp]], tol[keep[pp]], run_vid[t_runs], t_t0, t_t1)
        masked = np.where(out, -np.inf, shot_max)
        compared[c : c + m] = (~out).sum(axis=1)
        top = -np.partition(-masked, keep_n - 1, axis=1)[:, :keep_n] if keep_n < masked.shape[1] else masked
        values.append(top.ravel())
        owner.append(np.repeat(np.arange(c, c + m), top.shape[1]))
        vmax = np.maximum.reduceat(masked, g_starts, axis=1)
        ok = np.isfinite(vmax)
        video_max.append(vmax[ok])
        video_k.append(np.broadcast_to(g_shots, vmax.shape)[ok])
    used = compared > 0
    if used.sum() < MIN_PROBES:
        return None
    val, own_of = np.concatenate(values), np.concatenate(owner)
    fin = np.isfinite(val)
    order = np.argsort(-val[fin], kind="stable")  # once: each curve below then sorts sorted values
    val, own_of = val[fin][order], own_of[fin][order]
    n_used = int(used.sum())

    def curve_of(take: np.ndarray) -> np.ndarray:  # probes drawn (with repeats): their curve
        times = np.bincount(take, minlength=len(probe_runs))
        wt = times[own_of] / (len(take) * np.maximum(compared[own_of], 1))
        sel = wt > 0
        return exceedance_curve(val[sel], wt[sel])

    probes_used = np.flatnonzero(used)
    run_counts = np.unique(run_vid, return_counts=True)[1] if per_video else np.array([len(starts)])
    vc = VideoChance(
        curve=tuple(round(float(x), 6) for x in curve_of(probes_used)),
        shots=float(np.mean(compared[used])),
        probes=n_used,
        videos=len(g_starts),
        median_shots=int(np.median(run_counts)),
    )
    level = float(vc.level(vc.median_shots, rate))
    boot = np.random.default_rng(seed + 1)
    again = [
        float(replace(vc, curve=tuple(curve_of(boot.choice(probes_used, n_used)))).level(vc.median_shots, rate))
        for _ in range(BOOTSTRAP)
    ]
    margin = max(0.0, float(np.percentile(again, 95)) - level)
    vm, vk = np.concatenate(video_max), np.concatenate(video_k)
    over = int(np.sum(vm >= vc.level(vk, rate) + margin))
    return replace(vc, margin=round(margin, 6), checked_pairs=len(vm), checked_over=over)


def _linked_shots(
    linked: Linked,
    p_vid: np.ndarray,
    p_t: np.ndarray,
    p_tol: np.ndarray,
    t_vid: np.ndarray,
    t_t0: np.ndarray,
    t_t1: np.ndarray,
) -> np.ndarray:
    """``(probes, target shots)``: whether ``linked`` aligns the probe's moment with a moment of
    the target shot (give or take the probe's ``tol``)."""
    out = np.zeros((len(p_vid), len(t_vid)), bool)
    lo, hi = np.searchsorted(linked.a, p_vid, "left"), np.searchsorted(linked.a, p_vid, "right")
    for i in np.flatnonzero(hi > lo):
        s = slice(lo[i], hi[i])
        a0, a1, b0, b1, b = linked.a0[s], linked.a1[s], linked.b0[s], linked.b1[s], linked.b[s]
        inside = (a0 - p_tol[i] <= p_t[i]) & (p_t[i] <= a1 + p_tol[i])
        scale = np.where(a1 > a0, (b1 - b0) / np.maximum(a1 - a0, 1e-9), 1.0)
        for bv, tb in zip(b[inside], (b0 + (p_t[i] - a0) * scale)[inside]):
            out[i] |= (t_vid == bv) & (t_t0 - p_tol[i] <= tb) & (tb <= t_t1 + p_tol[i])
    return out
