"""On-screen text: PP-OCRv6 (``rapidocr`` 3.10; or PP-OCRv4, ``rapidocr-onnxruntime`` 1.4.4, with
``ARCHIVE_OCR_MODELS``) on sampled frames, tracked into text lines with the time each is on screen.

Reading a frame costs about 0.1 s (PP-OCRv6; 0.08 s PP-OCRv4) on this project's two-core machine
while indexing runs beside it (detection on a 270-line copy, then one recognition per line), against
about 0.02 s to embed it. So not every sample is read. Per sample
the decoder asks :class:`OcrTrack` whether to read it:

* the first sample of every shot is read (overlays mostly start and end with shots);
* a later sample of the shot is read when its picture changed against the last sample read: the
  largest difference of an 8x8-pixel block of a 192x108 grey copy is over ``CHANGE_LEVEL`` (a line
  of 20 px at 360p appearing changes its blocks by 20-60 grey levels; static shots stay under 4),
  at most one sample every ``MIN_GAP_S`` (at ``--fps`` above 2);
* any other sample shows what the last one read showed.

Footage that moves changes at every sample, so in ad footage nearly every sample is read (421 of
446 on the six clips of ``archive bench --make-ads``); the rule saves the reads of still shots,
end cards and held frames. Reading only some samples of moving shots missed overlays that appear
mid-shot (an earlier rule that read moving shots every 1.5 s lost one phrase in 72).

The readings of consecutive samples are joined into lines: a reading continues a line of the
previous sample when its text is the same after :func:`normalize` (similarity >= ``SAME_LINE``)
and its box overlaps the line's. A line is on screen from the start of its first sample to the end
of its last (a sample stands for ``[ts_s, end_s)``, the next sample or the video's end); its text,
confidence, box and frame are those of its most confident reading.

Models: PP-OCRv6 small detection and recognition (PaddleOCR, Apache-2.0) as shipped inside the
``rapidocr`` 3.10.0 wheel (Apache-2.0), or PP-OCRv4 inside ``rapidocr-onnxruntime`` 1.4.4; they read
Chinese and English (Latin letters and digits; v6 also the euro and pound signs). Accents are read
as the nearest plain letter or dropped; other scripts are not read. Measured side by side on 122
digit-rich phrases (``tests/gen/textads.py --eval-numbers``): v6 read 120 of them into a match, v4
116, at 0.096 against 0.078 s a read (the index run 1.06x as long).
"""

from __future__ import annotations

import bisect
import importlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer import settings
from indexer.errors import UsageError
from indexer.store.records import normalize

from .decode import sample_frames

CHANGE_LEVEL = 12.0  # grey levels: an 8x8 block of the 192x108 copy that changed this much is a change
MIN_GAP_S = 0.45  # within a shot, read at most one sample in this many seconds (matters above --fps 2)
MIN_CONFIDENCE = 0.7  # readings below it are dropped (textures read as "O", "ON", "46" at 0.5-0.6)
MIN_CHARS = 2  # readings with fewer letters or digits are dropped
SHORT_CHARS, SHORT_CONFIDENCE = 4, 0.9  # readings of fewer letters and digits need this confidence
SAME_LINE = 80.0  # rapidfuzz ratio (0-100) of two normalised readings that are the same line
SIG_W, SIG_H, BLOCK = 192, 108, 8
MIN_SIDE_PX = 12  # a picture whose short side is smaller has no readable text: not read
DET_SIDE = 270  # short side lines are found at (detection costs 0.05 s at 480x270, 0.09 s at 640x360)

PACKAGES = {"PP-OCRv6": "rapidocr", "PP-OCRv4": "rapidocr_onnxruntime"}  # the module each models' wheel installs
INSTALL = (
    "on-screen text with ARCHIVE_OCR_MODELS=PP-OCRv4 needs the rapidocr-onnxruntime package: "
    "pip install --no-deps rapidocr-onnxruntime==1.4.4 onnxruntime pyclipper shapely pyyaml"
)
INSTALL_V6 = "on-screen text needs the rapidocr package: pip install 'rapidocr==3.10.0' (or the ocr extra)"


@dataclass
class Reading:
    """One text line read in one frame; the box is normalised to 0-1 of the frame."""

    text: str
    confidence: float
    x: float
    y: float
    w: float
    h: float
    norm: str = ""


@dataclass
class OcrLine:
    """A text line on screen over consecutive samples."""

    first: int  # index of its first sample
    last: int  # ... and last sample
    best: int  # the sample of its most confident reading (its frame in the ``ocr`` table)
    reading: Reading
    start_s: float = 0.0
    end_s: float = 0.0


def available(models: str | None = None) -> bool:
    """True when the package of ``models`` (default: ``$ARCHIVE_OCR_MODELS``) can be imported."""
    try:
        importlib.import_module(PACKAGES[models or settings.ocr_models()])  # an install missing libGL fails here
    except ImportError:
        return False
    return True


