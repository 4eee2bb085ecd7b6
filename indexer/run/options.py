"""What an index run is asked to do: one options object from the CLI through the API to the runners.

:class:`IndexOptions` carries every choice of ``archive index`` (sample rate, batch size, model and
weights, device and precision, shot detector, on-screen text, speech, Ray) so that
:func:`indexer.run.pipeline.index_paths` and the runners take one value instead of a dozen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from indexer import settings
from indexer.errors import UsageError


@dataclass(frozen=True)
class RayOptions:
    """Where and how the per-video step runs on Ray.

    ``address``: ``local`` starts a Ray runtime in this process (all this machine's CPUs, or
    ``workers x cpus_per_worker``); ``auto`` or ``HOST:PORT`` (or ``ray://...``) joins a running
    cluster. ``workers``: how many actors (None: as many as the cluster's CPUs, or GPUs, allow).
    ``cpus_per_worker``: CPUs each worker reserves (torch threads too). ``gpus_per_worker``: GPUs
    each worker reserves (None: 1 when the cluster has GPUs and the device is not ``cpu``).
    """

    address: str = "local"
    workers: int | None = None
    cpus_per_worker: int = 1
    gpus_per_worker: float | None = None

    def check(self) -> "RayOptions":
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--ray-workers {self.workers}: give at least 1.")
        if self.cpus_per_worker < 1:
            raise UsageError(f"--ray-cpus-per-worker {self.cpus_per_worker}: give at least 1.")
        return self


@dataclass(frozen=True)
class IndexOptions:
    """The choices of an index run; each defaults as ``archive index`` does.

    ``model``/``pretrained``: the open_clip model and weights (None: the store's own, else
    ViT-B-32 / laion2b_s34b_b79k). ``fps``: samples per second of video time. ``batch_size``: frames
    per model call. ``device``: ``auto``, ``cpu``, ``cuda`` or ``mps``. ``precision``: the image
    tower's, ``auto`` (bf16 where native), ``bf16`` or ``fp32``. ``shots``: the shot detector,
    ``auto``, ``transnet`` or ``fast`` (None: ``$ARCHIVE_SHOTS``, else ``auto``; asked for explicitly it
    re-indexes the videos another detector made). ``ocr``: read on-screen text (None:
    ``$ARCHIVE_OCR``, else as the store does). ``speech``: transcribe what is said (None:
    ``$ARCHIVE_SPEECH``, else as the store does). ``sound``: fingerprint the sound for ``--sound``
    queries (None: ``$ARCHIVE_SOUND``, else on). ``ray``: run the per-video step on Ray (None: here).
    """

    fps: float = settings.DEFAULT_FPS
    batch_size: int = settings.DEFAULT_BATCH
    model: str | None = None
    pretrained: str | None = None
    device: str = settings.DEFAULT_DEVICE
    precision: str = settings.DEFAULT_PRECISION
    shots: str | None = None
    ocr: bool | None = None
    speech: bool | None = None
    sound: bool | None = None
    ray: RayOptions | None = None

    def checked(self) -> "IndexOptions":
        """These options, their values checked (and ``fps``/``batch_size`` as float/int).

        Raises:
            UsageError: ``fps`` or ``batch_size`` out of range, an unknown shot detector, a bad Ray option.
        """
        settings.shots(self.shots)
        return replace(
            self,
            fps=settings.check_fps(self.fps),
            batch_size=settings.check_batch_size(self.batch_size),
            ray=self.ray.check() if self.ray is not None else None,
        )
