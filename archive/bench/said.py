"""``archive bench --said N``: a synthetic store of N videos' transcripts, and ``--said`` phrase
queries timed on it, warm (in one process, as a notebook or ``archive serve`` keeps the words)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import duckdb  # the builder writes rows in bulk; the catalog's own code reads them
import numpy as np

from indexer import settings
from indexer.store import CATALOG, Reader, Writer
from indexer.store.records import ModelSpec
from search.query import Searcher
from search.said import search_said

from .common import _threads, peak_rss_mb

WORDS_PER_VIDEO = 45  # a 30 s voice-over at ~90 words a minute
VOCABULARY = 20_000  # distinct words, drawn with a skew (a few words common, most rare)
PLANTED = ("drink responsibly", "terms and conditions apply", "just do it")
PHRASES = (*PLANTED, "the best a man can get", "every little helps", "open happiness")


def build_said_store(store: str, videos: int, seed: int = 0) -> dict[str, Any]:
    """Write ``videos`` transcribed videos (no frames) of ``WORDS_PER_VIDEO`` words each, in lines
    of 8, from a synthetic vocabulary; :data:`PLANTED` phrase ``k`` is said at 10 s in every
    100th video from ``k``. Returns the counts and the build time."""
    t0 = time.perf_counter()
    with Writer(store) as w:
        w.attach(ModelSpec("bench-said", "none"), 8)
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, int(rng.integers(3, 11)))) for _ in range(VOCABULARY)]
    con = duckdb.connect(f"{store}/{CATALOG}")
    try:
        con.execute(
            "INSERT INTO videos (video_id, path, name, duration_s, fps, speech_lines, speech_language, "
            "speech_language_p, sound_s) SELECT i, '/ads/ad' || lpad(i::VARCHAR, 7, '0') || '.mp4', "
            "'ad' || lpad(i::VARCHAR, 7, '0') || '.mp4', 30.0, 25.0, 6, 'en', 0.99, 30.0 FROM range(?) t(i)",
            [videos],
        )
        con.execute("SELECT setseed(?)", [(seed % 1000) / 1000])
        con.execute(
            "INSERT INTO speech_words SELECT v, k // 8, w, 0.5 + k * 0.6, 0.95 + k * 0.6, 0.9, w FROM "
            "(SELECT v, k, list_element(?::VARCHAR[], 1 + CAST(floor(pow(random(), 3) * ?) AS INTEGER)) AS w "
            "FROM range(?) a(v), range(?) b(k))",
            [vocab, VOCABULARY, videos, WORDS_PER_VIDEO],
        )
        for k, phrase in enumerate(PLANTED):
            for j, word in enumerate(phrase.split()):
                con.execute(
                    "INSERT INTO speech_words SELECT v, 99, ?, 10.0 + ? * 0.4, 10.35 + ? * 0.4, 0.9, ? "
                    "FROM range(?, ?, 100) a(v)",
                    [word, j, j, word, k, videos],
                )
        con.execute(
            "INSERT INTO speech SELECT video_id, line, min(start_s), max(end_s), string_agg(word, ' '), 'en', "
            "0.9, string_agg(word_norm, '') FROM speech_words GROUP BY 1, 2"
        )
        con.execute("INSERT OR REPLACE INTO meta VALUES ('speech', '1')")
        words = con.execute("SELECT count(*) FROM speech_words").fetchone()[0]
    finally:
        con.close()
    return {
        "videos": videos,
        "words": int(words),
        "vocabulary": VOCABULARY,
        "build_s": round(time.perf_counter() - t0, 2),
    }


def bench_said(videos: int, runs: int = 5) -> dict[str, Any]:
    """Build a store of ``videos`` transcripts and time each of :data:`PHRASES` ``runs`` times
    (after one cold query that reads the words), top 20 as the CLI asks; then check, untimed, that
    every video a phrase was planted in (and no other) answers present."""
    with tempfile.TemporaryDirectory() as tmp:
        built = build_said_store(tmp, videos)
        s = Searcher(tmp)
        t0 = time.perf_counter()
        s.search(said=[PHRASES[-1]], top=20)
        first_ms = (time.perf_counter() - t0) * 1000
        lat = []
        for _ in range(max(1, runs)):
            for p in PHRASES:  # as `archive search --said P` asks: the top 20
                t0 = time.perf_counter()
                s.search(said=[p], top=settings.DEFAULT_TOP)
                lat.append((time.perf_counter() - t0) * 1000)
        found = {p: sum(r.present for r in res.results) for p in PHRASES for res in s.search(said=[p], top=None)}
        planted = {p: len(range(k, videos, 100)) for k, p in enumerate(PLANTED)}
    arr = np.array(lat)
    return {
        "mode": "said",
        **built,
        "queries": len(lat),
        "first_query_ms": round(first_ms, 1),  # reads the words heard once (a process, or a commit, later)
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "found": found,
        "planted": planted,
        "all_found": all(found[p] == n for p, n in planted.items()),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": _threads(),
    }


def truth_for(paths: Any) -> dict[str, Any] | None:
    """The ``truth.json`` of a set written by ``python -m archive.bench.speechads`` that holds
    ``paths`` (a folder given, or the one folder of the files given), else None."""
    dirs = {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(dirs) != 1:
        return None
    f = os.path.join(dirs.pop(), "truth.json")
    try:
        with open(f, encoding="utf-8") as fh:
            truth = json.load(fh)
    except (OSError, ValueError):
        return None
    return truth if isinstance(truth, dict) and "said_in" in truth and "ads" in truth else None


def score_heard(store: str, truth: dict[str, Any]) -> dict[str, Any]:
    """``--said`` answers on a store of a speechads set against its truth: each phrase found in the
    right ads (``found``/``phrases``), found in a wrong ad or never said yet found (``false``), the
    error of ``first_seen_s`` against the phrase's first voiced sample (median and max, seconds),
    and lines heard in the ads with music only, silence or no sound (``invented``)."""
    starts = {
        (a["name"], s["text"]): min(x["start_s"] for x in a["phrases"] if x["text"] == s["text"])
        for a in truth["ads"]
        for s in a["phrases"]
    }
    voice = {(a["name"], s["text"]): s["voice"] for a in truth["ads"] for s in a["phrases"]}
    by_voice: dict[str, list[int]] = {}
    found, false, errors, missed = 0, [], [], []
    asked = {**{t: set(names) for t, names in truth["said_in"].items()}, **{t: set() for t in truth["never_said"]}}
    for text, names in asked.items():
        (res,) = search_said(store, [text], None, None)
        present = {os.path.basename(r.video): r for r in res.results if r.present}
        for name in sorted(names):
            r = present.get(name)
            tally = by_voice.setdefault(voice[(name, text)], [0, 0])
            tally[1] += 1
            if r is None or r.first_seen_s is None:
                missed.append(f"{text} in {name}")
                continue
            found += 1
            tally[0] += 1
            errors.append(abs(r.first_seen_s - starts[(name, text)]))
        false += [f"{text} in {n}" for n in sorted(set(present) - names)]
    quiet = [a["name"] for a in truth["ads"] if a["sound"] != "speech"]
    with Reader(store).connection() as con:
        invented = con.execute(
            "SELECT count(*) FROM speech s JOIN videos v USING (video_id) WHERE v.name IN (SELECT unnest(?))", [quiet]
        ).fetchall()[0][0]
    total = sum(len(v) for v in truth["said_in"].values())
    return {
        "phrases": total,
        "found": found,
        "found_pct": round(100 * found / total, 1) if total else None,
        "missed": missed,
        "found_by_voice": {v: f"{a}/{b}" for v, (a, b) in sorted(by_voice.items())},
        "false": false,
        "first_said_error_s": {
            "median": round(float(np.median(errors)), 3) if errors else None,
            "max": round(float(np.max(errors)), 3) if errors else None,
        },
        "quiet_ads": len(quiet),
        "invented_lines": int(invented),
    }
