"""`archive bench --frames N`: query latency (p50/p95), recall against the exact scan, and the fan-out over shards."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer import settings
from search.query import Searcher
from search.shards import ShardedSearcher

from .common import QUERIES, _threads, peak_rss_mb
from .synthetic import aligned_queries, build_synthetic


def bench_queries(store: str, queries: int) -> dict[str, Any]:
    """Run ``queries`` real text queries one at a time against ``store``, model loaded first."""
    s = Searcher(store)
    _ = s.encoder
    s.background_vectors()
    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(queries)]
    s.search([texts[0]])  # warm: loads the frame table once, as a notebook or a server keeps it
    s.search([texts[1]])  # ... and (large stores) builds the bf16 copy the later queries rank from
    lat, parts = [], []
    for t in texts:
        t0 = time.perf_counter()
        s.search([t])
        lat.append((time.perf_counter() - t0) * 1000)
        parts.append(dict(s.last_timings))
    lat_a = np.array(lat)
    split = {k: round(float(np.median([p[k] for p in parts])) * 1000, 2) for k in parts[0]}
    out = {
        "queries": queries,
        "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
        "p95_ms": round(float(np.percentile(lat_a, 95)), 2),
        "split_p50_ms": split,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": _threads(),
    }
    scanner = s.scanner(None)
    ranker = s.ivf_ranker(scanner)
    if ranker is not None:
        out["scan"] = f"IVF ({scanner.table.ivf.factory}, nprobe {settings.ivf_nprobe()}), candidates rescored exactly"
        out["ivf_load_s"] = round(ranker.load_s, 2)
    else:
        out["scan"] = f"{scanner.copy_kind}, shown videos rescored exactly" if scanner.approximate else "exact fp32"
    if ranker is not None or scanner.approximate:  # after peak RSS is read: the exact pass reads every vector
        out.update(recall_vs_exact(s, texts))
        # queries that relate to the synthetic concepts as a trained model's texts do to its images
        dim = scanner.table.vectors.shape[1]
        labels = [f"aligned query {i}" for i in range(queries)]
        for label, vec in zip(labels, aligned_queries(dim, queries)):
            s._text_cache[label] = vec  # given vectors, as if embedded (the bench's own shortcut)
        lat = []
        for t in labels:
            t0 = time.perf_counter()
            s.search([t])
            lat.append((time.perf_counter() - t0) * 1000)
        al = recall_vs_exact(s, labels)
        out["aligned"] = {
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "recall_at_top": al["recall_at_top"],
            "same_answers": al["same_answers"],
            "note": "query vectors at cosine 0.5 to one synthetic concept; no text embedding",
        }
    return out


def bench_shards(frames: int, shards: int, queries: int, model: str, pretrained: str) -> dict[str, Any]:
    """Build ``shards`` synthetic stores of ``frames / shards`` frames each (in a temporary folder)
    and time ``queries`` text queries over them as one (:mod:`search.shards`) in a fresh process:
    compare with one store of ``frames`` (``--frames N`` alone) for the fan-out's cost."""
    with tempfile.TemporaryDirectory() as tmp:
        stores, built = [], []
        for k in range(shards):
            st = str(Path(tmp) / f"shard{k}")
            built.append(build_synthetic(st, frames // shards, model, pretrained, seed=k))
            stores.append(st)
        p = subprocess.run(
            [sys.executable, "-m", "archive.bench", "--shards", *stores, str(queries)],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "shard bench failed")
        q = json.loads(p.stdout)
    return {
        "mode": "shards",
        "model": model,
        "pretrained": pretrained,
        "shards": shards,
        "frames": sum(b["frames"] for b in built),
        "frames_per_shard": frames // shards,
        **q,
    }


def bench_sharded_queries(stores: Sequence[str], queries: int) -> dict[str, Any]:
    """Run ``queries`` text queries one at a time over ``stores`` as one, model loaded first."""
    s = ShardedSearcher(stores)
    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(queries)]
    s.search([texts[0]])  # warm, as a server keeps its shards loaded
    s.search([texts[1]])
    lat, merge = [], []
    for t in texts:
        t0 = time.perf_counter()
        s.search([t])
        lat.append((time.perf_counter() - t0) * 1000)
        merge.append(s.last_timings["merge"] * 1000)
    lat_a = np.array(lat)
    return {
        "queries": queries,
        "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
        "p95_ms": round(float(np.percentile(lat_a, 95)), 2),
        "merge_p50_ms": round(float(np.median(merge)), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": _threads(),
    }


def recall_vs_exact(fast: Any, texts: Sequence[str], top: int = settings.DEFAULT_TOP) -> dict[str, Any]:
    """How the bf16-ranked answers compare with brute-force exact ones: the share of the exact
    top ``top`` videos that the fast ranking also shows, and of shown videos with equal answers."""
    exact = Searcher(fast.store_dir, encoder=fast.encoder, exact=True)
    exact._text_cache.update(fast._text_cache)  # the same query vectors (given ones included)
    found = same = shown = 0
    for t in texts:
        [a] = fast.search([t], top=top)
        [b] = exact.search([t], top=top)
        ids_a = {r.video_id: r for r in a.results}
        found += sum(r.video_id in ids_a for r in b.results)
        for r in b.results:
            if r.video_id in ids_a:
                shown += 1
                x = ids_a[r.video_id]
                same += x.to_dict() == r.to_dict()  # as shown: times to 1 ms, scores to 4 decimals
    total = top * len(texts)
    return {
        "recall_at_top": round(found / total, 4) if total else None,
        "same_answers": round(same / shown, 4) if shown else None,
        "recall_top": top,
    }


def bench_query_mode(frames: int, queries: int, model: str, pretrained: str, keep: str | None = None) -> dict[str, Any]:
    """Build a synthetic store, then time queries in a fresh process (so its peak RSS is the
    searcher's own, not the builder's); ``queries`` 0 only builds (with ``keep``, for --add)."""
    tmp = None
    store = keep
    if store is None:
        tmp = tempfile.TemporaryDirectory()
        store = tmp.name
    try:
        built = build_synthetic(store, frames, model, pretrained)
        if queries <= 0:
            return {"mode": "build", "model": model, "pretrained": pretrained, **built}
        p = subprocess.run(
            [sys.executable, "-m", "archive.bench", store, str(queries)], capture_output=True, text=True, check=False
        )
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "query bench failed")
        q = json.loads(p.stdout)
        return {"mode": "query", "model": model, "pretrained": pretrained, **built, **q}
    finally:
        if tmp is not None:
            tmp.cleanup()
