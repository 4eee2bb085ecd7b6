"""A messy folder: every bad file gets one line and a failures row; good ones are indexed whole."""

import json
import os
import struct
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from gen.videos import Shot, make_video
from helpers import ARCHIVE, DATA, env_for_cli, run_cli

from indexer.media.decode import DecodeStats, sample_frames


def rotate_mp4(src, dest):
    """Set a 90-degree display matrix in the track header, as phones do."""
    b = bytearray(open(src, "rb").read())
    i = b.find(b"tkhd") - 4
    off = i + 8 + 4 + (20 if b[i + 8] == 0 else 32) + 8 + 8
    b[off : off + 36] = struct.pack(">9I", 0, 0x10000, 0, (-0x10000) & 0xFFFFFFFF, 0, 0, 0, 0, 0x40000000)
    open(dest, "wb").write(bytes(b))


def audio_only(path):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            f.sample_rate = 44100
            f.pts = i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def vfr_video(path):
    """Frames at irregular times (ms): a variable-frame-rate file."""
    import av
    from gen.videos import pattern

    times_ms = [0, 40, 80, 400, 440, 1500, 1540, 1580, 2500, 3000]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        img = pattern(3)
        for t in times_ms:
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return times_ms


def test_rotated_phone_video_is_sampled_upright(tmp_path):
    src = tmp_path / "src.mp4"
    make_video(src, [Shot(1, 10)], "25", size=(320, 240))
    rot = tmp_path / "phone.mp4"
    rotate_mp4(src, rot)
    [plain] = list(sample_frames(src, 2.0, 224))
    st = DecodeStats()
    [turned] = list(sample_frames(rot, 2.0, 224, st))
    assert st.rotation in (90, 270)
    assert turned.rgb.shape == (299, 224, 3)  # portrait, as a phone shows it
    k = st.rotation // 90
    assert np.abs(turned.rgb.astype(int) - np.rot90(plain.rgb, k=k).astype(int)).mean() < 2


def test_variable_frame_rate_follows_the_timestamps(tmp_path):
    p = tmp_path / "vfr.mp4"
    times_ms = vfr_video(p)
    st = DecodeStats()
    frames = list(sample_frames(p, 2.0, 64, st))
    got = [round(f.ts_s * 1000) for f in frames]
    # the first frame at or after each 0.5 s instant, each frame once
    assert got == [0, 1500, 2500, 3000]
    assert st.decoded_frames == len(times_ms)


