import os

import duckdb
import numpy as np
import pytest
from helpers import video_record

from indexer.errors import ModelMismatch, StoreError, StoreLocked, StoreNotFound
from indexer.store import Reader, Writer
from indexer.store.records import ModelSpec

SPEC = ModelSpec("ViT-S-32-alt", "none")
DIM = 8


def record(path, n, seed, fps=2.0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return video_record(
        path, v, fingerprint=f"fp{seed}", sample_fps=fps, size_bytes=100, mtime=1.0, width=320, height=240
    )


def test_commit_and_read_back(tmp_path):
    recs = [record("/v/a.mp4", 5, 1), record("/v/b.mp4", 3, 2)]
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        w.commit(recs)
    t = Reader(tmp_path).frames()
    assert len(t) == 8
    assert sorted(v["path"] for v in t.videos.values()) == ["/v/a.mp4", "/v/b.mp4"]
    # each frame's vector is the one committed for it
    by_path = {v["path"]: vid for vid, v in t.videos.items()}
    a = t.video_id == by_path["/v/a.mp4"]
    assert np.array_equal(t.vectors[t.row[a]], half(recs[0].vectors))  # stored as fp16
    assert np.all(np.diff(t.ts_s[a]) > 0)
    info = Reader(tmp_path).info()
    assert (info.videos, info.frames, info.dim, info.model) == (2, 8, DIM, "ViT-S-32-alt")
    assert info.seconds == pytest.approx(4.0)


def half(v):
    """Vectors as the store keeps them: fp16 (see indexer.store.segments)."""
    return np.asarray(v, np.float32).astype(np.float16).astype(np.float32)


def segment_files(store):
    return sorted((store / "vectors").glob("*.faiss"))


def test_recommit_replaces_old_rows_and_vectors(tmp_path):
    new = record("/v/a.mp4", 2, 9)
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        w.commit([record("/v/a.mp4", 5, 1)])
        w.commit([new])
    t = Reader(tmp_path).frames()
    assert len(t) == 2 and len(t.videos) == 1
    assert np.array_equal(t.vectors[t.row], half(new.vectors))
    info = Reader(tmp_path).info()
    assert (info.vectors, info.segments) == (7, 2)  # the old 5 are dead rows until a merge
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        rep = w.layer.optimize()
    assert (rep.merged, rep.written, rep.rows_copied, rep.dead_dropped) == (2, 1, 2, 5)
    info = Reader(tmp_path).info()
    assert (info.vectors, info.segments, info.frames) == (2, 1, 2) and len(segment_files(tmp_path)) == 1
    t2 = Reader(tmp_path).frames()
    assert np.array_equal(t2.frame_id, t.frame_id) and np.array_equal(t2.vectors[t2.row], half(new.vectors))


def test_catalog_opens_in_a_plain_duckdb_client(tmp_path):
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        w.commit([record("/v/a.mp4", 4, 1)])
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM frames JOIN videos USING (video_id)").fetchone()[0] == 4
    con.close()


def test_second_writer_is_refused_with_the_holder(tmp_path):
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
            Writer(tmp_path).lock()
    Writer(tmp_path).lock()  # free again


def test_other_model_is_a_clear_error(tmp_path):
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
    with Writer(tmp_path) as w, pytest.raises(ModelMismatch, match="ViT-S-32-alt"):
        w.attach(ModelSpec("ViT-B-32", "none"), DIM)


def test_missing_store_and_missing_vectors(tmp_path):
    with pytest.raises(StoreNotFound, match="archive index"):
        Reader(tmp_path / "nowhere").frames()
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        w.commit([record("/v/a.mp4", 4, 1)])
    for p in segment_files(tmp_path):
        p.unlink()
    with pytest.raises(StoreError, match="archive index"):
        Reader(tmp_path).frames()


def test_writer_reconciles_vectors_with_catalog(tmp_path):
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        w.commit([record("/v/a.mp4", 4, 1), record("/v/b.mp4", 3, 2)])
    # Lose the vectors: every catalog video now lacks them and is dropped for re-embedding.
    for p in segment_files(tmp_path):
        p.unlink()
    with Writer(tmp_path) as w:
        w.attach(SPEC, DIM)
        assert sorted(w.repaired) == ["/v/a.mp4", "/v/b.mp4"]
    assert Reader(tmp_path).info().videos == 0
    assert len(Reader(tmp_path).frames()) == 0
