"""Never lose work: migrations, damaged or lost vector files, check and prune, partial decodes."""

import os
import shutil

import duckdb
import pytest
from gen.videos import Shot, make_video
from helpers import env_for_cli, run_cli

from archive import Archive
from indexer.errors import StoreError
from indexer.store import SCHEMA_VERSION

pytestmark = (
    pytest.mark.slow
)  # index runs decode their first video in a child process (indexer.media.decode_child), or run the CLI


@pytest.fixture()
def store(tmp_path, encoder):
    folder = tmp_path / "ads"
    folder.mkdir()
    make_video(folder / "a.mp4", [Shot(1, 30), Shot(2, 20)], "25")
    make_video(folder / "b b é.mp4", [Shot(3, 40)], "30")
    a = Archive(tmp_path / "store", encoder=encoder)
    assert a.index([folder]).ok
    return a, folder


def test_check_is_clean_after_indexing(store):
    a, _ = store
    rep = a.check()
    assert rep.ok and rep.videos == 2 and rep.frames == rep.vectors > 0


def segment(a):
    [path] = sorted((a.store / "vectors").glob("*.faiss"))
    return path


def test_lost_vector_file_is_named_and_repaired_by_indexing(store):
    a, folder = store
    frames = a.info().frames
    segment(a).unlink()
    with pytest.raises(StoreError, match="archive index"):
        a.search("a beach")  # any read of the vectors names the fix
    rep = a.check()
    assert not rep.ok and "missing" in rep.problems[0] and "archive index" in rep.problems[0]
    report = a.index([folder])
    assert sorted(report.repaired) == sorted(str(p) for p in folder.iterdir())
    assert report.indexed == 2
    assert a.check().ok and a.info().frames == frames


