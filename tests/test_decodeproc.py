"""Decoding in a child process while the model loads (indexer.media.decode_child): the same samples, batches,
shots and thumbnails as a decoding thread; a child that dies is replaced by a thread; errors travel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gen.videos import ad_shots, make_video
from helpers import DATA, env_for_cli, paused_at, run_cli, start_cli, wait_for_pause

from archive import Archive
from indexer.errors import VideoOpenError
from indexer.media import decode_child
from indexer.media.decode_child import ProcessPrefetch
from indexer.media.prefetch import EARLY_BATCH, END, FramePrefetch
from indexer.run.embed import embed_video


def _same_vectors(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the model's arithmetic: batches may be cut differently (a waiting model takes
    what is decoded so far), and bf16 kernels may round a row differently in another batch size."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        return False
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.min(cos)) >= 0.9999


def _drain(dec) -> tuple[list[np.ndarray], list]:
    batches = []
    while True:
        item = dec.get()
        if item is END:
            break
        if isinstance(item, BaseException):
            raise item
        batches.append(item)
    dec.close()
    return [b for b, _ts, _n in batches], [(ts, n) for _b, ts, n in batches]


@pytest.mark.slow  # a decoding child process (ProcessPrefetch), TransNetV2
@pytest.mark.parametrize("name,shots", [("Megamind.avi", "transnet"), ("ad.mp4", "transnet"), ("ad.mp4", "fast")])
def test_a_child_process_decodes_what_a_thread_decodes(encoder, tmp_path: Path, name: str, shots: str) -> None:
    path = DATA / name if name != "ad.mp4" else make_video(tmp_path / name, ad_shots("25"), "25").path
    runs = []
    for kind in (FramePrefetch, ProcessPrefetch):
        dec = kind(str(path), encoder.prep, 2.0, 8, 1, shots).start()
        arrays, marks = _drain(dec)
        runs.append((arrays, marks, dec))
    (a_arr, a_marks, a), (b_arr, b_marks, b) = runs
    assert len(a_arr) == len(b_arr) >= 2 and a_marks == b_marks
    assert all(np.array_equal(x, y) for x, y in zip(a_arr, b_arr))
    assert a.times == b.times and a.shot_of == b.shot_of and a.owner == b.owner and a.thumbs == b.thumbs
    assert [(s.start_s, s.end_s, s.kind, s.transition) for s in a.stats.shots] == [
        (s.start_s, s.end_s, s.kind, s.transition) for s in b.stats.shots
    ]
    assert a.stats.decoded_frames == b.stats.decoded_frames > 0 and b.proc is not None and b.proc.returncode == 0


@pytest.mark.slow  # a decoding child process (ProcessPrefetch)
def test_a_child_that_dies_is_replaced_by_a_thread(encoder) -> None:
    path = str(DATA / "Megamind.avi")
    want = embed_video(path, encoder, 2.0)
    dec = ProcessPrefetch(path, encoder.prep, 2.0, 8, 1, "transnet").start()
    dec.proc.kill()  # killed before (or while) it sends anything
    dec.proc.wait()
    got = embed_video(path, encoder, 2.0, decoder=dec)
    assert [(f.ts_s, f.end_s, f.shot) for f in got.frames] == [(f.ts_s, f.end_s, f.shot) for f in want.frames]
    assert _same_vectors(got.vectors, want.vectors) and got.thumbs == want.thumbs and len(got.frames) > 10


@pytest.mark.slow  # a decoding child process (ProcessPrefetch)
def test_a_child_that_cannot_start_is_replaced_by_a_thread(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(DATA / "tree.avi")
    want = embed_video(path, encoder, 2.0)
    monkeypatch.setattr(decode_child.sys, "executable", "/nonexistent/python")
    dec = ProcessPrefetch(path, encoder.prep, 2.0, 8, 1, "fast").start()
    assert dec.proc is None
    got = embed_video(path, encoder, 2.0, decoder=dec, shots="fast")
    assert _same_vectors(got.vectors, want.vectors) and len(got.frames) == len(want.frames) > 0


@pytest.mark.slow  # a decoding child process (ProcessPrefetch)
def test_a_file_that_is_not_a_video_fails_as_in_a_thread(encoder, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    messages = []
    for kind in (FramePrefetch, ProcessPrefetch):
        dec = kind(str(bad), encoder.prep, 2.0, 8, 1, "fast").start()
        with pytest.raises(VideoOpenError) as exc:
            embed_video(str(bad), encoder, 2.0, decoder=dec, shots="fast")
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and str(bad) in messages[0]


@pytest.mark.slow  # a decoding child process (ProcessPrefetch)
def test_closing_early_stops_the_child(encoder) -> None:
    dec = ProcessPrefetch(str(DATA / "Megamind.avi"), encoder.prep, 2.0, 8, 1, "transnet").start()
    first = dec.get()
    assert not isinstance(first, BaseException) and first is not END
    dec.close()
    assert dec.proc.returncode is not None and not dec.thread.is_alive()


def test_a_waiting_model_gets_an_early_batch(encoder) -> None:
    dec = FramePrefetch(str(DATA / "Megamind.avi"), encoder.prep, 4.0, 32, 1, "fast")
    dec.hungry.set()  # the model waits from the start: the first batch goes out at EARLY_BATCH samples
    dec.start()
    first, second = dec.q.get(), dec.q.get()  # asked without saying so: the next one fills up
    dec.close()
    assert len(first[0]) == EARLY_BATCH and len(second[0]) == 32


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_an_index_run_decodes_its_first_video_in_a_child(
    tmp_path: Path, clips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHIVE_DECODERS", "2")
    Archive(tmp_path / "warm").index([clips / "tree.avi"])  # the model's exports: later runs decode early
    started = []
    real = ProcessPrefetch.start
    monkeypatch.setattr(
        ProcessPrefetch, "start", lambda self, on_done=None: started.append(self.path) or real(self, on_done)
    )
    rows = []
    for how in ("process", "thread"):
        monkeypatch.setenv("ARCHIVE_EARLY_DECODE", how)
        a = Archive(tmp_path / how)  # no encoder handed in: it loads while the first videos decode
        rep = a.index([clips])
        assert rep.indexed == 2 and rep.ok
        rows.append(
            a.sql(
                "SELECT v.name, f.ts_s, f.end_s, s.start_s, s.transition FROM frames f "
                "JOIN videos v USING (video_id) JOIN shots s USING (shot_id) ORDER BY 1, 2"
            ).rows
        )
    assert [Path(p).name for p in started] == ["Megamind.avi"]  # the first video only; the second in a thread
    assert rows[0] == rows[1] and len(rows[0]) > 30
    from indexer.store import Reader

    t = [Reader(tmp_path / how).frames() for how in ("process", "thread")]
    assert _same_vectors(t[0].vectors[t[0].row], t[1].vectors[t[1].row])


def _children(pid: int) -> list[int]:
    """Decoding children of process ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"indexer.media.decode_child" in cmd:
            out.append(int(d.name))
    return out


