import numpy as np
import pytest

from search.timeline import runs, segments, summarise


def series(values, step=0.5, duration=None):
    ts = np.arange(len(values)) * step
    end = np.append(ts[1:], duration if duration is not None else len(values) * step)
    return ts, end, np.asarray(values, float)


def test_runs_break_at_group_changes():
    mask = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
    group = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    starts, ends = runs(mask, group)
    assert starts.tolist() == [0, 3, 5, 8]
    assert ends.tolist() == [2, 5, 7, 9]


def test_runs_empty_and_all_false():
    assert [a.tolist() for a in runs(np.array([], bool))] == [[], []]
    assert [a.tolist() for a in runs(np.zeros(4, bool))] == [[], []]


def test_segments_cover_sample_intervals_and_peaks():
    ts, end, sc = series([0.1, 0.9, 0.8, 0.1, 0.1, 0.7, 0.2], duration=3.3)
    segs = segments(ts, end, sc, enter=0.5)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.5, 1.5), (2.5, 3.0)]
    assert [s.peak_score for s in segs] == [0.9, 0.7]


def test_last_frame_runs_to_video_end():
    ts, end, sc = series([0.1, 0.9, 0.9], duration=1.37)
    [seg] = segments(ts, end, sc, enter=0.5)
    assert (seg.start_s, seg.end_s) == (0.5, 1.37)


def test_merge_gap_joins_close_segments():
    ts, end, sc = series([0.9, 0.1, 0.9, 0.1, 0.1, 0.9])
    assert len(segments(ts, end, sc, 0.5)) == 3
    assert len(segments(ts, end, sc, 0.5, merge_gap_s=0.5)) == 2
    assert len(segments(ts, end, sc, 0.5, merge_gap_s=1.0)) == 1


def test_summarise_sums_returning_footage():
    ts, end, sc = series([0.9, 0.9, 0.1, 0.1, 0.95, 0.1])
    tl = summarise(ts, end, sc, 0.5)
    assert tl.present and tl.first_seen_s == 0.0
    assert tl.duration_s == pytest.approx(1.5)
    assert len(tl.segments) == 2
    assert tl.best_s == 2.0 and tl.score == 0.95


def test_summarise_absent_and_empty():
    ts, end, sc = series([0.1, 0.2, 0.3])
    tl = summarise(ts, end, sc, 0.5)
    assert not tl.present and tl.first_seen_s is None and tl.duration_s == 0.0
    assert tl.best_s == 1.0 and tl.score == pytest.approx(0.3)
    empty = summarise(np.zeros(0), np.zeros(0), np.zeros(0), 0.5)
    assert not empty.present and empty.best_s is None


def test_hysteresis_enters_high_and_stays_above_low():
    ts, end, p = series([0.1, 0.4, 0.6, 0.45, 0.4, 0.2, 0.45, 0.3])
    [seg] = segments(ts, end, p, enter=0.5, stay=0.35)
    assert (seg.start_s, seg.end_s) == (0.5, 2.5)  # 0.4 before the peak counts, the lone 0.45 later does not
    assert segments(ts, end, p, enter=0.5) == [segments(ts, end, p, 0.5, 0.5)[0]]
    assert len(segments(ts, end, np.array([0.4, 0.45, 0.3]), enter=0.5, stay=0.35)) == 0


def test_min_duration_drops_flashes_after_merging():
    ts, end, sc = series([0.9, 0.1, 0.1, 0.9, 0.9, 0.1])
    assert [s.duration_s for s in segments(ts, end, sc, 0.5, min_duration_s=0.75)] == [1.0]
    assert [s.duration_s for s in segments(ts, end, sc, 0.5, merge_gap_s=1.0, min_duration_s=1.6)] == [2.5]


def test_peak_reports_raw_scores_not_strength():
    ts, end, p = series([0.2, 0.9, 0.8])
    raw = np.array([0.11, 0.31, 0.29])
    [seg] = segments(ts, end, p, 0.5, scores=raw)
    assert seg.peak_score == pytest.approx(0.31)
