"""Image preparation: a frame or picture made ready for the image tower, on numpy alone.

Letterbox and pillarbox bars are found in each sampled frame and cut off before it is embedded
(:func:`content_box`, :func:`crop_bars`); pictures are scaled the way the decoder scales video frames
(:func:`scale_like_frames`); :class:`ImagePrep` turns a frame into the model's input.


A 16:9 film shown letterboxed in a 4:3 frame (or a 4:3 film pillarboxed in 16:9) is the same
footage, but the model sees another picture: bars, and another part of the picture inside its
square centre crop. Cutting the bars off first makes both embed alike, so versions of one film
are matched (:mod:`search.versions`) and a query finds both.

The rule is symmetric, so it cannot eat into a picture that is merely dark at one edge: rows (or
columns) count as a bar when they are dark (mean grey at most ``DARK_MEAN`` and 95th percentile at
most ``DARK_P95``, 0-255); the same number of them, the fewer of the two sides', is cut from both
sides, when that is at least ``MIN_BAR`` of the side and leaves at least ``MIN_LEFT`` of it. A
picture that is dark at both edges loses the same rows in every version of it, so versions still
agree. A black frame is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DARK_MEAN = 24.0
DARK_P95 = 48.0
MIN_BAR = 0.02  # bars thinner than 2% of the side are left (encoders pad a few rows)
MIN_LEFT = 0.4  # cut only when at least 40% of the side is left


def _dark_run(lines: np.ndarray) -> tuple[int, int]:
    """Dark lines at the start and at the end of ``lines`` (each row is one line's pixels, as the
    sum of the three channels: grey times 3, exact in integers)."""
    k = int(0.95 * (lines.shape[1] - 1))
    p95 = np.partition(lines, k, axis=1)[:, k]
    total = lines.sum(axis=1, dtype=np.int64 if lines.dtype.kind == "u" else np.float64)
    dark = (total <= 3 * DARK_MEAN * lines.shape[1]) & (p95 <= 3 * DARK_P95)
    n = len(dark)
    lead = n if dark.all() else int(np.argmin(dark))
    trail = n if dark.all() else int(np.argmin(dark[::-1]))
    return lead, trail


def _grey3(rgb: np.ndarray) -> np.ndarray:
    """Grey x 3 per pixel: the three channels added, exact in integers for 8-bit RGB (other
    arrays, such as RGBA or float pictures, the mean of all their channels x 3 in float32, as
    before)."""
    if rgb.dtype != np.uint8 or rgb.shape[2] != 3:
        return rgb.astype(np.float32).mean(axis=2) * np.float32(3)
    out = rgb[..., 0].astype(np.uint16)
    out += rgb[..., 1]
    out += rgb[..., 2]
    return out


def content_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the picture inside letterbox/pillarbox bars, in ``rgb``'s pixels;
    None when there are no bars to cut (see the module docstring)."""
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 16:
        return None
    h, w = rgb.shape[:2]
    step = max(1, min(h, w) // 256)  # a few hundred pixels per line are enough
    # grey x 3 per pixel, the channels added in integers (a float mean over the channel axis took
    # 3-4 ms for every sample of a 720p video): rows see every step-th pixel of each line, columns
    # every step-th pixel of each column
    rows = _grey3(rgb[:, ::step])
    cols = (rows if step == 1 else _grey3(rgb[::step, :])).T
    top, bottom = _dark_run(rows)
    if top >= h:  # a black frame
        return None
    left, right = _dark_run(cols)
    y = min(top, bottom)
    x = min(left, right)
    cut_y = y >= MIN_BAR * h and h - 2 * y >= MIN_LEFT * h
    cut_x = x >= MIN_BAR * w and w - 2 * x >= MIN_LEFT * w
    if not cut_y and not cut_x:
        return None
    y, x = (y if cut_y else 0), (x if cut_x else 0)
    return x, y, w - 2 * x, h - 2 * y


def crop_bars(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` without its letterbox/pillarbox bars (the same array when it has none)."""
    box = content_box(rgb)
    if box is None:
        return rgb
    x, y, w, h = box
    return np.ascontiguousarray(rgb[y : y + h, x : x + w])


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """The size to convert frames to: shorter side ``short_side``, aspect kept (None: as is)."""
    if not short_side or not width or not height:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_like_frames(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """Scale an RGB image the way :func:`sample_frames` scales video frames (swscale), its
    letterbox/pillarbox bars cut off first (:mod:`indexer.media.imageprep`)."""
    import av  # lazy: PyAV loads the FFmpeg libraries; only decoding needs them

    box = content_box(rgb)
    if box is not None:
        x, y, bw, bh = box
        rgb = rgb[y : y + bh, x : x + bw]
    h, w = rgb.shape[:2]
    ow, oh = output_size(w, h, short_side)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:, :, :3]), format="rgb24")
    return frame.to_ndarray(format="rgb24", width=ow, height=oh)


class ImagePrep:
    """Frames to the image tower's input, on numpy alone (so decoding threads need no torch):
    an HxWx3 uint8 RGB frame -> a ``(3, size, size)`` float32 array.

    A frame whose short side is already ``size`` (the decoder scales frames so) is centre-cropped
    and normalised with ``mean``/``std`` directly. Other frames go through ``fallback`` (open_clip's
    own PIL pipeline) when there is one, else are first scaled by the decoder's own scaler."""

    def __init__(self, size: int, mean: Any, std: Any, fallback: Any = None) -> None:
        self.image_size = int(size)
        self.mean = None if mean is None else np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = None if std is None else np.asarray(std, np.float32).reshape(3, 1, 1)
        self.fallback = fallback

    def same_input(self, other: "ImagePrep | None") -> bool:
        """Whether decoded frames come out of both the same (size, mean and std)."""
        return (
            other is not None
            and self.image_size == other.image_size
            and self.mean is not None
            and other.mean is not None
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.std, other.std)
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = self.image_size
        if self.mean is None or min(h, w) != s or rgb.ndim != 3 or rgb.shape[2] != 3:
            if self.fallback is not None:
                return self.fallback(rgb)

            rgb = scale_like_frames(rgb, s)
            h, w = rgb.shape[:2]
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        x = np.ascontiguousarray(rgb[top : top + s, left : left + s]).transpose(2, 0, 1).astype(np.float32)
        x /= np.float32(255.0)
        x -= self.mean
        x /= self.std
        return x
