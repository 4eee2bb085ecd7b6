"""Decoding ahead of the model: one video is decoded, sampled, thumbnailed and preprocessed in a
background thread, one or two batches ahead of the model, so decoder and model overlap. The thread
needs numpy only (:class:`~indexer.model.encoder.ImagePrep`), so the first videos can start decoding
while the model is still loading.

A :class:`FramePrefetch` started early (while the previous video's last batches are embedded)
keeps the decoder busy across video boundaries; :func:`decoder_plan` says how many run at once.
The videos an index run starts while its model is still loading decode in child processes
instead (:mod:`indexer.media.decode_child`, same batches), out of the way of the import's GIL.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable

import numpy as np

from indexer import settings

from .decode import DecodeStats, sample_frames
from .imageprep import ImagePrep
from .near_duplicates import same_picture
from .ocr import OcrEngine, OcrTrack
from .thumbnails import jpeg_thumbnail
from .timing import StageTimes

END = object()  # put on the queue after the last batch
EARLY_BATCH = 8  # a model waiting for frames gets a batch of this many (or more) at once


class FramePrefetch:
    """Decode, sample and preprocess one video in a background thread.

    The consumer reads ``q``: ``(batch array, ts_s of its last sample, samples so far)`` items,
    then :data:`END`, or the exception that stopped decoding. Per sample the thread records its
    time (``times``), shot (``shot_of``), the embedded vector it uses (``owner``: a near-duplicate
    sample points at the previous one's) and its JPEG thumbnail (``thumbs``); with ``ocr``, the
    on-screen text of the samples it reads goes into ``track``.
    """

    def __init__(
        self,
        path: str,
        prep: ImagePrep,
        fps: float,
        batch_size: int,
        threads: int = 0,
        shots: str = "fast",
        ocr: OcrEngine | None = None,
    ) -> None:
        self.path, self.prep, self.fps, self.batch_size = path, prep, fps, batch_size
        self.shots = shots
        self.ocr = ocr  # reads on-screen text of the samples its track picks (indexer.media.ocr)
        self.track: OcrTrack | None = OcrTrack() if ocr is not None else None
        self.ocr_error: str | None = None  # why this video's text could not be read
        self.threads = threads
        self.stats = DecodeStats()
        self.tm = StageTimes()
        self.times: list[float] = []
        self.shot_of: list[int] = []
        self.owner: list[int] = []  # per sample: index into the embedded vectors
        self.thumbs: list[bytes] = []  # per sample: its JPEG thumbnail
        self.q: "queue.Queue[Any]" = queue.Queue(maxsize=2)
        # set by a consumer that found the queue empty: the model is idle, so the batch on its way
        # goes as soon as it holds EARLY_BATCH samples (the model then overlaps the decoding of the
        # rest; a model kept busy gets full batches, and per-frame cost hardly depends on the size)
        self.hungry = threading.Event()
        self.on_done: Callable[[], None] | None = None  # called in the thread when decoding ends
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="decode", daemon=True)

    def start(self, on_done: Callable[[], None] | None = None) -> "FramePrefetch":
        self.on_done = on_done
        self.thread.start()
        return self

    def _produce(self) -> None:
        batch: list[np.ndarray] = []
        prev_thumb: np.ndarray | None = None
        prev_shot = -1
        n_embedded = 0
        tm, times = self.tm, self.times
        try:
            t0 = time.perf_counter()
            for frame in sample_frames(
                self.path,
                self.fps,
                short_side=self.prep.image_size,
                stats=self.stats,
                threads=self.threads,
                shots=self.shots,
            ):
                t1 = time.perf_counter()
                tm.decode += t1 - t0
                times.append(frame.ts_s)
                self.shot_of.append(frame.shot)
                self.thumbs.append(jpeg_thumbnail(frame.rgb))
                thumb = frame.thumb.astype(np.int16) if frame.thumb is not None else None
                if same_picture(thumb, prev_thumb, frame.shot, prev_shot):
                    self.owner.append(n_embedded - 1)
                    tm.reused += 1
                else:
                    batch.append(self.prep(frame.rgb))
                    self.owner.append(n_embedded)
                    n_embedded += 1
                    prev_thumb = thumb
                prev_shot = frame.shot
                t0 = time.perf_counter()
                tm.preprocess += t0 - t1
                if self.track is not None and self.ocr_error is None:
                    self._read_text(frame)
                    t2 = time.perf_counter()
                    tm.ocr += t2 - t0
                    t0 = t2
                if len(batch) >= self.batch_size or (len(batch) >= EARLY_BATCH and self.hungry.is_set()):
                    self.hungry.clear()
                    self.q.put((np.stack(batch), frame.ts_s, len(times)))
                    batch = []
                if self.stop.is_set():
                    return
            if batch:
                self.q.put((np.stack(batch), times[-1], len(times)))
            self.q.put(END)
        except BaseException as exc:  # handed to the consumer, raised there
            self.q.put(exc)
        finally:
            if self.on_done is not None and not self.stop.is_set():
                self.on_done()

    def _read_text(self, frame: Any) -> None:
        """Read the sample's on-screen text when its track asks for it; a failure drops this video's
        text (its note says why) and nothing else."""
        assert self.track is not None and self.ocr is not None
        try:
            wanted = self.track.wants(frame.ts_s, frame.shot, frame.rgb)
            self.track.add(self.ocr.read(frame.at(self.ocr.side)) if wanted else None)
            self.tm.ocr_frames += wanted
        except Exception as exc:  # onnxruntime raises its own types
            self.ocr_error = f"on-screen text not read: {type(exc).__name__}: {str(exc)[:200]}"

    def get(self) -> Any:
        """The next queue item (a batch, :data:`END` or an exception), saying it is awaited when none is ready."""
        if self.q.empty():
            self.hungry.set()
        return self.q.get()

    def close(self) -> None:
        """Stop the thread (after the last batch, or on an error) and wait for it."""
        self.stop.set()
        join_draining(self.thread, self.q)


def join_draining(thread: threading.Thread, q: "queue.Queue[Any]") -> None:
    """Wait for ``thread``, emptying ``q`` meanwhile (it may be blocked putting into a full queue)."""
    while thread.is_alive():
        try:
            q.get_nowait()
        except queue.Empty:
            pass
        thread.join(timeout=0.05)


def decoder_plan() -> tuple[int, int]:
    """(videos decoded at once, threads each). Two single-threaded decoders on two cores did
    more work per CPU-second than one decoder with two threads (FFmpeg's frame threading costs
    about 30% more CPU); env ARCHIVE_DECODERS sets how many run at once."""
    ahead = settings.decoders()
    return ahead, max(1, (os.cpu_count() or 2) // ahead)
