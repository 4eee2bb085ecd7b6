"""The sound search measured: ``archive bench --sound N`` times ``--sound`` queries on a synthetic
hash table of N ads, and :func:`score_sound` scores a store of ``python -m archive.bench.soundads``
against its truth (found, false, start error), for ``archive bench --index DIR/ads --sound``."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb  # the builder writes rows in bulk; the catalog's own code reads them
import numpy as np

from indexer.media import sound
from indexer.store import CATALOG, Reader, Writer
from indexer.store.records import ModelSpec
from search.sound import SoundQuery, search_sound

from ..sound_query import query_from_file
from .common import _threads, peak_rss_mb
from .soundads import jingle

AD_S = 30.0  # each synthetic ad's sound
PLANT_EVERY = 100  # the query's landmarks are planted in every 100th ad
CHUNKS = 64  # the hash space is written in this many ranges, each in hash order


def _query(seed: int = 0) -> SoundQuery:
    """A real jingle's landmarks (:mod:`.soundads`), as ``archive search --sound`` would take them."""
    x = jingle("chime", sound.RATE)
    h, t = sound.fingerprint(x, 0.0, sound.QUERY_FAN_OUT)
    return SoundQuery("sound:chime", h, t, len(x) / sound.RATE)


def build_sound_store(store: str, videos: int, seed: int = 0) -> dict[str, Any]:
    """Write ``videos`` fingerprinted videos (no frames) of :data:`AD_S` seconds of sound each, at
    the density the indexer gives real ads, with random hashes; the query jingle's stored-density
    landmarks are planted at 5 s in every :data:`PLANT_EVERY`-th video. Rows are written in hash
    order, as :meth:`indexer.store.Writer.sort_sound` leaves them."""
    t0 = time.perf_counter()
    with Writer(store) as w:
        w.attach(ModelSpec("bench-sound", "none"), 8)
    rng = np.random.default_rng(seed)
    per_s = 125.0  # landmarks per second of an ad's sound (measured on the soundads set: 123)
    per_ad = int(AD_S * per_s)
    frames = int(AD_S / sound.HOP_S)
    jh, jt = sound.fingerprint(jingle("chime", sound.RATE), 0.0)
    planted = np.arange(0, videos, PLANT_EVERY)
    at = int(round(5.0 / sound.HOP_S))
    con = duckdb.connect(f"{store}/{CATALOG}")
    try:
        con.execute(
            "INSERT INTO videos (video_id, path, name, duration_s, fps, sound_s, sound_hashes) "
            "SELECT i, '/ads/ad' || lpad(i::VARCHAR, 7, '0') || '.mp4', 'ad' || lpad(i::VARCHAR, 7, '0') || '.mp4', "
            "?, 25.0, ?, ? FROM range(?) t(i)",
            [AD_S, AD_S, per_ad, videos],
        )
        span = (1 << 21) // CHUNKS
        total = videos * per_ad
        p_h = np.tile(jh, len(planted))
        p_v = np.repeat(planted, len(jh)).astype(np.int32)
        p_t = np.tile(jt + at, len(planted)).astype(np.int32)
        for c in range(CHUNKS):
            n = total // CHUNKS
            h = rng.integers(c * span, (c + 1) * span, n, dtype=np.int32)
            v = rng.integers(0, videos, n, dtype=np.int32)
            t = rng.integers(0, frames, n, dtype=np.int32)
            mine = (p_h >= c * span) & (p_h < (c + 1) * span)
            h = np.concatenate([h, p_h[mine].astype(np.int32)])
            v = np.concatenate([v, p_v[mine]])
            t = np.concatenate([t, p_t[mine]])
            o = np.argsort(h, kind="stable")
            con.register("_chunk", {"hash": h[o], "video_id": v[o], "t": t[o]})
            con.execute("INSERT INTO sound_hashes SELECT hash, video_id, t FROM _chunk")
            con.unregister("_chunk")
        rows = con.execute("SELECT count(*) FROM sound_hashes").fetchall()[0][0]
        con.execute("INSERT INTO meta VALUES ('sound_sorted_rows', ?)", [str(rows)])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    size = os.path.getsize(f"{store}/{CATALOG}")
    return {
        "videos": videos,
        "hashes": int(rows),
        "sound_hours": round(videos * AD_S / 3600, 1),
        "build_s": round(time.perf_counter() - t0, 2),
        "catalog_bytes": size,
        "bytes_per_hash": round(size / max(rows, 1), 2),
        "bytes_per_second_of_sound": round(size / (videos * AD_S), 1),
        "planted": len(planted),
    }


