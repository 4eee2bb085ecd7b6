"""Ad-like test videos from real footage where shots recur across videos (a packshot, a logo
card), with the exact time of every shot: the truth for ``archive eval`` tests.

Shots are stretches of the real clips in ``tests/data`` with a look of their own (crop, flip,
colour gain; see :mod:`archive.bench.transitions`) and a colour grade of their own (a permutation of the colour
channels, inverted or not), joined by hard cuts. The grade keeps shots of one source scene apart
for random-weight models, which tell footage apart mostly by colour. A shot used in two videos
has the same frames in both. Times come from native frame indexes (frame ``i`` has pts ``i / rate``).
No pytest dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from archive.bench import transitions
from archive.bench.transitions import _Shot, source_segments

transitions.use_sources(*(Path(__file__).resolve().parents[1] / "data" / n for n in ("Megamind.avi", "tree.avi")))

THUMB_SIZE = (320, 180)
GRADES = [
    (perm, inv) for inv in (False, True) for perm in ((0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1), (2, 1, 0), (1, 0, 2))
]


class GradedShot:
    """A :class:`transitions._Shot` seen through a colour grade."""

    def __init__(self, shot: _Shot, grade: int) -> None:
        self.shot = shot
        self.perm, self.invert = GRADES[grade % len(GRADES)]

    def frame(self, k: int) -> np.ndarray:
        img = self.shot.frame(k)[:, :, list(self.perm)]
        return 255.0 - img if self.invert else img


@dataclass
class AdTruth:
    """One generated video: its file, rate, and where each shot key is on screen (seconds)."""

    path: Path
    rate: Fraction
    n_frames: int
    shots: list[tuple[str, float, float]] = field(default_factory=list)  # (key, start_s, end_s)

    def spans(self, key: str) -> list[tuple[float, float]]:
        return [(a, b) for k, a, b in self.shots if k == key]


def make_ads(
    folder: str | Path,
    plan: dict[str, Sequence[tuple[str, float]]],
    rate: int = 25,
    size: tuple[int, int] = THUMB_SIZE,
    seed: int = 0,
) -> tuple[dict[str, AdTruth], dict[str, GradedShot]]:
    """Write one H.264 MP4 per entry of ``plan`` (file name -> shots as ``(key, seconds)``) and
    return the truths and the shots by key (``shot.frame(k)`` renders a frame of it).

    Each key is one shot look, taken from the source stretches in turn so that keys next to
    each other come from different footage; a key that appears again repeats the same frames.
    """
    import av

    rng = np.random.default_rng(seed)
    segments = [s for sid in (0, 1) for s in source_segments(sid)]
    keys = list(dict.fromkeys(k for shots in plan.values() for k, _ in shots))
    need = {k: max(int(round(sec * rate)) for shots in plan.values() for kk, sec in shots if kk == k) for k in keys}
    looks = {k: GradedShot(_Shot(segments[i % len(segments)], need[k], size, rng), i) for i, k in enumerate(keys)}
    folder = Path(folder)
    out: dict[str, AdTruth] = {}
    for name, shots in plan.items():
        truth = AdTruth(folder / name, Fraction(rate), 0)
        with av.open(str(truth.path), mode="w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, rate)
            stream.options = {"preset": "veryfast", "crf": "20"}
            i = 0
            for key, sec in shots:
                n = int(round(sec * rate))
                first = i
                for k in range(n):
                    img = np.clip(looks[key].frame(k) + 0.5, 0, 255).astype(np.uint8)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = i
                    frame.time_base = Fraction(1, rate)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    i += 1
                truth.shots.append((key, first / rate, i / rate))
            for packet in stream.encode():
                container.mux(packet)
        truth.n_frames = i
        out[name] = truth
    return out, looks


def still(shot: GradedShot, k: int, path: str | Path) -> Path:
    """Frame ``k`` of a shot as a PNG file (an example image for query by image)."""
    from PIL import Image

    Image.fromarray(np.clip(shot.frame(k) + 0.5, 0, 255).astype(np.uint8)).save(path)
    return Path(path)


# The ads of the eval tests and of `make eval-demo`: eight shots, each in one video.
PLAN: dict[str, list[tuple[str, float]]] = {
    "ad0.mp4": [("a", 1.6), ("b", 1.4)],
    "ad1.mp4": [("c", 1.2), ("d", 1.6)],
    "ad2.mp4": [("e", 2.0), ("f", 0.8)],
    "ad3.mp4": [("g", 1.0), ("h", 1.2)],
}
STILL_FRAME = 5  # the stills are each shot's 6th frame


def truth_rows(truths: dict[str, AdTruth], keys: str = "abcdefgh", images: str = "") -> list[tuple]:
    """The right truth for query by the stills ``{images}{key}.png``: each shot where it is, and
    explicitly absent from the other videos."""
    rows: list[tuple] = []
    for key in keys:
        q = f"image:{images}{key}.png"
        for name, t in truths.items():
            spans = t.spans(key)
            rows += [(name, q, a, b) for a, b in spans] or [(name, q, "", "")]
    return rows


def mistaken_rows(truths: dict[str, AdTruth], images: str = "") -> list[tuple]:
    """The right truth with three mistakes a person could make: shot a's start put 0.5 s late,
    shot c also claimed in ad2, and shot e said to be absent."""
    rows = [r for r in truth_rows(truths, images=images) if r[1] not in {f"image:{images}{k}.png" for k in "ace"}]
    return rows + [
        ("ad0.mp4", f"image:{images}a.png", 0.5, 1.6),
        ("ad1.mp4", f"image:{images}c.png", 0.0, 1.2),
        ("ad2.mp4", f"image:{images}c.png", 0.0, 1.0),
        ("ad2.mp4", f"image:{images}e.png", "", ""),
    ]


def write_csv(path: str | Path, rows: Sequence[tuple]) -> Path:
    path = Path(path)
    path.write_text("video,query,start_s,end_s\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def main(out: str) -> None:
    """Write the eval demo: ``ads/`` (four H.264 ads), ``stills/`` (one example image per shot),
    ``truth.csv`` and ``truth_with_mistakes.csv`` into ``out``."""
    root = Path(out)
    (root / "ads").mkdir(parents=True, exist_ok=True)
    (root / "stills").mkdir(exist_ok=True)
    truths, looks = make_ads(root / "ads", PLAN)
    for key, shot in looks.items():
        still(shot, STILL_FRAME, root / "stills" / f"{key}.png")
    write_csv(root / "truth.csv", truth_rows(truths, images="stills/"))
    write_csv(root / "truth_with_mistakes.csv", mistaken_rows(truths, images="stills/"))
    print(f"wrote {len(truths)} ads, {len(looks)} stills, truth.csv and truth_with_mistakes.csv into {root}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "eval-demo")
