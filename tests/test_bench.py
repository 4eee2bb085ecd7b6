"""`archive bench` smoke sizes: the numbers exist and add up (timings themselves are not asserted)."""

import json

import cv2
import pytest
from helpers import DATA, TEST_MODEL, env_for_cli, run_cli

pytestmark = pytest.mark.slow  # every test runs `archive bench` (and other commands) in processes of their own


def test_bench_index_and_query_report_json(tmp_path):
    env = env_for_cli(tmp_path)
    p = run_cli(
        [
            "bench",
            "--index",
            DATA / "tree.avi",
            "--naive",
            "--frames",
            "3000",
            "--queries",
            "3",
            "--model",
            TEST_MODEL,
            "--json",
        ],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    idx, qry = [json.loads(ln) for ln in p.stdout.splitlines()]
    # the index run embeds what `archive index` embeds for this clip
    run = run_cli(["index", DATA / "tree.avi", "--json", "-q"], env, timeout=600)
    assert idx["mode"] == "index" and idx["videos"] == 1 and idx["frames"] == json.loads(run.stdout)["frames"]
    assert set(idx["stages_s"]) == {"decode", "preprocess", "embed", "write"}
    # the naive loop keeps every Nth frame OpenCV reads, N = round(native fps / fps)
    cap = cv2.VideoCapture(str(DATA / "tree.avi"))
    step = max(1, round(cap.get(cv2.CAP_PROP_FPS) / 2.0))
    n_read = 0
    while cap.read()[0]:
        n_read += 1
    cap.release()
    assert idx["naive"]["frames"] == len(range(0, n_read, step))
    # (the reported seconds are rounded to 1 ms, the ratios computed before rounding)
    assert idx["speedup_vs_naive"] == pytest.approx(idx["naive"]["wall_s"] / idx["wall_s"], rel=5e-3, abs=0.011)
    assert idx["frames_per_s"] == pytest.approx(idx["frames"] / idx["wall_s"], rel=5e-3, abs=0.011)
    assert qry["mode"] == "query" and qry["frames"] == 3000 and qry["videos"] == 50 and qry["queries"] == 3
    assert 0 < qry["p50_ms"] <= qry["p95_ms"] and qry["scan"] == "exact fp32"  # 3,000 frames: below bf16 size
    assert set(qry["split_p50_ms"]) == {"load", "embed", "scan", "timeline"}
    assert qry["bytes_per_frame"] == pytest.approx(qry["bytes_on_disk"] / 3000, abs=0.051)


def test_bench_index_ocr_compares_runs_with_and_without_text(tmp_path):
    from indexer.media import ocr as ocrmod

    if not ocrmod.available():
        pytest.skip("the OCR package (rapidocr, the ocr extra) is not installed")
    from gen import textads

    ads = textads.make_text_ads(tmp_path / "ads", {"a.mp4": textads.PLAN["text_ad0.mp4"]})
    env = env_for_cli(tmp_path)
    p = run_cli(["bench", "--index", ads["a.mp4"].path, "--ocr", "--model", TEST_MODEL, "--json"], env, timeout=600)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)["ocr"]
    assert o["text_lines"] == len(ads["a.mp4"].shown) and o["not_read"] == 0
    # read: the first sample of each of the 4 shots at least, never more samples than there are
    assert len(ads["a.mp4"].shots) <= o["frames_read"] <= o["frames"]
    assert o["ratio"] == pytest.approx(o["wall_s"] / o["wall_s_without"], rel=5e-3, abs=0.011)
    assert set(o["stages_s"]) == {"decode", "preprocess", "ocr", "embed", "write"} and o["stages_s"]["ocr"] > 0


def test_bench_needs_something_to_measure(tmp_path):
    p = run_cli(["bench"], env_for_cli(tmp_path))
    assert p.returncode == 2 and "--index" in p.stderr


def test_make_ads_writes_h264_clips_with_cuts(tmp_path):
    import av

    d = tmp_path / "ads"
    footage = ["--ads-from", str(DATA / "Megamind.avi"), "--ads-from", str(DATA / "tree.avi")]
    p = run_cli(
        ["bench", "--make-ads", d, *footage, "--ads", "2", "--ads-size", "320x180", "--ads-seconds", "4", "--json"],
        env_for_cli(tmp_path),
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert made["mode"] == "make-ads" and len(made["files"]) == 2 and made["shots"] >= 2
    for f in made["files"]:
        with av.open(f) as c:
            s = c.streams.video[0]
            n = sum(1 for _ in c.decode(s))
            assert (s.codec_context.name, s.width, s.height, n) == ("h264", 320, 180, 100)
            assert float(s.average_rate) == 25.0
    bad = run_cli(["bench", "--make-ads", d, *footage, "--ads-size", "big"], env_for_cli(tmp_path))
    assert bad.returncode == 2 and "--ads-size" in bad.stderr and "Traceback" not in bad.stderr
    # the installed package holds no footage of its own: without --ads-from it says what to give
    bare = run_cli(["bench", "--make-ads", d], env_for_cli(tmp_path))
    assert bare.returncode == 2 and "--ads-from" in bare.stderr and len(bare.stderr.strip().splitlines()) == 1


def test_bench_add_leaves_the_store_as_it_found_it(tmp_path):
    env = env_for_cli(tmp_path)
    store = tmp_path / "kept"
    p = run_cli(
        ["bench", "--frames", "2000", "--queries", "0", "--keep", store, "--model", TEST_MODEL, "--json"],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    videos = [json.loads(run_cli(["info", "--store", store, "--json"], env, timeout=600).stdout)["videos"]]
    for _ in range(2):  # the same clip twice: each run adds it, measures, and removes it again
        p = run_cli(["bench", "--add", DATA / "tree.avi", "--store", store, "--json"], env, timeout=600)
        assert p.returncode == 0, p.stderr
        add = json.loads(p.stdout.splitlines()[0])
        assert add["mode"] == "add" and add["indexed"] == 1 and add["clip_frames"] > 0 and add["commit_frames"] == 60
        assert add["index_wall_s"] > 0 and add["commit_bytes_written"] > 0
        videos.append(json.loads(run_cli(["info", "--store", store, "--json"], env, timeout=600).stdout)["videos"])
    assert videos == [videos[0]] * 3 and videos[0] > 0
    check = run_cli(["check", "--store", store], env, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr


def test_bench_serve_loads_a_served_store_on_loopback(tmp_path):
    """`python -m archive.bench.serve`: one client, then several at once, against a real `archive
    serve` with a token; every request answered, the numbers there (not their size)."""
    import os
    import subprocess
    import sys

    env = env_for_cli(tmp_path)
    store = tmp_path / "kept"
    p = run_cli(
        ["bench", "--frames", "2000", "--queries", "0", "--keep", store, "--model", TEST_MODEL, "--json"],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "archive.bench.serve", str(store), "--clients", "4", "--requests", "24"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads(p.stdout)
    assert rep["single"]["errors"] == 0 and rep["concurrent"]["errors"] == 0
    assert rep["concurrent"]["clients"] == 4 and rep["concurrent"]["requests_per_s"] > 0
    assert rep["single"]["p50_ms"] > 0 and rep["throughput_ratio"] > 0
    assert rep["server_peak_rss_mb"] is None or rep["server_peak_rss_mb"] > 100
    missing = subprocess.run(
        [sys.executable, "-m", "archive.bench.serve", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no archive at" in missing.stderr
