"""Aligning two videos' samples: where shared footage lies in each, placed shot pair by shot pair.

A video's samples are a :class:`Side`; two sides' shared segments are :class:`Match` es, found by
:func:`align` on the archive's :class:`Basis` (whitening and levels, measured once and kept in the
store). See :mod:`search.versions` for the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from indexer.store import FrameTable


MATCH_SPREAD = 1.0  # whitened: a sample matches when closer than the median step inside a shot


CANDIDATE_SPREAD = 4.0  # raw cosine: candidates are closer than 4x the median step inside a shot


WHITEN_SAMPLE = 50_000  # vectors the whitening is measured on


WHITEN_REG = 0.01  # each direction's variance gets 1% of the largest added before scaling (more
# when the archive has fewer than 4 samples per dimension)


# when the archive has fewer than 4 samples per dimension)
MIN_WHITEN = 64  # fewer content samples than this: no whitening


BASIS_VIDEOS = 2000  # videos (spread over the archive) the basis is measured on


LEVEL_MIN, LEVEL_MAX = 0.80, 0.9995  # the level is kept inside this range


LEVEL_FALLBACK = 0.95  # when the archive has too few samples to measure it


MIN_PAIRS = 20  # consecutive same-shot pairs needed to measure the level


MIN_RUN = 2  # samples on a line for a segment


BRIDGE_S = 2.0  # samples on one line this far apart (or closer) are one segment


STILL = 0.5  # consecutive samples closer than half the way from the match level to 1: a still picture


JOIN = 1.25  # segments that continue each other within 1.25 sample intervals on both sides are one


SPEEDS = np.round(np.arange(0.96, 1.0401, 0.01), 4)  # speed ratios tried (B's time per A's time)


@dataclass
class Side:
    """One video's samples: times, ends, shots, whether blank, and their unit vectors."""

    video_id: int
    ts_s: np.ndarray
    end_s: np.ndarray
    shot_id: np.ndarray
    blank: np.ndarray
    vectors: np.ndarray  # (n, dim) float32
    shot_start: np.ndarray  # the start of each sample's shot (seconds)
    shot_end: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_s)

    @property
    def interval_s(self) -> float:
        """The typical sample interval (median step between samples)."""
        if len(self.ts_s) < 2:
            return float(self.end_s[0] - self.ts_s[0]) if len(self.ts_s) else 0.5
        return float(np.median(np.diff(self.ts_s)))


@dataclass
class Match:
    """One aligned shared segment: ``[a_start_s, a_end_s]`` of ``video_a`` shows what
    ``[b_start_s, b_end_s]`` of ``video_b`` shows. ``score`` is the mean cosine of the aligned
    samples; ``samples`` how many of ``video_a``'s samples it rests on."""

    video_a: int
    video_b: int
    a_start_s: float
    a_end_s: float
    b_start_s: float
    b_end_s: float
    score: float
    samples: int

    def swapped(self) -> "Match":
        return Match(
            self.video_b,
            self.video_a,
            self.b_start_s,
            self.b_end_s,
            self.a_start_s,
            self.a_end_s,
            self.score,
            self.samples,
        )

    def ordered(self) -> "Match":
        """The same match with the lower video id as ``video_a`` (how the table stores a pair)."""
        return self if self.video_a <= self.video_b else self.swapped()


@dataclass
class Basis:
    """How an archive's samples are compared for matching, measured once and kept in the store.

    ``mean`` and ``transform`` whiten the vectors (``y = normalise((x - mean) @ transform)``): the
    directions every picture varies along (overall colour and brightness) are scaled down, the
    fine ones up, so that the same footage stands out from footage that only looks alike.
    ``level`` is the match level on whitened vectors; ``candidate_level`` the looser raw-cosine
    level of the range search that finds candidate videos."""

    mean: np.ndarray  # (dim,) float32
    transform: np.ndarray  # (dim, dim) float32
    level: float
    candidate_level: float
    vectors: int  # how many vectors it was measured on

    def whiten(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float32) - self.mean) @ self.transform
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def _consecutive(shot_id: np.ndarray, blank: np.ndarray, adjacent: np.ndarray | None = None) -> np.ndarray | None:
    """Indexes ``i`` where samples ``i`` and ``i + 1`` are of one content shot (and ``adjacent[i]``)."""
    ok = (shot_id[1:] == shot_id[:-1]) & ~blank[1:] & ~blank[:-1]
    if adjacent is not None:
        ok &= adjacent
    idx = np.flatnonzero(ok)
    return idx if len(idx) >= MIN_PAIRS else None


