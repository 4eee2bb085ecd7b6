"""Work on one video: decode + embed a file into a :class:`~indexer.store.VideoRecord`.

This is the pure per-video step (file in, record out; nothing is written), so a runner can map it
over files in threads today or in worker processes elsewhere, and hand the records to the single
writer (:mod:`indexer.run.pipeline`).
"""

from __future__ import annotations

import bisect
import os
import time
from typing import Callable

import numpy as np

from indexer import crashpoints, settings
from indexer.media.decode import VideoInfo, probe
from indexer.media.decode_child import DecoderLost, ProcessPrefetch
from indexer.media.ocr import OcrEngine
from indexer.media.prefetch import END, FramePrefetch
from indexer.media.timing import StageTimes
from indexer.model.background import background_lse
from indexer.model.encoder import Encoder
from indexer.store import FrameRecord, ShotRecord, VideoRecord

from .discover import fingerprint
from .hear import Heard
from .report import Progress, ProgressFn, no_progress


def stored_precision(vectors: np.ndarray) -> np.ndarray:
    """The vectors as the store keeps them (fp16, see indexer.store.segments), back in float32: what
    is computed from them at index time (the background term, labels) is what queries see later."""
    return np.asarray(vectors, np.float32).astype(np.float16).astype(np.float32)


def embed_video(
    path: str,
    encoder: Encoder,
    fps: float = settings.DEFAULT_FPS,
    batch_size: int = settings.DEFAULT_BATCH,
    progress: ProgressFn = no_progress,
    times_out: StageTimes | None = None,
    info: VideoInfo | None = None,
    decoder: FramePrefetch | ProcessPrefetch | None = None,
    background: tuple[np.ndarray, str] | None = None,
    shots: str = "fast",
    ocr: OcrEngine | None = None,
    speech: Callable[[], Heard] | None = None,
) -> VideoRecord:
    """Decode one video, sample ``fps`` frames per second of video time, embed them.

    Decoding and preprocessing run in a background thread, one batch ahead of the model (the
    caller may hand in a :class:`~indexer.media.prefetch.FramePrefetch` it started earlier). A sample
    nearly identical to the previous one of its shot reuses that embedding (:mod:`indexer.media.near_duplicates`).
    With ``background`` (the background prompts' unit vectors and their key), each frame's
    background term (:mod:`indexer.model.background`) is computed too, to be stored with its vector.
    ``shots`` picks the shot detector (``fast`` or ``transnet``, see :func:`indexer.media.decode.sample_frames`).
    With ``ocr``, the on-screen text of the samples :class:`indexer.media.ocr.OcrTrack` picks is read
    too (in the decoding thread); a handed-in ``decoder`` must have been started with it. With
    ``speech`` (a call that waits for the file's transcript, :mod:`indexer.run.hear`), what is said
    is kept with the record; the transcript is heard beside the picture work, not after it.

    Returns:
        A record ready for :meth:`Writer.commit`: frame times, vectors and the file's metadata.

    Raises:
        VideoOpenError: the file is not a decodable video.
        OSError: the file cannot be read.
    """
    dec = decoder
    try:
        st = os.stat(path)
        fp = fingerprint(path)
        info = info or probe(path)  # the planning step has usually read the header already
        if dec is None:
            dec = FramePrefetch(path, encoder.prep, fps, batch_size, shots=shots, ocr=ocr).start()
        chunks: list[np.ndarray] = []
        while True:
            item = dec.get()
            if item is END:
                break
            if isinstance(item, DecoderLost):  # a decoding process died: decode here, from the start
                dec.close()
                dec = FramePrefetch(path, encoder.prep, fps, batch_size, shots=shots, ocr=ocr).start()
                chunks = []
                continue
            if isinstance(item, BaseException):
                raise item
            batch_t, ts, n = item
            t0 = time.perf_counter()
            chunks.append(encoder.encode_batch(batch_t))
            dec.tm.embed += time.perf_counter() - t0
            progress(Progress("frames", path=path, done=ts, frames=n))
            crashpoints.pause("embed.batch")
    finally:
        if dec is not None:
            dec.close()
    stats, tm, times, owner = dec.stats, dec.tm, dec.times, dec.owner
    # each sample in the shot it lies in (TransNetV2's boundaries are known only now)
    starts = [s.start_s for s in stats.shots]
    shot_of = [max(0, bisect.bisect_right(starts, t) - 1) for t in times]
    embedded = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), np.float32)
    vectors = embedded[np.asarray(owner, np.int64)] if owner else np.zeros((0, encoder.dim), np.float32)
    vectors = stored_precision(vectors)
    tm.frames = len(times)
    if times_out is not None:
        times_out.add(tm)
    duration = max(stats.duration_s, times[-1] if times else 0.0)
    ends = times[1:] + [duration]
    problems = list(stats.notes)
    if stats.error:
        problems.insert(0, stats.error)
    problem = None
    if problems:
        problem = f"partly decoded: kept {len(times)} frames up to {duration:.2f} s; " + "; ".join(problems)
    ocr_lines = ocr_note = None
    if dec.track is not None:
        if dec.ocr_error is None:
            ocr_lines = dec.track.lines(times, ends)
        else:
            ocr_note = dec.ocr_error
    heard, speech_note = speech() if speech is not None else (None, None)
    bg_lse = bg_key = None
    if background is not None:
        bg_vecs, bg_key = background
        bg_lse = background_lse(vectors @ bg_vecs.T)
    return VideoRecord(
        path=path,
        size_bytes=st.st_size,
        mtime=st.st_mtime,
        fingerprint=fp,
        duration_s=duration,
        fps=info.fps,
        width=info.height if stats.rotation % 180 else info.width,  # as displayed
        height=info.width if stats.rotation % 180 else info.height,
        codec=info.codec,
        sample_fps=fps,
        decoded_frames=stats.decoded_frames,
        frames=[FrameRecord(t, e, s) for t, e, s in zip(times, ends, shot_of)],
        vectors=vectors,
        note=problem,
        shots=[
            ShotRecord(s.start_s, s.end_s, s.kind, s.transition, s.trans_start_s, s.trans_end_s) for s in stats.shots
        ],
        shot_detector=dec.shots,
        thumbs=dec.thumbs,
        bg_lse=bg_lse,
        bg_key=bg_key,
        ocr=ocr_lines,
        ocr_note=ocr_note,
        speech=heard,
        speech_note=speech_note,
    )
