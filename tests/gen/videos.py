"""Generate real video files with known truth: frame rate, duration, and cut times."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

RATES = {
    "23.976": Fraction(24000, 1001),
    "25": Fraction(25),
    "29.97": Fraction(30000, 1001),
    "30": Fraction(30),
    "60": Fraction(60),
}


@dataclass
class Shot:
    """A shot of ``frames`` frames showing pattern ``look`` (0: black), optionally fading in from
    and out to black over ``fade_in`` / ``fade_out`` frames."""

    look: int
    frames: int
    fade_in: int = 0
    fade_out: int = 0


@dataclass
class Truth:
    path: Path
    rate: Fraction
    n_frames: int
    shots: list[tuple[int, float, float]]  # (look, start_s, end_s) from native frame times

    @property
    def duration_s(self) -> float:
        return self.n_frames / float(self.rate)

    def spans(self, look: int) -> list[tuple[float, float]]:
        return [(a, b) for lk, a, b in self.shots if lk == look]


def pattern(look: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A distinct picture per ``look``: coloured blocks, stripes and a disc, seeded by ``look``.
    Look 0 is black."""
    if look == 0:
        return np.zeros((height, width, 3), np.uint8)
    rng = np.random.default_rng(1000 + look)
    gy, gx = rng.integers(3, 8, size=2)
    blocks = rng.integers(0, 256, size=(gy, gx, 3), dtype=np.uint8)
    img = np.kron(blocks, np.ones((height // gy + 1, width // gx + 1, 1), np.uint8))[:height, :width].copy()
    yy, xx = np.mgrid[0:height, 0:width]
    period = int(rng.integers(8, 40))
    angle = rng.uniform(0, np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0
    img[stripes] = (img[stripes].astype(np.int16) * rng.uniform(0.3, 0.8)).astype(np.uint8)
    cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(20, 80)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return img


def make_video(
    path: str | Path,
    shots: Sequence[Shot],
    rate: Fraction | str = "25",
    codec: str = "libx264",
    size: tuple[int, int] = (320, 240),
) -> Truth:
    """Write a real video (H.264 MP4 by default; ``mpeg4`` for MPEG-4 part 2) of the given shots.

    Frame ``i`` has pts ``i / rate`` exactly, so shot boundaries are known to the frame.
    """
    import av

    rate = RATES[rate] if isinstance(rate, str) else rate
    path = Path(path)
    w, h = size
    looks = {s.look: pattern(s.look, w, h) for s in shots}
    truth: list[tuple[int, float, float]] = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        i = 0
        for s in shots:
            start = i
            img = looks[s.look]
            for k in range(s.frames):
                # a small moving marker, so frames within a shot are not byte-identical
                frame_img = img.copy()
                if s.look:
                    x = (k * 3) % (w - 8)
                    frame_img[4:12, x : x + 8] = 255
                gain = 1.0
                if s.fade_in and k < s.fade_in:
                    gain = k / s.fade_in
                if s.fade_out and k >= s.frames - s.fade_out:
                    gain = min(gain, (s.frames - 1 - k) / s.fade_out)
                if gain < 1.0:
                    frame_img = (frame_img.astype(np.float32) * gain).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(frame_img, format="rgb24")
                frame.pts = i
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                i += 1
            truth.append((s.look, start / float(rate), i / float(rate)))
        for packet in stream.encode():
            container.mux(packet)
    return Truth(path=path, rate=rate, n_frames=i, shots=truth)


def seconds_to_frames(seconds: float, rate: Fraction | str) -> int:
    rate = RATES[rate] if isinstance(rate, str) else rate
    return int(round(seconds * float(rate)))


def ad_shots(rate: Fraction | str) -> list[Shot]:
    """An ad-like sequence with known truth: a 0.4 s shot, a fade to and from black, a shot
    that comes back."""

    def f(s):
        return seconds_to_frames(s, rate)

    return [
        Shot(1, f(2.0)),  # A  0.0 - 2.0
        Shot(2, f(0.4)),  # B  a 0.4 s shot
        Shot(3, f(1.6), fade_out=f(0.4)),  # C  fades to black
        Shot(0, f(0.6)),  # black
        Shot(4, f(1.6), fade_in=f(0.4)),  # D  fades in from black
        Shot(2, f(0.52)),  # B comes back
        Shot(5, f(1.2)),  # E
    ]


def frame_at(truth: Truth, look: int, index_in_shot: int = 2) -> Path:
    """The decoded frame `index_in_shot` frames into the first shot of `look`, as a PNG path."""
    import av

    start_frame = round(truth.spans(look)[0][0] * float(truth.rate))
    with av.open(str(truth.path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i == start_frame + index_in_shot:
                dest = truth.path.with_suffix(f".look{look}.png")
                fr.to_image().save(dest)
                return dest
    raise AssertionError