@pytest.mark.slow  # the CLI in a process
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_while_the_model_loads_stops_the_run_and_its_children(tmp_path: Path, clips: Path) -> None:
    import signal
    import time

    env = env_for_cli(tmp_path)
    # a store and the model's exports: the next run decodes early
    run_cli(["index", clips / "tree.avi", "-q"], env, check=True, text=False, timeout=600)
    marker = tmp_path / "paused"
    # SIGINT as a terminal has it (a runner started in the background may hand its children SIGINT ignored)
    proc = start_cli(
        ["index", clips / "Megamind.avi"],
        paused_at(env, "model.load", marker),
        new_session=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_pause(proc, marker)  # the run has planned, started decoding, and stops where its model loads
    kids = _children(proc.pid)
    assert kids, "no decoding child was started"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends (the child has a session of its own)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err

    def gone(k: int) -> bool:
        try:
            return Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not reaped
        except OSError:
            return True

    deadline = time.monotonic() + 30  # a child stops when its stdin closes (it may still be starting up)
    while not all(gone(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(k) for k in kids)


@pytest.mark.slow  # a decoding child process (ProcessPrefetch)
def test_embedding_time_is_counted_for_a_child_decoded_video(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from indexer.media.timing import StageTimes

    calls = []
    real = type(encoder).encode_batch

    def slow(self, batch):  # every model call takes at least 50 ms
        calls.append(len(batch))
        time.sleep(0.05)
        return real(self, batch)

    monkeypatch.setattr(type(encoder), "encode_batch", slow)
    tm = StageTimes()
    dec = ProcessPrefetch(str(DATA / "Megamind.avi"), encoder.prep, 2.0, 8, 1, "fast").start()
    rec = embed_video(str(DATA / "Megamind.avi"), encoder, 2.0, times_out=tm, decoder=dec, shots="fast")
    assert len(calls) >= 2 and tm.embed >= 0.05 * len(calls) and tm.frames == len(rec.frames)
    assert tm.decode > 0  # the child's own stages come back too


def _torch_uses_libgomp() -> bool:
    import glob
    import importlib.util

    spec = importlib.util.find_spec("torch")
    root = Path(spec.origin).parent if spec and spec.origin else None
    return root is not None and bool(glob.glob(str(root / "lib" / "libgomp*")))


@pytest.mark.slow  # the CLI in a process
@pytest.mark.skipif(not _torch_uses_libgomp(), reason="torch's OpenMP here is not GNU libgomp (macOS, conda builds)")
@pytest.mark.parametrize("user_policy", [None, "ACTIVE"])
def test_an_index_run_lets_idle_model_threads_sleep(tmp_path: Path, user_policy: str | None) -> None:
    """The model's OpenMP threads spin only briefly on cores the decoders need
    (settings.idle_threads_sleep): libgomp, asked to show its settings when it loads, has the
    run's spin count; a policy the user set is kept."""
    env = env_for_cli(tmp_path)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    run = run_cli(["index", DATA / "tree.avi", "-q"], env, timeout=600)
    assert run.returncode == 0, run.stderr
    spins = [line.split("=", 1)[1].strip() for line in run.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    assert spins, run.stderr  # torch's OpenMP loaded in this run and showed its settings
    from indexer.settings import SPIN_COUNT

    assert (f"'{SPIN_COUNT}'" in spins) is (user_policy is None)
