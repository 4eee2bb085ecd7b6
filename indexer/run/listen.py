"""Sound fingerprints of an index run: after its videos are committed, each indexed video of the run's
folders whose sound was not fingerprinted yet (the new ones, and those indexed before fingerprints
existed) is fingerprinted from its sound track alone (:mod:`indexer.media.sound`); no frame is
decoded or embedded. Two threads share the work (PyAV's decoding and numpy's FFTs release the GIL);
rows are committed in batches, and the hash table is put back in hash order when it has grown by a
tenth (:meth:`indexer.store.Writer.sort_sound`).

A video without a sound stream is fingerprinted as such (0 hashes). A file that cannot be read
keeps its pictures and is tried again by the next run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from indexer import crashpoints
from indexer.errors import VideoOpenError
from indexer.media import sound
from indexer.media.speech import SoundStats
from indexer.store import Reader, Writer

from .report import IndexReport, Progress, ProgressFn

BATCH = 64  # videos per catalog transaction
THREADS = 2


def listen(path: str) -> tuple[Any, str | None]:
    """Fingerprint one file; never raises for what the file holds. Returns the prints (None: the
    file could not be read) and a note on what went wrong or was damaged."""
    stats = SoundStats()
    try:
        crashpoints.pause("sound.file")
        prints = sound.fingerprint_file(path, stats)
    except VideoOpenError as exc:
        return None, f"sound not fingerprinted: {str(exc).removeprefix(f'{path}: ')}"
    except OSError as exc:
        return None, f"sound not fingerprinted: cannot read ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001  # PyAV raises its own types; the video's pictures are kept
        return None, f"sound not fingerprinted: {type(exc).__name__}: {str(exc)[:200]}"
    note = None
    if stats.bad_packets:
        at = ", ".join(f"{t:.2f} s" for t in stats.bad_at)
        note = f"sound partly fingerprinted: {stats.bad_packets} damaged sound packet(s) skipped (at {at})"
    elif stats.error:
        note = f"sound partly fingerprinted: {stats.error}"
    return prints, note


def add_sound(
    writer: Writer, paths: Sequence[str] | None, progress: ProgressFn, report: IndexReport, sort: bool = True
) -> None:
    """Fingerprint the indexed videos of ``paths`` (None: all) that have no fingerprints yet,
    commit them in batches of :data:`BATCH`, and (``sort``) put the table back in hash order when due."""
    todo = Reader(writer.dir).sound_todo(paths)
    report.sound = True
    if todo:
        t0 = time.perf_counter()
        progress(Progress("sound", frames=len(todo), done=0))
        pending: list[tuple[int, Any]] = []
        with ThreadPoolExecutor(THREADS, thread_name_prefix="sound") as pool:
            for k, ((vid, path), (prints, note)) in enumerate(zip(todo, pool.map(listen, [p for _, p in todo]))):
                if prints is not None:
                    pending.append((vid, prints))
                    report.sound_videos += 1
                    report.sound_hashes += len(prints)
                    report.sound_seconds += prints.seconds
                if note:
                    report.sound_notes.append((path, note))
                    progress(Progress("nosound", path=path, message=note))
                if len(pending) >= BATCH:
                    writer.set_sound(pending)
                    pending = []
                progress(Progress("sound", frames=len(todo), done=k + 1))
        writer.set_sound(pending)
        report.sound_s += time.perf_counter() - t0
    if sort:
        report.sound_sorted = writer.sort_sound()
