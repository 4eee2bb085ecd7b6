"""The IVF index's lists file: every code grouped by list, memory-mapped by readers.

A fresh process (a CLI query, the versions compare of `archive index`) used to build the
searchable IVF index from every segment's codes: time and memory in proportion to the archive.
Now it maps the lists file (reading nothing until it searches) and adds in memory only the rows
written since. On real FAISS, DuckDB and open_clip.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import DATA, TEST_MODEL, env_for_cli, kill, start_cli, video_record

from archive import Archive
from archive.bench.synthetic import build_synthetic
from indexer.store import Reader, ShotRecord, VideoRecord, Writer, check_store, vectorview
from indexer.store import ivf as ivfmod
from indexer.store import segments as segmod
from search.query import Searcher


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def _big_built(tmp_path_factory):
    """The store of :func:`big`, built once for this module (13 s; each test changes its own copy)."""
    store = tmp_path_factory.mktemp("big") / "big"
    with pytest.MonkeyPatch.context() as mp:  # as the tests' own environment (conftest's _test_env)
        for k, v in {
            "ARCHIVE_MODEL": TEST_MODEL,
            "ARCHIVE_PRETRAINED": "none",
            "HF_HUB_OFFLINE": "1",
            "ARCHIVE_IVF_FRAMES": "5000",
        }.items():
            mp.setenv(k, v)
        build_synthetic(str(store), 12_000, TEST_MODEL, "none")
        Archive(store).optimize(ivf=True)
    return store


@pytest.fixture()
def big(_big_built, tmp_path, monkeypatch):
    """12,000 synthetic frames with a trained IVF index that queries use (ARCHIVE_IVF_FRAMES 5,000)."""
    monkeypatch.setenv("ARCHIVE_IVF_FRAMES", "5000")
    store = tmp_path / "big"
    shutil.copytree(_big_built, store)
    return store


def _lists(store: Path) -> ivfmod.ListsRef | None:
    with Reader(store).connection() as con:
        return ivfmod.current_lists(con)


def _record(path: Path, vecs: np.ndarray) -> VideoRecord:
    return video_record(
        str(path),
        vecs,
        fingerprint=f"{abs(hash(str(path))):032x}"[:32],
        width=64,
        height=64,
        shots=[ShotRecord(0.0, len(vecs) * 0.5)],
    )


def _from_codes(store: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """What readers built before the lists file: one index from every segment's codes."""
    with Reader(store).connection() as con:
        refs = segmod.registered(con)
        ref = ivfmod.current(con)
    codec = ivfmod.IvfCodec.load(store, ref)
    parts = [
        (np.asarray(segmod.vecfile.map_file(r.path(store))[0]), vectorview.read_codes(store, r, codec.code_size))
        for r in refs
        if r.ivf_id == ref.ivf_id
    ]
    index = codec.searchable(parts)
    faiss.extract_index_ivf(index).nprobe = ref.nlist
    return (*index.search(_queries(store), 40), int(index.ntotal))


def _queries(store: Path) -> np.ndarray:
    return _unit(np.random.default_rng(11).standard_normal((6, _dim(store))))


def _dim(store: Path) -> int:
    with Reader(store).connection() as con:
        return int(dict(con.execute("SELECT key, value FROM meta").fetchall())["dim"])


