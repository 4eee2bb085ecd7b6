from pathlib import Path

import pytest
from gen.videos import RATES, Shot, make_video, seconds_to_frames

from indexer.errors import VideoOpenError
from indexer.media.decode import DecodeStats, probe, sample_frames
from indexer.run.discover import discover

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("rate", ["23.976", "25", "29.97", "30", "60"])
def test_two_samples_per_second_at_any_frame_rate(tmp_path, rate):
    t = make_video(tmp_path / f"v{rate}.mp4", [Shot(1, seconds_to_frames(6.0, rate))], rate)
    stats = DecodeStats()
    frames = list(sample_frames(t.path, 2.0, short_side=64, stats=stats))
    assert len(frames) == 12
    native = 1 / float(RATES[rate])
    for k, f in enumerate(frames):
        # the first frame at or after k/2 s, timed by its pts (not index / assumed fps)
        assert k / 2 - 1e-6 <= f.ts_s < k / 2 + native + 1e-6
    assert stats.decoded_frames == t.n_frames
    assert stats.duration_s == pytest.approx(t.duration_s, abs=1e-6)
    assert probe(t.path).fps == pytest.approx(float(RATES[rate]))


def test_frames_are_sized_for_the_model(tmp_path):
    t = make_video(tmp_path / "v.mp4", [Shot(1, 10)], "25", size=(320, 240))
    [f] = list(sample_frames(t.path, 2.0, short_side=224))
    assert f.rgb.shape == (224, 299, 3)


def test_megamind_times_come_from_the_container():
    # 23.976 fps AVI with packed B-frames: the pts come shuffled; output times must be monotonic.
    stats = DecodeStats()
    frames = list(sample_frames(DATA / "Megamind.avi", 2.0, 64, stats))
    ts = [f.ts_s for f in frames]
    assert ts == sorted(ts)
    assert stats.decoded_frames == 270
    # one black frame, then cuts at frames 99, 155 and 201 (checked by eye): each shot is sampled
    # at its first frame, on top of the 2-per-second grid
    content = [s for s in stats.shots if not s.blank]
    assert [round(s.start_s * 23.976) for s in content] == [2, 99, 155, 201]
    assert stats.shots[0].kind == "black"
    assert all(any(abs(t - s.start_s) < 1e-9 for t in ts) for s in stats.shots)
    assert len(frames) == 23 + 4
    assert stats.duration_s == pytest.approx(271 / 23.976, abs=0.01)  # first frame has pts 1


def test_tree_held_frames_are_not_timed_by_index():
    # Cinepak AVI stores 68 distinct frames of 444; the rest are held. Times follow the pts.
    stats = DecodeStats()
    frames = list(sample_frames(DATA / "tree.avi", 2.0, 64, stats))
    assert stats.decoded_frames == 68
    assert stats.duration_s == pytest.approx(444 / 15, abs=0.1)
    assert frames[1].ts_s == pytest.approx(11 / 15, abs=1e-3)  # not 1/15 s
    assert len(frames) <= 60


@pytest.mark.parametrize(
    "name, content",
    [("empty.mp4", b""), ("text.mp4", b"this is not a video\n" * 50), ("noise.avi", bytes(range(256)) * 40)],
)
def test_bad_files_raise_one_clear_error(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(VideoOpenError) as err:
        list(sample_frames(p, 2.0))
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_directory_named_like_a_video(tmp_path):
    d = tmp_path / "x.mp4"
    d.mkdir()
    with pytest.raises(VideoOpenError, match="directory"):
        probe(d)


def test_discover_walks_folders_by_extension(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.MP4").write_bytes(b"x")
    (tmp_path / "a" / "b" / "two.mov").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_bytes(b"x")
    (tmp_path / "a" / ".hidden.mp4").write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    named = tmp_path / "clip.bin"
    named.write_bytes(b"x")
    files, problems = discover([tmp_path / "a", named, tmp_path / "missing"])
    assert sorted(Path(f).name for f in files) == ["clip.bin", "one.MP4", "two.mov"]
    assert all(Path(f).is_absolute() for f in files)
    assert problems == [(str(tmp_path / "missing"), "no such file or folder")]


def test_raw_h264_without_pts_is_timed_by_frame_count(tmp_path):
    import av

    t = make_video(tmp_path / "cuts.mp4", [Shot(1, 50), Shot(2, 50), Shot(3, 50)], "25")
    raw = tmp_path / "cuts.h264"
    with av.open(str(t.path)) as src, av.open(str(raw), "w", format="h264") as out:
        ist = src.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for pkt in src.demux(ist):
            if pkt.dts is not None:
                pkt.stream = ost
                out.mux(pkt)
    stats = DecodeStats()
    frames = list(sample_frames(raw, 2.0, 64, stats))
    assert len(frames) == 12 and stats.duration_s == pytest.approx(6.0, abs=0.05)
    assert [round(s.start_s, 2) for s in stats.shots] == [0.0, 2.0, 4.0]


def test_joined_streams_keep_counting_after_a_timestamp_reset(tmp_path):
    parts = [make_video(tmp_path / f"p{i}.ts", [Shot(5 + i, 100)], "25") for i in range(2)]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.path.read_bytes() for p in parts))
    stats = DecodeStats()
    frames = list(sample_frames(joined, 2.0, 64, stats))
    assert stats.duration_s == pytest.approx(8.0, abs=0.1) and len(frames) == 16
    assert [round(s.start_s, 1) for s in stats.shots] == [0.0, 4.0]
    assert any("restart" in n for n in stats.notes)
