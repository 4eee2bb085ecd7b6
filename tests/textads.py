"""Ad-like test videos with written words on screen: real footage (the clips in ``tests/data``, cut
into shots as in :mod:`transitions`) with text overlays rendered at known shots, in Pillow's
built-in scalable font, in varied sizes, colours and positions, some on a plain band and some
straight on the moving picture. The truth is where each phrase is on screen (seconds).

H.264 MP4s at 25 fps written with PyAV; times come from frame indexes (frame ``i`` has pts ``i / 25``).
No pytest dependency: ``python tests/textads.py DIR`` writes the set the OCR benchmark uses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from transitions import _Shot, source_segments

SIZE = (640, 360)
RATE = 25


@dataclass(frozen=True)
class Overlay:
    """A phrase drawn on a shot from ``from_s`` into it (0: from the shot's first frame) to its end."""

    text: str
    px: int  # font size in pixels (the letters' height is about 0.7 of it)
    x: float  # left edge, 0-1 of the width
    y: float  # top edge, 0-1 of the height
    colour: tuple[int, int, int] = (255, 255, 255)
    band: tuple[int, int, int] | None = None  # a plain band behind it (None: on the picture itself)
    from_s: float = 0.0


@dataclass
class TextAd:
    path: Path
    n_frames: int
    shots: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s)
    shown: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # phrase -> spans

    @property
    def duration_s(self) -> float:
        return self.n_frames / RATE


def _draw(img: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    for o in overlays:
        font = ImageFont.load_default(size=o.px)
        x, y = round(o.x * img.shape[1]), round(o.y * img.shape[0])
        if o.band is not None:
            box = d.textbbox((x, y), o.text, font=font)
            d.rectangle((box[0] - 8, box[1] - 6, box[2] + 8, box[3] + 6), fill=o.band)
        d.text((x, y), o.text, font=font, fill=o.colour)
    return np.asarray(im)


def make_text_ads(folder: str | Path, plan: dict[str, Sequence[tuple[float, Sequence[Overlay]]]],
                  size: tuple[int, int] = SIZE, seed: int = 0) -> dict[str, TextAd]:
    """Write one H.264 MP4 per entry of ``plan`` (file name -> shots as ``(seconds, overlays)``),
    each shot a different stretch of real footage; return where each phrase is on screen."""
    import av  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    segments = [s for sid in (0, 1) for s in source_segments(sid)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, TextAd] = {}
    n_shot = 0
    for name, shots in plan.items():
        ad = TextAd(folder / name, 0)
        with av.open(str(ad.path), mode="w") as container:
            stream = container.add_stream("libx264", rate=RATE)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, RATE)
            stream.options = {"preset": "veryfast", "crf": "20"}
            i = 0
            for sec, overlays in shots:
                n = int(round(sec * RATE))
                look = _Shot(segments[n_shot % len(segments)], n, size, rng)
                n_shot += 1
                first = i
                for k in range(n):
                    img = np.clip(look.frame(k) + 0.5, 0, 255).astype(np.uint8)
                    img = _draw(img, [o for o in overlays if k >= round(o.from_s * RATE)])
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                    frame.pts = i
                    frame.time_base = Fraction(1, RATE)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    i += 1
                ad.shots.append((first / RATE, i / RATE))
                for o in overlays:
                    start = (first + round(o.from_s * RATE)) / RATE
                    spans = ad.shown.setdefault(o.text, [])
                    if spans and abs(spans[-1][1] - start) < 1e-9:
                        spans[-1] = (spans[-1][0], i / RATE)  # on screen across the cut
                    else:
                        spans.append((start, i / RATE))
            for packet in stream.encode():
                container.mux(packet)
        ad.n_frames = i
        out[name] = ad
    return out


WHITE, YELLOW, BLACK, RED, CYAN = (255, 255, 255), (255, 230, 0), (15, 15, 15), (220, 30, 30), (0, 220, 240)

# Phrases of 20 px and larger at 360p, with their place in three ads; the end card of ad 0 holds
# two lines, and one phrase is read as words of two adjacent lines.
PLAN: dict[str, list[tuple[float, list[Overlay]]]] = {
    "text_ad0.mp4": [
        (1.6, []),
        (2.0, [Overlay("SUMMER SALE", 36, 0.08, 0.12, YELLOW)]),
        (1.4, [Overlay("0% sugar", 28, 0.60, 0.70, WHITE, band=RED)]),
        (2.2, [Overlay("Heineken", 44, 0.30, 0.35, WHITE, band=(0, 110, 40)),
               Overlay("Drink responsibly", 20, 0.30, 0.80, WHITE, band=BLACK)]),
    ],
    "text_ad1.mp4": [
        (1.2, []),
        (2.4, [Overlay("Call 0800 123 456", 24, 0.05, 0.82, WHITE, band=(20, 40, 120), from_s=0.8)]),
        (1.6, [Overlay("www.example.com", 28, 0.40, 0.10, BLACK, band=WHITE)]),
        (1.8, [Overlay("Limited", 32, 0.10, 0.40, CYAN, band=BLACK), Overlay("edition", 32, 0.10, 0.52, CYAN, band=BLACK)]),
    ],
    "text_ad2.mp4": [
        (1.8, [Overlay("New flavour", 30, 0.20, 0.20, WHITE, band=(90, 40, 20))]),
        (2.0, [Overlay("Sale 49,99 EUR", 24, 0.55, 0.75, YELLOW)]),
        (1.4, []),
        (1.6, [Overlay("Terms apply", 20, 0.62, 0.88, WHITE)]),
    ],
}
# Asked for and never shown (no false positives allowed).
ABSENT = ["free delivery", "organic coffee", "summer collection", "Carlsberg", "0800 999 000", "www.nothing.org"]
# Phrases as a user types them, with what they must find.
QUERIES = {
    "summer sale": "SUMMER SALE",
    "0% sugar": "0% sugar",
    "heineken": "Heineken",
    "drink responsibly": "Drink responsibly",
    "call 0800 123 456": "Call 0800 123 456",
    "www.example.com": "www.example.com",
    "limited edition": "Limited",  # two adjacent lines: "Limited" over "edition"
    "new flavour": "New flavour",
    "sale 49.99 eur": "Sale 49,99 EUR",
    "terms apply": "Terms apply",
}


if __name__ == "__main__":
    made = make_text_ads(sys.argv[1] if len(sys.argv) > 1 else "text-ads", PLAN)
    for ad in made.values():
        print(ad.path, f"{ad.duration_s:.2f} s", {k: v for k, v in ad.shown.items()})
