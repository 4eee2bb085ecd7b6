"""Ad-like test videos cut from real footage, with hard cuts, cross-dissolves and fades through
black at exactly known frames: the truth for shot-boundary evaluation (``python -m archive.bench.shots``).

Every shot is a contiguous run of frames of one of the source clips (:func:`use_sources`: real
footage of the user's, or the repository's test clips Megamind.avi and tree.avi), taken from inside one of the clip's own shots: the clips' internal cuts
(and Megamind's black first frame) are found by :func:`source_segments` and never fall inside a
generated shot, so the only transitions in a generated video are the ones listed in its truth.
Shots are made visually distinct by the source stretch, a crop window (zoom 1.0-1.8x at a random
position), a horizontal flip, and a per-channel colour gain (0.8-1.2).

Frame indexes are indexes in the output video (frame ``i`` has pts ``i / rate`` exactly).
Used by the shot benchmark (:mod:`archive.bench.shots`) and by the tests' own generators.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

SOURCES: tuple[Path, ...] = ()  # the source clips (use_sources); a source_id indexes this
THUMB = (48, 27)
# Mean absolute difference (0-255) between consecutive 48x27 source thumbnails at and above
# which the source clip has a cut of its own. Measured: Megamind's 3 cuts give 38-42, motion
# inside its shots at most 4; tree.avi (one shot, a hand waving in) at most 16.
SOURCE_CUT_DIFF = 20.0
SOURCE_DARK_P95 = 40.0  # source frames whose 95th-percentile grey is below this are left out
MIN_SEGMENT = 20  # shortest usable stretch of source frames
MIN_SPEED = 0.5  # slowest playback (source frames per output frame) when a stretch is short
KINDS = ("cut", "dissolve", "fade")


@dataclass
class Transition:
    """One transition. ``kind`` is ``cut``, ``dissolve`` or ``fade``.

    * cut: ``start_frame == end_frame`` = the first frame of the new shot;
    * dissolve of N frames: ``[start_frame, end_frame]`` (inclusive, N frames) are blends, the new
      shot's weight rising linearly, strictly between 0 and 1 (``w = i / (N + 1)``, i = 1..N);
    * fade: from the first darkening frame to the last brightening frame, the fully black frames
      ``black = (first, last)`` included.
    """

    kind: str
    start_frame: int
    end_frame: int
    black: tuple[int, int] | None = None  # fades: first and last fully black frame


@dataclass
class TransitionTruth:
    """A generated video and its truth. ``shots`` are ``(source_id, first_frame, last_frame)``
    of each shot's pure (unblended, full-brightness) part; ``source_id`` indexes :data:`SOURCES`."""

    path: Path
    rate: Fraction
    n_frames: int
    transitions: list[Transition]
    shots: list[tuple[int, int, int]]
    looks: list[dict[str, float]] = field(default_factory=list)  # each shot's source stretch and look
    # Things inside shots that are not transitions: ``("flash", first, last)`` (frames washed out
    # to near white) and ``("pan", first, last)`` (a whip pan across the source picture).
    hazards: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.n_frames / float(self.rate)

    def boundary_frame(self, t: Transition) -> int:
        """The frame where the new shot is considered to begin.

        * cut: ``start_frame``;
        * dissolve: the first blend in which the new shot weighs at least half,
          ``(start_frame + end_frame + 1) // 2`` (the midpoint, rounded up for an even length);
        * fade: the first frame after the fully black frames, where the new picture starts to come
          back (its first brightening frame, still very dark).
        """
        if t.kind == "cut":
            return t.start_frame
        if t.kind == "dissolve":
            return (t.start_frame + t.end_frame + 1) // 2
        assert t.black is not None
        return t.black[1] + 1

    def counts(self) -> dict[str, int]:
        return {k: sum(t.kind == k for t in self.transitions) for k in KINDS}


