"""``archive label ...``, ``archive eval`` and ``archive classify``: saved categories, and answers
measured against labelled truth."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import DeviceOpt, StoreOpt, call, open_archive

label_app = typer.Typer(
    help="Saved categories: add, list, remove, calibrate on labelled truth. Their answers are kept in SQL tables.",
    no_args_is_help=True,
)


@label_app.command("add")
def label_add(
    name: str = typer.Argument(..., help="The label's name, e.g. beach.", show_default=False),
    prompt: Optional[List[str]] = typer.Option(
        None, "--prompt", "-p", help="A text that describes it; repeatable. [default: the name]", show_default=False
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="A plain cosine cut instead of the presence rule.", show_default=False
    ),
    ocr: Optional[List[str]] = typer.Option(
        None,
        "--ocr",
        metavar="WORDS",
        help="Written words that show it too (a store indexed with --ocr): present where the picture or the words "
        "are; segments.found_by says which. Repeatable.",
        show_default=False,
    ),
    said: Optional[List[str]] = typer.Option(
        None,
        "--said",
        metavar="PHRASE",
        help="Spoken phrases that show it too (a store indexed with --speech): present where they are said as well; "
        "segments.found_by then names speech. Repeatable.",
        show_default=False,
    ),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Save a label and work out, from the stored vectors, where it appears in every video."""
    from indexer.store import Reader

    from .render import err, esc

    arc = open_archive(store)
    n = call(lambda: arc.label_add(name, prompt or [], threshold, ocr or [], said or []))
    if ocr and Reader(arc.store).meta().get("ocr") != "1":
        err.print(
            "[yellow]warning:[/] this store has no on-screen text yet: its --ocr words find nothing until "
            "`archive index FOLDER --ocr` reads it (labels follow).",
            highlight=False,
        )
    if said and not Reader(arc.store).has_speech():
        err.print(
            "[yellow]warning:[/] this store has no transcribed speech yet: its --said phrases find nothing until "
            "`archive index FOLDER --speech` transcribes it (labels follow).",
            highlight=False,
        )
    err.print(
        f"label [bold]{esc(name)}[/]: present in {n} video{'s' if n != 1 else ''}. "
        'See `archive sql "SELECT * FROM video_labels"`.',
        highlight=False,
    )


@label_app.command("list")
def label_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """List saved labels with their prompts and how many videos show them."""
    from .render import print_labels

    arc = open_archive(store)
    print_labels(call(arc.labels), as_json)


@label_app.command("remove")
def label_remove(
    name: str = typer.Argument(..., help="The label to remove.", show_default=False),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Remove a saved label and its rows in segments and video_labels."""
    from .render import err, esc

    arc = open_archive(store)
    call(lambda: arc.label_remove(name))
    err.print(f"removed label {esc(name)}.", highlight=False)


@label_app.command("calibrate")
def label_calibrate(
    name: str = typer.Argument(..., help="The saved label to calibrate.", show_default=False),
    truth: Path = typer.Argument(
        ...,
        help="Truth CSV (video,query,start_s,end_s) with rows for label:NAME, or for its name or prompts.",
        show_default=False,
    ),
    target_precision: Optional[float] = typer.Option(
        None,
        "--target-precision",
        show_default=False,
        help="Take the lowest cosine cut that reaches this precision on the truth. [default: the cut of best F1]",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the calibration as JSON."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Set a label's threshold from labelled truth: best F1, or a target precision. Needs 3+ present videos.

    Rows that cannot be used are listed on stderr, one line each; the rest is used, and the exit
    status is then 1.
    """
    from .render import print_calibration

    arc = open_archive(store)
    cal = call(lambda: arc.label_calibrate(name, truth, target_precision))
    print_calibration(cal, as_json)
    if cal.problems:
        raise typer.Exit(1)


def evaluate(
    truth: Path = typer.Argument(
        ...,
        help="Truth CSV with a header video,query,start_s,end_s: one row per on-screen interval; empty times "
        "say absent. query: a text, image:PATH or label:NAME.",
        show_default=False,
    ),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        show_default=False,
        help="Measure a plain cosine cut instead of the presence rule. [default: the rule]",
    ),
    target_precision: float = typer.Option(
        0.95, "--target-precision", help="Report the lowest cosine cut that reaches this precision."
    ),
    plot: Optional[Path] = typer.Option(
        None,
        "--plot",
        show_default=False,
        help="Draw the precision/recall curves (with the rule's point) and the first-seen errors into this image.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with every number."),
    device: str = DeviceOpt,
    store: Optional[Path] = StoreOpt,
) -> None:
    """Measure the answers against your labelled videos: presence P/R/F1, AP, timing errors, IoU, best threshold.

    Rows that cannot be used are listed on stderr, one line each, and the rest is measured; the exit
    status is then 1.
    """
    from .render import err, print_eval

    if plot is not None:
        from .plot import check_plot_path

        call(lambda: check_plot_path(plot))  # before the run, not after it
    arc = open_archive(store, device)
    rep = call(lambda: arc.evaluate(truth, threshold=threshold, target_precision=target_precision))
    print_eval(rep, as_json)
    if plot is not None:
        from .plot import plot_eval

        where = call(lambda: plot_eval(rep, plot))
        err.print(f"plot written to {where}", highlight=False)
    if rep.problems:
        raise typer.Exit(1)


def classify(
    videos: Optional[List[str]] = typer.Argument(
        None, help="Indexed files, folders or names. [default: all]", show_default=False
    ),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Comma-separated saved labels to choose from. [default: all saved]", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per video."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Which saved label best describes each video, and each label's share of screen time."""
    from .render import print_classes

    arc = open_archive(store)
    names = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    print_classes(call(lambda: arc.classify(videos or None, names)), as_json)
