"""Verify a store (do the catalog and the vector file agree, and is each sound on its own?) and
prune it (forget videos whose files are gone)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.errors import StoreError

from . import ivf as ivfmod
from . import segments, shared_footage, vectorview
from . import vectors as vecfile
from .ivf import lists_problem
from .layout import SEGMENTS_DIR, THUMBS, VECTORS
from .reader import Reader
from .writer import Writer


@dataclass
class CheckReport:
    """``problems`` make the store inconsistent (each says what to do); ``notes`` do not."""

    store: str
    videos: int = 0
    frames: int = 0
    vectors: int = 0  # rows in the vector segments (live and dead)
    segments: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # with repair: what was done

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(store_dir: str | os.PathLike[str], repair: bool = False) -> CheckReport:
    """Compare the catalog with every vector segment and look for damage in each.

    Args:
        repair: first make the store consistent as the writer does when it opens it: delete orphan
            segment files, move damaged ones aside, and drop the videos whose vectors are lost (so
            the next ``archive index`` of their folders re-embeds them). Needs the writer's lock.

    Raises:
        StoreNotFound: no archive there.
        StoreLocked: ``repair`` while an index run is writing.
    """
    root = Path(store_dir)
    done: list[str] = []
    if repair:
        Reader(root).meta()  # StoreNotFound before taking the lock
        with Writer(root) as w:
            w.attach_existing()
            lists_fixed = w.layer.repair_lists()
            done = (
                [f"deleted {n}" for n in w.removed_files]
                + (["wrote the IVF index's lists file again"] if lists_fixed else [])
                + ([f"moved a damaged vector file to {w.damaged_file}"] if w.damaged_file else [])
                + [f"dropped {p} (its vectors were lost): index it again to re-embed it" for p in w.repaired]
            )
    rep = CheckReport(store=str(root.resolve()), repaired=done)
    with Reader(root).connection() as con:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        rep.videos = con.execute("SELECT count(*) FROM videos").fetchall()[0][0]
        frame_ids = np.asarray(con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"], np.int64)
        rep.frames = len(frame_ids)
        dup_frames = con.execute(
            "SELECT count(*) FROM (SELECT frame_id FROM frames GROUP BY 1 HAVING count(*) > 1)"
        ).fetchall()[0][0]
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

    with Reader(root).connection() as con:
        refs = segments.registered(con)
        ivf_ref = ivfmod.current(con)
        lists_ref = ivfmod.current_lists(con)
    rep.segments = len(refs)
    dim = int(meta.get("dim", 0))
    all_ids = [np.zeros(0, np.int64)]
    for ref in refs:
        problem = segments.verify_header(root, ref, dim)
        if problem is not None:
            rep.problems.append(
                f"{problem}: run `archive check --repair`, then `archive index` on the same "
                "folders to re-embed what it held."
            )
            continue
        ids, vecs, _owner = vecfile.map_file(ref.path(root)) if ref.n_vectors else (np.zeros(0, np.int64), None, None)
        rep.vectors += len(ids)
        if len(ids) and (ids.min() < ref.min_frame_id or ids.max() > ref.max_frame_id):
            rep.problems.append(
                f"the vector segment {ref.file} holds ids outside the range the catalog records: "
                "run `archive check --repair`."
            )
        if len(np.unique(ids)) != len(ids):
            rep.problems.append(f"the vector segment {ref.file} repeats some ids: run `archive check --repair`.")
        if len(ids):
            assert vecs is not None  # rows were read from the file
            sample = np.asarray(vecs[np.linspace(0, len(ids) - 1, min(len(ids), 2000)).astype(np.int64)], np.float32)
            norms = np.linalg.norm(sample, axis=1)
            if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1) > 1e-3):
                rep.problems.append(
                    f"the vector segment {ref.file} holds vectors that are not unit length (damaged): "
                    "run `archive check --repair`."
                )
        if ref.bg_key is not None and not _bg_ok(root, ref):
            rep.notes.append(
                f"the background-term file of {ref.file} is missing or short: queries compute the "
                "term themselves (slower); `archive optimize` does not need it."
            )
        all_ids.append(np.asarray(ids, np.int64))
    ranges = sorted((r.min_frame_id, r.max_frame_id) for r in refs if r.n_vectors)
    if any(b[0] <= a[1] for a, b in zip(ranges, ranges[1:])):
        rep.problems.append("two vector segments claim the same frame ids: run `archive check --repair`.")
    ids = np.concatenate(all_ids)
    missing = np.setdiff1d(frame_ids, ids)
    extra = np.setdiff1d(ids, frame_ids)
    if len(missing):
        with Reader(root).connection() as con:
            con.register("m", {"frame_id": missing})
            affected = con.execute(
                "SELECT DISTINCT v.path FROM frames f JOIN m USING (frame_id) JOIN videos v USING (video_id) ORDER BY 1"
            ).fetchall()
        example = f" (e.g. {affected[0][0]})" if affected else ""
        rep.problems.append(
            f"{len(missing)} frame(s) of {len(affected)} video(s) have no vector{example}: run `archive check "
            "--repair`, then `archive index` on their folders to re-embed them."
        )
    if len(extra):
        rep.notes.append(
            f"{len(extra)} vector row(s) belong to no catalog frame (replaced or removed videos, or an "
            "interrupted commit): harmless, readers skip them; `archive optimize` reclaims the space."
        )
    _check_ivf(root, refs, ivf_ref, dim, rep)
    _check_lists(root, refs, ivf_ref, lists_ref, rep)
    _check_versions(root, rep, repair)
    for p in segments.orphan_files(
        root, refs, [ivf_ref.file if ivf_ref else None, lists_ref.file if lists_ref else None]
    ):
        rep.notes.append(
            f"extra file vectors/{p.name}: left by an interrupted write or merge (the next "
            "`archive index`, `archive optimize` or `archive check --repair` deletes it)."
        )
    return _finish(rep, paths, root)


def _check_versions(root: Path, rep: CheckReport, repair: bool) -> None:
    """``matches`` and ``versions`` agree with the catalog and, on a sample, with the vectors
    (:func:`.shared_footage.verify`); with ``repair``, what disagrees is regrouped or compared again."""
    with Reader(root).connection() as con:
        problems, videos = shared_footage.verify(con, lambda ids: Reader(root).frames(ids))
        todo = con.execute("SELECT count(*) FROM videos WHERE matched IS NULL").fetchall()[0][0]
    if problems and repair:
        with Writer(root) as w:
            w.footage.repair(videos)
        rep.repaired.append(
            "matches: rows of missing videos and bad ranges dropped, versions regrouped"
            + (f", {len(videos)} video(s) to be compared again by the next `archive index`" if videos else "")
        )
        with Reader(root).connection() as con:
            problems, videos = shared_footage.verify(con, lambda ids: Reader(root).frames(ids))
            todo = con.execute("SELECT count(*) FROM videos WHERE matched IS NULL").fetchall()[0][0]
    rep.problems += problems
    if todo:
        rep.notes.append(
            f"{todo} video(s) not compared with the archive for shared footage yet (`archive versions`): "
            "the next `archive index` compares them from their stored vectors."
        )


def _check_ivf(
    root: Path, refs: list[segments.SegmentRef], ivf_ref: ivfmod.IvfRef | None, dim: int, rep: CheckReport
) -> None:
    """The IVF index is readable, every segment has its codes, and a sample of codes matches its
    vectors (the list each row is filed under is the one its vector is nearest to)."""
    if ivf_ref is None:
        return
    try:
        codec = ivfmod.IvfCodec.load(root, ivf_ref)
    except StoreError as exc:
        rep.problems.append(str(exc))
        return
    without = [r for r in refs if r.n_vectors and r.ivf_id != ivf_ref.ivf_id]
    if without:
        rep.notes.append(
            f"{len(without)} vector segment(s) have no codes in the IVF index: queries scan their "
            "frames exactly (slower); `archive optimize` encodes them."
        )
    for ref in refs:
        if not ref.n_vectors or ref.ivf_id != ivf_ref.ivf_id or segments.verify_header(root, ref, dim) is not None:
            continue
        codes = vectorview.read_codes(root, ref, codec.code_size)
        if codes is None:
            rep.problems.append(
                f"the IVF codes of {ref.file} are missing or short: run `archive optimize` to encode them again."
            )
            continue
        _ids, vecs, _owner = vecfile.map_file(ref.path(root))
        rows = np.linspace(0, ref.n_vectors - 1, min(ref.n_vectors, 200)).astype(np.int64)
        again = codec.encode(np.asarray(vecs[rows], np.float32))
        coarse = codec.coarse_size
        if np.mean(np.all(again[:, :coarse] == np.asarray(codes[rows])[:, :coarse], axis=1)) < 0.99:
            rep.problems.append(
                f"the IVF codes of {ref.file} do not match its vectors: run `archive optimize` to encode them again."
            )


def _check_lists(
    root: Path,
    refs: list[segments.SegmentRef],
    ivf_ref: ivfmod.IvfRef | None,
    lists_ref: ivfmod.ListsRef | None,
    rep: CheckReport,
) -> None:
    problem = lists_problem(root, refs, ivf_ref, lists_ref)
    if problem is not None:
        rep.problems.append(problem)
    elif ivf_ref is not None and lists_ref is None:
        rep.notes.append(
            "the IVF index has no lists file yet (made by an older version): queries and comparisons "
            "build the index from the codes (slower); `archive optimize` or the next `archive index` writes it."
        )


def _bg_ok(root: Path, ref: segments.SegmentRef) -> bool:
    try:
        return len(np.load(ref.bg_path(root), mmap_mode="r")) == ref.n_vectors
    except (OSError, ValueError):
        return False


def _check_thumbnails(rep: CheckReport, root: Path) -> None:
    """Thumbnails must lie inside thumbs.bin; frames without one are noted (the next index run adds them)."""
    with Reader(root).connection() as con:
        none, end = con.execute(
            "SELECT count(*) FILTER (WHERE thumb_bytes IS NULL), coalesce(max(thumb_offset + thumb_bytes), 0) FROM frames"
        ).fetchall()[0]
        short_videos = con.execute("SELECT count(DISTINCT video_id) FROM frames WHERE thumb_bytes IS NULL").fetchall()[
            0
        ][0]
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
    for leftover in sorted([*root.glob(f"{VECTORS}*"), *(root / SEGMENTS_DIR).glob("*.damaged-*")]):
        rep.notes.append(
            f"extra file {leftover.relative_to(root)}: a damaged vector file moved aside, or one left by an "
            "older version (safe to delete once you have looked at it)."
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
    Reader(store_dir).meta()  # StoreNotFound before taking the lock
    with Writer(store_dir) as w:
        with Reader(store_dir).connection() as con:
            paths = [r[0] for r in con.execute("SELECT path FROM videos ORDER BY path").fetchall()]
        gone = [p for p in paths if not os.path.exists(p)]
        if gone and not dry_run:
            w.attach_existing()
            w.remove_videos(gone)
    return gone