class OcrEngine:
    """The OCR models, loaded once per process; :meth:`read` is safe from several threads.

    Text is found by the detector on a small copy of the frame (``DET_SIDE`` short side: detection
    is most of the cost, and halves from 360 to 270 lines) and each line is recognised from the
    frame at ``side`` (recognition scales every line to 48 pixels high, so it gains from pixels)."""

    def __init__(self, side: int, models: str = "PP-OCRv6") -> None:
        self.side = side
        self.det_side = min(DET_SIDE, side)
        self.models = models
        if models == "PP-OCRv6":
            self._v6 = _load_v6()
            return
        try:
            from rapidocr_onnxruntime import RapidOCR  # lazy: OCR is optional (--ocr)
        except ImportError as exc:
            raise UsageError(INSTALL) from exc
        # one thread per call: the decoding threads that call it already fill the cores
        # det_limit_type "max": the detector takes the picture at its size (up to 960 px wide); its
        # default ("min", 736) would enlarge a 270-line picture 2.7 times and cost ten times more
        self._ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, use_cls=False, det_limit_type="max")

    def _lines(self, bgr: np.ndarray, det_bgr: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        """``(box in bgr's pixels, text, confidence)`` of each line found in ``det_bgr`` (the same
        picture, smaller) and recognised from ``bgr``."""
        h, w = bgr.shape[:2]
        dh, dw = det_bgr.shape[:2]
        scale = np.array([w / dw, h / dh], np.float32)
        if self.models == "PP-OCRv6":
            det, rec, crop, rec_input = self._v6
            found = det(det_bgr)
            if found.boxes is None or not len(found.boxes):
                return []
            boxes = [np.asarray(b, np.float32) * scale for b in found.boxes]
            out = rec(rec_input(img=[crop(bgr, b.copy()) for b in boxes]))
            return [(b, str(t), float(c)) for b, t, c in zip(boxes, out.txts or (), out.scores)]
        found_boxes, _ = self._ocr.text_det(det_bgr)
        if found_boxes is None or not len(found_boxes):
            return []
        boxes = [np.asarray(b, np.float32) * scale for b in self._ocr.sorted_boxes(found_boxes)]
        texts, _ = self._ocr.text_rec(self._ocr.get_crop_img_list(bgr, boxes), False)
        return [(b, str(r[0]), float(r[1])) for b, r in zip(boxes, texts)]

    def read(self, rgb: np.ndarray, det_rgb: np.ndarray | None = None) -> list[Reading]:
        """The text lines of an RGB picture (best at a short side near ``side``); ``det_rgb``: the
        same picture smaller, to find the lines in (default: scaled from ``rgb``)."""
        import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

        h, w = rgb.shape[:2]
        if min(h, w) < MIN_SIDE_PX or max(h, w) > 40 * min(h, w):
            return []  # a sliver: nothing readable, and the detector would stretch it
        if det_rgb is None:
            scale = min(1.0, self.det_side / min(h, w))
            det_rgb = (
                rgb
                if scale >= 1.0
                else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            )
        lines = self._lines(  # the models read BGR
            np.ascontiguousarray(rgb[:, :, ::-1]), np.ascontiguousarray(det_rgb[:, :, ::-1])
        )
        out = []
        for box, text, conf in lines:
            text = text.strip()
            norm = normalize(text)
            if conf < MIN_CONFIDENCE or len(norm) < MIN_CHARS or (len(norm) < SHORT_CHARS and conf < SHORT_CONFIDENCE):
                continue
            x0, y0 = max(0.0, float(box[:, 0].min())), max(0.0, float(box[:, 1].min()))
            x1, y1 = min(float(w), float(box[:, 0].max())), min(float(h), float(box[:, 1].max()))
            out.append(Reading(text, conf, x0 / w, y0 / h, max(0.0, x1 - x0) / w, max(0.0, y1 - y0) / h, norm))
        out.sort(key=lambda r: (round(r.y, 2), r.x))
        return out


def _load_v6() -> tuple[Any, Any, Any, Any]:
    """PP-OCRv6 small detection and recognition from the rapidocr 3.10 wheel: the detector, the
    recogniser, its line-cropping function and its input type (one thread per call, as v4)."""
    try:  # lazy: OCR is optional (--ocr), and this is the other models' package
        from rapidocr import RapidOCR
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image
    except ImportError as exc:
        raise UsageError(INSTALL_V6) from exc
    one = {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
    ocr = RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            **{f"EngineConfig.onnxruntime.{k}": v for k, v in one.items()},
            "Det.limit_type": "max",  # as v4: the picture at its size, not enlarged to 736
            "Det.limit_side_len": 960,
        }
    )
    return ocr._load_det_model(), ocr._load_rec_model(), get_rotate_crop_image, TextRecInput


_engines: dict[tuple[int, str], OcrEngine] = {}
_lock = threading.Lock()


def engine(side: int, models: str | None = None) -> OcrEngine:
    """This process's engine for ``side`` and ``models`` (default: ``$ARCHIVE_OCR_MODELS``; loaded
    on first use, about 0.2 s).

    Raises:
        UsageError: the OCR package is not installed, or ``$ARCHIVE_OCR_MODELS`` names no models.
    """
    models = models or settings.ocr_models()
    with _lock:
        if (side, models) not in _engines:
            _engines[(side, models)] = OcrEngine(side, models)
        return _engines[(side, models)]


