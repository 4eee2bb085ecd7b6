"""Shot boundaries and blank frames, detected on every decoded frame as it streams past.

Each frame is seen as a tiny RGB thumbnail (48x27). Two cheap signals:

* **cut**: the mean absolute difference to the previous thumbnail (0-255) is at least
  ``cut_threshold`` and at least ``adaptive_ratio`` times the recent average difference of this
  shot's frames, so a hard cut fires and fast motion (high differences all along) does not. A
  smaller jump is a cut too when it stands far out from a quiet shot: at least
  ``soft_cut_threshold`` and ``soft_ratio`` times the recent average over at least
  ``soft_history`` frames (a cut between two dark or low-contrast shots). A cut
  needs at least one earlier difference in the shot: the frame right after a cut never cuts
  again, so fast motion after a cut is not a cut on every frame (a content shot of a single frame
  is therefore not split off);
* **blank**: at least ``blank_fraction`` of the thumbnail's pixels lie within ``blank_tolerance``
  grey levels of its median: black frames, flat colour frames, and slates (a few words on a
  plain ground). Blank frames are ``black`` when the median is below ``black_level``. A frame
  whose 95th-percentile grey level is below ``dark_level`` is ``black`` too (the last and first
  frames of a fade).

Every threshold is a field of :class:`ShotParams`. A new shot starts at a cut, and wherever frames turn blank or stop being blank, so a fade to
black ends a shot when the picture is gone and a fade in starts one when it comes back. Blank
shots are flagged and never count as a match. A flash (1-3 frames after which the picture is
the one before again) is not a shot: its cut is undone. Cross-dissolves between two pictures are not
detected as such: the cut fires mid-dissolve, or not at all when the dissolve is slow.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

THUMB_W, THUMB_H = 48, 27


@dataclass(frozen=True)
class ShotParams:
    """Every threshold of shot and blank detection, in one place (grey levels are 0-255)."""

    cut_threshold: float = 30.0  # mean absolute thumbnail difference for a cut ...
    adaptive_ratio: float = 3.0  # ... and at least this many times the recent average difference
    window: int = 8  # frames in that recent average
    # A smaller jump cuts when it stands far out from a quiet shot: cuts between two dark shots
    # differ by 22-30, while no difference inside a shot of the 16 generated evaluation videos
    # (archive/bench/transitions.py, seeds 2000-2015) reaching 20 was over 4.1 times its recent average.
    soft_cut_threshold: float = 20.0
    soft_ratio: float = 6.0
    soft_history: int = 3  # frames of the shot's recent differences that rule needs
    # A flash (a photo flash, a white frame) is not a shot: when, at most ``flash_frames`` frames
    # after a cut, the picture is back to the frame before it (differs from it by at most
    # ``flash_return`` times the cut's jump, and less than ``soft_cut_threshold``), the cut is undone.
    flash_frames: int = 3
    flash_return: float = 0.35
    blank_fraction: float = 0.9  # a frame is blank when this share of its pixels ...
    blank_tolerance: float = 12.0  # ... lies within this many grey levels of its median
    black_level: float = 24.0  # a blank frame is black when its median is below this
    dark_level: float = 40.0  # a frame whose 95th percentile is below this is black (fades)


DEFAULT_PARAMS = ShotParams()


TRANSITIONS = ("start", "cut", "dissolve", "fade")


@dataclass
class ShotSpan:
    """A shot: ``[start_s, end_s)`` in video time, its kind (content, black or blank), and how it
    begins: ``transition`` is ``start`` (the video's first shot), ``cut``, ``dissolve`` or
    ``fade``, over ``[trans_start_s, trans_end_s]`` (a cut's span is its first frame's time)."""

    start_s: float
    end_s: float
    kind: str = "content"
    transition: str = "cut"
    trans_start_s: float | None = None
    trans_end_s: float | None = None

    @property
    def blank(self) -> bool:
        return self.kind != "content"


def blank_kind(thumb: np.ndarray, params: ShotParams = DEFAULT_PARAMS) -> str:
    """``content``, ``black`` or ``blank`` for one RGB thumbnail."""
    fraction, tolerance = params.blank_fraction, params.blank_tolerance
    black_level, dark_level = params.black_level, params.dark_level
    grey = thumb.astype(np.float32).mean(axis=2).ravel()
    n = grey.size
    # the 95th percentile and the median (numpy's linear interpolation) from one partial sort
    k95, f95 = divmod(0.95 * (n - 1), 1.0)
    k50, f50 = divmod(0.5 * (n - 1), 1.0)
    ks = sorted({int(k95), min(int(k95) + 1, n - 1), int(k50), min(int(k50) + 1, n - 1)})
    part = np.partition(grey, ks)
    p95 = part[int(k95)] + f95 * (part[min(int(k95) + 1, n - 1)] - part[int(k95)])
    if float(p95) < dark_level:
        return "black"
    med = float(part[int(k50)] + f50 * (part[min(int(k50) + 1, n - 1)] - part[int(k50)]))
    if float(np.mean(np.abs(grey - med) <= tolerance)) < fraction:
        return "content"
    return "black" if med < black_level else "blank"


class ShotDetector:
    """Feed it every frame in order with :meth:`push`; read :attr:`shots` after :meth:`close`."""

    def __init__(self, params: ShotParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self.cut_threshold = params.cut_threshold
        self.adaptive_ratio = params.adaptive_ratio
        self._recent: deque[float] = deque(maxlen=params.window)
        self._prev: np.ndarray | None = None
        self.shots: list[ShotSpan] = []
        self.kind = "content"
        self.last_kind = "content"  # of the frame pushed last
        self.flashes = 0  # cuts undone as flashes
        self._before: np.ndarray | None = None  # the frame before a boundary that may be a flash ...
        self._jump = 0.0  # ... that boundary's difference ...
        self._since = 0  # ... and frames pushed since it
        self._saved: tuple[int, list[float]] | None = None  # shots before that boundary, the recent diffs then

    def push(self, ts_s: float, thumb: np.ndarray) -> bool:
        """Add a frame shown from ``ts_s``. Returns True when it starts a new shot (the first frame too)."""
        cur = thumb.astype(np.int16)
        kind = blank_kind(thumb, self.params)
        self.last_kind = kind
        new = self._prev is None
        if not new:
            diff = float(np.mean(np.abs(cur - self._prev)))
            base = sum(self._recent) / len(self._recent) if self._recent else 0.0
            # A cut needs some history of this shot to compare with: with none (the frame right
            # after a cut, or the video's second frame) fast motion, whose differences are as large
            # as a cut's frame after frame, would otherwise cut on every frame. The price: a
            # content shot of a single frame is not split off (a blank one still is, by its kind).
            p = self.params
            cut = bool(self._recent) and (
                (diff >= self.cut_threshold and diff >= self.adaptive_ratio * base)
                or (
                    len(self._recent) >= p.soft_history and diff >= p.soft_cut_threshold and diff >= p.soft_ratio * base
                )
            )
            new = cut or kind != self.kind
            if self._before is not None:
                self._since += 1
                if self._since > p.flash_frames:
                    self._before = None
                elif kind == "content" and self._flash_over(cur):
                    self._prev = cur
                    return False
            if new:
                if self._before is None and self.kind == "content" and kind in ("content", "blank"):
                    # into a flash, maybe: remember the picture before it and the shot it ended
                    self._before, self._jump, self._since = self._prev, diff, 0
                    self._saved = (len(self.shots), list(self._recent))
                elif kind == "black":
                    self._before = None  # into black: a fade, not a flash
                self._recent.clear()
            else:
                self._recent.append(diff)
        self._prev = cur
        if new:
            if self.shots:
                self.shots[-1].end_s = ts_s
                fade = "black" in (kind, self.kind)  # into or out of black: a fade's end
                self.shots.append(ShotSpan(ts_s, ts_s, kind, "fade" if fade else "cut", ts_s, ts_s))
            else:
                self.shots.append(ShotSpan(ts_s, ts_s, kind, "start", ts_s, ts_s))
            self.kind = kind
        return new

    @property
    def may_be_flash(self) -> bool:
        """Whether the last boundary may still be undone as a flash (for at most ``flash_frames``
        frames after it)."""
        return self._before is not None

    def _flash_over(self, cur: np.ndarray) -> bool:
        """Whether ``cur`` shows the picture of before the last boundary again, a few frames on
        (that boundary was a flash); if so, the flash's shots are dropped and the shot before it
        goes on."""
        assert self._before is not None and self._saved is not None
        back = float(np.mean(np.abs(cur - self._before)))
        p = self.params
        if back > p.flash_return * self._jump or back >= p.soft_cut_threshold:
            return False
        n_shots, recent = self._saved
        del self.shots[n_shots:]
        self.kind = "content"
        self._recent.clear()
        self._recent.extend(recent)
        self._before = self._saved = None
        self.flashes += 1
        return True

    def close(self, end_s: float) -> list[ShotSpan]:
        """End the last shot at ``end_s`` (the video's end) and return all shots."""
        if self.shots:
            self.shots[-1].end_s = max(end_s, self.shots[-1].start_s)
        return self.shots


def merge_transitions(shots: list[ShotSpan], times: list[float], found: list[Any], end_s: float) -> list[ShotSpan]:
    """The fast detector's ``shots`` with TransNetV2's transitions (:mod:`indexer.media.transnet`) put in.

    ``times`` are the frames' times (the index ``found`` refers to). Cuts and changes to and from
    blank frames stay where the fast detector put them (exact to the frame). A dissolve replaces
    the cuts the fast detector fired inside it by one boundary at its middle; a cut or fade the
    fast detector did not see adds a boundary (not inside a black stretch, whose edges are exact
    already; between two slates it may); one it did see only gains its span.
    """
    if not shots or not times:
        return shots
    pad = 2  # frames of slack around a transition's span
    bounds = [(bisect.bisect_left(times, s.start_s), s) for s in shots]
    for tr in found:
        lo, hi = tr.first - pad, tr.last + pad
        near = [(i, s) for i, s in bounds[1:] if lo <= i <= hi]
        span = (times[tr.first], times[tr.last])
        if tr.kind == "dissolve":
            if any(s.kind != "content" or s.transition == "fade" for _, s in near):
                continue  # to or from a blank frame: the fast detector's fade boundaries hold
            k = bisect.bisect_right([i for i, _ in bounds], tr.start) - 1
            if not near and k >= 0 and bounds[k][1].kind == "black":
                continue  # inside a black stretch: its edges are the boundaries
            gone = {id(s) for _, s in near}
            bounds = [(i, s) for i, s in bounds if id(s) not in gone]
            k = bisect.bisect_right([i for i, _ in bounds], tr.start) - 1
            kind = bounds[k][1].kind if k >= 0 else "content"
            bounds.insert(k + 1, (tr.start, ShotSpan(times[tr.start], 0.0, kind, "dissolve", *span)))
        elif near:
            for _, s in near:
                if tr.kind == "fade" or s.transition == "fade":
                    s.transition, s.trans_start_s, s.trans_end_s = "fade", *span
        elif tr.start > 0:
            k = bisect.bisect_right([i for i, _ in bounds], tr.start) - 1
            if k >= 0 and bounds[k][1].kind == "black":
                continue  # inside a black stretch (a fade's middle): its edges are the boundaries
            kind = bounds[k][1].kind if k >= 0 else "content"
            bounds.insert(k + 1, (tr.start, ShotSpan(times[tr.start], 0.0, kind, tr.kind, *span)))
    out = [s for _, s in bounds]
    for a, b in zip(out, out[1:]):
        a.end_s = b.start_s
    out[-1].end_s = max(end_s, out[-1].start_s)
    return out
