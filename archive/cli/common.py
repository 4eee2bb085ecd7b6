"""What every command of ``archive`` shares: the typer app, the common options, and the one place
typed errors become one line on stderr and an exit status (1, or 2 for a usage error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from rich.markup import escape

from indexer import settings
from indexer.errors import ArchiveError

app = typer.Typer(
    name="archive",
    help="A searchable video archive on CLIP embeddings: index a folder once, then ask any question.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")

StoreOpt = typer.Option(
    None,
    "--store",
    help="Store folder (catalog.duckdb, vectors/, thumbs.bin). [default: $ARCHIVE_STORE, else ./data]",
    show_default=False,
)
DeviceOpt = typer.Option(settings.DEFAULT_DEVICE, "--device", help="auto, cpu, cuda or mps.")


def fail(message: str, code: int = 1) -> None:
    from .render import err

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def call(fn: Callable[[], T]) -> T:
    """Run one core call; typed errors become one line and their exit status (1, or 2 for usage)."""
    try:
        return fn()
    except ArchiveError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; everything committed so far is kept.", 130)
    raise AssertionError("unreachable")


def open_archive(store: Optional[Path], device: str = settings.DEFAULT_DEVICE) -> Any:
    from archive.api import Archive

    return call(lambda: Archive(store, device=device))  # ARCHIVE_STORE=A:B is for searches only
