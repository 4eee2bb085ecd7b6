"""Query by example when the same footage recurs in many videos: the image rule's "chance" level
leaves out pairs that are the same footage, so a still is found in every video that shows its
shot, and nothing is found for footage that is not in the archive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gen.recurads import make_recurring
from helpers import TEST_MODEL, env_for_cli, run_cli

pytestmark = pytest.mark.slow  # the store fixture's index run decodes its first video in a child process; the CLI

FRAME = 1 / 25  # the generated videos' frame interval


@pytest.fixture(scope="module", params=[(12, (2, 5, 10), 1), (36, (10, 5, 2), 2)], ids=["12-videos", "36-videos"])
def recurring(request, tmp_path_factory: pytest.TempPathFactory, encoder):
    """An archive where every look recurs: ``shared{j}`` in 2, 5 and 10 of the videos, four filler
    looks in the rest (each in a third or more of them); every third video repeats its opening
    shot at its end. Indexed with the test model (random weights) at 2 samples/s."""
    from archive import Archive

    videos, recur, seed = request.param
    d = tmp_path_factory.mktemp(f"recurring{videos}")
    rs = make_recurring(d / "videos", videos=videos, recur=recur, fillers=4, unseen=2, seed=seed)
    a = Archive(d / "store", encoder=encoder)
    a.index([d / "videos"], fps=2.0, model=TEST_MODEL, pretrained="none")
    stills = d / "stills"
    stills.mkdir()
    keys = rs.keys() + rs.unseen
    paths = {k: rs.still(k, stills / f"{k}.png") for k in keys}
    return d, rs, a, paths


def _same(x: object, y: object) -> bool:
    """The same levels (numbers within float rounding of a JSON round trip; nested dicts and lists alike)."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, str) or x is None or y is None:
        return x == y
    return abs(float(x) - float(y)) <= 1e-9  # type: ignore[arg-type]


def _by_name(res) -> dict[str, object]:
    return {Path(r.video).name: r for r in res.results}


def test_every_still_is_found_wherever_its_footage_recurs(recurring) -> None:
    _d, rs, a, paths = recurring
    keys = rs.keys()
    results = a.search(image=[paths[k] for k in keys], top=None)
    counts = sorted(len(rs.appearances(k)) for k in keys)
    assert counts[0] == 2 and 5 in counts and 10 in counts  # footage recurring in 2, 5 and 10 videos (and more)
    for key, res in zip(keys, results):
        truth = {ap.video: ap for ap in rs.appearances(key)}
        got = _by_name(res)
        assert len(got) == len(rs.vset.versions)
        for name, r in got.items():
            if name not in truth:  # other footage: never matched
                assert not r.present, (key, name, r.score, res.threshold)
                continue
            assert r.present, (key, name, r.score, res.threshold)  # recall 100%
            spans = truth[name].spans
            assert abs(r.first_seen_s - spans[0][0]) <= FRAME + 1e-6, (key, name, r.first_seen_s, spans)
            assert len(r.segments) == len(spans), (key, name, r.segments, spans)  # a packshot again at the end
            for seg, (s0, s1) in zip(r.segments, spans):
                assert abs(seg.start_s - s0) <= FRAME + 1e-6 and abs(seg.end_s - s1) <= FRAME + 1e-6


def test_footage_not_in_the_archive_is_absent_everywhere(recurring) -> None:
    _d, rs, a, paths = recurring
    for res in a.search(image=[paths[k] for k in rs.unseen], top=None):
        assert not any(r.present for r in res.results), [
            (Path(r.video).name, r.score) for r in res.results if r.present
        ]


def test_recurring_footage_would_lift_a_chance_level_that_keeps_it(recurring) -> None:
    """The archive is one where the old level fails: with the same footage's pairs kept, the
    99.9th percentile of "different" pairs rises above stills' scores in their own shots."""
    from indexer.store import Reader
    from search import presence

    d, rs, a, paths = recurring
    t = Reader(d / "store").frames()
    kept_all = presence.chance_cosine(t.vectors, t.row, t.video_id, t.ts_s, t.shot_id, t.blank, same_level=None)
    from search.query import Searcher

    levels = Searcher(d / "store").image_levels()
    assert levels.over == "videos" and levels.pairs >= 1000 and levels.left_out > 0
    own = min(
        r.score
        for key, res in zip(rs.keys(), a.search(image=[paths[k] for k in rs.keys()], top=None))
        for r in res.results
        if Path(r.video).name in {ap.video for ap in rs.appearances(key)}
    )
    assert kept_all.level > own > levels.threshold()
    assert levels.chance < levels.same_shot  # below what two consecutive samples of one shot score


