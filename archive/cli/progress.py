"""The index progress bar (rich), fed by the core's progress events."""

from __future__ import annotations

import os
import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from indexer.run.report import Progress as Event

from .render import err, esc


class IndexProgress:
    """Draws a bar over seconds of video; prints one line per failed file. Use as a context manager
    and pass the instance as ``progress=``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: Any = None
        self._base = 0.0  # seconds of video in finished files
        self._files = 0

    def __enter__(self) -> "IndexProgress":
        if self.enabled:
            self._bar = Progress(
                TextColumn("[bold]{task.description}", justify="left"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[files]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._bar is not None and self._task is not None:  # drawn only once there is something to embed
            if exc_type is not None:  # leave no half-drawn bar under the error line
                self._bar.live.transient = True
            self._bar.__exit__(None, None, None)

    def __call__(self, ev: Event) -> None:
        if ev.kind == "fail":
            err.print(f"[red]skipped[/] {esc(ev.path)}: {esc(ev.message)}", highlight=False)
            return
        if ev.kind == "partial":
            err.print(
                f"[yellow]partly decoded[/] {esc(ev.path)}: {esc(ev.message.removeprefix('partly decoded: '))}",
                highlight=False,
            )
            return
        if ev.kind == "notext":
            err.print(
                f"[yellow]no text read[/] {esc(ev.path)}: {esc(ev.message.removeprefix('on-screen text not read: '))}",
                highlight=False,
            )
            return
        if ev.kind == "nospeech":
            err.print(
                f"[yellow]speech[/] {esc(ev.path)}: {esc(ev.message.removeprefix('speech not transcribed: '))}",
                highlight=False,
            )
            return
        if ev.kind == "nosound":
            err.print(f"[yellow]sound[/] {esc(ev.path)}: {esc(ev.message)}", highlight=False)
            return
        if ev.kind == "sound" and self.enabled:
            now = time.monotonic()
            if not ev.done and ev.frames >= 20:
                err.print(
                    f"fingerprinting the sound of {ev.frames} video(s) (their sound only; nothing re-embedded) ...",
                    style="dim",
                    highlight=False,
                )
                self._sound_at = now
            elif ev.done and ev.done < ev.frames and now - getattr(self, "_sound_at", now) >= 10.0:
                err.print(f"  fingerprinted {int(ev.done):,} of {ev.frames:,}", style="dim", highlight=False)
                self._sound_at = now
            return
        if ev.kind == "speech" and self.enabled:
            err.print(
                f"transcribing what is said in {esc(ev.path)} (its sound only; nothing re-embedded)",
                style="dim",
                highlight=False,
            )
            return
        if ev.kind == "text" and self.enabled:
            err.print(
                f"reading the on-screen text of {esc(ev.path)} ({ev.frames} frames; decoding it again, nothing "
                "re-embedded)",
                style="dim",
                highlight=False,
            )
            return
        if ev.kind == "thumbs" and self.enabled:
            err.print(
                f"adding thumbnails to {esc(ev.path)} ({ev.frames} frames; decoding it again, nothing re-embedded)",
                style="dim",
                highlight=False,
            )
            return
        if ev.kind == "versions" and self.enabled:
            now = time.monotonic()
            if not ev.done:
                err.print(
                    f"comparing {ev.frames} video(s) with the archive for shared footage (versions) ...",
                    style="dim",
                    highlight=False,
                )
                self._versions_at = now
            elif ev.done < ev.frames and now - getattr(self, "_versions_at", now) >= 10.0:  # a long first run
                err.print(f"  compared {int(ev.done):,} of {ev.frames:,} videos", style="dim", highlight=False)
                self._versions_at = now
            return
        if ev.kind == "ivf" and self.enabled:
            now = time.monotonic()
            if not ev.done:
                err.print(
                    f"the archive has {ev.frames:,} frames: training its IVF index, once, so that comparing new "
                    "videos for shared footage stays fast (a few minutes per million frames) ...",
                    style="dim",
                    highlight=False,
                )
                self._ivf_at = now
            elif now - getattr(self, "_ivf_at", now) >= 10.0:
                err.print(f"  encoded {int(ev.done):,} of {ev.frames:,} vectors", style="dim", highlight=False)
                self._ivf_at = now
            return
        if ev.kind == "model" and self.enabled:
            err.print(f"loading model {ev.message} ...", style="dim", highlight=False)
            return
        if self._bar is None:
            return
        if ev.kind == "plan":
            self._total_files = ev.total
            if not ev.total:  # nothing to embed (text or thumbnails may still be added): no empty bar
                return
            self._bar.__enter__()
            self._task = self._bar.add_task("indexing", total=max(ev.seconds, 1e-9), files=f"0/{ev.total} files")
        elif self._task is None:
            return
        elif ev.kind == "start":
            self._bar.update(self._task, description=esc(os.path.basename(ev.path)[:40]))
        elif ev.kind == "frames":
            self._bar.update(self._task, completed=self._base + ev.done)
        elif ev.kind == "done":
            self._base += ev.seconds
            self._files += 1
            self._bar.update(self._task, completed=self._base, files=f"{self._files}/{self._total_files} files")
