"""The ``archive`` command: a typer app of thin commands (:mod:`.app`), how results look
(:mod:`.render`), the progress bar (:mod:`.progress`) and the evaluation's figures (:mod:`.plot`)."""

from archive.cli.app import app, main

__all__ = ["app", "main"]
