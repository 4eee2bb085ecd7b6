"""The named types that cross the store's boundary: what a writer commits and what readers get.

Times are in seconds (``_s``) from the start of the video.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FrameRecord:
    """One sampled frame: it stands for ``[ts_s, end_s)``."""

    ts_s: float
    end_s: float
    shot: int = 0  # index into VideoRecord.shots


@dataclass
class ShotRecord:
    start_s: float
    end_s: float
    kind: str = "content"  # content, black or blank
    transition: str | None = None  # start, cut, dissolve or fade (None: not known)
    trans_start_s: float | None = None
    trans_end_s: float | None = None


@dataclass
class VideoRecord:
    """One finished video ready to commit: its catalog row and its frames' vectors."""

    path: str
    size_bytes: int
    mtime: float
    fingerprint: str
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    sample_fps: float
    decoded_frames: int
    frames: list[FrameRecord]
    vectors: np.ndarray  # (len(frames), dim) float32, unit length
    note: str | None = None
    shots: list[ShotRecord] = field(default_factory=list)
    thumbs: list[bytes] | None = None  # a JPEG per frame (None: no thumbnails)
    bg_lse: np.ndarray | None = None  # per frame, the background prompts' term (indexer.model.background)
    bg_key: str | None = None  # what bg_lse was computed with (indexer.model.background.background_key)
    shot_detector: str | None = None  # fast or transnet (indexer.media.shots, indexer.media.transnet)
    ocr: list[Any] | None = None  # on-screen text lines (indexer.media.ocr.OcrLine; None: text not read)
    ocr_note: str | None = None  # why the text could not be read (the embeddings are kept)
    speech: Any | None = None  # what is said (indexer.media.speech.Transcript; None: not transcribed)
    speech_note: str | None = None  # why the sound could not be transcribed, or was only partly decoded


@dataclass(frozen=True)
class KnownFile:
    """What the catalog remembers of an indexed file, to decide whether to index it again."""

    size_bytes: int
    mtime: float
    fingerprint: str
    sample_fps: float
    has_thumbnails: bool
    shot_detector: str | None = None  # None: indexed before the store recorded it


SOUND_HOP_S = 0.016  # the time unit of sound_hashes.t: frames of 16 ms (indexer/media/sound.py)


@dataclass(frozen=True)
class VideoRef:
    """An indexed video's id, path (as indexed) and file name."""

    video_id: int
    path: str
    name: str
    duration_s: float | None = None  # from the first frame's start to the last frame's end
    fps: float | None = None  # native frame rate


@dataclass(frozen=True)
class LabelDef:
    """A saved label: the texts whose template ensemble defines it, and an optional plain cut."""

    name: str
    prompts: list[str]
    threshold: float | None  # None: the presence rule
    calibration: "LabelCalibration | None" = None  # how the threshold was chosen, when calibrated
    ocr: list[str] = field(default_factory=list)  # written words that show it too (search.written)
    said: list[str] = field(default_factory=list)  # spoken phrases that show it too (search.said)


@dataclass(frozen=True)
class LabelCalibration:
    """What a calibrated label's threshold measured on its truth file."""

    precision: float
    recall: float
    videos: int  # judged videos
    positives: int  # ... where the label is on screen
    target_precision: float | None  # None: the threshold of best F1
    truth: str
    calibrated_at: Any  # datetime

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


@dataclass(frozen=True)
class SegmentRow:
    """A row of ``segments``: one label's segment in one video."""

    label: str
    video_id: int
    start_s: float
    end_s: float
    peak_score: float
    found_by: str = "picture"  # picture, text, both (picture and text), speech, or a mix with speech joined by +


@dataclass(frozen=True)
class VideoLabelRow:
    """A row of ``video_labels``: one label's answer for one video."""

    video_id: int
    label: str
    present: bool
    first_seen_s: float | None
    duration_s: float
    n_segments: int
    best_s: float | None
    score: float
    rule: str = "presence"  # presence, threshold or calibrated


@dataclass
class LabelResults:
    """Freshly computed label tables, for all labels or for some videos only."""

    segments: list[SegmentRow] = field(default_factory=list)
    videos: list[VideoLabelRow] = field(default_factory=list)


@dataclass(frozen=True)
class LabelStats:
    """How many videos show a label, and for how many seconds in all."""

    videos_present: int
    seconds: float


