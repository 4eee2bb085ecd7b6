"""Verify a store (do the catalog and the vector file agree, and is each sound on its own?) and
prune it (forget videos whose files are gone)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..encoder import ModelSpec
from ..errors import StoreError
from . import vectors as vecfile
from .layout import THUMBS, VECTORS
from .reader import read_connection, read_meta
from .writer import Writer


@dataclass
class CheckReport:
    """``problems`` make the store inconsistent (each says what to do); ``notes`` do not."""

    store: str
    videos: int = 0
    frames: int = 0
    vectors: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(store_dir: str | os.PathLike[str]) -> CheckReport:
    """Compare ``catalog.duckdb`` with ``frames.faiss`` and look for damage in each.

    Raises:
        StoreNotFound: no archive there.
    """
    root = Path(store_dir)
    rep = CheckReport(store=str(root.resolve()))
    with read_connection(root) as con:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        rep.videos = con.execute("SELECT count(*) FROM videos").fetchall()[0][0]
        frame_ids = np.asarray(con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"], np.int64)
        rep.frames = len(frame_ids)
        dup_frames = con.execute("SELECT count(*) FROM (SELECT frame_id FROM frames GROUP BY 1 HAVING count(*) > 1)").fetchall()[0][0]
        orphan_frames = con.execute(
            "SELECT count(*) FROM frames f WHERE NOT EXISTS (SELECT 1 FROM videos v WHERE v.video_id = f.video_id)"
        ).fetchall()[0][0]
        no_shot = con.execute(
            "SELECT count(*) FROM frames f WHERE NOT EXISTS (SELECT 1 FROM shots s WHERE s.shot_id = f.shot_id)"
        ).fetchall()[0][0]
        empty_videos = con.execute(
            "SELECT count(*) FROM videos v WHERE NOT EXISTS (SELECT 1 FROM frames f WHERE f.video_id = v.video_id)"
        ).fetchall()[0][0]
        paths = [r[0] for r in con.execute("SELECT path FROM videos").fetchall()]
    if dup_frames:
        rep.problems.append(f"{dup_frames} frame id(s) appear twice in the catalog; run `archive index` to reconcile.")
    if orphan_frames:
        rep.problems.append(f"{orphan_frames} frame row(s) belong to no video; run `archive index` to reconcile.")
    if no_shot:
        rep.problems.append(f"{no_shot} frame row(s) point to no shot; re-index their videos.")
    if empty_videos:
        rep.notes.append(f"{empty_videos} video(s) have no frames (nothing decodable).")

    vec_path = root / VECTORS
    if not vec_path.exists():
        if rep.frames:
            rep.problems.append(
                f"the vector file {vec_path} is missing while the catalog lists {rep.frames} frames: "
                "run `archive index` on the same folders to re-embed them."
            )
        return _finish(rep, paths, root)
    try:
        ids, vecs, _owner = vecfile.map_file(vec_path)
    except StoreError as exc:
        rep.problems.append(str(exc))
        return _finish(rep, paths, root)
    rep.vectors = len(ids)
    dim = vecs.shape[1]
    if dim != int(meta.get("dim", dim)):
        rep.problems.append(f"the vector file holds {dim}-d vectors, the catalog says {meta['dim']}-d.")
    missing = np.setdiff1d(frame_ids, ids)
    extra = np.setdiff1d(ids, frame_ids)
    if len(missing):
        with read_connection(root) as con:
            con.register("m", {"frame_id": missing})
            affected = con.execute(
                "SELECT DISTINCT v.path FROM frames f JOIN m USING (frame_id) JOIN videos v USING (video_id) ORDER BY 1"
            ).fetchall()
        example = f" (e.g. {affected[0][0]})" if affected else ""
        rep.problems.append(
            f"{len(missing)} frame(s) of {len(affected)} video(s) have no vector{example}: "
            "run `archive index` on their folders to re-embed them."
        )
    if len(extra):
        rep.notes.append(
            f"{len(extra)} vector(s) belong to no catalog frame (left by an interrupted or replacing commit): "
            "harmless, readers ignore them and the next `archive index` run drops them."
        )
    if len(np.unique(ids)) != len(ids):
        rep.problems.append("the vector file repeats some ids: delete it and run `archive index` to re-embed.")
    if len(ids):
        sample = vecs[np.linspace(0, len(ids) - 1, min(len(ids), 2000)).astype(np.int64)]
        norms = np.linalg.norm(sample, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1) > 1e-3):
            rep.problems.append("some vectors are not unit length (damaged file): delete it and run `archive index`.")
    return _finish(rep, paths, root)


def _check_thumbnails(rep: CheckReport, root: Path) -> None:
    """Thumbnails must lie inside thumbs.bin; frames without one are noted (the next index run adds them)."""
    with read_connection(root) as con:
        none, end = con.execute(
            "SELECT count(*) FILTER (WHERE thumb_bytes IS NULL), coalesce(max(thumb_offset + thumb_bytes), 0) FROM frames"
        ).fetchall()[0]
        short_videos = con.execute(
            "SELECT count(DISTINCT video_id) FROM frames WHERE thumb_bytes IS NULL").fetchall()[0][0]
    size = (root / THUMBS).stat().st_size if (root / THUMBS).exists() else 0
    if end > size:
        rep.problems.append(
            f"the thumbnail file {root / THUMBS} is shorter than the catalog says ({size} of {end} bytes): "
            "the search page shows no picture for some frames; delete the store's thumbnails by re-indexing "
            "those folders into a new store."
        )
    if none:
        rep.notes.append(
            f"{none} frame(s) of {short_videos} video(s) have no thumbnail yet (indexed by an older version): "
            "run `archive index` on their folders to add them."
        )


def _finish(rep: CheckReport, paths: list[str], root: Path) -> CheckReport:
    _check_thumbnails(rep, root)
    gone = [p for p in paths if not os.path.exists(p)]
    if gone:
        rep.notes.append(
            f"{len(gone)} indexed file(s) no longer exist on disk, e.g. {gone[0]} (still searchable; "
            "`archive prune` removes them)."
        )
    for leftover in sorted(root.glob(f"{VECTORS}.*")):
        rep.notes.append(
            f"extra file {leftover.name}: left by an interrupted write or a repair (safe to delete), "
            "or a write in progress."
        )
    return rep


def prune(store_dir: str | os.PathLike[str], dry_run: bool = False) -> list[str]:
    """Remove indexed videos whose files no longer exist (rows, shots, label rows, vectors).

    Returns:
        The paths removed (or that would be, with ``dry_run``).

    Raises:
        StoreNotFound: no archive there.
        StoreLocked: an index run is writing.
    """
    meta = read_meta(store_dir)
    with Writer(store_dir) as w:
        with read_connection(store_dir) as con:
            paths = [r[0] for r in con.execute("SELECT path FROM videos ORDER BY path").fetchall()]
        gone = [p for p in paths if not os.path.exists(p)]
        if gone and not dry_run:
            w.attach(ModelSpec(meta["model"], meta["pretrained"]), int(meta["dim"]))
            w.remove_videos(gone)
    return gone
