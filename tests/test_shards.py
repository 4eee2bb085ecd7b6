"""Several stores answer as one ranked list (`archive search --store A --store B`, `ARCHIVE_STORE=A:B`)."""

from __future__ import annotations

import json
import os

import pytest
from gen.videos import Shot, frame_at, make_video
from helpers import IMAGE_THRESHOLD, TEST_MODEL, env_for_cli, get, run_cli, start_server, stop

from archive import Archive
from archive.api import search_stores
from indexer.errors import QueryError


@pytest.fixture(scope="module")
def shards(tmp_path_factory, encoder):
    """Two stores; look 7 (a packshot) is in one video of each, at known times."""
    root = tmp_path_factory.mktemp("shards")
    (root / "a").mkdir()
    (root / "b").mkdir()
    va = make_video(root / "a" / "spot_a.mp4", [Shot(1, 40), Shot(7, 30), Shot(2, 40)], "25")
    make_video(root / "a" / "other_a.mp4", [Shot(3, 50), Shot(4, 50)], "25")
    vb = make_video(root / "b" / "spot_b.mp4", [Shot(7, 35), Shot(5, 45)], "25")
    make_video(root / "b" / "other_b.mp4", [Shot(6, 60), Shot(8, 40)], "25")
    for name in ("a", "b"):
        assert Archive(root / f"store_{name}", encoder=encoder).index([root / name]).indexed == 2
    return root, va, vb


def test_two_stores_answer_as_one_ranked_list(shards, encoder):
    root, va, vb = shards
    still = frame_at(va, 7)
    stores = [root / "store_a", root / "store_b"]
    # a plain cut: two-video stores are too small for the image rule to measure its levels on
    [res] = search_stores(stores, image=still, top=None, encoder=encoder, threshold=IMAGE_THRESHOLD)
    assert res.videos_searched == 4 and len(res.results) == 4
    by = {os.path.basename(r.video): r for r in res.results}
    assert {r.store for r in res.results} == {str(s) for s in stores}
    assert by["spot_a.mp4"].store == str(stores[0]) and by["spot_b.mp4"].store == str(stores[1])
    # the packshot is found in both stores, ranked first, at its times (one native frame)
    assert [os.path.basename(r.video) for r in res.results[:2]] == sorted(
        ["spot_a.mp4", "spot_b.mp4"], key=lambda n: -by[n].score
    )
    assert by["spot_a.mp4"].present and by["spot_b.mp4"].present
    assert by["spot_a.mp4"].first_seen_s == pytest.approx(va.spans(7)[0][0], abs=0.04)
    assert by["spot_b.mp4"].first_seen_s == pytest.approx(vb.spans(7)[0][0], abs=0.04)
    # each store's answers are what it gives alone
    for s in stores:
        [alone] = Archive(s, encoder=encoder).search(image=still, top=None, threshold=IMAGE_THRESHOLD)
        for r in alone.results:
            m = by[os.path.basename(r.video)]
            assert (m.present, m.first_seen_s, m.duration_s, m.score) == (
                r.present,
                r.first_seen_s,
                r.duration_s,
                r.score,
            )


def test_top_cuts_the_merged_list(shards, encoder):
    root, va, _ = shards
    stores = [root / "store_a", root / "store_b"]
    [every] = search_stores(stores, "a red car", top=None, encoder=encoder)
    [two] = search_stores(stores, "a red car", top=2, encoder=encoder)
    assert [(r.store, r.video) for r in two.results] == [(r.store, r.video) for r in every.results[:2]]
    keys = [(r.present, r.match, r.score) for r in every.results]
    assert keys == sorted(keys, reverse=True)


def test_stores_of_different_models_are_refused(shards, tmp_path):
    from indexer.store import Writer
    from indexer.store.records import ModelSpec

    root, _, _ = shards
    with Writer(tmp_path / "other") as w:
        w.attach(ModelSpec("ViT-S-32-alt", "another-tag"), 256)
    with pytest.raises(QueryError, match="built with different models.*search them separately"):
        search_stores([root / "store_a", tmp_path / "other"], "a beach")


