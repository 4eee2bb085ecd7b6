"""Written words on screen: a phrase -> the ``ocr`` lines that read it -> per-video answers in the
shape of every query (present, first seen, time on screen, segments).

Matching (:func:`similarity`) knows OCR's habits. The phrase and each line read are folded
(:func:`fold`): case and accents do not count; OCR's confusable glyphs fall into one class each
(0/o, 1/l/i/|, 5/s, 8/b, 2/z, "rn"/m, a comma for a decimal point), while the text shown stays the
text read; only letters, digits, the symbols of :data:`EVIDENCE` (% € $ £ ¥ / . , @ + & #) and
single spaces between words are kept. Then rapidfuzz's normalised Indel similarity, 0-100, the best
of two comparisons: word by word (spaces kept) and on the space-free skeleton (OCR drops and invents
spaces: "NOW 0% SUGAR" read as "NOWO%SUGAR" is the same skeleton):

* a line at least as long as the phrase: ``fuzz.partial_ratio``, the best-matching stretch of the
  line (the phrase may be part of a longer line);
* a shorter line: ``fuzz.ratio`` of the whole line (so "drink" alone never matches "drink responsibly");
* a phrase written over adjacent lines (one under the other, or side by side) on screen at the same
  time: the lines joined in reading order, compared as one line.

Each word of ``WORD_CHARS`` (4) or more characters of a phrase of several words must be in the line
too (partial ratio ``WORD_SIMILARITY``, 75), else the line scores at most ``WORD_MISSING``.

Numbers are evidence: a digit, and a symbol next to a digit, must be read as it is. A line whose
best stretch reads one of the phrase's numbers otherwise (an edit on or next to its digits and
symbols: "10%" or "5.0%" or "50€" for "50%"), or runs it on into more digits ("XC900" for "XC90",
"150%" for "50%"; a unit beside it is fine: "50" is in "50%"), scores at most ``NUMBER_DIFFERS``.

A line matches at ``SIMILARITY`` (90) or more: one wrong character in a phrase of 10-19 letters
and digits, two from 20; one missing or extra character from 5. So "drive responsibly" (two wrong
letters in 16) does not match "drink responsibly". Phrases of fewer than ``EXACT_BELOW`` characters
must match exactly. The video's ``score`` is its best similarity / 100, also below the cut (the
closest reading), so near misses rank first among the absent.
"""

from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store import Reader
from indexer.store.records import normalize

from .results import QueryResult, VideoResult
from .timeline import Segment

SIMILARITY = 90.0
NUMBER_DIFFERS = 85.0  # a line that reads a number of the phrase otherwise scores at most this
WORD_CHARS = 4  # each word of a phrase of several words, of at least this many characters, ...
WORD_SIMILARITY = 75.0  # ... must be read in the line at least this alike (one wrong letter in 4-7) ...
WORD_MISSING = 88.0  # ... else the line scores at most this
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


# OCR's confusable glyphs, folded into one class each before scoring (after case folding): the
# zero and the o; the one, the l, the i and the bar; five and s; eight and b; two and z; and a comma
# read for a decimal point. "rn" read for "m" is folded too.
FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "5": "s", "8": "b", "2": "z", ",": "."})
EVIDENCE = frozenset("%€$£¥/.,@+&#")  # symbols kept: "50%" is not "5.0%" nor "50€"
UNITS = frozenset("%€$£¥")  # a number may have these beside it and still be the number ("50" in "50%")
CURRENCIES = frozenset("€$£¥")  # ... and a currency sign of the phrase may be missing from the line


def fold_marked(text: str) -> tuple[str, tuple[bool, ...]]:
    """:func:`fold` of ``text``, and for each of its characters whether it is part of a number: a
    digit, or one of the :data:`EVIDENCE` symbols next to a digit ("50%", "5.0", "1/2"; not the dots
    of "www.brand.com"). A number is evidence that must be read as it is."""
    chars = [c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c)]
    out: list[str] = []
    num: list[bool] = []
    for i, c in enumerate(chars):
        if c.isalnum() or c in EVIDENCE:
            f = c.translate(FOLD)
            if f == "n" and out and out[-1] == "r":  # "rn" read for "m"
                out[-1] = "m"
                continue
            digit_by = (i > 0 and chars[i - 1].isdigit()) or (i + 1 < len(chars) and chars[i + 1].isdigit())
            out.append(f)
            num.append(c.isdigit() or (c in EVIDENCE and digit_by))
        elif out and out[-1] != " ":
            out.append(" ")
            num.append(False)
    while out and out[-1] == " ":
        out.pop()
        num.pop()
    return "".join(out), tuple(num)


