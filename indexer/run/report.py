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
    ``speech`` (an indexed video's sound is transcribed), ``nospeech`` (its sound could not be, or
    only partly: ``message``), ``sound`` (``frames`` videos' sound is fingerprinted, ``done`` so
    far), ``nosound`` (a video's sound could not be fingerprinted, or only partly: ``message``),
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
    speech: bool = False  # this run transcribed what is said
    speech_lines: int = 0  # spoken lines heard this run
    speech_words: int = 0  # ... and their words
    speech_sound_s: float = 0.0  # seconds of sound transcribed
    speech_s: float = 0.0  # seconds the recogniser took (in its own thread, beside the picture work)
    speech_added: int = 0  # already indexed videos transcribed this run
    speech_ids: list[int] = field(default_factory=list)  # ... their video ids
    speech_notes: list[tuple[str, str]] = field(default_factory=list)  # (path, why its sound was not (all) heard)
    sound: bool = False  # this run fingerprinted the sound
    sound_videos: int = 0  # videos fingerprinted this run (new and already indexed)
    sound_hashes: int = 0  # ... landmark hashes kept
    sound_seconds: float = 0.0  # ... seconds of sound
    sound_s: float = 0.0  # seconds fingerprinting took (decoding the sound included)
    sound_sorted: bool = False  # the hash table was rewritten in hash order after the run
    sound_notes: list[tuple[str, str]] = field(
        default_factory=list
    )  # (path, why its sound was not (all) fingerprinted)
    versions_compared: int = 0  # videos compared with the archive for shared footage this run
    matches_found: int = 0  # ... aligned shared segments found
    versions_s: float = 0.0  # seconds the comparing took
    versions_note: str | None = None  # how to make it faster, when it was slow
    lists_note: str | None = None  # the IVF lists file was due and could not be written (why)
    ivf_trained_s: float = 0.0  # seconds spent training the IVF index this run (once, when the archive grew large)
    ivf_frames: int = 0  # ... over this many frames
    encoder: Any = field(default=None, repr=False, compare=False)  # the model the run loaded, to reuse

    def count_speech(self, transcript: Any, seconds: float | None = None) -> None:
        """Add a transcript to the run's speech counts."""
        self.speech_lines += len(transcript.lines)
        self.speech_words += transcript.words
        self.speech_sound_s += transcript.sound_s
        self.speech_s += transcript.seconds if seconds is None else seconds

    @property
    def speech_rtf(self) -> float | None:
        """The recogniser's real-time factor this run: its seconds per second of sound (None: none heard)."""
        return self.speech_s / self.speech_sound_s if self.speech_sound_s else None

    @property
    def ok(self) -> bool:
        """True when every file was indexed whole."""
        return self.failed == 0 and self.partial == 0