@dataclass
class _Segment:
    source_id: int
    first: int  # source frame indexes, inclusive
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def use_sources(*paths: str | Path) -> None:
    """Cut the generated videos from these clips (a ``source_id`` is an index into them).

    Raises:
        FileNotFoundError: a clip does not exist.
    """
    global SOURCES
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"source clip not found: {', '.join(missing)}")
    if tuple(Path(p) for p in paths) != SOURCES:
        SOURCES = tuple(Path(p) for p in paths)
        load_source.cache_clear()
        source_segments.cache_clear()


@functools.lru_cache(maxsize=None)
def load_source(source_id: int) -> np.ndarray:
    """All frames of a source clip, RGB uint8 (N, H, W, 3), read with OpenCV."""
    if not SOURCES:
        raise RuntimeError("no source clips: call use_sources(CLIP, ...) first")
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    cap = cv2.VideoCapture(str(SOURCES[source_id]))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise RuntimeError(f"{SOURCES[source_id]}: no frame could be read")
    return np.stack(frames)


@functools.lru_cache(maxsize=None)
def source_segments(source_id: int) -> tuple[_Segment, ...]:
    """The stretches of a source clip with no cut of its own and no dark frame in them."""
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    frames = load_source(source_id)
    thumbs = np.stack([cv2.resize(f, THUMB, interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    dark = np.percentile(thumbs.mean(axis=3).reshape(len(thumbs), -1), 95, axis=1) < SOURCE_DARK_P95
    diffs = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2, 3))
    segments: list[_Segment] = []
    first: int | None = None
    for i in range(len(frames) + 1):
        breaks = i == len(frames) or dark[i] or (i > 0 and diffs[i - 1] >= SOURCE_CUT_DIFF)
        if breaks and first is not None:
            if i - first >= MIN_SEGMENT:
                segments.append(_Segment(source_id, first, i - 1))
            first = None
        if i < len(frames) and not dark[i] and first is None:
            first = i
    return tuple(segments)


class _Shot:
    """One generated shot: a source stretch played from ``offset`` at ``speed``, with a look."""

    def __init__(self, seg: _Segment, need: int, size: tuple[int, int], rng: np.random.Generator) -> None:
        self.seg = seg
        self.speed = min(1.0, seg.length / need)
        span = math.floor((need - 1) * self.speed) + 1  # source frames used
        self.offset = int(rng.integers(0, seg.length - span + 1))
        src = load_source(seg.source_id)
        sh, sw = src.shape[1:3]
        out_w, out_h = size
        w0 = min(sw, sh * out_w / out_h)
        zoom = float(rng.uniform(1.0, 1.8))
        self.cw, self.ch = w0 / zoom, w0 * out_h / out_w / zoom
        self.x, self.y = float(rng.uniform(0, sw - self.cw)), float(rng.uniform(0, sh - self.ch))
        self.flip = bool(rng.random() < 0.5)
        self.gain = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
        self.size = size
        self.pan = 0.0  # source pixels the crop moves per frame (a whip pan when set), bouncing
        self.room = sw - self.cw
        self.look = {
            "source_id": seg.source_id,
            "first_src": seg.first + self.offset,
            "speed": self.speed,
            "zoom": zoom,
            "x": self.x,
            "y": self.y,
            "flip": float(self.flip),
        }

    def frame(self, k: int) -> np.ndarray:
        """The shot's ``k``-th frame (counting its transition frames), float32 RGB at ``size``."""
        import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

        src = load_source(self.seg.source_id)
        idx = min(self.seg.first + self.offset + math.floor(k * self.speed), self.seg.last)
        x = self.x
        if self.pan and self.room > 1:
            x = (self.x + k * self.pan) % (2 * self.room)  # back and forth across the room
            x = x if x <= self.room else 2 * self.room - x
        x0, y0 = int(round(x)), int(round(self.y))
        crop = src[idx, y0 : y0 + int(round(self.ch)), x0 : x0 + int(round(self.cw))]
        img = cv2.resize(
            crop, self.size, interpolation=cv2.INTER_AREA if crop.shape[1] > self.size[0] else cv2.INTER_LINEAR
        )
        if self.flip:
            img = img[:, ::-1]
        return img.astype(np.float32) * self.gain


def make_transition_video(
    path: str | Path,
    seconds: float = 50.0,
    rate: int = 25,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    dissolve_frames: tuple[int, int] = (6, 20),
    p_cut: float = 0.55,
    p_dissolve: float = 0.3,
    p_fade: float = 0.15,
    shot_seconds: tuple[float, float] = (0.4, 4.0),
    flashes: float = 0.0,
    pans: float = 0.0,
) -> TransitionTruth:
    """Write an H.264 MP4 (libx264, yuv420p, veryfast, crf 20, constant ``rate``) of real-footage
    shots joined by random transitions, and return its exact truth.

    Pure shot lengths are uniform in ``shot_seconds``; each transition is a cut, a dissolve
    (``dissolve_frames`` inclusive range) or a fade through black (6-15 frames down, 1-3 black
    frames, 6-15 frames up) with the given probabilities. Consecutive shots come from different
    source stretches. A dissolve blends A's continuing frames with B's first frames; a fade
    multiplies A's continuing frames (then B's first frames) by ``1 - i/(N1+1)`` (then ``j/(N2+1)``).

    Hazards (not transitions; listed in ``hazards``), drawn from their own random stream so the
    default video of a seed does not change: with probability ``flashes`` a shot of at least 0.8 s
    gets a photo flash (1-2 frames of its pure part washed 60-85% towards white, at least 4 frames
    from its ends); with probability ``pans`` a shot becomes a whip pan (zoomed 1.6-1.8x, the crop
    crossing the picture in 0.3-0.8 s, back and forth).
    """
    import av  # lazy: PyAV loads the FFmpeg libraries; only decoding needs them

    rng = np.random.default_rng(seed)
    path = Path(path)
    n = int(round(seconds * rate))
    lo, hi = (max(1, int(round(s * rate))) for s in shot_seconds)
    probs = np.array([p_cut, p_dissolve, p_fade], float)
    probs /= probs.sum()
    segments = [s for sid in range(len(SOURCES)) for s in source_segments(sid)]

    # 1. Plan: pure lengths and transitions (kind, frames out of A, black frames, frames into B).
    plan: list[tuple[int, tuple[str, int, int, int] | None]] = []
    pos = 0
    while True:
        pure = int(rng.integers(lo, hi + 1))
        kind = str(rng.choice(KINDS, p=probs))
        if kind == "cut":
            trans = (kind, 0, 0, 0)
        elif kind == "dissolve":
            trans = (kind, int(rng.integers(dissolve_frames[0], dissolve_frames[1] + 1)), 0, 0)
        else:
            trans = (kind, int(rng.integers(6, 16)), int(rng.integers(1, 4)), int(rng.integers(6, 16)))
        if pos + pure + sum(trans[1:]) + lo > n:  # no room for another shot: the last one fills up
            plan.append((n - pos, None))
            break
        plan.append((pure, trans))
        pos += pure + sum(trans[1:])

    # 2. Shots: each needs its incoming transition frames, its pure part and its outgoing ones.
    shots: list[_Shot] = []
    prev: _Segment | None = None
    for i, (pure, trans) in enumerate(plan):
        into = 0 if i == 0 else (plan[i - 1][1][1] if plan[i - 1][1][0] == "dissolve" else plan[i - 1][1][3])  # type: ignore[index]
        out = 0 if trans is None else trans[1]
        need = into + pure + out
        choices = [s for s in segments if s is not prev]
        fitting = [s for s in choices if s.length >= need * MIN_SPEED]
        seg = fitting[int(rng.integers(len(fitting)))] if fitting else max(choices, key=lambda s: s.length)
        shots.append(_Shot(seg, need, size, rng))
        prev = seg
    hz = np.random.default_rng([seed, 1])
    flash_at: dict[int, tuple[int, int, float]] = {}  # shot -> (offset in its pure part, frames, strength)
    for i, (pure, _) in enumerate(plan):
        if pans and hz.random() < pans:
            sh = shots[i]
            zoom = float(hz.uniform(1.6, 1.8))
            src = load_source(sh.seg.source_id)
            s_h, s_w = src.shape[1:3]
            w0 = min(s_w, s_h * size[0] / size[1])
            sh.cw, sh.ch = w0 / zoom, w0 * size[1] / size[0] / zoom
            sh.room = s_w - sh.cw
            sh.x, sh.y = 0.0, float(hz.uniform(0, s_h - sh.ch))
            sh.pan = sh.room / (float(hz.uniform(0.3, 0.8)) * rate)
            sh.look.update(zoom=zoom, x=0.0, y=sh.y, pan=sh.pan)
        if flashes and pure >= 0.8 * rate and hz.random() < flashes:
            n_flash = int(hz.integers(1, 3))
            flash_at[i] = (int(hz.integers(4, pure - 4 - n_flash + 1)), n_flash, float(hz.uniform(0.6, 0.85)))
    hazards: list[tuple[str, int, int]] = []

    # 3. Frame recipes: (weight, shot, k) terms per output frame; an empty list is black.
    recipes: list[list[tuple[float, int, int]]] = []
    transitions: list[Transition] = []
    truth_shots: list[tuple[int, int, int]] = []
    k_next = [0] * len(shots)  # next frame of each shot

    def take(s: int) -> int:
        k_next[s] += 1
        return k_next[s] - 1

    for s, (pure, trans) in enumerate(plan):
        first = len(recipes)
        recipes.extend([[(1.0, s, take(s))] for _ in range(pure)])
        truth_shots.append((shots[s].seg.source_id, first, len(recipes) - 1))
        if shots[s].pan:
            hazards.append(("pan", first, len(recipes) - 1))
        if s in flash_at:
            at, n_flash, strength = flash_at[s]
            for f in range(first + at, first + at + n_flash):
                recipes[f] = [(1.0 - strength, *recipes[f][0][1:]), (strength, -1, 0)]  # -1: white
            hazards.append(("flash", first + at, first + at + n_flash - 1))
        if trans is None:
            continue
        kind, n_out, n_black, n_in = trans
        start = len(recipes)
        if kind == "cut":
            transitions.append(Transition("cut", start, start))
        elif kind == "dissolve":
            for i in range(1, n_out + 1):
                w = i / (n_out + 1)
                recipes.append([(1.0 - w, s, take(s)), (w, s + 1, take(s + 1))])
            transitions.append(Transition("dissolve", start, len(recipes) - 1))
        else:
            recipes.extend([[(1.0 - i / (n_out + 1), s, take(s))] for i in range(1, n_out + 1)])
            black = (len(recipes), len(recipes) + n_black - 1)
            recipes.extend([[] for _ in range(n_black)])
            recipes.extend([[(j / (n_in + 1), s + 1, take(s + 1))] for j in range(1, n_in + 1)])
            transitions.append(Transition("fade", start, len(recipes) - 1, black))
    assert len(recipes) == n, (len(recipes), n)

    # 4. Render and encode.
    w, h = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, rate)
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i, terms in enumerate(recipes):
            img = np.zeros((h, w, 3), np.float32)
            for weight, s, k in terms:
                img += weight * (255.0 if s < 0 else shots[s].frame(k))
            frame = av.VideoFrame.from_ndarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return TransitionTruth(
        path=path,
        rate=Fraction(rate),
        n_frames=n,
        transitions=transitions,
        shots=truth_shots,
        looks=[s.look for s in shots],
        hazards=hazards,
    )
