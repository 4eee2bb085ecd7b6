"""Schema migrations, on real stores written by old versions of the program.

``tests/data/stores/<name>/`` holds the catalog and vector file that an old commit wrote when it
indexed ``tree.avi`` (see ``tests/data/stores/README.md``: commit, command, clip). Each test works
on a copy in ``tmp_path``; the fixtures themselves are never opened for writing.

The video paths inside a fixture are absolute paths of the machine that made it (a temporary
folder, deleted since), so on any machine they are "missing": the upgrade is run by indexing an
empty folder, which embeds nothing and reports those paths as missing. The thumbnail test points
the catalog's path at a copy of the clip first, as if the files were where they were indexed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import faiss
import numpy as np
import pytest

from archive import Archive

# The fixtures were written by DuckDB 2.0.1; older DuckDB versions need not read its files.
pytestmark = pytest.mark.skipif(
    int(duckdb.__version__.split(".")[0]) < 2,
    reason=f"the fixture catalogs need DuckDB 2 to read (installed: {duckdb.__version__})",
)
from indexer.errors import StoreError
from indexer.store import SCHEMA_VERSION

DATA = Path(__file__).parent / "data"
STORES = DATA / "stores"
TREE = DATA / "tree.avi"

# What each fixture holds, as its README describes it (checked first, so a damaged or replaced
# fixture is named as such rather than blamed on the migration).
FIXTURES: dict[str, dict[str, Any]] = {
    # 42495b3: the v1 schema that _migrate_1_to_2 was written against (no shots, no labels).
    "v1": {"commit": "42495b3", "version": 1, "videos": 1, "frames": 58, "shots": False, "labels": []},
    # fc1eaaa: the last commit writing v2 (real shots, labels).
    "v2": {"commit": "fc1eaaa", "version": 2, "videos": 1, "frames": 58, "shots": True, "labels": ["leaves", "tree"]},
    # 7c6f1da: the last commit writing v1; it already has shots (since 59ce3bb) and labels.
    "v1-shots": {
        "commit": "7c6f1da",
        "version": 1,
        "videos": 1,
        "frames": 58,
        "shots": True,
        "labels": ["leaves", "tree"],
    },
    # 98deb9d: the last commit writing v3 (thumbnails; one vector file, frames.faiss).
    "v3": {
        "commit": "98deb9d",
        "version": 3,
        "videos": 1,
        "frames": 58,
        "shots": True,
        "labels": ["leaves", "tree"],
        "thumbs": True,
    },
}

# Catalogs written by 59ce3bb and 7c6f1da say schema version 1 but already have the shots table
# and frames.shot_id: the 1 -> 2 migration must keep them (it used to fail creating them again).
ALL = list(FIXTURES)
UPGRADABLE = list(FIXTURES)


# -- helpers ------------------------------------------------------------------------------------


def _copy_fixture(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / f"store-{name}"
    shutil.copytree(STORES / name, dest)
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["catalog.duckdb", "frames.faiss"] + (["thumbs.bin"] if FIXTURES[name].get("thumbs") else [])
    return dest


def _tables(con: Any) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


# The same statements run on the old catalog (duckdb, read-only) and on the upgraded one (a.sql).
Q_VIDEOS = (
    "SELECT video_id, path, name, size_bytes, mtime, fingerprint, duration_s, fps, width, height, "
    "codec, n_frames, sample_fps, decoded_frames FROM videos ORDER BY video_id"
)
Q_FRAMES = "SELECT frame_id, video_id, ts_s, end_s FROM frames ORDER BY frame_id"
Q_FRAME_SHOTS = "SELECT frame_id, shot_id FROM frames ORDER BY frame_id"
Q_SHOTS = "SELECT shot_id, video_id, start_s, end_s, kind FROM shots ORDER BY shot_id"
Q_LABELS = "SELECT label, prompts, threshold, created_at FROM labels ORDER BY label"
Q_SEGMENTS = "SELECT label, video_id, start_s, end_s, peak_score FROM segments ORDER BY label, video_id, start_s"
Q_VIDEO_LABELS = (
    "SELECT video_id, label, present, first_seen_s, duration_s, n_segments, best_s, score "
    "FROM video_labels ORDER BY video_id, label"
)


def _before(store: Path) -> dict[str, Any]:
    """The old catalog as it is, read with duckdb (read-only: the copy is not changed)."""
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    try:
        tables = _tables(con)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        snap: dict[str, Any] = {
            "version": int(meta["schema_version"]),
            "meta": {k: v for k, v in meta.items() if k != "schema_version"},
            "videos": con.execute(Q_VIDEOS).fetchall(),
            "frames": con.execute(Q_FRAMES).fetchall(),
            "shots": con.execute(Q_SHOTS).fetchall() if "shots" in tables else None,
            "frame_shots": con.execute(Q_FRAME_SHOTS).fetchall() if "shots" in tables else None,
            "labels": con.execute(Q_LABELS).fetchall() if "labels" in tables else [],
            "segments": con.execute(Q_SEGMENTS).fetchall() if "segments" in tables else [],
            "video_labels": con.execute(Q_VIDEO_LABELS).fetchall() if "video_labels" in tables else [],
        }
        frame_cols = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'frames'"
            ).fetchall()
        }
        snap["has_thumb_columns"] = bool(frame_cols & {"thumb_offset", "thumb_bytes"})
    finally:
        con.close()
    return snap


def _rows(a: Archive, query: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in a.sql(query).rows]


def _vectors(store: Path) -> dict[int, np.ndarray]:
    """frame id -> vector, read with FAISS: from frames.faiss (schema 3 and older) or from every
    vector segment (schema 4)."""
    files = (
        [store / "frames.faiss"] if (store / "frames.faiss").exists() else sorted((store / "vectors").glob("*.faiss"))
    )
    out: dict[int, np.ndarray] = {}
    for path in files:
        index = faiss.read_index(str(path))
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        flat = faiss.downcast_index(index.index)
        vecs = flat.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        assert len(set(ids.tolist()) | set(out)) == len(ids) + len(out), f"repeated ids in {path.name}"
        out.update({int(i): np.asarray(v, np.float32).copy() for i, v in zip(ids, vecs)})
    return out


def _check_fixture(name: str, snap: dict[str, Any], vectors: dict[int, np.ndarray]) -> None:
    want = FIXTURES[name]
    assert snap["version"] == want["version"]
    assert snap["meta"]["model"] == "ViT-S-32-alt" and snap["meta"]["pretrained"] == "none"
    assert len(snap["videos"]) == want["videos"] and len(snap["frames"]) == want["frames"]
    assert all(os.path.isabs(v[1]) and v[2] == "tree.avi" for v in snap["videos"])
    assert (snap["shots"] is not None) == want["shots"]
    assert [lab[0] for lab in snap["labels"]] == want["labels"]
    assert snap["has_thumb_columns"] == bool(want.get("thumbs")), "only v3 fixtures have thumbnails"
    assert sorted(vectors) == [f[0] for f in snap["frames"]], "catalog and vector file of the fixture disagree"


@pytest.fixture(scope="module")
def tree_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frame of tree.avi (the clip every fixture indexed), at about 10 s, as a PNG."""
    from PIL import Image

    from indexer.media.decode import sample_frames

    frame = next(f for f in sample_frames(TREE, 1.0) if f.ts_s >= 10.0)
    out = tmp_path_factory.mktemp("example") / "tree_10s.png"
    Image.fromarray(frame.rgb).save(out)
    return out