@pytest.mark.slow  # runs `archive bench` in a process (which starts one per shard)
def test_bench_times_queries_over_shards(tmp_path):
    env = env_for_cli(tmp_path)
    p = run_cli(
        ["bench", "--frames", "600", "--shards", "2", "--queries", "2", "--model", TEST_MODEL, "--json"],
        env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r["mode"], r["shards"], r["frames"], r["frames_per_shard"]) == ("shards", 2, 600, 300)
    assert r["p50_ms"] > 0 and r["merge_p50_ms"] >= 0 and r["peak_rss_mb"] > 0


@pytest.mark.slow  # runs the CLI in processes
def test_cli_several_stores(shards, tmp_path):
    root, va, _ = shards
    still = frame_at(va, 7)
    env = env_for_cli(tmp_path)
    a, b = str(root / "store_a"), str(root / "store_b")
    p = run_cli(["search", "--image", still, "--store", a, "--store", b, "--json", "--threshold", IMAGE_THRESHOLD], env)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert {r["store"] for r in res["results"]} == {a, b} and sum(r["present"] for r in res["results"]) == 2
    env["ARCHIVE_STORE"] = os.pathsep.join([a, b])
    p2 = run_cli(["search", "--image", still, "--json", "--threshold", IMAGE_THRESHOLD], env)
    assert p2.returncode == 0 and json.loads(p2.stdout)["results"] == res["results"]
    p3 = run_cli(["search", "x", "--video", "nowhere.mp4"], env)
    assert p3.returncode == 1 and "no indexed video in any of the stores" in p3.stderr
    p4 = run_cli(["info"], env)
    assert p4.returncode == 2 and "one store" in p4.stderr and len(p4.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # runs `archive serve` in a process
def test_serve_answers_over_several_stores_and_serves_each_stores_files(shards, tmp_path):
    root, va, vb = shards
    a, b = root / "store_a", root / "store_b"
    p, url = start_server(a, tmp_path, "--store", str(b))
    try:
        with open(frame_at(va, 7), "rb") as fh:
            still = fh.read()
        st, _h, raw = get(
            f"{url}api/search/image?name=still.png&threshold={IMAGE_THRESHOLD}&top=10",
            data=still,
            headers={"Content-Type": "image/png"},
            method="POST",
        )
        assert st == 200, raw
        res = json.loads(raw)
        assert res["videos_searched"] == 4
        hits = {os.path.basename(r["video"]): r for r in res["results"] if r["present"]}
        assert set(hits) == {"spot_a.mp4", "spot_b.mp4"}
        assert (hits["spot_a.mp4"]["store_index"], hits["spot_b.mp4"]["store_index"]) == (0, 1)
        assert hits["spot_b.mp4"]["store"] == str(b)
        # each id is looked up in its own store: the same numbers mean other videos in the other store
        rb = hits["spot_b.mp4"]
        st, h, jpeg = get(f"{url}api/thumbnails/{rb['best_frame_id']}?store=1")
        assert st == 200 and h["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        st, _h, data = get(f"{url}api/media/{rb['video_id']}?store=1")
        assert st == 200 and data == vb.path.read_bytes()
        st, _h, data = get(f"{url}api/media/{hits['spot_a.mp4']['video_id']}")
        assert st == 200 and data == va.path.read_bytes()
        st, _h, raw = get(f"{url}api/videos/{rb['video_id']}?store=1")
        assert st == 200 and json.loads(raw)["path"] == str(vb.path) and json.loads(raw)["store_index"] == 1
        st, _h, raw = get(f"{url}api/media/0?store=2")
        assert st == 404 and "no store 2" in json.loads(raw)["detail"]
        rows = json.loads(get(f"{url}api/videos")[2])["videos"]
        assert sorted((r["store_index"], r["name"]) for r in rows) == [
            (0, "other_a.mp4"),
            (0, "spot_a.mp4"),
            (1, "other_b.mp4"),
            (1, "spot_b.mp4"),
        ]
        stats = json.loads(get(f"{url}api/stats")[2])
        assert stats["videos"] == 4 and [s["store_index"] for s in stats["stores"]] == [0, 1]
        assert stats["frames"] == sum(s["frames"] for s in stats["stores"])
    finally:
        stop(p)
