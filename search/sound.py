"""Query by example sound: ``archive search --sound FILE`` and ``--sound-from VIDEO --at A-B``.

The query's landmark hashes (:mod:`indexer.media.sound`) are looked up in the catalog's
``sound_hashes`` table; each hit gives an offset, the video's time minus the query's. Where the
query's sound plays in a video, many hits share one offset; elsewhere they scatter.

**The rule for "present".** A play is an offset where at least ``level`` landmarks agree (within
±1 frame of 16 ms), at least :data:`MIN_SHARE` (5 %) of the query's landmarks over the stretch of
the query that agrees, where ``level`` is the largest of

- :data:`MIN_LANDMARKS`, a floor set on the benchmark (``archive bench --index DIR --sound`` on the
  set of ``python -m archive.bench.soundads``): unrelated ads reached at most 5 agreeing
  landmarks with a jingle there, a play mixed 6 dB under a voice-over at least 9; and
- **the chance level of that video**: hits that land at random offsets follow a Poisson law whose
  mean is the video's hits spread over its possible offsets; the level is the smallest count that
  chance reaches at any offset of the video with probability at most :data:`PER_VIDEO_RATE`
  (1 in 1,000). A long, busy video whose sound shares many hashes with the query needs more; and
- **the chance level around that offset**: the hits at offsets 2 to :data:`RING` frames away give
  the local rate of unrelated hits there (a sustained chord shared with the query piles hits over a
  broad hump of offsets; a play is a sharp peak above it).

The share: on the benchmark, jingles found under voice-overs had 9.9 % or more of their landmarks
agree; long stretches of unrelated music beds in the same key, 0.6-3 %.

A video is present where it has a play; its segments are the plays, each the stretch of the query
whose landmarks agree (stretched to the query's start or end when they lie within
:data:`EDGE_START_S` / :data:`EDGE_END_S` of it), with its offset into the query.

No video is decoded at query time: ``--sound-from`` takes the stretch's hashes from the catalog. A
query file is fingerprinted above the read path (:mod:`archive.sound_query`), as ``--like-video``
embeds a file that is not indexed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import Reader
from indexer.store.records import SOUND_HOP_S, VideoRef

from .results import QueryResult, VideoResult
from .timeline import Segment

HOP_S = SOUND_HOP_S  # the unit of anchor times (16 ms)
MIN_QUERY_S = 1.0  # the shortest query sound the rule decides on
MIN_LANDMARKS = 8  # the floor of the rule (see the module's docstring)
PER_VIDEO_RATE = 1e-3  # chance reaches the level in a video at most this often
MIN_SHARE = 0.05  # of the query's landmarks over the stretch that agrees, at least this share must agree
RING = 63  # frames (about 1 s) each side of a play whose hits measure its local background
EDGE_START_S = 1.0  # a play that agrees from this near the query's start starts with it
EDGE_END_S = 2.0  # ... and to this near its end (the last anchors sit up to ~1 s before the end)
MAX_QUERY_S = 600.0  # the longest query sound (10 minutes)
MAX_QUERY_BYTES = 2 * 2**30  # the largest query file read (2 GiB)
LOOKUP_CHUNK = 1000  # hashes per catalog lookup
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma", ".aif", ".aiff")


@dataclass
class SoundQuery:
    """A query sound: its landmarks (``hashes``, anchor times ``t`` in frames from the query's
    start), its length, and how to name it (``label``); ``source``: the indexed video it was taken
    from (None: a file)."""

    label: str
    hashes: np.ndarray
    t: np.ndarray
    seconds: float
    source: int | None = None


def parse_at(text: str) -> tuple[float, float]:
    """``"3.0-8.0"`` as (3.0, 8.0).

    Raises:
        QueryError: not two numbers ``A-B`` with 0 <= A < B.
    """
    a, sep, b = (text or "").strip().partition("-")
    try:
        start, end = float(a), float(b)
    except ValueError:
        start, end, sep = 0.0, 0.0, ""
    if not sep or not (0 <= start < end) or not math.isfinite(end):
        raise QueryError(f"--at {text!r}: give a stretch of the video as START-END in seconds, e.g. --at 3.0-8.0.")
    return start, end


def min_s_line(what: str, seconds: float) -> str:
    """The one line for a query sound shorter than the rule decides on."""
    return (
        f"{what}: {seconds:.2f} s of sound gives too few landmarks to decide on; give at least "
        f"{MIN_QUERY_S:g} s of a distinctive sound (a jingle, a voice-over)."
    )


def query_from_video(reader: Reader, video: str, vid: int, start_s: float, end_s: float) -> SoundQuery:
    """The landmarks of ``start_s``..``end_s`` of the indexed video ``vid`` (named ``video`` by the
    user), from the catalog (not decoded).

    Raises:
        QueryError: the video was not fingerprinted, has no sound, or the stretch is too short or
            outside the video.
    """
    what = f"--sound-from {video} --at {start_s:g}-{end_s:g}"
    n, seconds = reader.sound_state(vid)
    if n is None:
        raise QueryError(f"{what}: its sound is not fingerprinted yet; run `archive index` on its folder.")
    if n == 0:
        raise QueryError(f"{what}: the video has no sound track (or nothing in it gives landmarks).")
    if end_s - start_s < MIN_QUERY_S:
        raise QueryError(min_s_line(what, end_s - start_s))
    if start_s >= (seconds or 0.0):
        raise QueryError(f"{what}: the video's sound lasts {seconds or 0:.2f} s.")
    a, b = int(round(start_s / HOP_S)), int(round(end_s / HOP_S))
    h, t = reader.sound_of(vid, a, b)
    if len(h) < MIN_LANDMARKS:
        raise QueryError(
            f"{what}: that stretch gives {len(h)} landmarks, fewer than the {MIN_LANDMARKS} the rule needs; "
            "take a longer or louder stretch."
        )
    (ref,) = reader.video_refs_of([vid])
    return SoundQuery(f"sound:{ref.name}@{start_s:g}-{end_s:g}", h, t - a, end_s - start_s, source=vid)


def chance_level(hits: int, offsets: int, rate: float = PER_VIDEO_RATE) -> int:
    """The smallest count ``c`` that ``hits`` landing at random among ``offsets`` offsets reach in
    some window of 3 adjacent offsets with probability at most ``rate`` (a Poisson bound,
    union over the windows)."""
    if hits <= 0 or offsets <= 0:
        return 1
    return poisson_level(3.0 * hits / offsets, offsets, rate)


def poisson_level(lam: float, windows: int, rate: float = PER_VIDEO_RATE) -> int:
    """The smallest count ``c`` that a Poisson count of mean ``lam`` reaches in any of ``windows``
    windows with probability at most ``rate`` (a union bound)."""
    if lam <= 0:
        return 1
    target = rate / max(windows, 1)
    # P(X >= c) for X ~ Poisson(lam), for c = 1, 2, ...
    term = math.exp(-lam)
    cdf = term
    c = 1
    while 1.0 - cdf > target and c < 10_000:
        term *= lam / c
        cdf += term
        c += 1
    return c


def local_level(off: np.ndarray, at: int, windows: int, rate: float = PER_VIDEO_RATE) -> int:
    """The chance level around one offset: hits at offsets 2 to :data:`RING` frames from ``at``
    give the local rate at which unrelated hits land there. A sustained tone or a steady bed shared
    with the query piles hits over a broad hump of offsets; a true play is a sharp peak above it."""
    d = np.abs(off - at)
    ring = int(np.count_nonzero((d >= 2) & (d <= RING)))
    return poisson_level(3.0 * ring / (2 * (RING - 1)), windows, rate)


def search_sound(
    reader: Reader,
    queries: Sequence[SoundQuery],
    scope: list[int] | None,
    top: int | None,
) -> list[QueryResult]:
    """One :class:`QueryResult` (kind ``sound``) per query, over the videos in ``scope`` (None: all),
    best first: videos where it plays, by agreeing landmarks, then the others by their closest play
    (the most landmarks that agree on one offset), then those with no landmark in common."""
    n_videos, n_todo = reader.sound_counts(scope)
    out = []
    for q in queries:
        res = QueryResult(
            query=q.label,
            kind="sound",
            threshold=float(MIN_LANDMARKS),
            rule=(
                f"sound: at least {MIN_LANDMARKS} landmarks agree on one offset (±16 ms), {MIN_SHARE:.0%} of the "
                f"query's over that stretch, and more than chance reaches in that video and around that offset "
                f"at {PER_VIDEO_RATE:g}"
            ),
            videos_searched=n_videos,
            frames_searched=len(q.hashes),
        )
        if n_todo:
            res.warnings.append(
                f"{n_todo} of {n_videos} video(s) have no sound fingerprints yet: run `archive index` on their folders."
            )
        hv, ht, qi = _lookup(reader, q)
        if scope is not None:
            keep = np.isin(hv, np.asarray(scope, np.int64))
            hv, ht, qi = hv[keep], ht[keep], qi[keep]
        vids, best, hits = _best_per_video(hv, ht - q.t[qi])
        # the videos that may be present (their best offset reaches the floor), then the closest others
        cand = vids[best >= MIN_LANDMARKS]
        rank = np.lexsort((vids, -best))
        want = len(vids) if top is None else min(len(vids), top + len(cand))
        shown = np.unique(np.r_[cand, vids[rank[:want]]]).astype(np.int64)
        refs = reader.sound_refs(shown.tolist())
        q_frames = int(math.ceil(q.seconds / HOP_S))
        by_vid = {int(v): (int(b), int(m)) for v, b, m in zip(vids, best, hits)}
        results = []
        for vid in shown.tolist():
            if vid not in refs:
                continue
            ref, sound_s = refs[vid]
            dur = float(ref.duration_s or 0.0)
            b, m = by_vid[vid]
            plays: list[Hit] = []
            if b >= MIN_LANDMARKS:
                v_frames = max(1, int(math.ceil(max(dur, float(sound_s or 0.0)) / HOP_S)))
                level = max(MIN_LANDMARKS, chance_level(m, v_frames + q_frames))
                if b >= level:
                    sel = hv == vid
                    plays = align(q.t[qi[sel]], ht[sel], level, max(q_frames, 1))
                    off = ht[sel] - q.t[qi[sel]]
                    plays = [
                        h
                        for h in plays
                        if h.count >= local_level(off, h.offset, v_frames + q_frames)
                        and h.count >= MIN_SHARE * np.count_nonzero((q.t >= h.q_first) & (q.t <= h.q_last))
                    ]
            results.append(_result(ref, q, plays, b, dur))
        if top is None or len(results) < top:  # then the videos with no landmark in common
            rest = reader.sound_video_ids(
                scope, exclude=list(by_vid), limit=None if top is None else top - len(results)
            )
            more = reader.video_refs_of(rest)
            results += [_silent(r) for r in more]
        results.sort(key=lambda r: (not r.present, -r.match, r.first_seen_s or 0.0, r.video))
        res.results = results if top is None else results[:top]
        out.append(res)
    return out


def _best_per_video(vid: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each video with hits: its id, the most hits that agree on one offset (±1 frame), and its hits."""
    if not len(vid):
        e = np.zeros(0, np.int64)
        return e, e, e
    off = off.astype(np.int64)
    lo = int(off.min()) - 1
    width = int(off.max()) - lo + 2
    key = vid.astype(np.int64) * width + (off - lo)
    uk, cnt = np.unique(key, return_counts=True)
    wide = cnt.copy()
    for d in (-1, 1):
        j = np.searchsorted(uk, uk + d)
        j = np.minimum(j, len(uk) - 1)
        wide += np.where(uk[j] == uk + d, cnt[j], 0)
    kv = uk // width
    starts = np.r_[0, np.flatnonzero(np.diff(kv)) + 1]
    vids = kv[starts]
    best = np.maximum.reduceat(wide, starts)
    hits = np.add.reduceat(cnt, starts)
    return vids, best, hits


