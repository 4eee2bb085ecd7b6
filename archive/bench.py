"""`archive bench`: measured numbers for indexing and for queries, as JSON.

    archive bench --index PATH... [--naive]      a real index run into a temporary store
    archive bench --frames N --queries Q         a synthetic store of N frames, Q real text queries
    archive bench --add CLIP --store DIR         `archive index CLIP` into a kept store, and one commit
    archive bench --cold TEXT --store DIR        `archive search TEXT` as fresh processes
    archive bench --eval --store DIR             `archive eval TRUTH` (N videos x Q queries) as fresh processes

Numbers are for the machine it runs on; README's performance section says which machine gave
the published ones and the commands that reproduce them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from indexer import settings

QUERIES = [
    "a beach", "football", "a construction site", "alcohol", "a car on a road", "a family at dinner",
    "a city at night", "a dog", "a smartphone", "a logo on a white background", "people dancing",
    "a supermarket", "snow in the mountains", "a kitchen", "a doctor", "a stadium crowd",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_index(
    paths: Sequence[str], model: str, pretrained: str, fps: float = settings.DEFAULT_FPS,
    batch_size: int = settings.DEFAULT_BATCH, precision: str = settings.DEFAULT_PRECISION, naive: bool = False,
    shots: str | None = None, ray_workers: int | None = None, ocr: bool = False,
) -> dict[str, Any]:
    """Index ``paths`` into a temporary store and time it; with ``naive``, also time the naive
    per-frame loop (OpenCV reads every frame, keeps every Nth, PIL, fp32 batches of 32) on the
    same files and model. ``shots``: the shot detector (``fast``, ``transnet``, ``auto``).
    ``ray_workers``: run the per-video work on that many workers of a local Ray runtime (the wall
    time then includes starting Ray and loading the model on the workers). ``ocr``: then index the
    same files again into another temporary store with on-screen text read, and compare."""
    from indexer.encoder import Encoder
    from indexer.pipeline import index_paths

    settings.idle_threads_sleep()  # as `archive index` does, before torch loads
    t0 = time.perf_counter()
    enc = None
    if ray_workers is None:
        enc = Encoder.load(model, pretrained, "cpu", precision=precision)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        if ray_workers is None:
            rep = index_paths(paths, tmp, encoder=enc, fps=fps, batch_size=batch_size, shots=shots)
        else:
            from indexer.rayrun import RayOptions

            rep = index_paths(paths, tmp, model=model, pretrained=pretrained, fps=fps, batch_size=batch_size,
                              shots=shots, precision=precision, device="cpu",
                              ray=RayOptions("local", workers=ray_workers))
        store_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())
        from indexer.store import read_connection  # noqa: PLC0415

        with read_connection(tmp) as con:
            kinds = dict(con.execute("SELECT coalesce(transition, '?'), count(*) FROM shots GROUP BY 1").fetchall())
    st = rep.stages
    out: dict[str, Any] = {
        "mode": "index",
        "model": model, "pretrained": pretrained, "precision": enc.precision if enc is not None else precision,
        "fps": fps, "ray_workers": ray_workers,
        "shots": settings.shots(shots), "shot_transitions": kinds,
        "threads": _threads(),
        "videos": rep.indexed, "failed": rep.failed, "frames": rep.frames, "reused_frames": st.reused,
        "video_seconds": round(rep.video_seconds, 3),
        "wall_s": round(rep.wall_s, 3), "model_load_s": round(load_s, 3),
        "frames_per_s": round(rep.frames / rep.wall_s, 2) if rep.wall_s else None,
        "video_seconds_per_s": round(rep.video_seconds / rep.wall_s, 2) if rep.wall_s else None,
        # decode and preprocess run in a thread alongside embed, so they overlap the embed time
        "stages_s": {"decode": round(st.decode, 3), "preprocess": round(st.preprocess, 3),
                     "embed": round(st.embed, 3), "write": round(st.write, 3)},
        "bytes_per_frame": round(store_bytes / rep.frames, 1) if rep.frames else None,
    }
    if ocr:
        out["ocr"] = _ocr_run(paths, enc, fps, batch_size, shots, rep.wall_s)
    if naive:
        nv = naive_loop(paths, model, pretrained, fps)
        out["naive"] = nv
        out["speedup_vs_naive"] = round(nv["wall_s"] / rep.wall_s, 2) if rep.wall_s else None
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _ocr_run(paths: Sequence[str], enc: Any, fps: float, batch_size: int, shots: str | None,
             plain_wall_s: float) -> dict[str, Any]:
    """The same index run with on-screen text read (``--ocr``), against the run without it."""
    from indexer import ocr as ocrmod
    from indexer.pipeline import index_paths

    t0 = time.perf_counter()
    ocrmod.engine(settings.ocr_side())  # loaded once per process, like the model: timed apart
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        rep = index_paths(paths, tmp, encoder=enc, fps=fps, batch_size=batch_size, shots=shots, ocr=True)
    st = rep.stages
    return {
        "wall_s": round(rep.wall_s, 3), "wall_s_without": round(plain_wall_s, 3),
        "ratio": round(rep.wall_s / plain_wall_s, 2) if plain_wall_s else None,
        "ocr_load_s": round(load_s, 3), "ocr_side": settings.ocr_side(),
        "frames": rep.frames, "frames_read": st.ocr_frames, "text_lines": rep.text_lines,
        "not_read": len(rep.text_notes),
        # the OCR runs in the decoding threads: its seconds overlap the model's
        "stages_s": {"decode": round(st.decode, 3), "preprocess": round(st.preprocess, 3), "ocr": round(st.ocr, 3),
                     "embed": round(st.embed, 3), "write": round(st.write, 3)},
        "ocr_s_per_frame_read": round(st.ocr / st.ocr_frames, 3) if st.ocr_frames else None,
    }


def naive_loop(paths: Sequence[str], model: str, pretrained: str, fps: float) -> dict[str, Any]:
    """The loop we replace: every frame read with OpenCV, every Nth kept, PIL, fp32, batches of 32."""
    import cv2
    import torch
    from PIL import Image

    from indexer.discover import discover
    from indexer.encoder import Encoder

    enc = Encoder.load(model, pretrained, "cpu", precision="fp32", full=True)
    files, _ = discover(paths)
    t0 = time.perf_counter()
    frames = 0
    for f in files:
        cap = cv2.VideoCapture(f)
        if not cap.isOpened():
            continue
        step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 25.0) / fps))
        batch: list[Any] = []
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if i % step == 0:
                batch.append(enc.preprocess(Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))))
                if len(batch) == 32:
                    with torch.inference_mode():
                        enc.model.encode_image(torch.stack(batch))
                    frames += len(batch)
                    batch = []
            i += 1
        if batch:
            with torch.inference_mode():
                enc.model.encode_image(torch.stack(batch))
            frames += len(batch)
        cap.release()
    wall = time.perf_counter() - t0
    return {"frames": frames, "wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 2) if wall else None,
            "precision": "fp32"}


def make_ads(dest: str, count: int = 6, seconds: float = 30.0, size: tuple[int, int] = (1280, 720),
             rate: int = 25, seed: int = 0, sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``count`` ad-like H.264 MP4s into ``dest``: real footage (the sample clips in
    tests/data by default) cut into 0.5-3 s shots, scaled to ``size`` at a constant ``rate``, as
    broadcast ads are. Returns what was written."""
    import av
    import cv2

    src_paths = list(sources) if sources else [str(Path(__file__).resolve().parent.parent / "tests" / "data" / n)
                                              for n in ("Megamind.avi", "tree.avi")]
    clips = []
    for sp in src_paths:
        cap = cv2.VideoCapture(sp)
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
        cap.release()
        if len(frames) >= 10:
            clips.append(frames)
    if not clips:
        raise RuntimeError("no source footage could be read for --make-ads")
    rng = np.random.default_rng(seed)
    Path(dest).mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * rate))
    written, cuts = [], 0
    for k in range(count):
        path = Path(dest) / f"ad{k:03d}.mp4"
        with av.open(str(path), "w") as out:
            st = out.add_stream("libx264", rate=rate)
            st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
            st.options = {"preset": "veryfast", "crf": "23"}
            done = 0
            while done < n_frames:
                clip = clips[int(rng.integers(len(clips)))]
                length = min(int(rng.integers(rate // 2, 3 * rate + 1)), n_frames - done, len(clip))
                start = int(rng.integers(0, len(clip) - length + 1))
                flip = bool(rng.integers(2))
                for img in clip[start : start + length]:
                    frame = av.VideoFrame.from_ndarray(img[:, ::-1] if flip else img, format="rgb24")
                    for pkt in st.encode(frame):
                        out.mux(pkt)
                done += length
                cuts += 1
            for pkt in st.encode():
                out.mux(pkt)
        written.append(str(path))
    return {"files": written, "seconds_each": seconds, "size": f"{size[0]}x{size[1]}", "rate": rate, "shots": cuts}


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def synthetic_directions(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The direction every synthetic frame shares, and the 1,000 "concepts" (fixed seeds)."""
    common = _unit(np.random.default_rng(12345).standard_normal(dim)).astype(np.float32)
    concepts = _unit(np.random.default_rng(54321).standard_normal((1000, dim))).astype(np.float32)
    return common, concepts


def aligned_queries(dim: int, n: int, seed: int = 7) -> np.ndarray:
    """Query vectors as a trained CLIP's text queries relate to its images: each about one synthetic
    concept (cosine 0.5 with it) and otherwise off in its own direction (the modality gap). With
    random weights a text's vector is unrelated to every concept, which no trained model does."""
    _common, concepts = synthetic_directions(dim)
    rng = np.random.default_rng(seed)
    noise = _unit(rng.standard_normal((n, dim)))
    return _unit(0.5 * concepts[rng.integers(0, len(concepts), n)] + 0.866 * noise).astype(np.float32)


def build_synthetic(store: str, frames: int, model: str, pretrained: str, seed: int = 0) -> dict[str, Any]:
    """A store of ``frames`` synthetic unit vectors with ad-like metadata (30 s videos at 2
    samples/s, 2 s shots) and their background terms, written through the real store code, 2,000
    videos a commit (so a segment of 120,000 vectors each).

    The vectors are shaped like CLIP image embeddings rather than spread evenly over the sphere
    (where no index can do better than a full scan): a direction all frames share, one of 1,000
    "concepts" per shot, and noise, so that two frames of one shot score about 0.98, two shots
    of one concept about 0.75 and unrelated shots about 0.4.

    The store is left as index runs would leave it: videos marked compared for versions, the
    matching basis and image levels kept, and from ``ARCHIVE_MATCH_IVF_FRAMES`` frames on the IVF
    index trained for matching (``match_ivf_s``), so that adding a clip later pays only for the clip."""
    from indexer import terms
    from indexer.encoder import Encoder, ModelSpec
    from indexer.store import FrameRecord, ShotRecord, VideoRecord, Writer

    enc = Encoder.load(model, pretrained, "cpu")
    dim = enc.dim
    from indexer.pipeline import background_vectors

    bg, key = background_vectors(enc)
    rng = np.random.default_rng(seed)
    unit = _unit
    common, concepts = synthetic_directions(dim)
    per_video = 60
    n_videos = max(1, frames // per_video)
    t0 = time.perf_counter()
    with Writer(store) as w:
        w.attach(ModelSpec(enc.spec.name, enc.spec.pretrained), dim)
        done = 0
        chunk: list[VideoRecord] = []
        for v in range(n_videos):
            n = per_video if v < n_videos - 1 else frames - done
            n_shots = -(-n // 4)
            shot = unit(0.6 * common + 0.6 * concepts[rng.integers(0, len(concepts), n_shots)]
                        + 0.5 * unit(rng.standard_normal((n_shots, dim), dtype=np.float32)))
            vec = unit(np.repeat(shot, 4, axis=0)[:n] + 0.15 * unit(rng.standard_normal((n, dim), dtype=np.float32)))
            vec = np.ascontiguousarray(vec, dtype=np.float32).astype(np.float16).astype(np.float32)  # as stored
            ts = np.arange(n) * 0.5
            shots = [ShotRecord(float(a), float(min(a + 2.0, n * 0.5))) for a in np.arange(0, n * 0.5, 2.0)]
            chunk.append(VideoRecord(
                path=f"/synthetic/brand{v % 50:02d}/ad{v:06d}.mp4", size_bytes=5_000_000, mtime=0.0,
                fingerprint=f"{v:032x}", duration_s=n * 0.5, fps=25.0, width=1920, height=1080, codec="h264",
                sample_fps=2.0, decoded_frames=n * 12,
                frames=[FrameRecord(float(t), float(t + 0.5), int(t // 2.0)) for t in ts], vectors=vec, shots=shots,
                bg_lse=terms.background_lse(vec @ bg.T), bg_key=key,
            ))
            done += n
            if len(chunk) >= 2000:
                w.commit(chunk)
                chunk = []
        if chunk:
            w.commit(chunk)
    build_s = time.perf_counter() - t0
    # its videos share no footage: they are marked compared (as index runs leave them), and the
    # matching basis is measured now, so that adding a clip later pays only for the clip
    from indexer.store import unmatched_videos
    from search import versions as versions_mod

    t1 = time.perf_counter()
    basis, _new = versions_mod.basis_of(store)
    with Writer(store) as w:
        w.save_match_basis(basis.mean, basis.transform, basis.level, basis.candidate_level, basis.vectors)
        w.replace_matches(unmatched_videos(store), [])
    basis_s = time.perf_counter() - t1
    from search import levels  # noqa: PLC0415

    t2 = time.perf_counter()
    with Writer(store) as w:  # and the image rule's levels kept, as an index run leaves them
        levels.refresh(store, w)
    levels_s = time.perf_counter() - t2
    from indexer.store import ivf as ivfmod
    from indexer.store import store_info

    ivf_s = None
    if ivfmod.match_index_due(frames):  # the IVF index the index runs would have trained
        t3 = time.perf_counter()
        with Writer(store) as w:
            w.attach_existing()
            w.train_ivf()
        ivf_s = round(time.perf_counter() - t3, 2)
    size = store_info(store).bytes
    return {"frames": frames, "videos": n_videos, "build_s": round(build_s, 2), "bytes_on_disk": size,
            "bytes_per_frame": round(size / frames, 1), "versions_basis_s": round(basis_s, 2),
            "image_levels_s": round(levels_s, 2), "match_ivf_s": ivf_s}


def bench_queries(store: str, queries: int) -> dict[str, Any]:
    """Run ``queries`` real text queries one at a time against ``store``, model loaded first."""
    from search.query import Searcher

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
    out = {"queries": queries, "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
           "p95_ms": round(float(np.percentile(lat_a, 95)), 2), "split_p50_ms": split,
           "peak_rss_mb": round(peak_rss_mb(), 1), "threads": _threads()}
    scanner = s.scanner(None)
    ranker = s.ivf_ranker(scanner)
    if ranker is not None:
        out["scan"] = (f"IVF ({scanner.table.ivf.factory}, nprobe {settings.ivf_nprobe()}), candidates rescored "
                       "exactly")
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
        out["aligned"] = {"p50_ms": round(float(np.percentile(lat, 50)), 2), "p95_ms": round(float(np.percentile(lat, 95)), 2),
                          "recall_at_top": al["recall_at_top"], "same_answers": al["same_answers"],
                          "note": "query vectors at cosine 0.5 to one synthetic concept; no text embedding"}
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
        p = subprocess.run([sys.executable, "-m", "archive.bench", "--shards", *stores, str(queries)],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "shard bench failed")
        q = json.loads(p.stdout)
    return {"mode": "shards", "model": model, "pretrained": pretrained, "shards": shards,
            "frames": sum(b["frames"] for b in built), "frames_per_shard": frames // shards, **q}


def bench_sharded_queries(stores: Sequence[str], queries: int) -> dict[str, Any]:
    """Run ``queries`` text queries one at a time over ``stores`` as one, model loaded first."""
    from search.shards import ShardedSearcher

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
    return {"queries": queries, "p50_ms": round(float(np.percentile(lat_a, 50)), 2),
            "p95_ms": round(float(np.percentile(lat_a, 95)), 2),
            "merge_p50_ms": round(float(np.median(merge)), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "threads": _threads()}


def recall_vs_exact(fast: Any, texts: Sequence[str], top: int = settings.DEFAULT_TOP) -> dict[str, Any]:
    """How the bf16-ranked answers compare with brute-force exact ones: the share of the exact
    top ``top`` videos that the fast ranking also shows, and of shown videos with equal answers."""
    from search.query import Searcher

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
    return {"recall_at_top": round(found / total, 4) if total else None,
            "same_answers": round(same / shown, 4) if shown else None, "recall_top": top}


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
        p = subprocess.run([sys.executable, "-m", "archive.bench", store, str(queries)],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "query bench failed")
        q = json.loads(p.stdout)
        return {"mode": "query", "model": model, "pretrained": pretrained, **built, **q}
    finally:
        if tmp is not None:
            tmp.cleanup()


def _child(cmd: Sequence[str]) -> tuple[float, float, str, int]:
    """Run ``cmd`` as users do (a fresh process, compiled-bytecode caches allowed): (wall s, its
    peak RSS MB, stdout, exit status)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = p.stdout.read() if p.stdout else ""
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024.0, out, p.returncode


def _archive_cmd() -> list[str]:
    return [sys.executable, "-m", "archive.cli"]


def _wchar() -> int:
    """Bytes this process has passed to write() so far (Linux)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def bench_add(store: str, clip: str) -> dict[str, Any]:
    """Adding one clip to a kept store, as users pay it: ``archive index CLIP`` in a fresh process
    (wall, peak RSS); then, in this process, one commit of a synthetic 60-frame video (seconds and
    bytes written), and matching one video against the archive. Both videos are removed again, so
    the store is measured the same way each time."""
    from indexer.encoder import ModelSpec
    from indexer.store import FrameRecord, ShotRecord, VideoRecord, Writer, read_meta, store_info

    from indexer.errors import ArchiveError

    if not os.path.isfile(clip):
        raise ArchiveError(f"--add {clip}: file not found.")
    with Writer(store) as w:  # an older store is upgraded first, as `archive index` would
        w.attach_existing()
    before = store_info(store)
    wall, rss, out, code = _child(_archive_cmd() + ["index", clip, "--store", store, "--json", "-q"])
    if code not in (0, 1) or not out.strip():
        raise ArchiveError(f"archive index {clip} failed (exit status {code})")
    rep = json.loads(out)
    if rep.get("indexed") != 1:
        raise ArchiveError(f"{clip} was not indexed (already in the store?): give a clip the store does not hold")
    from indexer import terms
    from indexer.encoder import TextEncoder

    meta = read_meta(store)
    dim = int(meta["dim"])
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((60, dim), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    spec = ModelSpec(meta["model"], meta["pretrained"])
    text = TextEncoder.open(spec)  # the index run above exported it
    bg = dict(bg_lse=terms.background_lse(vec @ text.encode_texts(list(terms.BACKGROUND_PROMPTS)).T),
              bg_key=terms.background_key(spec.name, spec.pretrained, "fp32")) if text else {}
    rec = VideoRecord(path="/bench/one-more-video.mp4", size_bytes=1, mtime=0.0, fingerprint="bench", duration_s=30.0,
                      fps=25.0, width=1920, height=1080, codec="h264", sample_fps=2.0, decoded_frames=750,
                      frames=[FrameRecord(t * 0.5, t * 0.5 + 0.5, t // 4) for t in range(60)], vectors=vec,
                      shots=[ShotRecord(a * 2.0, a * 2.0 + 2.0) for a in range(15)], **bg)
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
    return {"mode": "add", "store_frames": before.frames, "store_segments": before.segments, "clip": clip,
            "indexed": rep.get("indexed"), "clip_frames": rep.get("frames"), "index_wall_s": round(wall, 3),
            "index_peak_rss_mb": round(rss, 1), "index_versions_s": rep.get("versions_s"),
            "versions_share_of_index": round(rep.get("versions_s", 0.0) / max(wall - rep.get("versions_s", 0.0), 1e-9), 3),
            "writer_attach_s": round(attach_s, 3),
            "commit_s": round(commit_s, 4), "commit_bytes_written": written, "commit_frames": 60, **match}


def bench_match(store: str, path: str, runs: int = 3) -> dict[str, Any]:
    """Matching one video against the whole archive (range search over every stored vector, or
    the IVF index where there is one, then alignment of its candidates), ``runs`` times in this
    process. The video is the store's last synthetic one when there is one (its vectors are
    shaped like the archive's, so the candidates are what a new ad of that archive would meet),
    else ``path``; with an IVF index, an exact scan is timed too."""
    from indexer.store import load_frames, video_refs
    from search import versions as versions_mod

    refs = video_refs(store)
    ref = next((r for r in reversed(refs) if r.path.startswith("/synthetic/")), None) or next(r for r in refs if r.path == path)
    table = load_frames(store, [ref.video_id])
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
    from indexer.store import ivf_layer

    if ivf_layer(store)[0] is not None:
        out["match_one_video_exact_scan_s"], _n = timed(False)
    return out


def bench_cold(store: str, text: str, runs: int = 3) -> dict[str, Any]:
    """``archive search TEXT`` as ``runs`` fresh processes: wall and peak RSS of each."""
    from indexer.store import store_info

    walls, rss = [], []
    for _ in range(runs):
        wall, peak, out, code = _child(_archive_cmd() + ["search", text, "--store", store, "--json"])
        if code != 0:
            raise RuntimeError(f"archive search failed (exit status {code})")
        walls.append(wall)
        rss.append(peak)
    return {"mode": "cold-query", "store_frames": store_info(store).frames, "query": text, "runs": runs,
            "wall_s": [round(x, 3) for x in walls], "wall_s_median": round(float(np.median(walls)), 3),
            "peak_rss_mb": round(max(rss), 1)}


EVAL_EXTRA = [
    "a cat", "a bottle of beer", "a laptop", "a runner", "a baby", "a bank card", "a plane in the sky", "a forest",
]


def eval_texts(queries: int) -> list[str]:
    """``queries`` distinct text queries: :data:`QUERIES`, then :data:`EVAL_EXTRA`, then numbered ones."""
    base = QUERIES + EVAL_EXTRA
    return [base[i] if i < len(base) else f"{base[i % len(base)]} {i // len(base) + 1}" for i in range(queries)]


def write_truth(path: str, refs: Sequence[Any], videos: int, queries: int, present: float = 0.3,
                seed: int = 0) -> dict[str, Any]:
    """Write a truth CSV (``video,query,start_s,end_s``) judging ``videos`` of the indexed videos
    ``refs`` (spread evenly over them, named by file name) for ``queries`` text queries.

    A deterministic random share ``present`` of the (video, query) pairs has 1-2 intervals (0.5-8 s,
    to 0.1 s) within the video's duration; of the others about half have an explicit absent row and
    half no row at all. Each video and each query has at least one row, so all are judged.
    Returns the counts written (rows, present pairs, absent rows, pairs without a row).

    Raises:
        UsageError: the store holds fewer than ``videos`` videos.
    """
    from indexer.errors import UsageError

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
    return {"rows": len(lines) - 1, "present_pairs": n_present, "absent_rows": n_absent,
            "pairs_without_row": n_unlisted}


@contextmanager
def _timed(module: Any, names: Sequence[str]) -> Iterator[dict[str, float]]:
    """While open, wrap ``module``'s functions ``names`` so that the seconds spent in each (summed
    over calls) are added up in the dict yielded; they are put back on leaving."""
    spent = {n: 0.0 for n in names}
    saved = {n: getattr(module, n) for n in names}

    def wrap(n: str, fn: Any) -> Any:
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[n] += time.perf_counter() - t0
        return timed

    for n, fn in saved.items():
        setattr(module, n, wrap(n, fn))
    try:
        yield spent
    finally:
        for n, fn in saved.items():
            setattr(module, n, fn)


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
    from indexer.errors import ArchiveError
    from indexer.store import store_info, video_refs
    from search import evaluate as evaluate_mod

    from .api import Archive

    info, refs = store_info(store), video_refs(store)
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
        "mode": "eval", "store_frames": info.frames, "store_videos": len(refs),
        "videos": videos, "queries": queries, **wrote, "runs": runs,
        "wall_s": [round(x, 3) for x in walls], "wall_s_min": round(min(walls), 3),
        "wall_s_median": round(float(np.median(walls)), 3), "peak_rss_mb": round(max(rss), 1),
        "json_bytes": out_bytes,
        "in_process_warm_s": round(total, 3),
        "in_process_split_s": {"read_truth": round(parts["read_truth"], 3), "answers": round(parts["answers"], 3),
                               "measure": round(parts["measure"], 3), "rest": round(rest, 3),
                               "to_dict_json": round(to_json, 3)},
        "judged_check": {"judged_videos": rep.judged_videos, "queries": len(rep.queries),
                         "rows_read": rep.rows, "problems": len(rep.problems), "ok": True},
        "threads": _threads(),
    }


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":  # the query-timing child process
    if sys.argv[1] == "--shards":
        print(json.dumps(bench_sharded_queries(sys.argv[2:-1], int(sys.argv[-1]))))
    else:
        print(json.dumps(bench_queries(sys.argv[1], int(sys.argv[2]))))