def level_of(vectors: np.ndarray, idx: np.ndarray | None, spread: float) -> float:
    """``1 - spread * median(1 - cosine)`` of consecutive samples ``idx``, ``idx + 1`` of one shot."""
    if idx is None:
        return LEVEL_FALLBACK
    cos = np.einsum("ij,ij->i", vectors[idx], vectors[idx + 1])
    return float(np.clip(1.0 - spread * float(np.median(1.0 - cos)), LEVEL_MIN, LEVEL_MAX))


def measure_basis(table: "FrameTable", max_vectors: int = WHITEN_SAMPLE) -> Basis:
    """Measure the whitening and both levels on up to ``max_vectors`` samples of the archive, taken
    as runs of consecutive samples spread over it."""
    n = len(table)
    if n > max_vectors:
        run = 64
        starts = np.linspace(0, n - run, max_vectors // run).astype(np.int64)
        pos = np.unique((starts[:, None] + np.arange(run)[None, :]).ravel())
    else:
        pos = np.arange(n)
    x = np.asarray(table.vectors.take(table.row[pos]), np.float32)
    table.release_pages()
    blank = table.blank[pos]
    idx = _consecutive(table.shot_id[pos], blank, pos[1:] == pos[:-1] + 1)
    dim = x.shape[1] if x.ndim == 2 else 0
    content = x[~blank] if (~blank).sum() >= MIN_WHITEN else x
    if len(content) >= MIN_WHITEN:
        mean = content.mean(axis=0)
        c = content - mean
        lam, u = np.linalg.eigh((c.T @ c / len(c)).astype(np.float64))
        lam = np.maximum(lam, 0.0)
        # fewer samples than a few per dimension measure the small directions poorly: shrink more
        reg = WHITEN_REG * max(1.0, 4.0 * c.shape[1] / len(c))
        transform = (u / np.sqrt(lam + reg * max(lam.max(), 1e-12))).astype(np.float32)
    else:  # too few to measure: plain cosine
        mean, transform = np.zeros(dim, np.float32), np.eye(dim, dtype=np.float32)
    basis = Basis(mean.astype(np.float32), transform, LEVEL_FALLBACK, level_of(x, idx, CANDIDATE_SPREAD), int(len(x)))
    basis.level = level_of(basis.whiten(x), idx, MATCH_SPREAD) if len(x) else LEVEL_FALLBACK
    return basis


def _lines(ta: np.ndarray, tb: np.ndarray, ii: np.ndarray, jj: np.ndarray, tol: float) -> tuple[float, float, int]:
    """The line ``t_b = s t_a + c`` through the most distinct A samples among cells ``(ii, jj)``
    (within ``tol`` of it); ties go to more cells, then to the speed nearer 1. Returns
    ``(s, c, support)``."""
    best, best_key = (1.0, 0.0, 0), (0, 0, 0.0)
    for s in SPEEDS:
        c = tb[jj] - s * ta[ii]
        order = np.argsort(c, kind="stable")
        cs, rows = c[order], ii[order]
        hi = np.searchsorted(cs, cs + 2 * tol, side="right")
        # prev[k]: the position of the previous cell of the same A sample (-1: none); a window
        # [k, hi) holds as many distinct samples as cells whose previous one lies before k
        by_row = np.lexsort((np.arange(len(rows)), rows))
        prev = np.full(len(rows), -1, np.int64)
        same = rows[by_row][1:] == rows[by_row][:-1]
        prev[by_row[1:][same]] = by_row[:-1][same]
        for k in np.argsort(k_sizes := (hi - np.arange(len(cs))), kind="stable")[::-1]:
            if k_sizes[k] < best_key[0]:
                break
            n = int(np.count_nonzero(prev[k : hi[k]] < k))
            key = (n, int(k_sizes[k]), -abs(float(s) - 1.0))
            if key > best_key:
                best_key, best = key, (float(s), float(np.median(cs[k : hi[k]])), n)
    return best


def align(
    a: Side,
    b: Side,
    sims: np.ndarray,
    level: float,
    stay: float | None = None,
    white: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Match]:
    """Aligned shared segments of two videos from their samples' cosine matrix (see the module
    docstring): lines are found through cells at or above ``level``, and followed through cells at
    or above ``stay`` (default: twice as far from 1 as ``level``). ``white``: both videos' whitened
    vectors (those ``sims`` was made of), for the check that a firm segment is not two stills."""
    interval = max(1e-3, min(a.interval_s, b.interval_s))
    tol = 0.75 * interval
    stay = 1.0 - 2.0 * (1.0 - level) if stay is None else stay
    weak = sims >= stay
    weak[a.blank, :] = False
    weak[:, b.blank] = False
    strong_m = sims >= level
    out: list[Match] = []
    firm = False  # a segment resting on MIN_RUN samples of each video at the match level, and averaging it
    for _ in range(256):  # lines per pair (a safety bound)
        ok = weak & strong_m
        ii, jj = np.nonzero(ok)
        if not len(ii):
            break
        wi, wj = np.nonzero(weak)
        s, c, support = _lines(a.ts_s, b.ts_s, ii, jj, tol)
        if support < 1:
            break
        near = np.abs(b.ts_s[wj] - (s * a.ts_s[wi] + c)) <= tol
        li, lj = wi[near], wj[near]
        # per A sample, its best cell on the line
        order = np.lexsort((-sims[li, lj], li))
        li, lj = li[order], lj[order]
        first = np.concatenate([[True], li[1:] != li[:-1]])
        li, lj = li[first], lj[first]
        used = False
        for run in _runs(li, lj, a, b, s, c, tol):
            ri, rj = li[run], lj[run]
            n_strong = int(strong_m[ri, rj].sum())
            weak[ri, rj] = False
            if n_strong < MIN_RUN and not (n_strong and len(ri) > MIN_RUN):
                continue
            placed = _pieces(a, b, ri, rj, s, sims, level, stay, interval, tol)
            strong_cells = strong_m[ri, rj]
            firm = firm or (
                len(np.unique(ri[strong_cells])) >= MIN_RUN
                and len(np.unique(rj[strong_cells])) >= MIN_RUN
                and any(m.score >= level for m in placed)
                and (white is None or not _two_stills(white, ri, rj, level))
            )
            for m in placed:  # take the shot pairs placed out of play (a held shot matches once)
                ia = (a.ts_s >= m.a_start_s - 1e-6) & (a.ts_s < m.a_end_s - 1e-6)
                jb = (b.ts_s >= m.b_start_s - 1e-6) & (b.ts_s < m.b_end_s - 1e-6)
                for i in np.flatnonzero(ia):
                    weak[i, np.isin(b.shot_id, b.shot_id[jb])] = False
            out += placed
            used = used or bool(placed)
        if not used:  # the line's cells lead nowhere: drop them and look again
            weak[li, lj] = False
    # weaker segments (a single sample at the match level, or a lower average: motion-heavy shots)
    # count only beside a firm one, never alone: footage that only looks alike stays apart
    return _merge(out, interval) if firm else []


def _two_stills(white: tuple[np.ndarray, np.ndarray], ri: np.ndarray, rj: np.ndarray, level: float) -> bool:
    """Whether a run lines up two still pictures: in both videos its consecutive samples are far
    closer to each other than motion inside a shot moves them (``STILL`` of the way from the
    match level to 1). Two stills match at any offset, so their line says nothing of shared
    footage in order; a still end card and a near-still shot of another film in the same colours
    are alike to a model that sees colour layout."""
    wa, wb = white
    ua, ub = np.unique(ri), np.unique(rj)
    if len(ua) < 2 or len(ub) < 2:
        return False
    sa = float(np.median(np.sum(wa[ua[1:]] * wa[ua[:-1]], axis=1)))
    sb = float(np.median(np.sum(wb[ub[1:]] * wb[ub[:-1]], axis=1)))
    still = 1.0 - STILL * (1.0 - level)
    return sa >= still and sb >= still


def _runs(li: np.ndarray, lj: np.ndarray, a: Side, b: Side, s: float, c: float, tol: float) -> list[np.ndarray]:
    """Split cells on a line (sorted by A sample) where A skips more than ``BRIDGE_S``, B goes back
    (more than the line's tolerance: a held shot's samples may step back a little),
    or one video cuts where the other does not (shared footage goes on across a cut only when
    both videos cut there)."""
    if not len(li):
        return []
    ta, tb = a.ts_s[li], b.ts_s[lj]
    new_a = np.diff(a.shot_id[li]) != 0
    new_b = np.diff(b.shot_id[lj]) != 0
    cut_a = s * a.shot_start[li[1:]] + c
    agree = new_a & new_b & (np.abs(b.shot_start[lj[1:]] - cut_a) <= tol)
    split = (np.diff(ta) > BRIDGE_S) | (np.diff(tb) < -tol) | ((new_a | new_b) & ~agree)
    cut = np.flatnonzero(split) + 1
    return [np.asarray(r) for r in np.split(np.arange(len(li)), cut)]


def _pieces(
    a: Side,
    b: Side,
    ri: np.ndarray,
    rj: np.ndarray,
    s: float,
    sims: np.ndarray,
    level: float,
    stay: float,
    interval: float,
    tol: float,
) -> list[Match]:
    """A run cut into the shot pairs it crosses, each placed exactly (:func:`_place`); the pairs at
    either end must hold a cell at the match level (weak cells only bridge between strong ones)."""
    key = a.shot_id[ri] * (int(b.shot_id.max()) + 1 if len(b.shot_id) else 1) + b.shot_id[rj]
    cuts = np.flatnonzero(np.diff(key) != 0) + 1
    parts = np.split(np.arange(len(ri)), cuts)
    strong = [bool((sims[ri[p], rj[p]] >= level).any()) for p in parts]
    if not any(strong):
        return []
    first, last = strong.index(True), len(strong) - 1 - strong[::-1].index(True)
    out = []
    for p in parts[first : last + 1]:
        m = _place(a, b, ri[p], rj[p], s, sims, stay, interval, tol)
        if m is not None:
            out.append(m)
    return out


def _place(
    a: Side,
    b: Side,
    pi: np.ndarray,
    pj: np.ndarray,
    s: float,
    sims: np.ndarray,
    stay: float,
    interval: float,
    tol: float,
) -> Match | None:
    """Where one shot of A and one of B share footage: the offset ``c`` (``t_b = s t_a + c``) that
    best lines up all the shots' samples (sum of cosines at or above ``stay`` of each A sample with
    the B sample nearest its place), among the offsets of the run's cells and those that put the
    two shots' starts, or ends, together (preferred on a near tie: a held shot lines up anywhere);
    the shared part is where the shots overlap under it."""
    ia = np.flatnonzero(a.shot_id == a.shot_id[pi[0]])
    jb = np.flatnonzero(b.shot_id == b.shot_id[pj[0]])
    a0, a1 = float(a.shot_start[pi[0]]), float(a.shot_end[pi[0]])
    b0, b1 = float(b.shot_start[pj[0]]), float(b.shot_end[pj[0]])
    cands = [b0 - s * a0, b1 - s * a1] + [float(x) for x in b.ts_s[pj] - s * a.ts_s[pi]]
    tb = b.ts_s[jb]
    sub = sims[np.ix_(ia, jb)]
    scores = []
    for c in cands:
        at = s * a.ts_s[ia] + c
        k = np.searchsorted(tb, at)
        k = np.clip(k, 0, len(tb) - 1)
        prev = np.clip(k - 1, 0, len(tb) - 1)
        k = np.where(np.abs(tb[prev] - at) <= np.abs(tb[k] - at), prev, k)
        near = (np.abs(tb[k] - at) <= tol) & (at >= b0 - tol) & (at < b1)
        v = sub[np.arange(len(ia)), k]
        scores.append(float(np.sum(np.where(near & (v >= stay), v, 0.0))))
    top = max(scores)
    if top <= 0:
        return None
    best_c, best_v = None, -1.0
    slack = 0.5 * max(0.0, 1.0 - stay)  # a near tie: within half a "stay" step of one sample
    for c, score in zip(cands[:2], scores[:2]):  # cut-aligned offsets win near ties
        if score >= top - slack and score > best_v:
            best_c, best_v = c, score
    if best_c is None:
        best_c = cands[int(np.argmax(scores))]
    lo, hi = max(a0, (b0 - best_c) / s), min(a1, (b1 - best_c) / s)
    if hi - lo < 0.5 * interval:
        return None
    return Match(
        a.video_id,
        b.video_id,
        round(lo, 4),
        round(hi, 4),
        round(s * lo + best_c, 4),
        round(s * hi + best_c, 4),
        round(float(np.mean(sims[pi, pj])), 5),
        len(pi),
    )


def _merge(ms: list[Match], interval: float) -> list[Match]:
    """Join segments that continue each other on both sides (within ``JOIN`` intervals), or repeat one
    another (overlapping on both sides at the same offset), by A time."""
    ms = sorted(ms, key=lambda m: (m.a_start_s, m.b_start_s))
    out: list[Match] = []
    for m in ms:
        for k in range(len(out) - 1, max(-1, len(out) - 4), -1):
            p = out[k]
            ga, gb = m.a_start_s - p.a_end_s, m.b_start_s - p.b_end_s
            follows = -0.5 * interval <= ga <= JOIN * interval and -0.5 * interval <= gb <= JOIN * interval
            repeats = (
                ga < 0 and gb < 0 and abs((m.b_start_s - m.a_start_s) - (p.b_start_s - p.a_start_s)) <= interval + 1e-6
            )
            if follows or repeats:
                n = p.samples + m.samples
                out[k] = Match(
                    p.video_a,
                    p.video_b,
                    p.a_start_s,
                    max(p.a_end_s, m.a_end_s),
                    min(p.b_start_s, m.b_start_s),
                    max(p.b_end_s, m.b_end_s),
                    round((p.score * p.samples + m.score * m.samples) / n, 5),
                    n,
                )
                break
        else:
            out.append(m)
    return out


# -- over a store's frame table ------------------------------------------------------------------
def side_of(table: "FrameTable", lo: int, hi: int, vectors: np.ndarray | None = None) -> Side:
    """The samples at table positions ``[lo, hi)`` (one video, in time order) as a :class:`Side`;
    a shot's start is its first sample (every shot's first frame is sampled), its end its last
    sample's end."""
    sl = slice(lo, hi)
    shot = table.shot_id[sl]
    ts, end = table.ts_s[sl], table.end_s[sl]
    vecs = np.asarray(table.vectors.take(table.row[sl]), np.float32) if vectors is None else vectors
    return Side(
        int(table.video_id[lo]) if hi > lo else -1,
        ts,
        end,
        shot,
        table.blank[sl],
        vecs,
        *_shot_spans(shot, table.start_s[sl], end),
    )


def _shot_spans(shot: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's shot start and end: the start of the time its shot's first sample stands for
    (the shot's own start, also for a shot entered by a dissolve, whose first sample comes after the
    dissolve's middle), and the end of its last sample's."""
    if not len(shot):
        return np.zeros(0), np.zeros(0)
    starts = np.flatnonzero(np.concatenate([[True], shot[1:] != shot[:-1]]))
    stops = np.append(starts[1:], len(shot))
    counts = stops - starts
    return np.repeat(start[starts], counts), np.repeat(end[stops - 1], counts)


def make_side(
    video_id: int,
    ts: np.ndarray | Sequence[float],
    end: np.ndarray | Sequence[float],
    shot: np.ndarray | Sequence[int],
    blank: np.ndarray | Sequence[bool],
    vectors: np.ndarray,
    shot_start: np.ndarray | Sequence[float] | None = None,
) -> Side:
    """A :class:`Side` of samples that are not in a store (a file decoded for one query);
    ``shot_start``: each sample's shot's start (default: its shot's first sample's time)."""
    ts, end, shot = np.asarray(ts, np.float64), np.asarray(end, np.float64), np.asarray(shot, np.int64)
    start = ts
    if shot_start is not None:  # as the store has it (FrameTable.start_s): a first sample stands for its shot's start
        first = np.concatenate([[True], shot[1:] != shot[:-1]]) if len(shot) else np.zeros(0, bool)
        ss = np.asarray(shot_start, np.float64)
        start = np.where(first & (ss < ts), ss, ts)
    return Side(
        video_id,
        ts,
        end,
        shot,
        np.asarray(blank, bool),
        np.asarray(vectors, np.float32),
        *_shot_spans(shot, start, end),
    )
