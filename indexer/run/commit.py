"""The one place finished videos wait for the single writer, shared by every runner."""

from __future__ import annotations

import time

from indexer.store import VideoRecord, Writer

from .report import IndexReport, Progress, ProgressFn


class Committer:
    """What every runner shares: finished videos and failures wait here for the single writer,
    committed together at most every ``ARCHIVE_COMMIT_INTERVAL_S`` seconds (and on the way out)."""

    def __init__(self, writer: Writer, progress: ProgressFn, report: IndexReport) -> None:
        self.writer, self.progress, self.report = writer, progress, report
        self.pending: list[VideoRecord] = []
        self.failures: list[tuple[str, str]] = []
        self.last_commit = time.monotonic()

    def flush(self) -> None:
        """Commit what is finished: the pending videos and the failures seen so far."""
        rep = self.report
        partial = [(rec.path, rec.note) for rec in self.pending if rec.note]
        no_text = [(rec.path, rec.ocr_note) for rec in self.pending if rec.ocr_note]
        no_speech = [(rec.path, rec.speech_note) for rec in self.pending if rec.speech_note]
        t0 = time.perf_counter()
        rep.indexed_ids.extend(self.writer.commit(self.pending, self.failures + partial + no_text + no_speech))
        rep.stages.write += time.perf_counter() - t0
        for rec in self.pending:
            rep.indexed += 1
            rep.indexed_paths.append(rec.path)
            rep.frames += len(rec.frames)
            rep.video_seconds += rec.duration_s
            rep.text_lines += len(rec.ocr or [])
            if rec.speech is not None:
                rep.count_speech(rec.speech)
        rep.notes.extend(partial)
        rep.text_notes.extend(no_text)
        rep.speech_notes.extend(no_speech)
        rep.partial += len(partial)
        rep.failures.extend(self.failures)
        rep.failed += len(self.failures)
        self.pending, self.failures = [], []
        self.last_commit = time.monotonic()

    def _fail(self, path: str, why: str) -> None:
        self.failures.append((path, why))
        self.progress(Progress("fail", path=path, message=why))
