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
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import Reader
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
    pairs = np.array([a + b if ok else "" for a, b, ok in zip(norms[:-1], norms[1:], linked[:-1])] + [""], dtype=str)
    lens = np.char.str_len(norms)
    short_pair = np.append((lens[:-1] < EXACT_BELOW) | (lens[1:] < EXACT_BELOW), False)
    split = _scores(words, pairs, exact_tokens=short_pair)
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


def search_said(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], scope: list[int] | None, top: int | None
) -> list[QueryResult]:
    """One :class:`QueryResult` (kind ``said``) per phrase, over the videos in ``scope`` (None: all),
    best first: videos where it is said, by similarity then time said, then the transcribed others
    by their closest hearing, then those not transcribed.

    Raises:
        QueryError: a phrase with no letter or digit, or a store with no transcribed speech.
    """
    wordss = [check_said(p) for p in phrases]
    check_heard(store_dir)
    reader = Reader.of(store_dir)
    refs = {r.video_id: r for r in reader.video_refs()}
    ids = sorted(refs) if scope is None else scope
    heard = reader.speech_words(ids)
    unheard = set(reader.speech_unheard(ids))
    vid = heard["video_id"].astype(np.int64)
    starts, ends = heard["start_s"].astype(np.float64), heard["end_s"].astype(np.float64)
    norms = np.asarray(heard["word_norm"], dtype=str)
    linked = np.zeros(len(vid), bool)
    if len(vid) > 1:
        linked[:-1] = (vid[1:] == vid[:-1]) & (starts[1:] - ends[:-1] <= MAX_GAP_S)
    out = []
    for phrase, words in zip(phrases, wordss):
        res = QueryResult(
            query=phrase,
            kind="said",
            threshold=SIMILARITY / 100,
            rule=f"spoken words: every word's similarity >= {SIMILARITY / 100:.2f} (rapidfuzz, after normalising)",
            videos_searched=len(ids),
            frames_searched=len(vid),
        )
        if unheard:
            res.warnings.append(
                f"{len(unheard)} of {len(ids)} video(s) have no speech transcribed yet: run `archive index` on "
                "their folders with --speech."
            )
        score, stop = find(words, norms, linked)
        best: dict[int, float] = {}
        if len(vid):
            order, first = np.unique(vid, return_index=True)
            top_score = np.maximum.reduceat(np.maximum(score, 0.0), first) / 100  # vid is sorted
            best = dict(zip(order.tolist(), top_score.tolist()))
        spans: dict[int, list[tuple[float, float, float, int, str]]] = defaultdict(list)
        for j in np.flatnonzero(score >= SIMILARITY):
            e = int(stop[j])
            said = " ".join(str(w).strip() for w in heard["word"][j : e + 1])
            spans[int(vid[j])].append(
                (float(starts[j]), float(ends[e]), float(score[j]) / 100, int(heard["frame_id"][j]), said)
            )
        answers = []
        for v in ids:
            ref = refs[v]
            segs = union_spans(spans.get(v, []))
            top_seg = max(segs, key=lambda sg: sg[0].peak_score, default=None)
            s = max(best.get(v, 0.0), top_seg[0].peak_score if top_seg else 0.0)
            answers.append(
                VideoResult(
                    video_id=v,
                    video=ref.path,
                    present=bool(segs),
                    first_seen_s=segs[0][0].start_s if segs else None,
                    duration_s=sum(sg[0].duration_s for sg in segs),
                    segments=[sg[0] for sg in segs],
                    best_s=top_seg[0].start_s if top_seg else None,
                    score=s,
                    video_duration_s=float(ref.duration_s or 0.0),
                    match=s,
                    best_frame_id=top_seg[1] if top_seg else None,
                    segment_frame_ids=[sg[1] for sg in segs],
                    segment_texts=[sg[2] for sg in segs],
                    transcribed=v not in unheard,
                )
            )
        answers.sort(key=lambda a: (not a.present, not a.transcribed, -a.score, -a.duration_s, a.video))
        res.results = answers if top is None else answers[:top]
        out.append(res)
    return out


def said_segments(
    store_dir: str | os.PathLike[str], phrases: Sequence[str], video_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """Per video, the segments where any of ``phrases`` is said (for labels); {} when the store has
    no transcribed speech."""
    if not phrases or not video_ids or not Reader.of(store_dir).has_speech():
        return {}
    out: dict[int, list[Any]] = {}
    for res in search_said(store_dir, phrases, list(video_ids), None):
        for r in res.results:
            out.setdefault(r.video_id, []).extend(r.segments)
    return out
