"""`archive bench --eval` smoke size: the truth file it writes, and a report that judged all of it
(timings themselves are not asserted)."""

import csv
import json

import pytest
from helpers import TEST_MODEL, env_for_cli, run_cli


def test_write_truth_judges_every_video_and_query(tmp_path):
    from archive.bench.evaluation import eval_texts, write_truth
    from indexer.store import VideoRef

    refs = [
        VideoRef(i + 1, f"/synthetic/brand{i % 50:02d}/ad{i:06d}.mp4", f"ad{i:06d}.mp4", 30.0, 25.0) for i in range(400)
    ]
    path = tmp_path / "truth.csv"
    wrote = write_truth(str(path), refs, 200, 20)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["video", "query", "start_s", "end_s"] and len(rows) == wrote["rows"]
    assert len(set(eval_texts(30))) == 30
    names = {r["video"] for r in rows}  # spread over the store, first and last included
    assert len(names) == 200 and {refs[0].name, refs[-1].name} <= names
    assert {r["query"] for r in rows} == set(eval_texts(20))
    timed = [r for r in rows if r["start_s"]]
    assert all(0 <= float(r["start_s"]) < float(r["end_s"]) <= 30.0 for r in timed)
    assert wrote["present_pairs"] + wrote["absent_rows"] + wrote["pairs_without_row"] == 200 * 20
    assert wrote["absent_rows"] == len(rows) - len(timed) and wrote["pairs_without_row"] > 0
    assert 0.25 < wrote["present_pairs"] / 4000 < 0.35
    assert write_truth(str(path), refs, 200, 20) == wrote  # deterministic


@pytest.mark.slow  # runs `archive bench` in processes
def test_bench_eval_reports_a_fully_judged_run(tmp_path):
    env = env_for_cli(tmp_path)
    store = tmp_path / "synthetic"
    p = run_cli(
        ["bench", "--frames", "600", "--queries", "0", "--keep", store, "--model", TEST_MODEL, "--json"],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    p = run_cli(
        ["bench", "--eval", "--store", store, "--eval-videos", "5", "--eval-queries", "2", "--runs", "2", "--json"],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["mode"] == "eval" and r["store_frames"] == 600 and r["store_videos"] == 10
    assert (r["videos"], r["queries"], r["runs"]) == (5, 2, 2) and len(r["wall_s"]) == 2
    assert r["wall_s_min"] <= r["wall_s_median"] and r["peak_rss_mb"] > 0
    assert r["judged_check"] == {"judged_videos": 5, "queries": 2, "rows_read": r["rows"], "problems": 0, "ok": True}
    assert set(r["in_process_split_s"]) == {"read_truth", "answers", "measure", "rest", "to_dict_json"}


@pytest.mark.slow  # runs `archive bench` in processes
def test_bench_eval_usage_errors_are_one_line(tmp_path):
    env = env_for_cli(tmp_path)
    for args, code, word in (
        (["--eval"], 2, "--store"),
        (["--eval", "--store", str(tmp_path), "--eval-videos", "0"], 2, "--eval-videos"),
        (["--eval", "--store", str(tmp_path / "none")], 1, "no archive"),
    ):
        p = run_cli(["bench", *args], env, timeout=300)
        assert p.returncode == code and word in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
