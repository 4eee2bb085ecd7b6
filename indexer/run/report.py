"""What an index run tells its caller: progress events while it runs, and a report at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from indexer.media.timing import StageTimes


@dataclass
class Progress:
    """One progress event. ``kind`` is one of: ``plan`` (``total`` files to embed, ``seconds``
    of video), ``model`` (loading weights), ``start`` (a file begins), ``frames`` (``done``
    video seconds of the current file so far), ``done``, ``skip``, ``fail`` (``message``),
    ``partial`` (indexed, but not all of it decoded: ``message``), ``thumbs`` (an indexed
    video is decoded again for its thumbnails: ``frames``), ``text`` (an indexed video is decoded
    again for its on-screen text: ``frames``), ``notext`` (its text could not be read: ``message``),
    ``versions`` (``frames`` videos are compared with the archive for shared footage; ``done`` of
    them so far, 0 at the start), ``ivf`` (the archive's IVF index is trained: ``frames`` vectors to
    encode, ``done`` so far)."""

    kind: str
    path: str = ""
    total: int = 0
    seconds: float = 0.0
    done: float = 0.0
    frames: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default progress callback: report nothing."""
    return None


@dataclass
class IndexReport:
    """What an index run did. Times in seconds."""

    store: str
    model: str
    pretrained: str
    files_seen: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    partial: int = 0  # indexed, but only partly decodable (also in failures)
    frames: int = 0
    video_seconds: float = 0.0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, partial-decode note)
    missing: list[str] = field(default_factory=list)  # indexed before, gone from disk now
    indexed_paths: list[str] = field(default_factory=list)
    stages: StageTimes = field(default_factory=StageTimes)
    repaired: list[str] = field(default_factory=list)  # lost their vectors; re-embedded when indexed again
    damaged_file: str | None = None  # an unreadable vector file, moved aside
    thumbnails_added: int = 0  # frames of already indexed videos that got their thumbnail this run
    indexed_ids: list[int] = field(default_factory=list)  # the new video ids of indexed_paths
    segments_merged: int = 0  # vector segments merged after the run
    text_lines: int = 0  # on-screen text lines read this run
    text_added: int = 0  # already indexed videos whose text was read this run
    text_ids: list[int] = field(default_factory=list)  # ... their video ids
    text_notes: list[tuple[str, str]] = field(default_factory=list)  # (path, why its text was not read)
    ocr: bool = False  # this run read on-screen text
    versions_compared: int = 0  # videos compared with the archive for shared footage this run
    matches_found: int = 0  # ... aligned shared segments found
    versions_s: float = 0.0  # seconds the comparing took
    versions_note: str | None = None  # how to make it faster, when it was slow
    lists_note: str | None = None  # the IVF lists file was due and could not be written (why)
    ivf_trained_s: float = 0.0  # seconds spent training the IVF index this run (once, when the archive grew large)
    ivf_frames: int = 0  # ... over this many frames
    encoder: Any = field(default=None, repr=False, compare=False)  # the model the run loaded, to reuse

    @property
    def ok(self) -> bool:
        """True when every file was indexed whole."""
        return self.failed == 0 and self.partial == 0
