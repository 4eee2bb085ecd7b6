"""Speech beside the picture work: each video's sound track is transcribed in a background thread
while its frames are decoded and embedded (the recogniser uses one core, ``ARCHIVE_SPEECH_THREADS``;
CTranslate2 releases the GIL), and for indexed videos that lack it, from the sound track alone.

A video whose sound cannot be transcribed keeps its embeddings: it gets a ``failures`` note, stays
without speech (``videos.speech_lines`` NULL) and is tried again by the next ``--speech`` run.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from indexer import crashpoints
from indexer.errors import VideoOpenError
from indexer.media.speech import SpeechEngine, Transcript
from indexer.store import Reader, Writer

from .report import IndexReport, Progress, ProgressFn

Heard = tuple["Transcript | None", "str | None"]  # the transcript (None: not transcribed) and a note


def hear(engine: SpeechEngine, path: str) -> Heard:
    """Transcribe one file; never raises for what the file holds. The note says why there is no
    transcript, or what was damaged in the one there is."""
    try:
        crashpoints.pause("speech.file")
        t = engine.transcribe(path)
    except VideoOpenError as exc:
        return None, f"speech not transcribed: {str(exc).removeprefix(f'{path}: ')}"
    except OSError as exc:
        return None, f"speech not transcribed: cannot read ({exc.strerror or exc})"
    except Exception as exc:  # CTranslate2 and PyAV raise their own types; the video's pictures are kept
        return None, f"speech not transcribed: {type(exc).__name__}: {str(exc)[:200]}"
    return t, t.note


def start_hearing(engine: SpeechEngine, path: str) -> Callable[[], Heard]:
    """Start transcribing ``path`` in a thread now; the returned call waits for its result."""
    out: list[Heard] = []
    thread = threading.Thread(target=lambda: out.append(hear(engine, path)), name="speech", daemon=True)
    thread.start()

    def result() -> Heard:
        thread.join()
        return out[0]

    return result


class HearAhead:
    """Transcribes a run's videos in order, in one background thread that runs ahead of the picture
    work (transcripts are small: running ahead costs no memory to speak of)."""

    def __init__(self, engine: SpeechEngine, paths: Sequence[str]) -> None:
        self.engine = engine
        self.paths = list(paths)
        self.done: dict[str, Heard] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="speech-ahead", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        for path in self.paths:
            with self._cond:
                if self._stop:
                    return
            heard = hear(self.engine, path)
            with self._cond:
                self.done[path] = heard
                self._cond.notify_all()

    def waiter(self, path: str) -> Callable[[], Heard]:
        """A call that waits for ``path``'s transcript (a path not in the run is heard now)."""
        if path not in self.paths:
            return lambda: hear(self.engine, path)

        def result() -> Heard:
            with self._cond:
                while path not in self.done:
                    self._cond.wait()
                return self.done.pop(path)

        return result

    def close(self) -> None:
        """Start no more files (the one being heard finishes in the background)."""
        with self._cond:
            self._stop = True


def add_speech(
    writer: Writer, paths: Sequence[str], engine: SpeechEngine, progress: ProgressFn, report: IndexReport
) -> None:
    """Transcribe the indexed videos of ``paths`` that have no speech, from their sound track only
    (no frame is decoded or embedded); each video's lines are committed on their own."""
    for video_id, path in Reader(writer.dir).speech_todo(paths):
        progress(Progress("speech", path=path))
        t0 = time.perf_counter()
        transcript, note = hear(engine, path)
        if transcript is not None:
            writer.set_speech(video_id, transcript)
            report.count_speech(transcript, time.perf_counter() - t0)
            report.speech_added += 1
            report.speech_ids.append(video_id)
        if note:
            writer.note_failure(path, note)
            report.speech_notes.append((path, note))
            progress(Progress("nospeech", path=path, message=note))
