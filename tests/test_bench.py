"""`archive bench` smoke sizes: the numbers exist and add up (timings themselves are not asserted)."""

import json
import subprocess
import sys

from conftest import DATA, TEST_MODEL, env_for_cli

ARCHIVE = [sys.executable, "-m", "archive.cli"]


def test_bench_index_and_query_report_json(tmp_path):
    env = env_for_cli(tmp_path)
    p = subprocess.run(ARCHIVE + ["bench", "--index", str(DATA / "tree.avi"), "--naive", "--frames", "3000",
                                  "--queries", "3", "--model", TEST_MODEL, "--json"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    idx, qry = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert idx["mode"] == "index" and idx["videos"] == 1 and idx["frames"] > 0
    assert set(idx["stages_s"]) == {"decode", "preprocess", "embed", "write"}
    assert idx["naive"]["frames"] > 0 and idx["speedup_vs_naive"] > 0 and idx["peak_rss_mb"] > 0
    assert qry["mode"] == "query" and qry["frames"] == 3000 and qry["queries"] == 3
    assert 0 < qry["p50_ms"] <= qry["p95_ms"]
    assert set(qry["split_p50_ms"]) == {"load", "embed", "scan", "timeline"}
    assert qry["bytes_per_frame"] > 0 and qry["peak_rss_mb"] > 0


def test_bench_needs_something_to_measure(tmp_path):
    p = subprocess.run(ARCHIVE + ["bench"], env=env_for_cli(tmp_path), capture_output=True, text=True)
    assert p.returncode == 2 and "--index" in p.stderr


def test_make_ads_writes_h264_clips_with_cuts(tmp_path):
    import av

    d = tmp_path / "ads"
    p = subprocess.run(ARCHIVE + ["bench", "--make-ads", str(d), "--ads", "2", "--ads-size", "320x180",
                                  "--ads-seconds", "4", "--json"],
                       env=env_for_cli(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert made["mode"] == "make-ads" and len(made["files"]) == 2 and made["shots"] >= 2
    for f in made["files"]:
        with av.open(f) as c:
            s = c.streams.video[0]
            n = sum(1 for _ in c.decode(s))
            assert (s.codec_context.name, s.width, s.height, n) == ("h264", 320, 180, 100)
            assert float(s.average_rate) == 25.0
    bad = subprocess.run(ARCHIVE + ["bench", "--make-ads", str(d), "--ads-size", "big"],
                         env=env_for_cli(tmp_path), capture_output=True, text=True)
    assert bad.returncode == 2 and "--ads-size" in bad.stderr and "Traceback" not in bad.stderr