def signature(rgb: np.ndarray) -> np.ndarray:
    """A 192x108 grey copy of a picture, what change between samples is measured on."""
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (SIG_W, SIG_H), interpolation=cv2.INTER_AREA).astype(np.int16)


def block_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(largest mean change of an 8x8 block, share of blocks changed over ``CHANGE_LEVEL``)."""
    d = np.abs(a - b)[: SIG_H - SIG_H % BLOCK, :]
    blocks = d.reshape(d.shape[0] // BLOCK, BLOCK, SIG_W // BLOCK, BLOCK).mean(axis=(1, 3))
    return float(blocks.max()), float((blocks > CHANGE_LEVEL).mean())


def _overlap(a: Reading, b: Reading) -> bool:
    """True when the boxes overlap by at least half of the smaller one."""
    ix = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    iy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if ix <= 0 or iy <= 0:
        return False
    return ix * iy >= 0.5 * min(a.w * a.h, b.w * b.h)


def _same(a: Reading, b: Reading) -> bool:
    from rapidfuzz import fuzz  # lazy: only phrase matching needs it

    return _overlap(a, b) and (a.norm == b.norm or fuzz.ratio(a.norm, b.norm) >= SAME_LINE)


@dataclass
class OcrTrack:
    """Decides which samples of one video to read and joins their readings into lines.

    Feed every sample in order: :meth:`wants` (should this one be read?), then :meth:`add` with its
    readings, or None when it was not read (it shows what the last sample read showed). At the end
    :meth:`lines` gives the lines with their times.
    """

    read: int = 0  # samples read
    _sig: np.ndarray | None = None
    _shot: int = -1
    _last_read_s: float = -1e9
    _open: list[OcrLine] = field(default_factory=list)
    _done: list[OcrLine] = field(default_factory=list)
    _n: int = 0

    def wants(self, ts_s: float, shot: int, rgb: np.ndarray) -> bool:
        """Whether the sample at ``ts_s`` of shot ``shot`` (its picture ``rgb``, any size) is read."""
        sig = signature(rgb)
        want = shot != self._shot or self._sig is None
        if not want and ts_s - self._last_read_s >= MIN_GAP_S:
            biggest, _ = block_change(sig, self._sig)
            want = biggest > CHANGE_LEVEL
        if want:
            self._sig, self._shot, self._last_read_s = sig, shot, ts_s
        return want

    def add(self, readings: list[Reading] | None) -> None:
        """The next sample's readings (None: not read, the previous readings hold)."""
        i = self._n
        self._n += 1
        if readings is None:
            for line in self._open:
                line.last = i
            return
        self.read += 1
        still: list[OcrLine] = []
        free = list(self._open)
        for r in readings:
            match = next((ln for ln in free if _same(ln.reading, r)), None)
            if match is None:
                still.append(OcrLine(i, i, i, r))
                continue
            free.remove(match)
            match.last = i
            if r.confidence > match.reading.confidence:
                match.reading, match.best = r, i
            still.append(match)
        self._done.extend(free)
        self._open = still

    def lines(self, times: list[float], ends: list[float]) -> list[OcrLine]:
        """Every line with its times, by start; ``times`` and ``ends`` are the samples' intervals."""
        out = sorted(self._done + self._open, key=lambda ln: (ln.first, ln.reading.y, ln.reading.x))
        for ln in out:
            ln.start_s, ln.end_s = times[ln.first], ends[ln.last]
        return out


def read_video_text(
    path: str,
    fps: float,
    frame_ts: list[float],
    frame_end: list[float],
    eng: OcrEngine,
    shots: list[float] | None = None,
) -> tuple[list[OcrLine], int]:
    """Read the on-screen text of an already indexed video: decode it again, sampled as it was
    (``fps``), and tie each sample to the stored frame at its time (``frame_ts``, by time), so the
    lines' sample indices are stored frame positions. ``shots``: the stored shots' start times (a
    sample whose shot changes is read, as at index time); None: the decoder's own cuts.

    Returns:
        (lines, samples read).

    Raises:
        VideoOpenError: the file cannot be decoded.
    """
    track = OcrTrack()
    n = len(frame_ts)
    k = 0  # the next stored frame to feed
    ts = np.asarray(frame_ts, np.float64)
    for frame in sample_frames(path, fps, short_side=224, shots="fast"):  # 224: as the model's samples
        if k >= n:
            break
        j = int(np.searchsorted(ts, frame.ts_s))
        if j == n or (j > 0 and frame.ts_s - ts[j - 1] < ts[j] - frame.ts_s):
            j -= 1
        if j < k:
            continue  # a second sample for a frame already fed
        while k < j:
            track.add(None)
            k += 1
        shot = frame.shot if shots is None else max(0, bisect.bisect_right(shots, frame_ts[j] + 1e-6) - 1)
        track.add(eng.read(frame.at(eng.side)) if track.wants(frame.ts_s, shot, frame.rgb) else None)
        k += 1
    while k < n:
        track.add(None)
        k += 1
    return track.lines(list(frame_ts), list(frame_end)), track.read
