"""`archive bench --add` and `--cold`: an add into a kept store and cold searches, timed as fresh processes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from indexer.errors import ArchiveError
from indexer.model import background
from indexer.model.encoder import TextEncoder
from indexer.store import FrameRecord, Reader, ShotRecord, VideoRecord, Writer
from indexer.store.records import ModelSpec
from search import versions as versions_mod

from .common import _archive_cmd, _child, _wchar


def bench_add(store: str, clip: str) -> dict[str, Any]:
    """Adding one clip to a kept store, as users pay it: ``archive index CLIP`` in a fresh process
    (wall, peak RSS); then, in this process, one commit of a synthetic 60-frame video (seconds and
    bytes written), and matching one video against the archive. Both videos are removed again, so
    the store is measured the same way each time."""
    if not os.path.isfile(clip):
        raise ArchiveError(f"--add {clip}: file not found.")
    with Writer(store) as w:  # an older store is upgraded first, as `archive index` would
        w.attach_existing()
    before = Reader(store).info()
    wall, rss, out, code = _child(_archive_cmd() + ["index", clip, "--store", store, "--json", "-q"])
    if code not in (0, 1) or not out.strip():
        raise ArchiveError(f"archive index {clip} failed (exit status {code})")
    rep = json.loads(out)
    if rep.get("indexed") != 1:
        raise ArchiveError(f"{clip} was not indexed (already in the store?): give a clip the store does not hold")

    meta = Reader(store).meta()
    dim = int(meta["dim"])
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((60, dim), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    spec = ModelSpec(meta["model"], meta["pretrained"])
    text = TextEncoder.open(spec)  # the index run above exported it
    bg = (
        dict(
            bg_lse=background.background_lse(vec @ text.encode_texts(list(background.BACKGROUND_PROMPTS)).T),
            bg_key=background.background_key(spec.name, spec.pretrained, "fp32"),
        )
        if text
        else {}
    )
    rec = VideoRecord(
        path="/bench/one-more-video.mp4",
        size_bytes=1,
        mtime=0.0,
        fingerprint="bench",
        duration_s=30.0,
        fps=25.0,
        width=1920,
        height=1080,
        codec="h264",
        sample_fps=2.0,
        decoded_frames=750,
        frames=[FrameRecord(t * 0.5, t * 0.5 + 0.5, t // 4) for t in range(60)],
        vectors=vec,
        shots=[ShotRecord(a * 2.0, a * 2.0 + 2.0) for a in range(15)],
        **bg,
    )
    try:
        with Writer(store) as w:
            t0 = time.perf_counter()
            w.attach(ModelSpec(meta["model"], meta["pretrained"]), dim)
            attach_s = time.perf_counter() - t0
            b0, t0 = _wchar(), time.perf_counter()
            w.commit([rec])
            commit_s, written = time.perf_counter() - t0, _wchar() - b0
            w.remove_videos([rec.path])
        match = bench_match(store, os.path.abspath(clip))
    finally:  # the videos as they were (the files keep the removed rows until `archive optimize`)
        with Writer(store) as w:
            w.attach(ModelSpec(meta["model"], meta["pretrained"]), dim)
            w.remove_videos([os.path.abspath(clip), rec.path])
    return {
        "mode": "add",
        "store_frames": before.frames,
        "store_segments": before.segments,
        "clip": clip,
        "indexed": rep.get("indexed"),
        "clip_frames": rep.get("frames"),
        "index_wall_s": round(wall, 3),
        "index_peak_rss_mb": round(rss, 1),
        "index_versions_s": rep.get("versions_s"),
        "versions_share_of_index": round(rep.get("versions_s", 0.0) / max(wall - rep.get("versions_s", 0.0), 1e-9), 3),
        "writer_attach_s": round(attach_s, 3),
        "commit_s": round(commit_s, 4),
        "commit_bytes_written": written,
        "commit_frames": 60,
        **match,
    }


def bench_match(store: str, path: str, runs: int = 3) -> dict[str, Any]:
    """Matching one video against the whole archive (range search over every stored vector, or
    the IVF index where there is one, then alignment of its candidates), ``runs`` times in this
    process. The video is the store's last synthetic one when there is one (its vectors are
    shaped like the archive's, so the candidates are what a new ad of that archive would meet),
    else ``path``; with an IVF index, an exact scan is timed too."""
    refs = Reader(store).video_refs()
    ref = next((r for r in reversed(refs) if r.path.startswith("/synthetic/")), None) or next(
        r for r in refs if r.path == path
    )
    table = Reader(store).frames([ref.video_id])
    side = versions_mod.side_of(table, 0, len(table))
    basis, _new = versions_mod.basis_of(store)

    def timed(use_ivf: bool) -> tuple[list[float], int]:
        times, found = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            found = len(versions_mod.find(store, [side], basis, use_ivf=use_ivf))
            times.append(round(time.perf_counter() - t0, 4))
        return times, found

    out: dict[str, Any] = {"match_video": ref.path, "match_samples": len(side)}
    out["match_one_video_s"], out["match_segments"] = timed(True)

    if Reader(store).ivf_layer()[0] is not None:
        out["match_one_video_exact_scan_s"], _n = timed(False)
    return out


def bench_cold(store: str, text: str, runs: int = 3) -> dict[str, Any]:
    """``archive search TEXT`` as ``runs`` fresh processes: wall and peak RSS of each."""
    walls, rss = [], []
    for _ in range(runs):
        wall, peak, out, code = _child(_archive_cmd() + ["search", text, "--store", store, "--json"])
        if code != 0:
            raise RuntimeError(f"archive search failed (exit status {code})")
        walls.append(wall)
        rss.append(peak)
    return {
        "mode": "cold-query",
        "store_frames": Reader(store).info().frames,
        "query": text,
        "runs": runs,
        "wall_s": [round(x, 3) for x in walls],
        "wall_s_median": round(float(np.median(walls)), 3),
        "peak_rss_mb": round(max(rss), 1),
    }
