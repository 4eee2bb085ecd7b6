"""Real processes: kill -9 an index run at named points, two writers, reads during a write.

The moments are controlled, not guessed: the test hook ``ARCHIVE_TEST_PAUSE=POINT[:N]=FILE``
(indexer/crashpoints.py) stops the index run the N-th time it reaches POINT and writes FILE; the test
then kills it (or deletes FILE to let it go on). So every kill lands where the test says, on a
machine of any speed.
"""

import json
import os
import signal
import time

import faiss
import numpy as np
import pytest
from gen.videos import Shot, make_video
from helpers import WAIT_S, env_for_cli, kill, paused_at, run_cli, start_cli, wait_for_pause

pytestmark = pytest.mark.slow  # every test runs the CLI in processes of its own (and kills some)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("many")
    for i in range(8):
        make_video(d / f"ad{i:02d}.mp4", [Shot(10 + i, 50), Shot(30 + i, 40), Shot(50 + i, 60)], "25")
    return d


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """Frames per video from one uninterrupted run."""
    root = tmp_path_factory.mktemp("ref")
    env = env_for_cli(root)
    assert run_cli(["index", folder, "-q"], env, timeout=300).returncode == 0
    rows = json.loads(
        run_cli(["sql", "SELECT name, n_frames FROM videos ORDER BY name", "--json"], env, timeout=300).stdout
    )
    return {r["name"]: r["n_frames"] for r in rows}


def vector_ids(store, registered_only=False, env=None):
    """The frame ids in the store's vector segment files (all files, or the registered ones)."""
    files = sorted((store / "vectors").glob("*.faiss")) if (store / "vectors").exists() else []
    if registered_only:
        rows = json.loads(run_cli(["sql", "SELECT file FROM vector_segments", "--json"], env, timeout=300).stdout)
        files = [store / "vectors" / r["file"] for r in rows]
    ids = []
    for f in files:
        index = faiss.read_index(str(f))  # kept alive while its id map is read
        ids += faiss.vector_to_array(index.id_map).tolist()
    return sorted(ids)


def state(env, store):
    """(check report, catalog frame ids, ids in every vector file, thumbs.bin size) of the store now."""
    chk = run_cli(["check", "--json"], env, timeout=300)
    rep = json.loads(chk.stdout)
    ids = json.loads(run_cli(["sql", "SELECT frame_id FROM frames", "--json"], env, timeout=300).stdout)
    cat = sorted(r["frame_id"] for r in ids)
    thumbs = (store / "thumbs.bin").stat().st_size if (store / "thumbs.bin").exists() else 0
    return rep, cat, vector_ids(store), thumbs


# Each round kills a run at one named point.
# (point, videos committed after the kill, what the vector files hold against the catalog)
ROUNDS = [
    ("embed.batch", 0, "same"),  # mid-video: nothing committed yet
    ("video.done", 0, "same"),  # a video finished, not committed
    ("commit.thumbs", 0, "same"),  # thumbnails appended, no vector or row
    ("segment.written", 0, "same"),  # a segment written under its temporary name only
    ("commit.vectors:2", 1, "more"),  # 1st commit whole; 2nd wrote its segment, not its rows
    ("commit.catalog", 2, "same"),  # the next video's rows are in: committed
    ("commit.vectors", 2, "more"),  # (the orphan of the round before last is deleted first)
    ("video.done:3", 4, "same"),  # two more committed, the third finished and lost
]