def fold(text: str) -> str:
    """A text as compared: case-folded, accents removed, confusable glyphs folded (:data:`FOLD`,
    "rn" as "m"), only letters, digits, the symbols of :data:`EVIDENCE` and single spaces between
    words kept."""
    return fold_marked(text)[0]


def _skeleton(fm: tuple[str, tuple[bool, ...]]) -> tuple[str, tuple[bool, ...]]:
    """A folded text and its marks, spaces dropped."""
    text, marks = fm
    keep = [i for i, c in enumerate(text) if c != " "]
    return "".join(text[i] for i in keep), tuple(marks[i] for i in keep)


def numbers_differ(phrase: tuple[str, tuple[bool, ...]], line: tuple[str, tuple[bool, ...]]) -> bool:
    """Whether the best stretch of a line's skeleton for a phrase's skeleton (each with its number
    marks, :func:`_skeleton` of :func:`fold_marked`) reads one of the phrase's numbers otherwise: an
    edit on a digit or symbol of it or next to one ("10%" for "0%", "5.0%" for "50%"), or a digit
    of the line (not a unit, :data:`UNITS`) right before or after a number the stretch starts or
    ends with ("XC900" for "XC90"; "50" is in "50%"). A currency sign of the phrase that the line
    lacks is not a difference ("€26.89" read as "26.89"), one read as another sign is."""
    from rapidfuzz import fuzz  # lazy: only phrase matching needs it
    from rapidfuzz.distance import Levenshtein

    p, pm = phrase
    ln, lm = line
    if not any(pm):
        return False
    a, b = 0, len(ln)
    if len(ln) > len(p):
        al = fuzz.partial_ratio_alignment(p, ln)
        if al is not None:
            a, b = al.dest_start, al.dest_end
    if (pm[0] and a > 0 and lm[a - 1] and ln[a - 1] not in UNITS) or (
        pm[-1] and b < len(ln) and lm[b] and ln[b] not in UNITS
    ):
        return True
    for op in Levenshtein.opcodes(p, ln[a:b]):
        if op.tag == "equal" or (op.tag == "delete" and set(p[op.src_start : op.src_end]) <= CURRENCIES):
            continue  # the same, or a currency sign not read (PP-OCRv4 reads neither the euro nor the pound)
        lo, hi = op.src_start, op.src_end
        near = pm[max(lo - 1, 0) : min(hi + 1, len(pm))] if op.tag == "insert" else pm[lo:hi]
        if any(near):
            return True
    return False


def _scores(phrase: tuple[str, tuple[bool, ...]], lines: Sequence[tuple[str, tuple[bool, ...]]]) -> np.ndarray:
    """Similarity (0-100) of a phrase to each line (each :func:`fold_marked`): the best of word by
    word (spaces kept), of the space-free skeletons, and of the skeletons with the phrase's
    currency signs left out (the line may not have them, :func:`numbers_differ`). Each word of
    :data:`WORD_CHARS` or more of a phrase of several words must be in the line (partial ratio at
    least :data:`WORD_SIMILARITY`), else it scores at most :data:`WORD_MISSING`. A line that reads one of the phrase's
    numbers otherwise (:func:`numbers_differ`) scores at most :data:`NUMBER_DIFFERS`."""
    from rapidfuzz import fuzz, process  # lazy: only phrase matching needs it

    if not len(lines):
        return np.zeros(0, np.float64)
    ps = _skeleton(phrase)
    skels = [_skeleton(ln) for ln in lines]
    if len(ps[0]) < EXACT_BELOW:
        return np.array([100.0 if ps[0] in s[0] and not numbers_differ(ps, s) else 0.0 for s in skels])
    best = np.zeros(len(lines), np.float64)
    forms = [(phrase[0], [ln[0] for ln in lines]), (ps[0], [s[0] for s in skels])]
    bare = "".join(c for c in ps[0] if c not in CURRENCIES)  # as an OCR that reads no currency sign sees it
    if bare != ps[0] and len(bare) >= EXACT_BELOW:
        forms.append((bare, [s[0] for s in skels]))
    for p, ls in forms:
        part = process.cdist([p], ls, scorer=fuzz.partial_ratio, dtype=np.float32)[0]
        whole = process.cdist([p], ls, scorer=fuzz.ratio, dtype=np.float32)[0]
        longer = np.array([len(ln) >= len(p) for ln in ls])
        best = np.maximum(best, np.where(longer, part, whole))
    words = [w for w in phrase[0].split() if len(w) >= WORD_CHARS] if " " in phrase[0] else []
    for i in np.flatnonzero(best > NUMBER_DIFFERS):
        if numbers_differ(ps, skels[i]):
            best[i] = NUMBER_DIFFERS
        elif any(fuzz.partial_ratio(w, skels[i][0]) < WORD_SIMILARITY for w in words):
            best[i] = min(best[i], WORD_MISSING)
    return best