def _through_layer(store: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    index, _view, _ids, _key = Reader(store).ivf_layer()
    index.set_nprobe(10_000)  # every list: only what the index holds is compared
    d, i = index.search(_queries(store), 40)
    return d, i, index.ntotal, len(index.parts)


def test_training_writes_a_lists_file_that_faiss_reads_and_that_searches_like_the_codes(big):
    lists = _lists(big)
    assert lists is not None and lists.ivf_id == 1 and lists.vectors == 12_000
    path = lists.path(big)
    # FAISS's own reader takes it as a plain IVF index file ...
    whole = faiss.read_index(str(path))
    assert whole.ntotal == 12_000 and faiss.extract_index_ivf(whole).nlist == 256
    # ... and the store's readers map it: the same neighbours, the same scores, as an index built
    # from every segment's codes, with nothing built in memory.
    d0, i0, n0 = _from_codes(big)
    d1, i1, n1, parts = _through_layer(big)
    assert n1 == n0 == 12_000 and parts == 1
    assert Reader(big).info().ivf["lists_vectors"] == 12_000
    assert np.array_equal(i1, i0)
    np.testing.assert_allclose(d1, d0, rtol=1e-6)
    assert check_store(big).ok


def test_a_commit_writes_nothing_in_proportion_to_the_archive_and_readers_add_only_its_rows(
    big, encoder, tmp_path, monkeypatch
):
    lists = _lists(big)
    stamp = lists.path(big).stat()
    before = {p.name: p.stat().st_size for p in (big / "vectors").iterdir()}
    q = Searcher(big, encoder=encoder).text_vectors(["a lighthouse at dusk"])[0]
    near = _unit(q[None, :] + 0.05 * _unit(np.random.default_rng(5).standard_normal((8, len(q)))))
    rec = _record(tmp_path / "new_ad.mp4", near)
    with Writer(big) as w:
        w.attach_existing()
        w.commit([rec])
    after = {p.name: p.stat().st_size for p in (big / "vectors").iterdir()}
    new = {k: v for k, v in after.items() if k not in before}
    assert all(before[k] == after[k] for k in before)  # nothing there was rewritten
    # the new video's segment and codes only: 8 rows of fp16 vectors, ids and codes, and headers
    assert sum(new.values()) < 8 * (2 * _dim(big) + 8 + 64) + 1024
    assert _lists(big) == lists and lists.path(big).stat().st_mtime_ns == stamp.st_mtime_ns

    # A reader maps the lists file and reads the codes of the new segment only.
    calls = []
    real = vectorview.read_codes
    monkeypatch.setattr(vectorview, "read_codes", lambda *a, **k: calls.append(a[1].file) or real(*a, **k))
    d1, i1, n1, parts = _through_layer(big)
    assert n1 == 12_008 and parts == 2 and len(calls) == 1
    monkeypatch.undo()
    d0, i0, _n0 = _from_codes(big)
    assert np.array_equal(i1, i0)
    np.testing.assert_allclose(d1, d0, rtol=1e-6)
    # and the new video is answered through the index, with a few lists probed
    monkeypatch.setenv("ARCHIVE_IVF_FRAMES", "5000")
    monkeypatch.setenv("ARCHIVE_IVF_NPROBE", "8")
    s = Searcher(big, encoder=encoder)
    [r] = s.search(["a lighthouse at dusk"], top=3)
    assert s.ivf_ranker(s.scanner(None)) is not None
    assert r.results[0].video == rec.path and r.results[0].present and r.results[0].duration_s == 4.0


def test_an_index_run_rewrites_the_lists_file_once_enough_rows_were_added(big, tmp_path, monkeypatch):
    first = _lists(big)
    rng = np.random.default_rng(2)
    recs = [_record(tmp_path / f"ad{k}.mp4", _unit(rng.standard_normal((10, _dim(big))))) for k in range(3)]
    monkeypatch.setattr(ivfmod, "LISTS_TAIL_MIN", 25)  # small numbers: the rule, not the size, is tested
    monkeypatch.setattr(ivfmod, "LISTS_TAIL_SHARE", 0.002)  # (24 rows of 12,000)
    with Writer(big) as w:
        w.attach_existing()
        w.commit(recs[:2])
        assert w.layer.lists_tail() == 20
        w.layer.auto_merge()  # what an index run does at its end: 20 rows since, not yet due
        assert _lists(big) == first
        w.commit(recs[2:])
        rep = w.layer.auto_merge()  # 30 rows since: due
    second = _lists(big)
    assert rep.lists_rows == 12_030 and second.seq == first.seq + 1 and second.vectors == 12_030
    assert not first.path(big).exists() and second.path(big).exists()  # the old one deleted after the swap
    assert second.max_frame_id >= max(segmod_max_ids(big))
    d0, i0, _n0 = _from_codes(big)
    d1, i1, n1, parts = _through_layer(big)
    assert n1 == 12_030 and parts == 1 and np.array_equal(i1, i0)
    assert check_store(big).ok


def segmod_max_ids(store: Path) -> list[int]:
    with Reader(store).connection() as con:
        return [r.max_frame_id for r in segmod.registered(con)]


def test_frame_ids_are_never_given_out_again_below_the_lists_file(big, tmp_path):
    rng = np.random.default_rng(4)
    rec = _record(tmp_path / "last.mp4", _unit(rng.standard_normal((6, _dim(big)))))
    with Writer(big) as w:
        w.attach_existing()
        w.commit([rec])
    Archive(big).optimize()  # the lists file now holds the last video's rows too
    lists = _lists(big)
    assert lists.vectors == 12_006
    with Writer(big) as w:
        w.attach_existing()
        w.remove_videos([rec.path])
    Archive(big).optimize()  # its rows are gone from every segment: the highest frame id dropped
    assert max(segmod_max_ids(big)) < lists.max_frame_id
    again = _record(tmp_path / "again.mp4", _unit(rng.standard_normal((6, _dim(big)))))
    with Writer(big) as w:
        w.attach_existing()
        w.commit([again])
    with Reader(big).connection() as con:
        ids = [
            r[0]
            for r in con.execute(
                "SELECT f.frame_id FROM frames f JOIN videos v USING (video_id) WHERE v.path = ?", [again.path]
            ).fetchall()
        ]
    assert min(ids) > lists.max_frame_id  # a reader takes rows up to there to be in the lists file
    d0, i0, _n0 = _from_codes(big)
    d1, i1, _n1, _parts = _through_layer(big)
    assert np.array_equal(i1, i0)
    assert check_store(big).ok


def test_a_damaged_or_missing_lists_file_is_said_searched_around_and_repaired(big, encoder, monkeypatch):
    monkeypatch.setenv("ARCHIVE_IVF_NPROBE", "256")
    want = [
        r.to_dict()
        for r in Searcher(big, encoder=encoder, exact=True).search(["a beach"], top=5, threshold=0.3)[0].results
    ]
    lists = _lists(big)
    path = lists.path(big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut short
    rep = check_store(big)
    assert not rep.ok and any("lists file" in p and "missing or damaged" in p for p in rep.problems)
    # readers build the index from the codes instead: the same answers
    d0, i0, _n0 = _from_codes(big)
    d1, i1, n1, parts = _through_layer(big)
    assert n1 == 12_000 and np.array_equal(i1, i0)
    got = [r.to_dict() for r in Searcher(big, encoder=encoder).search(["a beach"], top=5, threshold=0.3)[0].results]
    assert got == want
    fixed = check_store(big, repair=True)
    assert fixed.ok and any("lists file" in r for r in fixed.repaired)
    new = _lists(big)
    assert new.seq == lists.seq + 1 and new.path(big).exists() and not path.exists()
    assert _through_layer(big)[3] == 1

    # `archive optimize` writes a damaged one again too (its counts alone would say it is current).
    data = new.path(big).read_bytes()
    new.path(big).write_bytes(data[:4096])
    assert not check_store(big).ok
    opt = Archive(big).optimize()
    assert opt.lists_rows == 12_000 and _lists(big).seq == new.seq + 1 and check_store(big).ok
    new = _lists(big)

    # A store made before lists files (IVF index, no lists file): noted; the next optimize writes it.
    with Writer(big) as w, w.catalog() as con:
        ivfmod.register_lists(con, None)
    new.path(big).unlink()
    rep = check_store(big)
    assert rep.ok and any("no lists file yet" in n for n in rep.notes)
    assert np.array_equal(_through_layer(big)[1], i0)
    opt = Archive(big).optimize()
    assert opt.lists_rows == 12_000 and _lists(big) is not None and check_store(big).ok


@pytest.mark.slow  # kills `archive optimize`, a process of its own, at a named point
@pytest.mark.parametrize(
    "point, args", [("lists.written", []), ("lists.swapped", []), ("ivf.lists_written", ["--ivf", "--retrain"])]
)
def test_kill_9_while_optimize_writes_the_lists_file_loses_nothing(big, tmp_path, point, args):
    rec = _record(tmp_path / "tail.mp4", _unit(np.random.default_rng(9).standard_normal((7, _dim(big)))))
    with Writer(big) as w:
        w.attach_existing()
        w.commit([rec])
    first = _lists(big)
    d0, i0, _n0 = _from_codes(big)
    env = env_for_cli(tmp_path, big)
    env["ARCHIVE_IVF_FRAMES"] = "5000"
    marker = tmp_path / "paused"
    env["ARCHIVE_TEST_PAUSE"] = f"{point}={marker}"
    p = start_cli(["optimize", *args], env)
    try:
        for _ in range(30_000):
            if marker.exists() or p.poll() is not None:
                break
            time.sleep(0.01)
        assert marker.exists(), p.stderr.read() if p.poll() is not None else "never paused"
    finally:
        kill(p)
    now = _lists(big)
    if point != "lists.swapped":
        assert now == first  # the new file (and a new index's) are orphans: readers never open them
    else:
        assert now.seq == first.seq + 1 and now.vectors == 12_007 and first.path(big).exists()
    d1, i1, n1, _parts = _through_layer(big)
    assert n1 == 12_007 and np.array_equal(i1, i0)
    rep = check_store(big)
    assert rep.ok and any("extra file vectors/ivf-" in n for n in rep.notes)
    with Writer(big) as w:  # the next writer deletes what the killed one left
        w.attach_existing()
    leftovers = [q.name for q in (big / "vectors").iterdir() if ".lists-" in q.name]
    assert leftovers == [_lists(big).file]
    assert check_store(big).ok


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_a_lists_file_that_cannot_be_written_does_not_fail_the_index_run(big, encoder, tmp_path, monkeypatch):
    # The lists file only speeds readers up: when writing a due one fails (a full disk), the run's
    # videos stay committed, the report says so, and readers build the index from the codes.
    first = _lists(big)
    monkeypatch.setattr(ivfmod, "LISTS_TAIL_MIN", 0)
    monkeypatch.setattr(ivfmod, "LISTS_TAIL_SHARE", 0.0)

    def full(*_a, **_k):
        raise ivfmod.StoreError(
            "could not write the IVF lists file (No space left on device); the archive is unchanged."
        )

    monkeypatch.setattr(ivfmod, "write_lists", full)
    rec = _record(tmp_path / "one.mp4", _unit(np.random.default_rng(8).standard_normal((5, _dim(big)))))
    with Writer(big) as w:
        w.attach_existing()
        w.commit([rec])
        rep = w.layer.auto_merge()
    assert rep.lists_error and "No space left" in rep.lists_error
    assert _lists(big) == first and check_store(big).ok
    folder = tmp_path / "clips"  # a real index run: its report says it, and the run succeeds
    folder.mkdir()
    shutil.copy(DATA / "tree.avi", folder / "tree.avi")
    report = Archive(big, encoder=encoder).index([folder])
    assert report.ok and report.indexed == 1 and "lists file could not be written" in report.lists_note
    monkeypatch.undo()
    d0, i0, _n0 = _from_codes(big)
    d1, i1, n1, parts = _through_layer(big)
    assert n1 > 12_005 and parts == 2 and np.array_equal(i1, i0)
