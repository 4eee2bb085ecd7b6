"""Thumbnails: each sampled frame as a small JPEG for the search page, made at index time, and
added later to videos indexed before thumbnails existed."""

from __future__ import annotations

import numpy as np

from .decode import sample_frames
from .errors import VideoOpenError
from .report import Progress, ProgressFn, no_progress
from .store import Writer, thumbs_todo

THUMB_LONG_SIDE = 256  # 256x144 for 16:9, about 6-9 KB each (README: Thumbnails)
THUMB_QUALITY = 80


def jpeg_thumbnail(rgb: np.ndarray, long_side: int = THUMB_LONG_SIDE, quality: int = THUMB_QUALITY) -> bytes:
    """A sampled frame (RGB, upright) as a small JPEG for the search page."""
    import cv2  # noqa: PLC0415

    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def add_thumbnails(writer: Writer, path: str, progress: ProgressFn = no_progress) -> int:
    """Give an indexed, unchanged video's frames their thumbnails (for stores indexed before
    thumbnails existed). The video is decoded again, but nothing is embedded and its frames keep
    their ids, vectors and times. Returns how many frames got one.

    Samples are matched by time: the sampling is the same as at index time, so nearly all match;
    a frame with no decoded match keeps no thumbnail (the page shows none for it).
    """
    todo = thumbs_todo(writer.dir, path)
    if not todo:
        return 0
    want: dict[float, list[int]] = {}
    for t in todo:
        want.setdefault(round(t.ts_s, 4), []).append(t.frame_id)
    progress(Progress("thumbs", path=path, frames=len(todo)))
    ids: list[int] = []
    jpegs: list[bytes] = []
    try:
        for frame in sample_frames(path, todo[0].sample_fps, short_side=THUMB_LONG_SIDE):
            fids = want.pop(round(frame.ts_s, 4), None)
            if fids:
                jpeg = jpeg_thumbnail(frame.rgb)
                ids.extend(fids)
                jpegs.extend([jpeg] * len(fids))
    except (VideoOpenError, OSError):
        pass  # unreadable now: its frames stay without pictures; everything else is unchanged
    # frames with no match are marked as tried (no picture, thumb_bytes = 0), so later runs do not
    # decode the video again for them
    tried = [fid for fids in want.values() for fid in fids]
    writer.set_thumbnails(ids + tried, jpegs + [b""] * len(tried))
    return len(ids)
