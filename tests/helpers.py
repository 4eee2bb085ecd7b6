"""What tests import: the test model and data, the CLI run as a real process, and store records.

Fixtures live in ``conftest.py``; everything a test imports by name lives here (``from helpers import
...``). The video generators are in :mod:`gen`.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.store import FrameRecord, ShotRecord, VideoRecord

TEST_MODEL = "ViT-S-32-alt"  # 43 M params, 256-d, builds with random weights and no network
DATA = Path(__file__).resolve().parent / "data"  # the real sample clips, the golden file, old stores
# For random weights, frames of one shot score >= 0.999 against each other and <= ~0.97 against
# other generated shots: 0.98 splits them. (Pretrained CLIP uses the documented defaults.)
IMAGE_THRESHOLD = 0.98

ARCHIVE = [sys.executable, "-m", "archive.cli"]  # the CLI, as a process of this test run's Python
WAIT_S = 300  # how long a test waits for a process to reach a point: generous, a slow machine gets there later


def env_for_cli(tmp_path: Path, store: Path | None = None) -> dict[str, str]:
    """Environment for a CLI subprocess: the test model, and the store ``store`` or ``tmp_path/store``."""
    env = dict(os.environ)
    env.update(
        ARCHIVE_MODEL=TEST_MODEL,
        ARCHIVE_PRETRAINED="none",
        ARCHIVE_STORE=str(store or tmp_path / "store"),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_cli(
    args: Sequence[object],
    env: Mapping[str, str] | None = None,
    *,
    timeout: float | None = None,
    input: str | bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = False,
    text: bool = True,
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``archive ARGS...`` (``python -m archive.cli``) to the end, its output captured.

    Args:
        args: the command line after ``archive``; each item is passed as ``str(item)``.
        env: the process's environment (None: this process's, as the autouse fixture set it).
        timeout: seconds before ``subprocess.TimeoutExpired`` (None: no limit).
        input: fed to its stdin.
        cwd: where it runs (None: here).
        check: raise ``subprocess.CalledProcessError`` on a non-zero exit status.
        text: stdout and stderr as ``str`` (False: ``bytes``).
        preexec_fn: run in the child before ``exec`` (a resource limit, a signal disposition).

    Returns:
        The ``CompletedProcess`` (``returncode``, ``stdout``, ``stderr``).
    """
    return subprocess.run(
        ARCHIVE + [str(a) for a in args],
        env=env,
        capture_output=True,
        text=text,
        timeout=timeout,
        input=input,
        cwd=cwd,
        check=check,
        preexec_fn=preexec_fn,
    )


def start_cli(
    args: Sequence[object],
    env: Mapping[str, str] | None = None,
    *,
    new_session: bool = True,
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.Popen:
    """Start ``archive ARGS...`` without waiting: stdout and stderr are text pipes.

    Args:
        args: the command line after ``archive``; each item is passed as ``str(item)``.
        env: the process's environment (None: this process's).
        new_session: in a session (and process group) of its own, so :func:`kill` ends every process
            it started.
        preexec_fn: run in the child before ``exec``.
    """
    return subprocess.Popen(
        ARCHIVE + [str(a) for a in args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
        preexec_fn=preexec_fn,
    )


def paused_at(env: Mapping[str, str], point: str, marker: Path) -> dict[str, str]:
    """``env`` with the crash point hook set: the run stops at ``point`` (``name`` or ``name:N``,
    see :mod:`indexer.crashpoints`) and writes ``marker``."""
    e = dict(env)
    e["ARCHIVE_TEST_PAUSE"] = f"{point}={marker}"
    return e


def wait_for_pause(proc: subprocess.Popen, marker: Path) -> str:
    """Block until the run has stopped at its pause point; return what the marker says. Fails when
    the run ends first, or does not get there within :data:`WAIT_S`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < WAIT_S:
        if marker.exists():
            return marker.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended (status {proc.returncode}) before its pause point:\n" + proc.stderr.read()
            )
        time.sleep(0.02)
    raise AssertionError("the run never reached its pause point")


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a process started by :func:`start_cli` and everything in its session; reap it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None, method: str | None = None):
    """(status, headers, body) of one request; 4xx/5xx are returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {}, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start_server(store: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start ``archive serve`` on a free loopback port; return the process and its URL once it
    says where it listens (fails after 120 s, or when it ends first)."""
    p = subprocess.Popen(
        ARCHIVE + ["serve", "--port", "0", "--store", str(store), *extra],
        env=env_for_cli(tmp_path, store),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"at (http://\S+/)", line)
        if m:
            return p, m[1]
    p.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


def stop(p: subprocess.Popen) -> None:
    """Ctrl-C a server started by :func:`start_server` (SIGKILL after 20 s)."""
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()


def chromium() -> str:
    """The Chromium binary the browser tests drive (``$ARCHIVE_CHROMIUM``, else the one on the PATH)."""
    path = os.environ.get("ARCHIVE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the browser test needs Chromium: apt-get install chromium (or set ARCHIVE_CHROMIUM)")
    return path


@contextlib.contextmanager
def browser_page(width: int = 1100, height: int = 900) -> Iterator[tuple[Any, Any, list[str]]]:
    """Headless Chromium (Playwright driving Debian's chromium): ``(browser, page, errors)``, where
    ``errors`` collects the page's uncaught JavaScript errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield browser, page, errors
        finally:
            browser.close()


def video_record(
    path: str,
    vectors: np.ndarray,
    *,
    fingerprint: str,
    sample_fps: float = 2.0,
    shots: Sequence[ShotRecord] = (),
    size_bytes: int = 1,
    mtime: float = 0.0,
    fps: float = 25.0,
    width: int = 640,
    height: int = 360,
    codec: str = "h264",
    decoded_frames: int | None = None,
    **more: Any,
) -> VideoRecord:
    """A finished video as the indexer hands it to the writer, made up: one frame per vector.

    Frame ``k`` is sampled at ``k / sample_fps`` s and stands for one sample interval; it belongs to
    the last of ``shots`` that starts at or before it (shot 0 when there are none). The duration is
    the frames' span.

    Args:
        path: the video's path as indexed.
        vectors: ``(frames, dim)`` float32, one row per sampled frame (unit length, as the model's).
        fingerprint: the file's content fingerprint.
        sample_fps: samples per second.
        shots: the video's shots, in order (default: none).
        size_bytes, mtime, fps, width, height, codec: the file's catalog row.
        decoded_frames: frames decoded (default: 12 per sample).
        **more: other :class:`~indexer.store.VideoRecord` fields (``bg_lse``, ``thumbs``, ...).
    """
    n = len(vectors)
    starts = [s.start_s for s in shots]
    frames = []
    for k in range(n):
        t = k / sample_fps
        frames.append(FrameRecord(t, t + 1 / sample_fps, max(bisect.bisect_right(starts, t) - 1, 0)))
    return VideoRecord(
        path=path,
        size_bytes=size_bytes,
        mtime=mtime,
        fingerprint=fingerprint,
        duration_s=n / sample_fps,
        fps=fps,
        width=width,
        height=height,
        codec=codec,
        sample_fps=sample_fps,
        decoded_frames=n * 12 if decoded_frames is None else decoded_frames,
        frames=frames,
        vectors=vectors,
        shots=list(shots),
        **more,
    )
