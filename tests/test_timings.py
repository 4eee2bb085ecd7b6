"""Shot-accurate timings: generated videos with known cuts, a 0.4 s shot, fades, a returning shot."""

import pytest
from gen.videos import RATES, ad_shots, frame_at, make_video, pattern
from PIL import Image

from archive import Archive

pytestmark = pytest.mark.slow  # the `ad` fixture's index run loads TransNetV2 (its fades open the gate)


@pytest.fixture(scope="module", params=["25", "29.97", "23.976"])
def ad(request, tmp_path_factory, encoder):
    rate = request.param
    d = tmp_path_factory.mktemp(f"ad{rate}")
    truth = make_video(d / "ad.mp4", ad_shots(rate), rate)
    arc = Archive(d / "store", encoder=encoder)
    assert arc.index([truth.path]).indexed == 1
    return arc, truth, 1 / float(RATES[rate])


def test_shots_are_detected_at_the_cuts(ad):
    arc, truth, frame = ad
    rows = arc.sql("SELECT start_s, end_s, kind FROM shots ORDER BY start_s").records()
    hard_cuts = [truth.shots[i][1] for i in (1, 2, 5, 6)]  # B, C, B again, E start on hard cuts
    starts = [r["start_s"] for r in rows]
    for cut in hard_cuts:
        assert min(abs(s - cut) for s in starts) < frame / 2, (cut, starts)
    black = [r for r in rows if r["kind"] == "black"]
    assert len(black) == 1
    # the black shot lies within the fade-out ... fade-in stretch
    c_fade_start = truth.shots[2][2] - 0.4
    d_fade_end = truth.shots[4][1] + 0.4
    assert c_fade_start <= black[0]["start_s"] and black[0]["end_s"] <= d_fade_end
    # every shot has at least one sampled frame, the 0.4 s shot included
    assert arc.sql(
        "SELECT count(*) AS n FROM shots s WHERE NOT EXISTS (SELECT 1 FROM frames f WHERE f.shot_id = s.shot_id)"
    ).records() == [{"n": 0}]


def test_image_query_is_exact_to_one_native_frame(ad):
    arc, truth, frame = ad
    q = frame_at(truth, 2)  # the 0.4 s shot, which comes back later
    [res] = arc.search(image=q)  # default rule, no threshold given
    [hit] = [r for r in res.results]
    spans = truth.spans(2)
    assert hit.present and len(hit.segments) == 2
    assert abs(hit.first_seen_s - spans[0][0]) <= frame + 1e-6
    assert abs(hit.duration_s - sum(b - a for a, b in spans)) <= 2 * frame + 1e-6
    for seg, (a, b) in zip(hit.segments, spans):
        assert abs(seg.start_s - a) <= frame + 1e-6 and abs(seg.end_s - b) <= frame + 1e-6


def test_first_shot_and_faded_shot(ad):
    arc, truth, frame = ad
    [a] = arc.search(image=frame_at(truth, 1))[0].results
    assert a.first_seen_s == pytest.approx(0.0, abs=frame) and a.duration_s == pytest.approx(2.0, abs=2 * frame)
    [c] = arc.search(image=frame_at(truth, 3))[0].results
    start, end = truth.spans(3)[0]
    assert c.first_seen_s == pytest.approx(start, abs=frame)
    assert end - 0.4 - frame <= c.segments[-1].end_s <= end + frame  # ends within its fade-out


def test_black_never_matches(ad, tmp_path):
    arc, truth, _ = ad
    q = tmp_path / "black.png"
    Image.fromarray(pattern(0)).save(q)
    black = arc.sql("SELECT start_s, end_s FROM shots WHERE kind = 'black'").records()[0]
    for threshold in (None, -1.0):  # the rule, and a cut every frame passes: blank shots stay out
        [res] = arc.search(image=q, threshold=threshold)
        for seg in res.results[0].segments:
            assert seg.end_s <= black["start_s"] + 1e-9 or seg.start_s >= black["end_s"] - 1e-9
    assert res.results[0].present  # with threshold -1 everything else is in


def test_nothing_matches_shows_nothing(ad, tmp_path):
    arc, _, _ = ad
    q = tmp_path / "absent.png"
    Image.fromarray(pattern(9)).save(q)
    [res] = arc.search(image=q)
    assert not any(r.present for r in res.results)
