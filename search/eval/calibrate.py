"""Calibrating a saved label on labelled truth: the plain cosine cut of best F1 (or the lowest one
that reaches a target precision) on the truth file's rows for it, and what it measured there
(``archive label calibrate``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import QueryError
from indexer.store import Reader
from search.query import Searcher

from . import metrics
from .evaluate import DEFAULT_TARGET_PRECISION, answers, check_target, measure
from .metrics import Counts
from .truth import TruthQuery, read_truth

MIN_POSITIVES = 3  # present videos a label's truth needs to be calibrated on


@dataclass
class Calibration:
    """A label's plain cosine cut chosen on a truth file, and what it measured there."""

    label: str
    threshold: float
    precision: float
    recall: float
    f1: float
    judged: int  # videos judged for the label
    positives: int  # ... of which truly present
    target_precision: float | None  # None: the cut of best F1
    truth: str  # the truth file, resolved
    before: Counts  # the label's own rule on the same truth
    problems: list[str] = field(default_factory=list)  # rows of the truth file that could not be used

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "threshold": round(self.threshold, 6),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "judged": self.judged,
            "positives": self.positives,
            "target_precision": self.target_precision,
            "truth": self.truth,
            "before": self.before.to_dict(),
            "problems": self.problems,
        }


def calibrate(
    searcher: Searcher, name: str, truth_path: str | os.PathLike[str], target_precision: float | None = None
) -> Calibration:
    """Choose a label's cosine cut on a truth file: the cut of best F1, or the lowest cut that
    reaches ``target_precision``. The rows used are those of ``label:NAME``, else those whose
    query is the label's name or one of its prompts (merged).

    Raises:
        QueryError: no such label, no rows for it, fewer than :data:`MIN_POSITIVES` present
            videos, or no cut reaching the target precision.
    """
    if target_precision is not None:
        check_target(target_precision)
    store = searcher.store_dir
    labels = {lab.name: lab for lab in Reader.of(store).labels()}
    if name not in labels:
        raise QueryError(f"no label named {name!r}; see `archive label list`.")
    lab = labels[name]
    truth = read_truth(truth_path, Reader.of(store).video_refs(), list(labels.values()))
    rows = [q for q in truth.queries if q.kind == "label" and q.target == name] or [
        q for q in truth.queries if q.kind == "text" and q.target in {name, *lab.prompts}
    ]
    if not rows:
        raise QueryError(
            f"{truth_path} has no rows for label:{name} or its prompts "
            f"({'; '.join(lab.prompts)}): nothing to calibrate on."
        )
    q = TruthQuery(f"label:{name}", "label", name)
    for part in rows:
        q.unjudged |= part.unjudged
        for vid, ivs in part.intervals.items():
            q.intervals[vid] = metrics.merge(q.intervals.get(vid, []) + ivs)
    _, [res], [best] = answers(searcher, truth, [q], labels, None)
    ev = measure(truth, q, res, best, target_precision or DEFAULT_TARGET_PRECISION)
    if ev.positives < MIN_POSITIVES or ev.positives == ev.judged:
        raise QueryError(
            f"label {name}: the truth shows it in {ev.positives} of {ev.judged} judged videos; "
            f"calibrating needs at least {MIN_POSITIVES} videos where it is present and one where it "
            "is absent."
        )
    point = ev.sweep.best if target_precision is None else ev.sweep.target
    if point is None:
        top = ev.sweep.best
        raise QueryError(
            f"label {name}: no cut reaches precision {target_precision:g} on this truth "
            f"(best F1 {top.f1:.3f} at precision {top.precision:.3f}, cosine {top.threshold:.4f}); "
            "label more videos or ask for a lower --target-precision."
            if top
            else f"label {name}: no judged video has a usable frame."
        )
    return Calibration(
        name,
        point.threshold,
        point.precision,
        point.recall,
        point.f1,
        ev.judged,
        ev.positives,
        target_precision,
        str(Path(truth.path).expanduser().resolve()),
        ev.counts,
        truth.problems,
    )
