"""The answers of versions matching: groups of versions (``archive versions``), aligned segments,
and query by video (``archive search --like-video``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from indexer import settings
from indexer.errors import QueryError, VideoOpenError
from indexer.store import Reader
from search.results import QueryResult, VideoResult
from search.timeline import Segment

if TYPE_CHECKING:
    from indexer.store import VideoRecord
from .align import Match, make_side, side_of
from .find import basis_of, find


# -- answers for the CLI, the API and the web page -------------------------------------------------
@dataclass
class Member:
    """One video of a version group."""

    video_id: int
    video: str  # path as indexed
    name: str
    duration_s: float
    shared_s: float  # seconds of it shared with other members
    is_longest: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "video": self.video,
            "name": self.name,
            "duration_s": round(self.duration_s, 3),
            "shared_s": round(self.shared_s, 3),
            "is_longest": self.is_longest,
        }


@dataclass
class Group:
    """Videos linked by enough shared footage; ``segments`` (when asked for videos) are the
    aligned shared segments of their pairs within the group."""

    group_id: int
    members: list[Member]
    segments: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "members": [m.to_dict() for m in self.members], "segments": self.segments}


@dataclass
class VersionsReport:
    """What ``archive versions`` shows."""

    groups: list[Group]
    min_shared_s: float
    compared: int  # videos compared with the archive
    not_compared: int  # ... not yet (indexed before versions existed; the next index run does them)
    videos: list[int] | None = None  # the videos asked about (None: all groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_shared_s": self.min_shared_s,
            "compared": self.compared,
            "not_compared": self.not_compared,
            "groups": [g.to_dict() for g in self.groups],
        }


def segment_dict(row: dict[str, Any], first: set[int] | None = None) -> dict[str, Any]:
    """A ``matches`` row for people; with ``first``, a video of it is put on the ``a`` side."""

    def r(x: float) -> float:
        return round(float(x), 3)

    if first and int(row["video_b"]) in first and int(row["video_a"]) not in first:
        row = {
            **row,
            "video_a": row["video_b"],
            "video_b": row["video_a"],
            "path_a": row["path_b"],
            "path_b": row["path_a"],
            "name_a": row["name_b"],
            "name_b": row["name_a"],
            "a_start_s": row["b_start_s"],
            "a_end_s": row["b_end_s"],
            "b_start_s": row["a_start_s"],
            "b_end_s": row["a_end_s"],
        }
    return {
        "video_a": row["path_a"],
        "name_a": row["name_a"],
        "video_a_id": int(row["video_a"]),
        "a_start_s": r(row["a_start_s"]),
        "a_end_s": r(row["a_end_s"]),
        "video_b": row["path_b"],
        "name_b": row["name_b"],
        "video_b_id": int(row["video_b"]),
        "b_start_s": r(row["b_start_s"]),
        "b_end_s": r(row["b_end_s"]),
        "score": round(float(row["score"]), 4),
    }


def report(store_dir: "str | os.PathLike[str]", video_ids: Sequence[int] | None = None) -> VersionsReport:
    """The version groups (all, or those of ``video_ids`` with their aligned segments)."""
    rows, min_shared, done, todo = Reader.of(store_dir).version_rows()
    by_group: dict[int, list[Member]] = {}
    for r in rows:
        by_group.setdefault(int(r["group_id"]), []).append(
            Member(
                int(r["video_id"]),
                r["path"],
                r["name"],
                float(r["duration_s"] or 0.0),
                float(r["shared_s"]),
                bool(r["is_longest"]),
            )
        )
    groups_out = [Group(g, ms, []) for g, ms in by_group.items()]
    if video_ids is not None:
        wanted = set(int(v) for v in video_ids)
        groups_out = [g for g in groups_out if wanted & {m.video_id for m in g.members}]
        segs = Reader.of(store_dir).match_rows(sorted(wanted))
        for g in groups_out:
            ids = {m.video_id for m in g.members}
            g.segments = [
                segment_dict(s, wanted) for s in segs if int(s["video_a"]) in ids and int(s["video_b"]) in ids
            ]
        # videos asked about that share footage below --min-shared, or are in no group, still show
        # what they share
        loose = [
            s
            for s in segs
            if not any(
                int(s["video_a"]) in {m.video_id for m in g.members}
                and int(s["video_b"]) in {m.video_id for m in g.members}
                for g in groups_out
            )
        ]
        if loose:
            groups_out.append(Group(-1, [], [segment_dict(s, wanted) for s in loose]))
    return VersionsReport(groups_out, min_shared, done, todo, None if video_ids is None else sorted(set(video_ids)))


def like_video(
    store_dir: "str | os.PathLike[str]",
    path: "str | os.PathLike[str]",
    embed: "Callable[[str, float], VideoRecord]",
    videos: Sequence[int] | None = None,
    top: int | None = None,
) -> "QueryResult":
    """Which indexed videos contain the footage of the video file ``path``, and where: one
    :class:`~search.results.QueryResult` in the usual shape, each segment also giving its time range
    in the file (``segment_sources``). An indexed file's stored samples are used; another file is
    handed to ``embed(path, sample_fps)`` (the caller decodes and embeds it with the store's model:
    the read path opens no video), and the store is not changed. ``videos`` limits the answer to
    those video ids.

    Raises:
        QueryError: the file is missing or cannot be decoded.
    """
    p = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isfile(p):
        raise QueryError(f"--like-video {path}: file not found.")
    basis, _new = basis_of(store_dir)
    refs = Reader.of(store_dir).video_refs()
    own = next((r.video_id for r in refs if r.path == p), None)
    if own is not None:
        table = Reader.of(store_dir).frames([own])
        side = side_of(table, 0, len(table))
    else:
        fps = Reader.of(store_dir).common_sample_fps() or settings.DEFAULT_FPS
        try:
            rec = embed(p, fps)
        except (VideoOpenError, OSError) as exc:
            raise QueryError(f"--like-video {path}: cannot decode it ({str(exc).splitlines()[0]}).") from exc
        shots = rec.shots or []
        blank = [bool(shots) and shots[f.shot].kind != "content" for f in rec.frames]
        side = make_side(
            -1,
            [f.ts_s for f in rec.frames],
            [f.end_s for f in rec.frames],
            [f.shot for f in rec.frames],
            blank,
            rec.vectors,
            [shots[f.shot].start_s if shots else f.ts_s for f in rec.frames],
        )
    found = find(store_dir, [side], basis, videos=videos)
    by_video: dict[int, list[Match]] = {}
    for m in found:
        by_video.setdefault(m.video_b, []).append(m)
    rows = {r.video_id: r for r in refs}
    results = []
    for vid, ms in by_video.items():
        ms.sort(key=lambda m: m.b_start_s)
        row = rows[vid]
        segs = [Segment(m.b_start_s, m.b_end_s, m.score) for m in ms]
        spans = sorted((m.b_start_s, m.b_end_s) for m in ms)
        on = 0.0
        cur = None
        for lo, hi in spans:
            if cur is None or lo > cur[1]:
                on += 0.0 if cur is None else cur[1] - cur[0]
                cur = [lo, hi]
            else:
                cur[1] = max(cur[1], hi)
        on += 0.0 if cur is None else cur[1] - cur[0]
        best = max(ms, key=lambda m: m.score)
        results.append(
            VideoResult(
                video_id=vid,
                video=row.path,
                present=True,
                first_seen_s=ms[0].b_start_s,
                duration_s=round(on, 4),
                segments=segs,
                best_s=best.b_start_s,
                score=best.score,
                video_duration_s=float(row.duration_s or 0.0),
                match=best.score,
                segment_sources=[(m.a_start_s, m.a_end_s) for m in ms],
            )
        )
    results.sort(key=lambda r: (-r.duration_s, r.video))
    return QueryResult(
        query=f"like {os.path.basename(p)}",
        kind="video",
        threshold=basis.level,
        results=results[:top] if top else results,
        rule=f"shared footage: aligned samples at whitened cosine >= {basis.level:.4f} (versions matching)",
        videos_searched=len(refs) - (own is not None),
    )
