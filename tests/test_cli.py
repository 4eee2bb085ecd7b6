"""The real `archive` command in real processes: output shapes, exit codes, one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gen.videos import Shot, make_video
from helpers import DATA, IMAGE_THRESHOLD, env_for_cli, run_cli

pytestmark = pytest.mark.slow  # every test runs the CLI in a process of its own

COMMANDS = ["index", "search", "sql", "info", "classify", ["label", "add"], ["label", "list"], ["label", "remove"]]


def run(args, tmp_path, env=None, check=None):
    p = run_cli(args, env or env_for_cli(tmp_path), timeout=300)
    if check is not None:
        assert p.returncode == check, p.stderr + p.stdout
    return p


def one_line_error(p):
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), p.stderr
    return lines[-1]


def test_help_for_every_command_without_loading_torch(tmp_path):
    top = run(["--help"], tmp_path, check=0)
    for cmd in COMMANDS:
        cmd = cmd if isinstance(cmd, list) else [cmd]
        assert cmd[0] in top.stdout
        h = run(cmd + ["--help"], tmp_path, check=0)
        assert "--store" in h.stdout and len(h.stdout) > 200
    # `archive --help` answers without importing torch or open_clip
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, archive.cli; print('torch' in sys.modules, 'open_clip' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["False", "False"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One store, indexed once by the real CLI, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("cli")
    folder = root / "videos"
    folder.mkdir()
    shutil.copy(DATA / "Megamind.avi", folder / "Megamind.avi")
    make_video(folder / "ad one.mp4", [Shot(1, 50), Shot(2, 50)], "29.97")
    p = run(["index", folder, "--fps", "2"], root, env=env_for_cli(root), check=0)
    return root, folder, p


@pytest.fixture()
def store_with_clips(built, tmp_path):
    """A private copy of the built store (tests may change it), its env, and the video folder."""
    root, folder, p = built
    shutil.copytree(root / "store", tmp_path / "store")
    return folder, p


def test_index_search_sql_info_end_to_end(tmp_path, store_with_clips):
    folder, p = store_with_clips
    assert "random weights" in p.stderr  # the --pretrained none warning
    assert "indexed 2 videos" in p.stderr and "0 failed" in p.stderr

    again = run(["index", folder, "--json"], tmp_path, check=0)
    rep = json.loads(again.stdout)
    assert (rep["indexed"], rep["skipped"], rep["frames"]) == (0, 2, 0)

    info = json.loads(run(["info", "--json"], tmp_path, check=0).stdout)
    assert {"videos", "frames", "seconds", "model", "pretrained", "dim", "bytes"} <= info.keys()
    assert (info["videos"], info["model"], info["pretrained"], info["dim"]) == (2, "ViT-S-32-alt", "none", 256)
    # 2 samples/s plus the first frame of each shot: Megamind 23 + 4 cuts, the ad 7 + 1 cut
    assert info["frames"] == (23 + 4) + (7 + 1) and info["bytes"] > 0
    assert info["seconds"] == pytest.approx(11.30 + 100 / 29.97, abs=0.02)

    out = run(
        [
            "search",
            "a cartoon",
            "a beach",
            "--image",
            DATA / "megamind_frame.png",
            "--threshold",
            str(IMAGE_THRESHOLD),
            "--json",
        ],
        tmp_path,
        check=0,
    )
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [ln["query"] for ln in lines] == ["a cartoon", "a beach", "image:megamind_frame.png"]
    img = lines[2]["results"]
    assert Path(img[0]["video"]).name == "Megamind.avi" and img[0]["present"]
    assert set(img[0]) >= {"video", "present", "first_seen_s", "duration_s", "segments", "best_s", "score"}
    assert img[0]["segments"][0].keys() == {"start_s", "end_s", "peak_score", "peak_frame_id"}
    assert not img[1]["present"]

    table = run(["search", "a cartoon"], tmp_path, check=0)
    assert "a cartoon" in table.stdout and "Megamind" in table.stdout

    # two videos of 7 shots: too few to measure the per-video chance, and no rate is promised
    ruled = json.loads(run(["search", "--image", DATA / "megamind_frame.png", "--json"], tmp_path, check=0).stdout)
    assert "expected_false_videos" not in ruled and any("no rate of false videos" in w for w in ruled["warnings"])
    shown = run(["info"], tmp_path, check=0).stdout
    assert "image_false_rate" in shown and "not stated" in shown

    rows = json.loads(
        run(["sql", "SELECT name, n_frames FROM videos ORDER BY name", "--json"], tmp_path, check=0).stdout
    )
    assert rows == [{"name": "Megamind.avi", "n_frames": 27}, {"name": "ad one.mp4", "n_frames": 8}]
    csv = run(["sql", "SELECT count(*) AS n FROM frames", "--csv"], tmp_path, check=0).stdout
    assert csv.splitlines() == ["n", "35"]


def test_labels_and_classify_from_the_cli(tmp_path, store_with_clips):
    run(["label", "add", "cartoon", "--prompt", "a cartoon", "--prompt", "an animated film"], tmp_path, check=0)
    run(["label", "add", "anything", "--threshold", "-1"], tmp_path, check=0)
    labels = json.loads(run(["label", "list", "--json"], tmp_path, check=0).stdout)
    assert [(x["label"], x["prompts"]) for x in labels] == [
        ("anything", ["anything"]),
        ("cartoon", ["a cartoon", "an animated film"]),
    ]
    assert labels[0]["videos_present"] == 2
    vl = json.loads(
        run(
            ["sql", "SELECT label, count(*) AS n FROM video_labels GROUP BY label ORDER BY label", "--json"],
            tmp_path,
            check=0,
        ).stdout
    )
    assert vl == [{"label": "anything", "n": 2}, {"label": "cartoon", "n": 2}]
    lines = run(["classify", "--labels", "cartoon,anything", "--json"], tmp_path, check=0).stdout.splitlines()
    assert len(lines) == 2
    for ln in lines:
        d = json.loads(ln)
        assert set(d["shares"]) == {"cartoon", "anything", "something else"}
        assert sum(d["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    run(["label", "remove", "anything"], tmp_path, check=0)
    assert "no label" in one_line_error(run(["label", "remove", "anything"], tmp_path))
    assert "unknown label" in one_line_error(run(["classify", "--labels", "nope"], tmp_path))


def test_very_long_query_is_cut_with_a_warning(tmp_path, store_with_clips):
    long = "a red car driving along a beach at sunset " * 20
    p = run(["search", long, "--json"], tmp_path, check=0)
    assert "token context" in p.stderr and "Traceback" not in p.stderr
    assert json.loads(p.stdout)["warnings"]


def test_search_works_with_videos_moved_away(tmp_path, store_with_clips):
    folder, _ = store_with_clips
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    try:
        out = run(["search", "--image", DATA / "megamind_frame.png", "--json"], tmp_path, check=0)
        assert len(json.loads(out.stdout)["results"]) == 2
    finally:
        shutil.move(moved, folder)  # the module's other tests use the folder


@pytest.mark.parametrize(
    "args, says",
    [
        (["sql", "DROP TABLE videos"], "only reading SQL"),
        (["sql", "DELETE FROM frames"], "only reading SQL"),
        (["sql", "ATTACH 'x.db'"], "only reading SQL"),
        (["sql", "COPY videos TO 'x.csv'"], "only reading SQL"),
        (["sql", "SELEC 1"], "does not parse"),
        (["sql", "SELECT nope FROM videos"], "SQL error"),
        (["search", "--image", "missing.png"], "image file not found"),
        (["search", "--image", DATA / "megamind_frame.png", "--false-videos", "0"], "--false-videos 0.0"),
        (["search", "   "], "empty query"),
        (["search", "x", "--video", "nothing-like-this"], "--video"),
    ],
)
def test_bad_queries_get_one_line_and_change_nothing(tmp_path, store_with_clips, args, says):
    before = (tmp_path / "store" / "catalog.duckdb").read_bytes()
    line = one_line_error(run(args, tmp_path))
    assert says in line
    assert (tmp_path / "store" / "catalog.duckdb").read_bytes() == before
    assert json.loads(run(["info", "--json"], tmp_path, check=0).stdout)["videos"] == 2


def test_no_store_and_model_mismatch_errors(tmp_path, store_with_clips):
    folder, _ = store_with_clips
    assert "archive index" in one_line_error(run(["info", "--store", tmp_path / "none"], tmp_path))
    assert "archive index" in one_line_error(run(["search", "x", "--store", tmp_path / "none"], tmp_path))
    line = one_line_error(run(["index", folder, "--model", "ViT-B-32"], tmp_path))
    assert "ViT-S-32-alt" in line
    assert "unknown open_clip model" in one_line_error(
        run(["index", folder, "--model", "ViT-X-99", "--store", tmp_path / "s2"], tmp_path)
    )


def test_offline_without_cached_weights_is_one_line(tmp_path):
    env = env_for_cli(tmp_path)
    env.update(
        ARCHIVE_MODEL="ViT-B-32",
        ARCHIVE_PRETRAINED="laion2b_s34b_b79k",
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
    )
    clip = tmp_path / "c.mp4"
    make_video(clip, [Shot(1, 10)], "25")
    p = run(["index", clip], tmp_path, env=env)
    line = one_line_error(p)
    assert "--pretrained FILE" in line and "--pretrained none" in line
    assert not (tmp_path / "store" / "catalog.duckdb").exists()


def test_bad_files_are_reported_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "mess"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video\n" * 100)
    make_video(folder / "good.mp4", [Shot(1, 25)], "25")
    p = run(["index", folder], tmp_path)
    assert p.returncode == 1  # not every file succeeded
    assert "Traceback" not in p.stderr
    assert "empty.mp4" in p.stderr and "notes.mp4" in p.stderr
    rows = json.loads(
        run(["sql", "SELECT path, error FROM failures ORDER BY path", "--json"], tmp_path, check=0).stdout
    )
    assert [Path(r["path"]).name for r in rows] == ["empty.mp4", "notes.mp4"]
    assert json.loads(run(["info", "--json"], tmp_path, check=0).stdout)["videos"] == 1


def test_precision_flag(tmp_path):
    clip = tmp_path / "c.mp4"
    make_video(clip, [Shot(1, 25)], "25")
    p = run(["index", clip, "--precision", "fp32", "--json"], tmp_path, check=0)
    assert json.loads(p.stdout)["indexed"] == 1
    bad = run(["index", clip, "--precision", "fp8", "--store", tmp_path / "s2"], tmp_path)
    assert "unknown precision" in one_line_error(bad)


def test_usage_errors_exit_2(tmp_path):
    assert run(["search"], tmp_path).returncode == 2
    assert run(["index", tmp_path, "--fps", "0"], tmp_path).returncode == 2
    assert run(["sql", "SELECT 1", "--json", "--csv"], tmp_path).returncode == 2