@dataclass(frozen=True)
class ThumbTodo:
    """A frame of an indexed video that has no thumbnail yet (its video's sampling rate too)."""

    frame_id: int
    ts_s: float
    sample_fps: float


@dataclass(frozen=True)
class OcrTodo:
    """An indexed video whose on-screen text was not read: its frames (by time) and shot starts."""

    video_id: int
    path: str
    sample_fps: float
    frame_ids: list[int]
    ts_s: list[float]
    end_s: list[float]
    shot_starts: list[float]


@dataclass
class StoreInfo:
    """Numbers about a store, as ``archive info`` shows them."""

    path: str
    videos: int
    frames: int
    seconds: float
    model: str
    pretrained: str
    dim: int
    bytes: int
    schema_version: int
    failures: int = 0
    vectors: int = 0  # rows in the vector segments (live and dead)
    segments: int = 0  # vector segments
    shot_detectors: dict[str, int] = field(default_factory=dict)  # videos by detector ("unknown": before v5)
    transitions: dict[str, int] = field(default_factory=dict)  # shots by how they begin
    vector_kinds: dict[str, int] = field(default_factory=dict)  # vectors by storage (f16, flat = fp32)
    query_index: str = ""  # how queries rank: exact scan, bf16 scan or the IVF index
    ivf: dict[str, Any] | None = None  # the IVF index: factory, trained_vectors, archive_vectors, covered, stale
    ocr: bool = False  # index runs read on-screen text (archive index --ocr once)
    text_lines: int = 0  # rows of the ocr table
    text_videos: int = 0  # videos whose text was read
    speech: bool = False  # index runs transcribe speech (archive index --speech once)
    speech_lines: int = 0  # rows of the speech table
    speech_words: int = 0  # words heard (speech_words rows with letters or digits)
    speech_videos: int = 0  # videos whose sound was transcribed
    speech_heard: int = 0  # ... of which something was said
    sound_hashes: int = 0  # rows of sound_hashes (landmark fingerprints)
    sound_videos: int = 0  # videos whose sound was fingerprinted
    sound_heard: int = 0  # ... of which with a sound track that gave fingerprints
    sound_seconds: float = 0.0  # ... seconds of their sound
    versions: dict[str, Any] = field(
        default_factory=dict
    )  # groups, videos_in_groups, matches, not_compared, min_shared_s
    image_levels: dict[str, Any] | None = (
        None  # the image rule's kept levels (search.levels) and "current"; None: none kept
    )


@dataclass
class MergeReport:
    """What merging vector segments did."""

    merged: int = 0  # segments merged away
    written: int = 0  # new segments written
    rows_copied: int = 0  # live vector rows copied into them
    dead_dropped: int = 0  # dead rows (replaced or removed videos) left behind
    ivf: str | None = None  # the IVF index trained now (FAISS factory string), if any
    ivf_kept: str | None = None  # the IVF index queries were opted in to as it was (not trained again)
    ivf_trained_on: int = 0  # vectors in its training sample
    train_s: float | None = None
    encoded: int = 0  # vectors given IVF codes
    encode_s: float | None = None
    lists_rows: int = 0  # rows written to a new IVF lists file (0: none written)
    lists_s: float | None = None
    lists_error: str | None = None  # why a due lists file could not be written (an index run goes on)

    def add(self, run: Any, new: Any) -> None:
        copied = new.n_vectors if new is not None else 0
        self.merged += len(run)
        self.written += new is not None
        self.rows_copied += copied
        self.dead_dropped += sum(r.n_vectors for r in run) - copied


Row = dict[str, Any]  # a catalog row by column name, as the server's JSON shows it


@dataclass(frozen=True)
class ModelSpec:
    """Which model made (or will make) the vectors: what the store records."""

    name: str
    pretrained: str  # a tag, an absolute checkpoint path, or "none"

    @property
    def random_weights(self) -> bool:
        return self.pretrained == "none"


def normalize(text: str) -> str:
    """The form the ``ocr`` table keeps a line's text in (``text_norm``) and phrases are matched in: case-folded, accents removed, only letters and digits kept (OCR drops and
    invents spaces and punctuation; "Drink Responsibly!" and "DRINKRESPONSIBLY" are the same)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))
