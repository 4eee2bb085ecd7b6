"""`archive serve`: the JSON API on a real server on loopback, and the page in a real browser
(Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from gen.videos import ad_shots, frame_at, make_video
from helpers import DATA, browser_page, env_for_cli, get, run_cli, start_server, stop
from PIL import Image

from archive import Archive

pytestmark = pytest.mark.slow  # `archive serve` and `archive index` in processes, Chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with a generated H.264 ad (known shots) and tree.avi, served on loopback."""
    root = tmp_path_factory.mktemp("served")
    clips = root / "clips"
    clips.mkdir()
    ad = make_video(clips / "spot.mp4", ad_shots("25"), "25")
    shutil.copy(DATA / "tree.avi", clips / "tree.avi")
    store = root / "store"
    env = env_for_cli(root, store)
    run_cli(["index", clips], env, check=True, text=False, timeout=600)
    p, url = start_server(store, root)
    yield {"url": url, "store": store, "ad": ad, "clips": clips, "root": root, "look2": frame_at(ad, 2)}
    stop(p)


def test_binds_to_loopback_and_serves_the_page(served):
    assert served["url"].startswith("http://127.0.0.1:")
    code, headers, body = get(served["url"])
    assert code == 200 and headers["content-type"].startswith("text/html") and b'id="results"' in body
    code, _, js = get(served["url"] + "static/app.js")
    assert code == 200 and b"/api/search" in js
    code, _, spec = get(served["url"] + "openapi.json")
    paths = json.loads(spec)["paths"]
    for p in (
        "/api/search",
        "/api/search/image",
        "/api/videos",
        "/api/videos/{video_id}",
        "/api/thumbnails/{frame_id}",
        "/api/media/{video_id}",
        "/api/stats",
    ):
        assert p in paths
    assert get(served["url"] + "docs")[0] == 200


def test_text_search_has_the_cli_shape(served):
    code, _, body = get(served["url"] + "api/search?q=a%20red%20car&top=5")
    assert code == 200
    api = json.loads(body)
    cli = run_cli(
        ["search", "a red car", "--top", "5", "--json"], env_for_cli(served["root"], served["store"]), check=True
    )
    ref = json.loads(cli.stdout)
    assert {k: api[k] for k in ref} == ref  # same fields, same answers; the API adds counts and timing
    assert api["videos_searched"] == 2 and api["took_ms"] > 0


def test_image_search_finds_the_shot_with_its_thumbnails(served):
    png = Path(served["look2"]).read_bytes()
    code, _, body = get(
        served["url"] + "api/search/image?name=look2.png",
        data=png,
        headers={"Content-Type": "image/png"},
        method="POST",
    )
    assert code == 200, body
    res = json.loads(body)
    assert res["kind"] == "image" and res["query"] == "image:look2.png"
    top = res["results"][0]
    assert top["video"].endswith("spot.mp4") and top["present"]
    spans = served["ad"].spans(2)  # shot B at 2.0-2.4 s and again later
    assert [(round(s["start_s"], 2), round(s["end_s"], 2)) for s in top["segments"]] == [
        (round(a, 2), round(b, 2)) for a, b in spans
    ]
    for fid in [top["best_frame_id"]] + [s["peak_frame_id"] for s in top["segments"]]:
        code, headers, jpeg = get(served["url"] + f"api/thumbnails/{fid}")
        assert code == 200 and headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(jpeg)) as im:
            assert im.format == "JPEG" and max(im.size) == 256


def test_videos_and_one_video(served):
    code, _, body = get(served["url"] + "api/videos")
    vids = json.loads(body)["videos"]
    assert code == 200 and sorted(v["name"] for v in vids) == ["spot.mp4", "tree.avi"]
    spot = next(v for v in vids if v["name"] == "spot.mp4")
    assert spot["playable"] and spot["shots"] == 7 and spot["thumbnail_frame_id"] is not None
    assert not next(v for v in vids if v["name"] == "tree.avi")["playable"]  # MPEG-4 part 2 in AVI
    code, _, body = get(served["url"] + f"api/videos/{spot['video_id']}")
    one = json.loads(body)
    assert code == 200 and len(one["shots"]) == 7 and one["file_present"] and one["path"] == spot["path"]
    code, _, body = get(served["url"] + "api/videos/9999")
    assert code == 404 and "no video with id 9999" in json.loads(body)["detail"]


