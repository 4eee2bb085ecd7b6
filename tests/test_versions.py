"""Versions of the same film: matches found at index time from the stored vectors, grouped, kept
up to date when videos are removed; letterbox bars cut before embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gen.versionads import Shared, make_set, score
from helpers import TEST_MODEL, env_for_cli, run_cli


@pytest.fixture(scope="module")
def version_store(tmp_path_factory: pytest.TempPathFactory, encoder):
    """Two films, each with a master, a re-encode, a letterboxed (or pillarboxed) version, a cut-down
    with trimmed cuts and an end card of its own, a reordered cut, a 4% speed change and a bumper,
    and three unrelated films in the same looks; indexed with the test model (random weights)."""
    from archive import Archive

    d = tmp_path_factory.mktemp("versions")
    vset = make_set(d / "videos", families=2, distractors=3, seed=5)
    a = Archive(d / "store", encoder=encoder)
    report = a.index([d / "videos"], fps=2.0, model=TEST_MODEL, pretrained="none")
    return d, vset, a, report


def _found(a) -> dict[tuple[str, str], list[Shared]]:
    found: dict[tuple[str, str], list[Shared]] = {}
    for m in a.matches():
        pair, s = (m["name_a"], m["name_b"]), Shared(m["a_start_s"], m["a_end_s"], m["b_start_s"], m["b_end_s"])
        if pair[0] > pair[1]:
            pair, s = (pair[1], pair[0]), Shared(s.b_start, s.b_end, s.a_start, s.a_end)
        found.setdefault(pair, []).append(s)
    return found


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_the_versions_card_uses_its_width_and_plays_each_shared_stretch(version_store, tmp_path: Path) -> None:
    """At 1400x1100 the card's content spans the card (it was squeezed into the 256 px thumbnail
    column), and a click on a shared stretch, on either timeline, plays that video from its start."""
    from helpers import browser_page, start_server, stop

    from indexer.store import Reader

    d, _vset, _a, _r = version_store
    refs = {r.name: r.video_id for r in Reader(d / "store").video_refs()}
    p, url = start_server(d / "store", tmp_path)
    try:
        with browser_page(1400, 1100) as (_browser, page, errors):
            page.goto(url + f"?video={refs['film0_cutdown.mp4']}")
            page.wait_for_selector(".versions .version")
            card = page.locator("li.versions").bounding_box()
            body = page.locator("li.versions > .body").bounding_box()
            assert card and body and body["width"] >= 0.8 * card["width"], (body, card)
            item = page.locator(".versions .version", has_text="film0_master.mp4")
            for k, vid in ((1, refs["film0_master.mp4"]), (0, refs["film0_cutdown.mp4"])):
                seg = item.locator(".timeline").nth(k).locator(".seg").first
                start = float(seg.get_attribute("data-start"))
                seg.click()
                page.wait_for_function("document.querySelector('#player').open")
                page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
                src = page.evaluate("document.querySelector('#video').currentSrc")
                t = page.evaluate("document.querySelector('#video').currentTime")
                assert f"/api/media/{vid}" in src and start - 0.05 <= t <= start + 3.0, (src, t, start)
                page.keyboard.press("Escape")
            assert not errors, errors
    finally:
        stop(p)


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_versions_found_and_grouped(version_store) -> None:
    _d, vset, a, report = version_store
    assert report.versions_compared == len(vset.versions)
    result = score(vset, _found(a), interval_s=0.5)
    assert result["recall"] == 1.0, result["missed_pairs"]
    assert result["precision"] == 1.0, result["false_pairs"]
    assert result["iou_min"] >= 0.8, result["worst"]
    assert result["segments_within_one_interval"] == result["segments"], result["worst"]
    rep = a.versions()
    assert len(rep.groups) == 2
    for g in rep.groups:  # each film's versions, and nothing else, in one group
        fam = {v.family for v in vset.versions if v.name in {m.name for m in g.members}}
        assert len(fam) == 1 and None not in fam
        assert {m.name for m in g.members} == {v.name for v in vset.versions if v.family in fam}
        longest = [m for m in g.members if m.is_longest]
        assert len(longest) == 1 and longest[0].duration_s == max(m.duration_s for m in g.members)
    assert rep.not_compared == 0
    info = a.info().versions
    assert (info["groups"], info["videos_in_groups"], info["not_compared"]) == (2, 14, 0)
    assert info["matches"] == len(a.matches())


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_cutdown_segments_land_on_the_masters_shots(version_store) -> None:
    _d, vset, a, _r = version_store
    by = vset.by_name()
    rep = a.versions(["film0_cutdown.mp4"])
    segs = [s for s in rep.groups[0].segments if s["name_b"] == "film0_master.mp4"]
    assert segs and all(s["name_a"] == "film0_cutdown.mp4" for s in segs)  # the video asked about comes first
    from gen.versionads import shared

    truth = shared(by["film0_cutdown.mp4"], by["film0_master.mp4"])
    for t in truth:  # each shared stretch is covered, and its boundaries are within one sample interval
        best = max(segs, key=lambda s: min(s["a_end_s"], t.a_end) - max(s["a_start_s"], t.a_start))
        assert abs(best["a_start_s"] - t.a_start) <= 0.5 + 1e-6 and abs(best["b_start_s"] - t.b_start) <= 0.5 + 1e-6


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_web_page_shows_versions_on_both_timelines(version_store, tmp_path: Path) -> None:
    from helpers import browser_page, get, start_server, stop

    d, vset, a, _r = version_store
    from indexer.store import Reader

    refs = {r.name: r.video_id for r in Reader(d / "store").video_refs()}
    p, url = start_server(d / "store", tmp_path)
    try:
        detail = json.loads(get(url + f"api/videos/{refs['film0_cutdown.mp4']}")[2])
        others = {v["name"]: v for v in detail["versions"]}
        assert "film0_master.mp4" in others and not any(n.startswith("other") for n in others)
        master = others["film0_master.mp4"]
        assert master["segments"] and all(s["end_s"] <= detail["duration_s"] + 0.05 for s in master["segments"])
        assert all(s["other_end_s"] <= master["duration_s"] + 0.05 for s in master["segments"])
        with browser_page() as (_browser, page, errors):
            page.goto(url + f"?video={refs['film0_cutdown.mp4']}")
            page.wait_for_selector(".versions .version")
            card = page.locator(".versions")
            assert f"shares footage with {len(others)} video" in card.locator("h3").inner_text()
            item = card.locator(".version", has_text="film0_master.mp4")
            assert item.locator(".timeline").count() == 2  # this video's timeline and the master's
            assert item.locator(".timeline").nth(0).locator(".seg").count() == len(master["segments"])
            assert item.locator(".timeline").nth(1).locator(".seg").count() == len(master["segments"])
            item.locator("a.details").click()  # the link leads to the master's own page
            page.wait_for_function("location.search.includes('video=%d')" % refs["film0_master.mp4"])
            page.wait_for_function(  # the master's page has replaced the cut-down's
                "document.querySelector('#results .result h3')?.textContent === 'film0_master.mp4' && "
                "document.querySelector('.versions .version') !== null"
            )
            links = page.locator(".versions .version a.details").all_inner_texts()
            assert "film0_cutdown.mp4" in links and "film0_master.mp4" not in links
            assert not errors, errors
    finally:
        stop(p)


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_versions_cli_and_removal(version_store, tmp_path: Path) -> None:
    d, vset, a, _r = version_store
    env = env_for_cli(tmp_path, d / "store")
    out = run_cli(["versions", "--json"], env, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["groups"]) == 2 and data["min_shared_s"] == 2.0
    out = run_cli(["versions", "no_such_video.mp4"], env, timeout=300)
    assert out.returncode == 1 and "no_such_video.mp4" in out.stderr and "Traceback" not in out.stderr
    # a bigger --min-shared than the bumper-free cut-down shares splits it off
    bumper = next(m for g in a.versions().groups for m in g.members if m.name == "film0_bumper.mp4")
    rep = a.versions(min_shared=bumper.shared_s + 0.5)  # the bumper shares less than that with anything
    assert all("film0_bumper.mp4" not in {m.name for m in g.members} for g in rep.groups)
    a.versions(min_shared=2.0)
    # removing a video removes its matches and regroups
    before = len(a.matches())
    gone = next(v for v in vset.versions if v.name == "film0_speed.mp4")
    moved = gone.path.with_suffix(".moved")
    gone.path.rename(moved)
    try:
        assert a.prune() == [str(gone.path.resolve())]
        assert all("film0_speed.mp4" not in (m["name_a"], m["name_b"]) for m in a.matches())
        assert len(a.matches()) < before
        assert all("film0_speed.mp4" not in {m.name for m in g.members} for g in a.versions().groups)
    finally:
        moved.rename(gone.path)


def test_letterbox_bars_are_cut() -> None:
    from indexer.media.imageprep import content_box, crop_bars

    rng = np.random.default_rng(0)
    pic = rng.integers(40, 255, size=(90, 160, 3), dtype=np.uint8)
    boxed = np.zeros((120, 160, 3), np.uint8)
    boxed[15:105] = pic
    assert content_box(boxed) == (0, 15, 160, 90)
    assert np.array_equal(crop_bars(boxed), pic)
    pillar = np.zeros((90, 200, 3), np.uint8)
    pillar[:, 20:180] = pic
    assert content_box(pillar) == (20, 0, 160, 90)
    dark_top = pic.copy()
    dark_top[:20] = 0  # a picture dark at one edge only is not cut
    assert content_box(dark_top) is None
    assert content_box(np.zeros((90, 160, 3), np.uint8)) is None  # a black frame stays as it is


@pytest.mark.parametrize(
    "bar, dark", [((24, 24, 24), True), ((24, 24, 25), False), ((0, 0, 0), True), ((10, 10, 10), True)]
)
def test_letterbox_bars_at_the_darkness_limits(bar: tuple[int, int, int], dark: bool) -> None:
    """A bar is dark when its grey (the mean of the channels) is at most 24 on average and at most
    48 at its 95th percentile: exactly 24 is dark, a third of a level more is not. Also at a size
    where lines are read at every second pixel (short side >= 512)."""
    from indexer.media.imageprep import content_box

    rng = np.random.default_rng(1)
    for h, w in ((120, 160), (600, 1000)):
        frame = rng.integers(60, 255, size=(h, w, 3), dtype=np.uint8)
        frame[: h // 8] = bar
        frame[h - h // 8 :] = bar
        if bar == (10, 10, 10):  # a few bright pixels, under 5 % of the line, leave it dark
            frame[: h // 8, ::25] = 200
        assert content_box(frame) == ((0, h // 8, w, h - 2 * (h // 8)) if dark else None)


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_like_video_indexed_or_not(version_store, tmp_path: Path) -> None:
    """An indexed file's stored samples answer; a copy elsewhere is decoded once and answers the
    same; the store is not changed; each segment gives its range in the file."""
    import shutil

    from indexer.errors import QueryError

    d, vset, a, _r = version_store
    src = next(v for v in vset.versions if v.name == "film1_cutdown.mp4").path
    catalog = (d / "store" / "catalog.duckdb").read_bytes()
    indexed = a.like_video(src)
    copy = tmp_path / "copy.mp4"
    shutil.copy(src, copy)
    decoded = a.like_video(copy)
    assert (d / "store" / "catalog.duckdb").read_bytes() == catalog

    def names(res):
        return {Path(r.video).name for r in res.results}

    family = {v.name for v in vset.versions if v.family == "film1"}
    assert "film1_master.mp4" in names(indexed) and names(indexed) <= family - {"film1_cutdown.mp4"}
    assert names(decoded) == names(indexed) | {"film1_cutdown.mp4"}  # the copy also finds the file itself
    master = next(r for r in decoded.results if Path(r.video).name == "film1_master.mp4")
    assert master.present and master.segment_sources and len(master.segment_sources) == len(master.segments)
    for seg, (lo, hi) in zip(master.segments, master.segment_sources):
        assert hi - lo == pytest.approx(seg.end_s - seg.start_s, abs=0.6)
    itself = next(r for r in decoded.results if Path(r.video).name == "film1_cutdown.mp4")
    assert itself.duration_s == pytest.approx(itself.video_duration_s, abs=0.05)
    with pytest.raises(QueryError, match="file not found"):
        a.like_video(tmp_path / "missing.mp4")
    env = env_for_cli(tmp_path, d / "store")
    out = run_cli(["search", "--like-video", copy, "--json"], env, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.splitlines()[0])
    assert res["kind"] == "video" and {Path(r["video"]).name for r in res["results"]} == names(decoded)
    assert all("like_start_s" in s for r in res["results"] for s in r["segments"])


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_check_finds_and_repairs_matches_out_of_step(version_store, tmp_path: Path) -> None:
    """`archive check` verifies the matches against the catalog and (a sample) against the vectors;
    `--repair` regroups and has the videos compared again by the next index run."""
    import shutil

    import duckdb

    d, vset, _a, _r = version_store
    from archive import Archive

    store = tmp_path / "store"
    shutil.copytree(d / "store", store)
    a = Archive(store)
    first = a.check()
    assert first.ok, first.problems
    con = duckdb.connect(str(store / "catalog.duckdb"))
    con.execute("UPDATE matches SET b_start_s = 0, b_end_s = a_end_s - a_start_s WHERE b_start_s > 3")
    con.execute("DELETE FROM versions WHERE video_id = (SELECT min(video_id) FROM versions)")
    con.close()
    rep = a.check()
    assert not rep.ok
    assert any("out of step" in p for p in rep.problems) and any("disagree" in p for p in rep.problems)
    rep = a.check(repair=True)
    assert rep.ok, rep.problems
    assert any("compared again by the next" in x for x in rep.repaired)
    assert any("not compared" in n for n in rep.notes)
    a.index([d / "videos"], fps=2.0)
    rep = a.check()
    assert rep.ok and not any("not compared" in n for n in rep.notes)


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_ivf_index_finds_the_same_versions_as_the_exact_scan(version_store, tmp_path: Path, monkeypatch) -> None:
    """In an archive large enough for an IVF index (the version set plus 12,000 synthetic frames),
    the nearest neighbours through FAISS lead to the same matches as the exact range search."""
    import shutil

    from archive import Archive
    from archive.bench.synthetic import build_synthetic
    from indexer.store import Reader
    from search import versions as versions_mod
    from search.timeline import video_bounds

    d, vset, _a, _r = version_store
    store = tmp_path / "store"
    shutil.copytree(d / "store", store)
    real = {r.video_id for r in Reader(store).video_refs()}
    build_synthetic(str(store), 12_000, TEST_MODEL, "none")  # keeps the store's basis; marks its videos compared
    Archive(store).optimize(ivf=True)
    basis, new = versions_mod.basis_of(store)
    assert not new
    table = Reader(store).frames(sorted(real))
    starts, stops = video_bounds(table.video_id)
    sides = [versions_mod.side_of(table, int(a), int(b)) for a, b in zip(starts, stops)]

    def pairs(use_ivf: bool) -> set[tuple[int, int]]:
        return {
            (m.ordered().video_a, m.ordered().video_b) for m in versions_mod.find(store, sides, basis, use_ivf=use_ivf)
        }

    exact, through_ivf = pairs(False), pairs(True)
    assert exact and through_ivf == exact
    assert all(a in real and b in real for a, b in exact)  # nothing matched among the synthetic frames


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_new_and_reindexed_videos_are_compared_alone(version_store, tmp_path: Path) -> None:
    """Adding a video compares it (only it) with the archive; indexing it again after its content
    changed replaces its matches."""
    import shutil

    from archive import Archive

    d, vset, _a, _r = version_store
    store = tmp_path / "store"
    shutil.copytree(d / "store", store)
    a = Archive(store)
    by = vset.by_name()
    clips = tmp_path / "clips"
    clips.mkdir()
    new = clips / "master_again.mp4"
    shutil.copy(by["film0_master.mp4"].path, new)
    rep = a.index([clips], fps=2.0)
    assert (rep.indexed, rep.versions_compared) == (1, 1)
    mine = a.matches([str(new)])
    same = [m for m in mine if "film0_master.mp4" in (m["name_a"], m["name_b"])]
    assert same and sum(m["a_end_s"] - m["a_start_s"] for m in same) == pytest.approx(
        by["film0_master.mp4"].duration_s, abs=0.6
    )
    assert {m["name_a"] for m in mine} | {m["name_b"] for m in mine} <= {
        v.name for v in vset.versions if v.family == "film0"
    } | {new.name}
    shutil.copy(by["film1_master.mp4"].path, new)  # another film now
    rep = a.index([clips], fps=2.0)
    assert (rep.indexed, rep.versions_compared) == (1, 1)
    names = {m["name_a"] for m in a.matches([str(new)])} | {m["name_b"] for m in a.matches([str(new)])}
    assert "film1_master.mp4" in names and not any(n.startswith("film0") for n in names)
    assert a.check().ok


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_cuts_moved_a_few_frames_either_way(tmp_path: Path, encoder) -> None:
    """A recut moves every cut of the master by up to three frames, trimming some shots and reaching
    into the takes for others (frames the master does not show); a cut-down trims at its cuts. Every
    pair of the film is found, with nothing else, and each shared segment's boundaries lie within
    one sample interval of the truth."""
    from gen.versionads import HANDLE

    from archive import Archive

    vset = make_set(tmp_path / "videos", families=1, distractors=2, seed=5, kinds=("recut", "cutdown"))
    by = vset.by_name()
    master, recut = by["film0_master.mp4"], by["film0_recut.mp4"]
    added_head = [c for c in recut.cuts if c.first < HANDLE]
    added_tail = [c for m, c in zip(master.cuts, recut.cuts) if c.first + c.frames > m.first + m.frames]
    assert added_head and added_tail and any(c.first > HANDLE for c in recut.cuts)  # added and trimmed
    a = Archive(tmp_path / "store", encoder=encoder)
    a.index([tmp_path / "videos"], fps=2.0, model=TEST_MODEL, pretrained="none")
    result = score(vset, _found(a), interval_s=0.5)
    assert (result["precision"], result["recall"]) == (1.0, 1.0), (result["false_pairs"], result["missed_pairs"])
    assert result["pairs_true"] == 3
    assert result["segments_within_one_interval"] == result["segments"], result["worst"]
    assert result["iou_min"] >= 0.8, result["worst"]


def test_a_shot_entered_by_a_dissolve_starts_at_its_own_start() -> None:
    """A shot entered by a dissolve starts at the dissolve's middle, before its first sample: the
    alignment places such shots from their start, for a decoded file as for stored samples."""
    from search.versions import make_side

    ts, end, shot = [0.0, 0.5, 1.3, 1.8], [0.5, 1.1, 1.8, 2.3], [0, 0, 1, 1]
    vecs = np.eye(4, 8, dtype=np.float32)
    side = make_side(-1, ts, end, shot, [False] * 4, vecs, shot_start=[0.0, 0.0, 1.1, 1.1])
    assert side.shot_start.tolist() == [0.0, 0.0, 1.1, 1.1] and side.shot_end.tolist() == [1.1, 1.1, 2.3, 2.3]
    plain = make_side(-1, ts, end, shot, [False] * 4, vecs)  # without starts: each shot's first sample
    assert plain.shot_start.tolist() == [0.0, 0.0, 1.3, 1.3]


@pytest.mark.slow  # version_store: its index run loads TransNetV2 and decodes in a child process
def test_comparing_reads_the_catalog_through_one_connection(version_store, monkeypatch) -> None:
    """An add compares its videos with the archive inside ``with reader:``: the catalog is opened and
    checked once, not once per read (about 20 ms each), with the same matches."""
    from indexer.store import Reader, reader
    from search import versions as compare

    d, _vset, _a, _r = version_store
    store = d / "store"
    with Reader(store).connection() as con:
        ids = [int(r[0]) for r in con.execute("SELECT video_id FROM videos ORDER BY video_id LIMIT 2").fetchall()]
    opened = []
    real = reader.connect
    monkeypatch.setattr(reader, "connect", lambda *args, **kw: opened.append(args) or real(*args, **kw))
    shared_reader = Reader(store)
    with shared_reader:
        assert shared_reader.unmatched_videos() == []
        _b, _n, shared = compare.compare(shared_reader, ids)
    assert len(opened) == 1
    opened.clear()
    _b, _n, alone = compare.compare(store, ids)
    assert len(opened) >= 4  # what each read costs without it
    assert shared == alone and shared
    # nested blocks share the outer one's connection; an error inside closes it and leaves no trace
    opened.clear()
    with pytest.raises(RuntimeError), shared_reader:
        with shared_reader, shared_reader.connection() as c1, shared_reader.connection() as c2:
            assert c1 is c2
        raise RuntimeError("inside")
    assert len(opened) == 1 and shared_reader._con is None
    with shared_reader.connection() as con:  # back to a connection per read
        assert con.execute("SELECT count(*) FROM videos").fetchall()[0][0] > 0
    assert len(opened) == 2


def test_two_stills_alike_are_not_shared_footage_a_moving_shot_is() -> None:
    """Two stills that match (an end card, a near-still shot of another film in its colours) match
    at any offset: no pair rests on them alone. The same footage moving is a pair."""
    from search.versions import align, make_side
    from search.versions.align import STILL

    rng = np.random.default_rng(4)

    def unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    n, dim, level = 6, 64, 0.9
    ts = np.arange(n) * 0.5
    still = unit(rng.standard_normal(dim))
    a_still = unit(still + 0.01 * rng.standard_normal((n, dim)))  # consecutive cosine about 0.99
    b_still = unit(still + 0.2 * unit(rng.standard_normal(dim)) + 0.01 * rng.standard_normal((n, dim)))
    path = unit(np.cumsum(0.45 * unit(rng.standard_normal((n, dim))), axis=0) + still)  # a moving shot
    b_move = unit(path + 0.03 * rng.standard_normal((n, dim)))  # the same footage, re-encoded

    def side(vid, v):
        return make_side(vid, ts, ts + 0.5, np.zeros(n, np.int64), np.zeros(n, bool), v)

    a, b = side(1, a_still), side(2, b_still)
    sims = a_still @ b_still.T
    assert (sims > level).all()  # every sample of one matches every sample of the other
    assert align(a, b, sims, level)  # without the vectors' own steps, a line of matches ...
    assert align(a, b, sims, level, white=(a_still, b_still)) == []  # ... but two stills
    m, mb = side(3, path), side(4, b_move)
    sims = path @ b_move.T
    assert np.median(np.sum(path[1:] * path[:-1], axis=1)) < 1 - STILL * (1 - level)  # it moves more than a still
    [seg] = align(m, mb, sims, level, white=(path, b_move))
    assert (seg.a_start_s, seg.a_end_s, seg.b_start_s, seg.b_end_s) == (0.0, 3.0, 0.0, 3.0)
