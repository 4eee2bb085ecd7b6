"""`archive bench --eval`: `archive eval` of a generated truth file on a kept store, as fresh processes."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from archive.api import Archive
from indexer.errors import ArchiveError, UsageError
from indexer.store import Reader
from search.eval import evaluate as evaluate_mod

from .common import QUERIES, _archive_cmd, _child, _threads, _timed

EVAL_EXTRA = [
    "a cat",
    "a bottle of beer",
    "a laptop",
    "a runner",
    "a baby",
    "a bank card",
    "a plane in the sky",
    "a forest",
]


def eval_texts(queries: int) -> list[str]:
    """``queries`` distinct text queries: :data:`QUERIES`, then :data:`EVAL_EXTRA`, then numbered ones."""
    base = QUERIES + EVAL_EXTRA
    return [base[i] if i < len(base) else f"{base[i % len(base)]} {i // len(base) + 1}" for i in range(queries)]


def write_truth(
    path: str, refs: Sequence[Any], videos: int, queries: int, present: float = 0.3, seed: int = 0
) -> dict[str, Any]:
    """Write a truth CSV (``video,query,start_s,end_s``) judging ``videos`` of the indexed videos
    ``refs`` (spread evenly over them, named by file name) for ``queries`` text queries.

    A deterministic random share ``present`` of the (video, query) pairs has 1-2 intervals (0.5-8 s,
    to 0.1 s) within the video's duration; of the others about half have an explicit absent row and
    half no row at all. Each video and each query has at least one row, so all are judged.
    Returns the counts written (rows, present pairs, absent rows, pairs without a row).

    Raises:
        UsageError: the store holds fewer than ``videos`` videos.
    """
    if videos > len(refs):
        raise UsageError(f"--eval-videos {videos}: the store holds only {len(refs)} videos.")
    pick = [refs[i] for i in np.linspace(0, len(refs) - 1, videos).round().astype(int)]
    texts = eval_texts(queries)
    rng = np.random.default_rng(seed)
    lines = ["video,query,start_s,end_s"]
    n_present = n_absent = n_unlisted = 0
    for vi, ref in enumerate(pick):
        dur = float(ref.duration_s or 30.0)
        for qi, text in enumerate(texts):
            r = rng.random()
            must = vi == qi % videos or qi == vi % queries  # every video and every query gets a row
            if r < present:
                n_present += 1
                for _ in range(int(rng.integers(1, 3))):
                    length = float(rng.uniform(0.5, min(8.0, dur)))
                    a = round(float(rng.uniform(0.0, dur - length)), 1)
                    b = max(float(np.floor(min(a + length, dur) * 10)) / 10, a + 0.1)  # never past the end
                    lines.append(f"{ref.name},{text},{a:.1f},{b:.1f}")
            elif r < present + (1 - present) / 2 or must:
                n_absent += 1
                lines.append(f"{ref.name},{text},,")
            else:
                n_unlisted += 1
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "rows": len(lines) - 1,
        "present_pairs": n_present,
        "absent_rows": n_absent,
        "pairs_without_row": n_unlisted,
    }


def _eval_check(rep: dict[str, Any], videos: int, queries: int, rows: int) -> list[str]:
    """Why an ``archive eval`` JSON report did not judge ``videos`` videos for each of ``queries``
    queries from ``rows`` rows (empty: it did)."""
    bad = []
    if rep.get("judged_videos") != videos:
        bad.append(f"judged {rep.get('judged_videos')} videos, not {videos}")
    qs = rep.get("queries") or []
    if len(qs) != queries:
        bad.append(f"measured {len(qs)} queries, not {queries}")
    short = [q["query"] for q in qs if q.get("judged") != videos]
    if short:
        bad.append(f"{len(short)} queries judged fewer than {videos} videos (first: {short[0]!r})")
    if rep.get("rows") != rows:
        bad.append(f"read {rep.get('rows')} rows, not {rows}")
    if rep.get("problems"):
        bad.append(f"{len(rep['problems'])} problems (first: {rep['problems'][0]})")
    return bad


def bench_eval(store: str, videos: int = 1000, queries: int = 20, runs: int = 3) -> dict[str, Any]:
    """``archive eval TRUTH --json`` on the kept (synthetic) store as ``runs`` fresh processes, with
    a truth file judging ``videos`` videos x ``queries`` text queries (:func:`write_truth`): wall
    seconds and peak RSS MB of each; then ``Archive(store).evaluate(TRUTH)`` in this process, warm
    (after one untimed call), with the seconds spent reading the truth, computing the answers and
    measuring them.

    Raises:
        ArchiveError: the truth file was not judged in full (rows skipped, videos or queries missing),
            or ``archive eval`` failed.
    """
    info, refs = Reader(store).info(), Reader(store).video_refs()
    with tempfile.TemporaryDirectory() as tmp:
        truth = str(Path(tmp) / "truth.csv")
        wrote = write_truth(truth, refs, videos, queries)
        walls, rss, out_bytes = [], [], 0
        for _ in range(runs):
            wall, peak, out, code = _child(_archive_cmd() + ["eval", truth, "--json", "--store", store])
            if code != 0 or not out.strip():
                raise ArchiveError(f"archive eval failed (exit status {code}); run it on {store} to see why.")
            bad = _eval_check(json.loads(out), videos, queries, wrote["rows"])
            if bad:
                raise ArchiveError("archive eval did not judge the whole truth file: " + "; ".join(bad) + ".")
            walls.append(wall)
            rss.append(peak)
            out_bytes = len(out.encode())
        arc = Archive(store, device="cpu")
        arc.evaluate(truth)  # warm: the frame table, the text model, the background terms
        with _timed(evaluate_mod, ["read_truth", "answers", "measure"]) as parts:
            t0 = time.perf_counter()
            rep = arc.evaluate(truth)
            total = time.perf_counter() - t0
        t0 = time.perf_counter()
        json.dumps(rep.to_dict())
        to_json = time.perf_counter() - t0
    bad = _eval_check(rep.to_dict(), videos, queries, wrote["rows"])
    if bad:
        raise ArchiveError("Archive.evaluate did not judge the whole truth file: " + "; ".join(bad) + ".")
    rest = total - sum(parts.values())
    return {
        "mode": "eval",
        "store_frames": info.frames,
        "store_videos": len(refs),
        "videos": videos,
        "queries": queries,
        **wrote,
        "runs": runs,
        "wall_s": [round(x, 3) for x in walls],
        "wall_s_min": round(min(walls), 3),
        "wall_s_median": round(float(np.median(walls)), 3),
        "peak_rss_mb": round(max(rss), 1),
        "json_bytes": out_bytes,
        "in_process_warm_s": round(total, 3),
        "in_process_split_s": {
            "read_truth": round(parts["read_truth"], 3),
            "answers": round(parts["answers"], 3),
            "measure": round(parts["measure"], 3),
            "rest": round(rest, 3),
            "to_dict_json": round(to_json, 3),
        },
        "judged_check": {
            "judged_videos": rep.judged_videos,
            "queries": len(rep.queries),
            "rows_read": rep.rows,
            "problems": len(rep.problems),
            "ok": True,
        },
        "threads": _threads(),
    }