def test_kill_9_at_named_points_loses_and_doubles_nothing(folder, reference, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"  # commit after every video: many commit points to hit
    store = tmp_path / "store"
    done, thumbs_before = 0, 0
    for k, (point, after, vectors) in enumerate(ROUNDS):
        marker = tmp_path / f"paused{k}"
        p = start_cli(["index", folder, "-q"], paused_at(env, point, marker))
        assert wait_for_pause(p, marker) == f"{point.split(':')[0]} {point.split(':')[1] if ':' in point else 1}"
        kill(p)
        rep, cat, vec, thumbs = state(env, store) if (store / "catalog.duckdb").exists() else ({}, [], [], 0)
        if not rep:  # killed before the first commit created the catalog
            assert after == 0, point
            continue
        assert rep["ok"], (point, rep)  # the two stores agree after every crash
        assert rep["videos"] == after, (point, rep["videos"])  # landed where it was told to
        assert rep["videos"] >= done  # nothing committed is ever lost
        assert set(cat) <= set(vec)  # every catalog frame has its vector
        if vectors == "more":  # a segment file the catalog does not list: never read, deleted next time
            assert len(vec) > len(cat) and any("extra file vectors/" in n for n in rep["notes"])
            assert vector_ids(store, registered_only=True, env=env) == cat
        else:
            assert vec == cat
        if point == "commit.thumbs":
            assert thumbs > thumbs_before  # the pictures were written, nothing points at them yet
        if point == "segment.written":
            assert list((store / "vectors").glob("*.tmp")), "the segment's temporary file is there"
        done, thumbs_before = rep["videos"], thumbs
        assert run_cli(["info", "--json"], env, timeout=300).returncode == 0
    final = run_cli(["index", folder, "-q", "--json"], env, timeout=300)
    assert final.returncode == 0, final.stderr
    rep = json.loads(final.stdout)
    assert rep["skipped"] == done and rep["indexed"] == len(reference) - done
    rows = json.loads(
        run_cli(["sql", "SELECT name, n_frames FROM videos ORDER BY name", "--json"], env, timeout=300).stdout
    )
    assert {r["name"]: r["n_frames"] for r in rows} == reference  # nothing lost, nothing doubled
    chk, cat, vec, _ = state(env, store)
    assert chk["ok"] and not chk["notes"] and cat == vec and len(cat) == sum(reference.values())
    assert not list((store / "vectors").glob("*.tmp"))
    assert chk["segments"] < len(reference)  # the run's small segments were merged at its end


def test_kill_9_inside_a_merge_loses_and_doubles_nothing(folder, reference, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"
    store = tmp_path / "store"
    # Stop the first run in its end-of-run merge of the 8 one-video segments, new segment written.
    marker = tmp_path / "written"
    p = start_cli(["index", folder, "-q"], paused_at(env, "merge.written", marker))
    assert wait_for_pause(p, marker) == "merge.written 1"
    kill(p)
    rep, cat, vec, _ = state(env, store)
    assert rep["ok"] and rep["videos"] == len(reference) and rep["segments"] == len(reference)
    assert vector_ids(store, registered_only=True, env=env) == cat  # the old 8 are what readers use
    assert len(vec) == 2 * len(cat) and any("extra file vectors/" in n for n in rep["notes"])
    answers = run_cli(["search", "--image", frame_png(folder, tmp_path), "--json", "--top", "50"], env, timeout=300)
    before = [(r["video"], r["present"], r["segments"]) for r in json.loads(answers.stdout)["results"]]
    assert sum(present for _, present, _ in before) >= 1

    # `archive optimize` merges again; stop it after the registrations were swapped.
    marker = tmp_path / "swapped"
    p = start_cli(["optimize"], paused_at(env, "merge.swapped", marker))
    assert wait_for_pause(p, marker) == "merge.swapped 1"
    kill(p)
    rep, cat, vec, _ = state(env, store)
    assert rep["ok"] and rep["videos"] == len(reference) and rep["segments"] == 1
    assert vector_ids(store, registered_only=True, env=env) == cat  # the merged one, complete
    assert any("extra file vectors/" in n for n in rep["notes"])  # the old files, not yet deleted
    answers = run_cli(["search", "--image", frame_png(folder, tmp_path), "--json", "--top", "50"], env, timeout=300)
    assert [(r["video"], r["present"], r["segments"]) for r in json.loads(answers.stdout)["results"]] == before

    repaired = json.loads(run_cli(["check", "--repair", "--json"], env, timeout=300).stdout)
    # the run was killed before it compared its videos for versions: the next index run does that
    notes = [n for n in repaired["notes"] if "not compared with the archive" not in n]
    assert repaired["ok"] and not notes and any("deleted" in r for r in repaired["repaired"])
    assert vector_ids(store) == cat


def frame_png(folder, tmp_path):
    """A frame of ad03.mp4's second shot, as an example image."""
    from PIL import Image

    from indexer.media.decode import sample_frames

    path = tmp_path / "ad03.png"
    if not path.exists():
        frame = next(f for f in sample_frames(folder / "ad03.mp4", 2.0) if f.ts_s >= 2.5)
        Image.fromarray(frame.rgb).save(path)
    return path


def test_kill_after_a_replacing_commit_keeps_the_new_version_only(folder, reference, tmp_path):
    env = env_for_cli(tmp_path)
    store = tmp_path / "store"
    work = tmp_path / "videos"
    work.mkdir()
    make_video(work / "ad.mp4", [Shot(1, 50), Shot(2, 50)], "25")
    assert run_cli(["index", work, "-q"], env, timeout=300).returncode == 0
    _, old_ids, _, _ = state(env, store)
    make_video(work / "ad.mp4", [Shot(3, 40), Shot(4, 40), Shot(5, 40)], "25")  # the file changes
    marker = tmp_path / "paused"
    p = start_cli(["index", work, "-q"], paused_at(env, "commit.catalog", marker))
    assert wait_for_pause(p, marker) == "commit.catalog 1"
    kill(p)
    rep, cat, vec, _ = state(env, store)
    assert rep["ok"] and rep["videos"] == 1
    assert not set(cat) & set(old_ids)  # the catalog holds the new version only ...
    assert set(old_ids) <= set(vec)  # ... while the replaced vectors are still in the file
    again = json.loads(run_cli(["index", work, "-q", "--json"], env, timeout=300).stdout)
    assert again["skipped"] == 1 and again["indexed"] == 0
    rep, cat2, vec2, _ = state(env, store)
    assert rep["ok"] and cat2 == cat and set(old_ids) <= set(vec2)  # dead rows, skipped by readers
    assert run_cli(["optimize"], env, timeout=300).returncode == 0
    rep, cat3, vec3, _ = state(env, store)
    assert rep["ok"] and cat3 == cat and vec3 == cat  # optimize dropped them


def test_second_writer_exits_at_once_and_readers_keep_working(folder, reference, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"
    marker = tmp_path / "paused"
    first = start_cli(["index", folder, "-q"], paused_at(env, "commit.catalog:3", marker))
    try:
        assert wait_for_pause(first, marker) == "commit.catalog 3"  # 3 videos committed, lock held
        t0 = time.time()
        second = run_cli(["index", folder, "-q"], env, timeout=300)
        assert second.returncode == 1 and time.time() - t0 < 60
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        # readers see the three committed videos while the writer holds the lock
        info = run_cli(["info", "--json"], env, timeout=300)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["videos"] == 3
        q = run_cli(["sql", "SELECT count(DISTINCT video_id) AS n FROM frames", "--json"], env, timeout=300)
        assert json.loads(q.stdout) == [{"n": 3}]
        res = run_cli(["search", "anything", "--json", "--top", "50"], env, timeout=300)
        assert res.returncode == 0 and len(json.loads(res.stdout)["results"]) == 3
        marker.unlink()  # let the writer go on
        assert first.wait(timeout=WAIT_S) == 0, first.stderr.read()
        assert json.loads(run_cli(["info", "--json"], env, timeout=300).stdout)["videos"] == len(reference)
        res = run_cli(["search", "anything", "--json", "--top", "50"], env, timeout=300)
        assert len(json.loads(res.stdout)["results"]) == len(reference)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_pause_hook_rejects_an_unknown_point(tmp_path, folder):
    env = paused_at(env_for_cli(tmp_path), "nowhere", tmp_path / "m")
    p = run_cli(["index", folder / "ad00.mp4", "-q"], env, timeout=300)
    assert p.returncode != 0 and "ARCHIVE_TEST_PAUSE" in p.stderr


def test_vectors_and_catalog_agree_to_the_id(folder, reference, tmp_path):
    """The uninterrupted store: the catalog's frame ids are exactly the vector file's ids."""
    env = env_for_cli(tmp_path)
    assert run_cli(["index", folder, "-q"], env, timeout=300).returncode == 0
    rep, cat, vec, _ = state(env, tmp_path / "store")
    assert rep["ok"] and cat == vec and len(cat) == sum(reference.values())
    assert np.all(np.diff(cat) > 0)
