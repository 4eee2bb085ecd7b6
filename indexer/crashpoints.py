"""A test hook that stops an index run at a named point, so crash tests kill it exactly there.

Set ``ARCHIVE_TEST_PAUSE=POINT[:N]=FILE``: the N-th time (default 1) this process reaches
``POINT``, it writes its process id to ``FILE.pid``, then ``POINT N`` to ``FILE`` (atomically),
and waits there until the test either kills it, or deletes ``FILE`` to let it go on. Without the variable, :func:`pause` returns at
once. Never set it in normal use.

The points, in the order an index run meets them:

==================  ===========================================================================
``model.load``      a run that loads its own model is about to load it; its first video decodes
``embed.batch``     a batch of a video's frames was embedded (the video is half done)
``video.done``      a video is decoded and embedded, waiting for its commit
``commit.thumbs``   a commit appended its thumbnails; no vector or catalog row written yet
``segment.written`` a new vector segment is written and fsynced under its temporary name
``commit.vectors``  a commit's segment is in place; the catalog does not know it yet
``commit.catalog``  a commit's catalog transaction is done (the videos are committed)
``merge.written``   a merge wrote its new segment; the catalog still lists the old ones
``merge.swapped``   a merge's registrations are swapped; the old files are not deleted yet
``ivf.written``     `archive optimize` wrote a new IVF index and every segment's new codes; the
                    catalog still registers the old ones
``ivf.lists_written`` ... and its lists file (every code grouped by list); still not registered
``ivf.swapped``     ... the new IVF index is registered; the old one's files are not deleted yet
``lists.written``   a new lists file of the IVF index is written (an index run that added many
                    rows, or `archive optimize`); the catalog still registers the old one
``lists.swapped``   ... the new lists file is registered; the old one is not deleted yet
==================  ===========================================================================
"""

from __future__ import annotations

import os
import time

from . import settings
from .errors import UsageError

POINTS = (
    "model.load",
    "embed.batch",
    "video.done",
    "speech.file",
    "commit.thumbs",
    "segment.written",
    "commit.vectors",
    "commit.catalog",
    "merge.written",
    "merge.swapped",
    "ivf.written",
    "ivf.lists_written",
    "ivf.swapped",
    "lists.written",
    "lists.swapped",
)
_seen: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int, str]:
    target, _, marker = spec.partition("=")
    point, _, nth = target.partition(":")
    if point not in POINTS or not marker or not (nth or "1").isdigit() or int(nth or 1) < 1:
        raise UsageError(f"ARCHIVE_TEST_PAUSE={spec!r}: use POINT[:N]=FILE with POINT one of {', '.join(POINTS)}")
    return point, int(nth or 1), marker


def start_run() -> None:
    """Called as an index run starts: checks the hook's setting (one clear error, before anything
    is written) and counts visits from zero for this run."""
    _seen.clear()
    spec = settings.pause_hook()
    if spec is not None:
        _parse(spec)


def pause(point: str) -> None:
    """Wait here if the test hook names this point and this is its N-th visit (until killed, or
    until the marker file is deleted)."""
    spec = settings.pause_hook()
    if spec is None:
        return
    want, nth, marker = _parse(spec)
    if point != want:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] != nth:
        return
    with open(f"{marker}.pid", "w") as fh:  # which process is waiting (a Ray worker, say): the test may kill it
        fh.write(f"{os.getpid()}\n")
    tmp = f"{marker}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{point} {nth}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    while os.path.exists(marker):  # the test kills the process now, or lets it go on
        time.sleep(0.01)