def similarity(phrase: str, lines: Sequence[str]) -> np.ndarray:
    """Similarity (0-100) of a phrase to each line, as written and as read (see the module docstring)."""
    return _scores(fold_marked(phrase), [fold_marked(ln) for ln in lines])


def _next_to(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when ``b`` continues ``a`` in reading order: the line under it (the boxes may overlap by a
    quarter of a line: PP-OCRv6 draws them taller), or right of it on its row."""
    h = max(a["h"], b["h"])
    if a["video_id"] != b["video_id"] or min(a["end_s"], b["end_s"]) <= max(a["start_s"], b["start_s"]):
        return False
    below = -0.25 * h <= b["y"] - (a["y"] + a["h"]) <= 1.2 * h and min(a["x"] + a["w"], b["x"] + b["w"]) > max(
        a["x"], b["x"]
    )
    beside = abs(b["y"] - a["y"]) <= 0.5 * h and 0 <= b["x"] - (a["x"] + a["w"]) <= 3 * h
    return below or beside


Marked = tuple[str, tuple[bool, ...]]  # a folded text and its number marks (fold_marked)


def _hits(
    phrase: Marked, rows: list[dict[str, Any]], folded: Sequence[Marked], scores: np.ndarray
) -> list[tuple[dict[str, Any], float, float, float, str]]:
    """``(row, similarity, start_s, end_s, text read)`` of every match of the folded ``phrase``:
    single lines (``folded``: each row's :func:`fold_marked` text), and runs of up to ``MAX_JOIN``
    adjacent lines on screen together whose joined text matches."""
    out = [(r, float(s), r["start_s"], r["end_s"], r["text"]) for r, s in zip(rows, scores) if s >= SIMILARITY]
    skel = _skeleton(phrase)
    pieces = [(r, _skeleton(f)) for r, f, s in zip(rows, folded, scores) if s < SIMILARITY]
    pieces = [(r, f) for r, f in pieces if len(f[0]) < len(skel[0])]
    if len(pieces) < 2:
        return out
    from rapidfuzz import fuzz  # lazy: only phrase matching needs it

    inside = [(r, f) for r, f in pieces if fuzz.partial_ratio(f[0], skel[0]) >= SIMILARITY]
    skel_of = {id(r): f for r, f in inside}
    by_video: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r, _f in inside:
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
                joined = (
                    "".join(skel_of[id(r)][0] for r in chain),
                    tuple(m for r in chain for m in skel_of[id(r)][1]),
                )
                s = float(_scores(skel, [joined])[0])
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
    for p in phrases:
        check_phrase(p)
    refs = {r.video_id: r for r in Reader.of(store_dir).video_refs()}
    ids = sorted(refs) if scope is None else scope
    rows = Reader.of(store_dir).ocr_lines(ids)
    folded = [fold_marked(r["text"]) for r in rows]
    has_ocr = Reader.of(store_dir).meta().get("ocr") == "1"
    unread = Reader.of(store_dir).ocr_unread(ids) if has_ocr else len(ids)
    out = []
    for phrase in phrases:
        res = QueryResult(
            query=phrase,
            kind="ocr",
            threshold=SIMILARITY / 100,
            rule=f"written words: similarity >= {SIMILARITY / 100:.2f} (rapidfuzz, word by word and on the "
            "skeleton, OCR's confusable glyphs folded)",
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
        phrase_f = fold_marked(phrase)
        scores = _scores(phrase_f, folded)
        best: defaultdict[int, float] = defaultdict(float)
        for r, s in zip(rows, scores):
            best[r["video_id"]] = max(best[r["video_id"]], float(s))
        spans: dict[int, list[tuple[float, float, float, int, str]]] = defaultdict(list)
        for r, s, a, b, text in _hits(phrase_f, rows, folded, scores):
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