@pytest.mark.slow  # the CLI in a process
def test_messy_folder(tmp_path):
    d = tmp_path / "mess"
    d.mkdir()
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("not a video at all\n" * 40)
    (d / "scrambled.mp4").write_bytes(os.urandom(50_000))
    src = (DATA / "Megamind.avi").read_bytes()
    (d / "truncated.avi").write_bytes(src[: len(src) // 2])
    (d / "x.mp4").mkdir()  # a folder named like a video: walked, holds nothing
    os.symlink("loop.mp4", d / "loop.mp4")  # a link to itself
    audio_only(d / "song.mp4")
    (d / "bugy.avi").write_bytes((DATA / "Megamind_bugy.avi").read_bytes())
    make_video(d / "spaces and ünïcödé ✓.mp4", [Shot(1, 25)], "25")
    make_video(d / "eight_k.mp4", [Shot(2, 3)], "25", size=(7680, 4320))
    env = env_for_cli(tmp_path)
    p = run_cli(["index", d, "-q"], env, timeout=600)
    assert p.returncode == 1, p.stderr  # not every file succeeded
    assert "Traceback" not in p.stderr
    bad = {"zero.mp4", "text.mp4", "scrambled.mp4", "loop.mp4", "song.mp4", "truncated.avi"}
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(("skipped ", "partly decoded "))]
    assert len(lines) == len(bad)  # one line per bad file
    assert {os.path.basename(ln.split(": ")[0].split(" ", 2)[-1]) for ln in lines} == bad
    out = run_cli(["sql", "SELECT path, error FROM failures ORDER BY path", "--json"], env)
    rows = json.loads(out.stdout)
    assert {os.path.basename(r["path"]) for r in rows} == bad
    why = {os.path.basename(r["path"]): r["error"] for r in rows}
    assert "no video stream" in why["song.mp4"]
    assert "empty file" in why["zero.mp4"]
    assert "symbolic links" in why["loop.mp4"]
    assert "partly decoded" in why["truncated.avi"]
    vids = json.loads(run_cli(["sql", "SELECT name, width, height FROM videos ORDER BY name", "--json"], env).stdout)
    assert [v["name"] for v in vids] == ["bugy.avi", "eight_k.mp4", "spaces and ünïcödé ✓.mp4", "truncated.avi"]
    assert vids[1]["width"] == 7680


@pytest.mark.slow  # the CLI in a process
def test_fifo_does_not_hang_the_run(tmp_path):
    d = tmp_path / "pipes"
    d.mkdir()
    os.mkfifo(d / "stream.mp4")
    make_video(d / "good.mp4", [Shot(1, 25)], "25")
    p = run_cli(["index", d, "-q", "--json"], env_for_cli(tmp_path), timeout=300)
    rep = json.loads(p.stdout)
    assert p.returncode == 1 and rep["indexed"] == 1
    assert rep["failures"] == [
        {"path": str(d / "stream.mp4"), "error": "not a regular file (a pipe, socket or device)"}
    ]


AS_NOBODY = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_can_run_the_cli(cwd: str) -> tuple[bool, str]:
    """Whether user nobody (65534) can start this checkout's CLI: a clone or a virtualenv inside a
    private (0700) folder, such as root's home or a `mktemp -d`, is out of its reach."""
    p = subprocess.run(
        AS_NOBODY + [sys.executable, "-c", "import archive.cli"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    last = (p.stderr.strip().splitlines() or ["?"])[-1]
    return p.returncode == 0, last


@pytest.mark.slow  # the CLI as another user
@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"), reason="needs root to run the CLI as another user"
)
def test_unreadable_file_as_an_ordinary_user():
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="archive-perm-")
    os.chmod(root, 0o777)
    ok, why = nobody_can_run_the_cli(root)
    if not ok:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"user nobody cannot run {sys.executable} with this checkout (a private folder on the way?): {why}")
    try:
        os.chmod(root, 0o777)
        d = os.path.join(root, "videos")
        os.mkdir(d)
        os.chmod(d, 0o777)
        make_video(os.path.join(d, "good.mp4"), [Shot(1, 25)], "25")
        secret = os.path.join(d, "secret.mp4")
        make_video(secret, [Shot(2, 25)], "25")
        os.chmod(secret, 0o000)
        env = env_for_cli(__import__("pathlib").Path(root))
        env.update(HOME=root, XDG_CACHE_HOME=root, TORCH_HOME=root, HF_HOME=root)
        cmd = AS_NOBODY + ARCHIVE + ["index", d, "-q", "--json"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert "Traceback" not in p.stderr, p.stderr
        rep = json.loads(p.stdout)
        assert p.returncode == 1 and rep["indexed"] == 1
        assert rep["failures"] == [{"path": secret, "error": "cannot read (permission denied)"}]
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow  # the CLI in a process
def test_non_utf8_file_name_is_one_failure_and_the_rest_is_indexed(tmp_path):
    d = tmp_path / "names"
    d.mkdir()
    make_video(d / "a.mp4", [Shot(1, 25)], "25")
    make_video(d / "c.mp4", [Shot(2, 25)], "25")
    bad = os.path.join(os.fsencode(d), b"bad\xff.mp4")
    with open(bad, "wb") as fh:
        fh.write((d / "a.mp4").read_bytes())
    p = run_cli(["index", d, "-q", "--json"], env_for_cli(tmp_path), timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    rep = json.loads(p.stdout)
    assert p.returncode == 1 and rep["indexed"] == 2
    assert [f["error"] for f in rep["failures"]] == ["the file name is not valid UTF-8: rename the file to index it"]
