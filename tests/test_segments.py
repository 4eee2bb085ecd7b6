"""The append-only vector layer: a commit costs what its videos cost, merges keep answers, stored
per-frame terms give the answers computed ones give, label tables follow new videos only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gen.videos import Shot, frame_at, make_video
from helpers import env_for_cli, run_cli, video_record

from archive import Archive
from indexer import settings
from indexer.model import background
from indexer.model.background import background_vectors
from indexer.model.encoder import Encoder, TextEncoder
from indexer.store import Reader, ShotRecord, Writer, vectorview
from indexer.store import segments as segmod
from indexer.store import vectors as vecfile
from indexer.store.records import ModelSpec
from search.query import Searcher

SPEC = ModelSpec("ViT-S-32-alt", "none")
DIM = 64


def record(i, n=60, dim=DIM, seed=None):
    rng = np.random.default_rng(i if seed is None else seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return video_record(
        f"/ads/ad{i:05d}.mp4",
        v,
        fingerprint=str(i),
        shots=[ShotRecord(a * 2.0, a * 2.0 + 2.0) for a in range((n + 3) // 4)],
        bg_lse=np.full(n, 7.0),
        bg_key="k",
    )


def wchar():
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


def build(store, videos, per_commit):
    with Writer(store) as w:
        w.attach(SPEC, DIM)
        for a in range(0, videos, per_commit):
            w.commit([record(i) for i in range(a, min(a + per_commit, videos))])


def files_state(store):
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in (store / "vectors").iterdir()}


def commit_one_more(store, monkeypatch):
    """Commit one 60-frame video; (bytes written, vector files read, files before, files after)."""
    reads = []
    real = vecfile.map_file
    monkeypatch.setattr(vecfile, "map_file", lambda p: reads.append(p) or real(p))
    with Writer(store) as w:
        w.attach(SPEC, DIM)
        before = files_state(store)
        reads.clear()
        b0 = wchar()
        w.commit([record(99999)])
        written = wchar() - b0
    return written, list(reads), before, files_state(store)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes written through /proc/self/io")
def test_a_commit_writes_the_same_whatever_the_store_holds(tmp_path, monkeypatch):
    small, big = tmp_path / "small", tmp_path / "big"
    build(small, 10, 5)  # 600 frames
    build(big, 600, 50)  # 36,000 frames, 60 times more
    out = {}
    for name, store in (("small", small), ("big", big)):
        written, reads, before, after = commit_one_more(store, monkeypatch)
        assert reads == []  # the commit reads no stored vectors ...
        assert all(after[f] == before[f] for f in before)  # ... and rewrites no stored file
        new = set(after) - set(before)
        assert len(new) == 2 and {n.split(".", 1)[1] for n in new} == {"faiss", "bg.npy"}  # one new segment
        out[name] = written
    vectors_bytes = 60 * DIM * 4
    assert out["small"] > vectors_bytes  # the count sees the segment being written
    # 60 times the frames, the same bytes written: the segment, its term, the catalog's new rows
    assert out["big"] <= 1.5 * out["small"] + 256 * 1024, out


def test_merges_keep_answers_and_drop_dead_rows(tmp_path):
    store = tmp_path / "s"
    build(store, 16, 1)  # 16 one-video segments
    with Writer(store) as w:
        w.attach(SPEC, DIM)
        w.commit([record(3, seed=1003)])  # replaces video 3: its first vectors are dead rows
    t0 = Reader(store).frames()
    q = record(5).vectors[:3]
    want = {int(f): v for f, v in zip(t0.frame_id, t0.vectors[t0.row] @ q.T)}
    info = Reader(store).info()
    assert (info.segments, info.vectors, info.frames) == (17, 17 * 60, 16 * 60)
    with Writer(store) as w:
        w.attach(SPEC, DIM)
        auto = w.layer.auto_merge()
    # the newest runs of eight small segments became one each: 17 -> 3
    assert (auto.merged, auto.written) == (16, 2) and Reader(store).info().segments == 3
    with Writer(store) as w:
        w.attach(SPEC, DIM)
        opt = w.layer.optimize()
    info = Reader(store).info()
    assert info.segments == 1 and info.vectors == info.frames == 16 * 60
    assert auto.dead_dropped + opt.dead_dropped == 60
    t1 = Reader(store).frames()
    got = {int(f): v for f, v in zip(t1.frame_id, t1.vectors[t1.row] @ q.T)}
    assert got.keys() == want.keys() and all(np.allclose(got[k], want[k]) for k in want)
    assert t1.bg_lse is not None and np.allclose(t1.bg_lse, 7.0)  # the stored terms moved with their rows
    assert [p.name for p in sorted((store / "vectors").iterdir())] == ["seg-00000019.bg.npy", "seg-00000019.faiss"]


def test_auto_merge_policy_is_bounded():
    def ref(i, n):
        return segmod.SegmentRef(i, segmod.file_name(i), "flat", n, i * 10**6, i * 10**6 + n - 1, None)

    small = [ref(i, 60) for i in range(8)]
    assert segmod.auto_merge_run(small, {r.segment_id: 60 for r in small}) == small
    assert segmod.auto_merge_run(small[:7], {r.segment_id: 60 for r in small}) == []  # not yet eight
    big = [ref(i, 100_000) for i in range(8)]
    assert segmod.auto_merge_run(big, {r.segment_id: 100_000 for r in big}) == []  # over the auto-merge cap


@pytest.fixture()
def ads(tmp_path):
    d = tmp_path / "ads"
    d.mkdir()
    truths = [
        make_video(d / f"ad{i}.mp4", [Shot(1 + i, 30), Shot(10 + i, 40), Shot(20 + i, 30)], "25") for i in range(3)
    ]
    return d, truths


def shown(results):
    return [
        [
            (
                r.video,
                r.present,
                r.first_seen_s,
                r.duration_s,
                [(s.start_s, s.end_s) for s in r.segments],
                round(r.score, 5),
                round(r.match, 5),
            )
            for r in q.results
        ]
        for q in results
    ]


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_stored_background_term_gives_the_answers_computed_ones_give(ads, tmp_path, encoder):
    folder, _ = ads
    a = Archive(tmp_path / "store", encoder=encoder)
    assert a.index([folder]).indexed == 3
    table = Reader(a.store).frames()
    bg, key = background_vectors(encoder)
    assert table.bg_lse is not None and table.bg_key == key
    # Stored at index time from each video's own rows, recomputed here from all rows at once: the
    # matrix product's blocking (and so its order of summation) follows the shape, so each float32
    # dot product may differ in its last bits (~1e-6), and the logit scale (100) makes that ~1e-4
    # in the log-sum-exp at most (seen: 3e-6). The answers below must still be the same.
    np.testing.assert_allclose(
        table.bg_lse, background.background_lse(table.vectors[table.row] @ bg.T), rtol=0, atol=1e-4
    )
    texts = ["a beach", "a red car", "people dancing"]
    text_only = TextEncoder.open(SPEC)  # fp32, as the stored term was computed: it is used
    searcher = Searcher(a.store, text_encoder=text_only)
    assert searcher.background_key() == key
    stored = searcher.search(texts)
    for p in (a.store / "vectors").glob("*.bg.npy"):
        p.unlink()
    assert Reader(a.store).frames().bg_lse is None
    again = Searcher(a.store, text_encoder=text_only).search(texts)  # the term computed from the vectors instead
    assert shown(stored) == shown(again)


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_label_tables_follow_new_videos_only(ads, tmp_path, encoder):
    folder, truths = ads
    a = Archive(tmp_path / "store", encoder=encoder)
    first = folder / "first"
    first.mkdir()
    for t in truths[:2]:
        os.replace(t.path, first / t.path.name)
    a.index([first])
    a.label_add("anything", threshold=-1.0)
    a.label_add("strict", threshold=0.999)
    rows = (
        "SELECT video_id, label, present, first_seen_s, duration_s, n_segments, best_s, round(score, 5) "
        "FROM video_labels ORDER BY ALL"
    )
    segs = "SELECT * FROM segments ORDER BY ALL"
    old_rows, old_segs = a.sql(rows).rows, a.sql(segs).rows
    report = a.index([folder])
    assert report.indexed == 1 and len(report.indexed_ids) == 1
    new_id = report.indexed_ids[0]
    now_rows = a.sql(rows).rows
    assert [r for r in now_rows if r[0] != new_id] == old_rows  # the old videos' rows are as they were
    assert sorted(r[1] for r in now_rows if r[0] == new_id) == ["anything", "strict"]
    # the same as recomputing everything
    a.label_add("anything", threshold=-1.0)
    assert a.sql(rows).rows == now_rows and len(a.sql(segs).rows) >= len(old_segs)


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_an_index_run_with_labels_loads_the_model_once(ads, tmp_path, monkeypatch):
    folder, _ = ads
    store = tmp_path / "store"
    Archive(store).index([folder / "ad0.mp4"])
    Archive(store).label_add("anything", threshold=-1.0)
    loads = []
    real = Encoder.load.__func__
    monkeypatch.setattr(Encoder, "load", classmethod(lambda cls, *a, **k: loads.append(a) or real(cls, *a, **k)))
    report = Archive(store).index([folder])
    assert report.indexed == 2 and len(loads) == 1


@pytest.mark.slow  # a query and the CLI in processes of their own
def test_a_text_query_imports_neither_torch_nor_open_clip(ads, tmp_path, encoder):
    folder, _ = ads
    store = tmp_path / "store"
    Archive(store, encoder=encoder).index([folder])  # the test session's model: its text tower is exported
    code = (
        "import sys, json; from archive import Archive; [r] = Archive(sys.argv[1]).search('a beach'); "
        "print(json.dumps([len(r.results), 'torch' in sys.modules, 'open_clip' in sys.modules]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(store)],
        env=env_for_cli(tmp_path, store),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [3, False, False]
    # the same answers as the whole model in fp32 gives
    cli = run_cli(["search", "a beach", "--json"], env_for_cli(tmp_path, store), timeout=300)
    fp32 = Encoder.load(SPEC.name, SPEC.pretrained, "cpu", precision="fp32")
    [full] = Searcher(store, encoder=fp32).search(["a beach"])
    got = json.loads(cli.stdout)["results"]
    assert [(r["video"], r["present"], r["segments"]) for r in got] == [
        (
            r.video,
            r.present,
            [dict(s, peak_score=pytest.approx(s["peak_score"], abs=2e-4)) for s in r.to_dict()["segments"]],
        )
        for r in full.results
    ]
    assert [r["score"] for r in got] == pytest.approx([r.score for r in full.results], abs=2e-4)


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_image_queries_after_the_index_run_use_the_stored_vectors_only(ads, tmp_path, encoder):
    folder, truths = ads
    a = Archive(tmp_path / "store", encoder=encoder)
    a.index([folder])
    [res] = a.search(image=frame_at(truths[1], 11))
    hit = [r for r in res.results if r.present]
    assert [r.video for r in hit] == [str(truths[1].path)]
    assert hit[0].first_seen_s == pytest.approx(truths[1].spans(11)[0][0], abs=1 / 25)


def test_settings_cache_dir_defaults_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHIVE_CACHE_DIR", str(tmp_path / "c"))
    assert settings.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ARCHIVE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert settings.cache_dir() == tmp_path / "x" / "archive"


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_a_segment_without_its_stored_term_gets_it_computed_for_its_frames_only(ads, tmp_path, encoder):
    folder, truths = ads
    a = Archive(tmp_path / "store", encoder=encoder)
    a.index([truths[0].path])
    a.index([folder])  # a second segment
    text_only = TextEncoder.open(SPEC)
    texts = ["a beach", "a red car"]
    all_stored = Searcher(a.store, text_encoder=text_only).search(texts)
    first = sorted((a.store / "vectors").glob("*.bg.npy"))[0]
    first.unlink()
    table = Reader(a.store).frames()
    missing = np.isnan(table.bg_lse)
    assert missing.any() and not missing.all()  # the first segment's frames only
    assert shown(Searcher(a.store, text_encoder=text_only).search(texts)) == shown(all_stored)


def test_fp16_rows_convert_exactly_whichever_path_converts_them():
    rng = np.random.default_rng(7)
    n = vectorview.FAST_DECODE_ROWS * 2 + 123  # blocks above and below the size FAISS converts
    a = (rng.standard_normal((n, DIM)) * 0.05).astype(np.float16)
    a[0, :4] = [np.float16(6e-8), np.float16(-0.0), np.float16(65504), np.float16(1e-5)]  # subnormal, -0, max
    b = rng.standard_normal((500, DIM)).astype(np.float32)
    view = vectorview.VectorView([a, b], [None, None], DIM)
    want = np.concatenate([a.astype(np.float32), b])
    for reuse in (False, True):
        got = np.concatenate([blk.copy() for _r0, blk in view.blocks(vectorview.FAST_DECODE_ROWS + 7, reuse=reuse)])
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))  # -0 too
    assert np.array_equal(view[10 : n - 5], want[10 : n - 5]) and np.array_equal(
        view[[3, n + 2, 1]], want[[3, n + 2, 1]]
    )
    # a reused buffer holds only the block last asked for
    blocks = view.blocks(vectorview.FAST_DECODE_ROWS, reuse=True)
    _r0, first = next(blocks)
    kept = first.copy()
    _r1, second = next(blocks)
    assert np.shares_memory(first, second) and not np.array_equal(first, kept)


def _smaps_field(addr, name):
    """The values of field ``name`` (``"Rss:"``, ``"VmFlags:"``) of the mapping holding ``addr``,
    from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith(name):
            return line.split()[1:]
    raise AssertionError("mapping not found")


