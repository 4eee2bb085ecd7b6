"""The near-duplicate rule: a sample that looks the same as the previous sample of its shot reuses
that sample's embedding instead of running the model again (held frames, static packshots, logos).

Its frame row is still stored with its own time, so answers do not change; only model time is saved.
"""

from __future__ import annotations

import numpy as np

# Mean absolute difference (0-255) of the 48x27 shot-detection thumbnails below which a sample
# counts as the same picture as the previous one.
NEAR_DUPLICATE = 1.0


def same_picture(thumb: np.ndarray | None, prev_thumb: np.ndarray | None, shot: int, prev_shot: int) -> bool:
    """True when a sample may reuse the previous sample's embedding: same shot, and thumbnails
    (int16) that differ by less than :data:`NEAR_DUPLICATE` on average."""
    if thumb is None or prev_thumb is None or shot != prev_shot:
        return False
    return float(np.mean(np.abs(thumb - prev_thumb))) < NEAR_DUPLICATE
