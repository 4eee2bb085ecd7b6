"""``archive eval --plot FILE.png``: the figures of an evaluation, drawn with matplotlib.

Left: each query's precision/recall curve over plain cosine cuts, with the point where the presence
rule (or ``--threshold``) stands. Right: the first-seen errors of the videos found where they truly
are, in seconds (signed: positive is late).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexer.errors import ArchiveError, UsageError

FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "webp", "tif", "tiff", "eps", "ps")


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """Raises UsageError unless ``path`` has an image extension matplotlib writes and its folder
    exists (checked before an evaluation runs, so it is not lost at the end)."""
    p = Path(path).expanduser()
    ext = p.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise UsageError(
            f"--plot {path}: give a file name ending in .{', .'.join(FORMATS[:4])} (or another of "
            f"{', '.join(FORMATS[4:])})."
        )
    if not p.parent.is_dir():
        raise UsageError(f"--plot {path}: the folder {p.parent} does not exist.")


def plot_eval(rep: Any, path: str | os.PathLike[str]) -> str:
    """Draw ``rep`` (an :class:`search.eval.evaluate.EvalReport`) into an image file; returns its path.

    The format follows the file's extension (png, pdf, svg, ...).

    Raises:
        ArchiveError: matplotlib is not installed, or the file cannot be written.
    """
    try:
        import matplotlib  # lazy: only --plot draws

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: only --plot draws
        from matplotlib.ticker import MaxNLocator  # lazy: only --plot draws
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ArchiveError("--plot needs matplotlib: pip install matplotlib") from exc

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.25, 1]})
    rule = "rule" if rep.threshold is None else f"cosine >= {rep.threshold:g}"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, q in enumerate(rep.queries):
        col = colors[i % len(colors)]
        pts = q.sweep.curve
        kind, sep, rest = q.query.partition(":")
        name = f"image:{os.path.basename(rest)}" if sep and kind == "image" else q.query
        name = name if len(name) <= 40 else name[:37] + "..."
        if pts:
            ax.plot(
                [p.recall for p in pts],
                [p.precision for p in pts],
                "-",
                color=col,
                lw=1.4,
                alpha=0.9,
                drawstyle="steps-post",
                label=f"{name} (AP {q.ap:.2f})" if q.ap is not None else name,
            )
        ax.plot([q.counts.recall], [q.counts.precision], "o", color=col, ms=7, mec="black", mew=0.8)
    ax.plot([], [], "o", color="white", mec="black", label=f"the {rule}'s point")
    ax.set(
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.05),
        xlabel="recall (videos)",
        ylabel="precision (videos)",
        title="presence: precision / recall over cosine cuts",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.85)

    errs = [v.first_error_s for q in rep.queries for v in q.videos if v.truth and v.predicted]
    if errs:
        lo, hi = min(errs + [0.0]), max(errs + [0.0])
        bins = min(40, max(5, len(errs) // 2))
        bx.hist(errs, bins=bins, range=(lo - 0.05, hi + 0.05), color=colors[0], edgecolor="black", lw=0.5)
        bx.axvline(0.0, color="black", lw=0.8)
        t = rep.times
        bx.set_title(
            f"first seen: predicted - true ({len(errs)} videos; |err| mean {t.first_mean_s:.3f} s, "
            f"max {t.first_max_s:.3f} s)",
            fontsize=10,
        )
    else:
        bx.text(
            0.5, 0.5, "no video is both truly and predictedly present", ha="center", va="center", transform=bx.transAxes
        )
        bx.set_title("first seen: predicted - true", fontsize=10)
    bx.set(xlabel="seconds (positive: found late)", ylabel="videos")
    bx.yaxis.set_major_locator(MaxNLocator(integer=True))
    bx.grid(alpha=0.3)
    fig.suptitle(
        f"{os.path.basename(rep.truth)}: {rep.judged_videos} judged videos, micro F1 {rep.micro.f1:.3f}"
        + (f", mAP {rep.map:.3f}" if rep.map is not None else ""),
        fontsize=11,
    )
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"cannot write the plot {path}: {exc}") from exc
    finally:
        plt.close(fig)
    return str(path)