def test_media_is_served_with_ranges_from_the_catalog_only(served):
    vids = json.loads(get(served["url"] + "api/videos")[2])["videos"]
    spot = next(v for v in vids if v["name"] == "spot.mp4")
    data = Path(spot["path"]).read_bytes()
    code, headers, body = get(served["url"] + f"api/media/{spot['video_id']}", headers={"Range": "bytes=100-1099"})
    assert code == 206 and body == data[100:1100]
    assert headers["content-range"] == f"bytes 100-1099/{len(data)}" and headers["content-type"] == "video/mp4"
    code, headers, body = get(served["url"] + f"api/media/{spot['video_id']}")
    assert code == 200 and body == data and headers["accept-ranges"] == "bytes"
    for bad in ("api/media/..%2F..%2Fetc%2Fpasswd", "api/media/%2Fetc%2Fpasswd", "api/media/-1", "api/media/42"):
        code, _, body = get(served["url"] + bad)
        assert code in (404, 422) and b"root:" not in body


def test_bad_requests_get_a_4xx_with_a_message(served):
    cases = [
        ("api/search?q=beach&top=0", None, 422, "top"),
        ("api/search?q=%20", None, 400, "empty query"),
        ("api/search", None, 400, "give q (a text to search for), ocr"),
        ("api/search?q=beach&video=nope.mp4", None, 400, "--video nope.mp4"),
        ("api/search/image?name=x.png", b"not an image", 400, "not a readable image"),
        ("api/search/image", b"", 400, "no image"),
        ("api/thumbnails/99999999", None, 404, "no frame"),
        ("api/thumbnails/abc", None, 422, "frame_id"),
    ]
    for path, data, status, words in cases:
        code, headers, body = get(served["url"] + path, data=data, method="POST" if data is not None else None)
        detail = json.loads(body)["detail"]
        assert code == status and words in detail, (path, code, detail)
        assert "Traceback" not in detail and "/tmp/" not in detail


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    chunk = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_hostile_requests_are_refused(served):
    url = served["url"]
    # DNS rebinding: a page elsewhere reaching 127.0.0.1 under its own name
    code, _, body = get(url + "api/videos", headers={"Host": "evil.example"})
    assert code == 400 and b"spot.mp4" not in body
    cases = [
        ("api/search/image?name=a%00b.png", Path(served["look2"]).read_bytes(), 200),
        ("api/search/image?name=big.png", _png_header(20000, 20000), 400),
        ("api/videos/100000000000000000000000", None, 422),
        ("api/thumbnails/100000000000000000000000", None, 422),
        ("api/media/100000000000000000000000", None, 422),
    ]
    for path, data, status in cases:
        code, _, body = get(url + path, data=data, method="POST" if data is not None else None)
        assert code == status, (path, code, body[:200])
    # a huge upload is refused from its declared length, before the body is read
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.putrequest("POST", "/api/search/image")
    conn.putheader("Content-Length", str(30 << 20))
    conn.putheader("Content-Type", "image/png")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "too large" in json.loads(r.read())["detail"]
    conn.close()


def test_moved_file_is_410_and_search_still_works(served, tmp_path):
    vids = json.loads(get(served["url"] + "api/videos")[2])["videos"]
    tree = next(v for v in vids if v["name"] == "tree.avi")
    moved = Path(tree["path"]).with_suffix(".moved")
    os.rename(tree["path"], moved)
    try:
        code, _, body = get(served["url"] + f"api/media/{tree['video_id']}")
        assert code == 410 and "no longer at" in json.loads(body)["detail"]
        assert get(served["url"] + "api/search?q=a%20tree")[0] == 200
    finally:
        os.rename(moved, tree["path"])


