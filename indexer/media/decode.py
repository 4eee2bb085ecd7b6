"""Decode a video and sample frames by presentation time (the container's timestamps).

Times are in seconds from the stream's start. Frames are never timed as ``index / fps``: a
23.976, 25, 29.97 or variable-rate file all give the frame on screen at each sampling instant.
"""

from __future__ import annotations

import heapq
import math
import stat
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from indexer.device import native_bf16
from indexer.errors import VideoOpenError

from .imageprep import content_box, output_size
from .shots import THUMB_H, THUMB_W, ShotDetector, ShotSpan, merge_transitions
from .transnet import TransitionStream, transitions

# Consecutive undecodable packets after which a file is given up as broken.
MAX_CONSECUTIVE_BAD_PACKETS = 200
# Frames held back to put decoder output in presentation order (AVI with packed B-frames
# labels frames with shuffled pts; sorting within this window repairs it).
REORDER_WINDOW = 8


@dataclass
class VideoInfo:
    """What the container says about a video, before decoding it."""

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str


@dataclass
class SampledFrame:
    """One sampled frame: its presentation time and its pixels (RGB, uint8, HxWx3)."""

    ts_s: float
    rgb: np.ndarray
    shot: int = 0  # index of its shot in DecodeStats.shots
    thumb: np.ndarray | None = None  # the 48x27 thumbnail shot detection saw
    source: Any = None  # the decoded frame, to convert at another size (:meth:`at`) before the next one
    turn: int = 0  # quarter turns counter-clockwise for display
    bars: bool = False  # letterbox/pillarbox bars were cut off ``rgb`` (:mod:`indexer.media.imageprep`)

    def at(self, short_side: int) -> np.ndarray:
        """The frame as displayed with its shorter side ``short_side`` pixels (never enlarged);
        valid until the iterator moves on."""
        if self.source is None:
            return self.rgb
        w, h = self.source.width, self.source.height
        ow, oh = output_size(w, h, min(short_side, min(w, h)))
        rgb = self.source.to_ndarray(format="rgb24", width=ow, height=oh)
        return np.ascontiguousarray(np.rot90(rgb, k=self.turn)) if self.turn else rgb


@dataclass
class DecodeStats:
    """Filled in while :func:`sample_frames` runs; final once the iterator is exhausted."""

    decoded_frames: int = 0
    sampled_frames: int = 0
    last_ts_s: float = 0.0
    frame_duration_s: float = 0.0
    bad_packets: int = 0
    corrupt_frames: int = 0  # frames the decoder flagged as damaged (concealed errors)
    header_frames: int = 0  # frame count the container announces (0: not stated)
    rotation: int = 0  # degrees counter-clockwise the frames are turned for display (phone videos)
    error: str | None = None  # set when decoding stopped early: the frames before it are kept
    notes: list[str] = field(default_factory=list)
    shots: list[ShotSpan] = field(default_factory=list)  # complete once decoding has ended
    transnet_windows: tuple[int, int] = (0, 0)  # TransNetV2 windows run, of all windows
    flash_samples_dropped: int = 0  # samples not kept: they showed a flash (see ShotDetector)

    @property
    def duration_s(self) -> float:
        """Seconds from the start to the end of the last decoded frame."""
        return self.last_ts_s + self.frame_duration_s if self.decoded_frames else 0.0


def _open(path: str | Path) -> tuple[Any, Any]:
    import av  # lazy: PyAV loads the FFmpeg libraries; only decoding needs them

    p = Path(path)
    if p.is_dir():
        raise VideoOpenError(f"{path}: is a directory, not a video file")
    try:
        st = p.stat()
    except OSError as exc:
        raise VideoOpenError(f"{path}: cannot read ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise VideoOpenError(f"{path}: not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise VideoOpenError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(p), mode="r", timeout=30)
    except FileNotFoundError as exc:
        raise VideoOpenError(f"{path}: file not found") from exc
    except PermissionError as exc:
        raise VideoOpenError(f"{path}: permission denied") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoOpenError(f"{path}: not a readable video ({_reason(exc)})") from exc
    if not container.streams.video:
        audio = bool(container.streams.audio)
        container.close()
        if audio:
            raise VideoOpenError(
                f"{path}: no video stream, an audio-only file (sound, no pictures): the archive indexes videos, "
                "so it is skipped (a folder's audio files are not picked up at all)"
            )
        raise VideoOpenError(f"{path}: holds no video stream (not a video file)")
    return container, container.streams.video[0]


