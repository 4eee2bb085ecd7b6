"""The Ray runner: the per-video step on a Ray cluster, the commits on the driver.

``archive index PATH --ray [ADDRESS]`` maps :func:`indexer.run.embed.embed_video` over the files with
Ray Core *actors*: each worker is an actor that loads the model once and then embeds one video per
call, returning its :class:`~indexer.store.VideoRecord` (frame times, shots, vectors, thumbnails)
to the driver, where the one :class:`~indexer.store.Writer` commits it, as the in-process runner
does. Every guarantee of the store holds unchanged: atomic per video, safe against ``kill -9``,
resumable, unchanged files skipped.

Why actors and not Ray Data: the expensive state is the model, loaded once per worker and kept;
the unit of work is a whole video whose result must go to a single writer in the driver as soon
as it is done (a commit every few seconds), not a dataset transformed in bulk; and a video that
kills its worker needs a decision of ours (try it once more elsewhere, then record it as a
failure), which is plain with one call per video.

Flow control: each worker has at most one video at a time, so the driver holds at most one record
per worker (plus those waiting for their commit): its memory stays flat however many files are
queued. Faults: a worker that dies (killed, out of memory, a crashing decoder) is replaced by a
fresh one and its video is tried again on it; a video whose worker dies twice goes to
``failures`` with the reason, and the run goes on. Files must be readable at the same path on
every node (a shared mount); a path a worker cannot read is a ``failures`` row.

Ray is an optional dependency (``pip install 'clip-video-archive[ray]'``), imported only here.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from indexer import crashpoints, settings
from indexer.errors import ArchiveError, UsageError, VideoOpenError
from indexer.media.decode import VideoInfo
from indexer.media.ocr import engine
from indexer.media.speech import engine as speech_engine
from indexer.media.timing import StageTimes
from indexer.model.background import background_vectors
from indexer.model.encoder import Encoder
from indexer.store import Writer

from .commit import Committer
from .embed import embed_video
from .hear import start_hearing
from .options import IndexOptions, RayOptions
from .report import IndexReport, Progress, ProgressFn

MAX_ATTEMPTS = 2  # a video whose worker dies this many times is recorded as a failure
# The ARCHIVE_* settings (and the test hook) reach the workers as they are in the driver; so do
# the OpenMP threads' settings (an index run's spin count: settings.idle_threads_sleep).
_FORWARD = ("ARCHIVE_", "HF_", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "TORCH_")


def import_ray() -> Any:
    """Ray, or one clear error saying how to install it."""
    try:
        import ray  # lazy: Ray is optional (the [ray] extra, --ray)
    except ImportError as exc:
        raise UsageError(
            "--ray needs Ray: pip install 'clip-video-archive[ray]' (or pip install 'ray>=2.9,<3')."
        ) from exc
    return ray


def connect(opts: RayOptions) -> tuple[Any, bool]:
    """Join or start Ray; returns (the ray module, whether this call started it)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD)}
    runtime_env = {"env_vars": env} if env else None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    address = opts.address
    if address == "local" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # a cluster named in the environment is joined
    try:
        if address == "local":
            if opts.workers is not None:  # room for every worker asked for, even past the cores
                kwargs["num_cpus"] = max(opts.workers * opts.cpus_per_worker, os.cpu_count() or 1)
            ray.init(address="local", runtime_env=runtime_env, **kwargs)
        else:
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchiveError(
            f"cannot reach the Ray cluster at {address!r}: {first}. Start one with "
            "`ray start --head`, or use --ray alone for a local runtime."
        ) from exc
    return ray, True


def _worker_class(ray: Any) -> Any:
    class Worker:
        """One Ray actor: the model loaded once, then one video per call."""

        def __init__(self, name: str, pretrained: str, device: str, precision: str, threads: int) -> None:
            import torch  # lazy: heavy import (torch)

            torch.set_num_threads(max(1, threads))

            self.encoder = Encoder.load(name, pretrained, device, precision=precision)
            self.background = background_vectors(self.encoder)

        def dim(self) -> int:
            return int(self.encoder.dim)

        def pid(self) -> int:
            return os.getpid()

        def embed(
            self,
            path: str,
            fps: float,
            batch_size: int,
            shots: str,
            info: VideoInfo | None,
            ocr_side: int = 0,
            speech_model: str | None = None,
        ) -> tuple:
            """``("ok", record, stage times)`` or ``("fail", why)``: bad files are data, not errors.
            ``ocr_side``: read on-screen text at that short side (0: not). ``speech_model``:
            transcribe the sound with that Whisper model, beside the picture work (None: not)."""
            times = StageTimes()
            try:
                ears = start_hearing(speech_engine(speech_model), path) if speech_model else None
                rec = embed_video(
                    path,
                    self.encoder,
                    fps,
                    batch_size,
                    times_out=times,
                    info=info,
                    background=self.background,
                    shots=shots,
                    ocr=engine(ocr_side) if ocr_side else None,
                    speech=ears,
                )
            except VideoOpenError as exc:
                return ("fail", str(exc).removeprefix(f"{path}: "))
            except OSError as exc:
                return ("fail", f"cannot read on worker {os.uname().nodename} ({exc.strerror or exc})")
            return ("ok", rec, times)

    return ray.remote(max_restarts=0, max_task_retries=0)(Worker)


