"""What is said: a phrase -> the words heard (``speech_words``) -> per-video answers in the shape of
every query (present, first seen, time said, segments), each segment with the words heard there.

Matching (:func:`find`) is word by word. The phrase is split at spaces and each word normalised
like the catalog's ``word_norm`` (:func:`indexer.store.records.normalize`: case, accents and
punctuation do not count). The heard words of a video are one sequence in the order said, across
its spoken lines (a phrase may straddle two of Whisper's segments); two words follow each other
when the second starts at most ``MAX_GAP_S`` after the first ends. A stretch of heard words matches
the phrase when they pair off, in order, with nothing left over on either side, each pair at a
rapidfuzz ``fuzz.ratio`` (normalised Indel similarity, 0-100) of ``SIMILARITY`` (85) or more:

* one phrase word with one heard word ("heineken" / "Heinekin");
* two phrase words with one heard word ("coca cola" / "Coca-Cola");
* one phrase word with two heard words ("heineken" / "Heine ken").

A merged or split pair that has a word of fewer than ``EXACT_BELOW`` letters and digits in it must
be exact (so a dropped "a" is not absorbed: "best a" is not "best").

85 lets a word of 7 or more letters have one letter wrong ("schweppes" / "Schweps": 87.5,
"heineken" / "Heinekin": 87.5) and one of 4 or more one letter missing or extra ("dazs" / "das":
85.7), but not "drink" / "drunk" (80) or "beer" / "bear" (75); words (or pairs) of fewer than
``EXACT_BELOW`` letters and digits must be heard exactly ("do" is not "to"). Since no phrase word
may be left over, "just do it" never matches "just do", nor "just do its". A stretch's similarity is
its worst pair's; the video's ``score`` is its best stretch's similarity / 100, also below the cut
(the closest hearing), so near misses rank first among the absent. A segment runs from the start of
its first matched word to the end of its last; overlapping or touching matches are one segment.

A video whose sound was not transcribed (``videos.speech_lines`` NULL) is not "not said": its
answer carries ``transcribed: false`` and the query a warning, as on-screen text does for unread
videos (:mod:`search.written`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import CATALOG, Reader
from indexer.store.records import normalize

from .results import QueryResult, VideoResult
from .written import union_spans

SIMILARITY = 85.0  # every pair of phrase word(s) and heard word(s), 0-100
EXACT_BELOW = 4  # shorter words (after normalising) must be heard exactly
MAX_GAP_S = 2.0  # the longest pause between two words of one phrase (Whisper's word times run a few 100 ms off)
_NONE = -1.0  # a pairing that cannot continue


def check_said(text: str) -> list[str]:
    """The phrase's words as matched (normalised, empty ones dropped).

    Raises:
        QueryError: nothing to listen for once case, accents and punctuation are set aside.
    """
    words = [w for w in (normalize(p) for p in (text or "").split()) if w]
    if not words:
        raise QueryError(f"--said {text!r}: give letters or digits to listen for (punctuation is ignored).")
    return words


def check_heard(store_dir: str | os.PathLike[str]) -> None:
    """Raise QueryError when the store has no transcribed speech at all (``--said`` would find nothing)."""
    if not Reader.of(store_dir).has_speech():
        raise QueryError(
            f"--said: the store at {os.fspath(store_dir)} has no transcribed speech: run "
            "`archive index FOLDER --speech` (videos already indexed are transcribed, not re-embedded)."
        )


def _scores(
    units: Sequence[str], tokens: np.ndarray, exact: Sequence[bool] = (), exact_tokens: Any = None
) -> np.ndarray:
    """``fuzz.ratio`` (0-100) of each unit against each token, ``(len(units), len(tokens))``. A
    unit shorter than ``EXACT_BELOW``, one marked in ``exact``, or any unit against a token marked
    in ``exact_tokens`` scores 100 when equal and 0 otherwise."""
    from rapidfuzz import fuzz, process  # lazy: only phrase matching needs it

    out = np.zeros((len(units), len(tokens)), np.float64)
    if not len(units) or not len(tokens):
        return out
    vocab, inverse = np.unique(tokens, return_inverse=True)  # each distinct word compared once
    sim = process.cdist(list(units), vocab.tolist(), scorer=fuzz.ratio, dtype=np.float32).astype(np.float64)
    equal = np.array([vocab == u for u in units])
    strict = np.array([len(u) < EXACT_BELOW or bool(x) for u, x in zip(units, list(exact) + [False] * len(units))])
    sim[strict] = np.where(equal[strict], 100.0, 0.0)
    sim[:, vocab == ""] = 0.0
    out = sim[:, inverse.reshape(-1)]
    if exact_tokens is not None:
        cols = np.asarray(exact_tokens, bool)
        out[:, cols] = np.where(equal[:, inverse.reshape(-1)][:, cols], 100.0, 0.0)
    return out


def find(words: Sequence[str], norms: np.ndarray, linked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a phrase is heard in a word sequence (see the module docstring).

    Args:
        words: the phrase's normalised words (:func:`check_said`).
        norms: the heard words' ``word_norm``, in the order said (``str`` array).
        linked: ``linked[j]``: word ``j + 1`` follows word ``j`` (same video, a short pause).

    Returns:
        Per heard word, the similarity (0-100, or -1: no pairing) of the best stretch starting
        there, and the index of that stretch's last word.
    """
    n, t = len(words), len(norms)
    if not t:
        return np.zeros(0), np.zeros(0, np.int64)
    ones = _scores(words, norms)  # one phrase word, one heard word
    # two phrase words heard as one, or one heard as two: exact where a part is a short word (so a
    # dropped "a" is not absorbed: "best a" is not "best")
    short = [len(a) < EXACT_BELOW or len(b) < EXACT_BELOW for a, b in zip(words, words[1:])]
    merged = _scores([a + b for a, b in zip(words, words[1:])], norms, short)
    split = _split_scores(words, norms, linked, np.ones(t, bool))
    return _pair_off(n, ones, merged, split, linked)


