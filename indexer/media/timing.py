"""Where the per-video step's time goes: seconds per stage, summed over the videos of a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StageTimes:
    """Seconds spent per indexing stage (decode includes shot detection and scaling)."""

    decode: float = 0.0
    preprocess: float = 0.0
    embed: float = 0.0
    write: float = 0.0
    ocr: float = 0.0  # reading on-screen text (in the decoding threads), deciding which samples included
    frames: int = 0
    reused: int = 0  # near-identical samples that reused the previous embedding
    ocr_frames: int = 0  # samples whose text was read

    def add(self, other: "StageTimes") -> None:
        for k in ("decode", "preprocess", "embed", "write", "ocr", "frames", "reused", "ocr_frames"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
