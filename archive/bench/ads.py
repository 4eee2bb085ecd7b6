"""`archive bench --make-ads`: ad-like 720p H.264 clips cut from real footage, to index in a benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer.errors import UsageError


def make_ads(
    dest: str,
    sources: Sequence[str],
    count: int = 6,
    seconds: float = 30.0,
    size: tuple[int, int] = (1280, 720),
    rate: int = 25,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``count`` ad-like H.264 MP4s into ``dest``: real footage (the video files ``sources``;
    in a checkout, tests/data/Megamind.avi and tree.avi) cut into 0.5-3 s shots, scaled to ``size``
    at a constant ``rate``, as broadcast ads are. Returns what was written.

    Raises:
        UsageError: no source clip given, or none of them could be read.
    """
    import av  # lazy: PyAV loads the FFmpeg libraries; only decoding needs them
    import cv2  # lazy: OpenCV is loaded only where pictures are scaled or decoded

    src_paths = [str(s) for s in sources]
    if not src_paths:
        raise UsageError(
            "--make-ads cuts real footage into ads: give it with --ads-from CLIP (repeatable; in a "
            "checkout: --ads-from tests/data/Megamind.avi --ads-from tests/data/tree.avi)."
        )
    clips = []
    for sp in src_paths:
        cap = cv2.VideoCapture(sp)
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
        cap.release()
        if len(frames) >= 10:
            clips.append(frames)
    if not clips:
        raise UsageError(f"--ads-from: no frames could be read from {', '.join(src_paths)}.")
    rng = np.random.default_rng(seed)
    Path(dest).mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * rate))
    written, cuts = [], 0
    for k in range(count):
        path = Path(dest) / f"ad{k:03d}.mp4"
        with av.open(str(path), "w") as out:
            st = out.add_stream("libx264", rate=rate)
            st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
            st.options = {"preset": "veryfast", "crf": "23"}
            done = 0
            while done < n_frames:
                clip = clips[int(rng.integers(len(clips)))]
                length = min(int(rng.integers(rate // 2, 3 * rate + 1)), n_frames - done, len(clip))
                start = int(rng.integers(0, len(clip) - length + 1))
                flip = bool(rng.integers(2))
                for img in clip[start : start + length]:
                    frame = av.VideoFrame.from_ndarray(img[:, ::-1] if flip else img, format="rgb24")
                    for pkt in st.encode(frame):
                        out.mux(pkt)
                done += length
                cuts += 1
            for pkt in st.encode():
                out.mux(pkt)
        written.append(str(path))
    return {"files": written, "seconds_each": seconds, "size": f"{size[0]}x{size[1]}", "rate": rate, "shots": cuts}