def _split_scores(words: Sequence[str], norms: np.ndarray, linked: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """``split[k][j]``: phrase word ``k`` against heard words ``j`` and ``j + 1`` joined, for the
    ``j`` marked in ``heads`` that ``linked`` joins to the next (0 elsewhere)."""
    t = len(norms)
    out = np.zeros((len(words), t))
    js = np.flatnonzero(np.asarray(heads, bool)[: t - 1] & np.asarray(linked, bool)[: t - 1])
    if not len(js):
        return out
    a, b = norms[js], norms[js + 1]
    pairs = np.array([x + y for x, y in zip(a.tolist(), b.tolist())], dtype=str)
    short_pair = (np.char.str_len(a) < EXACT_BELOW) | (np.char.str_len(b) < EXACT_BELOW)
    out[:, js] = _scores(words, pairs, exact_tokens=short_pair)
    return out


def _pair_off(
    n: int, ones: np.ndarray, merged: np.ndarray, split: np.ndarray, linked: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pairing of :func:`find`, from the scores of each kind of pair."""
    t = ones.shape[1]
    link = np.append(np.asarray(linked, bool), [False, False])  # room for j + 1 and j + 2
    # best[k][j]: the best bottleneck similarity pairing words k.. of the phrase from heard word j
    # on, last[k][j]: the index of the last heard word used; row n: the phrase is done.
    best = np.full((n + 1, t + 2), _NONE)
    last = np.zeros((n + 1, t + 2), np.int64)
    best[n] = 100.0
    last[n] = np.arange(-1, t + 1)
    pos = np.arange(t)

    def go(score: np.ndarray, k2: int, step: int, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nxt = pos + step
        ok = valid & (True if k2 == n else link[nxt - 1])
        return np.where(ok, np.minimum(score, best[k2][nxt]), _NONE), last[k2][nxt]

    for k in range(n - 1, -1, -1):
        cands = [go(ones[k], k + 1, 1, np.ones(t, bool))]
        if k + 1 < n:
            cands.append(go(merged[k], k + 2, 1, np.ones(t, bool)))
        cands.append(go(split[k], k + 1, 2, link[:t]))
        vals = np.stack([c[0] for c in cands])
        ends = np.stack([c[1] for c in cands])
        pick = np.argmax(vals, axis=0)
        best[k, :t] = vals[pick, pos]
        last[k, :t] = ends[pick, pos]
    return best[0, :t], last[0, :t]


@dataclass
class _Heard:
    """A store's words heard, kept per process while the store does not change (the vocabulary
    codes, not the strings: 4 numbers a word)."""

    stamp: tuple[Any, ...]
    video_id: np.ndarray  # int64, in the order said
    start_s: np.ndarray
    end_s: np.ndarray
    code: np.ndarray  # into vocab
    vocab: np.ndarray  # str, sorted
    counts: np.ndarray  # words heard per vocab entry
    linked: np.ndarray  # word j + 1 follows word j (same video, a short pause)
    videos: list[tuple[int, str, float | None, bool]]  # (id, path, duration, transcribed), by path
    info: dict[int, tuple[int, str, float | None, bool]] = field(default_factory=dict)  # videos by id
    fill: list[tuple[int, str, float | None, bool]] = field(default_factory=list)  # transcribed first, by path

    def __post_init__(self) -> None:
        self.info = {v[0]: v for v in self.videos}
        self.fill = [v for v in self.videos if v[3]] + [v for v in self.videos if not v[3]]

    def rows(self, vids: np.ndarray) -> np.ndarray:
        """The positions of the words of ``vids`` (sorted ids), video by video."""
        a = np.searchsorted(self.video_id, vids, "left")
        b = np.searchsorted(self.video_id, vids, "right")
        if not len(a):
            return np.zeros(0, np.int64)
        lens = b - a
        return np.repeat(a - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))


_HEARD: dict[str, _Heard] = {}


def _stamp(store_dir: Path) -> tuple[Any, ...]:
    """Changes whenever a commit touches the catalog."""
    out: list[tuple[int | None, int | None]] = []
    for name in (CATALOG, CATALOG + ".wal"):
        try:
            st = (store_dir / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((None, None))
    return tuple(out)


def heard(store_dir: str | os.PathLike[str]) -> _Heard:
    """The store's words heard, read once per process and store state (a commit reloads them)."""
    d = Path(os.fspath(store_dir)).resolve()
    stamp = _stamp(d)
    got = _HEARD.get(str(d))
    if got is not None and got.stamp == stamp:
        return got
    reader = Reader.of(store_dir)
    idx = reader.heard_index()
    vid = idx["video_id"]
    linked = np.zeros(len(vid), bool)
    if len(vid) > 1:
        linked[:-1] = (vid[1:] == vid[:-1]) & (idx["start_s"][1:] - idx["end_s"][:-1] <= MAX_GAP_S)
    got = _Heard(
        stamp,
        vid,
        idx["start_s"],
        idx["end_s"],
        idx["code"],
        idx["vocab"],
        idx["counts"],
        linked,
        reader.speech_videos(),
    )
    if len(_HEARD) >= 4:
        _HEARD.pop(next(iter(_HEARD)))
    _HEARD[str(d)] = got
    return got


def _split_heads(word: str, vocab: np.ndarray) -> np.ndarray:
    """Which vocabulary words can begin a pair of heard words that together match ``word`` (at
    ``SIMILARITY``). If heard ``v1 v2`` matches ``w`` with Indel distance ``d``, then ``d`` is at least
    the distance from ``v1`` to some prefix of ``w``, and ``|v1 v2| <= |w| + d``, so
    ``d <= (1 - s) (2|w| + d)``, i.e. ``d <= 2 (1 - s) |w| / s`` with ``s = SIMILARITY / 100``."""
    from rapidfuzz import process
    from rapidfuzz.distance import Indel

    s = SIMILARITY / 100
    bound = 2 * (1 - s) * len(word) / s + 1e-9
    prefixes = [word[:n] for n in range(1, len(word) + 1)]
    d = process.cdist(prefixes, vocab.tolist(), scorer=Indel.distance, dtype=np.int32)
    return d.min(axis=0) <= bound


def _candidates(words: Sequence[str], h: _Heard) -> np.ndarray:
    """The videos where the phrase may be said: those that hear, for the phrase word with the
    fewest such words heard, a word that pairs with it at ``SIMILARITY`` in one of the ways
    :func:`find` pairs words (alone, merged with a neighbour, or as the first of two). A stretch
    that matches pairs every phrase word, so no video outside is missed (sorted ids)."""
    n = len(words)
    if not len(h.vocab):
        return np.zeros(0, np.int64)
    ones = _scores(words, h.vocab) >= SIMILARITY
    short = [len(a) < EXACT_BELOW or len(b) < EXACT_BELOW for a, b in zip(words, words[1:])]
    merged = _scores([a + b for a, b in zip(words, words[1:])], h.vocab, short) >= SIMILARITY
    best: np.ndarray | None = None
    best_n = -1
    for k in range(n):
        m = ones[k] | _split_heads(words[k], h.vocab)
        if k > 0:
            m |= merged[k - 1]
        if k < n - 1:
            m |= merged[k]
        count = int(h.counts[m].sum())
        if best is None or count < best_n:
            best, best_n = m, count
    assert best is not None
    return np.unique(h.video_id[best[h.code]])


def _find_coded(words: Sequence[str], h: _Heard, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find` over the heard words at ``rows``, each kind of pair scored once per vocabulary
    word and gathered. Heard pairs are joined only where their first word can begin a match
    (:func:`_split_heads`); elsewhere a split pair scores 0 (below the cut either way)."""
    n = len(words)
    code = h.code[rows]
    ones = _scores(words, h.vocab)[:, code]
    short = [len(a) < EXACT_BELOW or len(b) < EXACT_BELOW for a, b in zip(words, words[1:])]
    merged = _scores([a + b for a, b in zip(words, words[1:])], h.vocab, short)[:, code]
    heads = np.zeros(len(h.vocab), bool)
    for w in words:
        heads |= _split_heads(w, h.vocab)
    linked = h.linked[rows]
    split = _split_scores(words, h.vocab[code], linked, heads[code])
    return _pair_off(n, ones, merged, split, linked)


def _hits(
    store_dir: str | os.PathLike[str], words: Sequence[str], scope: np.ndarray | None
) -> tuple[_Heard, dict[int, float], dict[int, list[tuple[float, float, float, int, int]]]]:
    """Per candidate video (:func:`_candidates`, within ``scope``), its best stretch's similarity
    (0-1) and its matches as ``(start, end, similarity, first word, last word)`` (word positions in
    the video, in :meth:`Reader.heard_index` order)."""
    h = heard(store_dir)
    vids = _candidates(words, h)
    if scope is not None:
        vids = vids[np.isin(vids, scope)]
    rows = h.rows(vids)
    best: dict[int, float] = {}
    spans: dict[int, list[tuple[float, float, float, int, int]]] = defaultdict(list)
    if not len(rows):
        return h, best, spans
    vid = h.video_id[rows]
    score, stop = _find_coded(words, h, rows)
    order, first = np.unique(vid, return_index=True)
    top_score = np.maximum.reduceat(np.maximum(score, 0.0), first) / 100
    best = dict(zip(order.tolist(), top_score.tolist()))
    base = dict(zip(order.tolist(), first.tolist()))
    for j in np.flatnonzero(score >= SIMILARITY):
        e = int(stop[j])
        v = int(vid[j])
        spans[v].append(
            (float(h.start_s[rows[j]]), float(h.end_s[rows[e]]), float(score[j]) / 100, j - base[v], e - base[v])
        )
    return h, best, spans


def search_said(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], scope: list[int] | None, top: int | None
) -> list[QueryResult]:
    """One :class:`QueryResult` (kind ``said``) per phrase, over the videos in ``scope`` (None: all),
    best first: videos where it is said, by similarity then time said, then the transcribed others
    by their closest hearing, then those not transcribed. The closest hearing (``score`` of an
    absent video) is measured where the phrase's rarest word is heard closely (:func:`_candidates`);
    elsewhere it is 0.

    Raises:
        QueryError: a phrase with no letter or digit, or a store with no transcribed speech.
    """
    wordss = [check_said(p) for p in phrases]
    with Reader.of(store_dir) as reader:  # one connection for the whole query (the caller's, if given)
        return _search_said(reader, phrases, wordss, scope, top)


def _search_said(
    reader: Reader, phrases: Sequence[str], wordss: list[list[str]], scope: list[int] | None, top: int | None
) -> list[QueryResult]:
    check_heard(reader)
    store_dir = reader
    h = heard(reader)
    in_scope = None if scope is None else np.asarray(sorted(scope), np.int64)
    wanted = None if scope is None else set(scope)
    videos = h.videos if wanted is None else [v for v in h.videos if v[0] in wanted]
    n_words = len(h.video_id) if in_scope is None else int(np.isin(h.video_id, in_scope).sum())
    unheard = sum(1 for v in videos if not v[3])
    # the others in the order they rank in (absent, score 0): transcribed first, then by path
    fill = h.fill if wanted is None else [v for v in h.fill if v[0] in wanted]
    info = h.info
    out = []
    for phrase, words in zip(phrases, wordss):
        res = QueryResult(
            query=phrase,
            kind="said",
            threshold=SIMILARITY / 100,
            rule=f"spoken words: every word's similarity >= {SIMILARITY / 100:.2f} (rapidfuzz, after normalising)",
            videos_searched=len(videos),
            frames_searched=n_words,
        )
        if unheard:
            res.warnings.append(
                f"{unheard} of {len(videos)} video(s) have no speech transcribed yet: run `archive index` on "
                "their folders with --speech."
            )
        h, best, spans = _hits(store_dir, words, in_scope)
        chosen = list(best)
        if top is None:
            chosen += [v[0] for v in fill if v[0] not in best]
        else:
            chosen += [v[0] for v in fill[: top + len(best)] if v[0] not in best]
        segs_of = {v: union_spans([(a, b, sc, i, str(e)) for a, b, sc, i, e in spans.get(v, [])]) for v in chosen}
        answers = []
        for v in chosen:
            _, path, duration, transcribed = info[v]
            segs = segs_of[v]
            top_seg = max(segs, key=lambda sg: sg[0].peak_score, default=None)
            s = max(best.get(v, 0.0), top_seg[0].peak_score if top_seg else 0.0)
            answers.append(
                VideoResult(
                    video_id=v,
                    video=path,
                    present=bool(segs),
                    first_seen_s=segs[0][0].start_s if segs else None,
                    duration_s=sum(sg[0].duration_s for sg in segs),
                    segments=[sg[0] for sg in segs],
                    best_s=top_seg[0].start_s if top_seg else None,
                    score=s,
                    video_duration_s=float(duration or 0.0),
                    match=s,
                    best_frame_id=None,
                    segment_frame_ids=[],
                    segment_texts=[],
                    transcribed=transcribed,
                )
            )
        answers.sort(key=lambda a: (not a.present, not a.transcribed, -a.score, -a.duration_s, a.video))
        answers = answers if top is None else answers[:top]
        _fill_shown(reader, h, answers, segs_of)
        res.results = answers
        out.append(res)
    return out


def _fill_shown(reader: Reader, h: _Heard, answers: list[VideoResult], segs_of: dict[int, list[Any]]) -> None:
    """The words heard and the frames on screen (when each segment's best match begins) for the
    segments of the answers shown."""
    shown = [a for a in answers if a.present]
    if not shown:
        return
    said = reader.heard_as_said([a.video_id for a in shown])
    first = {a.video_id: int(np.searchsorted(h.video_id, a.video_id, "left")) for a in shown}
    keys = [(a.video_id, float(h.start_s[first[a.video_id] + sg[1]])) for a in shown for sg in segs_of[a.video_id]]
    frames = reader.frames_at([k[0] for k in keys], [k[1] for k in keys])
    at = 0
    for a in shown:
        segs = segs_of[a.video_id]
        ids = frames[at : at + len(segs)]
        at += len(segs)
        words = said[a.video_id]
        a.segment_texts = [" ".join(str(w).strip() for w in words[i : int(e) + 1]) for _, i, e in segs]
        a.segment_frame_ids = ids
        best = max(range(len(segs)), key=lambda k: segs[k][0].peak_score)
        a.best_frame_id = ids[best]


def said_segments(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], video_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """Per video, the segments where any of ``phrases`` is said (for labels); {} when the store has
    no transcribed speech."""
    if not phrases or not video_ids or not Reader.of(store_dir).has_speech():
        return {}
    scope = np.asarray(sorted(set(video_ids)), np.int64)
    out: dict[int, list[Any]] = {}
    for phrase in phrases:
        _, _, spans = _hits(store_dir, check_said(phrase), scope)
        for v, sp in spans.items():
            out.setdefault(v, []).extend(sg[0] for sg in union_spans([(a, b, sc, 0, "") for a, b, sc, _, _ in sp]))
    return out
