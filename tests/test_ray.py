"""`archive index --ray`: the per-video work on a local Ray runtime (2 CPUs), commits on the driver.

The same folder indexed in-process and on Ray gives the same catalog; a worker killed mid-video is
replaced and its video done again; a video that kills its worker twice is a failure and the run goes
on; a killed driver loses nothing committed and a re-run completes. Kills land where the test
says: the hook ``ARCHIVE_TEST_PAUSE`` stops a worker (or the driver) at a named point and writes
its process id beside the marker (indexer/crashpoints.py).
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from gen.videos import Shot, make_video
from helpers import DATA, WAIT_S, env_for_cli, kill, paused_at, run_cli, start_cli, wait_for_pause

from archive import Archive

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'clip-video-archive[ray]'")
pytestmark = pytest.mark.slow  # a local Ray runtime, and the CLI in processes

from indexer.run.options import RayOptions


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("rayclips")
    for i in range(3):
        make_video(d / f"ad{i}.mp4", [Shot(10 + i, 40), Shot(30 + i, 30), Shot(50 + i, 45)], "25")
    (d / "tree.avi").write_bytes((DATA / "tree.avi").read_bytes())
    (d / "broken.mp4").write_bytes(b"not a video at all")
    return d


def _catalog(a: Archive) -> dict:
    q = {
        "videos": "SELECT name, duration_s, fps, width, height, codec, n_frames, decoded_frames, shot_detector "
        "FROM videos ORDER BY name",
        "frames": "SELECT v.name, f.ts_s, f.end_s, f.thumb_bytes > 0 AS thumb FROM frames f JOIN videos v "
        "USING (video_id) ORDER BY v.name, f.ts_s",
        "shots": "SELECT v.name, s.start_s, s.end_s, s.kind, s.transition FROM shots s JOIN videos v USING (video_id) "
        "ORDER BY v.name, s.start_s",
        "failures": "SELECT regexp_extract(path, '[^/]+$') AS name FROM failures ORDER BY 1",
    }
    return {k: a.sql(v).rows for k, v in q.items()}


def _vectors(a: Archive) -> dict:
    from indexer.store import Reader

    t = Reader(a.store).frames()
    names = {vid: v["name"] for vid, v in t.videos.items()}
    return {
        (names[int(v)], round(float(ts), 6)): np.asarray(t.vectors[r]) for v, ts, r in zip(t.video_id, t.ts_s, t.row)
    }


def test_ray_gives_the_same_catalog_as_in_process(folder, tmp_path, encoder):
    here = Archive(tmp_path / "here", encoder=encoder)
    rep_here = here.index([folder])
    there = Archive(tmp_path / "there")
    rep_ray = there.index([folder], ray=RayOptions("local", workers=2))
    assert (rep_ray.indexed, rep_ray.failed) == (rep_here.indexed, rep_here.failed) == (4, 1)
    assert rep_ray.frames == rep_here.frames and not ray.is_initialized()  # the local runtime is stopped again
    assert _catalog(there) == _catalog(here)
    a, b = _vectors(here), _vectors(there)
    assert a.keys() == b.keys()
    cos = [float(a[k] @ b[k]) for k in a]
    assert min(cos) >= 0.999  # the same model; bf16 on another thread count at most
    assert there.check().ok and len(there.search(image=DATA / "megamind_frame.png")[0].results) == 4


def test_ray_cli_resumes_and_reports(folder, tmp_path):
    env = env_for_cli(tmp_path)
    p = run_cli(["index", folder, "--ray", "--ray-workers", "2", "--json"], env, timeout=300)
    assert p.returncode == 1, p.stderr  # broken.mp4 cannot be read
    rep = json.loads(p.stdout)
    assert (rep["indexed"], rep["failed"]) == (4, 1) and "Traceback" not in p.stderr
    again = run_cli(
        ["index", "--ray", folder, "--json"], env, timeout=300
    )  # --ray alone, before the path: a local runtime
    rep = json.loads(again.stdout)
    assert (rep["indexed"], rep["skipped"]) == (0, 4)  # unchanged files are skipped; Ray is not even started
    bad = run_cli(["index", folder, "--ray", "--ray-workers", "0"], env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: --ray-workers 0: give at least 1."]


def _paused_worker(marker, proc) -> int:
    """Wait until a worker stops at its pause point; return its process id."""
    wait_for_pause(proc, marker)
    return int((marker.parent / (marker.name + ".pid")).read_text())


def _release_until_done(proc, marker, timeout=WAIT_S):
    """Let every later pause go on (new workers pause at their first batch) until the run ends."""
    t0 = time.monotonic()
    while proc.poll() is None:
        if marker.exists():
            marker.unlink()
        if time.monotonic() - t0 > timeout:
            kill(proc)
            raise AssertionError("the run did not finish")
        time.sleep(0.02)
    return proc.communicate()


def test_a_killed_worker_is_replaced_and_its_video_done_again(folder, tmp_path):
    env = env_for_cli(tmp_path)
    marker = tmp_path / "paused"
    proc = start_cli(["index", folder, "--ray", "--ray-workers", "1", "--json"], paused_at(env, "embed.batch", marker))
    pid = _paused_worker(marker, proc)
    assert pid != proc.pid
    os.kill(pid, signal.SIGKILL)  # a worker dies in the middle of a video
    marker.unlink()
    out, err = _release_until_done(proc, marker)
    rep = json.loads(out)
    assert (rep["indexed"], rep["failed"]) == (4, 1), err  # only broken.mp4
    a = Archive(tmp_path / "store")
    assert a.check().ok
    assert a.sql("SELECT count(*), count(DISTINCT path) FROM videos").rows == [(4, 4)]  # nothing lost or doubled


def test_a_video_that_kills_its_worker_twice_is_a_failure(folder, tmp_path):
    env = env_for_cli(tmp_path)
    marker = tmp_path / "paused"
    proc = start_cli(["index", folder, "--ray", "--ray-workers", "1", "--json"], paused_at(env, "embed.batch", marker))
    for _ in range(2):  # the same video, on the first worker and on its replacement
        pid = _paused_worker(marker, proc)
        os.kill(pid, signal.SIGKILL)
        marker.unlink()
    out, err = _release_until_done(proc, marker)
    rep = json.loads(out)
    assert (rep["indexed"], rep["failed"]) == (3, 2), err
    died = [f["error"] for f in rep["failures"] if "worker died 2 times" in f["error"]]
    assert len(died) == 1
    a = Archive(tmp_path / "store")
    assert a.check().ok and a.sql("SELECT count(*) FROM failures WHERE error LIKE '%worker died 2 times%'").rows == [
        (1,)
    ]


def test_a_killed_driver_loses_nothing_and_a_rerun_completes(folder, tmp_path):
    env = env_for_cli(tmp_path)
    env["ARCHIVE_COMMIT_INTERVAL_S"] = "0"  # a commit per video
    marker = tmp_path / "paused"
    proc = start_cli(
        ["index", folder, "--ray", "--ray-workers", "1", "--json"], paused_at(env, "commit.catalog", marker)
    )
    assert wait_for_pause(proc, marker) == "commit.catalog 1"
    assert int((tmp_path / "paused.pid").read_text()) == proc.pid  # the driver commits, not a worker
    kill(proc)  # the driver and everything it started
    marker.unlink()
    p = run_cli(["check", "--json"], env, timeout=300)
    assert p.returncode == 0 and json.loads(p.stdout)["ok"]
    first = Archive(tmp_path / "store").sql("SELECT count(*) FROM videos").rows[0][0]
    assert first >= 1
    again = run_cli(["index", folder, "--ray", "--ray-workers", "1", "--json"], env, timeout=300)
    rep = json.loads(again.stdout)
    assert rep["skipped"] == first and rep["indexed"] == 4 - first
    assert Archive(tmp_path / "store").check().ok


def test_ray_workers_hear_the_sound_track_too(tmp_path):
    """``--speech`` on Ray: each worker transcribes its video beside the picture work (the real
    Whisper base model), and the driver commits the words with the frames."""
    from archive.bench import speechads
    from archive.bench.speechads import Said, SpokenAd
    from indexer.media import speech as speechmod

    if not speechads.espeak_available():
        pytest.skip("espeak-ng is not installed (make espeak)")
    if not speechmod.available() or speechmod._wheel_dirs() is None:
        pytest.skip("faster-whisper and the Whisper base wheels are not installed (make install)")
    d = tmp_path / "ads"
    d.mkdir()
    x, sr = speechads.synth_speech("just do it", "en-us", 160)
    plan = SpokenAd("said.mp4", 6.0, [Said("just do it", "en-us", 2.0, round(2.0 + len(x) / sr, 3), 160)])
    speechads.write_ad(d / plan.name, plan, seed=3)
    make_video(d / "mute.mp4", [Shot(20, 30), Shot(60, 30)], "25")  # no sound stream
    a = Archive(tmp_path / "store")
    rep = a.index([d], ray=RayOptions("local", workers=2), speech=True)
    assert (rep.indexed, rep.failed) == (2, 0) and not ray.is_initialized()
    heard = dict(a.sql("SELECT name, speech_lines FROM videos").rows)
    assert heard["mute.mp4"] == 0 and heard["said.mp4"] >= 1  # both transcribed: one silent, one heard
    (res,) = a.search(said="just do it")
    hit = [r for r in res.results if r.present]
    assert [os.path.basename(r.video) for r in hit] == ["said.mp4"]
    assert abs(hit[0].first_seen_s - 2.0) <= 0.5  # the onset tolerance of tests/test_speech.py