def _upgrade(
    name: str, tmp_path: Path, encoder: Any
) -> tuple[Archive, Path, dict[str, Any], dict[int, np.ndarray], Any]:
    """Copy the fixture, read it as it is, and upgrade it with `index` on an empty folder."""
    store = _copy_fixture(name, tmp_path)
    before, vectors = _before(store), _vectors(store)
    before["vector_file"] = (store / "frames.faiss").read_bytes()
    before["thumbs_bin"] = (store / "thumbs.bin").read_bytes() if (store / "thumbs.bin").exists() else None
    _check_fixture(name, before, vectors)
    empty = tmp_path / "nothing-to-index"
    empty.mkdir()
    a = Archive(store, encoder=encoder)
    report = a.index([empty])
    return a, store, before, vectors, report


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_old_store_is_refused_by_readers_until_indexed(name, tmp_path, encoder, tree_png):
    """Readers do not migrate: info and search name the old schema and say to run `archive index`,
    and leave the store as it was."""
    store = _copy_fixture(name, tmp_path)
    version = FIXTURES[name]["version"]
    catalog_bytes = (store / "catalog.duckdb").read_bytes()
    a = Archive(store, encoder=encoder)
    for read in (a.info, lambda: a.search(image=tree_png), lambda: a.search("a tree")):
        with pytest.raises(StoreError) as err:
            read()
        msg = str(err.value)
        assert f"schema version {version}" in msg and "older" in msg, msg
        assert "archive index" in msg, msg
    assert _before(store)["version"] == version
    assert (store / "catalog.duckdb").read_bytes() == catalog_bytes


