"""Real processes: kill -9 an index run at random moments, two writers, reads during a write."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from conftest import env_for_cli
from videos import Shot, make_video

ARCHIVE = [sys.executable, "-m", "archive.cli"]


def start(args, env):
    return subprocess.Popen(ARCHIVE + [str(a) for a in args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(args, env, timeout=300):
    return subprocess.run(ARCHIVE + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)


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
    assert run(["index", folder, "-q"], env).returncode == 0
    rows = json.loads(run(["sql", "SELECT name, n_frames FROM videos ORDER BY name", "--json"], env).stdout)
    return {r["name"]: r["n_frames"] for r in rows}


def wait_for_lock(store, proc, timeout=120):
    lock = store / "writer.lock"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if lock.exists() and lock.read_text().startswith("pid") and (store / "catalog.duckdb").exists():
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("index run never took the lock")


def committed_videos(store):
    """Videos in the catalog now (read-only; waits out a commit in progress)."""
    for _ in range(200):
        try:
            con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
        except duckdb.Error:
            time.sleep(0.02)
            continue
        try:
            return con.execute("SELECT count(*) FROM videos").fetchall()[0][0]
        except duckdb.Error:
            return 0  # tables not created yet
        finally:
            con.close()
    raise AssertionError("catalog stayed locked")


def test_kill_9_at_random_moments_loses_and_doubles_nothing(folder, reference, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"  # commit after every video: many commit points to hit
    store = tmp_path / "store"
    rng = random.Random(20261126)
    seen = []
    done = 0
    while done < len(reference) - 2:
        # kill once `target` videos are committed, plus a random delay: mid-video, mid-commit, anywhere
        target = min(done + rng.randint(1, 2), len(reference) - 1)
        p = start(["index", folder, "-q"], env)
        wait_for_lock(store, p)
        while p.poll() is None and committed_videos(store) < target:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        chk = run(["check", "--json"], env)
        rep = json.loads(chk.stdout)
        assert rep["ok"], rep  # the two stores agree after every crash
        assert rep["videos"] >= done  # nothing committed is ever lost
        done = rep["videos"]
        seen.append(done)
        info = run(["info", "--json"], env)
        assert info.returncode == 0, info.stderr
    assert any(0 < n < len(reference) for n in seen), seen  # the kills landed mid-run
    final = run(["index", folder, "-q", "--json"], env)
    assert final.returncode == 0, final.stderr
    rep = json.loads(final.stdout)
    assert rep["indexed"] + rep["skipped"] == len(reference)
    assert rep["skipped"] == seen[-1]  # what was committed before the last kill is kept
    rows = json.loads(run(["sql", "SELECT name, n_frames FROM videos ORDER BY name", "--json"], env).stdout)
    assert {r["name"]: r["n_frames"] for r in rows} == reference  # nothing lost, nothing doubled
    chk = json.loads(run(["check", "--json"], env).stdout)
    assert chk["ok"] and chk["frames"] == chk["vectors"] == sum(reference.values())


def test_second_writer_exits_at_once_and_readers_keep_working(folder, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"
    store = tmp_path / "store"
    first = start(["index", folder, "-q"], env)
    try:
        wait_for_lock(store, first)
        t0 = time.time()
        second = run(["index", folder, "-q"], env)
        assert second.returncode == 1 and time.time() - t0 < 30
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        counts = []
        while first.poll() is None:  # search, sql and info work during the run
            info = run(["info", "--json"], env)
            assert info.returncode == 0, info.stderr
            counts.append(json.loads(info.stdout)["videos"])
            q = run(["sql", "SELECT count(*) AS n FROM frames f JOIN videos v USING (video_id)", "--json"], env)
            assert q.returncode == 0, q.stderr
        assert first.wait() == 0
        assert counts == sorted(counts)  # they see each committed video, never a partial one
        res = run(["search", "anything", "--json", "--top", "50"], env)
        assert res.returncode == 0 and len(json.loads(res.stdout)["results"]) == 8
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