def _advised_random(addr):
    """Whether the mapping holding ``addr`` is advised for random reads (``rr`` in its VmFlags)."""
    return "rr" in _smaps_field(addr, "VmFlags:")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads the mapping's flags from /proc/self/smaps")
def test_scattered_rows_are_read_without_read_around(tmp_path):
    # a large archive's query reads a few thousand rows spread over gigabytes of mapped vectors; a
    # fault there must read its page, not the device's read-ahead window around it (8 MB per fault
    # on some disks: gigabytes per cold query). Contiguous reads keep the read-ahead.
    build(tmp_path, 40, 10)
    [path] = sorted((tmp_path / "vectors").glob("seg-*.faiss"))[:1]
    _ids, vecs, owner = vecfile.map_file(path)
    addr = vecs.__array_interface__["data"][0]
    seen = []

    class Probe(np.ndarray):
        def __getitem__(self, key):
            seen.append(_advised_random(addr))
            return np.asarray(self)[key]

    view = vectorview.VectorView([vecs.view(Probe)], [owner], DIM)
    n = len(vecs)
    assert not _advised_random(addr)
    got = view.take(np.array([n - 1, 3, n // 2]))  # far apart
    assert seen == [True] and not _advised_random(addr)  # advised while reading, the default again after
    assert np.array_equal(got, np.asarray(vecs)[[n - 1, 3, n // 2]].astype(np.float32))
    seen.clear()
    view.take(np.arange(10, 30))  # a run of neighbours
    assert seen == [False]
    seen.clear()
    view.take(np.array([n - 1, 3]), read_around=True)  # the caller's choice wins
    assert seen == [False]


def _mapped_rss_kb(addr):
    """Resident kB of the mapping holding ``addr``."""
    return int(_smaps_field(addr, "Rss:")[0])


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads the mapping's size from /proc/self/smaps")
def test_scattered_rows_are_read_from_the_file_and_never_mapped_in(tmp_path):
    # A large archive's candidates (a few thousand rows spread over gigabytes) are read with pread,
    # one call per run of consecutive rows: the same values as through the mapping, and none of the
    # mapping's pages become resident (a fault maps the whole page-cache folio around it).
    build(tmp_path, 40, 40)
    from indexer.store.reader import Reader

    with Reader(tmp_path).connection() as con:
        refs = segmod.registered(con)
    view, _ids, _bgs = vectorview.open_segments(tmp_path, refs, DIM)
    [part] = view.parts
    assert view.files[0] is not None and part.dtype == np.float16
    n = len(part)
    rows = np.array([n - 1, 5, 6, 7, n // 2, 5, 900, 901, 0], np.int64)  # runs, a repeat, both ends
    view.release_pages()
    addr = part.__array_interface__["data"][0]
    before = _mapped_rss_kb(addr)
    got = view.take(rows)
    assert _mapped_rss_kb(addr) == before  # read through pread: nothing mapped in
    assert np.array_equal(got, np.asarray(part)[rows].astype(np.float32))
    # neighbours keep the mapping (and its read-ahead), with the same values
    assert np.array_equal(view.take(np.arange(100, 140)), np.asarray(part)[100:140].astype(np.float32))
    # a file put in its place since (a name given to another segment) is not read: the mapping is
    [path] = [refs[0].path(tmp_path)]
    other = path.with_name("other.tmp")
    other.write_bytes(b"\0" * path.stat().st_size)
    os.replace(other, path)
    again = view.take(rows)
    assert np.array_equal(again, got) and _mapped_rss_kb(addr) > before


def test_frames_of_a_few_videos_are_located_by_id_range_and_binary_search():
    # load_frames(store, video_ids) finds the rows of a few videos' frames without reading every
    # stored id: the segment by its id range, then a binary search in its ids (ascending as
    # written). A segment whose ids are out of order, or a frame no segment holds, makes it hand
    # over to the full lookup (None), never a wrong row.
    from indexer.store.frames import _locate

    def ref(k, ids):
        return segmod.SegmentRef(k, segmod.file_name(k), segmod.F16, len(ids), int(min(ids)), int(max(ids)), None)

    a = np.array([10, 11, 13, 14], np.int64)
    b = np.array([20, 22, 25], np.int64)
    refs = [ref(0, a), segmod.SegmentRef(1, segmod.file_name(1), segmod.F16, 0, 0, -1, None), ref(2, b)]
    offsets = np.array([0, 4, 4, 7], np.int64)
    ok, row = _locate(np.array([22, 10, 14, 25]), refs, [a, np.zeros(0, np.int64), b], offsets)
    assert ok.all() and row.tolist() == [5, 0, 3, 6]
    assert _locate(np.array([12]), refs, [a, np.zeros(0, np.int64), b], offsets) is None  # not stored
    assert _locate(np.array([30]), refs, [a, np.zeros(0, np.int64), b], offsets) is None  # past every range
    shuffled = np.array([14, 10, 13, 11], np.int64)
    assert _locate(np.array([13, 11]), [ref(0, shuffled)], [shuffled], np.array([0, 4])) is None
    ok, row = _locate(np.zeros(0, np.int64), refs, [a, np.zeros(0, np.int64), b], offsets)
    assert not len(row)