@pytest.mark.parametrize("name", UPGRADABLE)
def test_index_upgrades_in_place_without_reembedding(name, tmp_path, encoder):
    """`index` on an empty folder upgrades the store: same videos, frames, ids, times and vectors;
    shots as expected; no thumbnails yet; labels and their answers kept; `check` is clean."""
    a, store, before, vectors, report = _upgrade(name, tmp_path, encoder)
    old_paths = [v[1] for v in before["videos"]]

    # What the run reports: nothing to index; the fixture's (foreign) paths are missing, which the
    # run does not say (they are not in the folder it indexed) and `archive check` does.
    assert report.ok and report.files_seen == 0
    assert (report.indexed, report.skipped, report.failed, report.thumbnails_added) == (0, 0, 0, 0)
    gone = sorted(p for p in old_paths if not os.path.exists(p))
    assert gone and report.missing == []
    assert any(f"{len(gone)} indexed file(s) no longer exist" in n for n in a.check().notes)
    assert report.repaired == [] and report.damaged_file is None

    info = a.info()
    assert info.schema_version == SCHEMA_VERSION
    assert (info.videos, info.frames, info.vectors) == (len(before["videos"]), len(before["frames"]), len(vectors))
    assert (info.model, info.pretrained, info.dim) == ("ViT-S-32-alt", "none", 256)
    assert _rows(a, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    # speech (v10): every video indexed before is "not transcribed" (NULL), so `--speech` hears it
    assert _rows(a, "SELECT count(*) FROM videos WHERE speech_lines IS NULL AND sound_s IS NULL") == [
        (len(before["videos"]),)
    ]
    assert _rows(a, "SELECT count(*) FROM speech") == [(0,)] == _rows(a, "SELECT count(*) FROM speech_words")
    # sound fingerprints (v11): none yet (NULL); the next index run of their folders adds them
    assert _rows(a, "SELECT count(*) FROM videos WHERE sound_hashes IS NULL") == [(len(before["videos"]),)]
    assert _rows(a, "SELECT count(*) FROM sound_hashes") == [(0,)]

    # Same videos (count and paths), same frame ids and timestamps.
    assert _rows(a, Q_VIDEOS) == before["videos"]
    assert _rows(a, Q_FRAMES) == before["frames"]

    # Nothing re-embedded or rewritten: the old vector file became segment 0 as it was, byte for byte.
    assert not (store / "frames.faiss").exists()
    assert sorted(p.name for p in (store / "vectors").iterdir()) == ["seg-00000000.faiss"]
    assert (store / "vectors" / "seg-00000000.faiss").read_bytes() == before["vector_file"]
    after = _vectors(store)
    assert sorted(after) == sorted(vectors)
    for fid, vec in vectors.items():
        np.testing.assert_array_equal(after[fid], vec, err_msg=f"frame {fid} was re-embedded or changed")

    # Shots: kept when the old store had them; else one content shot per video over [0, duration].
    shots = _rows(a, Q_SHOTS)
    if before["shots"] is not None:
        assert shots == before["shots"]
        assert _rows(a, Q_FRAME_SHOTS) == before["frame_shots"]
    else:
        assert sorted((s[1], s[2], s[3], s[4]) for s in shots) == sorted(
            (v[0], 0.0, v[6], "content") for v in before["videos"]
        )
    assert _rows(
        a,
        "SELECT count(*) FROM frames f LEFT JOIN shots s USING (shot_id) "
        "WHERE s.shot_id IS NULL OR s.video_id <> f.video_id",
    ) == [(0,)]
    assert len({s[0] for s in shots}) == len(shots), "shot ids repeat"

    # Thumbnails: kept as they were (v3); none for older stores until their videos are indexed again.
    if FIXTURES[name].get("thumbs"):
        assert _rows(a, "SELECT count(*) FROM frames WHERE thumb_bytes > 0") == [(len(before["frames"]),)]
        assert (store / "thumbs.bin").read_bytes() == before["thumbs_bin"]
    else:
        assert _rows(a, "SELECT count(*) FROM frames WHERE thumb_offset IS NOT NULL OR thumb_bytes IS NOT NULL") == [
            (0,)
        ]
        assert not (store / "thumbs.bin").exists()

    # Labels and their materialised answers survive as they were.
    assert _rows(a, Q_LABELS) == before["labels"]
    assert _rows(a, Q_SEGMENTS) == before["segments"]
    assert _rows(a, Q_VIDEO_LABELS) == before["video_labels"]
    assert sorted(lab.name for lab in a.labels()) == FIXTURES[name]["labels"]
    # v6: no label is calibrated yet, and each answer says which rule gave it (the label's own).
    assert all(lab.calibration is None and lab.rule in ("presence", "threshold") for lab in a.labels())
    assert _rows(
        a,
        "SELECT count(*) FROM video_labels v JOIN labels l USING (label) WHERE v.rule IS DISTINCT FROM "
        "CASE WHEN l.threshold IS NULL THEN 'presence' ELSE 'threshold' END",
    ) == [(0,)]
    assert _rows(a, "SELECT count(*) FROM labels WHERE calibrated_at IS NOT NULL OR calib_precision IS NOT NULL") == [
        (0,)
    ]

    # v9: the upgrade run compared every old video for shared footage, from the stored vectors.
    assert report.versions_compared == len(before["videos"])
    assert _rows(a, "SELECT count(*) FROM videos WHERE matched IS NOT TRUE") == [(0,)]
    assert a.versions().not_compared == 0

    # The catalog and the vectors agree; notes (no thumbnails yet, files gone) are fine.
    check = a.check()
    assert check.ok, check.problems
    assert (check.videos, check.frames, check.vectors) == (len(before["videos"]), len(before["frames"]), len(vectors))

    # Upgrading is done once: a second run changes nothing.
    again = a.index([tmp_path / "nothing-to-index"])
    assert (again.indexed, again.skipped, again.failed, again.versions_compared) == (0, 0, 0, 0)
    assert _rows(a, Q_FRAMES) == before["frames"] and _rows(a, Q_SHOTS) == shots


@pytest.mark.parametrize("name", UPGRADABLE)
def test_upgraded_store_answers_a_query_by_image(name, tmp_path, encoder, tree_png):
    """A frame of the same clip finds the fixture's video, from the old vectors alone."""
    a, _, before, _, _ = _upgrade(name, tmp_path, encoder)
    [q] = a.search(image=tree_png)
    (path,) = [v[1] for v in before["videos"]]
    duration = before["videos"][0][6]
    assert [r.video for r in q.results] == [path]
    hit = q.results[0]
    assert hit.present and hit.first_seen_s is not None and hit.segments
    assert hit.score > 0.99  # the example is one of the sampled frames (random weights, same footage)
    assert 0.0 <= hit.best_s <= duration
    assert all(0.0 <= s.start_s < s.end_s <= duration + 1e-6 for s in hit.segments)


@pytest.mark.parametrize("name", UPGRADABLE)
def test_reindex_after_upgrade_adds_thumbnails_only(name, tmp_path, encoder):
    """With the file where it was indexed, the next `index` of its folder decodes it again for the
    thumbnails only: skipped (unchanged), nothing re-embedded, same frame ids and times."""
    store = _copy_fixture(name, tmp_path)
    before, vectors = _before(store), _vectors(store)
    _check_fixture(name, before, vectors)
    # Put the clip where this catalog says it is: a copy here, and the catalog's path rewritten to
    # it (as if the fixture had been made on this machine). The content is the same file.
    folder = tmp_path / "videos"
    folder.mkdir()
    clip = folder / "tree.avi"
    shutil.copy(TREE, clip)
    vid = before["videos"][0][0]
    assert before["videos"][0][5] is not None  # fingerprint: how an unchanged file is recognised
    con = duckdb.connect(str(store / "catalog.duckdb"))
    try:
        con.execute("UPDATE videos SET path = ? WHERE video_id = ?", [str(clip), vid])
    finally:
        con.close()

    a = Archive(store, encoder=encoder)
    report = a.index([folder])
    assert report.ok and report.missing == []
    assert (report.indexed, report.skipped, report.failed) == (0, 1, 0)
    assert report.thumbnails_added == (0 if FIXTURES[name].get("thumbs") else len(before["frames"]))

    assert a.info().schema_version == SCHEMA_VERSION
    assert _rows(a, Q_FRAMES) == before["frames"]
    after = _vectors(store)
    assert sorted(after) == sorted(vectors)
    for fid, vec in vectors.items():
        np.testing.assert_array_equal(after[fid], vec)
    rows = _rows(a, "SELECT thumb_offset, thumb_bytes FROM frames ORDER BY frame_id")
    assert all(off is not None and n and n > 0 for off, n in rows)
    assert (store / "thumbs.bin").stat().st_size >= max(off + n for off, n in rows)
    assert _rows(a, Q_LABELS) == before["labels"] and _rows(a, Q_VIDEO_LABELS) == before["video_labels"]
    check = a.check()
    assert check.ok, check.problems
    assert not any("thumbnail" in n for n in check.notes), check.notes


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
@pytest.mark.parametrize("name", UPGRADABLE)
def test_new_video_after_upgrade_gets_fresh_ids_and_labels_are_recomputed(name, tmp_path, encoder, tree_png):
    """After the upgrade, indexing a new file adds it beside the old videos (no id clashes with
    migrated frames or shots) and the saved labels are recomputed for every video."""
    a, store, before, vectors, _ = _upgrade(name, tmp_path, encoder)
    folder = tmp_path / "new"
    folder.mkdir()
    shutil.copy(TREE, folder / "tree_again.avi")
    report = a.index([folder])
    assert report.ok and (report.indexed, report.skipped) == (1, 0)

    videos = _rows(a, "SELECT video_id, path FROM videos ORDER BY video_id")
    assert videos[: len(before["videos"])] == [v[:2] for v in before["videos"]]
    (new_id, new_path) = videos[-1]
    assert new_path == str(folder / "tree_again.avi") and new_id not in {v[0] for v in before["videos"]}

    # Old frames untouched; the new ones have new ids, vectors and thumbnails.
    frames = _rows(a, Q_FRAMES)
    assert [f for f in frames if f[1] != new_id] == before["frames"]
    new_frames = [f[0] for f in frames if f[1] == new_id]
    assert new_frames and min(new_frames) > max(vectors)
    after = _vectors(store)
    for fid, vec in vectors.items():
        np.testing.assert_array_equal(after[fid], vec)
    assert set(after) == {f[0] for f in frames}
    assert _rows(a, f"SELECT count(*) FROM frames WHERE video_id = {new_id} AND thumb_bytes > 0") == [
        (len(new_frames),)
    ]

    # Shot ids stay unique; every frame's shot belongs to its video.
    shots = _rows(a, Q_SHOTS)
    assert len({s[0] for s in shots}) == len(shots)
    assert _rows(
        a,
        "SELECT count(*) FROM frames f LEFT JOIN shots s USING (shot_id) "
        "WHERE s.shot_id IS NULL OR s.video_id <> f.video_id",
    ) == [(0,)]

    # Labels: every saved label has an answer for every video, old ones included.
    labels = FIXTURES[name]["labels"]
    assert sorted(r[0] for r in _rows(a, Q_LABELS)) == labels
    answered = _rows(a, "SELECT video_id, label FROM video_labels ORDER BY video_id, label")
    assert answered == [(v[0], lab) for v in videos for lab in labels]
    assert a.check().ok

    # Both copies of the footage are searchable. (Not asserted: `present`. The image rule's chance
    # level is measured between frames of different shots, which here are the same footage.)
    [q] = a.search(image=tree_png)
    assert {r.video for r in q.results} == {v[1] for v in videos}
    assert all(r.score > 0.99 for r in q.results)