def bench_sound(videos: int, runs: int = 20, keep: str | None = None) -> dict[str, Any]:
    """Build :func:`build_sound_store` (in ``keep``, else a temporary folder) and time ``--sound``
    queries of the planted jingle on it, warm, in one process (first query apart)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = keep or tmp
        built = build_sound_store(store, videos)
        q = _query()
        reader = Reader(store)
        with reader:
            t0 = time.perf_counter()
            (res,) = search_sound(reader, [q], None, 20)
            first = time.perf_counter() - t0
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                (res,) = search_sound(reader, [q], None, 20)
                times.append(time.perf_counter() - t0)
            (full,) = search_sound(reader, [q], None, None)
        present = {r.video_id for r in full.results if r.present}
        planted = set(range(0, videos, PLANT_EVERY))
        return {
            "mode": "sound",
            **built,
            "query_landmarks": len(q.hashes),
            "queries": runs,
            "first_query_ms": round(first * 1000, 1),
            "p50_ms": round(float(np.percentile(times, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(times, 95)) * 1000, 1),
            "planted_found": len(present & planted),
            "false": len(present - planted),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "threads": _threads(),
        }


def sound_truth_for(paths: Any) -> tuple[dict[str, Any], Path] | None:
    """The ``truth.json`` of a set written by ``python -m archive.bench.soundads`` that holds
    ``paths`` (its ``ads`` folder, or that folder's files), and the set's folder; else None."""
    dirs = {Path(p) if os.path.isdir(p) else Path(p).resolve().parent for p in paths}
    if len(dirs) != 1:
        return None
    d = dirs.pop().resolve()
    for cand in (d / "truth.json", d.parent / "truth.json"):
        try:
            truth = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(truth, dict) and "queries" in truth and "ads" in truth:
            return truth, cand.parent
    return None


def score_sound(store: str, truth: dict[str, Any]) -> dict[str, Any]:
    """``--sound`` answers on a store of a soundads set against its truth: for each query file,
    the plays found (a segment starting within 0.5 s of the play), the ads without that jingle
    where it is present (``false``), the error of each found play's start, and the query time."""
    plays = 0
    found = 0
    false: list[str] = []
    errors: list[float] = []
    missed: list[str] = []
    times: list[float] = []
    without = 0
    with Reader(store) as reader:
        for name, files in truth["queries"].items():
            want = {a["name"]: [p["start_s"] for p in a["plays"] if p["jingle"] == name] for a in truth["ads"]}
            for f in files:
                t0 = time.perf_counter()
                q = query_from_file(f)
                (res,) = search_sound(reader, [q], None, None)
                times.append(time.perf_counter() - t0)
                got = {os.path.basename(r.video): r for r in res.results if r.present}
                for ad, starts in want.items():
                    if not starts:
                        without += 1
                        if ad in got:
                            false.append(f"{os.path.basename(f)} in {ad}")
                        continue
                    segs = got[ad].segments if ad in got else []
                    for s in starts:
                        plays += 1
                        err = min((abs(g.start_s - s) for g in segs), default=None)
                        if err is not None and err <= 0.5:
                            found += 1
                            errors.append(err)
                        else:
                            missed.append(f"{os.path.basename(f)} at {s:.2f} s in {ad}")
    return {
        "query_files": sum(len(v) for v in truth["queries"].values()),
        "plays": plays,
        "found": found,
        "found_pct": round(100 * found / plays, 1) if plays else None,
        "missed": missed,
        "pairs_without_the_jingle": without,
        "false": false,
        "start_error_s": {
            "median": round(float(np.median(errors)), 3) if errors else None,
            "max": round(float(np.max(errors)), 3) if errors else None,
        },
        "query_ms_p50": round(float(np.median(times)) * 1000, 1) if times else None,
    }