def test_serve_errors_are_one_line(served, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = run_cli(
            ["serve", "--port", port, "--store", served["store"]], env_for_cli(tmp_path, served["store"]), timeout=120
        )
    assert p.returncode == 1 and "already in use" in p.stderr and "Traceback" not in p.stderr
    p = run_cli(["serve", "--store", tmp_path / "none"], env_for_cli(tmp_path), timeout=60)
    assert p.returncode == 1 and "no archive at" in p.stderr and "Traceback" not in p.stderr


def test_page_in_a_real_browser(served, tmp_path):
    url = served["url"]
    with browser_page() as (browser, page, errors):
        # a text search typed with the keyboard
        page.goto(url)
        page.wait_for_selector(".result")
        page.keyboard.press("/")
        page.keyboard.type("a red car")
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#status').textContent.includes('a red car')")
        assert page.url.endswith("/?q=a%20red%20car")
        assert page.locator(".result").count() == 2
        # query by example: upload a frame of shot B, see its two segments and thumbnails
        page.set_input_files("#image", str(served["look2"]))
        page.wait_for_function("document.querySelector('#status').textContent.includes('example image')")
        first = page.locator(".result").first
        assert "spot.mp4" in first.locator("h3").inner_text()
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.result img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        segs = first.locator(".seg")
        assert segs.count() == 2
        start = float(segs.nth(1).get_attribute("data-start"))
        assert abs(start - served["ad"].spans(2)[1][0]) < 0.05
        # keyboard only: focus the second segment and press Enter; the video plays from there
        segs.nth(1).focus()
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
        t = page.evaluate("document.querySelector('#video').currentTime")
        assert start - 0.05 <= t <= start + 3.0
        assert page.evaluate("document.querySelector('#video').error") is None
        page.screenshot(path=str(tmp_path / "page.png"))
        page.keyboard.press("Escape")
        assert not page.locator("#player").evaluate("d => d.open")
        # phone width: one column, nothing wider than the screen
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(url + "?q=a%20red%20car")
        phone.wait_for_selector(".result")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        assert not errors, errors


def test_older_store_gets_thumbnails_on_the_next_index_run(tmp_path):
    import duckdb

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(DATA / "Megamind.avi", clips / "Megamind.avi")
    a = Archive(tmp_path / "store")
    a.index([clips])
    con = duckdb.connect(str(tmp_path / "store" / "catalog.duckdb"))
    con.execute("UPDATE frames SET thumb_offset = NULL, thumb_bytes = NULL")  # as a v2 store migrated to v3
    con.close()
    assert any("no thumbnail yet" in n for n in a.check().notes)
    before = a.sql("SELECT frame_id, ts_s FROM frames ORDER BY frame_id").rows
    rep = a.index([clips])
    assert (rep.indexed, rep.skipped, rep.thumbnails_added) == (0, 1, len(before))  # nothing re-embedded
    assert a.sql("SELECT frame_id, ts_s FROM frames ORDER BY frame_id").rows == before
    [[missing]] = a.sql("SELECT count(*) FROM frames WHERE thumb_bytes IS NULL").rows
    assert missing == 0 and a.check().ok
    [(off, size)] = a.sql("SELECT thumb_offset, thumb_bytes FROM frames ORDER BY frame_id LIMIT 1").rows
    raw = (tmp_path / "store" / "thumbs.bin").read_bytes()[off : off + size]
    with Image.open(io.BytesIO(raw)) as im:
        assert im.format == "JPEG" and max(im.size) == 256
    assert not any("thumbnail" in n for n in a.check().notes)
    again = a.index([clips])
    assert (again.skipped, again.thumbnails_added) == (1, 0)  # and then nothing to do


TOKEN = "team-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(served, tmp_path_factory):
    """The same store served a second time, with --token-file."""
    root = tmp_path_factory.mktemp("guarded")
    f = root / "token"
    f.write_text(TOKEN + "\n")
    p, url = start_server(served["store"], root, "--token-file", str(f))
    yield {"url": url, "proc": p}
    stop(p)


def _post_form(url: str, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A form POST that does not follow the redirect (the Set-Cookie is on it)."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        body = urllib.parse.urlencode(fields)
        con.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        con.close()


def test_a_token_guards_every_route(served, guarded):
    url = guarded["url"]
    vid = json.loads(get(served["url"] + "api/videos")[2])["videos"][0]["video_id"]
    routes = [
        "",
        "api/stats",
        "api/videos",
        f"api/videos/{vid}",
        "api/search?q=a%20red%20car",
        f"api/media/{vid}",
        "api/thumbnails/1",
        "docs",
        "openapi.json",
        "static/app.js",
    ]
    right = {"Authorization": f"Bearer {TOKEN}"}
    for r in routes:
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all-000"}, {"Authorization": TOKEN}):
            code, h, body = get(url + r, headers)
            assert code == 401, (r, headers, code)
            assert json.loads(body)["detail"].startswith("this archive needs a token") and TOKEN.encode() not in body
        assert get(url + r, right)[0] in (200, 206), r
    code, _, body = get(url, {"Accept": "text/html"})  # a browser: the sign-in form
    assert code == 401 and b"<form" in body and b'name="token"' in body.replace(b"'", b'"')
    for q in ("token", "access_token"):  # in the URL: refused, even when right
        code, _, body = get(url + f"api/stats?{q}={TOKEN}", right)
        assert code == 400 and b"in the URL is refused" in body
    code, h, _ = _post_form(url, "/login", {"token": "wrong-token-0123456789"})
    assert code == 401 and "set-cookie" not in h
    code, h, _ = _post_form(url, "/login", {"token": TOKEN})
    cookie = h["set-cookie"]
    assert code == 303 and h["location"] == "/" and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    assert TOKEN not in value  # the browser keeps a value derived from the token, not the token
    assert get(url + "api/stats", {"Cookie": value})[0] == 200
    assert get(url + "api/stats", {"Cookie": value[:-1] + ("0" if value[-1] != "0" else "1")})[0] == 401


def test_the_page_asks_for_the_token_once_and_then_works(guarded, tmp_path):
    url = guarded["url"]
    with browser_page() as (_browser, page, errors):
        page.goto(url + "?q=a%20red%20car")
        page.wait_for_selector("#token")
        page.fill("#token", "not-the-token-0123456789")
        page.keyboard.press("Enter")
        page.wait_for_selector("#auth-error")
        page.fill("#token", TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_selector(".result")
        page.goto(url + "?q=a%20red%20car")  # asked once: the cookie carries on
        page.wait_for_function("document.querySelector('#status').textContent.includes('a red car')")
        page.wait_for_function("document.querySelectorAll('.result').length === 2")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.result img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator(".result").count() == 2
        assert not errors, errors


def test_listening_beyond_this_machine_needs_a_token_or_no_auth(served, tmp_path):
    env = env_for_cli(tmp_path, served["store"])
    p = run_cli(["serve", "--host", "0.0.0.0", "--port", "0", "--store", served["store"]], env, timeout=120)
    assert p.returncode == 2 and "without a token" in p.stderr and "--no-auth" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    p = run_cli(["serve", "--token", "short", "--store", served["store"]], env, timeout=120)
    assert p.returncode == 2 and "at least 16" in p.stderr
    p = run_cli(["serve", "--no-auth", "--token", TOKEN, "--store", served["store"]], env, timeout=120)
    assert p.returncode == 2 and "give one of them" in p.stderr


def test_a_running_server_answers_with_videos_indexed_after_it_started(served, tmp_path):
    """Live: the server notices the catalog and the vectors changed on the next request (its
    frame table is keyed by their files' times and sizes), without a restart."""
    store = tmp_path / "store"
    shutil.copytree(served["store"], store)
    p, url = start_server(store, tmp_path)
    try:
        before = json.loads(get(url + "api/videos")[2])["videos"]
        first = json.loads(get(url + "api/search?q=a%20red%20car&top=50")[2])
        assert len(before) == 2 and len(first["results"]) == 2
        new = tmp_path / "new"
        new.mkdir()
        shutil.copy(DATA / "Megamind.avi", new / "Megamind.avi")
        run_cli(["index", new], env_for_cli(tmp_path, store), check=True, text=False, timeout=600)
        names = {Path(v["path"]).name for v in json.loads(get(url + "api/videos")[2])["videos"]}
        assert "Megamind.avi" in names and len(names) == 3
        found = json.loads(get(url + "api/search?q=a%20red%20car&top=50")[2])
        assert "Megamind.avi" in {Path(r["video"]).name for r in found["results"]}
    finally:
        stop(p)


def test_slow_uploads_do_not_hold_a_worker(served):
    """48 clients (more than the 40 worker threads) that send an upload's headers and then stall (a slow or hostile client) hold
    only their connections: the body is read by the event loop, and the search's worker thread is
    taken only once it is whole. A search meanwhile answers; an upload declared too large is
    refused from its headers."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(served["url"])
    stalled = []
    try:
        for _ in range(48):
            con = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            con.putrequest("POST", "/api/search/image?name=slow.png")
            con.putheader("Content-Type", "image/png")
            con.putheader("Content-Length", "500000")
            con.endheaders()
            con.send(b"\x89PNG\r\n\x1a\n")  # 8 of the 500,000 bytes promised, then nothing
            stalled.append(con)
        code, _, body = get(served["url"] + "api/search?q=a%20red%20car")
        assert code == 200 and len(json.loads(body)["results"]) == 2
        code, _, body = get(served["url"] + "api/stats")
        assert code == 200
        big = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        big.putrequest("POST", "/api/search/image")
        big.putheader("Content-Length", str(1 << 30))
        big.endheaders()
        r = big.getresponse()  # answered before a byte of the body is sent
        assert r.status == 413 and b"too large" in r.read()
        big.close()
    finally:
        for con in stalled:
            con.close()
