"""Decoding in a child process while the model loads (``python -m indexer.media.decode_child``).

An index run's first videos start decoding before the model is loaded. Importing torch holds
Python's GIL for about a second and a half, and a decoding thread needs the GIL between frames, so
in one process the two take turns instead of running on two cores: a 15 s clip decoded in 1.5 s
alone took 2.5 s beside the import. A child process has a GIL of its own. It runs the same
:class:`~indexer.media.prefetch.FramePrefetch` and hands its batches to the parent through a pipe
(:class:`ProcessPrefetch`, the parent's side).

Protocol: the parent writes one pickled request ``(path, prep, fps, batch_size, threads, shots)``
on the child's stdin, then one byte ``h`` each time its model waits for frames (the next batch
then goes out early, see :data:`~indexer.media.prefetch.EARLY_BATCH`); closing stdin stops the child.
The child writes pickled messages on its stdout: ``("item", (batch, ts, n))`` per batch, then
``("end", state)`` or ``("error", exception)``. Anything else the child would print goes to
stderr. A child whose parent is gone stops at its next write or when its stdin closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .decode import DecodeStats
from .imageprep import ImagePrep
from .prefetch import END, FramePrefetch, join_draining
from .timing import StageTimes


class DecoderLost(RuntimeError):
    """The decoding child process ended without finishing its video (killed, or it could not start)."""


class ProcessPrefetch:
    """:class:`~indexer.media.prefetch.FramePrefetch`'s interface, with the decoding in a child process
    (module docstring). Its per-sample lists and stats are filled in when the video ends. Text
    reading (OCR) is not done here: runs that read text decode in threads."""

    def __init__(
        self, path: str, prep: ImagePrep, fps: float, batch_size: int, threads: int = 0, shots: str = "fast"
    ) -> None:
        self.path, self.prep, self.fps, self.batch_size = path, prep, fps, batch_size
        self.threads, self.shots = threads, shots
        self.ocr = None
        self.track = None
        self.ocr_error: str | None = None
        self.stats = DecodeStats()
        self.tm = StageTimes()
        self.times: list[float] = []
        self.shot_of: list[int] = []
        self.owner: list[int] = []
        self.thumbs: list[bytes] = []
        self.q: "queue.Queue[Any]" = queue.Queue(maxsize=2)
        self.on_done: Callable[[], None] | None = None
        self.stop = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ended = False  # the child sent its last message
        self.thread = threading.Thread(target=self._receive, name="decode-child", daemon=True)

    def start(self, on_done: Callable[[], None] | None = None) -> "ProcessPrefetch":
        self.on_done = on_done
        env = dict(os.environ)  # the child imports this very package, wherever it was imported from
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["OMP_NUM_THREADS"] = "1"  # TransNetV2 here must not fight the model's threads for the cores
        try:
            # a session of its own: Ctrl-C in the terminal goes to this process, which stops the child;
            # started in the package's folder, so no module of the caller's folder shadows one of ours
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "indexer.media.decode_child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=root,
                start_new_session=True,
            )
            assert self.proc.stdin is not None
            pickle.dump(
                (os.path.abspath(self.path), self.prep, self.fps, self.batch_size, self.threads, self.shots),
                self.proc.stdin,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            self.proc.stdin.flush()
        except Exception as exc:  # no child: the caller decodes in a thread instead
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait()
                for pipe in (self.proc.stdin, self.proc.stdout):
                    with contextlib.suppress(OSError, ValueError):
                        if pipe is not None:
                            pipe.close()
            self.proc = None
            self.q.put(DecoderLost(f"the decoding process did not start ({exc})"))
            return self
        self.thread.start()
        return self

    def _receive(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        message: Any = None
        try:
            while not self.stop.is_set():
                kind, body = pickle.load(self.proc.stdout)
                if kind == "item":
                    self._put(body)
                    continue
                if kind == "end":
                    self.times, self.shot_of, self.owner, self.thumbs, self.stats, tm = body
                    for f in dataclasses.fields(tm):  # the child's stages; the embedding is counted here
                        if f.name != "embed":
                            setattr(self.tm, f.name, getattr(tm, f.name))
                    message = END
                else:
                    message = body
                self.ended = True  # the child is done and leaves by itself
                break
        except Exception:  # EOF or a torn message: the child is gone
            message = None
        if message is None and not self.stop.is_set():
            message = DecoderLost(f"the decoding process ended early (exit status {self.proc.poll()})")
        if message is not None:
            self._put(message)
        if self.on_done is not None and not self.stop.is_set():
            self.on_done()

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        """The next batch, :data:`END` or an exception; an empty queue tells the child the model waits."""
        if self.q.empty() and self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b"h")
                self.proc.stdin.flush()
            except (OSError, ValueError):  # the child is gone: the queue says so
                pass
        return self.q.get()

    def close(self) -> None:
        """Stop the child (after its video ended, or on an error) and wait for it."""
        self.stop.set()
        if self.proc is not None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass
            if self.proc.poll() is None and self.ended:  # it is on its way out: let it go
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        join_draining(self.thread, self.q)  # the receiver may wait on a full queue
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def _portable(exc: BaseException) -> BaseException:
    """The exception as the parent can unpickle it (decoding raises VideoOpenError and OSError;
    anything else travels as a RuntimeError with its text)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # anything that does not survive pickling
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def serve(stdin: BinaryIO, out: BinaryIO) -> None:
    """Decode the one video the request on ``stdin`` names and send its batches to ``out``."""
    path, prep, fps, batch_size, threads, shots = pickle.load(stdin)
    dec = FramePrefetch(path, prep, fps, batch_size, threads, shots)

    def listen() -> None:  # 'h': the parent's model waits; EOF: the parent is gone or done
        while True:
            b = stdin.read(1)
            if not b:
                dec.stop.set()
                os._exit(0)
            dec.hungry.set()

    threading.Thread(target=listen, name="parent", daemon=True).start()
    dec.start()

    def send(message: Any) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    while True:
        item = dec.q.get()
        if item is END:
            send(("end", (dec.times, dec.shot_of, dec.owner, dec.thumbs, dec.stats, dec.tm)))
            return
        if isinstance(item, BaseException):
            send(("error", _portable(item)))
            return
        send(("item", item))


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, never into the protocol
    sys.stdout = sys.stderr
    try:
        serve(sys.stdin.buffer, out)
        out.close()
    except (BrokenPipeError, EOFError):  # the parent is gone
        pass
    os._exit(0)  # the decoding thread may still hold the file: nothing to tear down


if __name__ == "__main__":
    main()