def _lookup(reader: Reader, q: SoundQuery) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every catalog row of the query's hashes: ``(video_id, t, query landmark index)``, one per
    pair of a stored landmark and a query landmark with the same hash."""
    uniq, inverse = np.unique(q.hashes, return_inverse=True)
    hs, vs, ts = [], [], []
    for k in range(0, len(uniq), LOOKUP_CHUNK):
        h, v, t = reader.sound_lookup(uniq[k : k + LOOKUP_CHUNK])
        hs.append(h)
        vs.append(v)
        ts.append(t)
    h = np.concatenate(hs) if hs else np.zeros(0, np.int32)
    v = np.concatenate(vs).astype(np.int64) if vs else np.zeros(0, np.int64)
    t = np.concatenate(ts).astype(np.int64) if ts else np.zeros(0, np.int64)
    if not len(h):
        return v, t, np.zeros(0, np.int64)
    # pair each row with every query landmark of its hash
    row_u = np.searchsorted(uniq, h)
    q_order = np.argsort(inverse, kind="stable")
    q_start = np.searchsorted(inverse[q_order], np.arange(len(uniq)), "left")
    q_end = np.searchsorted(inverse[q_order], np.arange(len(uniq)), "right")
    reps = (q_end - q_start)[row_u]
    rows = np.repeat(np.arange(len(h)), reps)
    first = np.repeat(q_start[row_u], reps)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    qi = q_order[first + within]
    return v[rows], t[rows], qi


def _result(ref: VideoRef, q: SoundQuery, plays: list[Hit], best: int, dur: float) -> VideoResult:
    segs, sources = [], []
    for h in plays:
        qa = 0.0 if h.q_first * HOP_S <= EDGE_START_S else h.q_first * HOP_S
        qb = q.seconds if q.seconds - h.q_last * HOP_S <= EDGE_END_S else h.q_last * HOP_S + 1.0
        a = max(0.0, h.offset * HOP_S + qa)
        b = h.offset * HOP_S + qb
        if dur > 0:
            b = min(b, dur)
        qa += a - (h.offset * HOP_S + qa)  # clipped at the video's start: later into the query
        segs.append(Segment(round(a, 3), round(max(a, b), 3), h.count / max(len(q.hashes), 1)))
        sources.append((round(qa, 3), round(qa + max(0.0, b - a), 3)))
    first = min(segs, key=lambda s: s.start_s, default=None)
    top_play = max(plays, key=lambda h: h.count, default=None)
    return VideoResult(
        video_id=ref.video_id,
        video=ref.path,
        present=bool(segs),
        first_seen_s=first.start_s if first else None,
        duration_s=round(sum(s.duration_s for s in segs), 3),
        segments=segs,
        best_s=round(max(0.0, top_play.offset * HOP_S), 3) if segs and top_play else None,
        score=best / max(len(q.hashes), 1),
        video_duration_s=dur,
        match=float(best),
        segment_sources=sources,
        sources_of="query",
    )


def _silent(ref: VideoRef) -> VideoResult:
    return VideoResult(
        video_id=ref.video_id,
        video=ref.path,
        present=False,
        first_seen_s=None,
        duration_s=0.0,
        segments=[],
        best_s=None,
        score=0.0,
        video_duration_s=float(ref.duration_s or 0.0),
        match=0.0,
    )


@dataclass
class Hit:
    """One play of a query sound in one video: ``offset`` (frames; the video's time minus the
    query's), ``count`` (landmarks that agree, ±1 frame), and the span of query time they cover."""

    offset: int
    count: int
    q_first: int
    q_last: int


def _windows3(off: np.ndarray) -> tuple[np.ndarray, int]:
    """Hits per offset, each counted with its two neighbours (±1 frame), from the smallest offset."""
    lo = int(off.min())
    counts = np.bincount(off - lo)
    wide = counts.copy()
    wide[1:] += counts[:-1]
    wide[:-1] += counts[1:]
    return wide, lo


def _hit(off: np.ndarray, q_t: np.ndarray, c: int, wide: np.ndarray, lo: int) -> Hit:
    near = np.abs(off - (c + lo)) <= 1
    return Hit(int(c + lo), int(wide[c]), int(q_t[near].min()), int(q_t[near].max()))


def best(q_t: np.ndarray, v_t: np.ndarray) -> Hit | None:
    """The offset where most hits agree (±1 frame), from paired query and video anchor times."""
    if not len(q_t):
        return None
    off = (v_t - q_t).astype(np.int64)
    wide, lo = _windows3(off)
    return _hit(off, q_t, int(np.argmax(wide)), wide, lo)


def align(q_t: np.ndarray, v_t: np.ndarray, min_count: int, gap: int) -> list[Hit]:
    """The plays of a query in one video, from its landmark hits: ``q_t`` the query's anchor times,
    ``v_t`` the video's (paired, one per hit). A play is an offset where at least ``min_count``
    hits agree within ±1 frame; plays at offsets closer than ``gap`` frames are one (the
    strongest). Sorted by offset."""
    if not len(q_t):
        return []
    off = (v_t - q_t).astype(np.int64)
    wide, lo = _windows3(off)
    cand = np.flatnonzero(wide >= max(1, min_count))
    if not len(cand):
        return []
    cand = cand[np.argsort(-wide[cand], kind="stable")]
    chosen: list[int] = []
    for c in cand:
        if all(abs(int(c) - k) >= gap for k in chosen):
            chosen.append(int(c))
    return [_hit(off, q_t, c, wide, lo) for c in sorted(chosen)]
