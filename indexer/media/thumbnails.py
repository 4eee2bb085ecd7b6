"""Thumbnails: each sampled frame as a small JPEG for the search page, made at index time
(videos indexed before thumbnails existed get theirs from :mod:`indexer.run.backfill`)."""

from __future__ import annotations

import numpy as np

THUMB_LONG_SIDE = 256  # 256x144 for 16:9, about 6-9 KB each (docs: the store on disk)
THUMB_QUALITY = 80


def jpeg_thumbnail(rgb: np.ndarray, long_side: int = THUMB_LONG_SIDE, quality: int = THUMB_QUALITY) -> bytes:
    """A sampled frame (RGB, upright) as a small JPEG for the search page."""
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