class RayRunner(Committer):
    """Maps the per-video step over files on Ray actors and commits on the driver (see the module
    docstring). Same role as the in-process runner in :mod:`indexer.run.pipeline`."""

    def __init__(
        self,
        writer: Writer,
        options: IndexOptions,
        spec: Any,
        progress: ProgressFn,
        report: IndexReport,
        shots: str,
        ocr_side: int = 0,
        speech_model: str | None = None,
    ) -> None:
        super().__init__(writer, progress, report)
        assert options.ray is not None
        self.ocr_side = ocr_side  # read on-screen text at this short side (0: not)
        self.speech_model = speech_model  # transcribe the sound with this Whisper model (None: not)
        self.opts, self.spec, self.device, self.precision = options.ray, spec, options.device, options.precision
        self.fps, self.batch_size, self.shots = options.fps, options.batch_size, shots
        self.ray: Any = None
        self.started_ray = False
        self.actors: list[Any] = []
        self.dim: int | None = None

    # -- workers ---------------------------------------------------------------------------------
    def start(self) -> int:
        """Connect to Ray and start the workers; returns the model's dimension."""
        self.ray, self.started_ray = connect(self.opts)
        ray = self.ray
        res = ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        gpw = self.opts.gpus_per_worker
        if gpw is None:
            gpw = 1.0 if gpus >= 1 and self.device != "cpu" else 0.0
        n = self.opts.workers
        if n is None:
            by_cpu = int(float(res.get("CPU", 1)) // self.opts.cpus_per_worker)
            n = max(1, int(gpus // gpw) if gpw else by_cpu)
        self._cls = _worker_class(ray).options(num_cpus=self.opts.cpus_per_worker, num_gpus=gpw)
        self._device = ("cuda" if gpw else "cpu") if self.device == "auto" else self.device
        self.actors = [self._new_actor() for _ in range(n)]
        self.progress(
            Progress(
                "model", message=f"{self.spec.name} ({self.spec.pretrained}) on {n} Ray worker{'s' if n != 1 else ''}"
            )
        )
        self.dim = ray.get(self.actors[0].dim.remote())
        return self.dim

    def _new_actor(self) -> Any:
        return self._cls.remote(
            self.spec.name, self.spec.pretrained, self._device, self.precision, self.opts.cpus_per_worker
        )

    def close(self) -> None:
        """Stop the workers (and the local runtime this run started)."""
        ray = self.ray
        if ray is None:
            return
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already dead
                pass
        self.actors = []
        if self.started_ray:
            ray.shutdown()
        self.ray = None

    # -- the run ---------------------------------------------------------------------------------
    def run(self, todo: Sequence[str], problems: Sequence[tuple[str, str]], infos: dict[str, VideoInfo]) -> None:
        """Embed ``todo`` on the workers, one video per worker at a time, and commit as they come."""
        ray = self.ray
        for p, why in problems:
            self.progress(Progress("fail", path=p, message=why))
        self.failures = list(problems)
        queue = list(todo)[::-1]  # popped from the end, in order
        attempts: dict[str, int] = {}
        busy: dict[Any, tuple[int, str]] = {}  # task -> (worker slot, path)
        free = list(range(len(self.actors)))[::-1]
        try:
            while queue or busy:
                while queue and free:
                    slot, path = free.pop(), queue.pop()
                    self.progress(Progress("start", path=path))
                    task = self.actors[slot].embed.remote(
                        path, self.fps, self.batch_size, self.shots, infos.get(path), self.ocr_side, self.speech_model
                    )
                    busy[task] = (slot, path)
                [done], _ = ray.wait(list(busy), num_returns=1)
                slot, path = busy.pop(done)
                try:
                    out = ray.get(done)
                except ray.exceptions.RayActorError as exc:
                    attempts[path] = attempts.get(path, 0) + 1
                    self.actors[slot] = self._new_actor()  # a fresh worker takes the dead one's place
                    free.append(slot)
                    if attempts[path] < MAX_ATTEMPTS:
                        queue.append(path)  # next, on the first free worker
                    else:
                        self._fail(
                            path,
                            f"its worker died {MAX_ATTEMPTS} times while indexing it (killed, out of "
                            f"memory, or a crash in native code: {type(exc).__name__})",
                        )
                    continue
                free.append(slot)
                if out[0] == "fail":
                    self._fail(path, out[1])
                else:
                    _, rec, times = out
                    self.report.stages.add(times)
                    self.pending.append(rec)
                    if rec.note:
                        self.progress(Progress("partial", path=path, message=rec.note))
                    self.progress(Progress("done", path=path, frames=len(rec.frames), seconds=rec.duration_s))
                    crashpoints.pause("video.done")
                if time.monotonic() - self.last_commit >= settings.commit_interval_s():
                    self.flush()
        finally:
            self.flush()  # on Ctrl-C too: finished videos are kept
