"""Writing saved labels and their answers: the ``labels``, ``segments`` and ``video_labels`` tables.

The answers are computed by the read path (:mod:`search.labels`) and committed here, through the
store's single writer (``writer.labels``), each change in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .layout import now, transaction
from .records import LabelCalibration, LabelResults

if TYPE_CHECKING:
    from .writer import Writer


class LabelWriter:
    """The label tables' writes; reached as ``writer.labels`` (it holds the store's lock)."""

    def __init__(self, writer: "Writer") -> None:
        self.w = writer

    # -- labels ---------------------------------------------------------------------------------
    def save(
        self,
        name: str,
        prompts: Sequence[str],
        threshold: float | None,
        ocr: Sequence[str] = (),
        said: Sequence[str] = (),
    ) -> None:
        """Add or replace a label (``ocr``: written words that show it too; ``said``: spoken phrases)."""
        with self.w.catalog() as con, transaction(con):
            con.execute("DELETE FROM labels WHERE label = ?", [name])
            con.execute(
                "INSERT INTO labels (label, prompts, threshold, created_at, ocr, said) VALUES (?, ?, ?, ?, ?, ?)",
                [name, list(prompts), threshold, now(), list(ocr) or None, list(said) or None],
            )

    def calibrate(self, name: str, threshold: float, cal: LabelCalibration) -> bool:
        """Give a label the threshold chosen on a truth file and record what it measured there;
        False when there is no such label."""
        with self.w.catalog() as con, transaction(con):
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            con.execute(
                "UPDATE labels SET threshold = ?, calibrated_at = ?, calib_precision = ?, calib_recall = ?, "
                "calib_videos = ?, calib_positives = ?, calib_target = ?, calib_truth = ? WHERE label = ?",
                [
                    threshold,
                    now(),
                    cal.precision,
                    cal.recall,
                    cal.videos,
                    cal.positives,
                    cal.target_precision,
                    cal.truth,
                    name,
                ],
            )
        return bool(n)

    def remove(self, name: str) -> bool:
        """Remove a label and its results; False when there was none."""
        with self.w.catalog() as con:
            n = con.execute("SELECT count(*) FROM labels WHERE label = ?", [name]).fetchall()[0][0]
            with transaction(con):
                for table in ("labels", "segments", "video_labels"):
                    con.execute(f"DELETE FROM {table} WHERE label = ?", [name])
        return bool(n)

    def replace_results(self, results: LabelResults, video_ids: Sequence[int] | None = None) -> None:
        """Swap in freshly computed ``segments`` and ``video_labels`` rows in one transaction: for
        every video, or (``video_ids``) for those videos only."""
        seg, vl = results.segments, results.videos
        with self.w.catalog() as con, transaction(con):
            if video_ids is None:
                con.execute("DELETE FROM segments")
                con.execute("DELETE FROM video_labels")
            elif video_ids:
                ph = ", ".join("?" for _ in video_ids)
                con.execute(f"DELETE FROM segments WHERE video_id IN ({ph})", list(video_ids))
                con.execute(f"DELETE FROM video_labels WHERE video_id IN ({ph})", list(video_ids))
            if seg:
                con.register(
                    "_seg",
                    {
                        "label": np.array([r.label for r in seg], dtype=object),
                        "video_id": np.array([r.video_id for r in seg], np.int32),
                        "start_s": np.array([r.start_s for r in seg], np.float64),
                        "end_s": np.array([r.end_s for r in seg], np.float64),
                        "peak_score": np.array([r.peak_score for r in seg], np.float64),
                        "found_by": np.array([r.found_by for r in seg], dtype=object),
                    },
                )
                con.execute(
                    "INSERT INTO segments (label, video_id, start_s, end_s, peak_score, found_by) "
                    "SELECT label, video_id, start_s, end_s, peak_score, found_by FROM _seg"
                )
                con.unregister("_seg")
            if vl:
                nan = float("nan")
                con.register(
                    "_vl",
                    {
                        "video_id": np.array([r.video_id for r in vl], np.int32),
                        "label": np.array([r.label for r in vl], dtype=object),
                        "present": np.array([r.present for r in vl], bool),
                        "first_seen_s": np.array(
                            [nan if r.first_seen_s is None else r.first_seen_s for r in vl], np.float64
                        ),
                        "duration_s": np.array([r.duration_s for r in vl], np.float64),
                        "n_segments": np.array([r.n_segments for r in vl], np.int32),
                        "best_s": np.array([nan if r.best_s is None else r.best_s for r in vl], np.float64),
                        "score": np.array([r.score for r in vl], np.float64),
                        "rule": np.array([r.rule for r in vl], dtype=object),
                    },
                )
                con.execute(
                    "INSERT INTO video_labels SELECT video_id, label, present, "
                    "CASE WHEN isnan(first_seen_s) THEN NULL ELSE first_seen_s END, duration_s, n_segments, "
                    "CASE WHEN isnan(best_s) THEN NULL ELSE best_s END, score, rule FROM _vl"
                )
                con.unregister("_vl")