def _fps(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0.1 < value < 1000:
                return value
    return 0.0


def probe(path: str | Path) -> VideoInfo:
    """Read a video's header: duration, frame rate, size, codec.

    Raises:
        VideoOpenError: missing, unreadable, not a video, or without a video stream.
    """
    container, stream = _open(path)
    try:
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        cc = stream.codec_context
        return VideoInfo(
            path=str(path),
            duration_s=max(duration, 0.0),
            fps=_fps(stream),
            width=int(cc.width or 0),
            height=int(cc.height or 0),
            codec=str(cc.name or "?"),
        )
    finally:
        container.close()


_PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}


def thumbnail(frame: Any) -> np.ndarray:
    """The frame as a ``THUMB_H x THUMB_W`` RGB thumbnail for shot detection.

    Every decoded frame needs one, so it is made cheaply: for 8-bit planar YUV (nearly all
    video) each plane is point-sampled down to about 4x the thumbnail, area-averaged to it, and
    converted with the BT.601 matrix, as swscale does by default (0.3 ms for a 720p frame here,
    against 1.4 ms through swscale at full size). Other formats go through swscale.
    """
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    if frame.format.name not in _PLANAR_YUV or frame.width < 4 * THUMB_W or frame.height < 4 * THUMB_H:
        return frame.to_ndarray(format="rgb24", width=THUMB_W, height=THUMB_H)
    yuv = []
    for plane in frame.planes[:3]:
        a = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        step = max(1, min(plane.height // (4 * THUMB_H), plane.width // (4 * THUMB_W)))
        small = np.ascontiguousarray(a[::step, ::step])
        yuv.append(cv2.resize(small, (THUMB_W, THUMB_H), interpolation=cv2.INTER_AREA).astype(np.float32))
    y, u, v = yuv[0], yuv[1] - 128.0, yuv[2] - 128.0
    if not frame.format.name.startswith("yuvj") and int(getattr(frame, "color_range", 0) or 0) != 2:
        y, u, v = (y - 16.0) * (255.0 / 219.0), u * (255.0 / 224.0), v * (255.0 / 224.0)  # limited range
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def sample_frames(
    path: str | Path,
    fps: float,
    short_side: int | None = None,
    stats: DecodeStats | None = None,
    threads: int = 0,
    shots: str = "fast",
) -> Iterator[SampledFrame]:
    """Yield the frame on screen at every ``1/fps`` seconds of video time, and the first frame
    of every shot.

    A frame is taken when it is the first one at or after a sampling instant ``k / fps``; a
    frame held across several instants (variable frame rate, held stills) is taken once. Every
    decoded frame also goes through shot detection (:mod:`indexer.media.shots`), and the first frame of
    each shot is always taken, so no shot goes unsampled and sample intervals end on cuts.

    Args:
        path: the video file.
        fps: samples per second of video time (e.g. ``2.0``).
        short_side: convert sampled frames so their shorter side has this many pixels.
        stats: filled in as decoding goes: decoded frames, duration, partial-decode errors.
        threads: decoder threads (0: FFmpeg's choice, about one per core).
        shots: ``fast`` (:mod:`indexer.media.shots` alone) or ``transnet`` (plus TransNetV2 for
            dissolves, fades and missed cuts, :mod:`indexer.media.transnet`). With ``transnet`` the
            final shots (``stats.shots``) are known only once decoding ends: a sample's ``shot``
            is then the fast detector's, and callers place samples in shots by time.

    Raises:
        VideoOpenError: the file cannot be opened, or not one frame decodes.
    """
    import av  # lazy: PyAV loads the FFmpeg libraries; only decoding needs them

    if fps <= 0:
        raise ValueError("fps must be > 0")
    stats = stats if stats is not None else DecodeStats()
    container, stream = _open(path)
    detector = ShotDetector()
    stats.shots = detector.shots
    stream_tn = None
    times: list[float] = []
    black: list[bool] = []
    if shots == "transnet":
        stream_tn = TransitionStream(bf16=native_bf16("cpu"))
    try:
        if threads > 0:
            stream.thread_count = threads
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1000)
        native_fps = _fps(stream)
        stats.frame_duration_s = 1.0 / native_fps if native_fps else 0.0
        origin: float | None = float(stream.start_time * time_base) if stream.start_time is not None else None
        size = output_size(stream.codec_context.width, stream.codec_context.height, short_side)
        next_k = 0
        eps = 1e-6
        stats.header_frames = int(stream.frames or 0)
        # Samples taken from a boundary that may still turn out to be a flash (the picture comes
        # back within a few frames: ShotDetector undoes the boundary) wait here until it is known:
        # a flash's frames are washed-out pictures of the shot they interrupt, never samples.
        held: list[SampledFrame] = []
        for ts, frame in _frames_in_presentation_order(container, stream, time_base, native_fps, stats, av):
            if origin is None:
                origin = ts
            t = max(ts - origin, 0.0)
            stats.last_ts_s = max(stats.last_ts_s, t)
            stats.decoded_frames += 1
            if getattr(frame, "is_corrupt", False):
                stats.corrupt_frames += 1
            thumb = thumbnail(frame)
            flashes = detector.flashes
            new_shot = detector.push(t, thumb)
            if detector.flashes != flashes:
                stats.flash_samples_dropped += len(held)
                held.clear()
            elif held and not detector.may_be_flash:
                stats.sampled_frames += len(held)
                yield from held
                held.clear()
            if stream_tn is not None:
                stream_tn.push(thumb)
                times.append(t)
                black.append(detector.last_kind == "black")
            k = math.floor((t + eps) * fps)
            if k < next_k and not new_shot:
                continue
            next_k = max(next_k, k + 1)
            w, h = size if size[0] and size[1] else (frame.width, frame.height)
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
            box = content_box(rgb)
            if box is not None:  # letterbox/pillarbox bars: the picture alone, at the size asked for
                rgb = _picture(frame, box, (w, h), short_side)
            turn = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
            if turn:  # display orientation, as players show it
                stats.rotation = turn * 90
                rgb = np.ascontiguousarray(np.rot90(rgb, k=turn))
            sample = SampledFrame(
                ts_s=t,
                rgb=rgb,
                shot=len(detector.shots) - 1,
                thumb=thumb,
                source=frame,
                turn=turn,
                bars=box is not None,
            )
            if detector.may_be_flash:
                held.append(sample)
                continue
            stats.sampled_frames += 1
            yield sample
        stats.sampled_frames += len(held)
        yield from held  # a boundary in the video's last frames: no flash came back
    finally:
        container.close()
        _judge(stats)
        detector.close(stats.duration_s)
        if stream_tn is not None and times:
            single, many = stream_tn.close()
            found = transitions(single, many, np.asarray(black, bool))
            stats.shots = merge_transitions(detector.shots, times, found, stats.duration_s)
            stats.transnet_windows = (stream_tn.windows_run, stream_tn.windows)
    if stats.decoded_frames == 0:
        raise VideoOpenError(f"{path}: no frame could be decoded ({stats.error or 'empty video stream'})")


def _picture(frame: Any, box: tuple[int, int, int, int], size: tuple[int, int], short_side: int | None) -> np.ndarray:
    """The picture inside the bars ``box`` (found on the frame converted to ``size``), converted
    again so that the picture itself has the shorter side ``short_side``, as it would have without
    bars (see :mod:`indexer.media.imageprep`)."""
    x, y, bw, bh = box
    k = frame.width / size[0]  # source pixels per converted pixel
    s = short_side / (min(bw, bh) * k) if short_side else 1.0 / k
    fw, fh = max(1, round(frame.width * s)), max(1, round(frame.height * s))
    full = frame.to_ndarray(format="rgb24", width=fw, height=fh)
    r = fw / size[0]
    x0, y0 = round(x * r), round(y * r)  # the bars are symmetric: the picture is centred
    w0, h0 = fw - 2 * x0, fh - 2 * y0
    if short_side and min(w0, h0) != short_side:  # rounding: make the short side exact
        if w0 <= h0 and fw >= short_side:
            x0, w0 = (fw - short_side) // 2, short_side
        elif h0 < w0 and fh >= short_side:
            y0, h0 = (fh - short_side) // 2, short_side
    return np.ascontiguousarray(full[y0 : y0 + h0, x0 : x0 + w0])


def _judge(stats: DecodeStats) -> None:
    """Add notes for damage the decoder concealed: flagged frames, frames missing against the header."""
    if stats.corrupt_frames:
        stats.notes.append(f"{stats.corrupt_frames} frame(s) decoded with errors")
    # Frames can be fewer than announced without loss (AVI drops repeated frames), so it is the
    # timeline falling short of the announced length that says the file ends early.
    announced_s = stats.header_frames * stats.frame_duration_s
    if announced_s and stats.duration_s < 0.95 * announced_s - stats.frame_duration_s:
        stats.notes.append(
            f"decoding ends at {stats.duration_s:.2f} s of the {announced_s:.2f} s the header announces "
            "(truncated or damaged file)"
        )


def _frames_in_presentation_order(
    container: Any, stream: Any, time_base: Fraction, native_fps: float, stats: DecodeStats, av: Any
) -> Iterator[tuple[float, Any]]:
    """Decode every frame; yield ``(pts seconds, frame)`` with monotonic times.

    Decoders output frames in display order, but some containers (AVI with packed B-frames)
    label them with shuffled pts. The times seen within a small window are sorted and handed
    out in order, which is a no-op for well-formed files.
    """
    pending: deque[Any] = deque()
    times: list[float] = []
    last = -math.inf
    step = 1.0 / native_fps if native_fps else 0.04

    pushed = -math.inf  # the latest time handed to the reorder window
    offset = 0.0  # added after a timestamp reset (concatenated streams), so time keeps going

    def stamp(frame: Any) -> float:
        nonlocal pushed, offset
        if frame.pts is None:  # raw elementary streams carry no pts: count frames
            t = pushed + step if pushed > -math.inf else 0.0
        else:
            t = float(frame.pts * time_base) + offset
            if pushed > -math.inf and t < pushed - 1.0:  # a reset, not B-frame reordering
                offset += pushed + step - t
                t = pushed + step
                if "timestamps restart" not in " ".join(stats.notes):
                    stats.notes.append("timestamps restart mid-file (joined streams?): times continue from the reset")
        pushed = max(pushed, t)
        return t

    def release() -> tuple[float, Any]:
        nonlocal last
        t = heapq.heappop(times)
        t = max(t, last + 1e-9) if last > -math.inf else t
        last = t
        return t, pending.popleft()

    bad_run = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                stats.bad_packets += 1
                bad_run += 1
                if bad_run >= MAX_CONSECUTIVE_BAD_PACKETS:
                    stats.error = f"gave up after {bad_run} undecodable packets in a row ({_reason(exc)})"
                    break
                continue
            bad_run = 0
            for frame in frames:
                heapq.heappush(times, stamp(frame))
                pending.append(frame)
                if len(pending) > REORDER_WINDOW:
                    yield release()
    except av.error.FFmpegError as exc:  # demuxer failure: a truncated or damaged container
        stats.error = f"stopped reading at a damaged part ({_reason(exc)})"
    while pending:
        yield release()
    if stats.bad_packets and not stats.error:
        stats.notes.append(f"{stats.bad_packets} undecodable packet(s) skipped")


def _reason(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    if strerror:
        return str(strerror)[:200]
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
