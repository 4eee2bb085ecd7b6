"""Synthetic stores of N frames (`archive bench --frames N --keep DIR`), with queries whose answers are known."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from indexer.model import background
from indexer.model.background import background_vectors
from indexer.model.encoder import Encoder
from indexer.store import FrameRecord, Reader, ShotRecord, VideoRecord, Writer
from indexer.store import ivf as ivfmod
from indexer.store.records import ModelSpec
from search import levels
from search import versions as versions_mod


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
    enc = Encoder.load(model, pretrained, "cpu")
    dim = enc.dim

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
            shot = unit(
                0.6 * common
                + 0.6 * concepts[rng.integers(0, len(concepts), n_shots)]
                + 0.5 * unit(rng.standard_normal((n_shots, dim), dtype=np.float32))
            )
            vec = unit(np.repeat(shot, 4, axis=0)[:n] + 0.15 * unit(rng.standard_normal((n, dim), dtype=np.float32)))
            vec = np.ascontiguousarray(vec, dtype=np.float32).astype(np.float16).astype(np.float32)  # as stored
            ts = np.arange(n) * 0.5
            shots = [ShotRecord(float(a), float(min(a + 2.0, n * 0.5))) for a in np.arange(0, n * 0.5, 2.0)]
            chunk.append(
                VideoRecord(
                    path=f"/synthetic/brand{v % 50:02d}/ad{v:06d}.mp4",
                    size_bytes=5_000_000,
                    mtime=0.0,
                    fingerprint=f"{v:032x}",
                    duration_s=n * 0.5,
                    fps=25.0,
                    width=1920,
                    height=1080,
                    codec="h264",
                    sample_fps=2.0,
                    decoded_frames=n * 12,
                    frames=[FrameRecord(float(t), float(t + 0.5), int(t // 2.0)) for t in ts],
                    vectors=vec,
                    shots=shots,
                    bg_lse=background.background_lse(vec @ bg.T),
                    bg_key=key,
                )
            )
            done += n
            if len(chunk) >= 2000:
                w.commit(chunk)
                chunk = []
        if chunk:
            w.commit(chunk)
    build_s = time.perf_counter() - t0
    # its videos share no footage: they are marked compared (as index runs leave them), and the
    # matching basis is measured now, so that adding a clip later pays only for the clip

    t1 = time.perf_counter()
    basis, _new = versions_mod.basis_of(store)
    with Writer(store) as w:
        w.footage.save_basis(basis.mean, basis.transform, basis.level, basis.candidate_level, basis.vectors)
        w.footage.replace(Reader(store).unmatched_videos(), [])
    basis_s = time.perf_counter() - t1

    t2 = time.perf_counter()
    with Writer(store) as w:  # and the image rule's levels kept, as an index run leaves them
        levels.refresh(store, w)
    levels_s = time.perf_counter() - t2

    ivf_s = None
    if ivfmod.match_index_due(frames):  # the IVF index the index runs would have trained
        t3 = time.perf_counter()
        with Writer(store) as w:
            w.attach_existing()
            w.layer.train_ivf()
        ivf_s = round(time.perf_counter() - t3, 2)
    size = Reader(store).info().bytes
    return {
        "frames": frames,
        "videos": n_videos,
        "build_s": round(build_s, 2),
        "bytes_on_disk": size,
        "bytes_per_frame": round(size / frames, 1),
        "versions_basis_s": round(basis_s, 2),
        "image_levels_s": round(levels_s, 2),
        "match_ivf_s": ivf_s,
    }
