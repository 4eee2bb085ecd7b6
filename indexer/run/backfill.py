"""What an index run adds to videos already indexed, without embedding them again: thumbnails
that an older store lacks, and on-screen text once a store reads it (each video decoded again)."""

from __future__ import annotations

import time
from typing import Sequence

from indexer.errors import VideoOpenError
from indexer.media import ocr as ocrmod
from indexer.media.decode import sample_frames
from indexer.media.thumbnails import THUMB_LONG_SIDE, jpeg_thumbnail
from indexer.store import Reader, Writer, ocr_row

from .report import IndexReport, Progress, ProgressFn, no_progress


def add_thumbnails(writer: Writer, path: str, progress: ProgressFn = no_progress) -> int:
    """Give an indexed, unchanged video's frames their thumbnails (for stores indexed before
    thumbnails existed). The video is decoded again, but nothing is embedded and its frames keep
    their ids, vectors and times. Returns how many frames got one.

    Samples are matched by time: the sampling is the same as at index time, so nearly all match;
    a frame with no decoded match keeps no thumbnail (the page shows none for it).
    """
    todo = Reader(writer.dir).thumbs_todo(path)
    if not todo:
        return 0
    want: dict[float, list[int]] = {}
    for t in todo:
        want.setdefault(round(t.ts_s, 4), []).append(t.frame_id)
    progress(Progress("thumbs", path=path, frames=len(todo)))
    ids: list[int] = []
    jpegs: list[bytes] = []
    try:
        for frame in sample_frames(path, todo[0].sample_fps, short_side=THUMB_LONG_SIDE):
            fids = want.pop(round(frame.ts_s, 4), None)
            if fids:
                jpeg = jpeg_thumbnail(frame.rgb)
                ids.extend(fids)
                jpegs.extend([jpeg] * len(fids))
    except (VideoOpenError, OSError):
        pass  # unreadable now: its frames stay without pictures; everything else is unchanged
    # frames with no match are marked as tried (no picture, thumb_bytes = 0), so later runs do not
    # decode the video again for them
    tried = [fid for fids in want.values() for fid in fids]
    writer.set_thumbnails(ids + tried, jpegs + [b""] * len(tried))
    return len(ids)


def add_text(
    writer: Writer, paths: Sequence[str], engine: "ocrmod.OcrEngine", progress: ProgressFn, report: IndexReport
) -> None:
    """Read the on-screen text of indexed videos (of ``paths``) that have none: each is decoded
    again, nothing is re-embedded; each video's lines are committed on their own. A video whose
    text cannot be read gets a ``failures`` note and stays without text (tried again next run)."""
    for todo in Reader(writer.dir).ocr_todo(paths):
        progress(Progress("text", path=todo.path, frames=len(todo.frame_ids)))
        t0 = time.perf_counter()
        try:
            lines, n_read = ocrmod.read_video_text(
                todo.path, todo.sample_fps, todo.ts_s, todo.end_s, engine, todo.shot_starts
            )
        except VideoOpenError as exc:
            why = f"on-screen text not read: {str(exc).removeprefix(f'{todo.path}: ')}"
        except OSError as exc:
            why = f"on-screen text not read: cannot read ({exc.strerror or exc})"
        except Exception as exc:  # onnxruntime raises its own types
            why = f"on-screen text not read: {type(exc).__name__}: {str(exc)[:200]}"
        else:
            writer.set_ocr(todo.video_id, [ocr_row(todo.frame_ids[ln.best], todo.video_id, ln) for ln in lines])
            report.stages.ocr += time.perf_counter() - t0
            report.stages.ocr_frames += n_read
            report.text_lines += len(lines)
            report.text_added += 1
            report.text_ids.append(todo.video_id)
            continue
        writer.note_failure(todo.path, why)
        report.text_notes.append((todo.path, why))
        progress(Progress("notext", path=todo.path, message=why))
