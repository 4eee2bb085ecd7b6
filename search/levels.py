"""The image rule's levels of an archive (:mod:`search.presence`): measured on all of it, kept in
the store, read by every query.

An index run (and ``archive prune``) measures them once its videos are committed and compared
for versions (the chance level leaves out the stretches ``matches`` links), and keeps them in
``meta.image_levels`` with a stamp of the frames and matches they were measured on. They are
estimates from 20,000 random pairs: while at most 1% of the archive's frames (and of its
matches) changed since, they hold and are not measured again (a big archive takes a new clip
without it). Otherwise (more changed, or a store indexed before levels were kept) the next index
run measures them again, and a query meanwhile measures them itself, on the whole archive, with
the numbers an index run would keep. A ``--video`` scope never changes them: a video answers an
example the same whether it is asked alone or with the archive. Archives of more than 2,000
videos (or 150,000 samples) are measured on 2,000 of them (or as many as fit), drawn at random
(seeded): the 20,000 pairs are spread over the archive's footage either way, and memory stays
flat.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import numpy as np

from indexer.store import FrameTable, Reader
from indexer.store import levels_fresh as fresh

from .presence import ImageCalibration, Linked, calibrate_images

if TYPE_CHECKING:
    from indexer.store import Writer

__all__ = ["fresh", "image_levels", "measure", "refresh"]

MAX_VIDEOS = 2000  # videos the levels are measured on (a seeded random set of them in bigger archives)
MAX_SAMPLES = 150_000  # ... and about this many samples at most
READ_BLOCK = 32768  # vectors read per block


def measure(store_dir: str | os.PathLike[str], table: FrameTable | None = None) -> tuple[ImageCalibration, str]:
    """Measure the levels on the whole archive (``table``: its frame table, if already loaded);
    returns them and the store's stamp read before."""
    stamp, _kept, spans, fps = Reader.of(store_dir).image_levels_state()
    return _calibrate(Reader.of(store_dir).frames() if table is None else table, spans, fps), stamp


def _calibrate(table: FrameTable, spans: np.ndarray, fps: dict[int, float]) -> ImageCalibration:
    table, vectors = _sample(table)
    vids, inverse = np.unique(table.video_id, return_inverse=True)
    interval = 1.0 / np.array([fps.get(int(v), 0.0) or 2.0 for v in vids])  # one sample interval per video
    tol = interval[np.asarray(inverse).ravel()] if len(table) else np.zeros(0)
    linked = Linked.from_rows(spans) if len(spans) else None
    return calibrate_images(
        vectors,
        np.arange(len(table)),
        table.shot_id,
        table.blank,
        table.video_id,
        table.ts_s,
        linked,
        tol,
        archive_videos=len(fps),
    )


def _sample(table: FrameTable) -> tuple[FrameTable, np.ndarray]:
    """The videos the levels are measured on (all of them, or a seeded random set of at most
    ``MAX_VIDEOS`` videos and about ``MAX_SAMPLES`` samples), and their vectors read into memory
    (fp16) in order, the mapped pages handed back as it goes: the random pairs then never touch
    the vector files, and resident memory stays flat however big the archive."""
    vids, counts = np.unique(table.video_id, return_counts=True)
    if len(vids) > 2 and (len(vids) > MAX_VIDEOS or counts.sum() > MAX_SAMPLES):
        order = np.random.default_rng(0).permutation(len(vids))
        n = int(np.searchsorted(np.cumsum(counts[order]), MAX_SAMPLES, side="right"))
        pick = vids[order[: min(MAX_VIDEOS, max(2, n))]]
        table = table.subset(np.flatnonzero(np.isin(table.video_id, pick)))
    out = np.empty((len(table), table.vectors.shape[1]), np.float16)
    by_row = np.argsort(table.row, kind="stable")
    for a in range(0, len(by_row), READ_BLOCK):
        sel = by_row[a : a + READ_BLOCK]
        out[sel] = table.vectors.take(table.row[sel])
        table.release_pages()
    return table, out


def _kept(kept: dict | None, stamp: str) -> ImageCalibration | None:
    """The kept levels when they still hold (:func:`fresh`) and are of this version, else None."""
    return ImageCalibration.from_dict(kept) if fresh(kept, stamp) else None


def image_levels(store_dir: str | os.PathLike[str], whole: Callable[[], FrameTable] | None = None) -> ImageCalibration:
    """The archive's levels: those kept in the store while they hold, else measured now on the whole
    archive (``whole`` gives its frame table; default: read it)."""
    stamp, kept, spans, fps = Reader.of(store_dir).image_levels_state()
    held = _kept(kept, stamp)
    if held is not None:
        return held
    return _calibrate(whole() if whole is not None else Reader.of(store_dir).frames(), spans, fps)


def refresh(store_dir: str | os.PathLike[str], writer: "Writer") -> ImageCalibration | None:
    """Measure and keep the levels when the kept ones are missing or no longer hold (:func:`fresh`;
    call with the writer's lock held, so that nothing changes meanwhile). Returns the new levels,
    or None when the kept ones still hold or the archive has no frame."""
    stamp, kept, spans, fps = Reader.of(store_dir).image_levels_state()
    if _kept(kept, stamp) is not None:
        return None
    table = Reader.of(store_dir).frames()
    if not len(table):
        return None
    cal = _calibrate(table, spans, fps)
    writer.save_image_levels(cal.to_dict(), stamp)
    return cal
