"""`archive bench --index`: a real index run into a temporary store, its stage split, and the naive loop it replaced."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from indexer import settings
from indexer.media import ocr as ocrmod
from indexer.media import transnet
from indexer.model.encoder import Encoder
from indexer.run.discover import discover
from indexer.run.options import IndexOptions, RayOptions
from indexer.run.pipeline import index_paths
from indexer.store import Reader

from .common import _threads, peak_rss_mb
from .said import score_heard, truth_for


def bench_index(
    paths: Sequence[str],
    model: str,
    pretrained: str,
    fps: float = settings.DEFAULT_FPS,
    batch_size: int = settings.DEFAULT_BATCH,
    precision: str = settings.DEFAULT_PRECISION,
    naive: bool = False,
    shots: str | None = None,
    ray_workers: int | None = None,
    ocr: bool = False,
    speech: bool = False,
    sound: bool = False,
) -> dict[str, Any]:
    """Index ``paths`` into a temporary store and time it; with ``naive``, also time the naive
    per-frame loop (OpenCV reads every frame, keeps every Nth, PIL, fp32 batches of 32) on the
    same files and model. ``shots``: the shot detector (``fast``, ``transnet``, ``auto``).
    ``ray_workers``: run the per-video work on that many workers of a local Ray runtime (the wall
    time then includes starting Ray and loading the model on the workers). ``ocr``: then index the
    same files again into another temporary store with on-screen text read, and compare; ``speech``:
    likewise with what is said transcribed, and on a set written by ``python -m archive.bench.speechads``
    its ``--said`` answers scored against the set's ``truth.json`` (:func:`.said.score_heard`);
    ``sound``: the first run without sound fingerprints and a second with them, compared, and on a
    set written by ``python -m archive.bench.soundads`` the ``--sound`` answers scored against its
    truth (:func:`.sound.score_sound`). Without ``sound``, the first run fingerprints as
    ``archive index`` does (``$ARCHIVE_SOUND``, default on)."""
    settings.idle_threads_sleep()  # as `archive index` does, before torch loads
    t0 = time.perf_counter()
    enc = None
    if ray_workers is None:
        enc = Encoder.load(model, pretrained, "cpu", precision=precision)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        if ray_workers is None:
            rep = index_paths(
                paths,
                tmp,
                IndexOptions(fps=fps, batch_size=batch_size, shots=shots, sound=False if sound else None),
                encoder=enc,
            )
        else:
            rep = index_paths(
                paths,
                tmp,
                IndexOptions(
                    model=model,
                    pretrained=pretrained,
                    fps=fps,
                    batch_size=batch_size,
                    shots=shots,
                    precision=precision,
                    device="cpu",
                    ray=RayOptions("local", workers=ray_workers),
                ),
            )
        store_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())

        with Reader(tmp).connection() as con:
            kinds = dict(con.execute("SELECT coalesce(transition, '?'), count(*) FROM shots GROUP BY 1").fetchall())
    st = rep.stages
    out: dict[str, Any] = {
        "mode": "index",
        "model": model,
        "pretrained": pretrained,
        "precision": enc.precision if enc is not None else precision,
        "fps": fps,
        "ray_workers": ray_workers,
        "shots": transnet.detector(shots),
        "shot_transitions": kinds,
        "threads": _threads(),
        "videos": rep.indexed,
        "failed": rep.failed,
        "frames": rep.frames,
        "reused_frames": st.reused,
        "video_seconds": round(rep.video_seconds, 3),
        "wall_s": round(rep.wall_s, 3),
        "model_load_s": round(load_s, 3),
        "frames_per_s": round(rep.frames / rep.wall_s, 2) if rep.wall_s else None,
        "video_seconds_per_s": round(rep.video_seconds / rep.wall_s, 2) if rep.wall_s else None,
        # decode and preprocess run in a thread alongside embed, so they overlap the embed time
        "stages_s": {
            "decode": round(st.decode, 3),
            "preprocess": round(st.preprocess, 3),
            "embed": round(st.embed, 3),
            "write": round(st.write, 3),
        },
        "bytes_per_frame": round(store_bytes / rep.frames, 1) if rep.frames else None,
    }
    if ocr:
        out["ocr"] = _ocr_run(paths, enc, fps, batch_size, shots, rep.wall_s)
    if speech:
        out["speech"] = _speech_run(paths, enc, fps, batch_size, shots, rep.wall_s)
    if sound:
        out["sound"] = _sound_run(paths, enc, fps, batch_size, shots, rep.wall_s)
    if naive:
        nv = naive_loop(paths, model, pretrained, fps)
        out["naive"] = nv
        out["speedup_vs_naive"] = round(nv["wall_s"] / rep.wall_s, 2) if rep.wall_s else None
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _ocr_run(
    paths: Sequence[str], enc: Any, fps: float, batch_size: int, shots: str | None, plain_wall_s: float
) -> dict[str, Any]:
    """The same index run with on-screen text read (``--ocr``), against the run without it."""
    t0 = time.perf_counter()
    ocrmod.engine(settings.ocr_side())  # loaded once per process, like the model: timed apart
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        rep = index_paths(paths, tmp, IndexOptions(fps=fps, batch_size=batch_size, shots=shots, ocr=True), encoder=enc)
    st = rep.stages
    return {
        "wall_s": round(rep.wall_s, 3),
        "wall_s_without": round(plain_wall_s, 3),
        "ratio": round(rep.wall_s / plain_wall_s, 2) if plain_wall_s else None,
        "ocr_load_s": round(load_s, 3),
        "ocr_side": settings.ocr_side(),
        "frames": rep.frames,
        "frames_read": st.ocr_frames,
        "text_lines": rep.text_lines,
        "not_read": len(rep.text_notes),
        # the OCR runs in the decoding threads: its seconds overlap the model's
        "stages_s": {
            "decode": round(st.decode, 3),
            "preprocess": round(st.preprocess, 3),
            "ocr": round(st.ocr, 3),
            "embed": round(st.embed, 3),
            "write": round(st.write, 3),
        },
        "ocr_s_per_frame_read": round(st.ocr / st.ocr_frames, 3) if st.ocr_frames else None,
    }


def _speech_run(
    paths: Sequence[str], enc: Any, fps: float, batch_size: int, shots: str | None, plain_wall_s: float
) -> dict[str, Any]:
    """The same index run with what is said transcribed (``--speech``), against the run without it."""
    from indexer.media import speech as speechmod

    t0 = time.perf_counter()
    speechmod.engine()  # loaded once per process, like the model: timed apart
    load_s = time.perf_counter() - t0
    truth = truth_for(paths)
    with tempfile.TemporaryDirectory() as tmp:
        rep = index_paths(
            paths, tmp, IndexOptions(fps=fps, batch_size=batch_size, shots=shots, speech=True), encoder=enc
        )
        heard = score_heard(tmp, truth) if truth else None  # a speechads set: --said against its truth.json
    return {
        "wall_s": round(rep.wall_s, 3),
        "wall_s_without": round(plain_wall_s, 3),
        "ratio": round(rep.wall_s / plain_wall_s, 2) if plain_wall_s else None,
        "speech_load_s": round(load_s, 3),
        "speech_model": settings.speech_model(),
        "speech_threads": settings.speech_threads(),
        "sound_s": round(rep.speech_sound_s, 3),
        "recogniser_s": round(rep.speech_s, 3),
        # seconds the recogniser took per second of sound, in its own thread beside the picture work
        "real_time_factor": round(rep.speech_rtf, 3) if rep.speech_rtf is not None else None,
        "lines": rep.speech_lines,
        "words": rep.speech_words,
        "not_heard": len(rep.speech_notes),
        **({"against_truth": heard} if heard else {}),
    }


def _sound_run(
    paths: Sequence[str], enc: Any, fps: float, batch_size: int, shots: str | None, plain_wall_s: float
) -> dict[str, Any]:
    """The same index run with the sound fingerprinted, against the run without it; on a soundads
    set, its ``--sound`` answers against the set's truth."""
    from .sound import score_sound, sound_truth_for

    found = sound_truth_for(paths)
    with tempfile.TemporaryDirectory() as tmp:
        rep = index_paths(
            paths, tmp, IndexOptions(fps=fps, batch_size=batch_size, shots=shots, sound=True), encoder=enc
        )
        with Reader(tmp).connection() as con:
            table = con.execute("SELECT count(*) FROM sound_hashes").fetchall()[0][0]
            used = con.execute("SELECT sum(total_blocks * block_size) FROM pragma_database_size()").fetchall()[0][0]
        scored = score_sound(tmp, found[0]) if found else None
    return {
        "wall_s": round(rep.wall_s, 3),
        "wall_s_without": round(plain_wall_s, 3),
        "ratio": round(rep.wall_s / plain_wall_s, 3) if plain_wall_s else None,
        "videos": rep.sound_videos,
        "sound_s": round(rep.sound_seconds, 3),
        "fingerprint_s": round(rep.sound_s, 3),
        "real_time_factor": round(rep.sound_s / rep.sound_seconds, 4) if rep.sound_seconds else None,
        "hashes": int(table),
        "hashes_per_second_of_sound": round(table / rep.sound_seconds, 1) if rep.sound_seconds else None,
        "catalog_bytes_used": int(used or 0),
        "not_fingerprinted": len(rep.sound_notes),
        **({"against_truth": scored} if scored else {}),
    }


def naive_loop(paths: Sequence[str], model: str, pretrained: str, fps: float) -> dict[str, Any]:
    """The loop we replace: every frame read with OpenCV, every Nth kept, PIL, fp32, batches of 32."""
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded
    import torch  # lazy: heavy import (torch)
    from PIL import Image  # lazy: Pillow is loaded only for image files

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
    return {
        "frames": frames,
        "wall_s": round(wall, 3),
        "frames_per_s": round(frames / wall, 2) if wall else None,
        "precision": "fp32",
    }