def test_levels_are_the_archives_whatever_the_scope(recurring, tmp_path: Path) -> None:
    """A video answers an example the same alone (``--video``) as with the whole archive, and the
    levels kept by the index run are the ones a query would measure."""
    from search import levels
    from search.query import Searcher

    d, rs, a, paths = recurring
    store = d / "store"
    kept = Searcher(store).image_levels()
    measured, _stamp = levels.measure(store)
    assert _same(kept.to_dict(), measured.to_dict())
    info = a.info().image_levels  # what `archive info` shows
    assert info["current"] and info["chance"] == pytest.approx(kept.chance, abs=1e-9)
    shown = run_cli(["info"], env_for_cli(tmp_path, store), timeout=600)
    assert shown.returncode == 0 and "image_false_rate" in shown.stdout  # the promise, at this size
    packshot = next(v for v in rs.vset.versions if v.cuts[0].key == v.cuts[-1].key)  # opening shot again at the end
    key = packshot.cuts[0].key
    whole = _by_name(a.search(image=paths[key], top=None)[0])[packshot.name]
    proc = run_cli(
        ["search", "--image", paths[key], "--video", packshot.name, "--json"], env_for_cli(tmp_path, store), timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.splitlines()[0])
    [alone] = line["results"]
    assert line["threshold"] == pytest.approx(kept.threshold(), abs=1e-6)
    # each video its own level (by its shots); the false videos to expect per query at this size
    assert alone["level"] == pytest.approx(whole.level, abs=1e-4) and alone["score"] >= alone["level"]
    assert line["expected_false_videos"] == pytest.approx(kept.expected_false(), abs=1e-4)
    assert kept.expected_false() == pytest.approx(kept.archive_videos / 1000) and kept.archive_videos > 0
    assert alone["present"] and alone["first_seen_s"] == pytest.approx(whole.first_seen_s, abs=1e-3)
    assert [s["start_s"] for s in alone["segments"]] == pytest.approx([s.start_s for s in whole.segments], abs=1e-3)


def test_removing_videos_measures_the_levels_again(recurring, tmp_path: Path) -> None:
    """Pruning changes the archive: the kept levels follow (and a store whose kept levels are
    stale is measured on the spot, with the same numbers)."""
    import shutil

    from archive import Archive
    from indexer.store import Reader
    from search import levels

    d, rs, _a, _paths = recurring
    copy = tmp_path / "store"
    shutil.copytree(d / "store", copy)
    before = json.loads(Reader(copy).meta()["image_levels"])
    gone = rs.vset.versions[0].path
    moved = tmp_path / gone.name
    shutil.move(gone, moved)
    try:
        assert Archive(copy).prune() == [str(gone)]
    finally:
        shutil.move(moved, gone)
    after = json.loads(Reader(copy).meta()["image_levels"])
    assert after["stamp"] != before["stamp"]
    measured, stamp = levels.measure(copy)
    assert stamp == after["stamp"] and _same(measured.to_dict(), {k: v for k, v in after.items() if k != "stamp"})
    assert np.isfinite(after["chance"]) and after["pairs"] >= 1000
    import duckdb

    from search.query import Searcher

    con = duckdb.connect(str(copy / "catalog.duckdb"))  # a store without kept levels (indexed before them)
    con.execute("DELETE FROM meta WHERE key = 'image_levels'")
    con.close()
    assert Archive(copy).info().image_levels is None
    on_the_spot = Searcher(copy).image_levels()  # measured by the query, on the whole archive
    assert _same(on_the_spot.to_dict(), {k: v for k, v in after.items() if k != "stamp"})