def test_damaged_vector_file_is_moved_aside_and_rebuilt(store):
    a, folder = store
    vec = segment(a)
    data = bytearray(vec.read_bytes())
    vec.write_bytes(bytes(data[: len(data) // 3]))  # torn write
    rep = a.check()
    assert not rep.ok and "damaged" in " ".join(rep.problems)
    report = a.index([folder])
    assert report.damaged_file and os.path.exists(report.damaged_file)
    assert report.indexed == 2 and a.check().ok


def test_dead_vector_rows_are_skipped_and_dropped_by_optimize(store, tmp_path):
    a, folder = store
    # A video's rows leave the catalog (as when it is replaced or pruned): its vectors are dead rows.
    con = duckdb.connect(str(a.store / "catalog.duckdb"))
    vid = con.execute("SELECT video_id FROM videos WHERE path LIKE '%a.mp4'").fetchone()[0]
    for t in ("frames", "shots", "videos"):
        con.execute(f"DELETE FROM {t} WHERE video_id = ?", [vid])
    con.close()
    rep = a.check()
    assert rep.ok and any("belong to no catalog frame" in n for n in rep.notes)
    report = a.index([folder])
    assert (report.indexed, report.skipped) == (1, 1)
    rep = a.check()
    assert rep.ok and rep.vectors > rep.frames and rep.segments == 2
    before = [
        (r.video, r.present, r.first_seen_s, r.duration_s) for r in a.search(image=_still(folder, tmp_path))[0].results
    ]
    merged = a.optimize()
    assert merged.merged == 2 and merged.written == 1 and merged.dead_dropped == rep.vectors - rep.frames
    rep = a.check()
    assert rep.ok and not any("no catalog frame" in n for n in rep.notes)
    assert rep.frames == rep.vectors and rep.segments == 1
    after = [
        (r.video, r.present, r.first_seen_s, r.duration_s) for r in a.search(image=_still(folder, tmp_path))[0].results
    ]
    assert after == before and any(p for _, p, _, _ in after)
    assert a.optimize().merged == 0  # nothing left to do


def _still(folder, tmp_path):
    """A frame of a.mp4's second shot, as an example image."""
    from PIL import Image

    from indexer.media.decode import sample_frames

    frame = [f for f in sample_frames(folder / "a.mp4", 2.0)][-1]
    path = tmp_path / "still.png"
    Image.fromarray(frame.rgb).save(path)
    return path


def test_prune_removes_videos_whose_files_are_gone(store):
    a, folder = store
    os.remove(folder / "a.mp4")
    assert any("no longer exist" in n for n in a.check().notes)
    assert a.prune(dry_run=True) == [str(folder / "a.mp4")]
    assert a.info().videos == 2
    assert a.prune() == [str(folder / "a.mp4")]
    rep = a.check()  # its vectors are dead rows now, until a merge
    assert a.info().videos == 1 and rep.ok and [n for n in rep.notes if "belong to no catalog frame" in n]
    a.optimize()
    assert a.check().ok and not a.check().notes
    assert a.sql(
        "SELECT count(*) AS n FROM shots s WHERE NOT EXISTS (SELECT 1 FROM videos v WHERE v.video_id = s.video_id)"
    ).records() == [{"n": 0}]


def test_an_index_run_names_the_gone_files_of_its_own_folders_only(store, tmp_path):
    # An add to a large archive (perhaps on a network share) must not look up every file it holds:
    # a run reports the files gone from the folders and files it was given; `check` names them all.
    a, folder = store
    os.remove(folder / "a.mp4")
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "c.mp4", [Shot(4, 20)], "25")
    rep = a.index([other])
    assert rep.ok and rep.indexed == 1 and rep.missing == []
    assert any("1 indexed file(s) no longer exist" in n for n in a.check().notes)
    rep = a.index([folder])
    assert rep.ok and rep.missing == [str(folder / "a.mp4")]
    rep = a.index([folder / "a.mp4", other / "c.mp4"])  # files named: the gone one itself
    assert rep.missing == [str(folder / "a.mp4")] and rep.skipped == 1


def test_old_schema_is_migrated_by_the_next_index_run(store):
    a, folder = store
    con = duckdb.connect(str(a.store / "catalog.duckdb"))
    con.execute("DROP TABLE shots")
    con.execute("ALTER TABLE frames DROP COLUMN shot_id")
    con.execute("ALTER TABLE frames DROP COLUMN thumb_offset")
    con.execute("ALTER TABLE frames DROP COLUMN thumb_bytes")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="older"):
        a.info()
    report = a.index([folder])
    assert (report.indexed, report.skipped) == (0, 2)  # nothing re-embedded
    info = a.info()
    assert info.schema_version == SCHEMA_VERSION and info.videos == 2
    assert a.sql("SELECT count(*) AS n FROM shots").records() == [{"n": 2}]  # one shot per old video
    assert a.check().ok


def test_newer_schema_is_refused(store):
    a, _ = store
    con = duckdb.connect(str(a.store / "catalog.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        a.info()


def test_partly_decodable_files_keep_their_frames_and_say_so(tmp_path, encoder):
    src = open(os.path.join(os.path.dirname(__file__), "data", "Megamind.avi"), "rb").read()
    folder = tmp_path / "mess"
    folder.mkdir()
    (folder / "truncated.avi").write_bytes(src[: len(src) // 2])
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "Megamind_bugy.avi"), folder / "bugy.avi")
    a = Archive(tmp_path / "store", encoder=encoder)
    report = a.index([folder])
    assert report.indexed == 2 and report.partial == 1 and not report.ok
    rows = a.sql(
        "SELECT v.name, v.n_frames, v.duration_s, f.error FROM videos v JOIN failures f USING (path)"
    ).records()
    assert len(rows) == 1 and rows[0]["name"] == "truncated.avi"
    assert "partly decoded" in rows[0]["error"] and "truncated" in rows[0]["error"]
    assert 5.0 < rows[0]["duration_s"] < 6.0 and rows[0]["n_frames"] >= 10
    # the damaged clip from the shared test data decodes whole (its header claims 30 fps)
    bugy = a.sql("SELECT fps, n_frames, note FROM videos WHERE name = 'bugy.avi'").records()[0]
    assert bugy["fps"] == 30.0 and bugy["note"] is None


def test_reindex_leaves_no_label_rows_for_old_video_ids(store):
    from indexer.run.options import IndexOptions
    from indexer.run.pipeline import index_paths

    a, folder = store
    a.label_add("anything", threshold=-1.0)
    index_paths([folder], a.store, IndexOptions(fps=3.0))  # the core alone: no label refresh afterwards
    dangling = a.sql(
        "SELECT count(*) AS n FROM video_labels l LEFT JOIN videos v USING (video_id) WHERE v.video_id IS NULL"
    ).records()
    assert dangling == [{"n": 0}]


def test_unwritable_store_is_one_clear_error(store):
    from indexer.errors import StoreError

    a, folder = store
    lock = a.store / "writer.lock"
    lock.unlink()
    lock.mkdir()  # the lock cannot be opened for writing
    with pytest.raises(StoreError, match="cannot write to the store"):
        a.index([folder])


def test_disk_full_during_a_commit_is_one_line_and_leaves_no_temp_file(tmp_path):
    import resource

    def limit():  # files may not grow past 3 MB: the catalog fits, the vector file does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(20):  # 2000 samples at --fps 25: 4 MB of 512-d vectors
        make_video(folder / f"c{i}.mp4", [Shot(i + 1, 50), Shot(i + 40, 50)], "25", size=(160, 120))
    env = env_for_cli(tmp_path)
    env["ARCHIVE_MODEL"] = "ViT-B-32"  # 512-d vectors: the file outgrows the limit sooner
    p = run_cli(["index", folder, "-q", "--fps", "25"], env, timeout=600, preexec_fn=limit)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error:")
    assert not list((tmp_path / "store").glob("*.tmp"))
