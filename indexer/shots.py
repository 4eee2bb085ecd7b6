"""Shot boundaries and blank frames, detected on every decoded frame as it streams past.

Each frame is seen as a tiny RGB thumbnail (48x27). Two cheap signals:

* **cut**: the mean absolute difference to the previous thumbnail (0-255) is at least
  ``cut_threshold`` and at least ``adaptive_ratio`` times the recent average difference, so a
  hard cut fires and fast motion (high differences all along) does not;
* **blank**: at least ``blank_fraction`` of the thumbnail's pixels lie within ``blank_tolerance``
  grey levels of its median: black frames, flat colour frames, and slates (a few words on a
  plain ground). Blank frames are ``black`` when the median is below ``black_level``. A frame
  whose 95th-percentile grey level is below ``dark_level`` is ``black`` too (the last and first
  frames of a fade).

A new shot starts at a cut, and wherever frames turn blank or stop being blank, so a fade to
black ends a shot when the picture is gone and a fade in starts one when it comes back. Blank
shots are flagged and never count as a match. Cross-dissolves between two pictures are not
detected as such: the cut fires mid-dissolve, or not at all when the dissolve is slow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

THUMB_W, THUMB_H = 48, 27


@dataclass
class ShotSpan:
    """A shot: ``[start_s, end_s)`` in video time, and its kind: content, black or blank."""

    start_s: float
    end_s: float
    kind: str = "content"

    @property
    def blank(self) -> bool:
        return self.kind != "content"


def blank_kind(
    thumb: np.ndarray, fraction: float = 0.9, tolerance: float = 12.0, black_level: float = 24.0,
    dark_level: float = 40.0,
) -> str:
    """``content``, ``black`` or ``blank`` for one RGB thumbnail."""
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

    def __init__(
        self,
        cut_threshold: float = 30.0,
        adaptive_ratio: float = 3.0,
        window: int = 8,
        blank_fraction: float = 0.9,
        blank_tolerance: float = 12.0,
        black_level: float = 24.0,
    ) -> None:
        self.cut_threshold = cut_threshold
        self.adaptive_ratio = adaptive_ratio
        self.blank_args = (blank_fraction, blank_tolerance, black_level)
        self._recent: deque[float] = deque(maxlen=window)
        self._prev: np.ndarray | None = None
        self.shots: list[ShotSpan] = []
        self.kind = "content"

    def push(self, ts_s: float, thumb: np.ndarray) -> bool:
        """Add a frame shown from ``ts_s``. Returns True when it starts a new shot (the first frame too)."""
        cur = thumb.astype(np.int16)
        kind = blank_kind(thumb, *self.blank_args)
        new = self._prev is None
        if not new:
            diff = float(np.mean(np.abs(cur - self._prev)))
            base = sum(self._recent) / len(self._recent) if self._recent else 0.0
            cut = diff >= self.cut_threshold and diff >= self.adaptive_ratio * base
            new = cut or kind != self.kind
            if new:
                self._recent.clear()
            else:
                self._recent.append(diff)
        self._prev = cur
        if new:
            if self.shots:
                self.shots[-1].end_s = ts_s
            self.shots.append(ShotSpan(ts_s, ts_s, kind))
            self.kind = kind
        return new

    def close(self, end_s: float) -> list[ShotSpan]:
        """End the last shot at ``end_s`` (the video's end) and return all shots."""
        if self.shots:
            self.shots[-1].end_s = max(end_s, self.shots[-1].start_s)
        return self.shots
